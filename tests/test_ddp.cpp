// DistributedDataParallel on however many ranks mpiexec started (2 and 3 in ctest): ranks
// training on their shares of each batch reach the parameters one process reaches on the
// whole batch.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed_test_helpers.hpp"
#include "xtgrad/distributed.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
namespace dist = xtgrad::distributed;
using xtgrad::testing::first_row;
using xtgrad::testing::max_relative_difference;
using xtgrad::testing::split_rows;

namespace {
using D = Tensor<double>;
constexpr std::size_t batch = 12, steps = 20;

// Linear, LayerNorm, Tanh, Linear: (B,6) -> (B,3). The seed sets the Linear weights.
std::shared_ptr<Sequential<double>> make_model(std::uint64_t seed) {
  Generator gen(seed);
  return std::make_shared<Sequential<double>>(std::vector<std::shared_ptr<UnaryModule<double>>>{
      std::make_shared<Linear<double>>(6, 8, true, gen), std::make_shared<LayerNorm<double>>(8),
      std::make_shared<Tanh<double>>(), std::make_shared<Linear<double>>(8, 3, true, gen)});
}

struct Data {
  D x, y;
};
Data batch_for_step(std::size_t step) {
  Generator gen(100 + step);
  D x = randn<double>({batch, 6}, gen);
  return {x, randn<double>({batch, 3}, gen)};
}

SGDOptions sgd_options() {
  SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  return o;
}

// One process, whole batches: the reference. Returns the last loss.
double train_reference(Sequential<double>& model) {
  SGD<double> opt(model.parameters(), sgd_options());
  double loss = 0;
  for (std::size_t s = 0; s < steps; ++s) {
    const Data d = batch_for_step(s);
    opt.zero_grad();
    D l = mse_loss(model(d.x), d.y);
    l.backward();
    opt.step();
    loss = l.item();
  }
  return loss;
}

// This rank's rows of each batch, the mean loss scaled by world_size * local / global.
void train_ddp(dist::DistributedDataParallel<double>& ddp) {
  const auto n = static_cast<std::size_t>(dist::world_size()), r = static_cast<std::size_t>(dist::rank());
  const auto rows = split_rows(batch, n);
  const std::size_t first = first_row(rows, r);
  SGD<double> opt(ddp.parameters(), sgd_options());
  for (std::size_t s = 0; s < steps; ++s) {
    const Data d = batch_for_step(s);
    opt.zero_grad();
    const D out = ddp(slice(d.x, 0, first, first + rows[r]));
    mul(mse_loss(out, slice(d.y, 0, first, first + rows[r])), double(n * rows[r]) / batch).backward();
    ddp.finish_gradient_synchronization();
    CHECK(ddp.last_sync_timing().buckets_started_in_backward == ddp.bucket_parameter_names().size());
    opt.step();
  }
}

}  // namespace

TEST_CASE("DistributedDataParallel: N ranks on shares of the batch reach one process's parameters") {
  const auto init = make_model(1)->state_dict();
  auto reference = make_model(1);
  const double last_loss = train_reference(*reference);
  CHECK(last_loss < 0.9 * [&] {  // the reference learns: the comparison is not of untouched weights
    auto fresh = make_model(1);
    const Data d = batch_for_step(steps - 1);
    return mse_loss((*fresh)(d.x), d.y).item();
  }());
  // 25 MB: one bucket; 80 bytes: three ([3.bias 3.weight] [1.bias 1.weight] [0.bias 0.weight]).
  for (const double cap_mb : {25.0, 80.0 / (1024 * 1024)}) {
    CAPTURE(cap_mb);
    auto model = make_model(1 + dist::rank());  // other ranks start elsewhere: broadcast fixes it
    dist::DistributedDataParallelOptions options;
    options.bucket_cap_mb = cap_mb;
    dist::DistributedDataParallel<double> ddp(model, options);
    CHECK(max_relative_difference(model->state_dict(), init) == 0);
    CHECK(ddp.bucket_parameter_names().size() == (cap_mb > 1 ? 1u : 3u));
    train_ddp(ddp);
    const double diff = max_relative_difference(model->state_dict(), reference->state_dict());
    CHECK_MESSAGE(diff <= 1e-10, "rank " << dist::rank() << ": relative difference " << diff);
  }
}

