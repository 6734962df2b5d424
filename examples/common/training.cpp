#include "training.hpp"

namespace common {

std::shared_ptr<const xtgrad::LRSchedule> warmup_cosine(std::size_t steps, std::size_t warmup) {
  std::vector<std::shared_ptr<const xtgrad::LRSchedule>> phases{std::make_shared<xtgrad::LinearWarmup>(warmup, 0.01)};
  std::vector<std::size_t> milestones;
  if (steps > warmup) {
    phases.push_back(std::make_shared<xtgrad::CosineAnnealingLR>(steps - warmup));
    milestones.push_back(warmup);
  }
  return std::make_shared<xtgrad::SequentialLR>(phases, milestones);
}

}  // namespace common
