// Learning-rate schedules (closed forms of torch.optim.lr_scheduler) and LRScheduler.
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "optim_detail.hpp"
#include "xtgrad/optim.hpp"

namespace xtgrad {

using optim_detail::fmt;

double ConstantSchedule::lr(std::size_t /*step*/, double base_lr) const { return base_lr; }

StepLR::StepLR(std::size_t step_size, double gamma) : step_size_(step_size), gamma_(gamma) {
  if (step_size == 0) throw std::invalid_argument("StepLR: step_size must be >= 1, got 0");
  if (!(gamma >= 0.0) || !std::isfinite(gamma))
    throw std::invalid_argument("StepLR: gamma must be finite and >= 0, got " + fmt(gamma));
}

double StepLR::lr(std::size_t step, double base_lr) const {
  return base_lr * std::pow(gamma_, static_cast<double>(step / step_size_));
}

CosineAnnealingLR::CosineAnnealingLR(std::size_t t_max, double eta_min) : t_max_(t_max), eta_min_(eta_min) {
  if (t_max == 0) throw std::invalid_argument("CosineAnnealingLR: t_max must be >= 1, got 0");
  if (!(eta_min >= 0.0) || !std::isfinite(eta_min))
    throw std::invalid_argument("CosineAnnealingLR: eta_min must be finite and >= 0, got " + fmt(eta_min));
}

double CosineAnnealingLR::lr(std::size_t step, double base_lr) const {
  const double pi = 3.14159265358979323846;  // math.pi
  return eta_min_ +
         (base_lr - eta_min_) * (1.0 + std::cos(pi * static_cast<double>(step) / static_cast<double>(t_max_))) / 2.0;
}

LinearWarmup::LinearWarmup(std::size_t warmup_steps, double start_factor, std::shared_ptr<const LRSchedule> after)
    : warmup_steps_(warmup_steps), start_factor_(start_factor), after_(std::move(after)) {
  if (warmup_steps == 0) throw std::invalid_argument("LinearWarmup: warmup_steps must be >= 1, got 0");
  if (!(start_factor > 0.0 && start_factor <= 1.0))
    throw std::invalid_argument(
        "LinearWarmup: start_factor must be in (0, 1] (Starting multiplicative factor expected "
        "to be between 0 and 1), got " +
        fmt(start_factor));
}

double LinearWarmup::lr(std::size_t step, double base_lr) const {
  // torch LinearLR's closed form with end_factor = 1.
  const double done = static_cast<double>(step < warmup_steps_ ? step : warmup_steps_);
  const double factor = start_factor_ + (1.0 - start_factor_) * done / static_cast<double>(warmup_steps_);
  const double after = after_ ? after_->lr(step, base_lr) : base_lr;
  return factor * after;
}

SequentialLR::SequentialLR(std::vector<std::shared_ptr<const LRSchedule>> schedules,
                           std::vector<std::size_t> milestones)
    : schedules_(std::move(schedules)), milestones_(std::move(milestones)) {
  if (schedules_.empty() || milestones_.size() + 1 != schedules_.size())
    throw std::invalid_argument("SequentialLR: expects one milestone fewer than schedules, got " +
                                std::to_string(schedules_.size()) + " schedules and " +
                                std::to_string(milestones_.size()) + " milestones");
  for (std::size_t i = 0; i < schedules_.size(); ++i)
    if (!schedules_[i]) throw std::invalid_argument("SequentialLR: schedule " + std::to_string(i) + " is null");
  for (std::size_t i = 0; i < milestones_.size(); ++i)
    if (milestones_[i] == 0 || (i > 0 && milestones_[i] <= milestones_[i - 1]))
      throw std::invalid_argument("SequentialLR: milestones must be positive and strictly increasing");
}

double SequentialLR::lr(std::size_t step, double base_lr) const {
  std::size_t i = 0;
  while (i < milestones_.size() && step >= milestones_[i]) ++i;
  return schedules_[i]->lr(i == 0 ? step : step - milestones_[i - 1], base_lr);
}

// ---- LRScheduler ----------------------------------------------------------------------
template <class T>
LRScheduler<T>::LRScheduler(Optimizer<T>& optimizer, std::shared_ptr<const LRSchedule> schedule)
    : LRScheduler(optimizer, std::move(schedule), optimizer.lr()) {}

template <class T>
LRScheduler<T>::LRScheduler(Optimizer<T>& optimizer, std::shared_ptr<const LRSchedule> schedule, double base_lr)
    : optimizer_(optimizer), schedule_(std::move(schedule)), base_lr_(base_lr) {
  if (!schedule_) throw std::invalid_argument("LRScheduler: the schedule is null");
  optim_detail::check_lr(base_lr);
  apply();
}

template <class T> double LRScheduler<T>::lr() const { return schedule_->lr(steps_, base_lr_); }

template <class T> void LRScheduler<T>::apply() { optimizer_.set_lr(lr()); }

template <class T> void LRScheduler<T>::step() {
  const double next = schedule_->lr(steps_ + 1, base_lr_);
  optimizer_.set_lr(next);  // throws (and keeps the count) if the schedule went negative
  ++steps_;
}

template <class T> void LRScheduler<T>::set_steps(std::size_t steps) {
  optimizer_.set_lr(schedule_->lr(steps, base_lr_));
  steps_ = steps;
}

template <class T> StateDict<T> LRScheduler<T>::state_dict() const {
  StateDict<T> out;
  out.emplace("step", encode_state_scalar<T>(static_cast<double>(steps_)));
  out.emplace("base_lr", encode_state_scalar<T>(base_lr_));
  return out;
}

template <class T> void LRScheduler<T>::load_state_dict(const StateDict<T>& state) {
  const std::string who = "LRScheduler.load_state_dict: ";
  for (const auto& entry : state)
    if (entry.first != "step" && entry.first != "base_lr")
      throw std::invalid_argument(who + "unexpected key '" + entry.first + "'");
  auto get = [&](const std::string& key) {
    auto it = state.find(key);
    if (it == state.end()) throw std::invalid_argument(who + "missing key '" + key + "'");
    if (it->second.dimension() != 1 || it->second.size() != 3)
      throw std::invalid_argument(who + "'" + key + "' has shape " + shape_str(it->second.shape()) +
                                  " but a state scalar has shape (3)");
    return decode_state_scalar(it->second);
  };
  const double steps = get("step");
  const double base_lr = get("base_lr");
  if (!(steps >= 0.0) || steps != std::floor(steps) || steps > 9007199254740992.0)
    throw std::invalid_argument(who + "'step' must be a non-negative integer, got " + fmt(steps));
  if (!(base_lr >= 0.0) || !std::isfinite(base_lr))
    throw std::invalid_argument(who + "'base_lr' is " + fmt(base_lr) + ": Invalid learning rate");
  const auto count = static_cast<std::size_t>(steps);
  optimizer_.set_lr(schedule_->lr(count, base_lr));  // the only step that can still throw
  steps_ = count;
  base_lr_ = base_lr;
}

template class LRScheduler<float>;
template class LRScheduler<double>;

}  // namespace xtgrad
