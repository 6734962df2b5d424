// The toy task's pictures (examples/align/render.*): the canvas operations put the right
// colours in the right places, the two pictures have sensible sizes and content, and PNG
// files read back as written; the pictures are those of before the move to examples/scenes.
#include <doctest/doctest.h>

#include <stb_image.h>  // the implementation is in libstb
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "data.hpp"
#include "helpers.hpp"
#include "render.hpp"

namespace {

using draw::Canvas;
using draw::Rgb;
using xtgrad::testing::TempDir;

constexpr Rgb kBackground{0.5f, 0.25f, 0.75f};  // a colour no drawing below produces by chance

bool same(Rgb a, Rgb b, float tolerance = 1e-6f) {
  return std::abs(a.r - b.r) <= tolerance && std::abs(a.g - b.g) <= tolerance && std::abs(a.b - b.b) <= tolerance;
}

float luminance(Rgb c) { return 0.2126f * c.r + 0.7152f * c.g + 0.0722f * c.b; }

Rgb image_pixel(const std::vector<float>& image, std::size_t x, std::size_t y) {
  const float* p = &image[(y * align::kImageSize + x) * align::kChannels];
  return {p[0], p[1], p[2]};
}

// Pixels in [x0, x1) x [y0, y1) that differ from the canvas background.
std::size_t count_drawn(const Canvas& c, std::size_t x0, std::size_t y0, std::size_t x1, std::size_t y1) {
  std::size_t n = 0;
  for (std::size_t y = y0; y < std::min(y1, c.height()); ++y)
    for (std::size_t x = x0; x < std::min(x1, c.width()); ++x) n += !same(c.pixel(x, y), c.background());
  return n;
}

// What the model would produce for an example: attention peaked on the described object's
// cell with a little elsewhere, summing to 1.
std::array<float, 16> fake_attention(const align::Example& e) {
  std::array<float, 16> w;
  for (std::size_t i = 0; i < 16; ++i) w[i] = 0.01f + 0.004f * float((i * 7) % 5);
  w[e.objects[e.described].cell] += 0.7f;
  w[(e.objects[e.described].cell + 5) % 16] += 0.08f;
  float sum = 0.0f;
  for (float v : w) sum += v;
  for (float& v : w) v /= sum;
  return w;
}

// A plausible top-k for the caption of examples[0] among examples: matching images score
// high, others low, with one non-match placed third so both border colours show.
std::vector<align::RankedImage> fake_ranking(const std::vector<align::Example>& examples, std::size_t k) {
  std::vector<align::RankedImage> all;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const bool m = align::matches(examples[0].caption, examples[i]);
    all.push_back({&examples[i], (m ? 6.0f : -1.0f) + 0.37f * float((i * 13) % 7) - (i == 0 ? 0.0f : 0.5f), m});
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
  all.resize(std::min(k, all.size()));
  return all;
}

}  // namespace

TEST_CASE("render: draw_image at scale 4 puts each image pixel in its 4x4 block") {
  const auto examples = align::generate(1, 3);
  const std::vector<float> image = align::image_of(examples[0]);
  Canvas c(140, 140, kBackground);
  const long x0 = 3, y0 = 5;
  c.draw_image(image, x0, y0, 4);
  for (std::size_t iy : {0u, 7u, 13u, 31u})
    for (std::size_t ix : {0u, 4u, 20u, 31u})
      for (std::size_t dy = 0; dy < 4; ++dy)
        for (std::size_t dx = 0; dx < 4; ++dx)
          CHECK(same(c.pixel(x0 + 4 * ix + dx, y0 + 4 * iy + dy), image_pixel(image, ix, iy)));
  // Nothing outside the 128x128 block.
  CHECK(count_drawn(c, 0, 0, 140, y0) == 0);
  CHECK(count_drawn(c, 0, 0, x0, 140) == 0);
  CHECK(count_drawn(c, x0 + 128, 0, 140, 140) == 0);
  CHECK(count_drawn(c, 0, y0 + 128, 140, 140) == 0);
  CHECK(count_drawn(c, x0, y0, x0 + 128, y0 + 128) > 128 * 128 / 2);

  CHECK_THROWS_AS(c.draw_image(std::vector<float>(10, 0.0f), 0, 0, 1), std::invalid_argument);
}

