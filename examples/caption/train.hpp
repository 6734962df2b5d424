// Training the caption task: teacher-forced batches, AdamW with a linear warm-up and a
// cosine decay, an evaluation on the test split every eval_every steps (a line appended to
// DIR/metrics.jsonl) and a checkpoint (examples/common/train_state.hpp): DIR/model.safetensors
// holding the model and, in its metadata, the model's configuration and the run's settings,
// and DIR/train_state.safetensors holding AdamW's state, the schedule's position and the
// sampler's. `train --resume DIR` continues from it and ends bit-identical to a run that was
// never interrupted. The checkpoint's functions are in checkpoint.cpp.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "batch_sampler.hpp"
#include "metrics.hpp"
#include "model.hpp"
#include "run_settings.hpp"
#include "train_state.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/safetensors.hpp"

namespace caption {

using Limits = common::RunLimits;

struct TrainOptions {
  // Stored in the checkpoint's metadata.
  std::size_t batch = 32;
  double lr = 2e-3;
  double weight_decay = 0.01;
  std::uint64_t seed = 0;
  std::size_t train_size = 20000;
  std::size_t test_size = 1000;
  std::size_t steps = 3000;
  std::size_t warmup = 0;  // 0: 5% of the steps
  std::size_t eval_every = 500;
  int threads = 1;
  ModelConfig model;
  std::string run_id;  // the run's identity; empty: train() draws a new one
  // Per invocation.
  std::string out_dir = "runs/caption";
  std::string resume_dir;   // empty: a fresh run
  std::size_t stop_at = 0;  // > 0: stop after this step's checkpoint, as if interrupted (--resume goes on)
  bool overwrite = false;
  bool progress_bar = false;
  std::size_t warmup_steps() const { return warmup ? warmup : std::max<std::size_t>(1, steps / 20); }
};

struct TrainResult {
  std::size_t step = 0;
  double last_loss = 0;  // mean training loss since the previous evaluation
  Metrics metrics;
  double seconds = 0, median_step_ms = 0, eval_seconds = 0;
};

using common::kModelFile;
using common::kTrainStateFile;
constexpr const char* kProgram = "xtgrad-caption";  // the train state's format is kProgram-train-state/1
constexpr const char* kModelFormat = "xtgrad-caption-model/1";

// Values in range and an output directory that takes files: std::invalid_argument otherwise.
void validate(const TrainOptions& options);

// The split with this seed: `count` scenes.
std::vector<scenes::Scene> make_split(std::size_t count, std::uint64_t seed);

// The order a run takes its training pictures in: common::BatchSampler (each epoch a fresh
// permutation of the train_size pictures, its state in the train state) with a generator
// seeded from the run's seed.
struct Sampler : common::BatchSampler {
  explicit Sampler(const TrainOptions& options);
};

// A run's learning rate: a linear warm-up from 1% of the lr over warmup_steps(), then a
// cosine from the lr down to 0 at the last step.
std::shared_ptr<const xtgrad::LRSchedule> lr_schedule(const TrainOptions& options);

// A teacher-forced batch: the pictures (B,3,32,32) and their captions' tokens.
template <class T> struct TrainBatch {
  xtgrad::Tensor<T> images;
  TokenBatch tokens;
};
template <class T>
TrainBatch<T> train_batch(const std::vector<scenes::Scene>& data, const std::vector<std::size_t>& indices);

// One training step on a batch: zero_grad, the loss, backward, AdamW's step and the
// schedule's. Returns the loss: finite, or std::runtime_error naming the step.
template <class T>
double train_step(CaptionModel<T>& model, xtgrad::AdamW<T>& optimizer, xtgrad::LRScheduler<T>& scheduler,
                  const TrainBatch<T>& batch, std::size_t step);

// Greedy captions of every scene (the model put in eval mode and back), scored.
Metrics evaluate(CaptionModel<float>& model, const std::vector<scenes::Scene>& test,
                 std::vector<std::vector<std::size_t>>* generated = nullptr);

// Trains (or resumes, with options.resume_dir and the stored settings), appending to
// DIR/metrics.jsonl and checkpointing at every evaluation; progress goes to log.
// xtgrad::CheckpointError for a bad checkpoint to resume, std::runtime_error when the loss
// stops being finite. The caller holds the run directory (common::RunLock).
TrainResult train(TrainOptions options, std::ostream& log);

using LoadedModel = common::LoadedModel<CaptionModel<float>>;
// The run directory or its model.safetensors; xtgrad::CheckpointError (exit 1) naming the
// file and the problem: missing, corrupt, foreign, bad metadata, non-finite or misshapen.
LoadedModel load_model(const std::string& checkpoint);
// Writes DIR/model.safetensors atomically (a temporary file and a rename), the settings of
// `options` (and its run_id) in its metadata.
void save_model(const std::string& dir, const CaptionModel<float>& model, std::size_t step,
                const TrainOptions& options);

// A run to resume: the settings stored in its checkpoint (every one, strictly parsed:
// CheckpointError naming the file, the key and the value; the per-invocation fields as in
// `base`) and the step its checkpoint is at.
using StoredRun = common::StoredRun<TrainOptions>;
StoredRun stored_run(const std::string& dir, TrainOptions base);

}  // namespace caption
