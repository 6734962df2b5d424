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

#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "run_dir.hpp"
#include "xtgrad/optim.hpp"

namespace caption {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

void validate(const TrainOptions& o) {
  const auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  common::check_in_range("--steps", o.steps, 1, Limits::kMaxSteps);
  common::check_in_range("--batch", o.batch, 1, Limits::kMaxBatch);
  common::check_in_range("--train-size", o.train_size, o.batch, Limits::kMaxTrainSize);
  common::check_in_range("--test-size", o.test_size, 1, Limits::kMaxTestSize);
  common::check_in_range("--eval-every", o.eval_every, 1, Limits::kMaxSteps);
  common::check_in_range("--warmup", o.warmup, 0, o.steps);
  common::check_in_range("--seed", o.seed, 0, Limits::kMaxSeed);
  common::check_in_range("--threads", std::uint64_t(std::max(o.threads, 0)), 1,
                         std::uint64_t(xtgrad::max_num_threads()));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) fail("--lr must be a positive number, got " + common::exact_text(o.lr));
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
    fail("--weight-decay must be a number >= 0, got " + common::exact_text(o.weight_decay));
  o.model.check();
  common::check_writable_dir(o.out_dir);  // before any work is done
}

std::vector<scenes::Scene> make_split(std::size_t count, std::uint64_t seed) {
  std::vector<scenes::Scene> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(scenes::generate_scene(seed, i));
  return out;
}

Metrics evaluate(CaptionModel<float>& model, const std::vector<scenes::Scene>& test,
                 std::vector<std::vector<std::size_t>>* generated) {
  constexpr std::size_t kChunk = 250;  // pictures decoded at once
  const xtgrad::NoGradGuard no_grad;
  model.eval();
  std::vector<std::vector<std::size_t>> outputs, references;
  for (std::size_t start = 0; start < test.size(); start += kChunk) {
    const std::vector<scenes::Scene> chunk(test.begin() + long(start),
                                           test.begin() + long(std::min(test.size(), start + kChunk)));
    for (auto& tokens : model.greedy(image_batch<float>(chunk), kMaxDecode)) outputs.push_back(std::move(tokens));
    for (const auto& s : chunk) references.push_back(caption_words(s));
  }
  model.train();
  Metrics m = score_captions(outputs, references);
  if (generated) *generated = std::move(outputs);
  return m;
}

namespace {

xtgrad::Metadata settings_metadata(const TrainOptions& o, std::size_t step, const std::string& run_id) {
  xtgrad::Metadata m = o.model.to_metadata();
  m.insert({{"format", kModelFormat},
            {"step", std::to_string(step)},
            {"batch", std::to_string(o.batch)},
            {"lr", common::exact_text(o.lr)},
            {"weight_decay", common::exact_text(o.weight_decay)},
            {"seed", std::to_string(o.seed)},
            {"train_size", std::to_string(o.train_size)},
            {"test_size", std::to_string(o.test_size)},
            {"steps", std::to_string(o.steps)},
            {"warmup", std::to_string(o.warmup_steps())},
            {"eval_every", std::to_string(o.eval_every)},
            {"threads", std::to_string(o.threads)},
            {"run_id", run_id}});
  return m;
}

// Each epoch a fresh permutation of the training pictures, from its own generator.
class Sampler {
 public:
  Sampler(std::size_t size, std::size_t batch, std::uint64_t seed) : order_(size), batch_(batch), gen_(seed) {}
  std::vector<std::size_t> next() {
    if (at_ + batch_ > order_.size() || at_ == 0) {
      std::iota(order_.begin(), order_.end(), std::size_t(0));
      for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[gen_.below(i)]);
      at_ = 0;
    }
    std::vector<std::size_t> out(order_.begin() + long(at_), order_.begin() + long(at_ + batch_));
    at_ += batch_;
    return out;
  }

