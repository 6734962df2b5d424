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
#include "train_loop.hpp"
#include "train_state.hpp"
#include "training.hpp"
#include "xtgrad/optim.hpp"

namespace vqa {

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

// What a run works with: the data, the model, AdamW and its schedule, the batch order, all
// at `step` (the resumed checkpoint's, or 0).
struct Run {
  std::vector<Example> train_data, test;
  std::unique_ptr<VqaModel<float>> model;
  std::unique_ptr<xtgrad::AdamW<float>> optimizer;
  std::unique_ptr<xtgrad::LRScheduler<float>> scheduler;
  std::unique_ptr<common::BatchSampler> sampler;
  std::size_t step = 0;
  common::TrainingState state() { return {*optimizer, *sampler, scheduler.get()}; }
  double train_step(std::size_t at);
  Metrics evaluate() { return vqa::evaluate(*model, test); }
  double lr() const { return scheduler->lr(); }
  void save_model(const TrainOptions& o) const { vqa::save_model(o.out_dir, *model, step, o); }
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
  if (!o.resume_dir.empty()) {
    LoadedModel loaded = load_model(o.resume_dir);
    run.model = std::move(loaded.model);
    run.step = loaded.step;
  }
  run.optimizer = std::make_unique<xtgrad::AdamW<float>>(
      run.model->parameters(), xtgrad::AdamWOptions().set_lr(o.lr).set_weight_decay(o.weight_decay));
  run.scheduler =
      std::make_unique<xtgrad::LRScheduler<float>>(*run.optimizer, common::warmup_cosine(o.steps, o.warmup_steps()));
  // Seeded apart from the model's initialisation (Generator(seed)).
  run.sampler = std::make_unique<common::BatchSampler>(o.train_size, o.batch, o.seed ^ 0x5eedcafeULL);
  if (!o.resume_dir.empty()) common::load_train_state(o.resume_dir, {kProgram, o.run_id, run.step}, run.state());
  log << run.model->parameter_count() << " parameters (text: " << o.model.text_encoder << ", image: " << o.model.image
      << "); steps " << run.step + 1 << " to " << (o.stop_at ? o.stop_at : o.steps) << " of " << o.steps << ", batch "
      << o.batch << ", AdamW lr " << o.lr << " (warm-up " << o.warmup_steps() << ", cosine)\n";
  return run;
}

// One step on the next batch: its loss (finite, or std::runtime_error).
double Run::train_step(std::size_t at) {
  const Batch<float> b = make_batch<float>(train_data, sampler->next());
  optimizer->zero_grad();
  xtgrad::Tensor<float> loss = model->loss(b.images, b.questions, b.answers);
  const double value = loss.item();
  if (!std::isfinite(value))
    throw std::runtime_error("the loss became " + std::to_string(value) + " at step " + std::to_string(at) +
                             " (try a smaller --lr)");
  loss.backward();
  optimizer->step();
  scheduler->step();
  return value;
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

}  // namespace vqa
