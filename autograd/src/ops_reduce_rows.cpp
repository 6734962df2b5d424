// Reductions written over rows, and a running sum: min (as max, to the first arg-min),
// logsumexp (shifted by the row maximum) and cumsum. min and logsumexp move the reduced
// axes last, so that each output is one contiguous row of the input.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include <xtensor/xmanipulation.hpp>

#include "detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// One reduction over axes (all when none) as (rows, cols): the kept axes in order, then
// the reduced ones.
struct ReducedRows {
  Shape in_shape, out_shape, moved_shape;
  std::vector<std::size_t> perm, inverse;
  std::size_t rows = 1, cols = 1;

  ReducedRows(const Shape& shape, const Axes& requested, bool keepdims, const char* op) : in_shape(shape) {
    std::vector<bool> reduced(shape.size(), requested.empty());
    for (int a : requested) {
      const std::size_t axis = detail::normalize_axis(a, shape.size(), op);
      if (reduced[axis])
        detail::fail(op, "axis " + std::to_string(a) + " is repeated in the reduction of " + shape_str(shape));
      reduced[axis] = true;
    }
    for (int pass = 0; pass < 2; ++pass)  // kept axes, then reduced ones
      for (std::size_t i = 0; i < shape.size(); ++i)
        if (reduced[i] == (pass == 1)) perm.push_back(i);
    inverse.resize(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) {
      inverse[perm[i]] = i;
      moved_shape.push_back(shape[perm[i]]);
      (reduced[perm[i]] ? cols : rows) *= shape[perm[i]];
    }
    for (std::size_t i = 0; i < shape.size(); ++i)
      if (keepdims || !reduced[i]) out_shape.push_back(reduced[i] ? 1 : shape[i]);
  }

  template <class T> Array<T> rows_of(const Array<T>& x) const {  // (rows, cols)
    Array<T> moved = xt::transpose(x, perm);
    moved.reshape({rows, cols});
    return moved;
  }
  template <class T> Array<T> back(Array<T>&& moved) const {  // (rows, cols) -> in_shape
    moved.reshape(moved_shape);
    return xt::transpose(moved, inverse);
  }
};

}  // namespace

// x -> out_shape: the smallest of each reduced slice
template <class T> Tensor<T> min(const Tensor<T>& x, const Axes& axes, bool keepdims) {
  detail::check_defined("min", x);
  const ReducedRows r(x.shape(), axes, keepdims, "min");
  if (r.cols == 0 || x.numel() == 0) detail::fail("min", "min over an empty axis of " + shape_str(r.in_shape));
  const Array<T> rows = r.rows_of(x.data());
  Array<T> out(r.out_shape);
  auto arg = std::make_shared<std::vector<std::size_t>>(r.rows);
  for (std::size_t i = 0; i < r.rows; ++i) {
    const T* row = rows.data() + i * r.cols;
    (*arg)[i] = std::min_element(row, row + r.cols) - row;
    out.data()[i] = row[(*arg)[i]];
  }
  return make_result<T>("min", std::move(out), {x},
                        [r, arg](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          // in the forward pass this was out[i] = row_i[arg_i]: that element takes dy[i]
                          if (!in[0]->requires_grad()) return;
                          Array<T> g_rows = xt::zeros<T>({r.rows, r.cols});
                          for (std::size_t i = 0; i < r.rows; ++i) g_rows.data()[i * r.cols + (*arg)[i]] = g.data()[i];
                          add_grad(*in[0], r.back(std::move(g_rows)));
                        });
}

// x -> out_shape: log sum exp of each reduced slice
template <class T> Tensor<T> logsumexp(const Tensor<T>& x, const Axes& axes, bool keepdims) {
  detail::check_defined("logsumexp", x);
  const ReducedRows r(x.shape(), axes, keepdims, "logsumexp");
  const Array<T> rows = r.rows_of(x.data());
  Array<T> out(r.out_shape);
  for (std::size_t i = 0; i < r.rows; ++i) {
    const T* row = rows.data() + i * r.cols;
    // Shift by the maximum so that exp cannot overflow; an infinite maximum shifts by 0,
    // as in PyTorch (all -inf: log 0 = -inf; a +inf: inf).
    T m = -std::numeric_limits<T>::infinity();
    for (std::size_t j = 0; j < r.cols; ++j) m = std::max(m, row[j]);
    if (std::isinf(m)) m = T(0);
    double total = 0;
    for (std::size_t j = 0; j < r.cols; ++j) total += std::exp(double(row[j] - m));
    out.data()[i] = T(std::log(total)) + m;
  }
  return make_result<T>("logsumexp", std::move(out), {x},
                        [r](const std::vector<NodePtr<T>>& in, const Array<T>& y, const Array<T>& g) {
                          // y = log sum exp x: dx = dy exp(x - y), the softmax of the slice
                          if (!in[0]->requires_grad()) return;
                          Array<T> g_rows = r.rows_of(in[0]->data());
                          for (std::size_t i = 0; i < r.rows; ++i)
                            for (std::size_t j = 0; j < r.cols; ++j) {
                              T& v = g_rows.data()[i * r.cols + j];
                              v = g.data()[i] * std::exp(v - y.data()[i]);
                            }
                          add_grad(*in[0], r.back(std::move(g_rows)));
                        });
}

// x (..., n, ...) -> x's shape: running sums along axis, accumulated in double as
// PyTorch's CPU kernel does
template <class T> Tensor<T> cumsum(const Tensor<T>& x, int axis) {
  detail::check_defined("cumsum", x);
  const Shape xs = x.shape();
  if (xs.empty()) detail::fail("cumsum", "needs at least one dimension, got a scalar");
  const std::size_t a = detail::normalize_axis(axis, xs.size(), "cumsum");
  const std::size_t outer = detail::product(xs, 0, a), n = xs[a], inner = detail::product(xs, a + 1);
  Array<T> out(xs);
  const T* src = x.data().data();
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < inner; ++j) {
      double total = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t k = (o * n + i) * inner + j;
        total += double(src[k]);
        out.data()[k] = T(total);
      }
    }
  return make_result<T>("cumsum", std::move(out), {x},
                        [outer, n, inner](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          // y_i = x_0 + ... + x_i: dx_i = dy_i + ... + dy_{n-1}, a running sum from the end
                          const GradTarget<T> dx = grad_target(*in[0]);
                          if (!dx) return;
                          for (std::size_t o = 0; o < outer; ++o)
                            for (std::size_t j = 0; j < inner; ++j) {
                              double total = 0;
                              for (std::size_t i = n; i-- > 0;) {
                                const std::size_t k = (o * n + i) * inner + j;
                                total += double(g.data()[k]);
                                detail::write_grad(dx, k, T(total));
                              }
                            }
                        });
}

#define INSTANTIATE(T)                                               \
  template Tensor<T> min(const Tensor<T>&, const Axes&, bool);       \
  template Tensor<T> logsumexp(const Tensor<T>&, const Axes&, bool); \
  template Tensor<T> cumsum(const Tensor<T>&, int);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
