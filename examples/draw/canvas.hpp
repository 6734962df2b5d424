// A small RGB canvas for pictures a person looks at (examples' --png output): rectangles,
// text, the toy pictures, heat maps over their 4x4 grid, and a PNG writer. Shared by every
// example (align's show and sample pages, caption's attention maps, the plot tool).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace draw {

struct Rgb {
  float r, g, b;  // 0..1
};

// The inferno-like colour of t in [0, 1] (clamped): black through purple and orange to
// pale yellow, so brightness grows with t and the map reads in grey scale too.
Rgb heat_colour(float t);

// Size in pixels of text drawn by Canvas::draw_text at scale (stb_easy_font metrics:
// 12 px per line at scale 1, glyph caps are 7 px tall).
std::size_t text_width(const std::string& text, std::size_t scale = 1);
std::size_t text_height(const std::string& text, std::size_t scale = 1);

class Canvas {
 public:
  Canvas(std::size_t width, std::size_t height, Rgb background);

  std::size_t width() const { return width_; }
  std::size_t height() const { return height_; }
  Rgb background() const { return background_; }
  // Throws std::out_of_range outside the canvas.
  Rgb pixel(std::size_t x, std::size_t y) const;

  // Everything below is clipped to the canvas: drawing partly or wholly outside is fine.
  void fill_rect(long x, long y, long w, long h, Rgb colour);
  // colour over the rectangle with opacity alpha in [0, 1].
  void blend_rect(long x, long y, long w, long h, Rgb colour, float alpha);
  // The outline of the rectangle, `thickness` pixels wide, inside its bounds.
  void stroke_rect(long x, long y, long w, long h, long thickness, Rgb colour);

  // A 32x32x3 image ((y, x, channel), values in [0, 1]) with each pixel a scale x scale
  // block, top-left corner at (x, y). Throws std::invalid_argument on a wrong size.
  void draw_image(const std::vector<float>& image, long x, long y, std::size_t scale);

  // The 4x4 grid of patch weights over the area of an image drawn at (x, y) with `scale`
  // (cell i = row * 4 + column covers 8*scale pixels square). The colours are
  // heat_colour(weight / largest weight), blended with opacity alpha: alpha < 1 lays the map
  // over an image drawn there, alpha = 1 draws it opaque (beside the image). With
  // label_values, each cell also shows its weight when the number fits.
  void draw_heatmap(const std::array<float, 16>& weights, long x, long y, std::size_t scale, float alpha,
                    bool label_values = false);
  // The legend of draw_heatmap: a horizontal gradient w x h at (x, y) from heat_colour(0)
  // to heat_colour(1), labelled "0" and max_value underneath in label_colour.
  void draw_colour_bar(long x, long y, long w, long h, float max_value, Rgb label_colour);

  // stb_easy_font glyphs with their top-left at (x, y), each font pixel a scale x scale
  // block. '\n' starts a new line; characters outside printable ASCII draw as '?'.
  void draw_text(const std::string& text, long x, long y, Rgb colour, std::size_t scale = 1);

  // A straight line from (x0, y0) to (x1, y1), `thickness` pixels wide.
  void draw_line(double x0, double y0, double x1, double y1, Rgb colour, long thickness = 1);

  // Writes an 8-bit RGB PNG through a temporary file and a rename; throws
  // std::runtime_error naming the path on failure (nothing is left half-written).
  void save_png(const std::string& path) const;

 private:
  void blend_pixel(std::size_t x, std::size_t y, Rgb colour, float alpha);

  std::size_t width_, height_;
  Rgb background_;
  std::vector<float> pixels_;  // (y, x, channel)
};

}  // namespace draw
