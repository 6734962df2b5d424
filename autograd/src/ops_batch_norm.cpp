// batch_norm: x (N,C,...) normalised per channel c over its M = N x (spatial size) values:
//   xhat = (x - mean_c) rstd_c,  y = xhat weight_c + bias_c,  rstd_c = 1 / sqrt(var_c + eps)
// Training takes mean_c and the biased var_c from the batch (and moves the running
// statistics); otherwise they are the running ones, constants to the gradient. Backward:
//   dxhat = dy weight;  db = sum dy;  dw = sum dy xhat
//   training: dx = rstd / M (M dxhat - sum dxhat - xhat sum(dxhat xhat))  (mean, var depend on x)
//   eval:     dx = rstd dxhat
#include <cmath>
#include <memory>
#include <vector>

#include "detail.hpp"
#include "kernels.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// x (N,C,S): channel c's values are planes of S at (n C + c) S.
struct ChannelShape {
  std::size_t batch, channels, spatial;
  std::size_t count() const { return batch * spatial; }  // M
  std::size_t at(std::size_t n, std::size_t c) const { return (n * channels + c) * spatial; }
};

// sum over channel c's values of term(value index)
template <class T, class F> T channel_sum(const ChannelShape& s, std::size_t c, F term) {
  T total = T(0);
  for (std::size_t n = 0; n < s.batch; ++n) {
    const std::size_t first = s.at(n, c);
    total += kernels::sum_of<T>(s.spatial, [&](std::size_t i) { return term(first + i); });
  }
  return total;
}

// The statistics the forward used, per channel, kept for the backward.
template <class T> struct ChannelStats {
  std::vector<T> mean, rstd;
  bool from_batch = false;
};

// Batch statistics (training); moves running_mean / running_var when given.
template <class T>
ChannelStats<T> batch_stats(const ChannelShape& s, const T* x, const std::optional<Tensor<T>>& running_mean,
                            const std::optional<Tensor<T>>& running_var, double momentum, double eps) {
  ChannelStats<T> st{std::vector<T>(s.channels), std::vector<T>(s.channels), true};
  const T M = T(s.count()), m = T(momentum);
  // The running statistics are updated in place (Tensor is a handle to their storage).
  T* r_mean = running_mean ? Tensor<T>(*running_mean).mutable_data().data() : nullptr;
  T* r_var = running_var ? Tensor<T>(*running_var).mutable_data().data() : nullptr;
  for (std::size_t c = 0; c < s.channels; ++c) {
    const T mean = channel_sum<T>(s, c, [x](std::size_t i) { return x[i]; }) / M;
    const T var = channel_sum<T>(s, c, [x, mean](std::size_t i) { return (x[i] - mean) * (x[i] - mean); }) / M;
    st.mean[c] = mean;
    st.rstd[c] = T(1) / std::sqrt(var + T(eps));
    if (r_mean) r_mean[c] = (T(1) - m) * r_mean[c] + m * mean;
    if (r_var) r_var[c] = (T(1) - m) * r_var[c] + m * var * M / (M - T(1));  // unbiased, as PyTorch keeps it
  }
  return st;
}

template <class T>
ChannelStats<T> running_stats(const Tensor<T>& running_mean, const Tensor<T>& running_var, double eps) {
  ChannelStats<T> st{std::vector<T>(running_mean.data().begin(), running_mean.data().end()),
                     std::vector<T>(running_var.data().begin(), running_var.data().end()), false};
  for (T& r : st.rstd) r = T(1) / std::sqrt(r + T(eps));
  return st;
}

// x (N,C,S) -> y = (x - mean) rstd weight + bias
template <class T>
Array<T> batch_norm_forward(const ChannelShape& s, const Shape& shape, const T* x, const ChannelStats<T>& st,
                            const T* weight, const T* bias) {
  Array<T> y(shape);
  for (std::size_t n = 0; n < s.batch; ++n)
    for (std::size_t c = 0; c < s.channels; ++c) {
      const T scale = st.rstd[c] * (weight ? weight[c] : T(1)), shift = bias ? bias[c] : T(0);
      const T* xi = x + s.at(n, c);
      T* yi = y.data() + s.at(n, c);
      for (std::size_t i = 0; i < s.spatial; ++i) yi[i] = (xi[i] - st.mean[c]) * scale + shift;
    }
  return y;
}

