#include "train.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>

#include "adamw_run.hpp"
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

// What a run works with (common::AdamWRun) and its steps.
struct Run : common::AdamWRun<VqaModel<float>, Example> {
  double train_step(std::size_t at);
  // The test split's answers, each rank answering its share.
  Metrics evaluate() {
    const std::vector<double> answers =
        data_parallel->split_rows(test.size(), 1, [&](std::size_t first, std::size_t n) {
          const std::vector<std::size_t> part =
              predict(*model, {test.begin() + long(first), test.begin() + long(first + n)});
          return std::vector<double>(part.begin(), part.end());
        });
    return score_answers(test, std::vector<std::size_t>(answers.begin(), answers.end()));
  }
  void save_model(const TrainOptions& o) const { vqa::save_model(o.out_dir, *model, step, o); }
};

Run set_up(const TrainOptions& o, std::ostream& log, const common::DistributedRun* parallel) {
  Run run;
  run.make_data(o, make_split, "questions", log);
  run.make_model(o, load_model);
  run.start_training(o, kProgram, "text: " + o.model.text_encoder + ", image: " + o.model.image, log, parallel);
  return run;
}

// One step on the next batch: its loss (finite, or std::runtime_error).
double Run::train_step(std::size_t at) {
  const Batch<float> b = make_batch<float>(train_data, next_rows());
  xtgrad::Tensor<float> loss = model->loss(b.images, b.questions, b.answers);
  return step_on(loss, double(b.answers.size()), at);
}

}  // namespace

TrainResult train(TrainOptions o, std::ostream& out, const common::DistributedRun* parallel) {
  const common::Ranks ranks = parallel ? parallel->ranks() : common::Ranks{};
  std::ostream& log = common::root_log(ranks, out);  // the other ranks stay silent
  xtgrad::set_num_threads(o.threads);
  if (o.run_id.empty()) o.run_id = common::new_run_id();  // rank 0's is the one written
  std::optional<Run> run;
  const auto set_up_run = [&] { run.emplace(set_up(o, log, parallel)); };
  parallel ? parallel->agree(set_up_run) : set_up_run();  // a rank that cannot read the checkpoint stops all
  TrainResult result;
  common::train_loop(o, kProgram, *run, result, log, ranks.root());
  return result;
}

}  // namespace vqa
