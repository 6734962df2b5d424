// Joining, splitting and indexing along an axis, as torch.stack, split, chunk, gather,
// scatter_add and bmm. Each forward copies; each backward sends every output element's
// gradient back to the one input element it came from (a scatter-add when an index repeats).
#include <algorithm>
#include <cstring>

#include "detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

using detail::product;

std::vector<std::size_t> strides_of(const Shape& s) {
  std::vector<std::size_t> strides(s.size());
  for (std::size_t d = 0; d < s.size(); ++d) strides[d] = product(s, d + 1);
  return strides;
}

// The offsets one gather or scatter visits. For each element i of index (row-major),
// f(i, indexed, direct): indexed is the offset in an array of shape xs at i's coordinates
// with the one along axis replaced by index[i]; direct is the offset at i's coordinates
// in an array of shape ds. The caller has checked that index fits both shapes.
template <class F>
void walk_index(const char* op, const Indices& index, std::size_t axis, const Shape& xs, const Shape& ds, F&& f) {
  const Shape is = detail::shape_of(index);
  const std::size_t n = is.size(), total = product(is);
  const std::vector<std::size_t> sx = strides_of(xs), sd = strides_of(ds);
  std::vector<std::size_t> coords(n, 0);
  std::size_t base_x = 0, base_d = 0;  // base_x leaves out the coordinate along axis
  for (std::size_t i = 0; i < total; ++i) {
    const std::size_t v = index.data()[i];
    if (v >= xs[axis])
      detail::fail(op, "index " + std::to_string(v) + " is out of bounds for axis " + std::to_string(axis) +
                           " of size " + std::to_string(xs[axis]) + " (input " + shape_str(xs) + ")");
    f(i, base_x + v * sx[axis], base_d);
    for (std::size_t d = n; d-- > 0;) {  // odometer
      const std::size_t step_x = d == axis ? 0 : sx[d];
      base_x += step_x;
      base_d += sd[d];
      if (++coords[d] < is[d]) break;
      base_x -= step_x * is[d];
      base_d -= sd[d] * is[d];
      coords[d] = 0;
    }
  }
}

// index (same number of axes as x) no larger than limit along every axis, or every axis but
// `except` (the gathered / scattered one).
void check_index_fits(const char* op, const Shape& is, const Shape& limit, const char* what, long except) {
  bool fits = is.size() == limit.size();
  for (std::size_t d = 0; fits && d < is.size(); ++d) fits = long(d) == except || is[d] <= limit[d];
  if (!fits)
    detail::fail(op, "index " + shape_str(is) + " does not fit " + what + " " + shape_str(limit) +
                         (except >= 0 ? " outside axis " + std::to_string(except) : std::string(" along every axis")));
}

}  // namespace

// xs[i] s -> s with xs.size() inserted at axis
template <class T> Tensor<T> stack(const std::vector<Tensor<T>>& xs, int axis) {
  detail::check_defined("stack", xs);
  if (xs.empty()) detail::fail("stack", "no tensors to stack");
  const Shape s = xs[0].shape();
  for (std::size_t i = 1; i < xs.size(); ++i)
    if (xs[i].shape() != s)
      detail::fail("stack", "every tensor needs one shape, got " + shape_str(s) + " at 0 and " +
                                shape_str(xs[i].shape()) + " at " + std::to_string(i));
  const std::size_t a = detail::normalize_axis(axis, s.size() + 1, "stack");
  Shape out_shape = s;
  out_shape.insert(out_shape.begin() + long(a), xs.size());
  // out viewed as (outer, count, block): input i fills [:, i, :]
  const std::size_t outer = product(s, 0, a), block = product(s, a), count = xs.size();
  Array<T> out(out_shape);
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t o = 0; o < outer; ++o)
      std::copy_n(xs[i].data().data() + o * block, block, out.data() + (o * count + i) * block);
  return make_result<T>("stack", std::move(out), xs,
                        [outer, block, count](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          // in the forward pass this was out[:, i, :] = x_i: dx_i = dy[:, i, :]
                          for (std::size_t i = 0; i < count; ++i) {
                            if (!in[i]->requires_grad()) continue;
                            Array<T> gx(in[i]->data().shape());
                            for (std::size_t o = 0; o < outer; ++o)
                              std::copy_n(g.data() + (o * count + i) * block, block, gx.data() + o * block);
                            add_grad(*in[i], std::move(gx));
                          }
                        });
}

// x (..., n, ...) -> pieces (..., split_sizes[j], ...)
template <class T>
std::vector<Tensor<T>> split(const Tensor<T>& x, const std::vector<std::size_t>& split_sizes, int axis) {
  detail::check_defined("split", x);
  if (x.dim() == 0) detail::fail("split", "cannot split a scalar");
  const std::size_t a = detail::normalize_axis(axis, x.dim(), "split"), n = x.shape()[a];
  std::size_t total = 0;
  for (std::size_t s : split_sizes) total += s;
  if (total != n)
    detail::fail("split", "sizes " + shape_str(split_sizes) + " add up to " + std::to_string(total) + ", not to axis " +
                              std::to_string(a) + " of " + shape_str(x.shape()));
  std::vector<Tensor<T>> pieces;
  std::size_t start = 0;
  for (std::size_t s : split_sizes) {
    pieces.push_back(narrow(x, int(a), start, s));
    start += s;
  }
  return pieces;
}