TEST_CASE("render: fill_rect clips to the canvas and pixel checks its bounds") {
  Canvas c(10, 8, kBackground);
  c.fill_rect(-5, -5, 8, 7, {1.0f, 0.0f, 0.0f});
  c.fill_rect(8, 6, 100, 100, {0.0f, 1.0f, 0.0f});
  CHECK(count_drawn(c, 0, 0, 10, 8) == 3 * 2 + 2 * 2);
  CHECK(same(c.pixel(2, 1), {1.0f, 0.0f, 0.0f}));
  CHECK(same(c.pixel(3, 1), kBackground));
  CHECK(same(c.pixel(9, 7), {0.0f, 1.0f, 0.0f}));
  CHECK_THROWS_AS(c.pixel(10, 0), std::out_of_range);
  CHECK_THROWS_AS(c.pixel(0, 8), std::out_of_range);
}

TEST_CASE("render: the heat map colours the largest weight hottest and the smallest coldest") {
  std::array<float, 16> w;
  for (std::size_t i = 0; i < 16; ++i) w[i] = 0.02f + 0.01f * float(i % 3);
  w[6] = 0.55f;   // hottest: row 1, column 2
  w[9] = 0.001f;  // coldest: row 2, column 1
  const std::size_t scale = 4, cell = 8 * scale;
  Canvas c(140, 140, kBackground);
  c.draw_heatmap(w, 6, 6, scale, 1.0f);
  auto centre = [&](std::size_t i) { return c.pixel(6 + (i % 4) * cell + cell / 2, 6 + (i / 4) * cell + cell / 2); };

  CHECK(same(centre(6), draw::heat_colour(1.0f)));
  CHECK(same(centre(9), draw::heat_colour(0.001f / 0.55f)));
  for (std::size_t i = 0; i < 16; ++i) {
    if (i != 6) CHECK(luminance(centre(6)) > luminance(centre(i)));
    if (i != 9) CHECK(luminance(centre(9)) < luminance(centre(i)));
  }
  // A whole cell is one colour (no labels asked for).
  CHECK(same(c.pixel(6 + 2 * cell, 6 + cell), centre(6)));
  CHECK(same(c.pixel(6 + 3 * cell - 1, 6 + 2 * cell - 1), centre(6)));
  // The colour map brightens monotonically.
  for (int i = 0; i < 20; ++i)
    CHECK(luminance(draw::heat_colour(float(i) / 20)) < luminance(draw::heat_colour(float(i + 1) / 20)));

  // Blended at alpha 0.5 over a grey image: halfway between the grey and the map colour.
  Canvas over(140, 140, kBackground);
  over.fill_rect(0, 0, 140, 140, {0.2f, 0.2f, 0.2f});
  over.draw_heatmap(w, 0, 0, scale, 0.5f);
  const Rgb hot = draw::heat_colour(1.0f);
  CHECK(
      same(over.pixel(2 * cell + 3, cell + 3), {0.1f + 0.5f * hot.r, 0.1f + 0.5f * hot.g, 0.1f + 0.5f * hot.b}, 1e-5f));
}

TEST_CASE("render: text draws inside its box and nowhere else") {
  const std::string text = "red circle 0.87";
  for (std::size_t scale : {1u, 2u, 3u}) {
    CAPTURE(scale);
    Canvas c(400, 100, kBackground);
    const long x = 20, y = 30;
    c.draw_text(text, x, y, {0.0f, 0.0f, 0.0f}, scale);
    const std::size_t w = draw::text_width(text, scale), h = draw::text_height(text, scale);
    CHECK(w == scale * draw::text_width(text));
    CHECK(h == 12 * scale);
    const std::size_t inside = count_drawn(c, x, y, x + w, y + h);
    CHECK(inside > 20 * scale * scale);
    CHECK(count_drawn(c, 0, 0, 400, 100) == inside);
    CHECK(same(c.pixel(x, y + 3 * scale), {0.0f, 0.0f, 0.0f}));  // the stem of the 'r'
  }
  // Unprintable characters draw as '?' rather than reading outside the font's tables.
  Canvas c(100, 40, kBackground);
  c.draw_text("a\tb\x80", 2, 2, {0.0f, 0.0f, 0.0f});
  CHECK(count_drawn(c, 0, 0, 100, 40) > 0);
}

