// SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD).
#include <stdexcept>
#include <utility>

#include "optim_detail.hpp"
#include "xtgrad/optim.hpp"

namespace xtgrad {

namespace {

// PyTorch's checks, in PyTorch's order, before anything is built.
const SGDOptions& checked(const SGDOptions& o) {
  using optim_detail::fmt;
  optim_detail::check_lr(o.lr);
  if (!(o.momentum >= 0.0)) throw std::invalid_argument("Invalid momentum value: " + fmt(o.momentum));
  if (!(o.weight_decay >= 0.0)) throw std::invalid_argument("Invalid weight_decay value: " + fmt(o.weight_decay));
  if (o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0))
    throw std::invalid_argument("Nesterov momentum requires a momentum and zero dampening");
  return o;
}

std::vector<std::string> sgd_buffers(const SGDOptions& o) {
  if (o.momentum != 0.0) return {"momentum_buffer"};
  return {};
}

}  // namespace

template <class T>
SGD<T>::SGD(std::vector<Tensor<T>> params, const SGDOptions& options)
    : Optimizer<T>(std::move(params), checked(options).lr, "SGD", sgd_buffers(options)), options_(options) {}

template <class T> void SGD<T>::step() {
  NoGradGuard no_grad;
  // Scalars rounded to T once, as PyTorch's kernels take them.
  const T lr = static_cast<T>(this->lr_);
  const T weight_decay = static_cast<T>(options_.weight_decay);
  const T momentum = static_cast<T>(options_.momentum);
  const T keep = static_cast<T>(1.0 - options_.dampening);
  const bool use_decay = options_.weight_decay != 0.0;
  const bool use_momentum = options_.momentum != 0.0;
  const bool nesterov = options_.nesterov;

  for (std::size_t i = 0; i < this->params_.size(); ++i) {
    const T* g = this->grad_or_null(i);  // g (shape of p), flat
    if (!g) continue;                    // no gradient: skipped, state untouched
    auto& state = this->state_[i];
    T* w = this->params_[i].mutable_data().data();  // p, flat
    T* buf = use_momentum ? state.buffers[0].data() : nullptr;
    // The buffer starts as a copy of the first gradient, undamped (PyTorch's clone).
    const bool first = state.step == 0;
    const std::size_t n = this->params_[i].numel();
    for (std::size_t j = 0; j < n; ++j) {
      T d = g[j];
      if (use_decay) d = d + weight_decay * w[j];
      if (use_momentum) {
        buf[j] = first ? d : buf[j] * momentum + keep * d;
        d = nesterov ? d + momentum * buf[j] : buf[j];
      }
      w[j] = w[j] - lr * d;
    }
    ++state.step;
  }
  ++this->steps_;
}

template class SGD<float>;
template class SGD<double>;

}  // namespace xtgrad
