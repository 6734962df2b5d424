// The order in which training visits the examples (common::BatchSampler: shuffled epochs of
// fixed-size batches), and the batches drawn ahead on a thread of their own.
#pragma once

#include <cstdint>
#include <future>
#include <vector>

#include "batch_sampler.hpp"
#include "data_parallel.hpp"
#include "model.hpp"

namespace align {

// The batch sampler's seed in a run with seed `seed`: a stream apart from the one that
// initialises the model (Generator(seed)).
inline std::uint64_t sampler_seed(std::uint64_t seed) { return seed ^ 0x5eed5eedULL; }

// The batch sampler of examples/common (shuffled epochs, its state in checkpoints).
using common::BatchSampler;

// A global batch (--batch pairs, drawn alike on every rank of a data-parallel run) and this
// rank's contiguous share of it (common::share_of_batch), rendered; one process: all of it.
struct RankBatch {
  std::vector<std::size_t> global;  // the global batch's example indices
  Batch<float> local;               // this rank's rows of it
};

// The next batch, drawn and rendered on a thread of its own while the current step runs
// (as PyTorch's DataLoader workers do). It draws from its own copy of the run's sampler,
// one batch ahead; the run's sampler still draws each batch as its step is taken (a
// checkpoint saves it as of that step), and next() checks the two agree. Only this rank's
// share of each batch is rendered.
class BatchPrefetcher {
 public:
  // ahead false: each batch is drawn and rendered by next() itself, on the calling thread
  // (for a run whose steps use every core: a thread of its own would take one from them).
  BatchPrefetcher(const std::vector<Example>& data, const BatchSampler& sampler, const common::Ranks& ranks = {},
                  bool ahead = true);
  RankBatch next(BatchSampler& run_sampler);  // waits for the batch, starts the one after

 private:
  void start();
  const std::vector<Example>& data_;
  BatchSampler ahead_;
  common::Ranks ranks_;
  std::launch launch_;
  std::future<RankBatch> pending_;
};

}  // namespace align