TEST_CASE("render: render_show has the expected size and is not blank") {
  const auto examples = align::generate(40, 11);
  const auto& e = examples[0];
  const auto top = fake_ranking(examples, 6);
  const Canvas show = align::render_show(e, e.caption, fake_attention(e), top);
  // Three 256-pixel panels side by side, and the thumbnails under them.
  CHECK(show.width() >= 3 * 256 + 2 * 24);
  CHECK(show.width() <= 1400);
  CHECK(show.height() >= 256 + 96 + 100);
  CHECK(show.height() <= 900);
  CHECK(count_drawn(show, 0, 0, show.width(), show.height()) > 3 * 256 * 256);

  // Without a ranking the picture stops after the panels.
  const Canvas alone = align::render_show(e, align::parse_caption("blue cross bottom right"), fake_attention(e), {});
  CHECK(alone.height() + 96 < show.height());
  CHECK(count_drawn(alone, 0, 0, alone.width(), alone.height()) > 2 * 256 * 256);
}

TEST_CASE("render: render_sample has the expected size and is not blank") {
  const auto examples = align::generate(6, 5);
  const Canvas sample = align::render_sample(examples);
  // 4 per row: two rows of images 160 pixels square, with captions.
  CHECK(sample.width() >= 4 * 160);
  CHECK(sample.width() <= 1200);
  CHECK(sample.height() >= 2 * 160 + 2 * 40);
  CHECK(sample.height() <= 700);
  CHECK(count_drawn(sample, 0, 0, sample.width(), sample.height()) > 6 * 160 * 160);
  // One row only for up to 4 examples.
  const Canvas row = align::render_sample(std::vector<align::Example>(examples.begin(), examples.begin() + 3));
  CHECK(row.height() + 160 < sample.height());
}

TEST_CASE("render: save_png writes a file stb_image reads back the same") {
  TempDir dir;
  const auto examples = align::generate(2, 7);
  Canvas c(70, 45, kBackground);
  c.draw_image(align::image_of(examples[0]), 1, 2, 2);
  c.fill_rect(66, 40, 4, 5, {1.0f, 1.0f, 0.0f});
  const std::string path = (dir.path / "picture.png").string();
  c.save_png(path);

  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &channels, 3);
  REQUIRE(data != nullptr);
  CHECK(w == 70);
  CHECK(h == 45);
  std::size_t checked = 0;
  for (std::size_t y = 0; y < 45; y += 4)
    for (std::size_t x = 0; x < 70; x += 3) {
      const Rgb expected = c.pixel(x, y);
      const unsigned char* p = data + (y * 70 + x) * 3;
      CHECK(std::abs(p[0] / 255.0f - expected.r) <= 1.0f / 255);
      CHECK(std::abs(p[1] / 255.0f - expected.g) <= 1.0f / 255);
      CHECK(std::abs(p[2] / 255.0f - expected.b) <= 1.0f / 255);
      ++checked;
    }
  const unsigned char* corner = data + (44 * 70 + 69) * 3;
  CHECK((corner[0] == 255 && corner[1] == 255 && corner[2] == 0));
  stbi_image_free(data);
  CHECK(checked > 100);
}

TEST_CASE("render: save_png into a missing directory throws naming the path") {
  TempDir dir;
  const std::string path = (dir.path / "no-such-directory" / "picture.png").string();
  Canvas c(4, 4, kBackground);
  CHECK_THROWS_AS(c.save_png(path), std::runtime_error);
  try {
    c.save_png(path);
  } catch (const std::runtime_error& error) {
    CHECK(std::string(error.what()).find(path) != std::string::npos);
  }
  CHECK(!std::filesystem::exists(path));
}

TEST_CASE("render: the pictures and captions are those of before the move to examples/scenes") {
  // FNV-1a over the float bytes of seeds 0 and 1's first 200 pictures and their caption
  // texts, computed from examples/align/data.cpp before scene generation and rendering moved
  // to the shared library: align's data, and so its seed-0 model, did not change.
  std::uint64_t hash = 1469598103934665603ULL;
  const auto eat = [&](const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 1099511628211ULL;
  };
  for (std::uint64_t seed : {0, 1})
    for (std::size_t i = 0; i < 200; ++i) {
      const align::Example e = align::generate_example(seed, i);
      const std::vector<float> image = align::image_of(e);
      eat(image.data(), image.size() * sizeof(float));
      const std::string text = align::caption_text(e.caption);
      eat(text.data(), text.size());
    }
  CHECK(hash == 0xb1c8ad4d13d09ddfULL);
}
