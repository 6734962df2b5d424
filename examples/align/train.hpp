// Training the toy task: batches of pairs, Adam (or AdamW / SGD), evaluation every
// eval_every steps with a line appended to DIR/metrics.jsonl and a checkpoint.
#pragma once

#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "metrics.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/safetensors.hpp"

namespace align {

struct TrainOptions {
  // The run's settings: stored in the checkpoint, taken from it on --resume.
  std::size_t batch = 32;
  double lr = 3e-3;
  std::string optimizer = "adam";  // adam | adamw | sgd
  std::uint64_t seed = 0;
  std::size_t train_size = 20000;
  std::size_t test_size = 1000;
  ModelConfig model;
  // Per invocation.
  std::size_t steps = 2000;       // train until this step
  std::size_t eval_every = 250;
  int threads = 1;
  std::string out_dir = "runs/align";
  std::string resume_dir;         // empty: a fresh run
  bool progress_bar = false;      // a live bar (a terminal) or plain lines
  bool detect_anomaly = false;    // name the first op that makes a NaN or Inf (slow)
};

struct TrainResult {
  std::size_t step = 0;
  double last_loss = 0;  // mean training loss since the previous evaluation
  Metrics metrics;
  double seconds = 0;    // this invocation's training, evaluations included
  double ms_per_step = 0;
};

// Checks what can be checked before any work (values, an output directory that can be
// written): throws std::invalid_argument with a message for the user.
void validate(const TrainOptions& options);

// A run to resume: the settings stored in its checkpoint directory (the per-invocation
// fields left as they are in `base`) and the step its checkpoint is at.
struct StoredRun {
  TrainOptions settings;
  std::size_t step = 0;
};
StoredRun stored_run(const std::string& dir, TrainOptions base);

// The optimizer `name` (adam | adamw | sgd) over params, as training uses it; dump.cpp's
// replay takes the same one in float and double.
template <class T>
std::unique_ptr<xtgrad::Optimizer<T>> make_optimizer(const std::string& name, const std::vector<xtgrad::Tensor<T>>& params,
                                                     double lr);

// Trains (or resumes) and returns the final metrics; progress and a summary go to `log`.
// Throws xtgrad::CheckpointError for a bad checkpoint and std::runtime_error when the loss
// stops being finite (the last checkpoint is kept).
TrainResult train(const TrainOptions& options, std::ostream& log);

// The batch sampler's seed in a run with seed `seed`: a stream apart from the one that
// initialises the model (Generator(seed)).
inline std::uint64_t sampler_seed(std::uint64_t seed) { return seed ^ 0x5eed5eedULL; }

// A batch sampler over n examples: shuffled epochs, dropping the last partial batch. Its
// state (the generator, the epoch's order and the position in it) goes in checkpoints.
class BatchSampler {
 public:
  BatchSampler(std::size_t n, std::size_t batch, std::uint64_t seed);
  std::vector<std::size_t> next();
  xtgrad::Metadata state() const;             // generator state and position
  xtgrad::Array<float> order() const;          // the current epoch's order
  void restore(const xtgrad::Metadata& state, const xtgrad::Array<float>& order);

 private:
  void shuffle();
  std::size_t n_, batch_;
  xtgrad::Generator gen_;
  std::vector<std::size_t> order_;
  std::size_t position_ = 0;
};

}  // namespace align
