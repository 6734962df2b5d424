// Neural-network functions: softmax, log_softmax, layer_norm, cross_entropy, mse_loss,
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

// Writes softmax (log_softmax when log) of the row at x into y. A row whose entries are
// all -inf (fully masked) has no probabilities: softmax gives it zeros (attention's
// promise: a query with nothing to attend to reads nothing), log_softmax NaN, as PyTorch
// (log 0 - log 0 has no meaningful value; zeros would claim probability 1 everywhere).
template <class T>
void softmax_row(const T* x, T* y, std::size_t n, std::size_t stride, bool log) {
  T peak = -std::numeric_limits<T>::infinity();
  for (std::size_t i = 0; i < n; ++i) peak = std::max(peak, x[i * stride]);
  if (std::isinf(peak) && peak < 0) peak = 0;  // an all -inf row: no NaN from -inf - -inf
  T total = 0;
  for (std::size_t i = 0; i < n; ++i) total += std::exp(x[i * stride] - peak);
  if (log && total == 0) {  // all -inf: NaN on purpose, not by way of -inf - -inf
    for (std::size_t i = 0; i < n; ++i) y[i * stride] = std::numeric_limits<T>::quiet_NaN();
  } else if (log) {
    const T log_total = std::log(total) + peak;
    for (std::size_t i = 0; i < n; ++i) y[i * stride] = x[i * stride] - log_total;
  } else if (total == 0) {
    // Every entry -inf: zeros, not 0/0 = NaN, and a zero gradient.
    for (std::size_t i = 0; i < n; ++i) y[i * stride] = 0;
  } else {
    for (std::size_t i = 0; i < n; ++i) y[i * stride] = std::exp(x[i * stride] - peak) / total;
  }
}

template <class T>
Array<T> softmax_forward(const Array<T>& x, const Rows& rows, bool log) {
  Array<T> y(x.shape());
  for (std::size_t r = 0; r < rows.count(); ++r)
    softmax_row(x.data() + rows.base(r), y.data() + rows.base(r), rows.n, rows.inner, log);
  return y;
}

template <class T>
void check_logits(const Tensor<T>& logits, const char* op) {
  if (logits.dim() != 2)
    detail::fail(op, "logits must be (N,C), got " + shape_str(logits.shape()));
}

}  // namespace

// x (..., n, ...) -> same shape, softmax along axis. A row that is all -inf gives zeros.
template <class T>
Tensor<T> softmax(const Tensor<T>& x, int axis) {
  detail::check_defined("softmax", x);
  const Rows rows(x.shape(), axis, "softmax");
  return make_result<T>("softmax", softmax_forward(x.data(), rows, false), {x},
                        [rows](const std::vector<NodePtr<T>>& in, const Array<T>& y, const Array<T>& g) {
                          if (!in[0]->requires_grad()) return;
                          // dx = y * (dy - sum(dy * y)) along the row
                          Array<T> gx(y.shape());
                          for (std::size_t r = 0; r < rows.count(); ++r) {
                            const std::size_t b = rows.base(r), s = rows.inner;
                            T dot = 0;
                            for (std::size_t i = 0; i < rows.n; ++i) dot += g.data()[b + i * s] * y.data()[b + i * s];
                            for (std::size_t i = 0; i < rows.n; ++i)
                              gx.data()[b + i * s] = y.data()[b + i * s] * (g.data()[b + i * s] - dot);
                          }
                          add_grad(*in[0], std::move(gx));
                        });
}

// x (..., n, ...) -> same shape, log_softmax along axis. A row that is all -inf gives NaN.
template <class T>
Tensor<T> log_softmax(const Tensor<T>& x, int axis) {
  detail::check_defined("log_softmax", x);
  const Rows rows(x.shape(), axis, "log_softmax");
  return make_result<T>("log_softmax", softmax_forward(x.data(), rows, true), {x},
                        [rows](const std::vector<NodePtr<T>>& in, const Array<T>& y, const Array<T>& g) {
                          if (!in[0]->requires_grad()) return;
                          // dx = dy - softmax(x) * sum(dy), softmax(x) = exp(y)
                          Array<T> gx(y.shape());
                          for (std::size_t r = 0; r < rows.count(); ++r) {
                            const std::size_t b = rows.base(r), s = rows.inner;
                            T total = 0;
                            for (std::size_t i = 0; i < rows.n; ++i) total += g.data()[b + i * s];
                            for (std::size_t i = 0; i < rows.n; ++i)
                              gx.data()[b + i * s] = g.data()[b + i * s] - std::exp(y.data()[b + i * s]) * total;
                          }
                          add_grad(*in[0], std::move(gx));
                        });
}

