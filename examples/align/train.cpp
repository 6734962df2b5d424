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
  const std::size_t position = std::stoul(state.at("sampler.position"));
  if (position > n_) throw std::invalid_argument("sampler position out of range");
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
          {"train_size", std::to_string(o.train_size)}, {"test_size", std::to_string(o.test_size)}};
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

void save_train_state(const std::string& path, std::size_t step, const xtgrad::Optimizer<float>& optimizer,
                      const BatchSampler& sampler) {
  xtgrad::StateDict<float> tensors;
  for (auto& [key, value] : optimizer.state_dict()) tensors.emplace("optimizer." + key, value);
  tensors.emplace("sampler.order", sampler.order());
  xtgrad::Metadata metadata = sampler.state();  // the run's settings are in the model file
  metadata["format"] = kTrainStateFormat;
  metadata["step"] = std::to_string(step);
  xtgrad::save_safetensors<float>(path, tensors, metadata);
}

// A checkpoint of step N in the order described above train_state_path.
void save_checkpoint(const std::string& dir, const TrainOptions& options, std::size_t step,
                     const AlignModel<float>& model, const xtgrad::Optimizer<float>& optimizer,
                     const BatchSampler& sampler) {
  const std::string next = (fs::path(dir) / kNextTrainStateFile).string();
  const std::string state = (fs::path(dir) / kTrainStateFile).string();
  save_train_state(next, step, optimizer, sampler);            // 1
  save_model(dir, model, step, settings_metadata(options));    // 2 (resume and eval read the settings here)
  std::error_code error;
  fs::rename(next, state, error);                              // 3
  if (error) throw xtgrad::CheckpointError("cannot move '" + next + "' to '" + state + "': " + error.message());
}

// Restores the optimizer and sampler of a run directory; checks it belongs to `step`.
void load_train_state(const std::string& dir, std::size_t step, xtgrad::Optimizer<float>& optimizer,
                      BatchSampler& sampler) {
  const std::string path = train_state_path(dir, step);
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);
  try {
    if (file.metadata["format"] != kTrainStateFormat) throw std::invalid_argument("not an xtgrad-align train state");
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

void validate(const TrainOptions& o) {
  const auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  if (o.steps < 1) fail("--steps must be at least 1");
  if (o.batch < 2) fail("--batch must be at least 2");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) fail("--lr must be a positive number, got " + exact(o.lr));
  if (o.optimizer != "adam" && o.optimizer != "adamw" && o.optimizer != "sgd")
    fail("--optimizer must be adam, adamw or sgd, got '" + o.optimizer + "'");
  if (o.model.dim < 1 || o.model.heads < 1 || o.model.dim % o.model.heads != 0)
    fail("--heads " + std::to_string(o.model.heads) + " must divide --dim " + std::to_string(o.model.dim));
  if (o.train_size < o.batch) fail("--train-size must be at least --batch");
  if (o.test_size < kBlock || o.test_size % kBlock != 0) fail("--test-size must be a positive multiple of 100");
  if (o.eval_every < 1) fail("--eval-every must be at least 1");
  if (o.threads < 1) fail("--threads must be at least 1");
  // The output directory must take files before any work is done.
  std::error_code error;
  fs::create_directories(o.out_dir, error);
  const fs::path probe = fs::path(o.out_dir) / ".write-test";
  std::ofstream(probe) << "ok";
  if (error || !fs::exists(probe))
    fail("cannot write to the output directory '" + o.out_dir + "'" + (error ? ": " + error.message() : ""));
  fs::remove(probe, error);
}

StoredRun stored_run(const std::string& dir, TrainOptions base) {
  const LoadedModel loaded = load_model(dir);  // the model file holds the run's settings
  const xtgrad::Metadata& m = loaded.metadata;
  try {
    base.batch = std::stoul(m.at("batch"));
    base.lr = std::stod(m.at("lr"));
    base.optimizer = m.at("optimizer");
    base.seed = std::stoull(m.at("seed"));
    base.train_size = std::stoul(m.at("train_size"));
    base.test_size = std::stoul(m.at("test_size"));
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError((fs::path(checkpoint_dir(dir)) / kModelFile).string() +
                                  ": missing or malformed run settings (" + e.what() + ")");
  }
  base.model = loaded.config;
  return {base, loaded.step};
}

