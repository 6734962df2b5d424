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
#include <optional>
#include <sstream>
#include <stdexcept>

#include "adamw_run.hpp"
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
}

std::vector<scenes::Scene> make_split(std::size_t count, std::uint64_t seed) {
  std::vector<scenes::Scene> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(scenes::generate_scene(seed, i));
  return out;
}

std::vector<std::vector<std::size_t>> greedy_captions(CaptionModel<float>& model,
                                                      const std::vector<scenes::Scene>& pictures) {
  constexpr std::size_t kChunk = 250;  // pictures decoded at once
  const xtgrad::NoGradGuard no_grad;
  model.eval();
  std::vector<std::vector<std::size_t>> outputs;
  for (std::size_t start = 0; start < pictures.size(); start += kChunk) {
    const std::vector<scenes::Scene> chunk(pictures.begin() + long(start),
                                           pictures.begin() + long(std::min(pictures.size(), start + kChunk)));
    for (auto& tokens : model.greedy(image_batch<float>(chunk), kMaxDecode)) outputs.push_back(std::move(tokens));
  }
  model.train();
  return outputs;
}

Metrics evaluate(CaptionModel<float>& model, const std::vector<scenes::Scene>& test,
                 std::vector<std::vector<std::size_t>>* generated) {
  std::vector<std::vector<std::size_t>> outputs = greedy_captions(model, test), references;
  for (const auto& s : test) references.push_back(caption_words(s));
  Metrics m = score_captions(outputs, references);
  if (generated) *generated = std::move(outputs);
  return m;
}

// Seeded apart from the model's initialisation (Generator(seed)).
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
  xtgrad::Tensor<T> loss = model.loss(batch.images, batch.tokens);
  return common::optimizer_step(loss, optimizer, scheduler, step);
}

template TrainBatch<float> train_batch(const std::vector<scenes::Scene>&, const std::vector<std::size_t>&);
template TrainBatch<double> train_batch(const std::vector<scenes::Scene>&, const std::vector<std::size_t>&);
template double train_step(CaptionModel<float>&, xtgrad::AdamW<float>&, xtgrad::LRScheduler<float>&,
                           const TrainBatch<float>&, std::size_t);
template double train_step(CaptionModel<double>&, xtgrad::AdamW<double>&, xtgrad::LRScheduler<double>&,
                           const TrainBatch<double>&, std::size_t);

namespace {

// The test split's greedy captions, each rank decoding its share (one row per picture: its
// length, then its tokens), scored.
template <class Run> Metrics evaluate_split(Run& run) {
  constexpr std::size_t kWidth = kMaxDecode + 1;
  const std::vector<scenes::Scene>& test = run.test;
  const std::vector<double> table =
      run.data_parallel->split_rows(test.size(), kWidth, [&](std::size_t first, std::size_t n) {
        std::vector<double> rows(n * kWidth, 0.0);
        const auto captions = greedy_captions(*run.model, {test.begin() + long(first), test.begin() + long(first + n)});
        for (std::size_t i = 0; i < n; ++i) {
          if (captions[i].size() >= kWidth) throw std::logic_error("evaluate_split: a caption longer than kMaxDecode");
          rows[i * kWidth] = double(captions[i].size());
          std::copy(captions[i].begin(), captions[i].end(), rows.begin() + long(i * kWidth + 1));
        }
        return rows;
      });
  std::vector<std::vector<std::size_t>> outputs, references;
  for (std::size_t i = 0; i < test.size(); ++i) {
    const auto row = table.begin() + long(i * kWidth);
    outputs.emplace_back(row + 1, row + 1 + long(*row));
    references.push_back(caption_words(test[i]));
  }
  return score_captions(outputs, references);
}

// What a run works with (common::AdamWRun) and its steps.
struct Run : common::AdamWRun<CaptionModel<float>, scenes::Scene> {
  // One step on the next batch, teacher-forced: its loss (finite, or std::runtime_error).
  double train_step(std::size_t at) {
    const TrainBatch<float> b = train_batch<float>(train_data, next_rows());
    xtgrad::Tensor<float> loss = model->loss(b.images, b.tokens);
    const auto targets = std::count_if(b.tokens.targets.begin(), b.tokens.targets.end(),
                                       [](std::size_t t) { return t != kPad; });  // the loss's terms
    return step_on(loss, double(targets), at);
  }
  Metrics evaluate() { return evaluate_split(*this); }
  void save_model(const TrainOptions& o) const { caption::save_model(o.out_dir, *model, step, o); }
};

Run set_up(const TrainOptions& o, std::ostream& log, const common::DistributedRun* parallel) {
  Run run;
  run.make_data(o, make_split, "pictures", log);
  run.make_model(o, load_model);
  run.start_training(o, kProgram, "image: " + o.model.image, log, parallel);
  return run;
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

}  // namespace caption
