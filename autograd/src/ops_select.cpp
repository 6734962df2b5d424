// Non-differentiable helpers for reading results and building masks: argmax, topk and a
// lower-triangular (causal) mask. They return plain arrays: nothing flows back through an
// index.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {

// x (..., n, ...) -> x's shape without axis: the first index of the largest value (NaN
// counts as the largest, as torch.argmax)
template <class T> Indices argmax(const Tensor<T>& x, int axis) {
  detail::check_defined("argmax", x);
  if (x.dim() == 0) detail::fail("argmax", "needs at least one dimension, got a scalar");
  const Shape xs = x.shape();
  const std::size_t a = detail::normalize_axis(axis, xs.size(), "argmax");
  const std::size_t outer = detail::product(xs, 0, a), n = xs[a], inner = detail::product(xs, a + 1);
  if (n == 0) detail::fail("argmax", "axis " + std::to_string(axis) + " of " + shape_str(xs) + " is empty");
  Shape out_shape = xs;
  out_shape.erase(out_shape.begin() + long(a));
  Indices out(out_shape);
  const T* data = x.data().data();
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < inner; ++j) {
      const T* first = data + o * n * inner + j;
      std::size_t best = 0;
      for (std::size_t i = 1; i < n && !std::isnan(first[best * inner]); ++i)
        if (first[i * inner] > first[best * inner] || std::isnan(first[i * inner])) best = i;
      out.data()[o * inner + j] = best;
    }
  return out;
}

// x (..., n) -> the k largest of each last-axis row, largest first (equal values in index
// order, NaN first), and their indices, both (..., k)
template <class T> TopK<T> topk(const Tensor<T>& x, std::size_t k) {
  detail::check_defined("topk", x);
  if (x.dim() == 0) detail::fail("topk", "needs at least one dimension, got a scalar");
  const Shape xs = x.shape();
  const std::size_t n = xs.back(), rows = n ? x.numel() / n : 0;
  if (k > n) detail::fail("topk", "k = " + std::to_string(k) + " is more than the last axis of " + shape_str(xs));
  Shape out_shape = xs;
  out_shape.back() = k;
  TopK<T> result{Array<T>(out_shape), Indices(out_shape)};
  std::vector<std::size_t> order(n);
  for (std::size_t r = 0; r < rows; ++r) {
    const T* row = x.data().data() + r * n;
    std::iota(order.begin(), order.end(), std::size_t(0));
    // NaN ranks above every number, as in torch.topk (and argmax); a strict weak order
    std::stable_sort(order.begin(), order.end(), [row](std::size_t i, std::size_t j) {
      return (std::isnan(row[i]) && !std::isnan(row[j])) || row[i] > row[j];
    });
    for (std::size_t i = 0; i < k; ++i) {
      result.values.data()[r * k + i] = row[order[i]];
      result.indices.data()[r * k + i] = order[i];
    }
  }
  return result;
}

// (rows, cols): true where column j <= row i + diagonal
Mask tril_mask(std::size_t rows, std::size_t cols, long diagonal) {
  Mask mask(Shape{rows, cols});
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) mask(i, j) = long(j) <= long(i) + diagonal;
  return mask;
}

#define INSTANTIATE(T)                            \
  template Indices argmax(const Tensor<T>&, int); \
  template TopK<T> topk(const Tensor<T>&, std::size_t);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

AttendMask attend_mask(Mask allowed) { return AttendMask(std::move(allowed)); }
AttendMask padding_mask(const Mask& ignored) { return AttendMask(Mask(!ignored)); }

}  // namespace xtgrad
