// Shape ops. Every result is a fresh contiguous array, so what comes out of permute or
// transpose is an ordinary tensor for the ops that follow.
#include <algorithm>
#include <cstring>

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmanipulation.hpp>

#include "detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

using detail::product;
using detail::shape_of;

// Reshape without copying the values twice: the gradient takes the input's shape back.
template <class T> Tensor<T> reshaped(const char* op, const Tensor<T>& x, const Shape& shape) {
  Array<T> out = x.data();
  out.reshape(shape);
  return make_result<T>(op, std::move(out), {x},
                        [](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          if (!in[0]->requires_grad()) return;
                          Array<T> gx = g;
                          gx.reshape(in[0]->data().shape());
                          add_grad(*in[0], std::move(gx));
                        });
}

// Copies `count` blocks of `block` elements from src (stride src_stride) to dst
// (stride dst_stride): the loop behind concat, narrow and their gradients.
template <class T>
void copy_blocks(const T* src, std::size_t src_stride, T* dst, std::size_t dst_stride, std::size_t count,
                 std::size_t block) {
  // Nothing to copy: dst or src may then be null (an empty array's data()), and memcpy
  // with a null pointer is undefined even for 0 bytes (UBSan: narrow to length 0).
  if (block == 0) return;
  for (std::size_t i = 0; i < count; ++i) std::memcpy(dst + i * dst_stride, src + i * src_stride, block * sizeof(T));
}

}  // namespace

template <class T> Tensor<T> reshape(const Tensor<T>& x, const Extents& shape) {
  detail::check_defined("reshape", x);
  Shape target(shape.size());
  long inferred = -1;
  std::size_t known = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (inferred >= 0) detail::fail("reshape", "only one dimension can be -1");
      inferred = static_cast<long>(i);
    } else if (shape[i] < 0) {
      detail::fail("reshape", "negative dimension " + std::to_string(shape[i]));
    } else {
      target[i] = static_cast<std::size_t>(shape[i]);
      known *= target[i];
    }
  }
  const std::string wanted = shape_str(shape);
  if (inferred >= 0) {
    if (known == 0 || x.numel() % known != 0)
      detail::fail("reshape", "cannot reshape " + shape_str(x.shape()) + " into " + wanted);
    target[inferred] = x.numel() / known;
  }
  if (product(target) != x.numel())
    detail::fail("reshape", "cannot reshape " + shape_str(x.shape()) + " into " + wanted);
  return reshaped("reshape", x, target);
}

template <class T> Tensor<T> permute(const Tensor<T>& x, const Axes& order) {
  detail::check_defined("permute", x);
  const std::size_t n = x.dim();
  if (order.size() != n)
    detail::fail("permute", "order has " + std::to_string(order.size()) + " axes for shape " + shape_str(x.shape()));
  std::vector<std::size_t> perm(n), inverse(n, n);
  for (std::size_t i = 0; i < n; ++i) {
    perm[i] = detail::normalize_axis(order[i], n, "permute");
    if (inverse[perm[i]] != n) detail::fail("permute", "axis repeated in the order");
    inverse[perm[i]] = i;
  }
  return make_result<T>("permute", Array<T>(xt::transpose(x.data(), perm)), {x},
                        [inverse](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          if (in[0]->requires_grad()) add_grad(*in[0], Array<T>(xt::transpose(g, inverse)));
                        });
}

template <class T> Tensor<T> transpose(const Tensor<T>& x, int axis0, int axis1) {
  detail::check_defined("transpose", x);
  const std::size_t a = detail::normalize_axis(axis0, x.dim(), "transpose");
  const std::size_t b = detail::normalize_axis(axis1, x.dim(), "transpose");
  std::vector<int> order(x.dim());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::swap(order[a], order[b]);
  return permute(x, order);
}

template <class T> Tensor<T> unsqueeze(const Tensor<T>& x, int axis) {
  detail::check_defined("unsqueeze", x);
  Shape shape = x.shape();
  const std::size_t a = detail::normalize_axis(axis, shape.size() + 1, "unsqueeze");
  shape.insert(shape.begin() + a, 1);
  return reshaped("unsqueeze", x, shape);
}

