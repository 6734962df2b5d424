// Reductions over a set of axes (all axes when none are given), with keepdims.
// x (d0..dn) -> out with the reduced axes removed, or kept as size 1 with keepdims.
#include <algorithm>
#include <limits>

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xreducer.hpp>

#include "detail.hpp"
#include "kernels.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

using detail::shape_of;

// The shapes of one reduction.
struct Reduction {
  Shape in_shape;
  std::vector<std::size_t> axes;  // sorted, unique
  Shape keep_shape;               // in_shape with the reduced axes set to 1
  Shape out_shape;                // keep_shape, or without those axes
  std::size_t count = 1;          // elements reduced into each output

  Reduction(const Shape& shape, const Axes& requested, bool keepdims, const char* op)
      : in_shape(shape), keep_shape(shape) {
    if (requested.empty()) {
      for (std::size_t i = 0; i < shape.size(); ++i) axes.push_back(i);
    } else {
      for (int a : requested) axes.push_back(detail::normalize_axis(a, shape.size(), op));
      std::sort(axes.begin(), axes.end());
      if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
        detail::fail(op, "an axis is repeated in the reduction of " + shape_str(shape));
    }
    for (std::size_t a : axes) {
      count *= shape[a];
      keep_shape[a] = 1;
    }
    for (std::size_t i = 0; i < shape.size(); ++i)
      if (keepdims || !std::binary_search(axes.begin(), axes.end(), i)) out_shape.push_back(keep_shape[i]);
  }

  // The output gradient spread back over the input shape (g's data in keep_shape order),
  // times scale.
  template <class T> Array<T> broadcast_back(const Array<T>& g, T scale = T(1)) const {
    Array<T> out(in_shape);
    T* o = out.data();
    const T* src = g.data();
    detail::for_each_broadcast_parallel(in_shape, in_shape, in_shape, keep_shape,
                                        [&](std::size_t i, std::size_t, std::size_t k) { o[i] = src[k] * scale; });
    return out;
  }
};

template <class T> Array<T> sum_axes(const Array<T>& x, const Reduction& r) {
  Array<T> out = xt::zeros<T>(r.keep_shape);
  T* o = out.data();
  const T* src = x.data();
  if (out.size() == 1) {  // everything into one number (a loss): eight partial sums, not one chain
    o[0] = kernels::sum_of<T>(x.size(), [src](std::size_t i) { return src[i]; });
    out.reshape(r.out_shape);
    return out;
  }
  detail::for_each_broadcast_parallel(r.keep_shape, r.in_shape, r.in_shape, r.keep_shape,
                                      [&](std::size_t i, std::size_t, std::size_t k) { o[k] += src[i]; });
  out.reshape(r.out_shape);
  return out;
}

// x with the reduced axes moved last, as a (rows, count) matrix of contiguous rows.
template <class T> Array<T> reduced_axes_last(const Array<T>& x, const Reduction& r, std::vector<std::size_t>& perm) {
  perm.clear();
  for (std::size_t i = 0; i < r.in_shape.size(); ++i)
    if (!std::binary_search(r.axes.begin(), r.axes.end(), i)) perm.push_back(i);
  perm.insert(perm.end(), r.axes.begin(), r.axes.end());
  Array<T> moved = xt::transpose(x, perm);
  moved.reshape({x.size() / std::max<std::size_t>(r.count, 1), r.count});
  return moved;
}

}  // namespace

template <class T> Tensor<T> sum(const Tensor<T>& x, const Axes& axes, bool keepdims) {
  detail::check_defined("sum", x);
  const Reduction r(x.shape(), axes, keepdims, "sum");
  return make_result<T>("sum", sum_axes(x.data(), r), {x},
                        [r](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          add_grad(*in[0], r.broadcast_back(g));
                        });
}

