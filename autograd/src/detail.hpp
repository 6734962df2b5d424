// Helpers shared by the op files; not installed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xstorage.hpp>

#include "parallel.hpp"
#include "xtgrad/random.hpp"
#include "xtgrad/tensor.hpp"

namespace xtgrad::detail {

[[noreturn]] inline void fail(const std::string& op, const std::string& what) {
  throw std::invalid_argument(op + ": " + what);
}

// Writes one element of a gradient by grad_target's rule: overwrite when beta is 0 (the
// buffer is uninitialised then: never read it, not even to multiply by 0), add otherwise.
template <class T> void write_grad(const GradTarget<T>& target, std::size_t i, T value) {
  target.data[i] = target.beta == T(0) ? value : target.data[i] + value;
}

// ---- undefined arguments --------------------------------------------------------------
// Every public op starts with check_defined(op, its arguments in order, up to the last
// tensor; ops_elementwise.cpp's binary() and unary() do it for the ops built on them): a
// default-constructed (undefined) Tensor is refused naming the op and the argument's
// position ("matmul: argument 2 is an undefined Tensor"). Without it the op's first use
// of the argument throws Tensor's own message, which cannot name the op.
template <class A> void check_argument(const char*, std::size_t, const A&) {}  // not a tensor
template <class T> void check_argument(const char* op, std::size_t position, const Tensor<T>& t) {
  if (!t.defined()) fail(op, "argument " + std::to_string(position) + " is an undefined Tensor");
}
template <class T> void check_argument(const char* op, std::size_t position, const std::optional<Tensor<T>>& t) {
  if (t && !t->defined()) fail(op, "argument " + std::to_string(position) + " is an undefined Tensor");
}
template <class T> void check_argument(const char* op, std::size_t position, const std::vector<Tensor<T>>& ts) {
  for (std::size_t i = 0; i < ts.size(); ++i)
    if (!ts[i].defined())
      fail(op, "argument " + std::to_string(position) + " holds an undefined Tensor at index " + std::to_string(i));
}
template <class... Args> void check_defined(const char* op, const Args&... args) {
  std::size_t position = 0;
  (check_argument(op, ++position, args), ...);
}

// axis in [-ndim, ndim) -> [0, ndim)
std::size_t normalize_axis(int axis, std::size_t ndim, const char* op);

// NumPy broadcast of two shapes; throws naming op and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// add_grad(node, grad) after undoing broadcasting: grad summed over the axes along which
// node's shape was broadcast (grad as it is when the shapes agree).
template <class T> void add_grad_summed(Node<T>& node, Array<T>&& grad);

template <class T> Shape shape_of(const Array<T>& a) { return Shape(a.shape().begin(), a.shape().end()); }

std::size_t product(const Shape& shape, std::size_t begin = 0, std::size_t end = SIZE_MAX);

// The loops of for_each_broadcast after simplifying its shapes: axes of size 1 dropped
// and adjacent axes merged wherever out, a and b all run through them as through one
// axis (both contiguous, or both broadcast). Offsets and visiting order stay those of the
// original shapes; the inner loop just gets longer. Axes outermost first.
struct BroadcastWalk {
  using Axes = xt::svector<std::size_t, 8>;  // inline up to 8 axes: no allocation per call
  Axes dims, stride_a, stride_b;             // element strides, 0 where broadcast
};

inline BroadcastWalk broadcast_walk(const Shape& out, const Shape& sa, const Shape& sb) {
  const std::size_t n = out.size();
  // stride of `shape` (right-aligned to out) along out's axis d: 0 where broadcast
  const auto stride = [n](const Shape& shape, std::size_t d, std::size_t& step) {
    const std::size_t k = n - 1 - d;  // axis counted from the right
    if (k >= shape.size()) return std::size_t(0);
    const std::size_t dim = shape[shape.size() - 1 - k], s = dim == 1 ? 0 : step;
    step *= dim;
    return s;
  };
  BroadcastWalk w;  // built innermost first, reversed at the end
  std::size_t step_a = 1, step_b = 1;
  for (std::size_t d = n; d-- > 0;) {
    const std::size_t ra = stride(sa, d, step_a), rb = stride(sb, d, step_b);
    if (out[d] == 1) continue;  // adds nothing to any offset
    if (!w.dims.empty() && ra == w.stride_a.back() * w.dims.back() && rb == w.stride_b.back() * w.dims.back()) {
      w.dims.back() *= out[d];  // axis d continues the group inside it
      continue;
    }
    w.dims.push_back(out[d]);
    w.stride_a.push_back(ra);
    w.stride_b.push_back(rb);
  }
  if (w.dims.empty()) w = {{1}, {0}, {0}};  // one element
  std::reverse(w.dims.begin(), w.dims.end());
  std::reverse(w.stride_a.begin(), w.stride_a.end());
  std::reverse(w.stride_b.begin(), w.stride_b.end());
  return w;
}

// One row of the walk: f(i + j, ia + j * step_a, ib + j * step_b) for j < length, in
// order. The steps are 0 or 1 (a contiguous or a broadcast innermost axis): each pair
// gets its own plain loop, which the compiler vectorises once f is inlined.
template <class F>
inline void broadcast_row(std::size_t i, std::size_t ia, std::size_t ib, std::size_t length, std::size_t step_a,
                          std::size_t step_b, F& f) {
  if (step_a == 1 && step_b == 1)
    for (std::size_t j = 0; j < length; ++j) f(i + j, ia + j, ib + j);
  else if (step_a == 1 && step_b == 0)
    for (std::size_t j = 0; j < length; ++j) f(i + j, ia + j, ib);
  else if (step_a == 0 && step_b == 1)
    for (std::size_t j = 0; j < length; ++j) f(i + j, ia, ib + j);
  else if (step_a == 0 && step_b == 0)
    for (std::size_t j = 0; j < length; ++j) f(i + j, ia, ib);
  else
    for (std::size_t j = 0; j < length; ++j) f(i + j, ia + j * step_a, ib + j * step_b);
}

// Visits every element of shape `out` in row-major order and calls f(i, ia, ib) with its
// flat index and the flat offsets of the matching elements of a (shape sa) and b (shape
// sb), both broadcast to out (right-aligned; size-1 or missing axes repeat). The loops
// behind broadcasting ops, add_grad_summed and reductions: xtensor's broadcast assignment
// and axis reductions are many times slower than this walk over contiguous data.
template <class F> void for_each_broadcast(const Shape& out, const Shape& sa, const Shape& sb, F&& f) {
  std::size_t total = 1;
  for (std::size_t d : out) total *= d;
  if (total == 0) return;
  if (sa == out && sb == out) {  // no broadcasting: one flat loop
    for (std::size_t i = 0; i < total; ++i) f(i, i, i);
    return;
  }
  const BroadcastWalk w = broadcast_walk(out, sa, sb);
  const std::size_t n = w.dims.size(), inner = w.dims[n - 1];
  const std::size_t step_a = w.stride_a[n - 1], step_b = w.stride_b[n - 1];
  BroadcastWalk::Axes index(n, 0);
  std::size_t ia = 0, ib = 0;
  for (std::size_t i = 0; i < total; i += inner) {
    broadcast_row(i, ia, ib, inner, step_a, step_b, f);
    for (std::size_t d = n - 1; d-- > 0;) {  // odometer over the outer axes
      ia += w.stride_a[d];
      ib += w.stride_b[d];
      if (++index[d] < w.dims[d]) break;
      ia -= w.stride_a[d] * w.dims[d];
      ib -= w.stride_b[d] * w.dims[d];
      index[d] = 0;
    }
  }
}

// for_each_broadcast with the outermost axis of `out` split into one band per thread.
// `written` is the shape of the array f writes into (out itself, an input's gradient, a
// reduction's kept shape): the loop is split only when that array has out's first axis,
// so that no two bands write the same element. Small loops run on the calling thread.
template <class F>
void for_each_broadcast_parallel(const Shape& written, const Shape& out, const Shape& sa, const Shape& sb, F&& f) {
  const auto splits = [&](const Shape& s) { return s.size() == out.size() && s[0] == out[0]; };
  if (out.empty() || out[0] < 2 || !splits(written) || product(out) < (std::size_t(1) << 15) ||
      parallel::threads() == 1)
    return for_each_broadcast(out, sa, sb, f);
  // An input's band: its rows begin..begin+length when it is split with out, else all of it.
  const auto band_of = [&](const Shape& s, std::size_t begin, std::size_t length, Shape& band) {
    band = s;
    if (!splits(s)) return std::size_t(0);
    band[0] = length;
    return begin * product(s, 1);
  };
  parallel::for_ranges(out[0], 1, [&](std::size_t begin, std::size_t end) {
    Shape band_out = out, band_a, band_b;
    band_out[0] = end - begin;
    const std::size_t base = begin * product(out, 1);
    const std::size_t base_a = band_of(sa, begin, end - begin, band_a);
    const std::size_t base_b = band_of(sb, begin, end - begin, band_b);
    for_each_broadcast(band_out, band_a, band_b,
                       [&](std::size_t i, std::size_t ia, std::size_t ib) { f(base + i, base_a + ia, base_b + ib); });
  });
}

// The one ordered sum over rows: add_band(begin, end, sums) adds rows [begin, end) of
// whatever is summed into sums (`width` values, zeroed, allocated by the thread that
// fills it). The bands are blocks of band_rows rows, spread over the threads and added
// into total in band order: the same sums in the same order at any thread count.
template <class T, class F>
void banded_sum(std::size_t rows, std::size_t width, T* total, F&& add_band, std::size_t band_rows = 256) {
  const std::size_t bands = std::max<std::size_t>(1, (rows + band_rows - 1) / band_rows);
  std::vector<std::vector<T>> partial(bands);
  parallel::for_each(bands, [&](std::size_t band) {
    std::vector<T> sums(width, T(0));
    add_band(band * band_rows, std::min(rows, (band + 1) * band_rows), sums.data());
    partial[band] = std::move(sums);
  });
  for (const auto& sums : partial)
    for (std::size_t j = 0; j < width; ++j) total[j] += sums[j];
}

// A bias's gradient: the column sums of g (rows, cols) written into `sum` (cols) by the
// rule of grad_target (beta 0: overwrite, 1: add).
template <class T> void write_column_sums(const T* g, std::size_t rows, std::size_t cols, GradTarget<T> sum) {
  if (!sum) return;
  if (sum.beta == T(0)) std::fill(sum.data, sum.data + cols, T(0));
  banded_sum(rows, cols, sum.data, [&](std::size_t begin, std::size_t end, T* sums) {
    for (std::size_t r = begin; r < end; ++r)
      for (std::size_t j = 0; j < cols; ++j) sums[j] += g[r * cols + j];
  });
}

// The one dropout mask: per element, 1/(1-p) with probability 1-p, else 0 (p = 1: all 0),
// drawn in element order from gen. The caller has checked p with check_probability.
template <class T> Array<T> dropout_scale(const Shape& shape, double p, Generator& gen) {
  Array<T> scale(shape);
  const T kept = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
  for (auto& s : scale) s = gen.uniform() >= p ? kept : T(0);
  return scale;
}

}  // namespace xtgrad::detail

// Explicit instantiation for both scalar types: XTGRAD_INSTANTIATE(MACRO) runs
// MACRO(float) and MACRO(double).
#define XTGRAD_INSTANTIATE(MACRO) MACRO(float) MACRO(double)
