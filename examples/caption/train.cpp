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
#include "train_state.hpp"
#include "training.hpp"
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
  common::check_in_range("--stop-at", o.stop_at, 0, o.steps);
  if (o.stop_at % o.eval_every != 0 && o.stop_at != o.steps)
    fail("--stop-at " + std::to_string(o.stop_at) + " is not an evaluation step (a multiple of --eval-every " +
         std::to_string(o.eval_every) + "), where a checkpoint is saved");
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

// Seeded apart from the model's initialisation (Generator(seed)).
Sampler::Sampler(const TrainOptions& o) : common::BatchSampler(o.train_size, o.batch, o.seed ^ 0x5eedcafeULL) {}

std::shared_ptr<const xtgrad::LRSchedule> lr_schedule(const TrainOptions& o) {
  return common::warmup_cosine(o.steps, o.warmup_steps());  // examples/common/training.hpp
}

template <class T>
TrainBatch<T> train_batch(const std::vector<scenes::Scene>& data, const std::vector<std::size_t>& indices) {
  std::vector<scenes::Scene> pictures;
  std::vector<std::vector<std::size_t>> captions;
  for (std::size_t i : indices) {
    pictures.push_back(data[i]);
    captions.push_back(caption_words(data[i]));
  }
  return {image_batch<T>(pictures), token_batch(captions)};
}

template <class T>
double train_step(CaptionModel<T>& model, xtgrad::AdamW<T>& optimizer, xtgrad::LRScheduler<T>& scheduler,
                  const TrainBatch<T>& batch, std::size_t step) {
  optimizer.zero_grad();
  xtgrad::Tensor<T> loss = model.loss(batch.images, batch.tokens);
  const double value = loss.item();
  if (!std::isfinite(value))
    throw std::runtime_error("the loss became " + std::to_string(value) + " at step " + std::to_string(step) +
                             " (try a smaller --lr)");
  loss.backward();
  optimizer.step();
  scheduler.step();
  return value;
}

template TrainBatch<float> train_batch(const std::vector<scenes::Scene>&, const std::vector<std::size_t>&);
template TrainBatch<double> train_batch(const std::vector<scenes::Scene>&, const std::vector<std::size_t>&);
template double train_step(CaptionModel<float>&, xtgrad::AdamW<float>&, xtgrad::LRScheduler<float>&,
                           const TrainBatch<float>&, std::size_t);
template double train_step(CaptionModel<double>&, xtgrad::AdamW<double>&, xtgrad::LRScheduler<double>&,
                           const TrainBatch<double>&, std::size_t);

