#include "train.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "checkpoint.hpp"
#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "run_dir.hpp"

namespace align {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---- BatchSampler ---------------------------------------------------------------------
BatchSampler::BatchSampler(std::size_t n, std::size_t batch, std::uint64_t seed)
    : n_(n), batch_(batch), gen_(seed), order_(n) {
  shuffle();
}

void BatchSampler::shuffle() {
  std::iota(order_.begin(), order_.end(), std::size_t(0));
  for (std::size_t i = n_; i > 1; --i) std::swap(order_[i - 1], order_[gen_.below(i)]);  // Fisher-Yates
  position_ = 0;
}

std::vector<std::size_t> BatchSampler::next() {
  if (position_ + batch_ > n_) shuffle();
  std::vector<std::size_t> batch(order_.begin() + long(position_), order_.begin() + long(position_ + batch_));
  position_ += batch_;
  return batch;
}

xtgrad::Metadata BatchSampler::state() const {
  return {{"sampler.generator", gen_.state()}, {"sampler.position", std::to_string(position_)}};
}

xtgrad::Array<float> BatchSampler::order() const {
  xtgrad::Array<float> out(xtgrad::Shape{n_});
  std::copy(order_.begin(), order_.end(), out.begin());  // indices < 2^24: exact in float
  return out;
}

void BatchSampler::restore(const xtgrad::Metadata& state, const xtgrad::Array<float>& order) {
  if (order.size() != n_) throw std::invalid_argument("sampler order has " + std::to_string(order.size()) +
                                                      " entries for " + std::to_string(n_) + " examples");
  std::vector<std::size_t> restored(n_), seen(n_, 0);
  for (std::size_t i = 0; i < n_; ++i) {
    const float v = order.data()[i];
    if (!(v >= 0 && v < float(n_)) || v != std::floor(v) || seen[std::size_t(v)]++)
      throw std::invalid_argument("sampler order is not a permutation");
    restored[i] = std::size_t(v);
  }
  const auto found = state.find("sampler.position");
  if (found == state.end()) throw std::invalid_argument("missing 'sampler.position'");
  const std::size_t position = common::parse_count(found->second, 0, n_);
  gen_.set_state(state.at("sampler.generator"));
  order_ = std::move(restored);
  position_ = position;
}

// ---- settings -------------------------------------------------------------------------
template <class T>
std::unique_ptr<xtgrad::Optimizer<T>> make_optimizer(const std::string& name, const std::vector<xtgrad::Tensor<T>>& params,
                                                     double lr) {
  if (name == "adam")
    return std::make_unique<xtgrad::Adam<T>>(params, xtgrad::AdamOptions().set_lr(lr).set_betas(0.9, 0.999));
  if (name == "adamw") return std::make_unique<xtgrad::AdamW<T>>(params, xtgrad::AdamWOptions().set_lr(lr));
  if (name == "sgd") return std::make_unique<xtgrad::SGD<T>>(params, xtgrad::SGDOptions().set_lr(lr).set_momentum(0.9));
  throw std::invalid_argument("unknown optimizer '" + name + "' (adam, adamw or sgd)");
}
template std::unique_ptr<xtgrad::Optimizer<float>> make_optimizer(const std::string&,
                                                                  const std::vector<xtgrad::Tensor<float>>&, double);
template std::unique_ptr<xtgrad::Optimizer<double>> make_optimizer(const std::string&,
                                                                   const std::vector<xtgrad::Tensor<double>>&, double);

namespace {

std::string exact(double v) {
  std::ostringstream out;
  out << std::setprecision(17) << v;
  return out.str();
}

xtgrad::Metadata settings_metadata(const TrainOptions& o) {
  return {{"batch", std::to_string(o.batch)},           {"lr", exact(o.lr)},
          {"optimizer", o.optimizer},                    {"seed", std::to_string(o.seed)},
          {"train_size", std::to_string(o.train_size)}, {"test_size", std::to_string(o.test_size)},
          {"eval_every", std::to_string(o.eval_every)}, {"threads", std::to_string(o.threads)},
          {"run_id", o.run_id}};
}

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

// After a save that was interrupted or failed: a .next train state that belongs to the
// model (killed between steps 2 and 3 above) completes step 3; any other is removed.
void finish_interrupted_save(const std::string& dir, std::size_t step) {
  const std::string next = (fs::path(dir) / kNextTrainStateFile).string();
  std::error_code error;
  if (step > 0 && train_state_path(dir, step) == next) fs::rename(next, fs::path(dir) / kTrainStateFile, error);
  else fs::remove(next, error);
  if (error) throw xtgrad::CheckpointError("cannot tidy '" + next + "': " + error.message());
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

// A checkpoint of step N in the order described above train_state_path.
void save_checkpoint(const std::string& dir, const TrainOptions& options, std::size_t step,
                     const AlignModel<float>& model, const xtgrad::Optimizer<float>& optimizer,
                     const BatchSampler& sampler) {
  const std::string next = (fs::path(dir) / kNextTrainStateFile).string();
  const std::string state = (fs::path(dir) / kTrainStateFile).string();
  std::error_code error;
  try {
    save_train_state(next, options.run_id, step, optimizer, sampler);  // 1
    save_model(dir, model, step, settings_metadata(options));          // 2 (resume and eval read the settings here)
  } catch (...) {
    fs::remove(next, error);  // a failed save leaves nothing behind
    throw;
  }
  fs::rename(next, state, error);                                      // 3
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

std::string duration_text(double seconds) {
  char text[32];
  const long s = long(std::lround(seconds));
  if (s >= 60) std::snprintf(text, sizeof text, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(text, sizeof text, "%.1fs", seconds);
  return text;
}

// A live bar on a terminal; otherwise a plain line every `every` steps.
class Progress {
 public:
  Progress(std::ostream& log, bool bar, std::size_t first, std::size_t last, std::size_t every)
      : log_(log), bar_(bar), first_(first), last_(last), every_(every), start_(Clock::now()) {}

  void update(std::size_t step, double loss) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = double(step - first_) / std::max(elapsed, 1e-9);
    const double left = double(last_ - step) / std::max(rate, 1e-9);
    char line[160];
    if (bar_) {
      if (step != last_ && std::chrono::duration<double>(Clock::now() - drawn_).count() < 0.1) return;
      drawn_ = Clock::now();
      const int width = 30, filled = int(width * double(step) / double(last_));
      std::snprintf(line, sizeof line, "\r[%s%s] step %zu/%zu  loss %.4f  %.1f steps/s  %s left ",
                    std::string(std::size_t(filled), '#').c_str(), std::string(std::size_t(width - filled), '.').c_str(),
                    step, last_, loss, rate, duration_text(left).c_str());
      log_ << line << std::flush;
    } else if (step % every_ == 0 || step == last_) {
      std::snprintf(line, sizeof line, "step %zu/%zu  loss %.4f  %.1f steps/s  %s left\n", step, last_, loss, rate,
                    duration_text(left).c_str());
      log_ << line << std::flush;
    }
  }
  // A line of its own, not overwritten by the bar.
  void note(const std::string& text) { log_ << (bar_ ? "\r\33[K" : "") << text << "\n" << std::flush; }

 private:
  std::ostream& log_;
  bool bar_;
  std::size_t first_, last_, every_;
  Clock::time_point start_, drawn_{};
};

}  // namespace

double step_memory_bytes(const TrainOptions& o) {
  // Peak resident size over short runs on the development machine (AMD EPYC, this build):
  // batch 128-512, dim 64-128, heads 4 fit pairs x (100 x dim + 200 x heads) bytes within
  // 10%, plus about 32 MB for the program, the model and the data's scenes.
  const double pairs = double(o.batch) * double(o.batch);
  return pairs * (100.0 * double(o.model.dim) + 200.0 * double(o.model.heads)) + 32e6 + 64.0 * double(o.train_size);
}

void validate(const TrainOptions& o) {
  const auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  const auto in_range = [&](const char* flag, std::uint64_t value, std::uint64_t lo, std::uint64_t hi) {
    if (value < lo || value > hi)
      fail(std::string(flag) + " " + std::to_string(value) + " is out of range: " + std::to_string(lo) + " to " +
           std::to_string(hi));
  };
  in_range("--steps", o.steps, 1, Limits::kMaxSteps);
  in_range("--batch", o.batch, 2, Limits::kMaxBatch);
  in_range("--train-size", o.train_size, o.batch, Limits::kMaxTrainSize);
  in_range("--test-size", o.test_size, kBlock, Limits::kMaxTestSize);
  in_range("--eval-every", o.eval_every, 1, Limits::kMaxSteps);
  in_range("--seed", o.seed, 0, Limits::kMaxSeed);
  in_range("--threads", std::uint64_t(std::max(o.threads, 0)), 1, std::uint64_t(xtgrad::max_num_threads()));
  if (o.test_size % kBlock != 0) fail("--test-size " + std::to_string(o.test_size) + " is not a multiple of 100");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) fail("--lr must be a positive number, got " + exact(o.lr));
  if (o.optimizer != "adam" && o.optimizer != "adamw" && o.optimizer != "sgd")
    fail("--optimizer must be adam, adamw or sgd, got '" + o.optimizer + "'");
  o.model.check();
  const double needed = step_memory_bytes(o), available = double(common::available_memory());
  if (needed > 0.8 * available)
    fail("--batch " + std::to_string(o.batch) + " with --dim " + std::to_string(o.model.dim) + " needs about " +
         common::bytes_text(needed) + " of memory for one step (every caption is scored against every image of the "
         "batch: it grows with batch^2 x dim), and " + common::bytes_text(available) +
         " is available: lower --batch (or --dim)");
  // The output directory must take files before any work is done.
  std::error_code error;
  fs::create_directories(o.out_dir, error);
  const fs::path probe = fs::path(o.out_dir) / ".write-test";
  std::ofstream(probe) << "ok";
  if (error || !fs::exists(probe))
    fail("cannot write to the output directory '" + o.out_dir + "'" + (error ? ": " + error.message() : ""));
  fs::remove(probe, error);
}

TrainOptions settings_from_metadata(const std::string& file, const xtgrad::Metadata& m, TrainOptions base,
                                    bool for_resume) {
  using common::metadata_count;
  base.seed = metadata_count(file, m, "seed", 0, Limits::kMaxSeed);
  base.test_size = metadata_count(file, m, "test_size", kBlock, Limits::kMaxTestSize);
  if (base.test_size % kBlock != 0)
    throw xtgrad::CheckpointError(file + ": metadata 'test_size' = \"" + m.at("test_size") +
                                  "\" is not a multiple of 100");
  if (!for_resume) return base;
  base.batch = metadata_count(file, m, "batch", 2, Limits::kMaxBatch);
  base.lr = common::metadata_number(file, m, "lr");
  base.optimizer = common::metadata_text(file, m, "optimizer");
  base.train_size = metadata_count(file, m, "train_size", base.batch, Limits::kMaxTrainSize);
  base.eval_every = metadata_count(file, m, "eval_every", 1, Limits::kMaxSteps);
  base.threads = int(metadata_count(file, m, "threads", 1, 1u << 20));
  base.run_id = common::metadata_text(file, m, "run_id");
  return base;
}

StoredRun stored_run(const std::string& dir, TrainOptions base) {
  const LoadedModel loaded = load_model(dir);  // the model file holds the run's settings
  const std::string file = (fs::path(checkpoint_dir(dir)) / kModelFile).string();
  base = settings_from_metadata(file, loaded.metadata, base, /*for_resume=*/true);
  base.model = loaded.config;
  return {base, loaded.step};
}

namespace {

// The metrics record of a run: one JSON line per evaluation. A line is appended before its
// checkpoint is saved and taken back if the save fails; a resume drops the lines after its
// checkpoint (a run killed between the two), so the record always ends at the checkpoint.
class MetricsLog {
 public:
  MetricsLog(const TrainOptions& options, std::size_t checkpoint_step)
      : path_((fs::path(options.out_dir) / "metrics.jsonl").string()) {
    if (options.resume_dir.empty() || options.out_dir != options.resume_dir) fs::remove(path_);  // a fresh record
    else common::keep_metrics_through(path_, checkpoint_step);
  }
  void append(const std::string& line, std::size_t step) {
    if (!(std::ofstream(path_, std::ios::app) << line << "\n"))
      throw std::runtime_error("cannot append to '" + path_ + "' at step " + std::to_string(step));
  }
  void take_back_after(std::size_t saved_step) { common::keep_metrics_through(path_, saved_step); }

