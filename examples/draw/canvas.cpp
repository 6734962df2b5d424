#include "canvas.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>

#include <stb_image_write.h>  // the implementation is in libstb

// Header-only with static functions: not all of them are used here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

#include "scenes.hpp"

namespace draw {

using scenes::kCells;
using scenes::kCellSize;
using scenes::kChannels;
using scenes::kGrid;
using scenes::kImageSize;

// ---- Colours and text metrics ----------------------------------------------------------
Rgb heat_colour(float t) {
  // matplotlib's inferno sampled at t = 0, 0.1, ..., 1, interpolated linearly.
  static constexpr unsigned char kStops[11][3] = {{0, 0, 4},      {22, 11, 57},   {66, 10, 104},  {106, 23, 110},
                                                  {147, 38, 103}, {188, 55, 84},  {221, 81, 58},  {243, 120, 25},
                                                  {252, 165, 10}, {246, 215, 70}, {252, 255, 164}};
  if (!(t > 0.0f)) t = 0.0f;  // also maps NaN to 0
  t = std::min(t, 1.0f) * 10.0f;
  const std::size_t i = std::min<std::size_t>(std::size_t(t), 9);
  const float f = t - float(i);
  auto mix = [&](std::size_t c) { return ((1.0f - f) * kStops[i][c] + f * kStops[i + 1][c]) / 255.0f; };
  return {mix(0), mix(1), mix(2)};
}

namespace {

// stb_easy_font indexes its tables by (character - 32): keep to printable ASCII.
std::string printable(const std::string& text) {
  std::string out = text;
  for (char& c : out)
    if (c != '\n' && (c < 32 || c > 126)) c = '?';
  return out;
}

}  // namespace

std::size_t text_width(const std::string& text, std::size_t scale) {
  std::string s = printable(text);
  return std::size_t(stb_easy_font_width(s.data())) * scale;
}

std::size_t text_height(const std::string& text, std::size_t scale) {
  std::string s = printable(text);
  return std::size_t(stb_easy_font_height(s.data())) * scale;
}

// ---- Canvas --------------------------------------------------------------------------

Canvas::Canvas(std::size_t width, std::size_t height, Rgb background)
    : width_(width), height_(height), background_(background), pixels_(width * height * 3) {
  for (std::size_t i = 0; i < width * height; ++i) {
    pixels_[3 * i] = background.r;
    pixels_[3 * i + 1] = background.g;
    pixels_[3 * i + 2] = background.b;
  }
}

Rgb Canvas::pixel(std::size_t x, std::size_t y) const {
  if (x >= width_ || y >= height_)
    throw std::out_of_range("pixel (" + std::to_string(x) + ", " + std::to_string(y) + ") outside a " +
                            std::to_string(width_) + "x" + std::to_string(height_) + " canvas");
  const float* p = &pixels_[(y * width_ + x) * 3];
  return {p[0], p[1], p[2]};
}

void Canvas::blend_pixel(std::size_t x, std::size_t y, Rgb colour, float alpha) {
  float* p = &pixels_[(y * width_ + x) * 3];
  p[0] += alpha * (colour.r - p[0]);
  p[1] += alpha * (colour.g - p[1]);
  p[2] += alpha * (colour.b - p[2]);
}

void Canvas::blend_rect(long x, long y, long w, long h, Rgb colour, float alpha) {
  // Clip in signed arithmetic first: callers may pass rectangles partly off the canvas.
  const long x0 = std::max(x, 0L), y0 = std::max(y, 0L);
  const long x1 = std::min(x + w, long(width_)), y1 = std::min(y + h, long(height_));
  for (long py = y0; py < y1; ++py)
    for (long px = x0; px < x1; ++px) blend_pixel(std::size_t(px), std::size_t(py), colour, alpha);
}

void Canvas::fill_rect(long x, long y, long w, long h, Rgb colour) { blend_rect(x, y, w, h, colour, 1.0f); }

void Canvas::stroke_rect(long x, long y, long w, long h, long thickness, Rgb colour) {
  thickness = std::min({thickness, w, h});
  fill_rect(x, y, w, thickness, colour);                  // top
  fill_rect(x, y + h - thickness, w, thickness, colour);  // bottom
  fill_rect(x, y, thickness, h, colour);                  // left
  fill_rect(x + w - thickness, y, thickness, h, colour);  // right
}

void Canvas::draw_image(const std::vector<float>& image, long x, long y, std::size_t scale) {
  if (image.size() != kImageSize * kImageSize * kChannels)
    throw std::invalid_argument("draw_image: expected a 32x32x3 image (3072 values), got " +
                                std::to_string(image.size()) + " values");
  const long s = long(scale);
  for (std::size_t iy = 0; iy < kImageSize; ++iy)
    for (std::size_t ix = 0; ix < kImageSize; ++ix) {
      const float* p = &image[(iy * kImageSize + ix) * kChannels];
      fill_rect(x + long(ix) * s, y + long(iy) * s, s, s, {p[0], p[1], p[2]});
    }
}

void Canvas::draw_heatmap(const std::array<float, 16>& weights, long x, long y, std::size_t scale, float alpha,
                          bool label_values) {
  // Scaled by the largest weight so the hottest cell is always the top of the colour map;
  // the colour bar carries the actual range.
  const float top = *std::max_element(weights.begin(), weights.end());
  const long cell = long(kCellSize * scale);
  for (std::size_t i = 0; i < kCells; ++i) {
    const long cx = x + long(i % kGrid) * cell, cy = y + long(i / kGrid) * cell;
    const Rgb colour = heat_colour(top > 0.0f ? weights[i] / top : 0.0f);
    blend_rect(cx, cy, cell, cell, colour, alpha);
    if (!label_values) continue;
    char label[32];
    std::snprintf(label, sizeof label, "%.2f", double(weights[i]));
    // The largest font whose label fits the cell with a little room; none if none fits.
    for (std::size_t ts = 2; ts >= 1; --ts) {
      const long tw = long(text_width(label, ts)), th = long(7 * ts);
      if (tw + 4 > cell || th + 4 > cell) continue;
      // Dark ink on the bright end of the map, white on the dark end.
      const float luminance = 0.2126f * colour.r + 0.7152f * colour.g + 0.0722f * colour.b;
      const Rgb ink = luminance > 0.45f ? Rgb{0.05f, 0.05f, 0.08f} : Rgb{1.0f, 1.0f, 1.0f};
      draw_text(label, cx + (cell - tw) / 2, cy + (cell - th) / 2, ink, ts);
      break;
    }
  }
}

void Canvas::draw_colour_bar(long x, long y, long w, long h, float max_value, Rgb label_colour) {
  for (long i = 0; i < w; ++i) fill_rect(x + i, y, 1, h, heat_colour(w > 1 ? float(i) / float(w - 1) : 1.0f));
  char label[32];
  std::snprintf(label, sizeof label, "%.2f", double(max_value));
  draw_text("0", x, y + h + 6, label_colour, 2);
  draw_text(label, x + w - long(text_width(label, 2)), y + h + 6, label_colour, 2);
}

void Canvas::draw_text(const std::string& text, long x, long y, Rgb colour, std::size_t scale) {
  struct Vertex {  // stb_easy_font's interleaved vertex layout
    float x, y, z;
    unsigned char rgba[4];
  };
  std::string s = printable(text);
  // stb_easy_font uses ~270 bytes per character on average; 1 KiB each is ample.
  std::vector<Vertex> vertices(64 * (s.size() + 1));
  const int quads =
      stb_easy_font_print(0.0f, 0.0f, s.data(), nullptr, vertices.data(), int(vertices.size() * sizeof(Vertex)));
  const long k = long(scale);
  // Each quad is an axis-aligned rectangle on integer font pixels: vertex 0 is its top
  // left corner, vertex 2 its bottom right.
  for (int q = 0; q < quads; ++q) {
    const Vertex& a = vertices[4 * std::size_t(q)];
    const Vertex& b = vertices[4 * std::size_t(q) + 2];
    const long x0 = std::lround(a.x), y0 = std::lround(a.y), x1 = std::lround(b.x), y1 = std::lround(b.y);
    fill_rect(x + x0 * k, y + y0 * k, (x1 - x0) * k, (y1 - y0) * k, colour);
  }
}

void Canvas::draw_line(double x0, double y0, double x1, double y1, Rgb colour, long thickness) {
  // Stamps a thickness-wide square every half pixel along the segment: simple, and
  // without gaps at any slope.
  const double length = std::hypot(x1 - x0, y1 - y0);
  const long steps = std::max(1L, long(std::ceil(2 * length)));
  const double half = double(thickness - 1) / 2;
  for (long i = 0; i <= steps; ++i) {
    const double t = double(i) / double(steps);
    fill_rect(std::lround(x0 + t * (x1 - x0) - half), std::lround(y0 + t * (y1 - y0) - half), thickness, thickness,
              colour);
  }
}

void Canvas::save_png(const std::string& path) const {
  std::vector<unsigned char> bytes(pixels_.size());
  for (std::size_t i = 0; i < pixels_.size(); ++i)
    bytes[i] = static_cast<unsigned char>(std::lround(std::clamp(pixels_[i], 0.0f, 1.0f) * 255.0f));
  // Encoded in memory, written to a temporary next to the target and renamed over it, so
  // that the file at `path` is always a whole picture (the old one or the new one).
  std::string png;
  const auto append = [](void* out, void* data, int size) {
    static_cast<std::string*>(out)->append(static_cast<const char*>(data), std::size_t(size));
  };
  if (!stbi_write_png_to_func(append, &png, int(width_), int(height_), 3, bytes.data(), int(width_ * 3)))
    throw std::runtime_error("could not encode the PNG for " + path);
  const std::string temporary = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::binary);
    if (!(out << png) || !(out.flush())) {
      std::remove(temporary.c_str());
      throw std::runtime_error("could not write the PNG file " + path);
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw std::runtime_error("could not write the PNG file " + path);
  }
}

}  // namespace draw