template <class T> Tensor<T> squeeze(const Tensor<T>& x, int axis) {
  detail::check_defined("squeeze", x);
  Shape shape = x.shape();
  const std::size_t a = detail::normalize_axis(axis, shape.size(), "squeeze");
  if (shape[a] != 1)
    detail::fail("squeeze", "axis " + std::to_string(axis) + " of " + shape_str(shape) + " has size " +
                                std::to_string(shape[a]) + ", not 1");
  shape.erase(shape.begin() + a);
  return reshaped("squeeze", x, shape);
}

template <class T> Tensor<T> squeeze(const Tensor<T>& x) {
  detail::check_defined("squeeze", x);
  Shape shape;
  for (std::size_t d : x.shape())
    if (d != 1) shape.push_back(d);
  return reshaped("squeeze", x, shape);
}

template <class T> Tensor<T> expand(const Tensor<T>& x, const Extents& shape) {
  detail::check_defined("expand", x);
  const Shape in = x.shape();
  const std::string wanted = shape_str(shape);
  if (shape.size() < in.size())
    detail::fail("expand", "cannot expand " + shape_str(in) + " to " + wanted + ": fewer dimensions");
  const std::size_t lead = shape.size() - in.size();
  Shape target(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const bool existing = i >= lead;
    if (shape[i] == -1 && existing) {
      target[i] = in[i - lead];
    } else if (shape[i] < 0) {
      detail::fail("expand", "invalid size " + std::to_string(shape[i]) + " for a new axis in " + wanted);
    } else {
      target[i] = static_cast<std::size_t>(shape[i]);
      if (existing && in[i - lead] != 1 && in[i - lead] != target[i])
        detail::fail("expand", "cannot expand " + shape_str(in) + " to " + wanted);
    }
  }
  return make_result<T>("expand", Array<T>(xt::broadcast(x.data(), target)), {x},
                        [](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          if (in[0]->requires_grad()) detail::add_grad_summed(*in[0], Array<T>(g));
                        });
}

// xs[i] (..., n_i, ...) along axis -> (..., sum n_i, ...)
template <class T> Tensor<T> concat(const std::vector<Tensor<T>>& xs, int axis) {
  detail::check_defined("concat", xs);
  if (xs.empty()) detail::fail("concat", "no tensors to concatenate");
  const Shape first = xs[0].shape();
  const std::size_t a = detail::normalize_axis(axis, first.size(), "concat");
  Shape out_shape = first;
  out_shape[a] = 0;
  for (const auto& t : xs) {
    Shape s = t.shape();
    bool same = s.size() == first.size();
    for (std::size_t i = 0; same && i < s.size(); ++i) same = i == a || s[i] == first[i];
    if (!same)
      detail::fail("concat",
                   "shapes " + shape_str(first) + " and " + shape_str(s) + " differ outside axis " + std::to_string(a));
    out_shape[a] += s[a];
  }
  const std::size_t outer = product(first, 0, a), inner = product(first, a + 1);
  const std::size_t out_row = out_shape[a] * inner;
  Array<T> out(out_shape);
  std::size_t offset = 0;  // elements into each output row
  for (const auto& t : xs) {
    const std::size_t block = t.shape()[a] * inner;
    copy_blocks(t.data().data(), block, out.data() + offset, out_row, outer, block);
    offset += block;
  }
  return make_result<T>(
      "concat", std::move(out), xs,
      [a, outer, inner, out_row](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        std::size_t offset = 0;
        for (const auto& node : in) {
          const std::size_t block = node->data().shape()[a] * inner;
          if (node->requires_grad()) {
            Array<T> gx(node->data().shape());
            copy_blocks(g.data() + offset, out_row, gx.data(), block, outer, block);
            add_grad(*node, std::move(gx));
          }
          offset += block;
        }
      });
}

