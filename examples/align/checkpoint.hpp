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
void save_model(const std::string& dir, const AlignModel<float>& model, std::size_t step,
                xtgrad::Metadata extra = {});

}  // namespace align