// dy (N,C,S) -> the gradients of x, weight and bias (inputs[1], [2] when given)
template <class T>
void batch_norm_backward(const ChannelShape& s, const ChannelStats<T>& st, bool has_weight, bool has_bias,
                         const std::vector<NodePtr<T>>& inputs, const T* dy) {
  const T* x = inputs[0]->data().data();
  const T* weight = has_weight ? inputs[1]->data().data() : nullptr;
  const GradTarget<T> dx = grad_target(*inputs[0]);
  const GradTarget<T> dw = has_weight ? grad_target(*inputs[1]) : GradTarget<T>{};
  const GradTarget<T> db = has_bias ? grad_target(*inputs[has_weight ? 2 : 1]) : GradTarget<T>{};
  const T M = T(s.count());
  for (std::size_t c = 0; c < s.channels; ++c) {
    const T mean = st.mean[c], rstd = st.rstd[c], w = weight ? weight[c] : T(1);
    const auto xhat = [&](std::size_t i) { return (x[i] - mean) * rstd; };
    const T sum_dy = channel_sum<T>(s, c, [dy](std::size_t i) { return dy[i]; });
    const T sum_dy_xhat = channel_sum<T>(s, c, [&](std::size_t i) { return dy[i] * xhat(i); });
    // in the forward pass this was y = xhat w + b
    if (dw) detail::write_grad(dw, c, sum_dy_xhat);
    if (db) detail::write_grad(db, c, sum_dy);
    if (!dx) continue;
    // dxhat = dy w, so sum dxhat = w sum_dy and sum dxhat xhat = w sum_dy_xhat
    for (std::size_t n = 0; n < s.batch; ++n)
      for (std::size_t i = s.at(n, c); i < s.at(n, c) + s.spatial; ++i) {
        const T d =
            st.from_batch ? rstd / M * (M * dy[i] * w - w * sum_dy - xhat(i) * w * sum_dy_xhat) : rstd * dy[i] * w;
        detail::write_grad(dx, i, d);
      }
  }
}

void check_channel_tensor(const char* name, const Shape& shape, std::size_t channels, const Shape& xs) {
  if (shape != Shape{channels})
    detail::fail("batch_norm", std::string(name) + " " + shape_str(shape) + " does not match input " + shape_str(xs) +
                                   " (expected (" + std::to_string(channels) + "), one value per channel)");
}

}  // namespace

// x (N,C,...) -> same shape
template <class T>
Tensor<T> batch_norm(const Tensor<T>& x, const std::optional<Tensor<scalar_t<T>>>& running_mean,
                     const std::optional<Tensor<scalar_t<T>>>& running_var,
                     const std::optional<Tensor<scalar_t<T>>>& weight, const std::optional<Tensor<scalar_t<T>>>& bias,
                     bool training, double momentum, double eps) {
  detail::check_defined("batch_norm", x, running_mean, running_var, weight, bias);
  const Shape xs = x.shape();
  if (xs.size() < 2) detail::fail("batch_norm", "input must be (N,C) or (N,C,...), got " + shape_str(xs));
  const ChannelShape s{xs[0], xs[1], detail::product(xs, 2)};
  if (running_mean) check_channel_tensor("running_mean", running_mean->shape(), s.channels, xs);
  if (running_var) check_channel_tensor("running_var", running_var->shape(), s.channels, xs);
  if (weight) check_channel_tensor("weight", weight->shape(), s.channels, xs);
  if (bias) check_channel_tensor("bias", bias->shape(), s.channels, xs);
  if (!training && (!running_mean || !running_var))
    detail::fail("batch_norm", "running_mean and running_var are needed when not training");
  if (training && s.count() < 2)
    detail::fail("batch_norm", "training needs more than one value per channel, got input " + shape_str(xs));
  auto st = std::make_shared<ChannelStats<T>>(
      training ? batch_stats(s, x.data().data(), running_mean, running_var, momentum, eps)
               : running_stats(*running_mean, *running_var, eps));
  Array<T> y = batch_norm_forward(s, xs, x.data().data(), *st, weight ? weight->data().data() : nullptr,
                                  bias ? bias->data().data() : nullptr);
  std::vector<Tensor<T>> inputs{x};
  if (weight) inputs.push_back(*weight);
  if (bias) inputs.push_back(*bias);
  const bool has_weight = bool(weight), has_bias = bool(bias);
  return make_result<T>(
      "batch_norm", std::move(y), inputs,
      [s, st, has_weight, has_bias](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& g) {
        batch_norm_backward(s, *st, has_weight, has_bias, inputs, g.data());
      });
}

#define XTGRAD_INSTANTIATE_BATCH_NORM(T)                                                                            \
  template Tensor<T> batch_norm(const Tensor<T>&, const std::optional<Tensor<T>>&, const std::optional<Tensor<T>>&, \
                                const std::optional<Tensor<T>>&, const std::optional<Tensor<T>>&, bool, double,     \
                                double);
XTGRAD_INSTANTIATE_BATCH_NORM(float)
XTGRAD_INSTANTIATE_BATCH_NORM(double)

}  // namespace xtgrad