 private:
  std::string path_;
};

std::string metrics_line(const TrainResult& r) {
  char line[256];
  std::snprintf(line, sizeof line,
                "{\"step\": %zu, \"loss\": %.6f, \"p_at_1\": %.4f, \"grounding\": %.4f, \"ms_per_step\": %.3f, "
                "\"elapsed_s\": %.3f}",
                r.step, r.last_loss, r.metrics.p_at_1, r.metrics.grounding, r.ms_per_step, r.seconds);
  return line;
}

// What a run that stopped keeps in its output directory, said truthfully.
std::string kept_checkpoint(const TrainOptions& options, std::size_t saved_step) {
  if (saved_step == 0)
    return "no checkpoint was written to " + options.out_dir + " (the first evaluation would have been at step " +
           std::to_string(options.eval_every) + ")";
  return "the checkpoint of step " + std::to_string(saved_step) + " in " + options.out_dir + " is kept";
}

// One optimisation step on one batch: forward (without attention weights), the loss,
// backward, the optimizer's update. Returns the loss; a non-finite one changes nothing.
double train_step(AlignModel<float>& model, xtgrad::Optimizer<float>& optimizer, const std::vector<Example>& data,
                  const std::vector<std::size_t>& batch) {
  optimizer.zero_grad();
  const ModelOutput<float> out =
      model.forward(patch_batch<float>(data, batch), caption_batch(data, batch), /*need_attention=*/false);
  xtgrad::Tensor<float> loss = alignment_loss(out.scores, data, batch);
  const double value = loss.item();
  if (!std::isfinite(value)) return value;
  loss.backward();
  optimizer.step();
  return value;
}

void check_finite_parameters(const AlignModel<float>& model, std::size_t step, const std::string& kept) {
  // A step can turn the parameters non-finite while its loss was still finite: never
  // overwrite a good checkpoint with them.
  for (const auto& [name, p] : model.named_parameters())
    if (!std::all_of(p.data().begin(), p.data().end(), [](float v) { return std::isfinite(v); }))
      throw std::runtime_error("parameter '" + name + "' became non-finite at step " + std::to_string(step) +
                               " (try a smaller --lr, or --detect-anomaly to find the op); " + kept);
}

}  // namespace

TrainResult train(TrainOptions options, std::ostream& log) {
  xtgrad::set_num_threads(options.threads);
  if (options.run_id.empty()) options.run_id = common::new_run_id();
  const common::Doing generating("generating the data (--train-size " + std::to_string(options.train_size) + ")");
  log << "generating " << options.train_size << " training and " << options.test_size << " test pairs (seed "
      << options.seed << ")\n";
  const std::vector<Example> train_data = generate(options.train_size, options.seed);
  const std::vector<Example> test_data = generate(options.test_size, options.seed + 1);

  xtgrad::Generator init(options.seed);
  auto model = std::make_unique<AlignModel<float>>(options.model, init);
  std::size_t step = 0;
  if (!options.resume_dir.empty()) {
    LoadedModel loaded = load_model(options.resume_dir);
    model = std::move(loaded.model);
    step = loaded.step;
  }
  auto optimizer = make_optimizer<float>(options.optimizer, model->parameters(), options.lr);
  BatchSampler sampler(options.train_size, options.batch, sampler_seed(options.seed));
  if (!options.resume_dir.empty()) load_train_state(options.resume_dir, options.run_id, step, *optimizer, sampler);
  log << model->summary() << "\n" << model->parameter_count() << " parameters; training steps " << step + 1 << " to "
      << options.steps << " with " << options.optimizer << ", lr " << options.lr << ", batch " << options.batch << "\n";

  std::size_t saved_step = options.out_dir == options.resume_dir ? step : 0;
  MetricsLog metrics(options, saved_step);
  if (const std::size_t stale = xtgrad::remove_stale_safetensors_temporaries(options.out_dir))
    log << "removed " << stale << " temporary file(s) left by an interrupted save\n";
  finish_interrupted_save(options.out_dir, saved_step);
  Progress progress(log, options.progress_bar, step, options.steps, std::max<std::size_t>(1, options.eval_every / 5));
  TrainResult result;
  const xtgrad::AnomalyGuard anomaly(options.detect_anomaly);
  const common::Doing training("training (--batch " + std::to_string(options.batch) + ", --dim " +
                               std::to_string(options.model.dim) + ")");
  const auto start = Clock::now();
  double loss_sum = 0, train_ms = 0;
  std::size_t losses = 0;
  while (step < options.steps) {
    const auto step_start = Clock::now();
    const double loss_value = train_step(*model, *optimizer, train_data, sampler.next());
    if (!std::isfinite(loss_value))
      throw std::runtime_error("the loss became " + std::to_string(loss_value) + " at step " + std::to_string(step + 1) +
                               " (try a smaller --lr, or --detect-anomaly to find the op); " +
                               kept_checkpoint(options, saved_step));
    ++step;
    train_ms += std::chrono::duration<double, std::milli>(Clock::now() - step_start).count();
    loss_sum += loss_value;
    ++losses;
    progress.update(step, loss_value);
    if (step % options.eval_every != 0 && step != options.steps) continue;

    check_finite_parameters(*model, step, kept_checkpoint(options, saved_step));
    result.step = step;
    result.last_loss = loss_sum / double(losses);
    result.ms_per_step = train_ms / double(losses);
    result.metrics = evaluate(*model, test_data);
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    metrics.append(metrics_line(result), step);
    progress.note(metrics_line(result));
    try {
      save_checkpoint(options.out_dir, options, step, *model, *optimizer, sampler);
    } catch (...) {
      metrics.take_back_after(saved_step);  // the record ends where the checkpoint does
      throw;
    }
    saved_step = step;
    loss_sum = train_ms = 0;
    losses = 0;
  }
  return result;
}

}  // namespace align
