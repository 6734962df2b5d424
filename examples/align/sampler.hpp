// The order in which training visits the examples: shuffled epochs of fixed-size batches.
#pragma once

#include <cstdint>
#include <future>
#include <vector>

#include "model.hpp"

#include "xtgrad/random.hpp"
#include "xtgrad/safetensors.hpp"

namespace align {

// The batch sampler's seed in a run with seed `seed`: a stream apart from the one that
// initialises the model (Generator(seed)).
inline std::uint64_t sampler_seed(std::uint64_t seed) { return seed ^ 0x5eed5eedULL; }

// A batch sampler over n examples: shuffled epochs, dropping the last partial batch. Its
// state (the generator, the epoch's order and the position in it) goes in checkpoints.
class BatchSampler {
 public:
  BatchSampler(std::size_t n, std::size_t batch, std::uint64_t seed);
  std::vector<std::size_t> next();
  xtgrad::Metadata state() const;      // generator state and position
  xtgrad::Array<float> order() const;  // the current epoch's order
  void restore(const xtgrad::Metadata& state, const xtgrad::Array<float>& order);

 private:
  void shuffle();
  std::size_t n_, batch_;
  xtgrad::Generator gen_;
  std::vector<std::size_t> order_;
  std::size_t position_ = 0;
};

// The next batch, drawn and rendered on a thread of its own while the current step runs
// (as PyTorch's DataLoader workers do). It draws from its own copy of the run's sampler,
// one batch ahead; the run's sampler still draws each batch as its step is taken (a
// checkpoint saves it as of that step), and next() checks the two agree.
class BatchPrefetcher {
 public:
  BatchPrefetcher(const std::vector<Example>& data, const BatchSampler& sampler);
  Batch<float> next(BatchSampler& run_sampler);  // waits for the batch, starts the one after

 private:
  void start();
  const std::vector<Example>& data_;
  BatchSampler ahead_;
  std::future<Batch<float>> pending_;
};

}  // namespace align