 private:
  std::vector<std::size_t> order_;
  std::size_t batch_, at_ = 0;
  xtgrad::Generator gen_;
};

void progress_line(std::ostream& log, const TrainOptions& o, std::size_t step, double loss, double elapsed) {
  const double rate = double(step) / std::max(elapsed, 1e-9), left = double(o.steps - step) / std::max(rate, 1e-9);
  char line[160];
  std::snprintf(line, sizeof line, "step %zu/%zu  loss %.4f  %.1f steps/s  %.0fs left", step, o.steps, loss, rate,
                left);
  if (o.progress_bar) {
    const int width = 30, filled = int(width * double(step) / double(o.steps));
    log << "\r[" << std::string(std::size_t(filled), '#') << std::string(std::size_t(width - filled), '.') << "] "
        << line << " " << std::flush;
  } else if (step % std::max<std::size_t>(1, o.eval_every / 5) == 0 || step == o.steps) {
    log << line << "\n" << std::flush;
  }
}

}  // namespace

namespace {

// What a run works with: the data, the model, AdamW and its schedule, the batch order.
struct Run {
  std::vector<scenes::Scene> train_data, test;
  std::unique_ptr<CaptionModel<float>> model;
  std::unique_ptr<xtgrad::AdamW<float>> optimizer;
  std::unique_ptr<xtgrad::LRScheduler<float>> scheduler;
  std::unique_ptr<Sampler> sampler;
};

Run set_up(const TrainOptions& o, std::ostream& log) {
  log << "generating " << o.train_size << " training and " << o.test_size << " test pictures (seed " << o.seed << ")\n";
  Run run{make_split(o.train_size, o.seed), make_split(o.test_size, o.seed + 1), nullptr, nullptr, nullptr, nullptr};
  xtgrad::Generator init(o.seed);
  run.model = std::make_unique<CaptionModel<float>>(o.model, init);
  run.optimizer = std::make_unique<xtgrad::AdamW<float>>(
      run.model->parameters(), xtgrad::AdamWOptions().set_lr(o.lr).set_weight_decay(o.weight_decay));
  // A linear warm-up from 1% of the lr, then a cosine from the lr down to 0 at the last step.
  const std::size_t warmup = o.warmup_steps();
  std::vector<std::shared_ptr<const xtgrad::LRSchedule>> phases{std::make_shared<xtgrad::LinearWarmup>(warmup, 0.01)};
  std::vector<std::size_t> milestones;
  if (o.steps > warmup) {
    phases.push_back(std::make_shared<xtgrad::CosineAnnealingLR>(o.steps - warmup));
    milestones.push_back(warmup);
  }
  run.scheduler = std::make_unique<xtgrad::LRScheduler<float>>(
      *run.optimizer, std::make_shared<xtgrad::SequentialLR>(phases, milestones));
  run.sampler = std::make_unique<Sampler>(o.train_size, o.batch, o.seed ^ 0x5eedcafeULL);
  log << run.model->parameter_count() << " parameters (image: " << o.model.image << "); " << o.steps << " steps, batch "
      << o.batch << ", AdamW lr " << o.lr << " (warm-up " << warmup << ", cosine)\n";
  return run;
}

// One step on the next batch, teacher-forced: its loss (finite, or std::runtime_error).
double train_step(Run& run, std::size_t step) {
  std::vector<scenes::Scene> pictures;
  std::vector<std::vector<std::size_t>> captions;
  for (std::size_t i : run.sampler->next()) {
    pictures.push_back(run.train_data[i]);
    captions.push_back(caption_words(run.train_data[i]));
  }
  run.optimizer->zero_grad();
  xtgrad::Tensor<float> loss = run.model->loss(image_batch<float>(pictures), token_batch(captions));
  const double value = loss.item();
  if (!std::isfinite(value))
    throw std::runtime_error("the loss became " + std::to_string(value) + " at step " + std::to_string(step) +
                             " (try a smaller --lr)");
  loss.backward();
  run.optimizer->step();
  run.scheduler->step();
  return value;
}

}  // namespace

