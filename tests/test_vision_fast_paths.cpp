// max_pool2d's two loops against a naive pool, on inputs with ties and NaN: the 2x2 loop
// (kernel 2, stride 2, no padding: windows tiling the plane) and the general window loop.
#include <cmath>
#include <utility>
#include <vector>

#include "helpers.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// Values with many ties (whole numbers 0..3), and a few NaN when nan_every > 0.
D tied_input(const Shape& shape, std::uint64_t seed, std::size_t nan_every) {
  Generator gen(seed);
  D x = rand<double>(shape, gen, 0.0, 4.0);
  double* v = x.mutable_data().data();
  for (std::size_t i = 0; i < x.numel(); ++i)
    v[i] = nan_every && gen.below(nan_every) == 0 ? std::nan("") : std::floor(v[i]);
  return x.set_requires_grad(true);
}

struct PoolCase {
  std::size_t kernel, stride, padding;
  bool ceil_mode;
};

// max_pool2d as its definition: window (oh, ow) covers rows oh stride - padding + [0,
// kernel) clipped to the input; its output is the first NaN, else the first maximum in
// row-major order, and dy goes to that position. Returns y and dx for dy = g.
std::pair<std::vector<double>, std::vector<double>> reference_pool(const D& x, const PoolCase& c, const D& y,
                                                                   const D& g) {
  const Shape s = x.shape(), ys = y.shape();
  const double* in = x.data().data();
  std::vector<double> out, dx(x.numel(), 0.0);
  for (std::size_t p = 0; p < s[0] * s[1]; ++p)
    for (std::size_t oh = 0; oh < ys[2]; ++oh)
      for (std::size_t ow = 0; ow < ys[3]; ++ow) {
        long best = -1;
        for (long h = long(oh * c.stride) - long(c.padding); h < long(oh * c.stride - c.padding + c.kernel); ++h)
          for (long w = long(ow * c.stride) - long(c.padding); w < long(ow * c.stride - c.padding + c.kernel); ++w) {
            if (h < 0 || w < 0 || h >= long(s[2]) || w >= long(s[3])) continue;
            const long at = long(p * s[2] * s[3]) + h * long(s[3]) + w;
            const bool nan_first = std::isnan(in[at]) && (best < 0 || !std::isnan(in[best]));
            if (best < 0 || nan_first || in[at] > in[best]) best = at;
          }
        out.push_back(in[best]);
        dx[std::size_t(best)] += g.data().data()[out.size() - 1];
      }
  return {out, dx};
}

// Both values NaN, or equal.
bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

void check_pool_against_reference(const Shape& shape, const PoolCase& c, std::uint64_t seed) {
  const D x = tied_input(shape, seed, 7);
  const D y = max_pool2d(x, c.kernel, Size2(c.stride), c.padding, 1, c.ceil_mode);
  const D g = input(y.shape(), seed + 1).set_requires_grad(false);
  sum(y * g).backward();
  const auto [out, dx] = reference_pool(x, c, y, g);
  REQUIRE(out.size() == y.numel());
  for (std::size_t i = 0; i < out.size(); ++i) CHECK_MESSAGE(same(y.data().data()[i], out[i]), "output " << i);
  for (std::size_t i = 0; i < dx.size(); ++i) CHECK_MESSAGE(x.grad().data()[i] == dx[i], "dx " << i);
}

}  // namespace

TEST_CASE("vision fast paths: max_pool2d with ties and NaN matches a naive pool, 2x2 tiling or not") {
  // kernel 2 stride 2 without padding: the 2x2 loop, odd sizes dropping their last row/column
  check_pool_against_reference({2, 3, 8, 6}, {2, 2, 0, false}, 1101);
  check_pool_against_reference({1, 2, 7, 9}, {2, 2, 0, false}, 1102);
  check_pool_against_reference({1, 2, 6, 8}, {2, 2, 0, true}, 1103);  // ceil_mode, nothing to add
  // the general loop: a clipped last window (ceil_mode, odd), padding, overlapping windows
  check_pool_against_reference({1, 2, 7, 9}, {2, 2, 0, true}, 1104);
  check_pool_against_reference({2, 1, 6, 6}, {2, 2, 1, false}, 1105);
  check_pool_against_reference({1, 2, 5, 7}, {2, 1, 0, false}, 1106);
  check_pool_against_reference({1, 2, 7, 7}, {3, 2, 1, true}, 1107);
}

TEST_CASE("vision fast paths: gradcheck max_pool2d kernel 2 on even and odd sizes") {
  grad("max_pool2d", [](const In& in) { return max_pool2d(in[0], 2); }, {input({2, 3, 4, 6}, 1111)});
  grad("max_pool2d", [](const In& in) { return max_pool2d(in[0], 2); }, {input({1, 2, 7, 5}, 1112)});
}
