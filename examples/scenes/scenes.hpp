// The toy pictures every example shares (docs/align-task.md, "Pictures"): 32x32 RGB
// pictures of 1 to 3 coloured shapes on a 4x4 grid of 8x8 cells, generated from a seed.
// xtgrad-align pairs each with a caption of one object; xtgrad-caption describes them all.
//
// A Scene holds what was drawn where and the seed of its background noise, not its pixels
// (20,000 stored pictures would take 245 MB, a scene about 200 bytes): render_image makes
// the pixels when they are needed, the same every time. Scene i of a split is drawn from its
// own random stream, seeded from (split seed, i), so it can be made without those before it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "xtgrad/random.hpp"

namespace scenes {

constexpr std::size_t kImageSize = 32, kChannels = 3, kGrid = 4, kCellSize = 8;
constexpr std::size_t kCells = kGrid * kGrid;                              // 16
constexpr std::size_t kImageValues = kImageSize * kImageSize * kChannels;  // 3072
constexpr std::size_t kColours = 6, kShapes = 4;

struct Object {
  std::size_t colour;  // 0..5: red, green, blue, yellow, magenta, cyan
  std::size_t shape;   // 0..3: circle, square, triangle, cross
  std::size_t cell;    // row * 4 + column
  // How it is drawn: its colour after the jitter (before clipping), its radius and its
  // centre in pixels (y, x). Left at zero by objects made by hand for captions only.
  std::array<float, 3> rgb{};
  double radius = 0, cy = 0, cx = 0;
};

struct Scene {
  std::vector<Object> objects;  // 1 to 3, in distinct cells, painted in this order
  // One of the objects, drawn uniformly after them (align's caption describes it; drawn
  // for every scene so that both examples see the same pictures from the same seed).
  std::size_t pick = 0;
  std::uint64_t noise_seed = 0;  // the background noise's random stream (render_image)
};

// Whether shape (0 circle, 1 square, 2 triangle, 3 cross) of radius r paints the pixel
// whose centre is (dy, dx) from the object's centre.
bool painted(std::size_t shape, double dy, double dx, double r);

// Scene `index` of the split with this seed; the same on every run and platform.
Scene generate_scene(std::uint64_t seed, std::size_t index);

// The picture, (y, x, channel), 32*32*3 values in [0, 1]: the background noise from
// noise_seed, the objects painted over it in order, everything clipped. Writes 3072 floats.
void render_image(const std::vector<Object>& objects, std::uint64_t noise_seed, float* out);
void render_image(const Scene& scene, float* out);

// A standard normal variate from a splitmix64 stream (state advanced): the sampler of the
// background noise, exposed for its tests.
double standard_normal(std::uint64_t& state);

}  // namespace scenes
