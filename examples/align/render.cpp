#include "render.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <utility>

#include "page.hpp"

namespace align {

namespace {

using draw::text_width;

using draw::kInk;  // the examples' page style (page.hpp)
using draw::kLine;
using draw::kMargin;
using draw::kMuted;
using draw::kPaper;
using draw::kWhite;
constexpr Rgb kMatch = draw::kGood;
constexpr Rgb kNoMatch = draw::kBad;
constexpr Rgb kTarget{0.40f, 1.0f, 0.40f};  // the caption's object: bright, dashed
constexpr Rgb kBar{0.26f, 0.45f, 0.78f};
constexpr Rgb kTrack{0.86f, 0.86f, 0.88f};

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
  // Two caption lines per image, "colour shape" and "vertical horizontal", to keep the
  // columns narrow; the described object outlined.
  std::vector<draw::Tile> tiles;
  for (const Example& e : examples) {
    const Caption& c = e.caption;
    tiles.push_back({image_of(e),
                     {std::string(kVocabulary[c[0]]) + " " + kVocabulary[c[1]],
                      std::string(kVocabulary[c[2]]) + " " + kVocabulary[c[3]]},
                     {e.objects.at(e.described).cell}});
  }
  return draw::render_tiles(
      std::to_string(examples.size()) + " generated examples (outlined: the object the caption describes)", tiles);
}

}  // namespace align
