// binary_cross_entropy_with_logits, and cross_entropy with class indices, as
// F.cross_entropy: ignore_index and label smoothing,
// logits (N,C) or (N,C,d...). Fused with its softmax; for each counted row i (target t_i),
// with eps = label_smoothing and n the number of counted rows:
//   loss = sum_i -(1 - eps) log p[i, t_i] - eps / C sum_c log p[i, c], divided by n
//   dx[i, c] = (p[i, c] - (1 - eps) [c = t_i] - eps / C) / n,   0 for an ignored row
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "detail.hpp"
#include "kernels.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// Which rows count: a target equal to ignore_index does not; any other must be a class.
std::vector<bool> counted_rows(const std::vector<std::size_t>& targets, std::size_t classes,
                               std::optional<std::size_t> ignore_index) {
  std::vector<bool> counted(targets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    counted[i] = !(ignore_index && targets[i] == *ignore_index);
    if (counted[i] && targets[i] >= classes)
      detail::fail("cross_entropy", "target class " + std::to_string(targets[i]) + " out of range for " +
                                        std::to_string(classes) + " classes");
  }
  return counted;
}

// logits (N,C), targets (N) -> scalar
template <class T>
Tensor<T> cross_entropy_rows(const Tensor<T>& logits, const std::vector<std::size_t>& targets,
                             std::optional<std::size_t> ignore_index, T eps) {
  const std::size_t n = logits.shape()[0], c = logits.shape()[1];
  const auto counted = std::make_shared<std::vector<bool>>(counted_rows(targets, c, ignore_index));
  const std::size_t count = std::size_t(std::count(counted->begin(), counted->end(), true));
  Array<T> logp = logits.data();
  kernels::log_softmax_rows(logp.data(), n, c);
  T loss = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!(*counted)[i]) continue;
    const T* row = logp.data() + i * c;
    const T smoothed = eps == T(0) ? T(0) : eps / T(c) * kernels::sum_of<T>(c, [row](std::size_t j) { return row[j]; });
    loss -= (T(1) - eps) * row[targets[i]] + smoothed;
  }
  Array<T> out = xt::zeros<T>(Shape{});
  out() = count ? loss / T(count) : std::numeric_limits<T>::quiet_NaN();
  return make_result<T>(
      "cross_entropy", std::move(out), {logits},
      [targets, counted, count, n, c, eps](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        if (!in[0]->requires_grad()) return;
        // in the forward pass this was -mean of (1 - eps) log p[target] + eps / C sum log p
        Array<T> gx = in[0]->data();
        kernels::softmax_rows(gx.data(), n, c);
        const T scale = count ? g() / T(count) : T(0);
        for (std::size_t i = 0; i < n; ++i) {
          T* row = gx.data() + i * c;
          if (!(*counted)[i]) {
            std::fill_n(row, c, T(0));
            continue;
          }
          row[targets[i]] -= T(1) - eps;
          for (std::size_t j = 0; j < c; ++j) row[j] = (row[j] - eps / T(c)) * scale;
        }
        add_grad(*in[0], std::move(gx));
      });
}

}  // namespace

// logits (N,C) with targets (N), or (N,C,d...) with targets (N,d...) -> scalar
template <class T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const std::vector<std::size_t>& targets,
                        std::optional<std::size_t> ignore_index, double label_smoothing) {
  detail::check_defined("cross_entropy", logits);
  const Shape xs = logits.shape();
  if (xs.size() < 2) detail::fail("cross_entropy", "logits must be (N,C) or (N,C,d...), got " + shape_str(xs));
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    detail::fail("cross_entropy", "label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
  const std::size_t classes = xs[1], rows = classes ? logits.numel() / classes : 0;
  if (targets.size() != rows)
    detail::fail("cross_entropy", "logits " + shape_str(xs) + " with " + std::to_string(targets.size()) +
                                      " targets; expected " + std::to_string(rows) + " (N x d1 x ...)");
  if (xs.size() == 2) return cross_entropy_rows(logits, targets, ignore_index, T(label_smoothing));
  // (N,C,d...) -> (N,d...,C) -> (N d..., C): the class axis last, rows in the targets' order
  Axes order{0};
  for (int a = 2; a < int(xs.size()); ++a) order.push_back(a);
  order.push_back(1);
  const Tensor<T> flat = reshape(permute(logits, order), {long(rows), long(classes)});
  return cross_entropy_rows(flat, targets, ignore_index, T(label_smoothing));
}

// logits, targets (same shape) -> scalar, mean of max(x, 0) - x y + log(1 + exp(-|x|)):
// -y log sigmoid(x) - (1 - y) log(1 - sigmoid(x)) without overflow, as PyTorch computes it.
template <class T> Tensor<T> binary_cross_entropy_with_logits(const Tensor<T>& logits, const Tensor<T>& targets) {
  const char* op = "binary_cross_entropy_with_logits";
  detail::check_defined(op, logits, targets);
  if (logits.shape() != targets.shape())
    detail::fail(
        op, "logits " + shape_str(logits.shape()) + " and targets " + shape_str(targets.shape()) + " differ in shape");
  const std::size_t n = logits.numel();
  const T* x = logits.data().data();
  const T* y = targets.data().data();
  const T total = kernels::sum_of<T>(
      n, [x, y](std::size_t i) { return std::max(x[i], T(0)) - x[i] * y[i] + std::log1p(std::exp(-std::abs(x[i]))); });
  Array<T> out = xt::zeros<T>(Shape{});
  out() = n ? total / T(n) : std::numeric_limits<T>::quiet_NaN();
  return make_result<T>(op, std::move(out), {logits, targets},
                        [n](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          const T* x = in[0]->data().data();
                          const T* y = in[1]->data().data();
                          const T scale = g() / T(n);
                          // in the forward pass this was mean(max(x,0) - x y + log(1 + exp(-|x|))):
                          // d/dx = sigmoid(x) - y, d/dy = -x
                          if (const GradTarget<T> dx = grad_target(*in[0]))
                            for (std::size_t i = 0; i < n; ++i)
                              detail::write_grad(dx, i, (T(1) / (T(1) + std::exp(-x[i])) - y[i]) * scale);
                          if (const GradTarget<T> dy = grad_target(*in[1]))
                            for (std::size_t i = 0; i < n; ++i) detail::write_grad(dy, i, -x[i] * scale);
                        });
}

template Tensor<float> cross_entropy(const Tensor<float>&, const std::vector<std::size_t>&, std::optional<std::size_t>,
                                     double);
template Tensor<double> cross_entropy(const Tensor<double>&, const std::vector<std::size_t>&,
                                      std::optional<std::size_t>, double);

template Tensor<float> binary_cross_entropy_with_logits(const Tensor<float>&, const Tensor<float>&);
template Tensor<double> binary_cross_entropy_with_logits(const Tensor<double>&, const Tensor<double>&);

}  // namespace xtgrad