// pieces of split_size, the last one what remains; an empty axis gives one empty piece
template <class T> std::vector<Tensor<T>> split(const Tensor<T>& x, std::size_t split_size, int axis) {
  detail::check_defined("split", x);
  if (x.dim() == 0) detail::fail("split", "cannot split a scalar");
  const std::size_t n = x.shape()[detail::normalize_axis(axis, x.dim(), "split")];
  if (split_size == 0 && n > 0)
    detail::fail("split", "split_size 0 for axis " + std::to_string(axis) + " of " + shape_str(x.shape()) +
                              " (only an empty axis can be split into pieces of 0)");
  const std::size_t pieces = std::max<std::size_t>(1, split_size ? (n + split_size - 1) / split_size : 0);
  std::vector<std::size_t> sizes(pieces, split_size);
  sizes.back() = n - split_size * (pieces - 1);
  return split(x, sizes, axis);
}

// torch.chunk: pieces of ceil(n / chunks); an empty axis gives `chunks` empty pieces
template <class T> std::vector<Tensor<T>> chunk(const Tensor<T>& x, std::size_t chunks, int axis) {
  detail::check_defined("chunk", x);
  if (chunks == 0) detail::fail("chunk", "chunks must be positive, for " + shape_str(x.shape()));
  if (x.dim() == 0) detail::fail("chunk", "cannot chunk a scalar");
  const std::size_t n = x.shape()[detail::normalize_axis(axis, x.dim(), "chunk")];
  if (n == 0) return split(x, std::vector<std::size_t>(chunks, 0), axis);
  return split(x, (n + chunks - 1) / chunks, axis);
}

// x (..., n, ...), index (..., k, ...) -> index's shape
template <class T> Tensor<T> gather(const Tensor<T>& x, int axis, const Indices& index) {
  detail::check_defined("gather", x);
  const Shape xs = x.shape(), is = detail::shape_of(index);
  const std::size_t a = detail::normalize_axis(axis, xs.size(), "gather");
  check_index_fits("gather", is, xs, "input", long(a));
  Array<T> out(is);
  const T* src = x.data().data();
  walk_index("gather", index, a, xs, is, [&](std::size_t i, std::size_t ix, std::size_t) { out.data()[i] = src[ix]; });
  return make_result<T>("gather", std::move(out), {x},
                        [index, a](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          // in the forward pass this was out[i] = x[at(i)]: dx[at(i)] += dy[i]
                          const GradTarget<T> dx = grad_target(*in[0]);
                          if (!dx) return;
                          const Shape xs = detail::shape_of(in[0]->data());
                          if (dx.beta == T(0)) std::fill_n(dx.data, product(xs), T(0));
                          walk_index("gather", index, a, xs, detail::shape_of(index),
                                     [&](std::size_t i, std::size_t ix, std::size_t) { dx.data[ix] += g.data()[i]; });
                        });
}

// x (..., n, ...), index (..., k, ...), src (at least index's sizes) -> x's shape
template <class T> Tensor<T> scatter_add(const Tensor<T>& x, int axis, const Indices& index, const Tensor<T>& src) {
  detail::check_defined("scatter_add", x, axis, index, src);
  const Shape xs = x.shape(), is = detail::shape_of(index), ss = src.shape();
  const std::size_t a = detail::normalize_axis(axis, xs.size(), "scatter_add");
  check_index_fits("scatter_add", is, xs, "input", long(a));
  check_index_fits("scatter_add", is, ss, "src", -1);
  Array<T> out = x.data();
  const T* from = src.data().data();
  walk_index("scatter_add", index, a, xs, ss,
             [&](std::size_t, std::size_t ix, std::size_t is_) { out.data()[ix] += from[is_]; });
  return make_result<T>("scatter_add", std::move(out), {x, src},
                        [index, a](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          // in the forward pass this was out = x; out[at(i)] += src[i]:
                          // dx = dy, dsrc[i] = dy[at(i)] (0 where src reaches beyond index)
                          add_grad(*in[0], Array<T>(g));
                          if (!in[1]->requires_grad()) return;
                          const Shape ss = detail::shape_of(in[1]->data());
                          Array<T> dsrc = xt::zeros<T>(ss);
                          walk_index(
                              "scatter_add", index, a, detail::shape_of(g), ss,
                              [&](std::size_t, std::size_t ix, std::size_t is_) { dsrc.data()[is_] = g.data()[ix]; });
                          add_grad(*in[1], std::move(dsrc));
                        });
}

// a (B,n,k), b (B,k,m) -> (B,n,m)
template <class T> Tensor<T> bmm(const Tensor<T>& a, const Tensor<T>& b) {
  detail::check_defined("bmm", a, b);
  const Shape as = a.shape(), bs = b.shape();
  if (as.size() != 3 || bs.size() != 3 || as[0] != bs[0] || as[2] != bs[1])
    detail::fail("bmm", "expected a (B,n,k) and b (B,k,m), got " + shape_str(as) + " and " + shape_str(bs));
  return matmul(a, b);  // one gemm per batch, and matmul's backward
}

#define INSTANTIATE(T)                                                                           \
  template Tensor<T> stack(const std::vector<Tensor<T>>&, int);                                  \
  template std::vector<Tensor<T>> split(const Tensor<T>&, std::size_t, int);                     \
  template std::vector<Tensor<T>> split(const Tensor<T>&, const std::vector<std::size_t>&, int); \
  template std::vector<Tensor<T>> chunk(const Tensor<T>&, std::size_t, int);                     \
  template Tensor<T> gather(const Tensor<T>&, int, const Indices&);                              \
  template Tensor<T> scatter_add(const Tensor<T>&, int, const Indices&, const Tensor<T>&);       \
  template Tensor<T> bmm(const Tensor<T>&, const Tensor<T>&);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
