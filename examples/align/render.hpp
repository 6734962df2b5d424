// Pictures of the toy task for a person to look at, drawn on a draw::Canvas
// (examples/draw):
// - render_show: one test image, the caption's attention over its 16 patches and the
//   images the model ranks highest for the caption.
// - render_sample: a grid of generated images with their captions.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "canvas.hpp"
#include "data.hpp"

namespace align {

using draw::Canvas;
using draw::Rgb;

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
