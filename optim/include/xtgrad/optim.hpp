// xtgrad optimizers: SGD, Adam, AdamW, gradient clipping and learning-rate schedules.
//
// The arithmetic is PyTorch 1.13's (torch.optim, single-tensor path), checked against it
// in tests/test_optim.cpp with fixtures from tests/fixtures/make_optim_fixtures.py.
//
// A training step, in PyTorch's order:
//
//   Adam<float> opt(params, AdamOptions().set_lr(3e-4));
//   LRScheduler<float> sched(opt, std::make_shared<LinearWarmup>(
//                                     100, 0.1, std::make_shared<CosineAnnealingLR>(10000)));
//   for (std::size_t it = 0; it < 10000; ++it) {
//     opt.zero_grad();
//     Tensor<float> loss = ...;
//     loss.backward();
//     clip_grad_norm(opt.params(), 1.0);   // optional, between backward() and step()
//     opt.step();                          // updates the parameters in place
//     sched.step();                        // after opt.step(): sets the lr for the next step
//   }
//
// Parameters are Tensor handles: an optimizer shares the nodes of the model's parameters,
// so step() changes the model. A parameter without a gradient (has_grad() false) is
// skipped by step(), as PyTorch skips `p.grad is None`.
#pragma once

#include <cstddef>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "xtgrad/tensor.hpp"

namespace xtgrad {

// ---- state dicts ----------------------------------------------------------------------
// Optimizer and scheduler state is a StateDict (tensor.hpp), ready to be written to a
// checkpoint next to the model's parameters. Per-parameter entries are prefixed by the
// parameter's index in params(): "0.exp_avg", "1.step".
//
// A scalar (an lr, a step count) is stored as a shape (3) array {hi, mid, lo} whose sum
// in double is the exact double value: in a float state dict one element would round the
// lr to float and step counts above 2^24, and resuming would not be bit-exact.
template <class T> Array<T> encode_state_scalar(double value);
template <class T> double decode_state_scalar(const Array<T>& encoded);  // throws unless shape (3)

// ---- Optimizer ------------------------------------------------------------------------
// The base of every optimizer: the parameters, the lr, and per-parameter state (a step
// count and the named buffers of the concrete optimizer, each the parameter's shape).
template <class T> class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // An optimizer is referenced by schedulers and owns per-parameter state: no copies.
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient, in place, under NoGradGuard.
  virtual void step() = 0;
  // Fills every existing gradient with zeros (PyTorch 1.13's zero_grad(set_to_none=False)).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);  // throws std::invalid_argument when lr < 0 or NaN

  const std::vector<Tensor<T>>& params() const { return params_; }
  // step() calls so far.
  std::size_t steps() const { return steps_; }

  // Everything needed to resume bit-exactly:
  //   "lr"              (3)  the current lr (encode_state_scalar)
  //   "step"            (3)  step() calls so far
  //   "<i>.step"        (3)  updates of parameter i (calls where it had a gradient;
  //                          PyTorch's per-parameter state['step'], used by Adam's bias
  //                          correction and by SGD to start its momentum buffer)
  //   "<i>.<buffer>"    (shape of parameter i) each buffer of the optimizer, e.g.
  //                          "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"
  // The other hyperparameters (betas, momentum, ...) come from the options the optimizer
  // was built with; they are not part of the state.
  StateDict<T> state_dict() const;
  // Validates everything first and changes nothing when anything is wrong: a missing or
  // unexpected key, state for another number of parameters, a shape that differs from
  // the parameter's, a negative or fractional step count, a negative lr. Throws
  // std::invalid_argument naming the key (and the shapes).
  void load_state_dict(const StateDict<T>& state);

  // The names of the per-parameter buffers of this optimizer, in state_dict's keys.
  const std::vector<std::string>& buffer_names() const { return buffer_names_; }

 protected:
  // Throws std::invalid_argument for an empty list, an undefined tensor, a non-leaf tensor
  // or a tensor listed twice. name prefixes error messages ("Adam").
  Optimizer(std::vector<Tensor<T>> params, double lr, const char* name, std::vector<std::string> buffer_names);

  struct ParamState {
    std::size_t step = 0;           // updates of this parameter so far
    std::vector<Array<T>> buffers;  // buffer_names_[b] -> buffers[b], zeros at first
  };

  // The gradient of parameter i, checked to have as many elements as the parameter;
  // nullptr when it has none (the parameter is skipped).
  const T* grad_or_null(std::size_t i) const;

  std::vector<Tensor<T>> params_;
  std::vector<ParamState> state_;
  std::vector<std::string> buffer_names_;
  double lr_;
  std::size_t steps_ = 0;
  const char* name_;
};

