// Neural-network functions: softmax, log_softmax, layer_norm, cross_entropy with target
// probabilities (class indices: ops_loss.cpp), mse_loss,
// dropout, masked_fill, where. The row-wise ones loop over rows of the data directly:
// in xtensor 0.24 last-axis reductions and column broadcasts are many times slower.
#include <algorithm>
#include <cmath>
#include <limits>

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xoperation.hpp>

#include "detail.hpp"
#include "kernels.hpp"
#include "parallel.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

using detail::product;
using detail::shape_of;

// A tensor seen as rows along one axis: element i of row (o, j) sits at
// o * n * inner + i * inner + j, so row r has base offset and stride `inner`.
struct Rows {
  std::size_t outer, n, inner;
  Rows(const Shape& shape, int axis, const char* op) {
    if (shape.empty()) detail::fail(op, "needs at least one dimension, got a scalar");
    const std::size_t a = detail::normalize_axis(axis, shape.size(), op);
    outer = product(shape, 0, a);
    n = shape[a];
    inner = product(shape, a + 1);
  }
  std::size_t count() const { return outer * inner; }
  std::size_t base(std::size_t r) const { return (r / inner) * n * inner + r % inner; }
};

// The rows of x as one contiguous (count, n) array, for the softmax kernels; along the
// last axis this is a plain copy.
template <class T> Array<T> gather_rows(const Array<T>& x, const Rows& rows) {
  Array<T> out(Shape{rows.count(), rows.n});
  for (std::size_t r = 0; r < rows.count(); ++r)
    for (std::size_t i = 0; i < rows.n; ++i) out.data()[r * rows.n + i] = x.data()[rows.base(r) + i * rows.inner];
  return out;
}

// The inverse of gather_rows: the rows back in an array of `shape`.
template <class T> Array<T> scatter_rows(Array<T>&& gathered, const Rows& rows, const Shape& shape) {
  if (rows.inner == 1) {
    gathered.reshape(shape);
    return std::move(gathered);
  }
  Array<T> out(shape);
  for (std::size_t r = 0; r < rows.count(); ++r)
    for (std::size_t i = 0; i < rows.n; ++i)
      out.data()[rows.base(r) + i * rows.inner] = gathered.data()[r * rows.n + i];
  return out;
}

// The rows of y for reading: y itself along the last axis, else a gathered copy in scratch.
template <class T> const T* rows_to_read(const Array<T>& y, const Rows& rows, Array<T>& scratch) {
  if (rows.inner == 1) return y.data();
  scratch = gather_rows(y, rows);
  return scratch.data();
}

// Softmax (log softmax when log) of each row of a contiguous (N, C) array: the one
// kernel that attention uses too, so the same input gives the same bits everywhere.
template <class T> Array<T> row_softmax(Array<T> x, bool log) {
  const std::size_t len = x.dimension() ? x.shape().back() : 1, rows = len ? x.size() / len : 0;
  if (log)
    kernels::log_softmax_rows(x.data(), rows, len);
  else
    kernels::softmax_rows(x.data(), rows, len);
  return x;
}

template <class T> void check_logits(const Tensor<T>& logits, const char* op) {
  if (logits.dim() != 2) detail::fail(op, "logits must be (N,C), got " + shape_str(logits.shape()));
}

}  // namespace

// x (..., n, ...) -> same shape, softmax along axis. A row that is all -inf gives zeros
// (attention's promise: a query with nothing to attend to reads nothing).
template <class T> Tensor<T> softmax(const Tensor<T>& x, int axis) {
  detail::check_defined("softmax", x);
  const Rows rows(x.shape(), axis, "softmax");
  Array<T> y = row_softmax(gather_rows(x.data(), rows), false);
  return make_result<T>("softmax", scatter_rows(std::move(y), rows, x.shape()), {x},
                        [rows](const std::vector<NodePtr<T>>& in, const Array<T>& y, const Array<T>& g) {
                          if (!in[0]->requires_grad()) return;
                          // in the forward pass this was y = softmax(x): dx = y * (dy - <dy, y>)
                          Array<T> gx = gather_rows(g, rows), scratch;
                          kernels::softmax_backward_rows(rows_to_read(y, rows, scratch), gx.data(), rows.count(),
                                                         rows.n, rows.n, T(1));
                          add_grad(*in[0], scatter_rows(std::move(gx), rows, shape_of(y)));
                        });
}

