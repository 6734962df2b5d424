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
#include "train_loop.hpp"
#include "train_state.hpp"
#include "training.hpp"
#include "xtgrad/optim.hpp"

namespace caption {

namespace fs = std::filesystem;

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
  // One step on the next batch, teacher-forced: its loss (finite, or std::runtime_error).
  double train_step(std::size_t at) {
    return caption::train_step(*model, *optimizer, *scheduler, train_batch<float>(train_data, sampler->next()), at);
  }
  Metrics evaluate() { return caption::evaluate(*model, test); }
  double lr() const { return scheduler->lr(); }
  void save_model(const TrainOptions& o) const { caption::save_model(o.out_dir, *model, step, o); }
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

}  // namespace

TrainResult train(TrainOptions o, std::ostream& log) {
  xtgrad::set_num_threads(o.threads);
  if (o.run_id.empty()) o.run_id = common::new_run_id();
  Run run = set_up(o, log);
  TrainResult result;
  common::train_loop(o, kProgram, run, result, log);
  return result;
}

}  // namespace caption
