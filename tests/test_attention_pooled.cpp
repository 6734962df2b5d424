// attention_all_pairs_pooled and MultiHeadCrossAttention::forward_all_pairs_pooled: the
// same bits as the separate ops forward, the same gradients backward (the per-row ones
// bit for bit, the sums to rounding), gradients against central differences, errors.
#include "helpers.hpp"

#include "xtgrad/attention.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// The separate ops the pooled op fuses: the all-pairs attention, + residual, layer_norm
// over E, mean over the Lq query positions. -> (Bq,Bk,E)
template <class T> Tensor<T> pooled_composed(const std::vector<Tensor<T>>& in, const std::optional<Mask>& key_allowed) {
  const Shape rs = in[4].shape();
  const auto optional = [](const Tensor<T>& t) { return std::optional<Tensor<T>>(t); };
  const Tensor<T> attended = attention_all_pairs_projected(in[0], in[1], in[2], optional(in[3]), key_allowed).output;
  const Tensor<T> x = reshape(in[4], {long(rs[0]), 1L, long(rs[1]), long(rs[2])}) + attended;
  return mean(layer_norm(x, Shape{rs[2]}, optional(in[5]), optional(in[6]), 1e-5), {2});
}

template <class T> Tensor<T> pooled_fused(const std::vector<Tensor<T>>& in, const std::optional<Mask>& key_allowed) {
  return attention_all_pairs_pooled(in[0], in[1], in[2], std::optional<Tensor<T>>(in[3]), in[4],
                                    std::optional<Tensor<T>>(in[5]), std::optional<Tensor<T>>(in[6]), 1e-5, key_allowed)
      .output;
}

// q (Bq,Lq,D), k (Bk,Lk,D), vw (H,Bk,Lk,E), out_bias (E), residual (Bq,Lq,E), norm weight
// and bias (E), from seed on.
template <class T>
std::vector<Tensor<T>> pooled_inputs(std::size_t bq, std::size_t lq, std::size_t bk, std::size_t lk, std::size_t d,
                                     std::size_t heads, std::size_t e, std::uint64_t seed) {
  return {input<T>({bq, lq, d}, seed), input<T>({bk, lk, d}, seed + 1), input<T>({heads, bk, lk, e}, seed + 2),
          input<T>({e}, seed + 3),     input<T>({bq, lq, e}, seed + 4), input<T>({e}, seed + 5),
          input<T>({e}, seed + 6)};
}

// Every input's gradient of sum(out * r), r fixed: each output element weighs differently.
template <class T> std::vector<Array<T>> gradients(const Tensor<T>& out, const std::vector<Tensor<T>>& in) {
  Generator gen(99);
  sum(out * randn<T>(out.shape(), gen)).backward();
  std::vector<Array<T>> grads;
  for (const Tensor<T>& t : in) grads.push_back(t.grad());
  for (Tensor<T> t : in) t.zero_grad();  // a Tensor is a handle: the copy clears the same node
  return grads;
}

Mask killing_mask(std::size_t bk, std::size_t lk, std::size_t dead) {
  Mask m = xt::ones<bool>({bk, lk});
  for (std::size_t j = 0; j < lk; ++j) m(dead, j) = false;
  m(0, 1) = false;
  return m;
}

}  // namespace

TEST_CASE("attention_all_pairs_pooled: the separate ops' bits forward, their gradients backward") {
  // Bk 6: a band of four key elements and one of two; 12 rows of 16: a block of eight
  // rows in the float layer norm and four alone.
  const std::vector<Tensor<float>> in = pooled_inputs<float>(3, 4, 6, 5, 8, 2, 16, 1);
  for (const std::optional<Mask>& key_allowed : {std::optional<Mask>(), std::optional<Mask>(killing_mask(6, 5, 4))}) {
    const Tensor<float> fused = pooled_fused(in, key_allowed), composed = pooled_composed(in, key_allowed);
    REQUIRE(fused.shape() == Shape{3, 6, 16});
    CHECK(fused.data() == composed.data());
    const std::vector<Array<float>> got = gradients(fused, in), want = gradients(composed, in);
    for (std::size_t i = 0; i < 3; ++i) CHECK_MESSAGE(got[i] == want[i], "input " << i);  // from the same rows
    for (std::size_t i = 3; i < in.size(); ++i)  // sums over the pairs, in another order
      CHECK_MESSAGE(xt::allclose(got[i], want[i], 1e-5, 1e-5), "input " << i);
  }
}

