// Evaluation on a core the training steps leave free. At an evaluation step the run's
// model, optimizer state and sampler are copied (a few hundred KB for the toy); the copy is
// evaluated on a thread of its own while the steps go on, and the step's checkpoint is
// written from the copy once its metrics are known. The metrics and the files are those of
// a run that stops for each evaluation: the copy holds the step's exact state, and
// evaluation's forward pass gives the same bits on any thread (tests/test_align.cpp).
#pragma once

#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "metrics.hpp"
#include "model.hpp"
#include "sampler.hpp"
#include "xtgrad/optim.hpp"

namespace align {

class BackgroundEvaluation {
 public:
  // Copies of the run's kind: a model of `config`, the optimizer `optimizer` (adam, adamw
  // or sgd; its state, lr included, is copied at each start).
  BackgroundEvaluation(const ModelConfig& config, const std::string& optimizer);
  ~BackgroundEvaluation();  // waits for a running evaluation

  // Copies the model, optimizer and sampler at `step` and starts evaluating the copy on
  // `test` (which must outlive the evaluation); `finish`, when given, then runs on the same
  // thread with the metrics (to write the step's record from the copies). The previous
  // evaluation must have been collected.
  using Finish = std::function<void(const Metrics&)>;
  void start(const AlignModel<float>& model, const xtgrad::Optimizer<float>& optimizer, const BatchSampler& sampler,
             std::size_t step, const std::vector<Example>& test, Finish finish = {});
  bool running() const { return pending_.valid(); }  // started and not yet collected
  bool finished() const;                             // running, and collect() would not wait
  // Waits for the metrics (rethrowing what the evaluation or `finish` threw); running() is
  // then false.
  Metrics collect();

  // The copies of the last start(): what its checkpoint is written from.
  const AlignModel<float>& model() const { return *model_; }
  xtgrad::Optimizer<float>& optimizer() { return *optimizer_; }
  BatchSampler& sampler() { return *sampler_; }
  std::size_t step() const { return step_; }

 private:
  std::shared_ptr<AlignModel<float>> model_;
  std::unique_ptr<xtgrad::Optimizer<float>> optimizer_;
  std::optional<BatchSampler> sampler_;
  std::size_t step_ = 0;
  std::future<Metrics> pending_;
};

}  // namespace align
