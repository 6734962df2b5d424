// SyncBatchNorm under mpiexec (2 and 3 ranks in ctest): a CNN with batch normalisation,
// converted by convert_sync_batchnorm and wrapped in DistributedDataParallel, trained on
// each rank's share of every batch, reaches the parameters and running statistics one
// process reaches with BatchNorm2d on the whole batch; without the conversion it does not.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "distributed_test_helpers.hpp"
#include "xtgrad/distributed.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
namespace dist = xtgrad::distributed;
using xtgrad::testing::max_relative_difference;

namespace {
using D = Tensor<double>;
constexpr std::size_t kBatch = 12, kSteps = 20;

// Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, Linear: (B,2,4,4) -> (B,3), as the
// examples' CNN encoders.
std::shared_ptr<Sequential<double>> make_cnn() {
  Generator gen(5);
  return std::make_shared<Sequential<double>>(std::vector<std::shared_ptr<UnaryModule<double>>>{
      std::make_shared<Conv2d<double>>(2, 4, 3, 1, 1, 1, 1, true, gen), std::make_shared<BatchNorm2d<double>>(4),
      std::make_shared<ReLU<double>>(), std::make_shared<MaxPool2d<double>>(2), std::make_shared<Flatten<double>>(),
      std::make_shared<Linear<double>>(16, 3, true, gen)});
}

struct Data {
  D x, y;
};
Data batch_for_step(std::size_t step) {
  Generator gen(200 + step);
  D x = randn<double>({kBatch, 2, 4, 4}, gen);
  return {x, randn<double>({kBatch, 3}, gen)};
}

// One process on whole batches: the reference.
void train_alone(Sequential<double>& model) {
  SGD<double> opt(model.parameters(), {0.05});
  for (std::size_t s = 0; s < kSteps; ++s) {
    const Data d = batch_for_step(s);
    opt.zero_grad();
    mse_loss(model(d.x), d.y).backward();
    opt.step();
  }
}

// This rank's contiguous rows (the first kBatch % n ranks one more), its mean loss scaled
// by world_size * local / global so that DDP's average is the global gradient.
void train_ranks(dist::DistributedDataParallel<double>& ddp) {
  const auto n = std::size_t(dist::world_size()), r = std::size_t(dist::rank());
  const std::size_t rows = kBatch / n + (r < kBatch % n ? 1 : 0);
  const std::size_t first = r * (kBatch / n) + std::min(r, kBatch % n);
  SGD<double> opt(ddp.parameters(), {0.05});
  for (std::size_t s = 0; s < kSteps; ++s) {
    const Data d = batch_for_step(s);
    opt.zero_grad();
    const D out = ddp(slice(d.x, 0, first, first + rows));
    mul(mse_loss(out, slice(d.y, 0, first, first + rows)), double(n * rows) / kBatch).backward();
    ddp.finish_gradient_synchronization();
    opt.step();
  }
}

}  // namespace

TEST_CASE("SyncBatchNorm: N ranks on shares of the batch reach one process's parameters and statistics") {
  auto reference = make_cnn();
  train_alone(*reference);
  auto model = make_cnn();
  CHECK(dist::convert_sync_batchnorm(*model) == 1);
  CHECK((*model)[1]->type_name() == "SyncBatchNorm");
  dist::DistributedDataParallel<double> ddp(model);
  train_ranks(ddp);
  const StateDict<double> state = model->state_dict();
  CHECK(state.count("1.running_var") == 1);  // BatchNorm's names: the state dicts compare key by key
  const double diff = max_relative_difference(state, reference->state_dict());
  CHECK_MESSAGE(diff <= 1e-10, "rank " << dist::rank() << ": relative difference " << diff);

  // Eval with running statistics is local and equals BatchNorm's.
  model->eval();
  reference->eval();
  const Data d = batch_for_step(kSteps);
  CHECK(double(xt::amax(xt::abs((*model)(d.x).data() - (*reference)(d.x).data()))()) <= 1e-10);

  if (dist::world_size() > 1) {  // per-rank statistics (plain BatchNorm under DDP) differ
    auto plain = make_cnn();
    dist::DistributedDataParallel<double> plain_ddp(plain);
    train_ranks(plain_ddp);
    CHECK(max_relative_difference(plain->state_dict(), reference->state_dict()) > 1e-6);
  }
}

TEST_CASE("SyncBatchNorm: convert_sync_batchnorm refuses a BatchNorm outside a Sequential, changing nothing") {
  struct Net : Module<double> {
    Net() : Module<double>("Net") {
      features = register_module(
          "features", std::make_shared<Sequential<double>>(
                          std::vector<std::shared_ptr<UnaryModule<double>>>{std::make_shared<BatchNorm1d<double>>(3)}));
      norm = register_module("norm", std::make_shared<BatchNorm1d<double>>(3));
    }
    std::shared_ptr<Sequential<double>> features;
    std::shared_ptr<BatchNorm1d<double>> norm;
  };
  Net net;
  CHECK_THROWS_WITH_AS(dist::convert_sync_batchnorm(net),
                       "convert_sync_batchnorm: the BatchNorm1d 'norm' is not in a Sequential and cannot be swapped; "
                       "build it as a SyncBatchNorm",
                       std::invalid_argument);
  CHECK((*net.features)[0]->type_name() == "BatchNorm1d");  // untouched
  CHECK_THROWS_WITH_AS(dist::SyncBatchNorm<double>(3)(zeros<double>({4, 2})),
                       "SyncBatchNorm: input (4,2) is not (N, C, *) with C = num_features = 3", std::invalid_argument);
}
