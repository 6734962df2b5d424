#include "scenes.hpp"

#include <algorithm>
#include <cmath>

namespace scenes {

namespace {

constexpr float kColourRGB[kColours][3] = {{0.90f, 0.15f, 0.15f}, {0.15f, 0.80f, 0.20f}, {0.20f, 0.35f, 0.95f},
                                           {0.95f, 0.90f, 0.15f}, {0.90f, 0.20f, 0.85f}, {0.15f, 0.85f, 0.90f}};

}  // namespace

bool painted(std::size_t shape, double dy, double dx, double r) {
  switch (shape) {
    case 0:
      return dy * dy + dx * dx <= r * r;  // circle
    case 1:
      return std::abs(dy) <= 0.85 * r && std::abs(dx) <= 0.85 * r;  // square
    case 2:
      return dy >= -r && dy <= 0.8 * r && std::abs(dx) <= 0.6 * (dy + r);  // triangle
    default:                                                               // cross
      return (std::abs(dy) <= 0.35 * r && std::abs(dx) <= r) || (std::abs(dx) <= 0.35 * r && std::abs(dy) <= r);
  }
}

namespace {

// splitmix64 (Steele, Lea and Flood 2014): a Weyl sequence through a bijective mixing
// function with full avalanche. Integer arithmetic only: the same bits on every platform.
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t next_bits(std::uint64_t& state) { return mix64(state += kGolden); }

// The seed of example `index` of the split with seed `seed`: output index + 1 of a
// splitmix64 stream whose start is itself mixed from the split seed, so that neighbouring
// split seeds (train S, test S + 1) and neighbouring indices give unrelated streams.
std::uint64_t example_seed(std::uint64_t seed, std::uint64_t index) {
  return mix64(mix64(seed + kGolden) + (index + 1) * kGolden);
}

// The ziggurat method for the standard normal (Marsaglia and Tsang 2000, 256 layers; the
// tables as in their zigset). The background noise needs 3072 normals per picture and the
// pictures are rendered for every batch: with Box-Muller (a log, a sqrt, a sin and a cos
// per pair) a picture cost 62 us, 2 ms a batch; here 99% of the draws cost one random
// word, a table lookup, a compare and a multiply, and a picture 6 to 7 us. It is exact:
// the layers cover the density's area exactly and the rare points outside the rectangles'
// inner parts are decided against the density itself (the wedges) or drawn from the exact
// tail beyond r (Marsaglia 1964).
//
// Each draw takes one 64-bit word: the layer and the signed position in it come from
// separate bits (the 32-bit original reuses the low bits of the position as the layer).
// Across platforms: the draws use integer arithmetic, one multiply by a table entry and,
// rarely, exp and log; the tables are computed with exp, log and erfc. A libm that rounds
// one of these differently in the last place can change a draw only where it falls within
// an ulp of a boundary (as Box-Muller's sin and log could change any draw).
class Ziggurat {
 public:
  Ziggurat() {
    // r: the right edge of the bottom layer; v: every layer's area (the base strip's
    // includes the tail beyond r), v = r f(r) + integral of f from r to infinity.
    const double r = kR, fr = density(r);
    const double v = r * fr + std::sqrt(kHalfPi) * std::erfc(r / std::sqrt(2.0));
    const double base_width = v / fr;  // the base strip as a rectangle of height f(r)
    inner_[0] = std::int64_t(r / base_width * kScale);
    width_[0] = base_width / kScale;
    height_[0] = 1.0;  // f(x_0) with x_0 = 0: the top of the top layer
    double x = r;      // x_i, the right edge of layer i, from the bottom layer up
    width_[255] = r / kScale;
    height_[255] = fr;
    for (std::size_t i = 254; i >= 1; --i) {
      const double below = x;
      x = std::sqrt(-2.0 * std::log(v / below + density(below)));
      inner_[i + 1] = std::int64_t(x / below * kScale);  // the part of layer i+1 left of x_i
      width_[i] = x / kScale;
      height_[i] = density(x);
    }
    inner_[1] = 0;  // the top layer is all wedge
  }

  // One draw, taking exactly one word of the stream.
  double operator()(std::uint64_t& state) const {
    const std::uint64_t bits = next_bits(state);
    // Bits 0-7 pick the layer, bits 11-63 are the signed position in it: the sign comes
    // with the position, without a branch (a random one, mispredicted every other draw,
    // would cost more than the rest of the draw).
    const std::size_t layer = bits & 255;
    // An arithmetic shift (GCC and Clang; C++20 makes it the rule): in [-2^52, 2^52), exact
    // as a double.
    const std::int64_t position = std::int64_t(bits) >> 11;
    if (std::abs(position) < inner_[layer]) return double(position) * width_[layer];  // 99.3%
    return outside(bits);
  }

