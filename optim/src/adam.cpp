// Adam and AdamW (torch.optim.Adam / AdamW 1.13, single-tensor path), one flat loop per
// parameter as llm.c's AdamW.
#include <cmath>
#include <stdexcept>
#include <utility>

#include "optim_detail.hpp"
#include "xtgrad/optim.hpp"

namespace xtgrad {

namespace {

// PyTorch's checks, in PyTorch's order; returns lr for the base constructor.
double checked_lr(double lr, double beta1, double beta2, double eps, double weight_decay) {
  using optim_detail::fmt;
  optim_detail::check_lr(lr);
  if (!(eps >= 0.0)) throw std::invalid_argument("Invalid epsilon value: " + fmt(eps));
  if (!(beta1 >= 0.0 && beta1 < 1.0)) throw std::invalid_argument("Invalid beta parameter at index 0: " + fmt(beta1));
  if (!(beta2 >= 0.0 && beta2 < 1.0)) throw std::invalid_argument("Invalid beta parameter at index 1: " + fmt(beta2));
  if (!(weight_decay >= 0.0)) throw std::invalid_argument("Invalid weight_decay value: " + fmt(weight_decay));
  return lr;
}

std::vector<std::string> adam_buffers(bool amsgrad) {
  if (amsgrad) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  return {"exp_avg", "exp_avg_sq"};
}

}  // namespace

template <class T>
AdamBase<T>::AdamBase(std::vector<Tensor<T>> params, const char* name, double lr, double beta1, double beta2,
                      double eps, double weight_decay, bool amsgrad, bool decoupled)
    : Optimizer<T>(std::move(params), checked_lr(lr, beta1, beta2, eps, weight_decay), name, adam_buffers(amsgrad)),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps),
      weight_decay_(weight_decay),
      amsgrad_(amsgrad),
      decoupled_(decoupled) {}

template <class T> void AdamBase<T>::step() {
  NoGradGuard no_grad;
  const double lr = this->lr_;
  // Scalars rounded to T once, as PyTorch's kernels take them.
  const T b1 = static_cast<T>(beta1_), one_minus_b1 = static_cast<T>(1.0 - beta1_);
  const T b2 = static_cast<T>(beta2_), one_minus_b2 = static_cast<T>(1.0 - beta2_);
  const T eps = static_cast<T>(eps_);
  const T l2 = static_cast<T>(weight_decay_);
  const T decay = static_cast<T>(1.0 - lr * weight_decay_);  // AdamW's p *= 1 - lr * wd
  const bool use_l2 = !decoupled_ && weight_decay_ != 0.0;
  // PyTorch multiplies even by 1 - lr * 0 = 1; skipping that is bit-identical.
  const bool use_decay = decoupled_ && weight_decay_ != 0.0;
  const bool amsgrad = amsgrad_;

  for (std::size_t i = 0; i < this->params_.size(); ++i) {
    const T* g = this->grad_or_null(i);  // g (shape of p), flat
    if (!g) continue;                    // no gradient: skipped, its step count stays
    auto& state = this->state_[i];
    ++state.step;  // t counts this parameter's updates, from 1
    // Bias corrections in double, as PyTorch computes them in Python floats.
    const double t = static_cast<double>(state.step);
    const double bias_correction1 = 1.0 - std::pow(beta1_, t);
    const double bias_correction2 = 1.0 - std::pow(beta2_, t);
    const T neg_step_size = static_cast<T>(-(lr / bias_correction1));
    const T bc2_sqrt = static_cast<T>(std::sqrt(bias_correction2));

    T* w = this->params_[i].mutable_data().data();          // p, flat
    T* m = state.buffers[0].data();                         // exp_avg (shape of p)
    T* v = state.buffers[1].data();                         // exp_avg_sq (shape of p)
    T* vmax = amsgrad ? state.buffers[2].data() : nullptr;  // max_exp_avg_sq
    const std::size_t n = this->params_[i].numel();
    for (std::size_t j = 0; j < n; ++j) {
      T gj = g[j];
      if (use_l2) gj = gj + l2 * w[j];
      if (use_decay) w[j] = w[j] * decay;
      m[j] = m[j] * b1 + one_minus_b1 * gj;
      v[j] = v[j] * b2 + one_minus_b2 * gj * gj;  // (c * g) * g, as addcmul_
      T second = v[j];
      if (amsgrad) {
        // torch.maximum: a NaN v wins, so a diverging run stays visible. (A select, not
        // a branch: the loop vectorises.)
        second = vmax[j] >= v[j] ? vmax[j] : v[j];
        vmax[j] = second;
      }
      const T denom = std::sqrt(second) / bc2_sqrt + eps;
      w[j] = w[j] + (neg_step_size * m[j]) / denom;  // (value * m) / denom, as addcdiv_
    }
  }
  ++this->steps_;
}

template <class T>
Adam<T>::Adam(std::vector<Tensor<T>> params, const AdamOptions& o)
    : AdamBase<T>(std::move(params), "Adam", o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.amsgrad,
                  /*decoupled=*/false),
      options_(o) {}

template <class T>
AdamW<T>::AdamW(std::vector<Tensor<T>> params, const AdamWOptions& o)
    : AdamBase<T>(std::move(params), "AdamW", o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.amsgrad,
                  /*decoupled=*/true),
      options_(o) {}

template class AdamBase<float>;
template class AdamBase<double>;
template class Adam<float>;
template class Adam<double>;
template class AdamW<float>;
template class AdamW<double>;

}  // namespace xtgrad
