#include "render.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <utility>

#include <stb_image_write.h>  // the implementation is in libstb

// Header-only with static functions: not all of them are used here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

namespace align {

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
  for (std::size_t i = 0; i < kPatches; ++i) {
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

void Canvas::save_png(const std::string& path) const {
  std::vector<unsigned char> bytes(pixels_.size());
  for (std::size_t i = 0; i < pixels_.size(); ++i)
    bytes[i] = static_cast<unsigned char>(std::lround(std::clamp(pixels_[i], 0.0f, 1.0f) * 255.0f));
  if (!stbi_write_png(path.c_str(), int(width_), int(height_), 3, bytes.data(), int(width_ * 3)))
    throw std::runtime_error("could not write the PNG file " + path);
}

// ---- The pictures --------------------------------------------------------------------

namespace {

constexpr Rgb kPaper{0.97f, 0.97f, 0.96f};
constexpr Rgb kInk{0.12f, 0.12f, 0.14f};
constexpr Rgb kMuted{0.40f, 0.40f, 0.44f};
constexpr Rgb kWhite{1.0f, 1.0f, 1.0f};
constexpr Rgb kMatch{0.10f, 0.62f, 0.22f};
constexpr Rgb kNoMatch{0.86f, 0.16f, 0.12f};
constexpr Rgb kTarget{0.40f, 1.0f, 0.40f};  // the caption's object: bright, dashed
constexpr Rgb kBar{0.26f, 0.45f, 0.78f};
constexpr Rgb kTrack{0.86f, 0.86f, 0.88f};

constexpr long kMargin = 24;
constexpr long kLine = 26;  // line pitch of scale-2 text

std::string fixed(float value, int digits) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, double(value));
  return buf;
}

std::string cell_name(std::size_t cell) {
  return "row " + std::to_string(cell / kGrid) + " col " + std::to_string(cell % kGrid);
}

// The cells of the image's objects the caption describes (several objects can match).
std::vector<std::size_t> caption_cells(const Example& example, const Caption& caption) {
  std::vector<std::size_t> cells;
  for (const Object& o : example.objects)
    if (caption_of(o) == caption) cells.push_back(o.cell);
  return cells;
}

// Faint lines between the 4x4 patches of an image drawn at (x, y) with scale.
void draw_patch_grid(Canvas& canvas, long x, long y, std::size_t scale) {
  const long cell = long(kCellSize * scale), size = cell * long(kGrid);
  for (long i = 1; i < long(kGrid); ++i) {
    canvas.blend_rect(x + i * cell, y, 1, size, kWhite, 0.25f);
    canvas.blend_rect(x, y + i * cell, size, 1, kWhite, 0.25f);
  }
}

// A dashed outline: dashes of `dash` pixels with equal gaps, `thickness` wide.
void stroke_dashed(Canvas& canvas, long x, long y, long w, long h, long thickness, long dash, Rgb colour) {
  for (long i = 0; i < w; i += 2 * dash) {
    const long len = std::min(dash, w - i);
    canvas.fill_rect(x + i, y, len, thickness, colour);
    canvas.fill_rect(x + i, y + h - thickness, len, thickness, colour);
  }
  for (long i = 0; i < h; i += 2 * dash) {
    const long len = std::min(dash, h - i);
    canvas.fill_rect(x, y + i, thickness, len, colour);
    canvas.fill_rect(x + w - thickness, y + i, thickness, len, colour);
  }
}

// Outlines on an image drawn at (x, y) with scale: the caption's object cells dashed and
// inset, the most attended cell solid on the cell's edge, so both show when they coincide.
void mark_cells(Canvas& canvas, long x, long y, std::size_t scale, std::size_t attended,
                const std::vector<std::size_t>& targets) {
  const long cell = long(kCellSize * scale);
  for (std::size_t t : targets)
    stroke_dashed(canvas, x + long(t % kGrid) * cell + 5, y + long(t / kGrid) * cell + 5, cell - 10, cell - 10, 2, 6,
                  kTarget);
  canvas.stroke_rect(x + long(attended % kGrid) * cell, y + long(attended / kGrid) * cell, cell, cell, 3, kWhite);
}

// One ranked image: a bordered thumbnail, a score bar (frac of its track) and "#rank score".
void draw_ranked(Canvas& canvas, const RankedImage& ranked, std::size_t rank, float frac, long x, long y,
                 std::size_t scale) {
  const long size = long(kImageSize * scale), border = 4;
  canvas.fill_rect(x, y, size + 2 * border, size + 2 * border, ranked.matches ? kMatch : kNoMatch);
  canvas.draw_image(image_of(*ranked.example), x + border, y + border, scale);
  const long bar_y = y + size + 2 * border + 6, track = size + 2 * border;
  canvas.fill_rect(x, bar_y, track, 8, kTrack);
  canvas.fill_rect(x, bar_y, std::max(1L, std::lround(frac * float(track))), 8, kBar);
  canvas.draw_text("#" + std::to_string(rank) + " " + fixed(ranked.score, 2), x, bar_y + 14, kInk, 2);
}

// render_show's sizes: the three panels at 8x, the ranked thumbnails (with borders) at 3x.
constexpr std::size_t kShowScale = 8, kThumbScale = 3;
constexpr long kPanel = long(kImageSize * kShowScale), kPanelGap = 32;
constexpr long kThumb = long(kImageSize * kThumbScale) + 8, kThumbPitch = kThumb + 24;

// What render_show writes and where: its lines of text, its rows' y top to bottom, the canvas size.
struct ShowPage {
  std::string title, subtitle, attended_line, target_line, ranked_header;
  Rgb target_colour;
  long y_subtitle, y_labels, y_panels, y_bar, y_info, y_ranked, y_thumbs, width, height;
};

// render_show's page: the text first (the canvas is as wide as its widest part), then the rows top to bottom.
ShowPage plan_show(const Caption& caption, const std::array<float, 16>& attention, std::size_t attended,
                   const std::vector<std::size_t>& targets, std::size_t n_top) {
  ShowPage page;
  const bool on_target = std::find(targets.begin(), targets.end(), attended) != targets.end();
  const char* verdict = on_target ? " - the attention found it" : " - the attention looks elsewhere";
  page.title = "\"" + caption_text(caption) + "\"";
  page.subtitle = "where the caption looks: its attention over the 16 patches of the image";
  page.attended_line =
      "white outline: the most attended patch, " + cell_name(attended) + ", weight " + fixed(attention[attended], 2);
  page.target_line = targets.empty() ? "the caption describes no object in this image"
                                     : "dashed green: the caption's object, " + cell_name(targets.front()) + verdict;
  page.target_colour = targets.empty() ? kMuted : on_target ? kMatch : kNoMatch;
  page.ranked_header =
      "the top " + std::to_string(n_top) + " images by score for the caption (green border: matches it, red: does not)";

  page.y_subtitle = kMargin + 34;
  page.y_labels = page.y_subtitle + kLine + 14;
  page.y_panels = page.y_labels + kLine;
  page.y_bar = page.y_panels + kPanel + 12;
  page.y_info = page.y_bar + 14 + 6 + 14 + 20;
  page.y_ranked = page.y_info + 2 * kLine + 16;
  page.y_thumbs = page.y_ranked + kLine + 4;
  page.height = n_top == 0 ? page.y_ranked + kMargin : page.y_thumbs + kThumb + 6 + 8 + 8 + 14 + kMargin;
  long width = 3 * kPanel + 2 * kPanelGap;
  const std::vector<std::pair<std::string, std::size_t>> texts = {{page.title, 3},
                                                                  {page.subtitle, 2},
                                                                  {page.attended_line, 2},
                                                                  {page.target_line, 2},
                                                                  {n_top == 0 ? "" : page.ranked_header, 2}};
  for (const auto& [text, scale] : texts) width = std::max(width, long(text_width(text, scale)));
  width = std::max(width, long(n_top) * kThumbPitch - 24);
  page.width = width + 2 * kMargin;
  return page;
}

// Three panels: the image, the attention alone, the attention over the image.
void draw_show_panels(Canvas& canvas, const ShowPage& page, const Example& example,
                      const std::array<float, 16>& attention, std::size_t attended,
                      const std::vector<std::size_t>& targets) {
  const long x_image = kMargin, x_heat = x_image + kPanel + kPanelGap, x_over = x_heat + kPanel + kPanelGap;
  canvas.draw_text("image", x_image, page.y_labels, kInk, 2);
  canvas.draw_text("attention weights", x_heat, page.y_labels, kInk, 2);
  canvas.draw_text("attention over the image", x_over, page.y_labels, kInk, 2);

  const std::vector<float> image = image_of(example);
  canvas.draw_image(image, x_image, page.y_panels, kShowScale);
  draw_patch_grid(canvas, x_image, page.y_panels, kShowScale);
  mark_cells(canvas, x_image, page.y_panels, kShowScale, attended, targets);

  canvas.draw_heatmap(attention, x_heat, page.y_panels, kShowScale, 1.0f, true);
  canvas.draw_colour_bar(x_heat, page.y_bar, kPanel, 14, attention[attended], kInk);

  canvas.draw_image(image, x_over, page.y_panels, kShowScale);
  canvas.draw_heatmap(attention, x_over, page.y_panels, kShowScale, 0.5f);
  draw_patch_grid(canvas, x_over, page.y_panels, kShowScale);
  mark_cells(canvas, x_over, page.y_panels, kShowScale, attended, targets);
}

// The ranked images in a row under their header, with score bars on a common scale.
void draw_show_ranking(Canvas& canvas, const ShowPage& page, const std::vector<RankedImage>& top) {
  canvas.draw_text(page.ranked_header, kMargin, page.y_ranked, kInk, 2);
  // Bars from min(0, lowest score) to the highest, so scores of either sign compare.
  float lo = 0.0f, hi = top.front().score;
  for (const RankedImage& r : top) lo = std::min(lo, r.score), hi = std::max(hi, r.score);
  for (std::size_t i = 0; i < top.size(); ++i) {
    const float frac = hi > lo ? (top[i].score - lo) / (hi - lo) : 1.0f;
    draw_ranked(canvas, top[i], i + 1, frac, kMargin + long(i) * kThumbPitch, page.y_thumbs, kThumbScale);
  }
}

}  // namespace