// x (..., n, ...) -> same shape, log_softmax along axis. A row that is all -inf gives NaN.
template <class T> Tensor<T> log_softmax(const Tensor<T>& x, int axis) {
  detail::check_defined("log_softmax", x);
  const Rows rows(x.shape(), axis, "log_softmax");
  Array<T> y = row_softmax(gather_rows(x.data(), rows), true);
  return make_result<T>("log_softmax", scatter_rows(std::move(y), rows, x.shape()), {x},
                        [rows](const std::vector<NodePtr<T>>& in, const Array<T>& y, const Array<T>& g) {
                          if (!in[0]->requires_grad()) return;
                          // in the forward pass this was y = log_softmax(x): dx = dy - exp(y) sum(dy)
                          Array<T> gx = gather_rows(g, rows), scratch;
                          kernels::log_softmax_backward_rows(rows_to_read(y, rows, scratch), gx.data(), rows.count(),
                                                             rows.n);
                          add_grad(*in[0], scatter_rows(std::move(gx), rows, shape_of(y)));
                        });
}

namespace {
// layer_norm's backward: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
// dxhat = dy * w; the weight and bias gradients are sums over the rows (one banded sum
// of 2d values: the weight's d, then the bias's d).
template <class T>
void layer_norm_backward(const std::vector<NodePtr<T>>& in, const Array<T>& g, std::size_t d, bool has_weight,
                         bool has_bias, const std::vector<T>& means, const std::vector<T>& rstds) {
  const std::size_t n_rows = means.size();
  const T* x = in[0]->data().data();
  const T* w = has_weight ? in[1]->data().data() : nullptr;
  Node<T>* weight_node = has_weight ? in[1].get() : nullptr;
  Node<T>* bias_node = has_bias ? in[has_weight ? 2 : 1].get() : nullptr;
  const bool need_x = in[0]->requires_grad();
  const bool need_w = weight_node && weight_node->requires_grad();
  const bool need_b = bias_node && bias_node->requires_grad();
  Array<T> gx = need_x ? Array<T>(in[0]->data().shape()) : Array<T>();
  std::vector<T> sums(2 * d, T(0));
  detail::banded_sum(n_rows, 2 * d, sums.data(), [&](std::size_t begin, std::size_t end, T* band_sums) {
    kernels::layer_norm_rows_backward(x + begin * d, g.data() + begin * d, w, means.data() + begin,
                                      rstds.data() + begin, need_x ? gx.data() + begin * d : nullptr,
                                      need_w ? band_sums : nullptr, need_b ? band_sums + d : nullptr, end - begin, d);
  });
  if (need_x) add_grad(*in[0], std::move(gx));
  const auto add_sum = [&](Node<T>* node, const T* sum) {
    Array<T> grad(shape_of(node->data()));
    std::copy(sum, sum + d, grad.data());
    add_grad(*node, std::move(grad));
  };
  if (need_w) add_sum(weight_node, sums.data());
  if (need_b) add_sum(bias_node, sums.data() + d);
}
}  // namespace

