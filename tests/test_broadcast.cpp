// Broadcasting, exactly: detail::for_each_broadcast's visiting order and the broadcast
// ops' values and gradients (add, sub, mul, div, sum, mean) against a naive index
// computation over many shape pairs, compared with == (same arithmetic, same order); and
// add handing its gradient on without a copy (take_output_grad).
#include "helpers.hpp"

#include <tuple>
#include <vector>

#include "../autograd/src/detail.hpp"

using namespace xtgrad;

namespace {

// Offset in an array of shape `in` (right-aligned to out, size-1 and missing axes
// repeated) of the element of out at flat index i.
std::size_t naive_offset(const Shape& in, const Shape& out, std::size_t i) {
  std::size_t offset = 0, stride = 1;
  for (std::size_t k = 0; k < out.size(); ++k) {  // axes from the right
    const std::size_t d = out.size() - 1 - k, coord = i % out[d];
    i /= out[d];
    if (k >= in.size()) continue;
    const std::size_t dim = in[in.size() - 1 - k];
    if (dim != 1) offset += coord * stride;
    stride *= dim;
  }
  return offset;
}

std::size_t count_of(const Shape& s) {
  std::size_t n = 1;
  for (std::size_t d : s) n *= d;
  return n;
}

// Pairs of input shapes: broadcast along inner, middle, outer and several axes, size-1
// and missing axes, 0-size, scalars, both inputs broadcast, and large ones that merge
// axes and split over threads.
const std::vector<std::pair<Shape, Shape>> kPairs = {
    {{2, 3, 4}, {2, 3, 4}},
    {{2, 3, 4}, {4}},
    {{2, 3, 4}, {3, 1}},
    {{2, 3, 4}, {2, 1, 1}},
    {{2, 3, 4}, {1, 3, 4}},
    {{2, 3, 4}, {2, 3, 1}},
    {{4}, {2, 3, 4}},
    {{3, 1}, {2, 3, 4}},
    {{2, 1, 4}, {1, 3, 1}},
    {{5, 1}, {1, 6}},
    {{1, 6}, {5, 1}},
    {{3, 1, 4, 5}, {3, 2, 1, 5}},
    {{2, 3, 4, 5}, {1, 3, 1, 5}},
    {{2, 3, 4, 5}, {2, 1, 4, 1}},
    {{1, 1, 4, 1}, {2, 3, 1, 5}},
    {{}, {2, 3}},
    {{2, 3}, {}},
    {{}, {}},
    {{1}, {5}},
    {{5}, {1}},
    {{1, 1}, {1, 1}},
    {{1, 3, 1}, {1, 3, 1}},
    {{2, 0, 3}, {3}},
    {{0}, {1}},
    {{2, 1, 3}, {1, 0, 1}},
    {{7, 1, 1, 3}, {1, 1, 2, 3}},
    {{32, 1, 4, 64}, {32, 32, 4, 64}},
    {{32, 32, 4, 64}, {32, 1, 4, 64}},
    {{64, 5, 1, 128}, {64, 1, 3, 128}},
    {{96, 1, 300}, {1, 128, 1}},
    {{2, 700, 1}, {2, 1, 30}},
    {{40000}, {1}},
    {{1, 40000}, {3, 1}},
    {{33000, 2}, {2}},
};

Shape out_shape(const Shape& a, const Shape& b) {
  const std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t da = k < a.size() ? a[a.size() - 1 - k] : 1, db = k < b.size() ? b[b.size() - 1 - k] : 1;
    out[n - 1 - k] = da == 1 ? db : da;
  }
  return out;
}

template <class T> Tensor<T> values(const Shape& shape, std::uint64_t seed) {
  Generator gen(seed);
  return randn<T>(shape, gen, T(0), T(1), true);
}

