#include "page.hpp"

#include <algorithm>

#include "scenes.hpp"

namespace draw {

std::vector<float> picture_of(const scenes::Scene& scene) {
  std::vector<float> image(scenes::kImageValues);
  scenes::render_image(scene, image.data());
  return image;
}

Canvas render_tiles(const std::string& title, const std::vector<Tile>& tiles, std::size_t per_row, std::size_t scale) {
  constexpr long kGap = 24;
  const long picture = long(scenes::kImageSize * scale), cell = long(scenes::kCellSize * scale);
  long column = picture;
  std::size_t lines = 0;
  for (const Tile& tile : tiles) {
    lines = std::max(lines, tile.lines.size());
    for (const std::string& line : tile.lines) column = std::max(column, long(text_width(line, 2)));
  }
  const std::size_t cols = std::max<std::size_t>(1, std::min(per_row, tiles.size()));
  const std::size_t rows = (tiles.size() + cols - 1) / cols;
  const long tile_h = picture + 10 + long(lines) * kLine + 14;
  const long y_grid = kMargin + kLine + 14;
  const long width = 2 * kMargin + std::max(long(cols) * column + long(cols - 1) * kGap, long(text_width(title, 2)));
  const long height = y_grid + long(rows) * tile_h + kMargin - 14;

  Canvas canvas(std::size_t(width), std::size_t(height), kPaper);
  canvas.draw_text(title, kMargin, kMargin, kInk, 2);
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    const Tile& tile = tiles[i];
    const long x = kMargin + long(i % cols) * (column + kGap), y = y_grid + long(i / cols) * tile_h;
    const long ix = x + (column - picture) / 2;
    canvas.draw_image(tile.image, ix, y, scale);
    for (std::size_t c : tile.outlined_cells)
      canvas.stroke_rect(ix + long(c % scenes::kGrid) * cell, y + long(c / scenes::kGrid) * cell, cell, cell, 2,
                         kWhite);
    for (std::size_t l = 0; l < tile.lines.size(); ++l)
      canvas.draw_text(tile.lines[l], x + (column - long(text_width(tile.lines[l], 2))) / 2,
                       y + picture + 10 + long(l) * kLine, kInk, 2);
  }
  return canvas;
}

}  // namespace draw