namespace {

// A bar on a terminal, else a line every eval_every / 5 steps; the rate counts the steps
// of this invocation (from `first`).
void progress_line(std::ostream& log, const TrainOptions& o, std::size_t first, std::size_t step, double loss,
                   double elapsed) {
  const double rate = double(step - first) / std::max(elapsed, 1e-9);
  const double left = double(o.steps - step) / std::max(rate, 1e-9);
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

// What a run works with: the data, the model, AdamW and its schedule, the batch order, all
// at `step` (the resumed checkpoint's, or 0).
struct Run {
  std::vector<scenes::Scene> train_data, test;
  std::unique_ptr<CaptionModel<float>> model;
  std::unique_ptr<xtgrad::AdamW<float>> optimizer;
  std::unique_ptr<xtgrad::LRScheduler<float>> scheduler;
  std::unique_ptr<Sampler> sampler;
  std::size_t step = 0;
  common::TrainingState state() { return {*optimizer, *sampler, scheduler.get()}; }
};

Run set_up(const TrainOptions& o, std::ostream& log) {
  log << "generating " << o.train_size << " training and " << o.test_size << " test pictures (seed " << o.seed << ")\n";
  Run run{make_split(o.train_size, o.seed), make_split(o.test_size, o.seed + 1), nullptr, nullptr, nullptr, nullptr, 0};
  xtgrad::Generator init(o.seed);
  run.model = std::make_unique<CaptionModel<float>>(o.model, init);
  if (!o.resume_dir.empty()) {
    LoadedModel loaded = load_model(o.resume_dir);
    run.model = std::move(loaded.model);
    run.step = loaded.step;
  }
  run.optimizer = std::make_unique<xtgrad::AdamW<float>>(
      run.model->parameters(), xtgrad::AdamWOptions().set_lr(o.lr).set_weight_decay(o.weight_decay));
  run.scheduler = std::make_unique<xtgrad::LRScheduler<float>>(*run.optimizer, lr_schedule(o));
  run.sampler = std::make_unique<Sampler>(o);
  if (!o.resume_dir.empty()) common::load_train_state(o.resume_dir, {kProgram, o.run_id, run.step}, run.state());
  log << run.model->parameter_count() << " parameters (image: " << o.model.image << "); steps " << run.step + 1
      << " to " << (o.stop_at ? o.stop_at : o.steps) << " of " << o.steps << ", batch " << o.batch << ", AdamW lr "
      << o.lr << " (warm-up " << o.warmup_steps() << ", cosine)\n";
  return run;
}

// One step on the next batch, teacher-forced: its loss (finite, or std::runtime_error).
double train_step(Run& run, std::size_t step) {
  return train_step(*run.model, *run.optimizer, *run.scheduler, train_batch<float>(run.train_data, run.sampler->next()),
                    step);
}

// The training steps since the last evaluation: their mean loss.
struct Window {
  double loss_sum = 0;
  std::size_t steps = 0;
};

// Evaluates on the test split, appends the metrics line and saves a checkpoint (the line
// is taken back if the save fails, so the record ends where the checkpoint does).
void evaluate_and_save(const TrainOptions& o, Run& run, const Window& window, Clock::time_point start,
                       common::MetricsLog& metrics, std::size_t saved_step, TrainResult& result, std::ostream& log) {
  result.step = run.step;
  result.last_loss = window.loss_sum / double(window.steps);
  result.metrics = evaluate(*run.model, run.test);
  result.seconds = since(start);
  char line[512];
  std::snprintf(line, sizeof line, "{\"step\": %zu, \"loss\": %.6f, %s, \"lr\": %.6g, \"elapsed_s\": %.3f}", run.step,
                result.last_loss, metrics_json(result.metrics).c_str(), run.scheduler->lr(), result.seconds);
  metrics.append(line, run.step);
  log << (o.progress_bar ? "\r\33[K" : "") << line << "\n" << std::flush;
  try {
    common::save_checkpoint(o.out_dir, {kProgram, o.run_id, run.step}, run.state(),
                            [&] { save_model(o.out_dir, *run.model, run.step, o); });
  } catch (...) {
    metrics.take_back_after(saved_step);
    throw;
  }
}

}  // namespace

TrainResult train(TrainOptions o, std::ostream& log) {
  xtgrad::set_num_threads(o.threads);
  if (o.run_id.empty()) o.run_id = common::new_run_id();
  Run run = set_up(o, log);
  std::error_code error;
  const bool in_place = !o.resume_dir.empty() && fs::equivalent(o.resume_dir, o.out_dir, error);
  std::size_t saved_step = in_place ? run.step : 0;
  common::MetricsLog metrics(o.out_dir, in_place, saved_step);
  if (const std::size_t stale = xtgrad::remove_stale_safetensors_temporaries(o.out_dir))
    log << "removed " << stale << " temporary file(s) left by an interrupted save\n";
  common::finish_interrupted_save(o.out_dir, saved_step);
  const std::size_t first = run.step, last = o.stop_at ? o.stop_at : o.steps;
  TrainResult result;
  std::vector<double> step_ms;
  Window window;
  const auto start = Clock::now();
  while (run.step < last) {
    const auto step_start = Clock::now();
    const double loss = train_step(run, run.step + 1);
    ++run.step;
    step_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - step_start).count());
    window.loss_sum += loss;
    ++window.steps;
    progress_line(log, o, first, run.step, loss, since(start));
    if (run.step % o.eval_every != 0 && run.step != o.steps) continue;
    const auto eval_start = Clock::now();
    evaluate_and_save(o, run, window, start, metrics, saved_step, result, log);
    result.eval_seconds += since(eval_start);
    saved_step = run.step;
    window = Window();
  }
  result.seconds = since(start);
  std::nth_element(step_ms.begin(), step_ms.begin() + long(step_ms.size() / 2), step_ms.end());
  result.median_step_ms = step_ms[step_ms.size() / 2];
  return result;
}

}  // namespace caption
