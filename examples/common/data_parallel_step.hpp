// The data-parallel part of a caption or VQA training step under mpirun (docs/distributed.md):
// each rank takes its share of the global batch, the model's BatchNorms normalise over the
// whole global batch (SyncBatchNorm), and the gradients are averaged over ranks
// (DistributedDataParallel), so that N ranks take the step one process takes on the
// whole batch; evaluation is split over the ranks too. Alone (no launcher, or one rank)
// every call is the single-process one.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "distributed_run.hpp"
#include "xtgrad/module.hpp"
#include "xtgrad/optim.hpp"

namespace common {

class DataParallelStep {
 public:
  // Under mpirun (parallel->distributed() with more than one rank): every BatchNorm inside
  // a Sequential of `model` becomes a SyncBatchNorm, and the model is wrapped in
  // DistributedDataParallel (rank 0's parameters on every rank). Build it before the
  // optimizer. parallel null: alone.
  DataParallelStep(const DistributedRun* parallel, const std::shared_ptr<xtgrad::Module<float>>& model);
  ~DataParallelStep();
  DataParallelStep(const DataParallelStep&) = delete;
  DataParallelStep& operator=(const DataParallelStep&) = delete;

  // This rank's contiguous share of a global batch (share_of_batch); all of it alone.
  std::vector<std::size_t> share(const std::vector<std::size_t>& global) const;

  // One optimisation step from this rank's loss, the mean over its `terms` loss terms
  // (answers, target tokens): zero_grad, backward of the loss scaled by N x terms / (every
  // rank's terms) so that the averaged gradient is the global batch's, the all-reduce,
  // the optimizer's and the schedule's steps. Returns the global batch's loss (the same on
  // every rank): finite, or std::runtime_error naming the step. A collective.
  double step(xtgrad::Tensor<float>& loss, double terms, xtgrad::Optimizer<float>& optimizer,
              xtgrad::LRScheduler<float>& scheduler, std::size_t at);

  // A table of `rows` rows of `width` numbers (an evaluation's outputs, one row per test
  // example) computed split over the ranks: fill(first, count) gives this rank's rows
  // [first, first + count) (its contiguous share; all of them alone), and every rank gets
  // the whole table (an all-reduce of the sum: the other rows are zeros). A collective.
  std::vector<double> split_rows(std::size_t rows, std::size_t width,
                                 const std::function<std::vector<double>(std::size_t, std::size_t)>& fill) const;

 private:
  struct Wrapper;  // the DistributedDataParallel, where MPI is built
  const DistributedRun* parallel_ = nullptr;
  std::unique_ptr<Wrapper> wrapper_;
};

}  // namespace common
