// The fused multi-head attention ops: against the same attention composed from the basic
// ops, gradients against central differences, masks, dropout, errors.
#include "helpers.hpp"

#include <limits>

#include <xtensor/xview.hpp>

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// The reference: softmax(Q K^T / sqrt(dh) + mask) V per head, from basic ops.
// q (B,Lq,D), k, v (B,Lk,D) -> (B,Lq,D)
D composed(const D& q, const D& k, const D& v, std::size_t heads, const std::optional<Mask>& allowed) {
  const long B = long(q.shape()[0]), Lq = long(q.shape()[1]), Lk = long(k.shape()[1]), Dm = long(q.shape()[2]);
  const long H = long(heads), dh = Dm / H;
  const D qh = permute(reshape(q, {B, Lq, H, dh}), {0, 2, 1, 3});
  const D kt = permute(reshape(k, {B, Lk, H, dh}), {0, 2, 3, 1});
  const D vh = permute(reshape(v, {B, Lk, H, dh}), {0, 2, 1, 3});
  D scores = matmul(qh, kt) * (1.0 / std::sqrt(double(dh)));
  if (allowed) {
    Mask blocked = !*allowed;
    blocked.reshape({std::size_t(B), 1, std::size_t(Lq), std::size_t(Lk)});
    scores = masked_fill(scores, blocked, -std::numeric_limits<double>::infinity());
  }
  return reshape(permute(matmul(softmax(scores, -1), vh), {0, 2, 1, 3}), {B, Lq, Dm});
}

Mask random_mask(const Shape& shape, std::uint64_t seed) {
  Generator gen(seed);
  Mask m(shape);
  for (auto& b : m) b = gen.uniform() < 0.7;
  return m;
}

}  // namespace

TEST_CASE("fused attention: equals the composed ops, with and without a mask") {
  const D q = input({2, 3, 8}, 1), k = input({2, 5, 8}, 2), v = input({2, 5, 8}, 3);
  const Mask allowed = random_mask({2, 3, 5}, 4);
  for (const auto& mask : {std::optional<Mask>(), std::optional<Mask>(allowed)}) {
    const FusedAttention<double> fused = attention_heads(q, k, v, 2, mask);
    CHECK(xt::allclose(fused.output.data(), composed(q, k, v, 2, mask).data(), 1e-12, 1e-12));
    CHECK(fused.weights->shape() == std::vector<std::size_t>{2, 2, 3, 5});
  }
}

TEST_CASE("gradcheck: fused attention, q k and v, several shapes and head counts") {
  for (std::size_t heads : {1, 2, 4}) {
    const D q = input({2, 3, 8}, 5), k = input({2, 4, 8}, 6), v = input({2, 4, 8}, 7);
    grad("attention", [=](const In& in) { return attention_heads(in[0], in[1], in[2], heads).output; }, {q, k, v});
  }
  const D q1 = input({1, 1, 4}, 8), k1 = input({1, 6, 4}, 9), v1 = input({1, 6, 4}, 10);
  grad("attention", [](const In& in) { return attention_heads(in[0], in[1], in[2], 2).output; }, {q1, k1, v1});
}

TEST_CASE("gradcheck: fused attention with a mask and a row that may attend to nothing") {
  const D q = input({2, 3, 4}, 11), k = input({2, 4, 4}, 12), v = input({2, 4, 4}, 13);
  Mask allowed = random_mask({2, 3, 4}, 14);
  for (std::size_t j = 0; j < 4; ++j) allowed(1, 2, j) = false;  // a dead row
  allowed(0, 0, 0) = true;
  const auto out = attention_heads(q, k, v, 2, allowed).output;
  for (std::size_t c = 0; c < 4; ++c) CHECK(out.data()(1, 2, c) == 0.0);
  grad("attention", [=](const In& in) { return attention_heads(in[0], in[1], in[2], 2, allowed).output; }, {q, k, v});
}

TEST_CASE("gradcheck: fused self-attention, q k and v the same tensor") {
  const D x = input({2, 3, 4}, 15);
  grad("attention", [](const In& in) { return attention_heads(in[0], in[0], in[0], 2).output; }, {x});
  const D w = input({4, 4}, 32);
  grad("attention",
       [](const In& in) { return attention_heads_all_pairs<double>(in[0], in[0], in[0], 2, in[1]).output; }, {x, w});
}

TEST_CASE("fused attention all pairs: pair (i, j) equals paired attention of q i with k j, then the projection") {
  const D q = input({3, 2, 6}, 16), k = input({4, 5, 6}, 17), v = input({4, 5, 6}, 18);
  const D w = input({7, 6}, 33), b = input({7}, 34);  // the output projection: width 6 -> 7
  const Mask key_allowed = random_mask({4, 5}, 19);
  const auto pairs = attention_heads_all_pairs<double>(q, k, v, 3, w, b, key_allowed);
  CHECK(pairs.output.shape() == Shape{3, 4, 2, 7});
  CHECK(pairs.weights->shape() == std::vector<std::size_t>{3, 3, 2, 4, 5});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) {
      Mask row_mask(Shape{1, 2, 5});
      for (std::size_t t = 0; t < 2; ++t)
        for (std::size_t c = 0; c < 5; ++c) row_mask(0, t, c) = key_allowed(j, c);
      const auto single = attention_heads(narrow(q, 0, i, 1), narrow(k, 0, j, 1), narrow(v, 0, j, 1), 3, row_mask);
      const Array<double> got = xt::view(pairs.output.data(), i, j);
      const Array<double> want = xt::view(linear<double>(single.output, w, b).data(), 0);
      CHECK(xt::allclose(got, want, 1e-12, 1e-12));
    }
}