// The float fast paths on 16 keys, the softmax and its backward sixteen rows at a time
// (20 rows: a block and four alone), against the same op in double, whose loops are plain.
TEST_CASE("attention_all_pairs_pooled: float on 16 keys agrees with double") {
  const std::vector<Tensor<float>> in = pooled_inputs<float>(5, 4, 3, 16, 8, 2, 16, 21);
  std::vector<Tensor<double>> in_double;
  for (const Tensor<float>& t : in) in_double.emplace_back(xt::cast<double>(t.data()), true);
  const Tensor<float> out = pooled_fused(in, std::nullopt);
  const Tensor<double> want = pooled_fused(in_double, std::nullopt);
  CHECK(xt::allclose(xt::cast<double>(out.data()), want.data(), 1e-4, 1e-5));
  const std::vector<Array<float>> got = gradients(out, in);
  const std::vector<Array<double>> expected = gradients(want, in_double);
  for (std::size_t i = 0; i < in.size(); ++i)
    CHECK_MESSAGE(xt::allclose(xt::cast<double>(got[i]), expected[i], 1e-4, 1e-5), "input " << i);
}

TEST_CASE("gradcheck: attention_all_pairs_pooled, every input, with a dead key element and with dropout") {
  const std::vector<D> in = pooled_inputs<double>(2, 3, 5, 4, 4, 2, 5, 11);
  grad(
      "attention", [](const In& x) { return pooled_fused(x, std::nullopt); }, in);
  const Mask key_allowed = killing_mask(5, 4, 2);
  grad(
      "attention", [=](const In& x) { return pooled_fused(x, key_allowed); }, in);
  grad("attention",
       [](const In& x) {
         Generator gen(5);
         return attention_all_pairs_pooled(x[0], x[1], x[2], std::nullopt, x[3], std::nullopt, std::nullopt, 1e-5,
                                           std::nullopt, 0.3, &gen)
             .output;
       },
       {in[0], in[1], in[2], in[4]});
}

TEST_CASE("forward_all_pairs_pooled: the bits of forward_all_pairs, the residual, the norm and the mean") {
  Generator gen(3);
  MultiHeadCrossAttention<float> attention(8, 2, 6, 6, 8, true, 0.0, gen);
  LayerNorm<float> norm(8);
  norm.weight = input<float>({8}, 31);
  norm.bias = input<float>({8}, 32);
  const Tensor<float> queries = input<float>({3, 4, 8}, 33), keys = input<float>({5, 3, 6}, 34);
  Mask padding = xt::ones<bool>({5, 3});
  padding(1, 2) = false;
  Mask dead = padding;
  for (std::size_t j = 0; j < 3; ++j) dead(3, j) = false;  // the layer's own path for an all-padding element
  for (const Mask& mask : {padding, dead}) {
    const auto projected = attention.project_all_pairs_keys(keys, keys, attend_mask(mask));
    const AttentionResult<float> fused = attention.forward_all_pairs_pooled(queries, projected, norm);
    const AttentionResult<float> pairs = attention.forward_all_pairs(queries, projected);
    const Tensor<float> composed = mean(norm(reshape(queries, {3, 1, 4, 8}) + pairs.output), {2});
    CHECK(fused.output.data() == composed.data());
    CHECK(fused.weights.data() == pairs.weights.data());
  }
}

TEST_CASE("errors: attention_all_pairs_pooled and forward_all_pairs_pooled name the op and the shapes") {
  std::vector<D> in = pooled_inputs<double>(2, 3, 4, 4, 4, 2, 5, 21);
  in[4] = input({2, 4, 5}, 28);
  check_throws_with([&] { pooled_fused(in, std::nullopt); }, {"attention_all_pairs_pooled", "(2,4,5)", "(2,3,5)"});
  in = pooled_inputs<double>(2, 3, 4, 4, 4, 2, 5, 21);
  in[5] = input({4}, 29);
  check_throws_with([&] { pooled_fused(in, std::nullopt); }, {"attention_all_pairs_pooled", "norm_weight (4)"});
  Generator gen(4);
  MultiHeadCrossAttention<double> narrow(6, 2, 6, 6, 8, true, 0.0, gen);
  LayerNorm<double> norm(8);
  const D keys = input({4, 3, 6}, 30);
  check_throws_with(
      [&] {
        narrow.forward_all_pairs_pooled(input({2, 3, 6}, 31), narrow.project_all_pairs_keys(keys, keys), norm);
      },
      {"forward_all_pairs_pooled", "query_dim 6", "out_dim 8"});
  MultiHeadCrossAttention<double> square(8, 2, 6, 6, 8, true, 0.0, gen);
  LayerNorm<double> wrong(4);
  check_throws_with(
      [&] {
        square.forward_all_pairs_pooled(input({2, 3, 8}, 32), square.project_all_pairs_keys(keys, keys), wrong);
      },
      {"forward_all_pairs_pooled", "(4)", "(8)"});
}
