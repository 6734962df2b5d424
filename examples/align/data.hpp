// The toy task's data (docs/align-task.md): the shared pictures (examples/scenes), each with
// a 4-word caption "colour shape vertical horizontal" describing one of its objects.
//
// An Example holds its scene (what was drawn where, and the seed of its background noise),
// not its pixels: the pixels are rendered when they are needed (patches_of for a batch,
// image_of for a picture), the same every time. Example i of a split is scene i of the
// split (scenes::generate_scene), so it can be made without the examples before it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "scenes.hpp"

namespace align {

using scenes::kCellSize;
using scenes::kChannels;
using scenes::kColours;
using scenes::kGrid;
using scenes::kImageSize;
using scenes::kImageValues;
using scenes::kShapes;
constexpr std::size_t kPatches = scenes::kCells;                         // 16
constexpr std::size_t kPatchValues = kCellSize * kCellSize * kChannels;  // 192
constexpr std::size_t kCaptionLength = 4, kVocabSize = 14;

// Word ids: colours 0-5, shapes 6-9, top 10, bottom 11, left 12, right 13.
extern const std::array<const char*, kVocabSize> kVocabulary;

using Caption = std::array<std::size_t, kCaptionLength>;

using scenes::Object;

struct Example {
  std::vector<Object> objects;  // 1 to 3, in distinct cells, painted in this order
  std::size_t described = 0;    // the object the caption describes
  Caption caption{};
  std::uint64_t noise_seed = 0;  // the background noise's random stream (render_image)
};

using scenes::painted;

// count examples from seed; the same seed gives the same examples on every run.
// generate(count, seed)[i] == generate_example(seed, i).
std::vector<Example> generate(std::size_t count, std::uint64_t seed);
// Example `index` of the split with this seed, alone.
Example generate_example(std::uint64_t seed, std::size_t index);

// The example's picture, (y, x, channel), 32*32*3 values in [0, 1] (scenes::render_image).
// Writes 3072 floats.
void render_image(const Example& example, float* out);
std::vector<float> image_of(const Example& example);

Caption caption_of(const Object& object);
// The image holds an object of the caption's colour and shape in its quadrant.
bool matches(const Caption& caption, const Example& example);

std::string caption_text(const Caption& caption);
// "red circle top left" -> ids; throws std::invalid_argument naming the bad word (or the
// wrong word count) and listing the vocabulary.
Caption parse_caption(const std::string& text);

// The 16 patches of an example's picture (rendered), row-major over the grid, each 8x8x3
// values in (y, x, channel) order: writes 16*192 floats to out.
void patches_of(const Example& example, float* out);

// The background noise's sampler (scenes.hpp), for its tests.
using scenes::standard_normal;

}  // namespace align