// out = op(a, b) and both gradients under the output gradient g, computed naively:
// contributions added into each input's gradient in row-major order of out.
template <class T, class Fwd, class Back>
void check_binary(const char* name, Tensor<T> (*op)(const Tensor<T>&, const Tensor<T>&), Fwd forward, Back backward,
                  const Shape& sa, const Shape& sb, std::uint64_t seed) {
  CAPTURE(name);
  CAPTURE(shape_str(sa));
  CAPTURE(shape_str(sb));
  const Shape so = out_shape(sa, sb);
  Tensor<T> a = values<T>(sa, seed), b = values<T>(sb, seed + 1);
  const Array<T> g = values<T>(so, seed + 2).data();
  const T *x = a.data().data(), *y = b.data().data();
  std::vector<T> out(count_of(so)), ga(count_of(sa), T(0)), gb(count_of(sb), T(0));
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::size_t ia = naive_offset(sa, so, i), ib = naive_offset(sb, so, i);
    out[i] = forward(x[ia], y[ib]);
    const auto [da, db] = backward(x[ia], y[ib], out[i], g.data()[i]);
    ga[ia] += da;
    gb[ib] += db;
  }
  Tensor<T> c = op(a, b);
  REQUIRE(shape_str(c.shape()) == shape_str(so));
  CHECK(std::equal(out.begin(), out.end(), c.data().begin()));
  c.backward(g);
  REQUIRE(a.has_grad());
  REQUIRE(b.has_grad());
  CHECK(std::equal(ga.begin(), ga.end(), a.grad().begin()));
  CHECK(std::equal(gb.begin(), gb.end(), b.grad().begin()));
}

// Sets the thread count for a scope (the large pairs then split into bands; the bands
// must write exactly what one thread writes).
struct ThreadCount {
  int previous = num_threads();
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(previous); }
};

}  // namespace

TEST_CASE("for_each_broadcast visits out in row-major order with the naive offsets of a and b") {
  using Visit = std::tuple<std::size_t, std::size_t, std::size_t>;
  for (const auto& [sa, sb] : kPairs) {
    CAPTURE(shape_str(sa));
    CAPTURE(shape_str(sb));
    const Shape so = out_shape(sa, sb);
    std::vector<Visit> seen, expected;
    detail::for_each_broadcast(so, sa, sb,
                               [&](std::size_t i, std::size_t ia, std::size_t ib) { seen.emplace_back(i, ia, ib); });
    for (std::size_t i = 0; i < count_of(so); ++i)
      expected.emplace_back(i, naive_offset(sa, so, i), naive_offset(sb, so, i));
    CHECK(seen == expected);
  }
}

TEST_CASE_TEMPLATE("broadcast add, sub, mul, div: values and gradients exactly as the naive loop", T, float, double) {
  std::uint64_t seed = 100;
  for (int threads : {1, 3}) {
    const ThreadCount thread_count(threads);
    for (const auto& [sa, sb] : kPairs) {
      CAPTURE(threads);
      check_binary<T>(
          "add", &add<T>, [](T x, T y) { return x + y; },
          [](T, T, T, T g) {
            return std::pair{g, g};
          },
          sa, sb, seed++);
      check_binary<T>(
          "sub", &sub<T>, [](T x, T y) { return x - y; },
          [](T, T, T, T g) {
            return std::pair{g, -g};
          },
          sa, sb, seed++);
      check_binary<T>(
          "mul", &mul<T>, [](T x, T y) { return x * y; },
          [](T x, T y, T, T g) {
            return std::pair{g * y, g * x};
          },
          sa, sb, seed++);
      check_binary<T>(
          "div", &div<T>, [](T x, T y) { return x / y; },
          [](T, T y, T out, T g) {
            return std::pair{g / y, -g * out / y};
          },
          sa, sb, seed++);
    }
  }
}

