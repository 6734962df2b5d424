#include "data_parallel_step.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "training.hpp"
#include "xtgrad/ops.hpp"

#ifdef XTGRAD_WITH_MPI
#include "xtgrad/distributed.hpp"
#endif

namespace common {

#ifdef XTGRAD_WITH_MPI
struct DataParallelStep::Wrapper {
  explicit Wrapper(const std::shared_ptr<xtgrad::Module<float>>& model) : ddp(model) {}
  xtgrad::distributed::DistributedDataParallel<float> ddp;
};
#else
struct DataParallelStep::Wrapper {};
#endif

DataParallelStep::DataParallelStep(const DistributedRun* parallel,
                                   [[maybe_unused]] const std::shared_ptr<xtgrad::Module<float>>& model) {
  if (!parallel || !parallel->distributed() || parallel->ranks().size == 1) return;
  parallel_ = parallel;
#ifdef XTGRAD_WITH_MPI
  xtgrad::distributed::convert_sync_batchnorm(*model);
  wrapper_ = std::make_unique<Wrapper>(model);
#endif
}

DataParallelStep::~DataParallelStep() = default;

std::vector<std::size_t> DataParallelStep::share(const std::vector<std::size_t>& global) const {
  if (!parallel_) return global;
  const Share mine = share_of_batch(global.size(), parallel_->ranks());
  return {global.begin() + long(mine.first), global.begin() + long(mine.first + mine.count)};
}

double DataParallelStep::step(xtgrad::Tensor<float>& loss, [[maybe_unused]] double terms,
                              xtgrad::Optimizer<float>& optimizer, xtgrad::LRScheduler<float>& scheduler,
                              std::size_t at) {
  if (!wrapper_) return optimizer_step(loss, optimizer, scheduler, at);
#ifdef XTGRAD_WITH_MPI
  const double ranks = double(parallel_->ranks().size);
  xtgrad::Tensor<float> scaled = xtgrad::mul(loss, float(ranks * terms / parallel_->sum(terms)));
  const double global = parallel_->sum(scaled.item()) / ranks;
  check_finite_loss(global, at);
  optimizer.zero_grad();
  scaled.backward();
  wrapper_->ddp.finish_gradient_synchronization();
  optimizer.step();
  scheduler.step();
  return global;
#else
  return 0;  // unreachable: no wrapper without MPI
#endif
}

std::vector<double> DataParallelStep::split_rows(
    std::size_t rows, std::size_t width,
    const std::function<std::vector<double>(std::size_t, std::size_t)>& fill) const {
  const Share mine = parallel_ ? share_of_batch(rows, parallel_->ranks()) : Share{0, rows};
  std::vector<double> table(rows * width, 0.0);
  if (mine.count > 0) {
    const std::vector<double> part = fill(mine.first, mine.count);
    if (part.size() != mine.count * width)
      throw std::logic_error("DataParallelStep::split_rows: " + std::to_string(part.size()) + " numbers for " +
                             std::to_string(mine.count) + " rows of " + std::to_string(width));
    std::copy(part.begin(), part.end(), table.begin() + long(mine.first * width));
  }
  if (parallel_) parallel_->sum_in_place(table);
  return table;
}

}  // namespace common
