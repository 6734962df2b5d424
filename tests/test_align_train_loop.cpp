// The training loop's machinery: evaluation beside the steps (background_eval.hpp) must
// give the metrics and checkpoints of a run that waits for each evaluation.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "align_test_helpers.hpp"
#include "background_eval.hpp"
#include "data_parallel.hpp"
#include "helpers.hpp"
#include "train.hpp"

using namespace align;
using namespace align_test;

namespace {

bool same_bits(const xtgrad::StateDict<float>& a, const xtgrad::StateDict<float>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, value] : a) {
    const auto other = b.find(name);
    if (other == b.end() || other->second.shape() != value.shape() ||
        std::memcmp(other->second.data(), value.data(), value.size() * sizeof(float)) != 0)
      return false;
  }
  return true;
}

// metrics.jsonl without its timings ("ms_per_step" and "elapsed_s" end each line).
std::string metrics_without_timings(const std::string& dir) {
  std::istringstream lines(read_file(std::filesystem::path(dir) / "metrics.jsonl"));
  std::string line, out;
  while (std::getline(lines, line)) out += line.substr(0, line.find(", \"ms_per_step\"")) + "\n";
  return out;
}

}  // namespace

TEST_CASE("align training: a background evaluation evaluates the run as it was when it started") {
  const auto train_data = generate(200, 5), test = generate(100, 6);
  xtgrad::Generator gen(1);
  auto model = std::make_shared<AlignModel<float>>(ModelConfig{}, gen);
  auto optimizer = make_optimizer<float>("adam", model->parameters(), 3e-3);
  BatchSampler sampler(train_data.size(), 16, sampler_seed(5));
  const auto step = [&] { train_step(*model, *optimizer, train_data, make_batch<float>(train_data, sampler.next())); };
  for (int i = 0; i < 2; ++i) step();  // moments and a sampler position that are not the initial ones
  const xtgrad::StateDict<float> parameters = model->state_dict(), moments = optimizer->state_dict();
  const BatchSampler sampler_at_start = sampler;
  const Metrics expected = evaluate(*model, test);

  BackgroundEvaluation background(model->config, "adam");
  std::thread::id finished_on;
  Metrics finished_with{-1, -1};
  background.start(*model, *optimizer, sampler, 2, test, [&](const Metrics& metrics) {
    finished_on = std::this_thread::get_id();
    finished_with = metrics;
  });
  CHECK(background.running());
  CHECK_THROWS_AS(background.start(*model, *optimizer, sampler, 2, test), std::logic_error);
  for (int i = 0; i < 2; ++i) step();                       // the run goes on while its copy is evaluated
  CHECK_FALSE(same_bits(model->state_dict(), parameters));  // the steps did change the run
  const Metrics got = background.collect();
  CHECK_FALSE(background.running());
  CHECK(got.p_at_1 == expected.p_at_1);  // exactly: the same forward pass on the same bits
  CHECK(got.grounding == expected.grounding);
  CHECK(expected.p_at_1 > 0.0);
  CHECK(finished_on != std::this_thread::get_id());  // the record is written beside the steps
  CHECK(finished_with.p_at_1 == got.p_at_1);
  CHECK(finished_with.grounding == got.grounding);
  // What the checkpoint is written from: the run at the start, bit for bit.
  CHECK(background.step() == 2);
  CHECK(same_bits(background.model().state_dict(), parameters));
  CHECK(same_bits(background.optimizer().state_dict(), moments));
  CHECK(background.sampler().state() == sampler_at_start.state());
  CHECK(background.sampler().order() == sampler_at_start.order());
  CHECK_THROWS_AS(background.collect(), std::logic_error);

  // A record that cannot be written reaches the training thread at collect().
  background.start(*model, *optimizer, sampler, 4, test,
                   [](const Metrics&) { throw std::runtime_error("cannot write the checkpoint"); });
  CHECK_THROWS_WITH_AS(background.collect(), "cannot write the checkpoint", std::runtime_error);
  CHECK_FALSE(background.running());
}

TEST_CASE("align training: evaluating beside the steps writes what waiting for each evaluation writes") {
  TempDir dir("background");
  TrainOptions options;
  options.steps = 30;
  options.eval_every = 10;
  options.train_size = 400;
  options.test_size = 100;
  options.batch = 16;
  options.threads = 1;
  options.run_id = "the-same-run";
  std::ostringstream log;
  options.out_dir = dir / "beside";
  std::filesystem::create_directories(options.out_dir);
  const TrainResult beside = train(options, log);
  options.background_evaluation = false;
  options.out_dir = dir / "waiting";
  std::filesystem::create_directories(options.out_dir);
  const TrainResult waiting = train(options, log);

  CHECK(waiting.background_evaluations == 0);
  if (common::default_threads_per_rank(1) > 1)
    CHECK(beside.background_evaluations == 2);  // steps 10 and 20; the last is waited for
  else
    MESSAGE("one core: no evaluation ran beside the steps; the comparison below is of two waiting runs");
  CHECK(beside.metrics.p_at_1 == waiting.metrics.p_at_1);
  CHECK(beside.metrics.grounding == waiting.metrics.grounding);
  const std::string lines = metrics_without_timings(dir / "beside");
  CHECK(lines == metrics_without_timings(dir / "waiting"));
  CHECK(std::count(lines.begin(), lines.end(), '\n') == 3);
  // Written from the copy of step 30 in one, from the run itself in the other.
  for (const char* file : {"model.safetensors", "train_state.safetensors"})
    CHECK(read_file(dir / ("beside/" + std::string(file))) == read_file(dir / ("waiting/" + std::string(file))));
}
