// The order in which a training run visits its examples, shared by the examples that train
// (align, caption, vqa): shuffled epochs of fixed-size batches, its state saved in checkpoints
// (train_state.hpp) so that a resumed run draws the batches an uninterrupted one would.
#pragma once

#include <cstdint>
#include <vector>

#include "xtgrad/random.hpp"
#include "xtgrad/safetensors.hpp"

namespace common {

// A batch sampler over n examples: shuffled epochs (Fisher-Yates from its own generator),
// dropping the last partial batch. Its state (the generator, the epoch's order and the
// position in it) goes in checkpoints.
class BatchSampler {
 public:
  BatchSampler(std::size_t n, std::size_t batch, std::uint64_t seed);
  std::vector<std::size_t> next();
  xtgrad::Metadata state() const;      // "sampler.generator" and "sampler.position"
  xtgrad::Array<float> order() const;  // the current epoch's order (n); exact for n <= 2^24
  // Checks both before changing anything: std::invalid_argument naming the problem.
  void restore(const xtgrad::Metadata& state, const xtgrad::Array<float>& order);

 private:
  void shuffle();
  std::size_t n_, batch_;
  xtgrad::Generator gen_;
  std::vector<std::size_t> order_;
  std::size_t position_ = 0;
};

}  // namespace common
