#include "train.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include "batch_sampler.hpp"
#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "run_dir.hpp"
#include "training.hpp"
#include "xtgrad/optim.hpp"

namespace vqa {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }
}  // namespace

void validate(const TrainOptions& o) {
  common::check_in_range("--steps", o.steps, 1, Limits::kMaxSteps);
  common::check_in_range("--batch", o.batch, 1, Limits::kMaxBatch);
  common::check_in_range("--train-size", o.train_size, o.batch, Limits::kMaxTrainSize);
  common::check_in_range("--test-size", o.test_size, 1, Limits::kMaxTestSize);
  common::check_in_range("--eval-every", o.eval_every, 1, Limits::kMaxSteps);
  common::check_in_range("--warmup", o.warmup, 0, o.steps);
  common::check_in_range("--seed", o.seed, 0, Limits::kMaxSeed);
  common::check_in_range("--threads", std::uint64_t(std::max(o.threads, 0)), 1,
                         std::uint64_t(xtgrad::max_num_threads()));
  if (!(o.lr > 0) || !std::isfinite(o.lr))
    throw std::invalid_argument("--lr must be a positive number, got " + common::exact_text(o.lr));
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
    throw std::invalid_argument("--weight-decay must be a number >= 0, got " + common::exact_text(o.weight_decay));
  o.model.check();
  common::check_writable_dir(o.out_dir);  // before any work is done
}

template <class T> Batch<T> make_batch(const std::vector<Example>& data, const std::vector<std::size_t>& indices) {
  std::vector<scenes::Scene> pictures;
  std::vector<std::vector<std::size_t>> questions;
  Batch<T> b;
  for (std::size_t i : indices) {
    pictures.push_back(data[i].scene);
    questions.push_back(question_words(data[i].question));
    b.answers.push_back(data[i].answer);
  }
  b.images = vision::image_batch<T>(pictures);
  b.questions = question_batch(questions);
  return b;
}

template Batch<float> make_batch(const std::vector<Example>&, const std::vector<std::size_t>&);
template Batch<double> make_batch(const std::vector<Example>&, const std::vector<std::size_t>&);

std::vector<std::size_t> predict(VqaModel<float>& model, const std::vector<Example>& examples) {
  constexpr std::size_t kChunk = 500;  // examples answered at once
  const xtgrad::NoGradGuard no_grad;
  model.eval();
  std::vector<std::size_t> answers;
  for (std::size_t start = 0; start < examples.size(); start += kChunk) {
    std::vector<std::size_t> indices;
    for (std::size_t i = start; i < std::min(examples.size(), start + kChunk); ++i) indices.push_back(i);
    const Batch<float> b = make_batch<float>(examples, indices);
    const xtgrad::Indices best = xtgrad::argmax(model.forward(b.images, b.questions), -1);
    for (std::size_t i = 0; i < indices.size(); ++i) answers.push_back(best(i));
  }
  model.train();
  return answers;
}