namespace {

// Gradient accumulation: each rank's rows of a batch in two micro-batches, the first under
// no_sync() (a local backward only), the second synchronized: one all-reduce per step.
void train_ddp_accumulating(dist::DistributedDataParallel<double>& ddp) {
  const auto n = static_cast<std::size_t>(dist::world_size()), r = static_cast<std::size_t>(dist::rank());
  const auto rows = split_rows(batch, n);
  const std::size_t first = first_row(rows, r);
  const std::size_t half = rows[r] / 2, end = first + rows[r];
  const auto micro_loss = [&](const Data& d, std::size_t from, std::size_t to) {
    return mul(mse_loss(ddp(slice(d.x, 0, from, to)), slice(d.y, 0, from, to)), double(n * (to - from)) / batch);
  };
  SGD<double> opt(ddp.parameters(), sgd_options());
  for (std::size_t s = 0; s < steps; ++s) {
    const Data d = batch_for_step(s);
    opt.zero_grad();
    {
      auto guard = ddp.no_sync();
      micro_loss(d, first, first + half).backward();
      const Array<double> local = ddp.parameters()[0].grad();
      ddp.finish_gradient_synchronization();  // inside no_sync(): does nothing
      CHECK(double(xt::amax(xt::abs(ddp.parameters()[0].grad() - local))()) == 0);
    }
    micro_loss(d, first + half, end).backward();
    ddp.finish_gradient_synchronization();
    CHECK(ddp.last_sync_timing().buckets_started_in_backward == ddp.bucket_parameter_names().size());
    opt.step();
  }
}

}  // namespace

TEST_CASE("DistributedDataParallel: no_sync() micro-batches, one all-reduce a step, reach one process's parameters") {
  auto reference = make_model(1);
  train_reference(*reference);
  auto model = make_model(1 + dist::rank());
  dist::DistributedDataParallel<double> ddp(model);
  train_ddp_accumulating(ddp);
  const double diff = max_relative_difference(model->state_dict(), reference->state_dict());
  CHECK_MESSAGE(diff <= 1e-10, "rank " << dist::rank() << ": relative difference " << diff);
}

namespace {

// The sequence side of the examples' models: Embedding, LSTM, a pre-norm
// TransformerDecoderLayer (self-attention, cross-attention to a memory, GELU feed-forward,
// LayerNorms) and a Linear head over the mean of the positions. tokens (B*6) ids, memory
// (B,4,8) -> (B,3).
struct SequenceNet : Module<double> {
  SequenceNet() : Module<double>("SequenceNet") {
    Generator gen(7);
    embed = register_module("embed", std::make_shared<Embedding<double>>(10, 8, gen));
    lstm = register_module("lstm", std::make_shared<LSTM<double>>(8, 8, 1, true, true, gen));
    fusion = register_module("fusion", std::make_shared<TransformerDecoderLayer<double>>(
                                           8, 2, 16, 0.0, Activation::gelu, 1e-5, true, true, gen));
    head = register_module("head", std::make_shared<Linear<double>>(8, 3, true, gen));
  }
  D forward(const std::vector<std::size_t>& tokens, const D& memory) {
    const std::size_t b = tokens.size() / 6;
    const D words = lstm->forward(embed->forward(tokens, Shape{b, 6})).output;
    return head->forward(mean(fusion->forward(words, memory), 1));
  }
  std::shared_ptr<Embedding<double>> embed;
  std::shared_ptr<LSTM<double>> lstm;
  std::shared_ptr<TransformerDecoderLayer<double>> fusion;
  std::shared_ptr<Linear<double>> head;
};

struct SequenceData {
  std::vector<std::size_t> tokens;  // (batch, 6)
  D memory, y;
};
SequenceData sequence_batch(std::size_t step) {
  Generator gen(300 + step);
  SequenceData d;
  const Array<double> ids = rand<double>({batch * 6}, gen).data();
  for (double u : ids) d.tokens.push_back(std::size_t(u * 10) % 10);
  d.memory = randn<double>({batch, 4, 8}, gen);
  d.y = randn<double>({batch, 3}, gen);
  return d;
}

}  // namespace