 private:
  // The draw whose first point fell outside its layer's inner part (0.7% of draws):
  // decided there, or drawn afresh (keeping its sign, independent of the magnitude). The
  // further words come from a stream seeded by this word, not from the caller's, so draw
  // k of a stream is a function of word k alone and the caller's state never has to leave
  // its register (by reference, it went through memory at every draw: 5% slower). Out of
  // line: the drawing loops stay small.
  [[gnu::noinline]] double outside(std::uint64_t bits) const {
    std::uint64_t more = bits;
    const double sign = std::int64_t(bits) < 0 ? -1.0 : 1.0;
    for (;;) {
      const std::size_t layer = bits & 255;
      const std::uint64_t magnitude = std::uint64_t(std::abs(std::int64_t(bits) >> 11));
      const double x = double(magnitude) * width_[layer];
      if (std::int64_t(magnitude) < inner_[layer]) return sign * x;
      if (layer == 0) {  // beyond r: the tail, by Marsaglia's method
        double t, y;
        do {
          t = -std::log(open_uniform(more)) / kR;
          y = -std::log(open_uniform(more));
        } while (y + y < t * t);
        return sign * (kR + t);
      }
      // A wedge: accept when a uniform height in the layer falls under the density.
      if (height_[layer] + open_uniform(more) * (height_[layer - 1] - height_[layer]) < density(x)) return sign * x;
      bits = next_bits(more);
    }
  }

  static constexpr double kR = 3.6541528853610088;  // the 256-layer ziggurat's r
  static constexpr double kHalfPi = 1.5707963267948966;
  static constexpr double kScale = 4503599627370496.0;                // 2^52, the positions' range either side of 0
  static double density(double x) { return std::exp(-0.5 * x * x); }  // unnormalised
  static double open_uniform(std::uint64_t& state) { return (double(next_bits(state) >> 12) + 0.5) / kScale; }

  std::array<std::int64_t, 256> inner_;  // layer i is under the curve left of inner_[i] / 2^52
  std::array<double, 256> width_;        // x_i / 2^52 (the base strip: its width as a rectangle)
  std::array<double, 256> height_;       // f(x_i)
};

const Ziggurat& ziggurat() {
  static const Ziggurat table;
  return table;
}

// Paints the object's pixels with its colour (clipped): only its bounding box is visited,
// every shape lies within r of its centre in both axes.
void paint(const Object& o, float* image) {
  float rgb[3];
  for (std::size_t c = 0; c < 3; ++c) rgb[c] = std::clamp(o.rgb[c], 0.0f, 1.0f);
  const auto first = [](double low) { return std::size_t(std::clamp(std::floor(low), 0.0, double(kImageSize))); };
  const std::size_t y0 = first(o.cy - o.radius - 1), y1 = first(o.cy + o.radius + 1);
  const std::size_t x0 = first(o.cx - o.radius - 1), x1 = first(o.cx + o.radius + 1);
  for (std::size_t y = y0; y < y1; ++y)
    for (std::size_t x = x0; x < x1; ++x)
      if (painted(o.shape, y + 0.5 - o.cy, x + 0.5 - o.cx, o.radius))
        std::copy(rgb, rgb + 3, image + (y * kImageSize + x) * kChannels);
}

}  // namespace

Scene generate_scene(std::uint64_t seed, std::size_t index) {
  // The scene's few draws come from an xtgrad::Generator of the example's own; the noise,
  // 3072 draws at every rendering, from a splitmix64 stream (one word of state, which the
  // scene keeps) seeded by it.
  xtgrad::Generator gen(example_seed(seed, index));
  Scene scene;
  // 1 to 3 objects in distinct cells: the first n of a shuffled list of the 16 cells.
  const std::size_t n = 1 + gen.below(3);
  std::array<std::size_t, kCells> cells;
  for (std::size_t i = 0; i < kCells; ++i) cells[i] = i;
  for (std::size_t i = 0; i < n; ++i) std::swap(cells[i], cells[i + gen.below(kCells - i)]);

  for (std::size_t k = 0; k < n; ++k) {
    Object obj;
    obj.colour = gen.below(kColours);
    obj.shape = gen.below(kShapes);
    obj.cell = cells[k];
    for (std::size_t c = 0; c < 3; ++c) obj.rgb[c] = float(kColourRGB[obj.colour][c] + gen.uniform(-0.08, 0.08));
    obj.radius = gen.uniform(2.6, 3.5);
    obj.cy = double(obj.cell / kGrid * kCellSize) + kCellSize / 2.0 + gen.uniform(-0.5, 0.5);
    obj.cx = double(obj.cell % kGrid * kCellSize) + kCellSize / 2.0 + gen.uniform(-0.5, 0.5);
    scene.objects.push_back(obj);
  }
  scene.pick = gen.below(n);
  scene.noise_seed = gen.next_u64();
  return scene;
}

double standard_normal(std::uint64_t& state) { return ziggurat()(state); }

void render_image(const std::vector<Object>& objects, std::uint64_t noise_seed, float* out) {
  const Ziggurat& normal = ziggurat();
  std::uint64_t state = noise_seed;
  // Background 0.1 + N(0, 0.03) per value, clipped here: clipping the noise now and each
  // colour as it is painted is clipping the finished picture.
  for (std::size_t i = 0; i < kImageValues; ++i) out[i] = std::clamp(float(0.1 + 0.03 * normal(state)), 0.0f, 1.0f);
  for (const Object& o : objects) paint(o, out);
}

void render_image(const Scene& scene, float* out) { render_image(scene.objects, scene.noise_seed, out); }

}  // namespace scenes