TEST_CASE_TEMPLATE("sum and mean over axes: values and gradients exactly as the naive loop", T, float, double) {
  // (shape, axes); whole reductions to one number are left out: they sum in eight chains.
  const std::vector<std::pair<Shape, Axes>> cases = {
      {{2, 3, 4, 5}, {1}}, {{2, 3, 4, 5}, {0, 2}},  {{2, 3, 4, 5}, {3}}, {{2, 3, 4, 5}, {1, 2}}, {{2, 3, 4, 5}, {0, 3}},
      {{2, 3, 4, 5}, {0}}, {{2, 3, 4, 5}, {-1, 1}}, {{5, 1, 3}, {1}},    {{1, 6}, {0}},          {{2, 0, 3}, {0}},
      {{2, 0, 3}, {1}},    {{32, 32, 4, 64}, {1}},  {{300, 200}, {1}},   {{300, 200}, {0}},      {{64, 3, 256}, {0, 2}},
  };
  std::uint64_t seed = 900;
  for (int threads : {1, 3}) {
    const ThreadCount thread_count(threads);
    for (const auto& [shape, axes] : cases)
      for (bool keepdims : {false, true})
        for (bool is_mean : {false, true}) {
          CAPTURE(threads);
          CAPTURE(shape_str(shape));
          CAPTURE(keepdims);
          CAPTURE(is_mean);
          Shape keep = shape;
          std::size_t count = 1;  // elements summed into each output
          for (int axis : axes) {
            std::size_t& dim = keep[axis < 0 ? axis + int(shape.size()) : axis];
            count *= dim;
            dim = 1;
          }
          if (is_mean && count == 0) continue;  // refused: mean over an empty axis
          Tensor<T> x = values<T>(shape, seed++);
          const Array<T> g = values<T>(keep, seed++).data();
          std::vector<T> sums(count_of(keep), T(0)), gx(count_of(shape));
          const T scale = is_mean ? T(1) / T(count) : T(1);
          for (std::size_t i = 0; i < gx.size(); ++i) {
            const std::size_t k = naive_offset(keep, shape, i);
            sums[k] += x.data().data()[i];
            gx[i] = g.data()[k] * scale;
          }
          if (is_mean)
            for (T& s : sums) s /= T(count);
          Tensor<T> y = is_mean ? mean(x, axes, keepdims) : sum(x, axes, keepdims);
          REQUIRE(y.numel() == sums.size());
          CHECK(std::equal(sums.begin(), sums.end(), y.data().begin()));
          Array<T> gy = g;
          gy.reshape(y.shape());
          y.backward(gy);
          REQUIRE(x.has_grad());
          CHECK(std::equal(gx.begin(), gx.end(), x.grad().begin()));
        }
  }
}

// ---- add passes its gradient on without a copy ----------------------------------------

using testing::check_array;
using testing::D;
using testing::iota;
using testing::make;

namespace {
// The identity, whose backward hands a fresh gradient to its input and notes where that
// gradient's values live: the buffer add's backward then receives as its own gradient.
const double* spied = nullptr;
D spy(const D& x) {
  return make_result<double>("spy", Array<double>(x.data()), {x},
                             [](const std::vector<NodePtr<double>>& in, const Array<double>&, const Array<double>& g) {
                               Array<double> copy = g;
                               spied = copy.data();
                               add_grad(*in[0], std::move(copy));
                             });
}
}  // namespace

TEST_CASE("add hands its gradient to an input of its shape instead of copying it, when nothing else reads it") {
  const D c = make({2, 3}, {1, -2, 3, 0.5, 4, -1});
  D x = iota({2, 3}, true), y = iota({1, 3}, true);
  sum(spy(x + y) * c).backward();  // x takes the gradient (y is broadcast, summed first)
  CHECK(x.grad().data() == spied);
  check_array(x.grad(), {2, 3}, {1, -2, 3, 0.5, 4, -1});
  check_array(y.grad(), {1, 3}, {1.5, 2, 2});
  D a = iota({2, 3}, true), b = iota({2, 3}, true);
  sum(spy(a + b) * c).backward();  // both of the output's shape: b takes it, a gets a copy
  CHECK(b.grad().data() == spied);
  CHECK(a.grad().data() != spied);
  check_array(a.grad(), {2, 3}, {1, -2, 3, 0.5, 4, -1});
  check_array(b.grad(), {2, 3}, {1, -2, 3, 0.5, 4, -1});
}

TEST_CASE("add keeps its gradient where something still reads it: retain_grad, anomaly mode, x + x, accumulation") {
  const D c = make({2, 3}, {1, -2, 3, 0.5, 4, -1});
  const std::vector<double> cv = {1, -2, 3, 0.5, 4, -1};
  D x = iota({2, 3}, true), y = iota({1, 3}, true);
  D s = x + y;
  s.retain_grad();
  sum(spy(s) * c).backward();
  check_array(s.grad(), {2, 3}, cv);  // retained: still the add's own
  check_array(x.grad(), {2, 3}, cv);
  CHECK(x.grad().data() != s.grad().data());
  {
    AnomalyGuard anomaly;
    D u = iota({2, 3}, true);
    sum(spy(u + y) * c).backward();
    check_array(u.grad(), {2, 3}, cv);
  }
  D t = iota({2, 3}, true);
  sum(spy(t + t) * c).backward();  // one tensor twice: the gradient twice, nothing taken
  check_array(t.grad(), {2, 3}, {2, -4, 6, 1, 8, -2});
  sum(spy(t + y) * c).backward();  // t already has a gradient: it adds, nothing taken
  check_array(t.grad(), {2, 3}, {3, -6, 9, 1.5, 12, -3});
}