Canvas render_show(const Example& example, const Caption& caption, const std::array<float, 16>& attention,
                   const std::vector<RankedImage>& top) {
  const std::size_t attended = std::size_t(std::max_element(attention.begin(), attention.end()) - attention.begin());
  const std::vector<std::size_t> targets = caption_cells(example, caption);
  const ShowPage page = plan_show(caption, attention, attended, targets, top.size());

  Canvas canvas(std::size_t(page.width), std::size_t(page.height), kPaper);
  canvas.draw_text(page.title, kMargin, kMargin, kInk, 3);
  canvas.draw_text(page.subtitle, kMargin, page.y_subtitle, kMuted, 2);
  draw_show_panels(canvas, page, example, attention, attended, targets);
  canvas.draw_text(page.attended_line, kMargin, page.y_info, kInk, 2);
  canvas.draw_text(page.target_line, kMargin, page.y_info + kLine, page.target_colour, 2);
  if (!top.empty()) draw_show_ranking(canvas, page, top);
  return canvas;
}

Canvas render_sample(const std::vector<Example>& examples) {
  constexpr std::size_t kScale = 5, kPerRow = 4;
  constexpr long kImage = long(kImageSize * kScale), kGap = 24;

  // Two caption lines per image, "colour shape" and "vertical horizontal", to keep the
  // columns narrow.
  auto lines_of = [](const Caption& c) {
    return std::array<std::string, 2>{std::string(kVocabulary[c[0]]) + " " + kVocabulary[c[1]],
                                      std::string(kVocabulary[c[2]]) + " " + kVocabulary[c[3]]};
  };
  long column = kImage;
  for (const Example& e : examples)
    for (const std::string& line : lines_of(e.caption)) column = std::max(column, long(text_width(line, 2)));

  const std::string title =
      std::to_string(examples.size()) + " generated examples (outlined: the object the caption describes)";
  const std::size_t cols = std::max<std::size_t>(1, std::min(kPerRow, examples.size()));
  const std::size_t rows = (examples.size() + cols - 1) / cols;
  const long tile_h = kImage + 10 + 2 * kLine + 14;
  const long y_grid = kMargin + kLine + 14;
  const long width = 2 * kMargin + std::max(long(cols) * column + long(cols - 1) * kGap, long(text_width(title, 2)));
  const long height = y_grid + long(rows) * tile_h + kMargin - 14;

  Canvas canvas(std::size_t(width), std::size_t(height), kPaper);
  canvas.draw_text(title, kMargin, kMargin, kInk, 2);
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const Example& e = examples[i];
    const long x = kMargin + long(i % cols) * (column + kGap), y = y_grid + long(i / cols) * tile_h;
    const long ix = x + (column - kImage) / 2;
    canvas.draw_image(image_of(e), ix, y, kScale);
    const std::size_t cell = e.objects.at(e.described).cell;
    const long c = long(kCellSize * kScale);
    canvas.stroke_rect(ix + long(cell % kGrid) * c, y + long(cell / kGrid) * c, c, c, 2, kWhite);
    const auto lines = lines_of(e.caption);
    for (std::size_t l = 0; l < 2; ++l)
      canvas.draw_text(lines[l], x + (column - long(text_width(lines[l], 2))) / 2, y + kImage + 10 + long(l) * kLine,
                       kInk, 2);
  }
  return canvas;
}

}  // namespace align
