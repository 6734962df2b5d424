// The CNN fast paths. conv2d's contiguous-rows path (stride 1 and an output as wide as the
// input, as 3x3 with padding 1: im2col copies and col2im adds one run per kernel tap and
// fixes the columns that wrapped around a row's end): its forward against a naive
// convolution, its backward by gradcheck, on shapes that reach every edge of the run (taps
// wholly in the padding, rows cut at the top or bottom, dilation, groups). max_pool2d's
// 2x2 loop in float, compiled per instruction set: against the double one, which
// test_vision_fast_paths.cpp checks against a naive pool.
#include <cmath>
#include <optional>
#include <vector>

#include "helpers.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

using OptD = std::optional<D>;

struct ConvCase {
  Shape x, weight;
  Size2 padding, dilation;
  std::size_t groups;
};

// conv2d with stride 1 by its definition: one sum per output value, taps in the padding skipped.
std::vector<double> naive_conv(const D& x, const D& w, const D& b, const ConvCase& c, const Shape& ys) {
  const Shape xs = x.shape(), ws = w.shape();
  const std::size_t group_in = ws[1], group_out = ws[0] / c.groups;
  const auto at = [](const D& t, std::size_t a, std::size_t b, std::size_t c, std::size_t d) {
    const Shape s = t.shape();
    return t.data().data()[((a * s[1] + b) * s[2] + c) * s[3] + d];
  };
  std::vector<double> y;
  for (std::size_t n = 0; n < ys[0]; ++n)
    for (std::size_t o = 0; o < ys[1]; ++o)
      for (std::size_t oh = 0; oh < ys[2]; ++oh)
        for (std::size_t ow = 0; ow < ys[3]; ++ow) {
          double total = b.data().data()[o];
          for (std::size_t ci = 0; ci < group_in; ++ci)
            for (std::size_t i = 0; i < ws[2]; ++i)
              for (std::size_t j = 0; j < ws[3]; ++j) {
                const long h = long(oh + i * c.dilation.h) - long(c.padding.h);
                const long v = long(ow + j * c.dilation.w) - long(c.padding.w);
                if (h < 0 || v < 0 || h >= long(xs[2]) || v >= long(xs[3])) continue;
                total += at(w, o, ci, i, j) * at(x, n, o / group_out * group_in + ci, std::size_t(h), std::size_t(v));
              }
          y.push_back(total);
        }
  return y;
}

void check_contiguous_rows(const ConvCase& c, std::uint64_t seed) {
  const D x = input(c.x, seed), w = input(c.weight, seed + 1), b = input({c.weight[0]}, seed + 2);
  const auto conv = [c](const In& in) { return conv2d(in[0], in[1], OptD(in[2]), 1, c.padding, c.dilation, c.groups); };
  const D y = conv({x, w, b});
  REQUIRE(y.shape()[3] == c.x[3]);  // as wide as the input: the contiguous-rows path
  const std::vector<double> expected = naive_conv(x, w, b, c, y.shape());
  REQUIRE(expected.size() == y.numel());
  for (std::size_t i = 0; i < expected.size(); ++i)
    CHECK_MESSAGE(y.data().data()[i] == doctest::Approx(expected[i]).epsilon(1e-12), "output " << i);
  grad("conv2d", conv, {x, w, b});
}

}  // namespace

TEST_CASE("cnn fast paths: conv2d with rows contiguous matches a naive convolution and gradcheck") {
  check_contiguous_rows({{2, 3, 5, 6}, {4, 3, 3, 3}, 1, 1, 1}, 1201);            // the CNNs' 3x3, padding 1
  check_contiguous_rows({{1, 2, 5, 4}, {3, 2, 2, 3}, Size2(0, 1), 1, 1}, 1204);  // one row fewer out
  check_contiguous_rows({{1, 2, 6, 5}, {2, 2, 3, 3}, 2, 2, 1}, 1207);            // dilation 2, padding 2
  check_contiguous_rows({{1, 1, 2, 2}, {2, 1, 5, 5}, 2, 1, 1}, 1210);            // taps wholly in the padding
  check_contiguous_rows({{2, 4, 4, 3}, {6, 2, 3, 3}, 1, 1, 2}, 1213);            // groups 2
  check_contiguous_rows({{1, 2, 3, 7}, {2, 2, 1, 1}, 0, 1, 1}, 1216);            // 1x1, no wrapped columns
}

// Whole numbers 0..3 with signed zeros (ties everywhere, -0 against +0) and a NaN every
// nan_every values: max_pool2d kernel 2 in float must pick the same value (bit for bit,
// the sign of a zero included) and send dy to the same position as in double.
TEST_CASE("cnn fast paths: max_pool2d 2x2 in float matches double on ties, signed zeros and NaN") {
  for (const Shape& shape : {Shape{2, 3, 8, 6}, Shape{1, 2, 7, 9}, Shape{3, 2, 32, 32}, Shape{1, 1, 2, 2}}) {
    Generator gen(1301);
    D x = rand<double>(shape, gen, 0.0, 4.0);
    double* v = x.mutable_data().data();
    for (std::size_t i = 0; i < x.numel(); ++i)
      v[i] = gen.below(11) == 0 ? std::nan("") : gen.below(3) == 0 ? -std::floor(v[i]) : std::floor(v[i]);
    Tensor<float> xf(Array<float>(x.data()), true);
    x.set_requires_grad(true);
    const D y = max_pool2d(x, 2);
    const Tensor<float> yf = max_pool2d(xf, 2);
    REQUIRE(yf.shape() == y.shape());
    const D g = input(y.shape(), 1302).set_requires_grad(false);
    sum(y * g).backward();
    sum(yf * Tensor<float>(Array<float>(g.data()))).backward();
    for (std::size_t i = 0; i < y.numel(); ++i) {
      const double a = y.data().data()[i], b = double(yf.data().data()[i]);
      CHECK_MESSAGE(((std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b))),
                    "output " << i << " of " << shape_str(shape));
    }
    for (std::size_t i = 0; i < x.numel(); ++i)
      CHECK_MESSAGE(float(x.grad().data()[i]) == xf.grad().data()[i], "dx " << i << " of " << shape_str(shape));
  }
}