// x (..., D1..Dk) normalised over the trailing normalized_shape (D1..Dk); weight and
// bias (D1..Dk). Saves per-row mean and 1/std; the backward is the fused formula
// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w.
template <class T>
Tensor<T> layer_norm(const Tensor<T>& x, const Shape& normalized_shape,
                     const std::optional<Tensor<T>>& weight, const std::optional<Tensor<T>>& bias,
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
  const bool has_weight = weight.has_value(), has_bias = bias.has_value();
  return make_result<T>(
      "layer_norm", std::move(out), inputs,
      [d, n_rows, has_weight, has_bias, means = std::move(means), rstds = std::move(rstds)](
          const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        const T* x = in[0]->data().data();
        const T* w = has_weight ? in[1]->data().data() : nullptr;
        Node<T>* weight_node = has_weight ? in[1].get() : nullptr;
        Node<T>* bias_node = has_bias ? in[has_weight ? 2 : 1].get() : nullptr;
        const bool need_x = in[0]->requires_grad();
        const bool need_w = weight_node && weight_node->requires_grad();
        const bool need_b = bias_node && bias_node->requires_grad();
        Array<T> gx = need_x ? Array<T>(in[0]->data().shape()) : Array<T>();
        // Rows in parallel bands; each band sums its own weight and bias gradients, added
        // up in band order afterwards.
        const std::size_t bands = parallel::band_count(n_rows, 256);
        std::vector<std::vector<T>> band_gw(bands), band_gb(bands);
        parallel::for_each(bands, [&](std::size_t band) {
          // The band's sums live in memory of the thread that writes them: two bands'
          // sums on one cache line would bounce it between the cores on every row.
          std::vector<T> band_w_sums(need_w ? d : 0), band_b_sums(need_b ? d : 0);
          const std::size_t begin = n_rows * band / bands, end = n_rows * (band + 1) / bands;
          kernels::layer_norm_rows_backward(x + begin * d, g.data() + begin * d, w, means.data() + begin,
                                            rstds.data() + begin, need_x ? gx.data() + begin * d : nullptr,
                                            need_w ? band_w_sums.data() : nullptr,
                                            need_b ? band_b_sums.data() : nullptr, end - begin, d);
          band_gw[band] = std::move(band_w_sums);
          band_gb[band] = std::move(band_b_sums);
        });
        Array<T> gw = need_w ? xt::zeros<T>({d}) : Array<T>();
        Array<T> gb = need_b ? xt::zeros<T>({d}) : Array<T>();
        for (std::size_t band = 0; band < bands; ++band) {
          for (std::size_t i = 0; need_w && i < d; ++i) gw.data()[i] += band_gw[band][i];
          for (std::size_t i = 0; need_b && i < d; ++i) gb.data()[i] += band_gb[band][i];
        }
        if (need_x) add_grad(*in[0], std::move(gx));
        if (need_w) {
          gw.reshape(weight_node->data().shape());
          add_grad(*weight_node, std::move(gw));
        }
        if (need_b) {
          gb.reshape(bias_node->data().shape());
          add_grad(*bias_node, std::move(gb));
        }
      });
}

// logits (N,C), targets (N) class indices -> scalar; fused backward (softmax - onehot) / N
template <class T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const std::vector<std::size_t>& targets) {
  detail::check_defined("cross_entropy", logits);
  check_logits(logits, "cross_entropy");
  const std::size_t n = logits.shape()[0], c = logits.shape()[1];
  if (targets.size() != n)
    detail::fail("cross_entropy", "logits " + shape_str(logits.shape()) + " with " +
                                      std::to_string(targets.size()) + " targets");
  for (std::size_t t : targets)
    if (t >= c)
      detail::fail("cross_entropy", "target class " + std::to_string(t) + " out of range for " +
                                        std::to_string(c) + " classes");
  const Rows rows({n, c}, -1, "cross_entropy");
  const Array<T> logp = softmax_forward(logits.data(), rows, true);
  T loss = 0;
  for (std::size_t i = 0; i < n; ++i) loss -= logp.data()[i * c + targets[i]];
  Array<T> out = xt::zeros<T>(Shape{});
  out() = n ? loss / T(n) : T(0);
  return make_result<T>("cross_entropy", std::move(out), {logits},
                        [targets, rows, n, c](const std::vector<NodePtr<T>>& in, const Array<T>&,
                                              const Array<T>& g) {
                          if (!in[0]->requires_grad()) return;
                          Array<T> gx = softmax_forward(in[0]->data(), rows, false);
                          for (std::size_t i = 0; i < n; ++i) gx.data()[i * c + targets[i]] -= T(1);
                          gx *= g() / T(n);
                          add_grad(*in[0], std::move(gx));
                        });
}

