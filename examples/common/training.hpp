// The learning-rate schedule every example's training loop shares (linear warm-up, then
// cosine); the batch order is batch_sampler.hpp's.
#pragma once

#include <cstddef>
#include <memory>

#include "xtgrad/optim.hpp"

namespace common {

// A linear warm-up from 1% of the lr over `warmup` steps (>= 1), then a cosine from the lr
// down to 0 at step `steps`.
std::shared_ptr<const xtgrad::LRSchedule> warmup_cosine(std::size_t steps, std::size_t warmup);

}  // namespace common