TrainResult train(const TrainOptions& options, std::ostream& log) {
  xtgrad::set_num_threads(options.threads);
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
  if (!options.resume_dir.empty()) load_train_state(options.resume_dir, step, *optimizer, sampler);
  log << model->summary() << "\n" << model->parameter_count() << " parameters; training steps " << step + 1 << " to "
      << options.steps << " with " << options.optimizer << ", lr " << options.lr << ", batch " << options.batch << "\n";

  const std::string metrics_path = (fs::path(options.out_dir) / "metrics.jsonl").string();
  if (options.resume_dir.empty()) fs::remove(metrics_path);  // a fresh run starts a fresh record
  if (const std::size_t stale = xtgrad::remove_stale_safetensors_temporaries(options.out_dir))
    log << "removed " << stale << " temporary file(s) left by an interrupted save\n";
  Progress progress(log, options.progress_bar, step, options.steps, std::max<std::size_t>(1, options.eval_every / 5));
  TrainResult result;
  const xtgrad::AnomalyGuard anomaly(options.detect_anomaly);
  const auto start = Clock::now();
  double loss_sum = 0, train_ms = 0;
  std::size_t losses = 0;
  while (step < options.steps) {
    const auto step_start = Clock::now();
    const std::vector<std::size_t> batch = sampler.next();
    optimizer->zero_grad();
    const ModelOutput<float> out =
        model->forward(patch_batch<float>(train_data, batch), caption_batch(train_data, batch), /*need_attention=*/false);
    xtgrad::Tensor<float> loss = alignment_loss(out.scores, train_data, batch);
    const double loss_value = loss.item();
    if (!std::isfinite(loss_value))
      throw std::runtime_error("the loss became " + std::to_string(loss_value) + " at step " + std::to_string(step + 1) +
                               " (try a smaller --lr, or --detect-anomaly to find the op); the last checkpoint in " + options.out_dir +
                               " is kept");
    loss.backward();
    optimizer->step();
    ++step;
    train_ms += std::chrono::duration<double, std::milli>(Clock::now() - step_start).count();
    loss_sum += loss_value;
    ++losses;
    progress.update(step, loss_value);

    if (step % options.eval_every == 0 || step == options.steps) {
      // A step can turn the parameters non-finite while its loss was still finite: never
      // overwrite a good checkpoint with them.
      for (const auto& [name, p] : model->named_parameters())
        if (!std::all_of(p.data().begin(), p.data().end(), [](float v) { return std::isfinite(v); }))
          throw std::runtime_error("parameter '" + name + "' became non-finite at step " + std::to_string(step) +
                                   " (try a smaller --lr, or --detect-anomaly to find the op); the last checkpoint in " +
                                   options.out_dir + " is kept");
      result.step = step;
      result.last_loss = loss_sum / double(losses);
      result.ms_per_step = train_ms / double(losses);
      result.metrics = evaluate(*model, test_data);
      result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
      char line[256];
      std::snprintf(line, sizeof line,
                    "{\"step\": %zu, \"loss\": %.6f, \"p_at_1\": %.4f, \"grounding\": %.4f, \"ms_per_step\": %.3f, "
                    "\"elapsed_s\": %.3f}",
                    step, result.last_loss, result.metrics.p_at_1, result.metrics.grounding, result.ms_per_step,
                    result.seconds);
      std::ofstream(metrics_path, std::ios::app) << line << "\n";
      progress.note(line);
      save_checkpoint(options.out_dir, options, step, *model, *optimizer, sampler);
      loss_sum = train_ms = 0;
      losses = 0;
    }
  }
  return result;
}

}  // namespace align
