// What a training run does at each step and each evaluation: alone (train_step, evaluate),
// or as one rank of a data-parallel run under mpirun (docs/distributed.md), where:
//   - every rank draws the same global batch (--batch pairs) and renders its contiguous
//     share of it (common::share_of_batch: rank r's captions and images);
//   - the image features of every rank are gathered (xtgrad::distributed::all_gather, whose
//     backward returns each rank the gradient of its rows summed over every rank), and each
//     rank scores its captions against all B images: its rows of the (B,B) scores;
//   - rank r's loss is the mean cross-entropy over its n_r captions; the global loss is
//     sum_r (n_r / B) loss_r, the single-process loss of the whole batch. DDP averages the
//     gradients over the N ranks, so each rank backpropagates N (n_r / B) loss_r: the average
//     of those gradients is the gradient of the global loss, as one process computes it;
//   - evaluation: rank r scores the test blocks r, r + N, ...; the hits are summed.
#pragma once

#include <memory>
#include <vector>

#include "distributed_run.hpp"
#include "metrics.hpp"
#include "sampler.hpp"
#include "xtgrad/optim.hpp"

#ifdef XTGRAD_WITH_MPI
#include "xtgrad/distributed.hpp"
#endif

namespace align {

class Trainer {
 public:
  virtual ~Trainer() = default;
  // One step on the batch: the loss of the whole global batch (the same on every rank); the
  // parameters are updated only when it is finite.
  virtual double step(const RankBatch& batch) = 0;
  // P@1 and grounding on the test split (every rank gets them).
  virtual Metrics evaluate(const std::vector<Example>& test) = 0;
  // The steps' seconds in collectives and their bytes per step (TrainResult); 0 alone.
  virtual double communication_seconds() const { return 0; }
  virtual double bytes_per_step() const { return 0; }
};

// Alone when `run` is null or runs no MPI, else a rank of the run's processes: then it
// wraps the model in DistributedDataParallel (a collective: rank 0's parameters are
// broadcast to every rank).
std::unique_ptr<Trainer> make_trainer(const common::DistributedRun* run,
                                      const std::shared_ptr<AlignModel<float>>& model,
                                      xtgrad::Optimizer<float>& optimizer, const std::vector<Example>& train_data);

#ifdef XTGRAD_WITH_MPI
// One data-parallel step, as above: the global batch `global` (indices into data, the same
// on every rank) and this rank's rendered share of it, `local`. Returns the global loss.
// ddp wraps model; every rank calls it with the same global batch. The seconds spent in
// the collectives (the all-gather's forward, the loss sum, the gradient wait) are added to
// *communication_seconds when it is given.
template <class T>
double parallel_train_step(AlignModel<T>& model, xtgrad::distributed::DistributedDataParallel<T>& ddp,
                           xtgrad::Optimizer<T>& optimizer, const std::vector<Example>& data,
                           const std::vector<std::size_t>& global, const Batch<T>& local,
                           double* communication_seconds = nullptr);
#endif

}  // namespace align