// x (..., D1..Dk) normalised over the trailing normalized_shape (D1..Dk); weight and
// bias (D1..Dk). Saves per-row mean and 1/std for layer_norm_backward.
template <class T>
Tensor<T> layer_norm(const Tensor<T>& x, const Shape& normalized_shape,
                     const std::optional<Tensor<scalar_t<T>>>& weight, const std::optional<Tensor<scalar_t<T>>>& bias,
                     double eps) {
  detail::check_defined("layer_norm", x, normalized_shape, weight, bias);
  const Shape shape = x.shape();
  const std::size_t k = normalized_shape.size();
  if (k == 0 || k > shape.size() || !std::equal(normalized_shape.begin(), normalized_shape.end(), shape.end() - k))
    detail::fail("layer_norm", "normalized shape " + shape_str(normalized_shape) +
                                   " does not match the trailing dimensions of input " + shape_str(shape));
  for (const auto* p : {&weight, &bias})
    if (p->has_value() && (*p)->shape() != normalized_shape)
      detail::fail("layer_norm", std::string(p == &weight ? "weight" : "bias") + " has shape " +
                                     shape_str((*p)->shape()) + ", expected " + shape_str(normalized_shape));
  const std::size_t d = product(normalized_shape), n_rows = x.numel() / std::max<std::size_t>(d, 1);
  const T* w = weight ? weight->data().data() : nullptr;
  const T* bb = bias ? bias->data().data() : nullptr;

  std::vector<T> means(n_rows), rstds(n_rows);
  Array<T> out(x.data().shape());
  parallel::for_ranges(n_rows, 256, [&](std::size_t begin, std::size_t end) {
    kernels::layer_norm_rows(x.data().data() + begin * d, out.data() + begin * d, w, bb, means.data() + begin,
                             rstds.data() + begin, end - begin, d, T(eps));
  });

  std::vector<Tensor<T>> inputs{x};
  if (weight) inputs.push_back(*weight);
  if (bias) inputs.push_back(*bias);
  return make_result<T>(
      "layer_norm", std::move(out), inputs,
      [d, has_weight = weight.has_value(), has_bias = bias.has_value(), means = std::move(means),
       rstds = std::move(rstds)](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        layer_norm_backward(in, g, d, has_weight, has_bias, means, rstds);
      });
}

// logits (N,C), target distributions (N,C) -> scalar, -mean_n sum_c t log_softmax(x)
template <class T> Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<T>& target_probs) {
  detail::check_defined("cross_entropy", logits, target_probs);
  check_logits(logits, "cross_entropy");
  if (target_probs.shape() != logits.shape())
    detail::fail("cross_entropy", "logits " + shape_str(logits.shape()) + " and target probabilities " +
                                      shape_str(target_probs.shape()) + " differ in shape");
  const std::size_t n = logits.shape()[0], c = logits.shape()[1];
  const Array<T> logp = row_softmax(logits.data(), true);
  T loss = 0;
  for (std::size_t i = 0; i < n * c; ++i) loss -= target_probs.data().data()[i] * logp.data()[i];
  Array<T> out = xt::zeros<T>(Shape{});
  out() = n ? loss / T(n) : T(0);
  return make_result<T>("cross_entropy", std::move(out), {logits, target_probs},
                        [n, c](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          const T scale = g() / T(n);
                          const T* t = in[1]->data().data();
                          if (in[0]->requires_grad()) {
                            // in the forward pass this was -sum_c t_c (x_c - lse(x)): dx = softmax(x) * sum_c t_c - t
                            Array<T> gx = row_softmax(in[0]->data(), false);
                            for (std::size_t i = 0; i < n; ++i) {
                              T mass = 0;
                              for (std::size_t j = 0; j < c; ++j) mass += t[i * c + j];
                              for (std::size_t j = 0; j < c; ++j)
                                gx.data()[i * c + j] = (gx.data()[i * c + j] * mass - t[i * c + j]) * scale;
                            }
                            add_grad(*in[0], std::move(gx));
                          }
                          if (in[1]->requires_grad()) {
                            Array<T> gt = row_softmax(in[0]->data(), true);
                            gt *= -scale;
                            add_grad(*in[1], std::move(gt));
                          }
                        });
}

// input, target (same shape) -> scalar mean((input - target)^2)
template <class T> Tensor<T> mse_loss(const Tensor<T>& input, const Tensor<T>& target) {
  detail::check_defined("mse_loss", input, target);
  if (input.shape() != target.shape())
    detail::fail("mse_loss",
                 "input " + shape_str(input.shape()) + " and target " + shape_str(target.shape()) + " differ in shape");
  const std::size_t count = input.numel();
  Array<T> out = xt::zeros<T>(Shape{});
  const T* a = input.data().data();
  const T* b = target.data().data();
  for (std::size_t i = 0; i < count; ++i) out() += (a[i] - b[i]) * (a[i] - b[i]);
  if (count) out() /= T(count);
  return make_result<T>("mse_loss", std::move(out), {input, target},
                        [count](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          // d/da = 2 (a - b) / count, d/db = -d/da
                          Array<T> diff = in[0]->data() - in[1]->data();
                          diff *= T(2) * g() / T(count);
                          if (in[1]->requires_grad()) add_grad(*in[1], Array<T>(-diff));
                          if (in[0]->requires_grad()) add_grad(*in[0], std::move(diff));
                        });
}

