#include "parallel.hpp"

#include <chrono>
#include <cmath>

#include "train.hpp"

namespace align {

namespace {

class LocalTrainer : public Trainer {
 public:
  LocalTrainer(AlignModel<float>& model, xtgrad::Optimizer<float>& optimizer, const std::vector<Example>& data)
      : model_(model), optimizer_(optimizer), data_(data) {}
  double step(const RankBatch& batch) override { return train_step(model_, optimizer_, data_, batch.local).loss; }
  Metrics evaluate(const std::vector<Example>& test) override { return align::evaluate(model_, test); }

 private:
  AlignModel<float>& model_;
  xtgrad::Optimizer<float>& optimizer_;
  const std::vector<Example>& data_;
};

}  // namespace

#ifdef XTGRAD_WITH_MPI
namespace dist = xtgrad::distributed;

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }
}  // namespace

template <class T>
double parallel_train_step(AlignModel<T>& model, dist::DistributedDataParallel<T>& ddp, xtgrad::Optimizer<T>& optimizer,
                           const std::vector<Example>& data, const std::vector<std::size_t>& global,
                           const Batch<T>& local, double* communication_seconds) {
  const double ranks = dist::world_size(), share = double(local.indices.size()) / double(global.size());
  optimizer.zero_grad();
  const xtgrad::Tensor<T> mine = model.image_features(local.patches);  // (n_r,16,d)
  auto start = Clock::now();
  const xtgrad::Tensor<T> images = dist::all_gather(mine);  // (B,16,d): every rank's images
  double waited = seconds_since(start);
  const ModelOutput<T> out = model.score_images(images, local.caption_ids, /*need_attention=*/false);  // (n_r,B)
  const xtgrad::Tensor<T> loss =
      xtgrad::cross_entropy(out.scores, alignment_targets<T>(data, local.indices, global));  // mean over n_r
  xtgrad::Array<double> global_loss = {share * loss.item()};
  start = Clock::now();
  dist::all_reduce(global_loss);  // every rank decides alike whether to update
  waited += seconds_since(start);
  if (std::isfinite(global_loss(0))) {
    xtgrad::mul(loss, T(ranks * share)).backward();  // DDP averages: the mean is the global gradient
    start = Clock::now();
    ddp.finish_gradient_synchronization();
    waited += seconds_since(start);
    optimizer.step();
  }
  if (communication_seconds) *communication_seconds += waited;
  return global_loss(0);
}
template double parallel_train_step(AlignModel<float>&, dist::DistributedDataParallel<float>&,
                                    xtgrad::Optimizer<float>&, const std::vector<Example>&,
                                    const std::vector<std::size_t>&, const Batch<float>&, double*);
template double parallel_train_step(AlignModel<double>&, dist::DistributedDataParallel<double>&,
                                    xtgrad::Optimizer<double>&, const std::vector<Example>&,
                                    const std::vector<std::size_t>&, const Batch<double>&, double*);

namespace {

class ParallelTrainer : public Trainer {
 public:
  ParallelTrainer(const std::shared_ptr<AlignModel<float>>& model, xtgrad::Optimizer<float>& optimizer,
                  const std::vector<Example>& data)
      : model_(model), ddp_(model), optimizer_(optimizer), data_(data) {}
  double step(const RankBatch& batch) override {
    batch_ = batch.global.size();
    return parallel_train_step(*model_, ddp_, optimizer_, data_, batch.global, batch.local, &communication_);
  }
  Metrics evaluate(const std::vector<Example>& test) override {
    const MetricCounts mine = count_hits(*model_, test, std::size_t(dist::rank()), std::size_t(dist::world_size()));
    xtgrad::Array<double> counts = {double(mine.hits), double(mine.grounded)};
    dist::all_reduce(counts);
    return {counts(0) / double(test.size()), counts(1) / double(test.size())};
  }
  double communication_seconds() const override { return communication_; }
  double bytes_per_step() const override {
    // Floats: the gradients all-reduced, the gathered image features (B,16,d) and, in
    // backward, their gradient all-reduced.
    const double images = double(batch_) * double(kPatches) * double(model_->config.dim);
    return 4.0 * (double(model_->parameter_count()) + 2 * images);
  }

 private:
  std::shared_ptr<AlignModel<float>> model_;
  dist::DistributedDataParallel<float> ddp_;
  xtgrad::Optimizer<float>& optimizer_;
  const std::vector<Example>& data_;
  double communication_ = 0;
  std::size_t batch_ = 0;
};

}  // namespace
#endif

std::unique_ptr<Trainer> make_trainer(const common::DistributedRun* run,
                                      const std::shared_ptr<AlignModel<float>>& model,
                                      xtgrad::Optimizer<float>& optimizer, const std::vector<Example>& train_data) {
#ifdef XTGRAD_WITH_MPI
  if (run && run->distributed()) return std::make_unique<ParallelTrainer>(model, optimizer, train_data);
#else
  (void)run;
#endif
  return std::make_unique<LocalTrainer>(*model, optimizer, train_data);
}

}  // namespace align