// logits (N,C), target distributions (N,C) -> scalar, -mean_n sum_c t log_softmax(x)
template <class T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<T>& target_probs) {
  detail::check_defined("cross_entropy", logits, target_probs);
  check_logits(logits, "cross_entropy");
  if (target_probs.shape() != logits.shape())
    detail::fail("cross_entropy", "logits " + shape_str(logits.shape()) + " and target probabilities " +
                                      shape_str(target_probs.shape()) + " differ in shape");
  const std::size_t n = logits.shape()[0], c = logits.shape()[1];
  const Rows rows({n, c}, -1, "cross_entropy");
  const Array<T> logp = softmax_forward(logits.data(), rows, true);
  T loss = 0;
  for (std::size_t i = 0; i < n * c; ++i) loss -= target_probs.data().data()[i] * logp.data()[i];
  Array<T> out = xt::zeros<T>(Shape{});
  out() = n ? loss / T(n) : T(0);
  return make_result<T>(
      "cross_entropy", std::move(out), {logits, target_probs},
      [rows, n, c](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        const T scale = g() / T(n);
        const T* t = in[1]->data().data();
        if (in[0]->requires_grad()) {
          // d/dx of -sum_c t_c (x_c - lse(x)) = softmax(x) * sum_c t_c - t
          Array<T> gx = softmax_forward(in[0]->data(), rows, false);
          for (std::size_t i = 0; i < n; ++i) {
            T mass = 0;
            for (std::size_t j = 0; j < c; ++j) mass += t[i * c + j];
            for (std::size_t j = 0; j < c; ++j)
              gx.data()[i * c + j] = (gx.data()[i * c + j] * mass - t[i * c + j]) * scale;
          }
          add_grad(*in[0], std::move(gx));
        }
        if (in[1]->requires_grad()) {
          Array<T> gt = softmax_forward(in[0]->data(), rows, true);
          gt *= -scale;
          add_grad(*in[1], std::move(gt));
        }
      });
}

// input, target (same shape) -> scalar mean((input - target)^2)
template <class T>
Tensor<T> mse_loss(const Tensor<T>& input, const Tensor<T>& target) {
  detail::check_defined("mse_loss", input, target);
  if (input.shape() != target.shape())
    detail::fail("mse_loss", "input " + shape_str(input.shape()) + " and target " +
                                 shape_str(target.shape()) + " differ in shape");
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

// x -> same shape; training: x * keep / (1 - p) with keep ~ Bernoulli(1 - p)
template <class T>
Tensor<T> dropout(const Tensor<T>& x, double p, bool training, Generator& gen) {
  detail::check_defined("dropout", x);
  if (!(p >= 0.0 && p <= 1.0))
    detail::fail("dropout", "probability must be in [0, 1], got " + std::to_string(p));
  if (!training || p == 0.0) return x;
  Array<T> scale(x.data().shape());
  const T kept = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
  for (auto& s : scale) s = gen.uniform() >= p ? kept : T(0);
  Array<T> out = x.data() * scale;
  return make_result<T>("dropout", std::move(out), {x},
                        [scale = std::move(scale)](const std::vector<NodePtr<T>>& in, const Array<T>&,
                                                   const Array<T>& g) {
                          if (in[0]->requires_grad()) add_grad(*in[0], Array<T>(g * scale));
                        });
}

// x, mask (broadcasts to x) -> x's shape, value where mask is true
template <class T>
Tensor<T> masked_fill(const Tensor<T>& x, const Mask& mask, scalar_t<T> value) {
  detail::check_defined("masked_fill", x);
  const Shape xs = x.shape();
  if (detail::broadcast_shapes(xs, shape_of(mask), "masked_fill") != xs)
    detail::fail("masked_fill", "mask " + shape_str(mask.shape()) + " does not broadcast to input " +
                                    shape_str(xs));
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
template <class T>
Tensor<T> where(const Mask& mask, const Tensor<T>& a, const Tensor<T>& b) {
  detail::check_defined("where", mask, a, b);
  detail::broadcast_shapes(detail::broadcast_shapes(shape_of(mask), a.shape(), "where"), b.shape(), "where");
  Array<T> out = xt::where(mask, a.data(), b.data());
  return make_result<T>("where", std::move(out), {a, b},
                        [mask](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          if (in[0]->requires_grad())
                            add_grad(*in[0], detail::sum_to(Array<T>(xt::where(mask, g, T(0))),
                                                                   shape_of(in[0]->data())));
                          if (in[1]->requires_grad())
                            add_grad(*in[1], detail::sum_to(Array<T>(xt::where(mask, T(0), g)),
                                                                   shape_of(in[1]->data())));
                        });
}

#define INSTANTIATE(T)                                                                            \
  template Tensor<T> softmax(const Tensor<T>&, int);                                              \
  template Tensor<T> log_softmax(const Tensor<T>&, int);                                          \
  template Tensor<T> layer_norm(const Tensor<T>&, const Shape&, const std::optional<Tensor<T>>&, \
                                const std::optional<Tensor<T>>&, double);                         \
  template Tensor<T> cross_entropy(const Tensor<T>&, const std::vector<std::size_t>&);            \
  template Tensor<T> cross_entropy(const Tensor<T>&, const Tensor<T>&);                           \
  template Tensor<T> mse_loss(const Tensor<T>&, const Tensor<T>&);                                \
  template Tensor<T> dropout(const Tensor<T>&, double, bool, Generator&);                         \
  template Tensor<T> masked_fill(const Tensor<T>&, const Mask&, scalar_t<T>);                     \
  template Tensor<T> where(const Mask&, const Tensor<T>&, const Tensor<T>&);
XTGRAD_INSTANTIATE(INSTANTIATE)

}  // namespace xtgrad