void check_probability(const std::string& op, const std::string& name, double p) {
  if (!(p >= 0.0 && p <= 1.0)) detail::fail(op, name + " must be in [0, 1], got " + std::to_string(p));
}

// x -> same shape; training: x * keep / (1 - p) with keep ~ Bernoulli(1 - p)
template <class T> Tensor<T> dropout(const Tensor<T>& x, double p, bool training, Generator& gen) {
  detail::check_defined("dropout", x);
  check_probability("dropout", "probability", p);
  if (!training || p == 0.0) return x;
  Array<T> scale = detail::dropout_scale<T>(x.shape(), p, gen);
  Array<T> out = x.data() * scale;
  return make_result<T>(
      "dropout", std::move(out), {x},
      [scale = std::move(scale)](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        // in the forward pass this was out = x * scale
        if (in[0]->requires_grad()) add_grad(*in[0], Array<T>(g * scale));
      });
}

// x, mask (broadcasts to x) -> x's shape, value where mask is true
template <class T> Tensor<T> masked_fill(const Tensor<T>& x, const Mask& mask, scalar_t<T> value) {
  detail::check_defined("masked_fill", x);
  const Shape xs = x.shape();
  if (detail::broadcast_shapes(xs, shape_of(mask), "masked_fill") != xs)
    detail::fail("masked_fill", "mask " + shape_str(mask.shape()) + " does not broadcast to input " + shape_str(xs));
  Mask full_mask = xt::broadcast(mask, xs);
  Array<T> out = xt::where(full_mask, value, x.data());
  return make_result<T>(
      "masked_fill", std::move(out), {x},
      [full_mask = std::move(full_mask)](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        if (in[0]->requires_grad()) add_grad(*in[0], Array<T>(xt::where(full_mask, T(0), g)));
      },
      /*may_be_infinite=*/std::isinf(value));
}

// mask, a, b broadcast together -> a where mask is true, b elsewhere
namespace detail {
template <class T> Tensor<T> where(const Mask& mask, const Tensor<T>& a, const Tensor<T>& b) {
  detail::check_defined("where", mask, a, b);
  detail::broadcast_shapes(detail::broadcast_shapes(shape_of(mask), a.shape(), "where"), b.shape(), "where");
  Array<T> out = xt::where(mask, a.data(), b.data());
  return make_result<T>("where", std::move(out), {a, b},
                        [mask](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          if (in[0]->requires_grad())
                            detail::add_grad_summed(*in[0], Array<T>(xt::where(mask, g, T(0))));
                          if (in[1]->requires_grad())
                            detail::add_grad_summed(*in[1], Array<T>(xt::where(mask, T(0), g)));
                        });
}
}  // namespace detail

#define INSTANTIATE(T)                                                                                     \
  template Tensor<T> softmax(const Tensor<T>&, int);                                                       \
  template Tensor<T> log_softmax(const Tensor<T>&, int);                                                   \
  template Tensor<T> layer_norm(const Tensor<T>&, const Shape&, const std::optional<Tensor<scalar_t<T>>>&, \
                                const std::optional<Tensor<scalar_t<T>>>&, double);                        \
  template Tensor<T> cross_entropy(const Tensor<T>&, const Tensor<T>&);                                    \
  template Tensor<T> mse_loss(const Tensor<T>&, const Tensor<T>&);                                         \
  template Tensor<T> dropout(const Tensor<T>&, double, bool, Generator&);                                  \
  template Tensor<T> masked_fill(const Tensor<T>&, const Mask&, scalar_t<T>);                              \
  template Tensor<T> detail::where(const Mask&, const Tensor<T>&, const Tensor<T>&);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