TrainResult train(const TrainOptions& o, std::ostream& log) {
  xtgrad::set_num_threads(o.threads);
  const std::string run_id = common::new_run_id();
  Run run = set_up(o, log);
  const std::string metrics_path = (fs::path(o.out_dir) / "metrics.jsonl").string();
  fs::remove(metrics_path);
  TrainResult result;
  std::vector<double> step_ms;
  double window_loss = 0;
  std::size_t window_steps = 0;
  const auto start = Clock::now();
  for (std::size_t step = 1; step <= o.steps; ++step) {
    const auto step_start = Clock::now();
    const double loss = train_step(run, step);
    step_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - step_start).count());
    window_loss += loss;
    ++window_steps;
    progress_line(log, o, step, loss, since(start));
    if (step % o.eval_every != 0 && step != o.steps) continue;
    const auto eval_start = Clock::now();
    result.step = step;
    result.last_loss = window_loss / double(window_steps);
    result.metrics = evaluate(*run.model, run.test);
    result.seconds = since(start);
    char line[512];
    std::snprintf(line, sizeof line, "{\"step\": %zu, \"loss\": %.6f, %s, \"lr\": %.6g, \"elapsed_s\": %.3f}", step,
                  result.last_loss, metrics_json(result.metrics).c_str(), run.scheduler->lr(), result.seconds);
    if (!(std::ofstream(metrics_path, std::ios::app) << line << "\n"))
      throw std::runtime_error("cannot append to '" + metrics_path + "'");
    log << (o.progress_bar ? "\r\33[K" : "") << line << "\n" << std::flush;
    save_model(o.out_dir, *run.model, step, o, run_id);
    result.eval_seconds += since(eval_start);
    window_loss = 0;
    window_steps = 0;
  }
  result.seconds = since(start);
  std::nth_element(step_ms.begin(), step_ms.begin() + long(step_ms.size() / 2), step_ms.end());
  result.median_step_ms = step_ms[step_ms.size() / 2];
  return result;
}

void save_model(const std::string& dir, const CaptionModel<float>& model, std::size_t step, const TrainOptions& o,
                const std::string& run_id) {
  xtgrad::save_safetensors<float>((fs::path(dir) / kModelFile).string(), model.state_dict(),
                                  settings_metadata(o, step, run_id));
}

LoadedModel load_model(const std::string& checkpoint) {
  fs::path path(checkpoint);
  if (fs::is_directory(path)) path /= kModelFile;
  if (!fs::exists(path)) throw xtgrad::CheckpointError("checkpoint " + path.string() + " does not exist");
  const std::string file = path.string();
  xtgrad::Safetensors<float> loaded_file = xtgrad::load_safetensors<float>(file);  // checks the format itself
  const xtgrad::Metadata& meta = loaded_file.metadata;
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kModelFormat)
    throw xtgrad::CheckpointError(file + ": not an xtgrad-caption model (metadata \"format\" is " +
                                  (format == meta.end() ? "missing" : "\"" + format->second + "\"") + ")");
  LoadedModel loaded;
  loaded.step = common::metadata_count(file, meta, "step", 0, Limits::kMaxSteps);
  loaded.seed = common::metadata_count(file, meta, "seed", 0, Limits::kMaxSeed);
  loaded.test_size = common::metadata_count(file, meta, "test_size", 1, Limits::kMaxTestSize);
  common::check_finite(file, loaded_file.tensors);
  try {
    xtgrad::Generator unused(0);
    loaded.model = std::make_unique<CaptionModel<float>>(ModelConfig::from_metadata(meta), unused);
    loaded.model->load_state_dict(loaded_file.tensors);  // strict: names and shapes, all or nothing
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError(file + ": " + e.what());
  }
  loaded.metadata = meta;
  return loaded;
}

}  // namespace caption
