// Pictures of the caption task for a person to look at, drawn on a draw::Canvas
// (examples/draw):
// - render_generate: a picture, the caption generated for it and the reference, and for
//   each generated word its cross-attention over the picture's 4x4 grid as a heat map.
// - render_sample: pictures of a split with their reference captions.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "canvas.hpp"
#include "grammar.hpp"

namespace caption {

using CellWeights = std::array<float, scenes::kCells>;

// What generate shows.
struct GeneratedCaption {
  scenes::Scene scene;
  std::string picture_name;            // e.g. "scene 0 of seed 7"
  std::vector<std::size_t> words;      // the generated words (before <eos>)
  std::vector<CellWeights> maps;       // one per word: where it looked (word_attention)
  std::vector<std::size_t> reference;  // the reference caption's words
  std::string verdict;                 // "exact", "not exact", "does not parse"
  bool exact = false;
  std::string averaged_over;  // e.g. "the 4 heads and the 2 decoder layers"
};

// Heat maps of render_generate: kMapsPerRow per row (a phrase and its "and"), each the
// picture at kMapScale with the weights blended over it at kMapAlpha (draw_heatmap's colours:
// relative to the map's largest weight), the largest cell outlined in white.
constexpr std::size_t kMapsPerRow = 5, kMapScale = 3;
constexpr float kMapAlpha = 0.7f;
// The top-left corner of word i's heat map on render_generate's page.
struct Corner {
  long x, y;
};
Corner generate_map_corner(std::size_t word);

// The picture enlarged 8x on the left, the caption as the title, the reference and the
// verdict under it, and to the right, a heat map per word with the word and its largest
// weight under it; a legend says what the maps average over. Throws std::invalid_argument
// when maps and words differ in number.
draw::Canvas render_generate(const GeneratedCaption& generated);

// The scenes in a grid, 4 per row, each picture 5x enlarged with its reference caption
// under it, a phrase per two lines ("red circle" / "top left" / "and blue square" / ...).
draw::Canvas render_sample(const std::vector<scenes::Scene>& scenes, const std::string& title);

}  // namespace caption
