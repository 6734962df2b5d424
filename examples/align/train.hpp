// Training the toy task: batches of pairs, Adam (or AdamW / SGD), evaluation every
// eval_every steps with a line appended to DIR/metrics.jsonl and a checkpoint.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "distributed_run.hpp"
#include "metrics.hpp"
#include "sampler.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/safetensors.hpp"

namespace align {

// The range of every setting: one definition for the flags and for a checkpoint's metadata.
struct Limits {
  static constexpr std::uint64_t kMaxSteps = 1'000'000'000;
  static constexpr std::uint64_t kMaxBatch = 1'000'000;  // available memory bounds it first
  // The sampler's epoch order is stored as float32, exact for indices below 2^24.
  static constexpr std::uint64_t kMaxTrainSize = std::uint64_t(1) << 24;
  static constexpr std::uint64_t kMaxTestSize = 1'000'000;
  static constexpr std::uint64_t kMaxSeed = UINT64_MAX - 1;  // the test split's seed is seed + 1
};

struct TrainOptions {
  // The run's settings: stored in the checkpoint, taken from it on --resume.
  std::size_t batch = 32;
  double lr = 3e-3;
  std::string optimizer = "adam";  // adam | adamw | sgd
  std::uint64_t seed = 0;
  std::size_t train_size = 20000;
  std::size_t test_size = 1000;
  ModelConfig model;
  std::string run_id;  // the run's identity; empty: train() draws a new one
  // The processes of a data-parallel run (mpirun -np N), stored when above 1: a resume must
  // run on as many (docs/distributed.md).
  std::size_t world_size = 1;
  // Stored too, and taken on --resume unless the flag is given again.
  std::size_t eval_every = 250;
  int threads = 1;
  // Per invocation.
  std::size_t steps = 2000;  // train until this step
  std::string out_dir = "runs/align";
  std::string resume_dir;       // empty: a fresh run
  bool overwrite = false;       // --out may replace a run that is there
  bool progress_bar = false;    // a live bar (a terminal) or plain lines
  bool detect_anomaly = false;  // name the first op that makes a NaN or Inf (slow)
  // Evaluate on the core the steps leave free, while they go on (one process, one step
  // thread, more than one core, no --detect-anomaly); false: the steps wait for each
  // evaluation. The metrics and checkpoints are the same either way
  // (tests/test_align_train_loop.cpp).
  bool background_evaluation = true;
};

struct TrainResult {
  std::size_t step = 0;
  double last_loss = 0;  // mean training loss since the previous evaluation
  Metrics metrics;
  double seconds = 0;      // this invocation's training, evaluations included
  double ms_per_step = 0;  // mean over the steps since the previous evaluation
  // This invocation's steps: their median time and count, and the seconds spent
  // evaluating and saving (so that seconds - steps x median shows what the loop costs).
  double median_step_ms = 0;
  std::size_t steps_taken = 0;
  double eval_seconds = 0;                 // on the training thread
  std::size_t background_evaluations = 0;  // of them, evaluated beside the steps
  // A data-parallel run's steps: the seconds in collectives that wait for every rank (the
  // image all-gather, the loss sum, DistributedDataParallel's gradient wait; the
  // all-gather's backward runs inside backward() and is not counted), and the bytes each
  // rank sends into them per step.
  double communication_seconds = 0;
  double bytes_per_step = 0;
};

// Checks what can be checked before any work (values, the memory a step needs, and with
// check_out_dir an output directory that can be written: rank 0's job in a data-parallel
// run): throws std::invalid_argument with a message for the user.
void validate(const TrainOptions& options, bool check_out_dir = true);

// The memory one training step of these settings needs, in bytes (measured: every caption
// is scored against every image of the batch, so activations grow with batch^2 x dim).
double step_memory_bytes(const TrainOptions& options);

// The run settings stored in a model file's metadata, parsed strictly (CheckpointError
// naming `file`, the key and the value); the fields not stored are left as in `base`.
// Eval and show need only the data settings (seed, test_size); with for_resume, the
// run's identity and every stored setting must be there too.
TrainOptions settings_from_metadata(const std::string& file, const xtgrad::Metadata& metadata, TrainOptions base,
                                    bool for_resume);

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
std::unique_ptr<xtgrad::Optimizer<T>> make_optimizer(const std::string& name,
                                                     const std::vector<xtgrad::Tensor<T>>& params, double lr);

// One optimisation step on one batch, as training takes it: zero_grad, forward (without
// attention weights), the loss, backward, the optimizer's update. A non-finite loss
// changes nothing (no backward, no update). The gradients stay until the next step's
// zero_grad (dump.cpp records them).
template <class T> struct StepResult {
  double loss;
  xtgrad::Tensor<T> scores;  // (B,B): caption i against image j
};
template <class T>
StepResult<T> train_step(AlignModel<T>& model, xtgrad::Optimizer<T>& optimizer, const std::vector<Example>& data,
                         const Batch<T>& batch);

// Trains (or resumes) and returns the final metrics; progress and a summary go to `log`.
// Throws xtgrad::CheckpointError for a bad checkpoint and std::runtime_error when the loss
// stops being finite (the last checkpoint is kept). The caller holds the run directory
// (common::RunLock) and has checked that it may write there (common::check_may_write_run).
// With a `parallel` run under mpirun this process is one of its ranks (parallel.hpp): every
// rank calls train() alike; rank 0 alone logs and writes the metrics and checkpoints.
TrainResult train(TrainOptions options, std::ostream& log, const common::DistributedRun* parallel = nullptr);

}  // namespace align
