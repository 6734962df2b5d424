// The traps a newcomer from PyTorch hit (issue 15): each case below failed to compile,
// or gave a silently wrong answer, before its fix. The file itself is part of the proof:
// it builds warning-free under -Wall -Wextra.
#include <optional>
#include <type_traits>

#include "helpers.hpp"
#include "xtgrad/nn.hpp"

namespace xtgrad::testing {
namespace {

// ---- where(mask, a, b) in every const-ness ---------------------------------------------
TEST_CASE("traps: where(mask, a, b) compiles and selects with non-const, const and temporary arguments") {
  Mask mask = {true, false, true};
  const Mask const_mask = mask;
  D a({1.0, 2.0, 3.0}, true), b({10.0, 20.0, 30.0}, true);
  const D const_a = a, const_b = b;
  const Array<double> expected = {1.0, 20.0, 3.0};
  CHECK(where(mask, a, b).data() == expected);                    // all non-const: found xt::where before
  CHECK(where(const_mask, const_a, const_b).data() == expected);  // all const
  CHECK(where(mask, const_a, b).data() == expected);              // mixed
  CHECK(where(Mask(mask), a * 1.0, b + 0.0).data() == expected);  // temporaries
  sum(where(mask, a, b)).backward();
  CHECK(a.grad() == Array<double>{1.0, 0.0, 1.0});
  CHECK(b.grad() == Array<double>{0.0, 1.0, 0.0});
}

// ---- optional tensors do not block deduction ---------------------------------------------
TEST_CASE("traps: linear(x, w, b) and layer_norm(x, {3}, w, b) take plain tensors") {
  const D x({{1.0, 2.0, 4.0}});
  const D w({{1.0, 0.0, 1.0}, {0.0, 1.0, 0.0}}), bias({0.5, -0.5});
  CHECK(linear(x, w, bias).data() == Array<double>{{5.5, 1.5}});
  const D gamma({1.0, 1.0, 2.0}), beta({0.0, 0.0, 1.0});
  const D y = layer_norm(x, {3}, gamma, beta);
  // mean 7/3, biased variance 14/9: the last element (4 - 7/3) / sqrt(14/9 + 1e-5) * 2 + 1.
  CHECK(y.data()(0, 2) == doctest::Approx((4.0 - 7.0 / 3.0) / std::sqrt(14.0 / 9.0 + 1e-5) * 2.0 + 1.0));
}

// ---- one integer type for shapes and axes ------------------------------------------------
TEST_CASE("traps: shapes and axes take any integer type, one axis without braces") {
  const int rows = 2;
  const long cols = 3;
  const D x = zeros<double>({rows, cols}) + 1.0;  // int and long in one Shape
  CHECK(x.shape() == Shape{2, 3});
  const D flat = reshape(x, {x.shape()[0], -1});  // size_t and int together
  CHECK(flat.shape() == Shape{2, 3});
  CHECK(reshape(x, {-1}).shape() == Shape{6});
  CHECK(sum(x, 1).data() == Array<double>{3.0, 3.0});  // one axis, no braces
  CHECK(sum(x, {0, x.dim() - 1}).item() == 6.0);       // int and size_t axes
  CHECK(mean(x, -1, true).shape() == Shape{2, 1});
  const std::size_t width = 3;
  LayerNorm<double> norm(width);  // PyTorch's LayerNorm(int)
  CHECK(norm.normalized_shape == Shape{3});
  check_throws_with([] { return Shape{2, -1}; }, {"Shape", "-1"});
}

// ---- an in-place edit after forward ----------------------------------------------------
TEST_CASE("traps: backward refuses an input modified in place after the op read it") {
  // The newcomer's case: y = 3 x^2 at x = 1 has dy/dx = 6; changing x to 10 before
  // backward gave 60. Now backward names the op and the tensor.
  D x({1.0}, true);
  D y = x * x * 3.0;
  x.mutable_data()(0) = 10.0;
  check_throws_with<std::logic_error>([&] { y.backward(); },
                                      {"op 'mul'", "input 0 ('leaf')", "(1)", "modified in place"});

  // The output of an op, changed before its backward ran.
  D z({2.0}, true);
  D e = exp(z);
  e.mutable_data()(0) = 0.0;
  check_throws_with<std::logic_error>([&] { sum(e).backward(); }, {"op 'exp'", "output", "modified in place"});

  // Changing a tensor after backward is what an optimizer does: the next graph is fine.
  D p({1.0}, true);
  (p * p * 3.0).backward();
  CHECK(p.grad()(0) == 6.0);
  p.mutable_data()(0) = 2.0;
  p.zero_grad();
  (p * p * 3.0).backward();
  CHECK(p.grad()(0) == 12.0);
  CHECK(p.version() == 1);
}

// ---- attention masks say their polarity ------------------------------------------------
TEST_CASE("traps: a raw Mask cannot be passed as an attention mask; padding_mask takes PyTorch's polarity") {
  static_assert(!std::is_convertible_v<Mask, AttendMask>, "a raw mask must not become an attention mask");
  static_assert(!std::is_convertible_v<Mask, std::optional<AttendMask>>, "nor an optional one");
  const Mask pytorch_padding = {{false, false, true, true}, {false, true, true, true}};  // true = ignore
  const AttendMask from_pytorch = padding_mask(pytorch_padding);
  CHECK(from_pytorch.allowed() == Mask{{true, true, false, false}, {true, false, false, false}});
  CHECK(attend_mask(tril_mask(2, 2)).allowed() == Mask{{true, false}, {true, true}});

  Generator gen(5);
  MultiHeadCrossAttention<double> attn(4, 2, 3, 5, 4, true, 0.0, gen);
  const D q = input({2, 3, 4}, 6), k = input({2, 4, 3}, 7), v = input({2, 4, 5}, 8);
  const auto ours = attn.forward(q, k, v, attend_mask(!pytorch_padding));
  const auto theirs = attn.forward(q, k, v, from_pytorch);
  CHECK(ours.output.data() == theirs.output.data());
  CHECK(theirs.weights.data()(0, 0, 2) == 0.0);  // a padded key gets no weight
  CHECK(theirs.weights.data()(1, 1, 1) == 0.0);
}

// ---- messages that say what happened ---------------------------------------------------
TEST_CASE("traps: grad() of an op's result says only leaves keep gradients; retain_grad keeps one") {
  D x({1.0, 2.0}, true);
  D h = x * 2.0;
  D h_kept = x * 3.0;
  h_kept.retain_grad();
  sum(h * h + h_kept).backward();
  check_throws_with<std::logic_error>([&] { (void)h.grad(); }, {"only leaf tensors", "'mul'", "retain_grad()"});
  CHECK(h_kept.grad() == Array<double>{1.0, 1.0});
  CHECK(x.grad() == Array<double>{2.0 * 2.0 * 2.0 + 3.0, 2.0 * 4.0 * 2.0 + 3.0});
  D never({1.0});
  check_throws_with<std::logic_error>([&] { never.retain_grad(); }, {"retain_grad", "does not require"});
}

TEST_CASE("traps: backward of a result computed under NoGradGuard says so") {
  D x({1.0, 2.0}, true);
  D y;
  {
    NoGradGuard no_grad;
    y = sum(x * x);
  }
  check_throws_with<std::logic_error>([&] { y.backward(); }, {"'sum'", "NoGradGuard", "no graph"});
  D plain({1.0});
  check_throws_with<std::logic_error>([&] { sum(plain).backward(); }, {"does not require a gradient"});
}

// ---- options structs ---------------------------------------------------------------------
// Two layers built from the same seed, one positionally and one through its options, hold
// the same parameters and print the same line.
template <class M> void check_same_layer(const M& positional, const M& with_options) {
  CHECK(positional.extra_repr() == with_options.extra_repr());
  const auto a = positional.state_dict(), b = with_options.state_dict();
  REQUIRE(a.size() == b.size());
  for (const auto& [name, value] : a) CHECK_MESSAGE(b.at(name) == value, name);
}

TEST_CASE("traps: options structs give the layer the positional arguments give, and take a generator alone") {
  Generator g1(3), g2(3);
  check_same_layer(TransformerEncoderLayer<double>(8, 2, 16, 0.2, Activation::gelu, 1e-6, true, true, g1),
                   TransformerEncoderLayer<double>(8, 2,
                                                   TransformerLayerOptions()
                                                       .set_dim_feedforward(16)
                                                       .set_dropout(0.2)
                                                       .set_activation(Activation::gelu)
                                                       .set_layer_norm_eps(1e-6)
                                                       .set_batch_first(true)
                                                       .set_norm_first(true),
                                                   g2));
  check_same_layer(TransformerDecoderLayer<double>(8, 2, 2048, 0.1, Activation::relu, 1e-5, false, false, g1),
                   TransformerDecoderLayer<double>(8, 2, {}, g2));
  check_same_layer(
      MultiheadAttention<double>(8, 2, 0.0, false, true, g1),
      MultiheadAttention<double>(8, 2, MultiheadAttentionOptions().set_bias(false).set_batch_first(true), g2));
  check_same_layer(
      MultiHeadCrossAttention<double>(8, 2, 6, 4, 8, true, 0.1, g1),
      MultiHeadCrossAttention<double>(8, 2, 6, 4, 8, MultiHeadCrossAttentionOptions().set_dropout(0.1), g2));
  check_same_layer(LSTM<double>(4, 6, 2, true, true, g1),
                   LSTM<double>(4, 6, RecurrentOptions().set_num_layers(2).set_batch_first(true), g2));
  check_same_layer(GRU<double>(4, 6, 1, true, false, g1), GRU<double>(4, 6, {}, g2));
  check_same_layer(Conv2d<double>(3, 4, 3, 2, 1, 1, 1, false, g1),
                   Conv2d<double>(3, 4, 3, ConvOptions().set_stride(2).set_padding(1).set_bias(false), g2));
}

}  // namespace
}  // namespace xtgrad::testing
