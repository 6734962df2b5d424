// The look of the examples' pages (paper, ink, margins) and the page every `sample`
// command draws: pictures in a grid, each with lines of text under it (xtgrad-align sample,
// xtgrad-caption sample, xtgrad-vqa sample).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "canvas.hpp"
#include "scenes.hpp"

namespace draw {

constexpr Rgb kPaper{0.97f, 0.97f, 0.96f};
constexpr Rgb kInk{0.12f, 0.12f, 0.14f};
constexpr Rgb kMuted{0.40f, 0.40f, 0.44f};
constexpr Rgb kWhite{1.0f, 1.0f, 1.0f};
constexpr Rgb kGood{0.10f, 0.62f, 0.22f};  // matches, exact
constexpr Rgb kBad{0.86f, 0.16f, 0.12f};   // does not
constexpr long kMargin = 24;
constexpr long kLine = 26;  // line pitch of scale-2 text

// The scene's picture as a Tile's image: 32x32x3, (y, x, channel), values in [0, 1].
std::vector<float> picture_of(const scenes::Scene& scene);

// One picture of a grid page.
struct Tile {
  std::vector<float> image;                 // 32x32x3, (y, x, channel), values in [0, 1]
  std::vector<std::string> lines;           // scale-2 text centred under the picture
  std::vector<std::size_t> outlined_cells;  // cells (row * 4 + column) outlined in white
};

// The title over the tiles in a grid of per_row columns, each picture enlarged `scale` times
// and centred in a column as wide as the widest line; every row is as tall as the tile with
// the most lines.
Canvas render_tiles(const std::string& title, const std::vector<Tile>& tiles, std::size_t per_row = 4,
                    std::size_t scale = 5);

}  // namespace draw
