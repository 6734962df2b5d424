#include "train_state.hpp"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "checkpoint_rules.hpp"
#include "run_dir.hpp"

namespace common {

namespace fs = std::filesystem;

std::string checkpoint_dir(const std::string& checkpoint) {
  const fs::path path(checkpoint);
  if (fs::is_directory(path)) return path.string();
  if (path.filename() == kModelFile) return path.parent_path().empty() ? "." : path.parent_path().string();
  if (!fs::exists(path)) throw xtgrad::CheckpointError("checkpoint " + checkpoint + " does not exist");
  throw xtgrad::CheckpointError("checkpoint " + checkpoint + " is neither a run directory nor a " + kModelFile);
}

ModelFile read_model_file(const std::string& checkpoint, const std::string& format, const std::string& program) {
  ModelFile file{(fs::path(checkpoint_dir(checkpoint)) / kModelFile).string(), {}};
  file.contents = xtgrad::load_safetensors<float>(file.path);  // checks the safetensors format itself
  const xtgrad::Metadata& metadata = file.contents.metadata;
  const auto found = metadata.find("format");
  if (found == metadata.end() || found->second != format)
    throw xtgrad::CheckpointError(file.path + ": not an " + program + " model (metadata \"format\" is " +
                                  (found == metadata.end() ? "missing" : "\"" + found->second + "\"") + ")");
  check_finite(file.path, file.contents.tensors);
  return file;
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

std::string format_of(const TrainStateId& id) { return id.program + "-train-state/1"; }

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

void save_train_state(const std::string& path, const TrainStateId& id, const TrainingState& state) {
  xtgrad::StateDict<float> tensors;
  for (auto& [key, value] : state.optimizer.state_dict()) tensors.emplace("optimizer." + key, value);
  if (state.scheduler)
    for (auto& [key, value] : state.scheduler->state_dict()) tensors.emplace("scheduler." + key, value);
  tensors.emplace("sampler.order", state.sampler.order());
  xtgrad::Metadata metadata = state.sampler.state();  // the run's settings are in the model file
  metadata["format"] = format_of(id);
  metadata["step"] = std::to_string(id.step);
  metadata["run_id"] = id.run_id;  // ties it to its model file: a train state of another run is refused
  xtgrad::save_safetensors<float>(path, tensors, metadata);
}

// The tensors of `file` whose names start with prefix, the prefix taken off.
xtgrad::StateDict<float> with_prefix(const xtgrad::StateDict<float>& file, const std::string& prefix) {
  xtgrad::StateDict<float> out;
  for (auto& [key, value] : file)
    if (key.rfind(prefix, 0) == 0) out.emplace(key.substr(prefix.size()), value);
  return out;
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
void save_checkpoint(const std::string& dir, const TrainStateId& id, const TrainingState& state,
                     const std::function<void()>& save_model) {
  const std::string next = (fs::path(dir) / kNextTrainStateFile).string();
  const std::string current = (fs::path(dir) / kTrainStateFile).string();
  std::error_code error;
  try {
    save_train_state(next, id, state);  // 1
    save_model();                       // 2 (resume and eval read the settings there)
  } catch (...) {
    fs::remove(next, error);  // a failed save leaves nothing behind
    throw;
  }
  fs::rename(next, current, error);  // 3
  if (error) throw xtgrad::CheckpointError("cannot move '" + next + "' to '" + current + "': " + error.message());
}

void load_train_state(const std::string& dir, const TrainStateId& id, const TrainingState& state) {
  const std::string path = train_state_path(dir, id.step);
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);
  try {
    if (file.metadata["format"] != format_of(id)) throw std::invalid_argument("not an " + id.program + " train state");
    if (file.metadata["run_id"] != id.run_id)
      throw std::invalid_argument("it belongs to run \"" + file.metadata["run_id"] + "\" but the model to run \"" +
                                  id.run_id + "\" (a train state copied from another run)");
    if (file.metadata["step"] != std::to_string(id.step))
      throw std::invalid_argument("it is at step " + file.metadata["step"] + " but the model is at step " +
                                  std::to_string(id.step));
    const auto order = file.tensors.find("sampler.order");
    if (order == file.tensors.end()) throw std::invalid_argument("missing 'sampler.order'");
    // Every part is checked before any is changed: the optimizer, then the scheduler (which
    // sets the optimizer's lr), then the sampler, so a refused file leaves the run as it was.
    xtgrad::StateDict<float> optimizer_before = state.optimizer.state_dict();
    BatchSampler sampler = state.sampler;
    sampler.restore(file.metadata, order->second);
    state.optimizer.load_state_dict(with_prefix(file.tensors, "optimizer."));
    try {
      if (state.scheduler) state.scheduler->load_state_dict(with_prefix(file.tensors, "scheduler."));
    } catch (...) {
      state.optimizer.load_state_dict(optimizer_before);
      throw;
    }
    state.sampler = std::move(sampler);
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError(path + ": " + e.what());
  }
}

MetricsLog::MetricsLog(const std::string& dir, bool continues_record, std::size_t checkpoint_step)
    : path_((fs::path(dir) / "metrics.jsonl").string()) {
  if (continues_record)
    keep_metrics_through(path_, checkpoint_step);
  else
    fs::remove(path_);  // a fresh record
}

void MetricsLog::append(const std::string& line, std::size_t step) {
  if (!(std::ofstream(path_, std::ios::app) << line << "\n"))
    throw std::runtime_error("cannot append to '" + path_ + "' at step " + std::to_string(step));
}

void MetricsLog::take_back_after(std::size_t saved_step) { keep_metrics_through(path_, saved_step); }

}  // namespace common
