#include "background_eval.hpp"

#include <chrono>
#include <stdexcept>

#include "train.hpp"

namespace align {

BackgroundEvaluation::BackgroundEvaluation(const ModelConfig& config, const std::string& optimizer) {
  xtgrad::Generator unused(0);  // the copy's parameters are overwritten at each start
  model_ = std::make_shared<AlignModel<float>>(config, unused);
  optimizer_ = make_optimizer<float>(optimizer, model_->parameters(), 0.0);
}

BackgroundEvaluation::~BackgroundEvaluation() {
  if (pending_.valid()) pending_.wait();  // the thread reads the copies and `test`
}

void BackgroundEvaluation::start(const AlignModel<float>& model, const xtgrad::Optimizer<float>& optimizer,
                                 const BatchSampler& sampler, std::size_t step, const std::vector<Example>& test,
                                 Finish finish) {
  if (running()) throw std::logic_error("BackgroundEvaluation::start: the previous evaluation was not collected");
  model_->load_state_dict(model.state_dict());
  optimizer_->load_state_dict(optimizer.state_dict());
  sampler_ = sampler;
  step_ = step;
  pending_ = std::async(std::launch::async, [this, &test, finish = std::move(finish)] {
    const Metrics metrics = evaluate(*model_, test);
    if (finish) finish(metrics);
    return metrics;
  });
}

bool BackgroundEvaluation::finished() const {
  return running() && pending_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

Metrics BackgroundEvaluation::collect() {
  if (!running()) throw std::logic_error("BackgroundEvaluation::collect: no evaluation is running");
  return pending_.get();
}

}  // namespace align