TEST_CASE("gradcheck: fused attention all pairs with its projection, with a key mask that kills one element") {
  const D q = input({2, 3, 4}, 20), k = input({3, 4, 4}, 21), v = input({3, 4, 4}, 22);
  const D w = input({5, 4}, 35), b = input({5}, 36);
  grad("attention",
       [](const In& in) { return attention_heads_all_pairs<double>(in[0], in[1], in[2], 2, in[3], in[4]).output; },
       {q, k, v, w, b});
  Mask key_allowed = random_mask({3, 4}, 23);
  for (std::size_t j = 0; j < 4; ++j) key_allowed(1, j) = false;
  key_allowed(0, 0) = key_allowed(2, 1) = true;
  // A dead key element: its pairs' attention is zero, so their output is the bias alone.
  const auto out = attention_heads_all_pairs<double>(q, k, v, 2, w, b, key_allowed).output;
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t t = 0; t < 3; ++t) CHECK(xt::view(out.data(), i, 1, t) == b.data());
  grad("attention",
       [=](const In& in) {
         return attention_heads_all_pairs<double>(in[0], in[1], in[2], 2, in[3], in[4], key_allowed).output;
       },
       {q, k, v, w, b});
}

TEST_CASE("gradcheck: the all-pairs op's two halves apart, values through the projection and the attention") {
  const D v = input({3, 4, 4}, 42), w = input({5, 4}, 43);
  const D vw = head_values_projected(v, w, 2);
  CHECK(vw.shape() == Shape{2, 3, 4, 5});
  // head h's values times the columns h*2.. of w: V_h W_h^T, at head 1, value (1, 2), output 3
  double want = 0;
  for (std::size_t c = 2; c < 4; ++c) want += v.data()(1, 2, c) * w.data()(3, c);
  CHECK(vw.data()(1, 1, 2, 3) == doctest::Approx(want).epsilon(1e-12));
  grad("attention", [](const In& in) { return head_values_projected(in[0], in[1], 2); }, {v, w});
  const D q = input({2, 3, 4}, 44), k = input({3, 4, 4}, 45), b = input({5}, 46);
  const Mask key_allowed = random_mask({3, 4}, 47);
  grad("attention",
       [=](const In& in) {
         return attention_all_pairs_projected(in[0], in[1], in[2], std::optional<D>(in[3]), key_allowed).output;
       },
       {q, k, input({2, 3, 4, 5}, 48), b});
  check_throws_with([&] { head_values_projected(v, w, 3); }, {"head_values_projected", "3 heads"});
  check_throws_with(
      [&] {
        attention_all_pairs_projected(q, k, input({2, 3, 5, 5}, 49));
      },
      {"attention_all_pairs_projected", "(2,3,5,5)", "(3,4,4)"});
}

TEST_CASE("gradcheck: fused attention with dropout, the generator reseeded in fn") {
  const D q = input({2, 3, 4}, 24), k = input({2, 5, 4}, 25), v = input({2, 5, 4}, 26);
  grad("attention",
       [](const In& in) {
         Generator gen(7);
         return attention_heads(in[0], in[1], in[2], 2, std::nullopt, 0.3, &gen).output;
       },
       {q, k, v});
  grad("attention",
       [](const In& in) {
         Generator gen(8);
         return attention_heads_all_pairs<double>(in[0], in[1], in[2], 2, in[3], std::nullopt, std::nullopt, 0.3, &gen)
             .output;
       },
       {q, k, v, input({4, 4}, 37)});
  Generator gen(9);
  const auto dropped = attention_heads(q, k, v, 2, std::nullopt, 0.3, &gen);
  CHECK_FALSE(xt::allclose(dropped.output.data(), attention_heads(q, k, v, 2).output.data()));
}

TEST_CASE("errors: fused attention names the op and the shapes") {
  const D q = input({2, 3, 4}, 27), k = input({2, 5, 4}, 28);
  check_throws_with([&] { attention_heads(q, k, input({2, 6, 4}, 29), 2); }, {"attention_heads", "(2,5,4)", "(2,6,4)"});
  check_throws_with(
      [&] {
        attention_heads(q, input({3, 5, 4}, 30), input({3, 5, 4}, 31), 2);
      },
      {"attention_heads", "batch"});
  check_throws_with([&] { attention_heads(q, k, k, 3); }, {"3 heads", "width 4"});
  check_throws_with([&] { attention_heads(q, k, k, 2, Mask(xt::ones<bool>({2, 5, 3}))); }, {"mask", "(2,5,3)"});
  const D w = input({4, 4}, 38);
  check_throws_with(
      [&] {
        attention_heads_all_pairs<double>(q, k, k, 2, w, std::nullopt, Mask(xt::ones<bool>({5, 2})));
      },
      {"attention_heads_all_pairs", "(5,2)"});
  check_throws_with(
      [&] {
        attention_heads_all_pairs<double>(q, k, k, 2, input({4, 3}, 39));
      },
      {"attention_heads_all_pairs", "out_weight (4,3)"});
  check_throws_with([&] { attention_heads_all_pairs<double>(q, k, k, 2, w, input({3}, 40)); },
                    {"attention_heads_all_pairs", "out_bias (3)", "(4,4)"});
}
