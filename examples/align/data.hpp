// The toy task's data (../shared/TASK.md): 32x32 RGB pictures of 1 to 3 coloured shapes on
// a 4x4 grid of 8x8 cells, each with a 4-word caption "colour shape vertical horizontal"
// describing one of its objects. Everything is generated from a seed.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "xtgrad/random.hpp"

namespace align {

constexpr std::size_t kImageSize = 32, kChannels = 3, kGrid = 4, kCellSize = 8;
constexpr std::size_t kPatches = kGrid * kGrid;                          // 16
constexpr std::size_t kPatchValues = kCellSize * kCellSize * kChannels;  // 192
constexpr std::size_t kCaptionLength = 4, kVocabSize = 14;
constexpr std::size_t kColours = 6, kShapes = 4;

// Word ids: colours 0-5, shapes 6-9, top 10, bottom 11, left 12, right 13.
extern const std::array<const char*, kVocabSize> kVocabulary;

using Caption = std::array<std::size_t, kCaptionLength>;

struct Object {
  std::size_t colour;  // 0..5
  std::size_t shape;   // 0..3: circle, square, triangle, cross
  std::size_t cell;    // row * 4 + column, the patch index
};

struct Example {
  std::vector<float> image;     // (y, x, channel), 32*32*3 values in [0, 1]
  std::vector<Object> objects;  // 1 to 3, in distinct cells
  std::size_t described;        // the object the caption describes
  Caption caption;
};

// Whether shape (0 circle, 1 square, 2 triangle, 3 cross) of radius r paints the pixel
// whose centre is (dy, dx) from the object's centre.
bool painted(std::size_t shape, double dy, double dx, double r);

// count examples from seed; the same seed gives the same examples on every run.
std::vector<Example> generate(std::size_t count, std::uint64_t seed);

Caption caption_of(const Object& object);
// The image holds an object of the caption's colour and shape in its quadrant.
bool matches(const Caption& caption, const Example& example);

std::string caption_text(const Caption& caption);
// "red circle top left" -> ids; throws std::invalid_argument naming the bad word (or the
// wrong word count) and listing the vocabulary.
Caption parse_caption(const std::string& text);

// The 16 patches of an image, row-major over the grid, each 8x8x3 values in (y, x, channel)
// order: writes 16*192 floats to out.
void patches_of(const Example& example, float* out);

}  // namespace align
