// Checkpoints of the toy task, in a run directory:
//   model.safetensors        parameters by dotted name (F32), metadata: the model's
//                            configuration, "format": "xtgrad-align-model/1", "step"
//   train_state.safetensors  what resuming needs: optimizer moments and step counts
//                            ("optimizer.<key>"), the batch order ("sampler.order"),
//                            metadata: the run's settings and the sampler's RNG state
// Every command that takes a checkpoint accepts the directory or the model.safetensors in it.
#pragma once

#include <memory>
#include <string>

#include "model.hpp"
#include "sampler.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/safetensors.hpp"

namespace align {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kTrainStateFile = "train_state.safetensors";
constexpr const char* kModelFormat = "xtgrad-align-model/1";
constexpr const char* kTrainStateFormat = "xtgrad-align-train-state/1";

// The run directory of a checkpoint given as a directory or as its model.safetensors.
std::string checkpoint_dir(const std::string& checkpoint);

struct LoadedModel {
  ModelConfig config;
  std::unique_ptr<AlignModel<float>> model;
  std::size_t step = 0;
  xtgrad::Metadata metadata;
};

// Reads and checks model.safetensors (format, configuration, every tensor's name and
// shape) and builds the model; throws xtgrad::CheckpointError naming the problem.
LoadedModel load_model(const std::string& checkpoint);

// Writes model.safetensors atomically (temporary file + rename).
void save_model(const std::string& dir, const AlignModel<float>& model, std::size_t step, xtgrad::Metadata extra = {});

// A checkpoint of training at `step`: the model with the run's settings in its metadata,
// and the train state (optimizer and sampler) tied to it by run_id and step. Crash-safe:
// a process killed at any point leaves the previous checkpoint or this one (the protocol
// is described in checkpoint.cpp). A failed save leaves nothing behind and throws.
void save_checkpoint(const std::string& dir, const std::string& run_id, const xtgrad::Metadata& settings,
                     std::size_t step, const AlignModel<float>& model, const xtgrad::Optimizer<float>& optimizer,
                     const BatchSampler& sampler);

// Restores the optimizer and sampler of a run directory, after checking that its train
// state belongs to the run `run_id` and to `step`; CheckpointError otherwise, with nothing
// changed.
void load_train_state(const std::string& dir, const std::string& run_id, std::size_t step,
                      xtgrad::Optimizer<float>& optimizer, BatchSampler& sampler);

// Before a run writes into dir (whose checkpoint is at `step`, 0 for none): completes a
// save that was killed between its last two renames, or removes what it left.
void finish_interrupted_save(const std::string& dir, std::size_t step);

}  // namespace align
