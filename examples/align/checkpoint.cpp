#include "checkpoint.hpp"

#include <filesystem>
#include <stdexcept>

#include "checkpoint_rules.hpp"

namespace align {

namespace fs = std::filesystem;

std::string checkpoint_dir(const std::string& checkpoint) {
  const fs::path path(checkpoint);
  if (fs::is_directory(path)) return path.string();
  if (path.filename() == kModelFile) return path.parent_path().empty() ? "." : path.parent_path().string();
  if (!fs::exists(path)) throw xtgrad::CheckpointError("checkpoint " + checkpoint + " does not exist");
  throw xtgrad::CheckpointError("checkpoint " + checkpoint + " is neither a run directory nor a " + kModelFile);
}

LoadedModel load_model(const std::string& checkpoint) {
  const std::string path = (fs::path(checkpoint_dir(checkpoint)) / kModelFile).string();
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);  // checks the format itself
  const auto format = file.metadata.find("format");
  if (format == file.metadata.end() || format->second != kModelFormat)
    throw xtgrad::CheckpointError(path + ": not an xtgrad-align model (metadata \"format\" is " +
                                  (format == file.metadata.end() ? "missing" : "\"" + format->second + "\"") + ")");
  LoadedModel loaded;
  loaded.step = common::metadata_count(path, file.metadata, "step", 0, UINT64_MAX);
  common::check_finite(path, file.tensors);
  try {
    loaded.config = ModelConfig::from_metadata(file.metadata);
    xtgrad::Generator unused(0);
    loaded.model = std::make_unique<AlignModel<float>>(loaded.config, unused);
    loaded.model->load_state_dict(file.tensors);  // strict: names and shapes, all or nothing
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError(path + ": " + e.what());
  }
  loaded.metadata = std::move(file.metadata);
  return loaded;
}

void save_model(const std::string& dir, const AlignModel<float>& model, std::size_t step, xtgrad::Metadata extra) {
  xtgrad::Metadata metadata = model.config.to_metadata();
  metadata["format"] = kModelFormat;
  metadata["step"] = std::to_string(step);
  metadata.insert(extra.begin(), extra.end());
  xtgrad::save_safetensors<float>((fs::path(dir) / kModelFile).string(), model.state_dict(), metadata);
}

namespace {

// Crash safety of a checkpoint. The model and the train state are two files, each replaced
// atomically (temporary file + rename) but not together: a process killed between the two
// renames would leave a model at step N beside a train state at step N - 1, which resume
// refuses (the step check in load_train_state) and nothing could repair. So the model's
// rename is the commit point of a save at step N:
//   1. the train state of step N is written to train_state.next.safetensors;
//   2. the model of step N replaces model.safetensors;
//   3. train_state.next.safetensors is renamed over train_state.safetensors.
// Killed before 2 completes: model and train_state.safetensors are both still at step
// N - 1 (a .next left behind is ignored, and overwritten by the next save). Killed
// between 2 and 3: the model is at N and .next holds its train state; train_state_path
// below picks it.
constexpr const char* kNextTrainStateFile = "train_state.next.safetensors";

// The train state that belongs to the model at `step`: train_state.safetensors, or the
// .next one after a kill between steps 2 and 3 above. When neither matches:
// train_state.safetensors, whose step check in load_train_state names the mismatch.
std::string train_state_path(const std::string& dir, std::size_t step) {
  const std::string next = (fs::path(dir) / kNextTrainStateFile).string();
  std::error_code error;
  if (fs::exists(next, error)) {
    try {
      if (xtgrad::load_safetensors<float>(next).metadata["step"] == std::to_string(step)) return next;
    } catch (const xtgrad::CheckpointError&) {
      // a leftover that does not load is not the one
    }
  }
  return (fs::path(dir) / kTrainStateFile).string();
}

void save_train_state(const std::string& path, const std::string& run_id, std::size_t step,
                      const xtgrad::Optimizer<float>& optimizer, const BatchSampler& sampler) {
  xtgrad::StateDict<float> tensors;
  for (auto& [key, value] : optimizer.state_dict()) tensors.emplace("optimizer." + key, value);
  tensors.emplace("sampler.order", sampler.order());
  xtgrad::Metadata metadata = sampler.state();  // the run's settings are in the model file
  metadata["format"] = kTrainStateFormat;
  metadata["step"] = std::to_string(step);
  metadata["run_id"] = run_id;  // ties it to its model file: a train state of another run is refused
  xtgrad::save_safetensors<float>(path, tensors, metadata);
}

}  // namespace

// After a save that was interrupted or failed: a .next train state that belongs to the
// model (killed between steps 2 and 3 above) completes step 3; any other is removed.
void finish_interrupted_save(const std::string& dir, std::size_t step) {
  const std::string next = (fs::path(dir) / kNextTrainStateFile).string();
  std::error_code error;
  if (step > 0 && train_state_path(dir, step) == next)
    fs::rename(next, fs::path(dir) / kTrainStateFile, error);
  else
    fs::remove(next, error);
  if (error) throw xtgrad::CheckpointError("cannot tidy '" + next + "': " + error.message());
}

// A checkpoint of step N in the order described above train_state_path.
void save_checkpoint(const std::string& dir, const std::string& run_id, const xtgrad::Metadata& settings,
                     std::size_t step, const AlignModel<float>& model, const xtgrad::Optimizer<float>& optimizer,
                     const BatchSampler& sampler) {
  const std::string next = (fs::path(dir) / kNextTrainStateFile).string();
  const std::string state = (fs::path(dir) / kTrainStateFile).string();
  std::error_code error;
  try {
    save_train_state(next, run_id, step, optimizer, sampler);  // 1
    save_model(dir, model, step, settings);                    // 2 (resume and eval read the settings here)
  } catch (...) {
    fs::remove(next, error);  // a failed save leaves nothing behind
    throw;
  }
  fs::rename(next, state, error);  // 3
  if (error) throw xtgrad::CheckpointError("cannot move '" + next + "' to '" + state + "': " + error.message());
}

// Restores the optimizer and sampler of a run directory; checks it belongs to the run
// `run_id` and to `step`.
void load_train_state(const std::string& dir, const std::string& run_id, std::size_t step,
                      xtgrad::Optimizer<float>& optimizer, BatchSampler& sampler) {
  const std::string path = train_state_path(dir, step);
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);
  try {
    if (file.metadata["format"] != kTrainStateFormat) throw std::invalid_argument("not an xtgrad-align train state");
    if (file.metadata["run_id"] != run_id)
      throw std::invalid_argument("it belongs to run \"" + file.metadata["run_id"] + "\" but the model to run \"" +
                                  run_id + "\" (a train state copied from another run)");
    if (file.metadata["step"] != std::to_string(step))
      throw std::invalid_argument("it is at step " + file.metadata["step"] + " but the model is at step " +
                                  std::to_string(step));
    xtgrad::StateDict<float> optimizer_state;
    for (auto& [key, value] : file.tensors)
      if (key.rfind("optimizer.", 0) == 0) optimizer_state.emplace(key.substr(10), value);
    const auto order = file.tensors.find("sampler.order");
    if (order == file.tensors.end()) throw std::invalid_argument("missing 'sampler.order'");
    sampler.restore(file.metadata, order->second);  // checks before changing anything
    optimizer.load_state_dict(optimizer_state);     // likewise
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError(path + ": " + e.what());
  }
}

}  // namespace align