template <class T> Tensor<T> mean(const Tensor<T>& x, const Axes& axes, bool keepdims) {
  detail::check_defined("mean", x);
  const Reduction r(x.shape(), axes, keepdims, "mean");
  if (r.count == 0) detail::fail("mean", "mean over an empty axis of " + shape_str(r.in_shape));
  Array<T> out = sum_axes(x.data(), r);
  out /= T(r.count);
  return make_result<T>("mean", std::move(out), {x},
                        [r](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          add_grad(*in[0], r.broadcast_back(g, T(1) / T(r.count)));
                        });
}

template <class T> Tensor<T> var(const Tensor<T>& x, const Axes& axes, bool keepdims, bool unbiased) {
  detail::check_defined("var", x);
  const Reduction r(x.shape(), axes, keepdims, "var");
  if (r.count == 0) detail::fail("var", "variance over an empty axis of " + shape_str(r.in_shape));
  const T divisor = T(r.count) - (unbiased ? T(1) : T(0));
  // centered (in_shape) = x - mean(x) over the reduced axes
  auto centered = [r](const Array<T>& v) {
    Array<T> m = sum_axes(v, r);
    m /= T(r.count);
    m.reshape(r.keep_shape);
    return Array<T>(v - m);
  };
  const Array<T> d = centered(x.data());
  Array<T> out = sum_axes(Array<T>(d * d), r);
  out /= divisor;
  return make_result<T>("var", std::move(out), {x},
                        [r, divisor, centered](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          if (!in[0]->requires_grad()) return;
                          // d var / dx_i = 2 (x_i - mean) / divisor
                          Array<T> gx = r.broadcast_back(g);
                          gx *= centered(in[0]->data());
                          gx *= T(2) / divisor;
                          add_grad(*in[0], std::move(gx));
                        });
}

template <class T> Tensor<T> max(const Tensor<T>& x, const Axes& axes, bool keepdims) {
  detail::check_defined("max", x);
  const Reduction r(x.shape(), axes, keepdims, "max");
  if (r.count == 0 || x.numel() == 0) detail::fail("max", "max over an empty axis of " + shape_str(r.in_shape));
  std::vector<std::size_t> perm;
  const Array<T> rows = reduced_axes_last(x.data(), r, perm);
  const std::size_t n_rows = rows.shape()[0], n_cols = rows.shape()[1];
  Array<T> out(r.out_shape);
  for (std::size_t i = 0; i < n_rows; ++i) {
    const T* row = rows.data() + i * n_cols;
    out.data()[i] = *std::max_element(row, row + n_cols);
  }
  return make_result<T>("max", std::move(out), {x},
                        [r](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          if (!in[0]->requires_grad()) return;
                          // The whole gradient of each output goes to the first arg-max of its slice.
                          std::vector<std::size_t> perm;
                          const Array<T> rows = reduced_axes_last(in[0]->data(), r, perm);
                          const std::size_t n_rows = rows.shape()[0], n_cols = rows.shape()[1];
                          Array<T> g_rows = xt::zeros<T>(rows.shape());
                          for (std::size_t i = 0; i < n_rows; ++i) {
                            const T* row = rows.data() + i * n_cols;
                            const std::size_t arg = std::max_element(row, row + n_cols) - row;
                            g_rows.data()[i * n_cols + arg] = g.data()[i];
                          }
                          Shape moved_shape;
                          for (std::size_t p : perm) moved_shape.push_back(r.in_shape[p]);
                          g_rows.reshape(moved_shape);
                          std::vector<std::size_t> inverse(perm.size());
                          for (std::size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = i;
                          add_grad(*in[0], Array<T>(xt::transpose(g_rows, inverse)));
                        });
}

#define INSTANTIATE(T)                                               \
  template Tensor<T> sum(const Tensor<T>&, const Axes&, bool);       \
  template Tensor<T> mean(const Tensor<T>&, const Axes&, bool);      \
  template Tensor<T> var(const Tensor<T>&, const Axes&, bool, bool); \
  template Tensor<T> max(const Tensor<T>&, const Axes&, bool);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
