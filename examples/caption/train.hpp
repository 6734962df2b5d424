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

#include "distributed_run.hpp"
#include "metrics.hpp"
#include "model.hpp"
#include "run_options.hpp"
#include "run_settings.hpp"
#include "train_state.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/safetensors.hpp"

namespace caption {

using Limits = common::RunLimits;

// The run's settings (common::RunOptions) with this example's defaults.
struct TrainOptions : common::RunOptions<ModelConfig> {
  TrainOptions() : RunOptions({20000, 1000, 3000, 500, "runs/caption"}) {}
};

using TrainResult = common::TrainResult<Metrics>;

using common::kModelFile;
using common::kTrainStateFile;
constexpr const char* kProgram = "xtgrad-caption";  // the train state's format is kProgram-train-state/1
constexpr const char* kModelFormat = "xtgrad-caption-model/1";

// Values in range: std::invalid_argument otherwise (the output directory is checked by
// common::train_from_flags, on rank 0).
void validate(const TrainOptions& options);

// The split with this seed: `count` scenes.
std::vector<scenes::Scene> make_split(std::size_t count, std::uint64_t seed);

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

// Greedy captions of these pictures (the model put in eval mode and back).
std::vector<std::vector<std::size_t>> greedy_captions(CaptionModel<float>& model,
                                                      const std::vector<scenes::Scene>& pictures);
// Greedy captions of every scene, scored.
Metrics evaluate(CaptionModel<float>& model, const std::vector<scenes::Scene>& test,
                 std::vector<std::vector<std::size_t>>* generated = nullptr);

// Trains (or resumes, with options.resume_dir and the stored settings), appending to
// DIR/metrics.jsonl and checkpointing at every evaluation; progress goes to log.
// xtgrad::CheckpointError for a bad checkpoint to resume, std::runtime_error when the loss
// stops being finite. The caller holds the run directory (common::RunLock).
// parallel: this process's ranks under mpirun (each trains on its share of every batch;
// rank 0 alone evaluates, logs and writes), null alone.
TrainResult train(TrainOptions options, std::ostream& log, const common::DistributedRun* parallel = nullptr);

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