TEST_CASE("DistributedDataParallel: Embedding, LSTM and a Transformer decoder layer on shares reach one process") {
  SequenceNet reference;
  {
    SGD<double> opt(reference.parameters(), sgd_options());
    for (std::size_t s = 0; s < steps; ++s) {
      const SequenceData d = sequence_batch(s);
      opt.zero_grad();
      mse_loss(reference.forward(d.tokens, d.memory), d.y).backward();
      opt.step();
    }
  }
  auto net = std::make_shared<SequenceNet>();
  dist::DistributedDataParallel<double> ddp(net);
  const auto n = static_cast<std::size_t>(dist::world_size()), r = static_cast<std::size_t>(dist::rank());
  const auto rows = split_rows(batch, n);
  const std::size_t first = first_row(rows, r);
  SGD<double> opt(ddp.parameters(), sgd_options());
  for (std::size_t s = 0; s < steps; ++s) {
    const SequenceData d = sequence_batch(s);
    opt.zero_grad();
    const std::vector<std::size_t> tokens(d.tokens.begin() + long(first * 6),
                                          d.tokens.begin() + long((first + rows[r]) * 6));
    const D out = net->forward(tokens, slice(d.memory, 0, first, first + rows[r]));
    mul(mse_loss(out, slice(d.y, 0, first, first + rows[r])), double(n * rows[r]) / batch).backward();
    ddp.finish_gradient_synchronization();
    opt.step();
  }
  const double diff = max_relative_difference(net->state_dict(), reference.state_dict());
  CHECK_MESSAGE(diff <= 1e-10, "rank " << dist::rank() << ": relative difference " << diff);
}

TEST_CASE("DistributedDataParallel: buckets in reverse registration order, names as PyTorch's") {
  dist::DistributedDataParallelOptions options;
  options.bucket_cap_mb = 80.0 / (1024 * 1024);
  dist::DistributedDataParallel<double> ddp(make_model(3), options);
  using Names = std::vector<std::vector<std::string>>;
  CHECK(ddp.bucket_parameter_names() == Names{{"module.3.bias", "module.3.weight"},
                                              {"module.1.bias", "module.1.weight"},
                                              {"module.0.bias", "module.0.weight"}});
  CHECK_THROWS_WITH_AS(dist::DistributedDataParallel<double>(make_model(3), dist::DistributedDataParallelOptions{0}),
                       "DistributedDataParallel: bucket_cap_mb must be positive, got 0.0", std::invalid_argument);
}

TEST_CASE("DistributedDataParallel: a second backward before finish_gradient_synchronization() is refused") {
  auto model = make_model(5);
  dist::DistributedDataParallel<double> ddp(model);
  const Data d = batch_for_step(static_cast<std::size_t>(dist::rank()));  // different data per rank
  mse_loss(ddp(d.x), d.y).backward();
  Array<double> expected = model->parameters()[0].grad();
  dist::all_reduce(expected, dist::ReduceOp::avg);
  CHECK_THROWS_WITH_AS(mse_loss(ddp(d.x), d.y).backward(),
                       doctest::Contains("got a second gradient before finish_gradient_synchronization()"),
                       std::logic_error);
  ddp.finish_gradient_synchronization();  // the first pass's gradients, averaged over ranks
  const Array<double>& averaged = model->parameters()[0].grad();
  CHECK(xt::amax(xt::abs(expected - averaged))() <= 1e-15);
}

namespace {
// Two Linear layers; forward uses both, first_only() the first alone.
struct TwoLayers : UnaryModule<double> {
  std::shared_ptr<Linear<double>> first, second;
  TwoLayers() : UnaryModule<double>("TwoLayers") {
    Generator gen(9);
    first = register_module("first", std::make_shared<Linear<double>>(4, 4, true, gen));
    second = register_module("second", std::make_shared<Linear<double>>(4, 2, true, gen));
  }
  Tensor<double> forward(const Tensor<double>& x) override { return second->forward(tanh(first->forward(x))); }
};
}  // namespace

TEST_CASE("DistributedDataParallel: a parameter one rank does not reach counts as zeros there") {
  auto model = std::make_shared<TwoLayers>();
  dist::DistributedDataParallelOptions options;
  options.bucket_cap_mb = 40.0 / (1024 * 1024);  // [second.*] [first.*]: the unreached bucket comes first
  dist::DistributedDataParallel<double> ddp(model, options);
  REQUIRE(ddp.bucket_parameter_names().size() == 2);
  Generator gen(20 + dist::rank());
  const D x = randn<double>({3, 4}, gen);
  const bool skip_second = dist::rank() == 1;
  D out = skip_second ? model->first->forward(x) : ddp(x);
  sum(mul(out, out)).backward();
  Array<double> first_expected = model->first->weight.grad();
  Array<double> second_expected = skip_second ? Array<double>(xt::zeros<double>({2, 4})) : model->second->weight.grad();
  dist::all_reduce(first_expected, dist::ReduceOp::avg);
  dist::all_reduce(second_expected, dist::ReduceOp::avg);
  ddp.finish_gradient_synchronization();
  CHECK(xt::allclose(model->first->weight.grad(), first_expected, 1e-14, 0));
  CHECK(xt::allclose(model->second->weight.grad(), second_expected, 1e-14, 0));
  CHECK(xt::amax(xt::abs(second_expected))() > 0);
}
