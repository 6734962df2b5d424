// Pictures of the toy task for a person to look at: a small RGB canvas with the few
// drawing operations the two pictures need, and the pictures themselves.
// - render_show: one test image, the caption's attention over its 16 patches and the
//   images the model ranks highest for the caption.
// - render_sample: a grid of generated images with their captions.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "data.hpp"

namespace align {

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

  // Writes an 8-bit RGB PNG; throws std::runtime_error naming the path on failure.
  void save_png(const std::string& path) const;

 private:
  void blend_pixel(std::size_t x, std::size_t y, Rgb colour, float alpha);

  std::size_t width_, height_;
  Rgb background_;
  std::vector<float> pixels_;  // (y, x, channel)
};

struct RankedImage {
  const Example* example;
  float score;
  bool matches;  // the image matches the caption
};

// The test image enlarged 8x, the caption's attention over the 16 patches as a heat map
// beside it and blended over a copy, the caption as the title, the most attended cell
// outlined (and the cells of the caption's objects in the image, if any),
// then the images in `top`, in the given order, as thumbnails with their score as a bar
// and a number and a green (matches) or red (does not) border.
Canvas render_show(const Example& example, const Caption& caption, const std::array<float, 16>& attention,
                   const std::vector<RankedImage>& top);

// The examples in a grid, 4 per row, each image 5x enlarged with its caption underneath and
// the object the caption describes outlined.
Canvas render_sample(const std::vector<Example>& examples);

}  // namespace align
