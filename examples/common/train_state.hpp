// A training run's checkpoint, shared by the examples that train (align, caption, vqa). In the
// run directory:
//   model.safetensors        the model, written by the example (its format, the run's
//                            settings, "step" and "run_id" in the metadata)
//   train_state.safetensors  what resuming needs besides the model: the optimizer's moments
//                            and step counts ("optimizer.<key>"), the lr scheduler's
//                            position ("scheduler.<key>", for a run that has one), the
//                            batch order ("sampler.order"); metadata: "format", "step",
//                            "run_id" and the sampler's generator state and position
//   metrics.jsonl            one JSON line per evaluation, ending at the checkpoint
// A resume checks that the train state belongs to the model (run_id and step) and restores
// it all or nothing; the run then draws the same batches with the same optimizer state
// and ends bit-identical to one that was never interrupted.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "batch_sampler.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/safetensors.hpp"

namespace common {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kTrainStateFile = "train_state.safetensors";

// The run directory of a checkpoint given as a directory or as its model.safetensors;
// xtgrad::CheckpointError when it is neither.
std::string checkpoint_dir(const std::string& checkpoint);

// A run's model file, read and checked: its metadata "format" must be `format` ("not an
// xtgrad-caption model" otherwise, with program = "xtgrad-caption") and no tensor may hold
// a NaN or an infinity; xtgrad::CheckpointError naming the file otherwise.
struct ModelFile {
  std::string path;
  xtgrad::Safetensors<float> contents;
};
ModelFile read_model_file(const std::string& checkpoint, const std::string& format, const std::string& program);

// make() builds the model the file's metadata describes; the file's tensors are then
// loaded into it strictly (names and shapes, all or nothing). Any failure is an
// xtgrad::CheckpointError naming the file.
template <class Make> auto load_model_strictly(const ModelFile& file, Make make) {
  try {
    auto model = make();
    model->load_state_dict(file.contents.tensors);
    return model;
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError(file.path + ": " + e.what());
  }
}

// Whose train state: the program ("xtgrad-align": the format is
// "xtgrad-align-train-state/1"), the run's identity and the model's step.
struct TrainStateId {
  std::string program, run_id;
  std::size_t step = 0;
};

// The parts of a run a train state holds.
struct TrainingState {
  xtgrad::Optimizer<float>& optimizer;
  BatchSampler& sampler;
  xtgrad::LRScheduler<float>* scheduler = nullptr;  // none: the run has no schedule
};

// A checkpoint of training at id.step: save_model() writes model.safetensors atomically
// (its metadata must hold the run's settings), and the train state is tied to it by run_id
// and step. Crash-safe: a process killed at any point leaves the previous checkpoint or
// this one (the protocol is described in train_state.cpp). A failed save leaves nothing
// behind and throws.
void save_checkpoint(const std::string& dir, const TrainStateId& id, const TrainingState& state,
                     const std::function<void()>& save_model);

// Restores the train state of a run directory into `state`, after checking that it belongs
// to the run id.run_id at id.step; xtgrad::CheckpointError naming the file otherwise, with
// nothing changed.
void load_train_state(const std::string& dir, const TrainStateId& id, const TrainingState& state);

// Before a run writes into dir (whose checkpoint is at `step`, 0 for none): completes a
// save that was killed between its last two renames, or removes what it left.
void finish_interrupted_save(const std::string& dir, std::size_t step);

// The metrics record of a run, DIR/metrics.jsonl: one JSON line per evaluation. A line is
// appended before its checkpoint is saved and taken back if the save fails; a run that
// continues the record (a resume in place) first drops the lines after its checkpoint (a
// run killed between the two), so the record always ends at the checkpoint. Any other run
// starts a fresh record.
class MetricsLog {
 public:
  MetricsLog(const std::string& dir, bool continues_record, std::size_t checkpoint_step);
  void append(const std::string& line, std::size_t step);
  void take_back_after(std::size_t saved_step);

 private:
  std::string path_;
};

}  // namespace common
