// Tests of the pictures the examples draw: a PNG file written by a program compared pixel by
// pixel with the canvas the library draws. Needs stb_image (the test links libstb).
#pragma once

#include <doctest/doctest.h>
#include <stb_image.h>

#include <cmath>
#include <string>

#include "canvas.hpp"

namespace xtgrad::testing {

// The PNG file's pixels equal the canvas's (to 8-bit rounding).
inline void check_png_is(const std::string& path, const draw::Canvas& expected) {
  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &channels, 3);
  REQUIRE_MESSAGE(data != nullptr, "cannot read " << path);
  CHECK(std::size_t(w) == expected.width());
  CHECK(std::size_t(h) == expected.height());
  std::size_t differ = 0;
  if (std::size_t(w) == expected.width() && std::size_t(h) == expected.height())
    for (std::size_t y = 0; y < expected.height(); ++y)
      for (std::size_t x = 0; x < expected.width(); ++x) {
        const draw::Rgb e = expected.pixel(x, y);
        const unsigned char* p = data + (y * expected.width() + x) * 3;
        differ += std::abs(p[0] / 255.0f - e.r) > 0.5f / 255 + 1e-6f ||
                  std::abs(p[1] / 255.0f - e.g) > 0.5f / 255 + 1e-6f ||
                  std::abs(p[2] / 255.0f - e.b) > 0.5f / 255 + 1e-6f;
      }
  stbi_image_free(data);
  CHECK_MESSAGE(differ == 0, differ << " pixels of " << path << " differ from the page");
}

}  // namespace xtgrad::testing
