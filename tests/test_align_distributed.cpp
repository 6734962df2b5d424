// The alignment model trained data-parallel (examples/align/parallel.hpp) on however many
// ranks mpiexec started (2 and 3 in ctest: an even and an uneven split of the batch), in
// double: every rank scores its captions against the images of the whole global batch
// through the differentiable all_gather, and after 20 steps the parameters equal those of
// one process training on the whole batches, within 1e-10 relative.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "data_parallel_step.hpp"
#include "distributed_run.hpp"
#include "distributed_test_helpers.hpp"
#include "parallel.hpp"
#include "train.hpp"
#include "xtgrad/distributed.hpp"

using namespace align;
namespace dist = xtgrad::distributed;
using xtgrad::testing::max_relative_difference;

namespace {
constexpr std::size_t kBatch = 12, kSteps = 20;
// SGD with momentum 0.9 (make_optimizer): its steps scale with the gradient, so a share
// weighted wrongly would show (Adam's normalised steps would hide a uniform factor).
constexpr double kLr = 0.1;
// The keys' bias adds q.b to every score of a query, which the softmax ignores: its exact
// gradient is zero, it starts at zero and holds only round-off (1e-20 here) in both runs,
// so it is checked to stay there instead of relative to itself.
const std::string kZeroGradient = "attention.k_proj.bias";

std::shared_ptr<AlignModel<double>> make_model(bool attention, std::uint64_t seed) {
  xtgrad::Generator gen(seed);
  return std::make_shared<AlignModel<double>>(ModelConfig{16, 2, attention}, gen);
}

// The global batches of the 20 steps, as training draws them.
std::vector<std::vector<std::size_t>> global_batches(std::size_t examples) {
  BatchSampler sampler(examples, kBatch, sampler_seed(5));
  std::vector<std::vector<std::size_t>> batches;
  for (std::size_t s = 0; s < kSteps; ++s) batches.push_back(sampler.next());
  return batches;
}

}  // namespace

TEST_CASE("align data-parallel: N ranks with all-gathered images reach one process's parameters, in double") {
  const std::vector<Example> data = generate(60, 3);
  const auto batches = global_batches(data.size());
  const common::Ranks ranks{std::size_t(dist::rank()), std::size_t(dist::world_size())};
  for (const bool attention : {true, false}) {
    CAPTURE(attention);
    auto reference = make_model(attention, 1);
    const auto optimizer = make_optimizer<double>("sgd", reference->parameters(), kLr);
    std::vector<double> losses;
    for (const auto& batch : batches)
      losses.push_back(train_step(*reference, *optimizer, data, make_batch<double>(data, batch)).loss);
    CHECK(max_relative_difference(reference->state_dict(), make_model(attention, 1)->state_dict(), kZeroGradient) >
          1e-3);  // moved

    auto model = make_model(attention, 1 + ranks.rank);  // other ranks start elsewhere: DDP broadcasts rank 0's
    dist::DistributedDataParallel<double> ddp(model);
    const auto parallel_optimizer = make_optimizer<double>("sgd", model->parameters(), kLr);
    const common::Share share = common::share_of_batch(kBatch, ranks);
    for (std::size_t s = 0; s < kSteps; ++s) {
      const std::vector<std::size_t> mine(batches[s].begin() + long(share.first),
                                          batches[s].begin() + long(share.first + share.count));
      const double loss =
          parallel_train_step(*model, ddp, *parallel_optimizer, data, batches[s], make_batch<double>(data, mine));
      CHECK_MESSAGE(loss == doctest::Approx(losses[s]).epsilon(1e-12), "step " << s + 1);
    }
    const double diff = max_relative_difference(model->state_dict(), reference->state_dict(), kZeroGradient);
    CHECK_MESSAGE(diff <= 1e-10, "rank " << ranks.rank << " of " << ranks.size << ": relative difference " << diff);
    if (attention)
      for (const auto& state : {model->state_dict(), reference->state_dict()})
        CHECK(double(xt::amax(xt::abs(state.at(kZeroGradient)))()) <= 1e-15);
  }
}

TEST_CASE("data parallel: split_rows gives every rank the whole table, each rank filling its own share") {
  int argc = 0;
  char** argv = nullptr;
  const common::DistributedRun run(argc, argv);  // MPI is running already: it joins it
  REQUIRE(run.ranks().size == std::size_t(dist::world_size()));
  const common::DataParallelStep step(&run, std::make_shared<xtgrad::Linear<float>>(2, 2));
  const std::size_t rows = 7, width = 2;
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  const std::vector<double> table = step.split_rows(rows, width, [&](std::size_t first, std::size_t n) {
    calls.emplace_back(first, n);
    std::vector<double> mine;
    for (std::size_t i = first; i < first + n; ++i) mine.insert(mine.end(), {double(i), double(dist::rank())});
    return mine;
  });
  const common::Share share = common::share_of_batch(rows, run.ranks());
  CHECK(calls == std::vector<std::pair<std::size_t, std::size_t>>{{share.first, share.count}});
  REQUIRE(table.size() == rows * width);
  for (std::size_t i = 0; i < rows; ++i) {
    CHECK(table[i * width] == double(i));
    std::size_t owner = 0;  // the rank whose share holds row i
    while (common::share_of_batch(rows, {owner, run.ranks().size}).first +
               common::share_of_batch(rows, {owner, run.ranks().size}).count <=
           i)
      ++owner;
    CHECK(table[i * width + 1] == double(owner));
  }
}