// ---- SGD ------------------------------------------------------------------------------
struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  double weight_decay = 0;  // L2: weight_decay * p added to the gradient

  SGDOptions& set_lr(double v) {
    lr = v;
    return *this;
  }
  SGDOptions& set_momentum(double v) {
    momentum = v;
    return *this;
  }
  SGDOptions& set_dampening(double v) {
    dampening = v;
    return *this;
  }
  SGDOptions& set_nesterov(bool v) {
    nesterov = v;
    return *this;
  }
  SGDOptions& set_weight_decay(double v) {
    weight_decay = v;
    return *this;
  }
};

// Per element, as torch.optim.SGD:
//   d = g + weight_decay * p
//   b = d on the parameter's first update, else momentum * b + (1 - dampening) * d
//   d = nesterov ? d + momentum * b : b          (when momentum != 0)
//   p -= lr * d
// State: "<i>.momentum_buffer" when momentum != 0.
template <class T> class SGD : public Optimizer<T> {
 public:
  // Throws std::invalid_argument: "Invalid learning rate: -1", "Invalid momentum value:
  // ...", "Invalid weight_decay value: ...", "Nesterov momentum requires a momentum and
  // zero dampening".
  SGD(std::vector<Tensor<T>> params, const SGDOptions& options = {});
  void step() override;
  const SGDOptions& options() const { return options_; }

 private:
  SGDOptions options_;
};

// ---- Adam and AdamW -------------------------------------------------------------------
// The options of both; Derived makes the chainable setters return the derived type.
template <class Derived> struct AdamOptionsBase {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;

  Derived& set_lr(double v) {
    lr = v;
    return self();
  }
  Derived& set_beta1(double v) {
    beta1 = v;
    return self();
  }
  Derived& set_beta2(double v) {
    beta2 = v;
    return self();
  }
  Derived& set_betas(double b1, double b2) {
    beta1 = b1;
    beta2 = b2;
    return self();
  }
  Derived& set_eps(double v) {
    eps = v;
    return self();
  }
  Derived& set_weight_decay(double v) {
    weight_decay = v;
    return self();
  }
  Derived& set_amsgrad(bool v) {
    amsgrad = v;
    return self();
  }

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
};
// weight_decay is L2: weight_decay * p is added to the gradient.
struct AdamOptions : AdamOptionsBase<AdamOptions> {};
// weight_decay is decoupled: p *= 1 - lr * weight_decay before the Adam update.
struct AdamWOptions : AdamOptionsBase<AdamWOptions> {
  AdamWOptions() { weight_decay = 0.01; }
};

// The shared update of Adam and AdamW. Per element, with t = the parameter's update count
// (from 1), as torch.optim.Adam / AdamW 1.13:
//   AdamW: p *= 1 - lr * weight_decay           Adam: g += weight_decay * p
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   vmax = max(vmax, v)                          (amsgrad; used in place of v below)
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//   p -= lr / (1 - beta1^t) * m / denom
// State: "<i>.exp_avg", "<i>.exp_avg_sq", and "<i>.max_exp_avg_sq" with amsgrad.
template <class T> class AdamBase : public Optimizer<T> {
 public:
  void step() override;

  double beta1() const { return beta1_; }
  double beta2() const { return beta2_; }
  double eps() const { return eps_; }
  double weight_decay() const { return weight_decay_; }
  bool amsgrad() const { return amsgrad_; }

 protected:
  // Throws std::invalid_argument: "Invalid learning rate: ...", "Invalid epsilon value:
  // ...", "Invalid beta parameter at index 0: ..." (or 1), "Invalid weight_decay value: ...".
  AdamBase(std::vector<Tensor<T>> params, const char* name, double lr, double beta1, double beta2, double eps,
           double weight_decay, bool amsgrad, bool decoupled);

 private:
  double beta1_, beta2_, eps_, weight_decay_;
  bool amsgrad_, decoupled_;
};

template <class T> class Adam : public AdamBase<T> {
 public:
  Adam(std::vector<Tensor<T>> params, const AdamOptions& options = {});
  const AdamOptions& options() const { return options_; }

 private:
  AdamOptions options_;
};

template <class T> class AdamW : public AdamBase<T> {
 public:
  AdamW(std::vector<Tensor<T>> params, const AdamWOptions& options = {});
  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
};

// ---- gradient clipping ----------------------------------------------------------------
// torch.nn.utils.clip_grad_norm_: the norm of all existing gradients together (as if
// concatenated into one vector), computed in double; when max_norm / (total + 1e-6) < 1
// every gradient is multiplied by that factor. Parameters without a gradient are
// ignored; with none at all the result is 0. norm_type > 0, or infinity for the largest
// absolute value. Returns the total norm before clipping.
// A NaN or infinite total throws std::runtime_error when error_if_nonfinite; otherwise,
// as PyTorch, the gradients are multiplied by the (NaN or zero) factor.
// Throws std::invalid_argument for norm_type <= 0 or NaN, or max_norm < 0 or NaN.
template <class T>
double clip_grad_norm(const std::vector<Tensor<T>>& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);

