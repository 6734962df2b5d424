// The learning-rate schedule every example's training loop shares (linear warm-up, then
// cosine) and the step that follows a batch's loss; the batch order is batch_sampler.hpp's.
#pragma once

#include <cmath>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>

#include "xtgrad/optim.hpp"

namespace common {

// A linear warm-up from 1% of the lr over `warmup` steps (>= 1), then a cosine from the lr
// down to 0 at step `steps`.
std::shared_ptr<const xtgrad::LRSchedule> warmup_cosine(std::size_t steps, std::size_t warmup);

// std::runtime_error naming the step unless the loss is finite.
inline void check_finite_loss(double loss, std::size_t step) {
  if (!std::isfinite(loss))
    throw std::runtime_error("the loss became " + std::to_string(loss) + " at step " + std::to_string(step) +
                             " (try a smaller --lr)");
}

// After a batch's forward pass: the loss's value (finite, or std::runtime_error naming the
// step), then zero_grad, backward, the optimizer's step and the schedule's.
template <class T>
double optimizer_step(xtgrad::Tensor<T>& loss, xtgrad::Optimizer<T>& optimizer, xtgrad::LRScheduler<T>& scheduler,
                      std::size_t step) {
  const double value = loss.item();
  check_finite_loss(value, step);
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();
  scheduler.step();
  return value;
}

}  // namespace common