// x (..., n, ...) -> (..., length, ...): elements [start, start + length) of axis
template <class T> Tensor<T> narrow(const Tensor<T>& x, int axis, std::size_t start, std::size_t length) {
  detail::check_defined("narrow", x);
  const Shape in = x.shape();
  const std::size_t a = detail::normalize_axis(axis, in.size(), "narrow");
  if (start > in[a] || length > in[a] - start)
    detail::fail("narrow", "range [" + std::to_string(start) + ", " + std::to_string(start + length) +
                               ") out of bounds for axis " + std::to_string(a) + " of " + shape_str(in));
  Shape out_shape = in;
  out_shape[a] = length;
  const std::size_t outer = product(in, 0, a), inner = product(in, a + 1);
  const std::size_t in_row = in[a] * inner, block = length * inner, skip = start * inner;
  Array<T> out(out_shape);
  copy_blocks(x.data().data() + skip, in_row, out.data(), block, outer, block);
  return make_result<T>(
      "narrow", std::move(out), {x},
      [outer, in_row, block, skip](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        // in the forward pass this was out = x[start, start + length) along axis: dx there
        // += dy, in place. Zeros elsewhere only on the first write, so that the narrows of
        // one input (an LSTM's steps, a gate's chunks) cost their own size each, not x's.
        const GradTarget<T> gx = grad_target(*in[0]);
        if (!gx) return;
        if (gx.beta == T(0)) {
          std::fill_n(gx.data, in[0]->data().size(), T(0));
          copy_blocks(g.data(), block, gx.data + skip, in_row, outer, block);
          return;
        }
        for (std::size_t i = 0; i < outer; ++i) {
          const T* from = g.data() + i * block;
          T* to = gx.data + skip + i * in_row;
          for (std::size_t j = 0; j < block; ++j) to[j] += from[j];
        }
      });
}

template <class T> Tensor<T> slice(const Tensor<T>& x, int axis, std::size_t start, std::size_t stop) {
  detail::check_defined("slice", x);
  if (stop < start) detail::fail("slice", "stop " + std::to_string(stop) + " is before start " + std::to_string(start));
  return narrow(x, axis, start, stop - start);
}

// x (..., n, ...) -> (..., k, ...) with out[..., j, ...] = x[..., indices[j], ...]
template <class T> Tensor<T> index_select(const Tensor<T>& x, int axis, const std::vector<std::size_t>& indices) {
  detail::check_defined("index_select", x);
  const Shape in = x.shape();
  const std::size_t a = detail::normalize_axis(axis, in.size(), "index_select");
  for (std::size_t idx : indices)
    if (idx >= in[a])
      detail::fail("index_select", "index " + std::to_string(idx) + " out of range for axis " + std::to_string(a) +
                                       " of size " + std::to_string(in[a]));
  Shape out_shape = in;
  out_shape[a] = indices.size();
  const std::size_t outer = product(in, 0, a), inner = product(in, a + 1);
  const std::size_t in_row = in[a] * inner, out_row = indices.size() * inner;
  Array<T> out(out_shape);
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < indices.size(); ++j)
      std::memcpy(out.data() + o * out_row + j * inner, x.data().data() + o * in_row + indices[j] * inner,
                  inner * sizeof(T));
  return make_result<T>(
      "index_select", std::move(out), {x},
      [indices, outer, inner, in_row, out_row](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        if (!in[0]->requires_grad()) return;
        // Scatter-add: an index chosen twice receives both gradients.
        Array<T> gx = xt::zeros<T>(in[0]->data().shape());
        for (std::size_t o = 0; o < outer; ++o)
          for (std::size_t j = 0; j < indices.size(); ++j) {
            T* dst = gx.data() + o * in_row + indices[j] * inner;
            const T* src = g.data() + o * out_row + j * inner;
            for (std::size_t k = 0; k < inner; ++k) dst[k] += src[k];
          }
        add_grad(*in[0], std::move(gx));
      });
}

#define INSTANTIATE(T)                                                        \
  template Tensor<T> reshape(const Tensor<T>&, const Extents&);               \
  template Tensor<T> transpose(const Tensor<T>&, int, int);                   \
  template Tensor<T> permute(const Tensor<T>&, const Axes&);                  \
  template Tensor<T> unsqueeze(const Tensor<T>&, int);                        \
  template Tensor<T> squeeze(const Tensor<T>&, int);                          \
  template Tensor<T> squeeze(const Tensor<T>&);                               \
  template Tensor<T> expand(const Tensor<T>&, const Extents&);                \
  template Tensor<T> concat(const std::vector<Tensor<T>>&, int);              \
  template Tensor<T> narrow(const Tensor<T>&, int, std::size_t, std::size_t); \
  template Tensor<T> slice(const Tensor<T>&, int, std::size_t, std::size_t);  \
  template Tensor<T> index_select(const Tensor<T>&, int, const std::vector<std::size_t>&);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
