// Checkpoints of the toy task, in a run directory (the layout, the crash-safe save and the
// resume are examples/common/train_state.hpp's):
//   model.safetensors        parameters by dotted name (F32), metadata: the model's
//                            configuration, "format": "xtgrad-align-model/1", "step" and
//                            the run's settings
//   train_state.safetensors  what resuming needs: optimizer moments and step counts, the
//                            batch order and the sampler's RNG state ("xtgrad-align-train-state/1")
// Every command that takes a checkpoint accepts the directory or the model.safetensors in it.
#pragma once

#include <memory>
#include <string>

#include "model.hpp"
#include "train_state.hpp"
#include "xtgrad/safetensors.hpp"

namespace align {

using common::checkpoint_dir;
using common::kModelFile;
using common::kTrainStateFile;
constexpr const char* kProgram = "xtgrad-align";  // the train state's format is kProgram-train-state/1
constexpr const char* kModelFormat = "xtgrad-align-model/1";

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

}  // namespace align
