#include "render.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "page.hpp"

namespace caption {

namespace {

using draw::Canvas;
using draw::kInk;
using draw::kLine;
using draw::kMargin;
using draw::kMuted;
using draw::picture_of;
using draw::text_width;

// render_generate's sizes: the picture at 8x on the left, the heat maps to its right.
constexpr std::size_t kPictureScale = 8;
constexpr long kPicture = long(scenes::kImageSize * kPictureScale);
constexpr long kMap = long(scenes::kImageSize * kMapScale), kMapPitchX = kMap + 28;
constexpr long kMapPitchY = kMap + 8 + 2 * kLine + 10;  // the map, its word and its weight
constexpr long kYReference = kMargin + 48, kYBody = kYReference + kLine + 24;
constexpr long kXMaps = kMargin + kPicture + 48;

std::string fixed2(float value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", double(value));
  return buf;
}

// Word i's map at its corner: the picture, the weights over it, the largest cell outlined,
// the word and the largest weight centred under it.
void draw_word_map(Canvas& canvas, const std::vector<float>& image, const CellWeights& weights, const std::string& word,
                   std::size_t i) {
  const Corner at = generate_map_corner(i);
  canvas.draw_image(image, at.x, at.y, kMapScale);
  canvas.draw_heatmap(weights, at.x, at.y, kMapScale, kMapAlpha);
  const std::size_t peak = std::size_t(std::max_element(weights.begin(), weights.end()) - weights.begin());
  const long cell = long(scenes::kCellSize * kMapScale);
  canvas.stroke_rect(at.x + long(peak % scenes::kGrid) * cell, at.y + long(peak / scenes::kGrid) * cell, cell, cell, 2,
                     draw::kWhite);
  const std::string weight = fixed2(weights[peak]);
  canvas.draw_text(word, at.x + (kMap - long(text_width(word, 2))) / 2, at.y + kMap + 8, kInk, 2);
  canvas.draw_text(weight, at.x + (kMap - long(text_width(weight, 2))) / 2, at.y + kMap + 8 + kLine, kMuted, 2);
}

// The reference caption in lines of two words, "colour shape" and "vertical horizontal",
// with "and" leading the next phrase: narrow columns.
std::vector<std::string> sample_lines(const scenes::Scene& scene) {
  std::vector<std::string> lines;
  std::string line;
  std::size_t in_phrase = 0;
  for (std::size_t word : caption_words(scene)) {
    line += (line.empty() ? "" : " ") + std::string(kVocabulary[word]);
    if (word == kAnd) {
      in_phrase = 0;
    } else if (++in_phrase % 2 == 0) {
      lines.push_back(line);
      line.clear();
    }
  }
  return lines;
}

}  // namespace

Corner generate_map_corner(std::size_t word) {
  return {kXMaps + long(word % kMapsPerRow) * kMapPitchX, kYBody + long(word / kMapsPerRow) * kMapPitchY};
}

Canvas render_generate(const GeneratedCaption& g) {
  if (g.maps.size() != g.words.size())
    throw std::invalid_argument("render_generate: " + std::to_string(g.maps.size()) + " heat maps for " +
                                std::to_string(g.words.size()) + " words");
  const std::string title = "\"" + caption_text(g.words) + "\"";
  const std::string reference = "reference: \"" + caption_text(g.reference) + "\"";
  const std::string verdict = "  " + g.verdict;
  const std::vector<std::string> legend = {
      "above each word: where it looked, its cross-attention over the 4x4 grid", "averaged over " + g.averaged_over,
      "colours relative to its largest weight (under the word, its cell outlined)"};
  const std::size_t rows = std::max<std::size_t>(1, (g.words.size() + kMapsPerRow - 1) / kMapsPerRow);
  const long body = std::max(kPicture + 8 + kLine, long(rows) * kMapPitchY);
  const long y_legend = kYBody + body + 12;
  long width = kXMaps + long(kMapsPerRow) * kMapPitchX - (kMapPitchX - kMap);
  width = std::max(
      {width, kMargin + long(text_width(title, 3)), kMargin + long(text_width(reference, 2) + text_width(verdict, 2))});
  for (const std::string& line : legend) width = std::max(width, kMargin + long(text_width(line, 2)));

  Canvas canvas(std::size_t(width + kMargin), std::size_t(y_legend + long(legend.size()) * kLine + kMargin - 12),
                draw::kPaper);
  canvas.draw_text(title, kMargin, kMargin, kInk, 3);
  canvas.draw_text(reference, kMargin, kYReference, kMuted, 2);
  canvas.draw_text(verdict, kMargin + long(text_width(reference, 2)), kYReference, g.exact ? draw::kGood : draw::kBad,
                   2);
  const std::vector<float> image = picture_of(g.scene);
  canvas.draw_image(image, kMargin, kYBody, kPictureScale);
  canvas.draw_text(g.picture_name, kMargin, kYBody + kPicture + 8, kMuted, 2);
  for (std::size_t i = 0; i < g.words.size(); ++i)
    draw_word_map(canvas, image, g.maps[i], kVocabulary.at(g.words[i]), i);
  for (std::size_t l = 0; l < legend.size(); ++l)
    canvas.draw_text(legend[l], kMargin, y_legend + long(l) * kLine, kMuted, 2);
  return canvas;
}

Canvas render_sample(const std::vector<scenes::Scene>& scenes, const std::string& title) {
  std::vector<draw::Tile> tiles;
  for (const scenes::Scene& scene : scenes) tiles.push_back({picture_of(scene), sample_lines(scene), {}});
  return draw::render_tiles(title, tiles);
}

}  // namespace caption