inline constexpr double inf_norm = std::numeric_limits<double>::infinity();

// ---- learning-rate schedules ----------------------------------------------------------
// A schedule is a pure function of the scheduler's step count and the base lr (the
// optimizer's lr when the scheduler was created), in closed form. Schedules compose:
// LinearWarmup multiplies its factor onto another schedule.
class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  // The lr after `step` scheduler steps (step 0: when the scheduler is created).
  virtual double lr(std::size_t step, double base_lr) const = 0;
};

// base_lr at every step.
class ConstantSchedule : public LRSchedule {
 public:
  double lr(std::size_t step, double base_lr) const override;
};

// base_lr * gamma^(step / step_size) (integer division), as torch StepLR.
class StepLR : public LRSchedule {
 public:
  StepLR(std::size_t step_size, double gamma = 0.1);  // step_size >= 1, gamma >= 0
  double lr(std::size_t step, double base_lr) const override;

 private:
  std::size_t step_size_;
  double gamma_;
};

// eta_min + (base_lr - eta_min) * (1 + cos(pi * step / t_max)) / 2: torch
// CosineAnnealingLR's closed form. Past t_max it rises again (period 2 t_max), as in
// PyTorch; keep step <= t_max for a single decay.
class CosineAnnealingLR : public LRSchedule {
 public:
  CosineAnnealingLR(std::size_t t_max, double eta_min = 0);  // t_max >= 1
  double lr(std::size_t step, double base_lr) const override;

 private:
  std::size_t t_max_;
  double eta_min_;
};

// factor(step) * after.lr(step, base_lr), where the factor rises linearly from
// start_factor at step 0 to 1 at warmup_steps and stays 1 (torch LinearLR with
// end_factor 1 and total_iters = warmup_steps). `after` sees the same step count, not
// step - warmup_steps: this is PyTorch's ChainedScheduler([LinearLR, after]); a cosine
// after a warm-up therefore decays from step 0 and reaches eta_min at its own t_max.
// No `after` (nullptr) means a constant base_lr.
class LinearWarmup : public LRSchedule {
 public:
  // warmup_steps >= 1, 0 < start_factor <= 1.
  LinearWarmup(std::size_t warmup_steps, double start_factor, std::shared_ptr<const LRSchedule> after = nullptr);
  double lr(std::size_t step, double base_lr) const override;

 private:
  std::size_t warmup_steps_;
  double start_factor_;
  std::shared_ptr<const LRSchedule> after_;
};

// One schedule after another, as torch SequentialLR: schedules[0] until milestones[0], then
// schedules[1] counted from 0 again, and so on (milestones strictly increasing, one fewer
// than the schedules). Warm-up then cosine, the cosine starting after the warm-up:
//   SequentialLR({LinearWarmup(w, 0.01), CosineAnnealingLR(total - w)}, {w})
// (LinearWarmup's `after` instead multiplies the warm-up onto a schedule that runs from
// step 0: a cosine composed that way decays during the warm-up.)
class SequentialLR : public LRSchedule {
 public:
  SequentialLR(std::vector<std::shared_ptr<const LRSchedule>> schedules, std::vector<std::size_t> milestones);
  double lr(std::size_t step, double base_lr) const override;

 private:
  std::vector<std::shared_ptr<const LRSchedule>> schedules_;
  std::vector<std::size_t> milestones_;
};

// Drives an optimizer's lr by a schedule. The optimizer must outlive the scheduler.
// Creating it sets the optimizer's lr to schedule.lr(0, base_lr) (a warm-up starts low at
// once, as in PyTorch); step() advances the count and sets schedule.lr(steps, base_lr).
// Convention (PyTorch's): call scheduler.step() after optimizer.step(), once per
// optimizer step (or once per epoch, for schedules counted in epochs).
template <class T> class LRScheduler {
 public:
  // base_lr = the optimizer's current lr.
  LRScheduler(Optimizer<T>& optimizer, std::shared_ptr<const LRSchedule> schedule);
  LRScheduler(Optimizer<T>& optimizer, std::shared_ptr<const LRSchedule> schedule, double base_lr);

  void step();
  std::size_t steps() const { return steps_; }
  // Jumps to a step count (resuming) and sets the optimizer's lr for it.
  void set_steps(std::size_t steps);
  double base_lr() const { return base_lr_; }
  double lr() const;  // schedule.lr(steps(), base_lr()): the lr it last set

  // "step" and "base_lr" (encode_state_scalar); loading sets the optimizer's lr.
  StateDict<T> state_dict() const;
  void load_state_dict(const StateDict<T>& state);  // all-or-nothing, std::invalid_argument

 private:
  void apply();
  Optimizer<T>& optimizer_;
  std::shared_ptr<const LRSchedule> schedule_;
  double base_lr_;
  std::size_t steps_ = 0;
};

}  // namespace xtgrad