Metrics evaluate(VqaModel<float>& model, const std::vector<Example>& test) {
  return score_answers(test, predict(model, test));
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

// What a run works with: the data, the model, AdamW and its schedule, the batch order.
struct Run {
  std::vector<Example> train_data, test;
  std::unique_ptr<VqaModel<float>> model;
  std::unique_ptr<xtgrad::AdamW<float>> optimizer;
  std::unique_ptr<xtgrad::LRScheduler<float>> scheduler;
  std::unique_ptr<common::BatchSampler> sampler;
};

Run set_up(const TrainOptions& o, std::ostream& log) {
  log << "generating " << o.train_size << " training and " << o.test_size << " test questions (seed " << o.seed
      << ")\n";
  Run run;
  {
    const common::Doing doing("generating " + std::to_string(o.train_size) + " training questions");
    run.train_data = make_split(o.train_size, o.seed);
    run.test = make_split(o.test_size, o.seed + 1);
  }
  xtgrad::Generator init(o.seed);
  run.model = std::make_unique<VqaModel<float>>(o.model, init);
  run.optimizer = std::make_unique<xtgrad::AdamW<float>>(
      run.model->parameters(), xtgrad::AdamWOptions().set_lr(o.lr).set_weight_decay(o.weight_decay));
  run.scheduler =
      std::make_unique<xtgrad::LRScheduler<float>>(*run.optimizer, common::warmup_cosine(o.steps, o.warmup_steps()));
  run.sampler = std::make_unique<common::BatchSampler>(o.train_size, o.batch, o.seed ^ 0x5eedcafeULL);
  log << run.model->parameter_count() << " parameters (text: " << o.model.text_encoder << ", image: " << o.model.image
      << "); " << o.steps << " steps, batch " << o.batch << ", AdamW lr " << o.lr << " (warm-up " << o.warmup_steps()
      << ", cosine)\n";
  return run;
}

// One step on the next batch: its loss (finite, or std::runtime_error).
double train_step(Run& run, std::size_t step) {
  const Batch<float> b = make_batch<float>(run.train_data, run.sampler->next());
  run.optimizer->zero_grad();
  xtgrad::Tensor<float> loss = run.model->loss(b.images, b.questions, b.answers);
  const double value = loss.item();
  if (!std::isfinite(value))
    throw std::runtime_error("the loss became " + std::to_string(value) + " at step " + std::to_string(step) +
                             " (try a smaller --lr)");
  loss.backward();
  run.optimizer->step();
  run.scheduler->step();
  return value;
}

// Evaluates, appends the line to metrics.jsonl, prints it and checkpoints.
void evaluate_and_save(Run& run, const TrainOptions& o, TrainResult& result, const std::string& run_id,
                       double elapsed) {
  result.metrics = evaluate(*run.model, run.test);
  const std::string metrics_path = (fs::path(o.out_dir) / "metrics.jsonl").string();
  char head[160];
  std::snprintf(head, sizeof head, "{\"step\": %zu, \"loss\": %.6f, ", result.step, result.last_loss);
  char tail[96];
  std::snprintf(tail, sizeof tail, ", \"lr\": %.6g, \"elapsed_s\": %.3f}", run.scheduler->lr(), elapsed);
  const std::string line = head + metrics_json(result.metrics) + tail;
  if (!(std::ofstream(metrics_path, std::ios::app) << line << "\n"))
    throw std::runtime_error("cannot append to '" + metrics_path + "'");
  save_model(o.out_dir, *run.model, result.step, o, run_id);
}

}  // namespace

TrainResult train(const TrainOptions& o, std::ostream& log) {
  xtgrad::set_num_threads(o.threads);
  const std::string run_id = common::new_run_id();
  Run run = set_up(o, log);
  fs::remove(fs::path(o.out_dir) / "metrics.jsonl");
  TrainResult result;
  std::vector<double> step_ms;
  double window_loss = 0;
  std::size_t window_steps = 0;
  const auto start = Clock::now();
  for (std::size_t step = 1; step <= o.steps; ++step) {
    const auto step_start = Clock::now();
    window_loss += train_step(run, step);
    ++window_steps;
    step_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - step_start).count());
    progress_line(log, o, step, window_loss / double(window_steps), since(start));
    if (step % o.eval_every != 0 && step != o.steps) continue;
    const auto eval_start = Clock::now();
    result.step = step;
    result.last_loss = window_loss / double(window_steps);
    evaluate_and_save(run, o, result, run_id, since(start));
    log << (o.progress_bar ? "\r\33[K" : "") << "step " << step << ": loss " << result.last_loss << ", test accuracy "
        << result.metrics.overall() << " (non-relational " << result.metrics.group_accuracy(0) << ", counting "
        << result.metrics.group_accuracy(1) << ", relational " << result.metrics.group_accuracy(2) << ")\n"
        << std::flush;
    result.eval_seconds += since(eval_start);
    window_loss = 0;
    window_steps = 0;
  }
  result.seconds = since(start);
  std::nth_element(step_ms.begin(), step_ms.begin() + long(step_ms.size() / 2), step_ms.end());
  result.median_step_ms = step_ms[step_ms.size() / 2];
  return result;
}

void save_model(const std::string& dir, const VqaModel<float>& model, std::size_t step, const TrainOptions& o,
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
    throw xtgrad::CheckpointError(file + ": not an xtgrad-vqa model (metadata \"format\" is " +
                                  (format == meta.end() ? "missing" : "\"" + format->second + "\"") + ")");
  LoadedModel loaded;
  loaded.step = common::metadata_count(file, meta, "step", 0, Limits::kMaxSteps);
  loaded.seed = common::metadata_count(file, meta, "seed", 0, Limits::kMaxSeed);
  loaded.test_size = common::metadata_count(file, meta, "test_size", 1, Limits::kMaxTestSize);
  common::check_finite(file, loaded_file.tensors);
  try {
    xtgrad::Generator unused(0);
    loaded.model = std::make_unique<VqaModel<float>>(ModelConfig::from_metadata(meta), unused);
    loaded.model->load_state_dict(loaded_file.tensors);  // strict: names and shapes, all or nothing
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError(file + ": " + e.what());
  }
  loaded.metadata = meta;
  return loaded;
}

}  // namespace vqa
