// The toy task's data (docs/align-task.md): 32x32 RGB pictures of 1 to 3 coloured shapes on
// a 4x4 grid of 8x8 cells, each with a 4-word caption "colour shape vertical horizontal"
// describing one of its objects. Everything is generated from a seed.
//
// An Example holds its scene (what was drawn where, and the seed of its background noise),
// not its pixels: 20,000 stored images would take 245 MB, a scene about 200 bytes. The
// pixels are rendered when they are needed (patches_of for a batch, image_of for a
// picture), the same every time. Example i of a split is drawn from its own random stream,
// seeded from (split seed, i), so it can be made without the examples before it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "xtgrad/random.hpp"

namespace align {

constexpr std::size_t kImageSize = 32, kChannels = 3, kGrid = 4, kCellSize = 8;
constexpr std::size_t kPatches = kGrid * kGrid;                            // 16
constexpr std::size_t kPatchValues = kCellSize * kCellSize * kChannels;    // 192
constexpr std::size_t kImageValues = kImageSize * kImageSize * kChannels;  // 3072
constexpr std::size_t kCaptionLength = 4, kVocabSize = 14;
constexpr std::size_t kColours = 6, kShapes = 4;

// Word ids: colours 0-5, shapes 6-9, top 10, bottom 11, left 12, right 13.
extern const std::array<const char*, kVocabSize> kVocabulary;

using Caption = std::array<std::size_t, kCaptionLength>;

struct Object {
  std::size_t colour;  // 0..5
  std::size_t shape;   // 0..3: circle, square, triangle, cross
  std::size_t cell;    // row * 4 + column, the patch index
  // How it is drawn: its colour after the jitter (before clipping), its radius and its
  // centre in pixels (y, x). Left at zero by objects made by hand for captions only.
  std::array<float, 3> rgb{};
  double radius = 0, cy = 0, cx = 0;
};

struct Example {
  std::vector<Object> objects;  // 1 to 3, in distinct cells, painted in this order
  std::size_t described = 0;    // the object the caption describes
  Caption caption{};
  std::uint64_t noise_seed = 0;  // the background noise's random stream (render_image)
};

// Whether shape (0 circle, 1 square, 2 triangle, 3 cross) of radius r paints the pixel
// whose centre is (dy, dx) from the object's centre.
bool painted(std::size_t shape, double dy, double dx, double r);

// count examples from seed; the same seed gives the same examples on every run.
// generate(count, seed)[i] == generate_example(seed, i).
std::vector<Example> generate(std::size_t count, std::uint64_t seed);
// Example `index` of the split with this seed, alone.
Example generate_example(std::uint64_t seed, std::size_t index);

// The example's picture, (y, x, channel), 32*32*3 values in [0, 1]: the background noise
// from its noise_seed, its objects painted over it, everything clipped. Writes 3072 floats.
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

// A standard normal variate from a splitmix64 stream (state advanced): the sampler of the
// background noise, exposed for its tests.
double standard_normal(std::uint64_t& state);

}  // namespace align
