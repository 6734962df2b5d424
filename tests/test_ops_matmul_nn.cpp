// matmul and the neural-network functions: softmax, log_softmax, layer_norm,
// cross_entropy, mse_loss, dropout, masked_fill, where. Gradients against central
// differences, forward values by hand, and the shape errors.
#include "helpers.hpp"

#include <cmath>
#include <limits>

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

using Targets = std::vector<std::size_t>;
const double kInf = std::numeric_limits<double>::infinity();

Mask make_mask(const Shape& shape, const std::vector<int>& values) {
  Mask m(shape);
  REQUIRE(m.size() == values.size());
  std::transform(values.begin(), values.end(), m.begin(), [](int v) { return v != 0; });
  return m;
}

// The message of the std::invalid_argument f throws ("" when it throws none).
template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// softmax of {1, 2, 3} and its logarithm
const std::vector<double> kSoftmax123 = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
const std::vector<double> kLogSoftmax123 = {-2.40760596444438, -1.4076059644443801, -0.40760596444438013};

}  // namespace

// ---- matmul -----------------------------------------------------------------------------

TEST_CASE("forward: matmul of 2x2 integers, vectors, batches and broadcast batches") {
  const D a = make({2, 2}, {1, 2, 3, 4});
  const D b = make({2, 2}, {5, 6, 7, 8});
  check_values(matmul(a, b), {2, 2}, {19, 22, 43, 50});
  check_values(matmul(b, a), {2, 2}, {23, 34, 31, 46});
  check_values(matmul(make({3}, {1, 2, 3}), make({3}, {4, 5, 6})), {}, {32});  // 1-D . 1-D
  check_values(matmul(a, make({2}, {1, 1})), {2}, {3, 7});                     // 2-D . 1-D
  check_values(matmul(make({2}, {1, 1}), a), {2}, {4, 6});                     // 1-D . 2-D
  check_values(matmul(iota({2, 3}), iota({3, 2})), {2, 2}, {22, 28, 49, 64});
  // batched: a[i] (2,2) times diag(1, 2)
  const D batch = iota({2, 2, 2});
  check_values(matmul(batch, make({2, 2}, {1, 0, 0, 2})), {2, 2, 2}, {1, 4, 3, 8, 5, 12, 7, 16});
  check_values(matmul(batch, make({2, 2, 2}, {1, 0, 0, 1, 2, 0, 0, 2})), {2, 2, 2}, {1, 2, 3, 4, 10, 12, 14, 16});
  // (2,2) broadcast against a batch of {I, 2I}
  check_values(matmul(a, make({2, 2, 2}, {1, 0, 0, 1, 2, 0, 0, 2})), {2, 2, 2}, {1, 2, 3, 4, 2, 4, 6, 8});
  check_values(matmul(make({2}, {1, 1}), batch), {2, 2}, {4, 6, 12, 14});  // (2) x (2,2,2)
  check_values(matmul(batch, make({2}, {1, 1})), {2, 2}, {3, 7, 11, 15});  // (2,2,2) x (2)
  // output shapes of the broadcasting cases
  CHECK(matmul(input({2, 1, 3, 4}, 1), input({5, 4, 2}, 2)).shape() == Shape{2, 5, 3, 2});
  CHECK(matmul(input({3, 4}, 3), input({2, 4, 5}, 4)).shape() == Shape{2, 3, 5});
  CHECK(matmul(input({1, 3, 4}, 5), input({2, 4, 5}, 6)).shape() == Shape{2, 3, 5});
  CHECK(matmul(input({4}, 7), input({2, 1, 4, 5}, 8)).shape() == Shape{2, 1, 5});
  // float (sgemm) forward and backward: sum(a b) -> dA = 1 B^T, dB = A^T 1
  Tensor<float> af = make<float>({2, 2}, {1, 2, 3, 4}, true);
  Tensor<float> bf = make<float>({2, 2}, {5, 6, 7, 8}, true);
  const Tensor<float> cf = matmul(af, bf);
  check_values(cf, {2, 2}, {19, 22, 43, 50});
  sum(cf).backward();
  check_array(af.grad(), {2, 2}, {11, 15, 11, 15});
  check_array(bf.grad(), {2, 2}, {4, 4, 6, 6});
}

TEST_CASE("gradcheck: matmul 1-D.1-D, 2-D.1-D, 1-D.2-D, 2-D.2-D") {
  const Fn f = [](const In& in) { return matmul(in[0], in[1]); };
  grad("matmul", f, {input({4}, 401), input({4}, 402)});
  grad("matmul", f, {input({3, 4}, 403), input({4}, 404)});
  grad("matmul", f, {input({4}, 405), input({4, 3}, 406)});
  grad("matmul", f, {input({3, 4}, 407), input({4, 2}, 408)});
  grad("matmul", f, {input({1, 4}, 409), input({4, 1}, 410)});
  grad("matmul", f, {input({3, 1}, 411), input({1, 2}, 412)});  // k = 1: an outer product
  // only one side requires a gradient
  grad("matmul", f, {input({2, 3}, 413), input({3, 2}, 414).detach()});
  grad("matmul", f, {input({2, 3}, 415).detach(), input({3, 2}, 416)});
}

TEST_CASE("gradcheck: matmul 3-D batched and broadcast batch dims (2,1,3,4)x(5,4,2), (3,4)x(2,4,5)") {
  const Fn f = [](const In& in) { return matmul(in[0], in[1]); };
  grad("matmul", f, {input({2, 3, 4}, 421), input({2, 4, 2}, 422)});
  grad("matmul", f, {input({2, 1, 3, 4}, 423), input({5, 4, 2}, 424)});
  grad("matmul", f, {input({3, 4}, 425), input({2, 4, 5}, 426)});
  grad("matmul", f, {input({2, 3, 4}, 427), input({4, 2}, 428)});
  grad("matmul", f, {input({1, 3, 2}, 429), input({3, 2, 2}, 430)});
  grad("matmul", f, {input({4}, 431), input({2, 4, 3}, 432)});
  grad("matmul", f, {input({2, 3, 4}, 433), input({4}, 434)});
}

TEST_CASE("gradcheck: matmul of transposed/permuted inputs, a shared input, accumulated gradients") {
  grad("matmul", [](const In& in) { return matmul(transpose(in[0], 0, 1), in[1]); },
       {input({4, 3}, 441), input({4, 2}, 442)});
  grad("matmul", [](const In& in) { return matmul(in[0], transpose(in[1], -1, -2)); },
       {input({2, 3, 4}, 443), input({2, 5, 4}, 444)});
  // attention-style: q (b,h,t,d) . k^T with k built by permute from (b,t,h,d)
  grad("matmul",
       [](const In& in) {
         return matmul(in[0], permute(in[1], {0, 2, 3, 1}));
       },
       {input({1, 2, 3, 2}, 445), input({1, 3, 2, 2}, 446)});
  // x x, and an input that reaches the result through two matmuls and an add
  grad("matmul", [](const In& in) { return matmul(in[0], in[0]); }, {input({3, 3}, 447)});
  grad("matmul", [](const In& in) { return add(matmul(in[0], in[1]), matmul(in[0], in[2])); },
       {input({2, 3}, 448), input({3, 2}, 449), input({3, 2}, 450)});
  grad("matmul",
       [](const In& in) {
         const D h = tanh(in[0]);
         return add(matmul(h, in[1]), h);
       },
       {input({3, 3}, 451), input({3, 3}, 452)});
  // a broadcast operand whose one matrix collects the gradients of several products
  grad("matmul", [](const In& in) { return matmul(in[0], in[1]); }, {input({1, 2, 3}, 453), input({4, 3, 2}, 454)});
}

TEST_CASE("errors: matmul says exactly 'matmul: inner dimensions differ: (4,128) x (256,512)'") {
  const D a = zeros<double>({4, 128});
  const D b = zeros<double>({256, 512});
  CHECK(error_of([&] { matmul(a, b); }) == "matmul: inner dimensions differ: (4,128) x (256,512)");
  CHECK(error_of([&] { matmul(zeros<double>({3}), zeros<double>({4})); }) ==
        "matmul: inner dimensions differ: (3) x (4)");
  CHECK(error_of([&] {
          matmul(zeros<double>({2, 3}), zeros<double>({2}));
        }) == "matmul: inner dimensions differ: (2,3) x (2)");
  CHECK(error_of([&] {
          matmul(zeros<double>({2, 3, 4}), zeros<double>({3, 4, 5}));
        }) == "matmul: batch dimensions cannot be broadcast: (2,3,4) x (3,4,5)");
  check_throws_with([&] { matmul(zeros<double>({}), zeros<double>({3})); }, {"matmul", "()", "(3)"});
}

// ---- softmax, log_softmax -----------------------------------------------------------------

TEST_CASE("forward: softmax and log_softmax of {1,2,3}, along the last and a middle axis") {
  check_values(softmax(make({3}, {1, 2, 3})), {3}, kSoftmax123);
  check_values(log_softmax(make({3}, {1, 2, 3})), {3}, kLogSoftmax123);
  check_values(softmax(make({2, 3}, {1, 2, 3, 0, 0, 0})), {2, 3},
               {kSoftmax123[0], kSoftmax123[1], kSoftmax123[2], 1.0 / 3, 1.0 / 3, 1.0 / 3});
  // (1,3,2) along axis 1 (and -2): column 0 is {1,2,3}, column 1 is {0,0,0}
  const D x = make({1, 3, 2}, {1, 0, 2, 0, 3, 0});
  const std::vector<double> sm = {kSoftmax123[0], 1.0 / 3, kSoftmax123[1], 1.0 / 3, kSoftmax123[2], 1.0 / 3};
  const double l3 = -std::log(3.0);
  const std::vector<double> lsm = {kLogSoftmax123[0], l3, kLogSoftmax123[1], l3, kLogSoftmax123[2], l3};
  check_values(softmax(x, 1), {1, 3, 2}, sm);
  check_values(softmax(x, -2), {1, 3, 2}, sm);
  check_values(log_softmax(x, 1), {1, 3, 2}, lsm);
  check_values(log_softmax(x, -2), {1, 3, 2}, lsm);
  // along axis 0 of a (3,1): the same numbers
  check_values(softmax(make({3, 1}, {1, 2, 3}), 0), {3, 1}, kSoftmax123);
  // hand gradient: d softmax_i / d x_j = s_i (delta_ij - s_j); with g = (1,0,0): s_0 (delta_0j - s_j)
  D v = make({3}, {1, 2, 3}, true);
  softmax(v).backward(Array<double>{1.0, 0.0, 0.0});
  const auto& s = kSoftmax123;
  check_array(v.grad(), {3}, {s[0] * (1 - s[0]), -s[0] * s[1], -s[0] * s[2]});
}

TEST_CASE("gradcheck: softmax and log_softmax along the last and a middle axis") {
  for (const bool use_log : {false, true}) {
    const char* name = use_log ? "log_softmax" : "softmax";
    const auto op = [use_log](const D& x, int axis) { return use_log ? log_softmax(x, axis) : softmax(x, axis); };
    grad(name, [op](const In& in) { return op(in[0], -1); }, {input({2, 3}, 461)});
    grad(name, [op](const In& in) { return op(in[0], 1); }, {input({2, 3, 4}, 462)});
    grad(name, [op](const In& in) { return op(in[0], -2); }, {input({2, 3, 2}, 463)});
    grad(name, [op](const In& in) { return op(in[0], 0); }, {input({3, 2}, 464)});
    grad(name, [op](const In& in) { return op(in[0], -1); }, {input({1, 5}, 465)});
    grad(name, [op](const In& in) { return op(in[0], 1); }, {input({2, 1, 3}, 466)});  // a size-1 softmax axis
    grad(name, [op](const In& in) { return op(transpose(in[0], 0, 1), -1); }, {input({4, 3}, 467)});
    grad(name, [op](const In& in) { return op(permute(in[0], {2, 0, 1}), 1); }, {input({2, 3, 2}, 468)});
  }
}

TEST_CASE("softmax of an all -inf row gives zeros and passes zero gradient (no NaN)") {
  D x = make({2, 3}, {-kInf, -kInf, -kInf, 1, 2, 3}, true);
  D y = softmax(x);
  const auto& s = kSoftmax123;
  check_values(y, {2, 3}, {0, 0, 0, s[0], s[1], s[2]});
  const Array<double> g = iota({2, 3}).data();
  y.backward(g);
  // row 1: s_i (g_i - sum_j g_j s_j)
  const double dot = 4 * s[0] + 5 * s[1] + 6 * s[2];
  check_array(x.grad(), {2, 3}, {0, 0, 0, s[0] * (4 - dot), s[1] * (5 - dot), s[2] * (6 - dot)});
  // the attention pattern: a fully masked row through masked_fill(-inf) then softmax
  D z = input({2, 3}, 471);
  const D p = softmax(xtgrad::masked_fill(z, make_mask({2, 1}, {1, 0}), -kInf), -1);
  for (std::size_t j = 0; j < 3; ++j) CHECK(p.data()(0, j) == 0.0);
  CHECK(p.data()(1, 0) + p.data()(1, 1) + p.data()(1, 2) == doctest::Approx(1.0));
  sum(mul(p, iota({2, 3}))).backward();
  for (double v : z.grad()) CHECK(std::isfinite(v));
  for (std::size_t j = 0; j < 3; ++j) CHECK(z.grad()(0, j) == 0.0);
  grad("softmax",
       [](const In& in) {
         return softmax(xtgrad::masked_fill(in[0], make_mask({2, 3}, {1, 1, 1, 0, 1, 0}), -kInf), -1);
       },
       {input({2, 3}, 472)});
}

TEST_CASE("log_softmax of an all -inf row gives NaN, as PyTorch; so does cross_entropy's loss") {
  // A fully masked row has no log-probabilities: NaN, not zeros (which would claim
  // probability 1 for every entry); the other rows are unaffected.
  D x = make({2, 3}, {-kInf, -kInf, -kInf, 1, 2, 3}, true);
  const D y = log_softmax(x);
  for (std::size_t j = 0; j < 3; ++j) CHECK(std::isnan(y.data()(0, j)));
  const auto& l = kLogSoftmax123;
  for (std::size_t j = 0; j < 3; ++j) CHECK(y.data()(1, j) == doctest::Approx(l[j]).epsilon(1e-12));
  // along axis 0, and in float
  const D columns = log_softmax(make({2, 2}, {-kInf, 0, -kInf, 0}), 0);
  CHECK(std::isnan(columns.data()(0, 0)));
  CHECK(std::isnan(columns.data()(1, 0)));
  CHECK(columns.data()(0, 1) == doctest::Approx(std::log(0.5)));
  const float inf_f = std::numeric_limits<float>::infinity();
  const Tensor<float> yf = log_softmax(make<float>({1, 2}, {-inf_f, -inf_f}));
  CHECK((std::isnan(yf.data()(0, 0)) && std::isnan(yf.data()(0, 1))));
  // a partly masked row keeps -inf where masked and finite values elsewhere
  check_values(log_softmax(make({3}, {-kInf, 0, 0})), {3}, {-kInf, std::log(0.5), std::log(0.5)});
  // softmax of the same row stays zeros (attention's promise)
  check_values(softmax(make({1, 3}, {-kInf, -kInf, -kInf})), {1, 3}, {0, 0, 0});
  // cross_entropy takes log_softmax: its loss is NaN when a row is all -inf
  CHECK(std::isnan(cross_entropy(x, Targets{0, 2}).item()));
  CHECK(std::isnan(cross_entropy(x, make({2, 3}, {0, 0, 1, 0, 0, 1})).item()));
}

TEST_CASE("softmax, log_softmax and cross_entropy are numerically stable for logits like 1000") {
  const D x = make({2, 3}, {1000, 1001, 1002, -1000, -999, -998});
  const auto& s = kSoftmax123;
  const auto& l = kLogSoftmax123;
  check_values(softmax(x), {2, 3}, {s[0], s[1], s[2], s[0], s[1], s[2]}, 1e-10);
  check_values(log_softmax(x), {2, 3}, {l[0], l[1], l[2], l[0], l[1], l[2]}, 1e-10);
  // along axis 0 as well: columns {1000, -1000}
  check_values(softmax(make({2, 1}, {1000, -1000}), 0), {2, 1}, {1.0, 0.0});
  check_values(log_softmax(make({2, 1}, {1000, -1000}), 0), {2, 1}, {0.0, -2000.0});
  // float: exp(1000) overflows float and double alike, so this needs the max shift
  const Tensor<float> xf = make<float>({3}, {1000, 1001, 1002});
  check_values(softmax(xf), {3}, kSoftmax123, 1e-5);
  check_values(log_softmax(xf), {3}, kLogSoftmax123, 1e-5);
  // cross_entropy of the same rows, targets 2 and 0: (-l[2] - l[0]) / 2
  D logits = make({2, 3}, {1000, 1001, 1002, -1000, -999, -998}, true);
  D loss = cross_entropy(logits, Targets{2, 0});
  CHECK(loss.item() == doctest::Approx((-l[2] - l[0]) / 2).epsilon(1e-10));
  loss.backward();
  check_array(logits.grad(), {2, 3}, {s[0] / 2, s[1] / 2, (s[2] - 1) / 2, (s[0] - 1) / 2, s[1] / 2, s[2] / 2}, 1e-10);
  // gradients of softmax / log_softmax at such logits are finite and right
  grad("softmax", [](const In& in) { return softmax(in[0]); },
       {make({2, 3}, {1000, 1001, 1002, -1000, -999, -998}, true)});
  grad("log_softmax", [](const In& in) { return log_softmax(in[0]); },
       {make({2, 3}, {1000, 1001, 1002, -1000, -999, -998}, true)});
}

// ---- layer_norm ---------------------------------------------------------------------------

TEST_CASE("forward: layer_norm of a known row, with and without weight and bias, over 1 and 2 dims") {
  // [1,2,3,4]: mean 2.5, biased variance 1.25, eps 1e-5
  const double r = 1.0 / std::sqrt(1.25 + 1e-5);
  const std::vector<double> xhat = {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r};
  CHECK(xhat[0] == doctest::Approx(-1.3416354199689269));
  check_values(layer_norm(make({1, 4}, {1, 2, 3, 4}), {4}), {1, 4}, xhat);
  check_values(layer_norm(make({4}, {1, 2, 3, 4}), {4}), {4}, xhat);
  // a constant row normalises to 0 (and then to the bias)
  check_values(layer_norm(make({2, 4}, {1, 2, 3, 4, 5, 5, 5, 5}), {4}), {2, 4},
               {xhat[0], xhat[1], xhat[2], xhat[3], 0, 0, 0, 0});
  const D w = make({4}, {1, 2, 0.5, -1});
  const D b = make({4}, {0, 1, -1, 0.5});
  check_values(layer_norm<double>(make({2, 4}, {1, 2, 3, 4, 5, 5, 5, 5}), {4}, w, b), {2, 4},
               {-1.3416354199689269, 0.105576386687382, -0.7763940966718454, -0.8416354199689269, 0, 1, -1, 0.5});
  check_values(layer_norm<double>(make({4}, {1, 2, 3, 4}), {4}, w, std::nullopt), {4},
               {xhat[0], 2 * xhat[1], 0.5 * xhat[2], -xhat[3]});
  check_values(layer_norm<double>(make({4}, {1, 2, 3, 4}), {4}, std::nullopt, b), {4},
               {xhat[0], xhat[1] + 1, xhat[2] - 1, xhat[3] + 0.5});
  // over the two trailing dims of (2,2,2): each (2,2) block is one row
  check_values(layer_norm(make({2, 2, 2}, {1, 2, 3, 4, 4, 3, 2, 1}), {2, 2}), {2, 2, 2},
               {xhat[0], xhat[1], xhat[2], xhat[3], xhat[3], xhat[2], xhat[1], xhat[0]});
  check_values(layer_norm<double>(make({2, 2}, {1, 2, 3, 4}), {2, 2}, make({2, 2}, {1, 2, 0.5, -1}),
                                  make({2, 2}, {0, 1, -1, 0.5})),
               {2, 2}, {-1.3416354199689269, 0.105576386687382, -0.7763940966718454, -0.8416354199689269});
  // a larger eps changes the scale: 1 / sqrt(1.25 + 0.75) = 1/sqrt(2)
  check_values(layer_norm<double>(make({4}, {1, 2, 3, 4}), {4}, std::nullopt, std::nullopt, 0.75), {4},
               {-1.5 / std::sqrt(2.0), -0.5 / std::sqrt(2.0), 0.5 / std::sqrt(2.0), 1.5 / std::sqrt(2.0)});
}

TEST_CASE("gradcheck: layer_norm without weight and bias, over 1 and 2 trailing dims") {
  grad("layer_norm", [](const In& in) { return layer_norm(in[0], {4}); }, {input({3, 4}, 481)});
  grad("layer_norm", [](const In& in) { return layer_norm(in[0], {5}); }, {input({5}, 482)});
  grad("layer_norm", [](const In& in) { return layer_norm(in[0], {2, 3}); }, {input({2, 2, 3}, 483)});
  grad("layer_norm", [](const In& in) { return layer_norm(in[0], {3}); }, {input({2, 1, 3}, 484)});
  grad("layer_norm", [](const In& in) { return layer_norm(transpose(in[0], 0, 1), {3}); }, {input({3, 2}, 485)});
  grad("layer_norm",
       [](const In& in) {
         return layer_norm(permute(in[0], {1, 2, 0}), {2, 2});
       },
       {input({2, 2, 2}, 486)});
}

TEST_CASE("gradcheck: layer_norm with weight and/or bias (gradients for x, weight and bias)") {
  grad("layer_norm", [](const In& in) { return layer_norm<double>(in[0], {4}, in[1], in[2]); },
       {input({3, 4}, 491), input({4}, 492), input({4}, 493)});
  grad("layer_norm",
       [](const In& in) {
         return layer_norm<double>(in[0], {3, 4}, in[1], in[2]);
       },
       {input({2, 3, 4}, 494), input({3, 4}, 495), input({3, 4}, 496)});
  grad("layer_norm", [](const In& in) { return layer_norm<double>(in[0], {3}, in[1], std::nullopt); },
       {input({2, 2, 3}, 497), input({3}, 498)});
  grad("layer_norm", [](const In& in) { return layer_norm<double>(in[0], {3}, std::nullopt, in[1]); },
       {input({4, 3}, 499), input({3}, 500)});
  grad("layer_norm",
       [](const In& in) {
         return layer_norm<double>(permute(in[0], {1, 0, 2}), {2}, in[1], in[2]);
       },
       {input({3, 2, 2}, 501), input({2}, 502), input({2}, 503)});
  // a weight that needs no gradient still scales the input's gradient
  grad("layer_norm", [](const In& in) { return layer_norm<double>(in[0], {4}, in[1], in[2]); },
       {input({2, 4}, 504), input({4}, 505).detach(), input({4}, 506)});
}

// ---- cross_entropy, mse_loss --------------------------------------------------------------

TEST_CASE("forward: cross_entropy of a known 2x3 (class indices and soft targets) and its gradients") {
  const auto& s = kSoftmax123;
  const auto& l = kLogSoftmax123;
  // rows {1,2,3} and {1,1,1}, targets 2 and 0: (-log s_2 + log 3) / 2
  D logits = make({2, 3}, {1, 2, 3, 1, 1, 1}, true);
  D loss = cross_entropy(logits, Targets{2, 0});
  REQUIRE(loss.shape() == Shape{});
  CHECK(loss.item() == doctest::Approx(0.753109126556245).epsilon(1e-12));
  loss.backward();
  const double t = 1.0 / 3;
  check_array(logits.grad(), {2, 3}, {s[0] / 2, s[1] / 2, (s[2] - 1) / 2, (t - 1) / 2, t / 2, t / 2});
  // soft targets: row 0 {0.2,0.3,0.5}, row 1 one-hot on class 0
  D logits2 = make({2, 3}, {1, 2, 3, 1, 1, 1}, true);
  D target = make({2, 3}, {0.2, 0.3, 0.5, 1, 0, 0}, true);
  D soft = cross_entropy(logits2, target);
  CHECK(soft.item() == doctest::Approx(1.103109126556245).epsilon(1e-12));
  soft.backward();
  check_array(logits2.grad(), {2, 3},
              {(s[0] - 0.2) / 2, (s[1] - 0.3) / 2, (s[2] - 0.5) / 2, (t - 1) / 2, t / 2, t / 2});
  const double l3 = std::log(3.0) / 2;
  check_array(target.grad(), {2, 3}, {-l[0] / 2, -l[1] / 2, -l[2] / 2, l3, l3, l3});
  // a one-hot soft target equals the class-index loss
  CHECK(cross_entropy(make({2, 3}, {1, 2, 3, 1, 1, 1}), make({2, 3}, {0, 0, 1, 1, 0, 0})).item() ==
        doctest::Approx(0.753109126556245).epsilon(1e-12));
}

TEST_CASE("gradcheck: cross_entropy with class indices") {
  grad("cross_entropy", [](const In& in) { return cross_entropy(in[0], Targets{0, 3, 1}); }, {input({3, 4}, 511)});
  grad("cross_entropy", [](const In& in) { return cross_entropy(in[0], Targets{4}); }, {input({1, 5}, 512)});
  grad("cross_entropy", [](const In& in) { return cross_entropy(in[0], Targets{1, 1, 0, 1}); }, {input({4, 2}, 513)});
  grad("cross_entropy",
       [](const In& in) {
         return cross_entropy(transpose(in[0], 0, 1), Targets{2, 0});
       },
       {input({3, 2}, 514)});
  // the loss scaled afterwards: the upstream gradient must be used
  grad("cross_entropy",
       [](const In& in) {
         return mul(cross_entropy(in[0], Targets{1, 2}), 3.5);
       },
       {input({2, 3}, 515)});
}

TEST_CASE("gradcheck: cross_entropy with soft targets, gradient w.r.t. both logits and target") {
  const Fn f = [](const In& in) { return cross_entropy(in[0], in[1]); };
  grad("cross_entropy", f, {input({3, 4}, 521), input_uniform({3, 4}, 0.0, 1.0, 522)});
  grad("cross_entropy", f, {input({1, 3}, 523), input_uniform({1, 3}, 0.0, 1.0, 524)});
  grad("cross_entropy", f, {input({2, 3}, 525), input_uniform({2, 3}, 0.0, 1.0, 526).detach()});
  grad("cross_entropy", f, {input({2, 3}, 527).detach(), input_uniform({2, 3}, 0.0, 1.0, 528)});
  grad("cross_entropy", [](const In& in) { return mul(cross_entropy(transpose(in[0], 0, 1), softmax(in[1])), -2.0); },
       {input({4, 2}, 529), input({2, 4}, 530)});
}

TEST_CASE("mse_loss: forward value, gradcheck w.r.t. input and target") {
  D a = make({3}, {1, 2, 3}, true);
  D b = make({3}, {1, 4, 0}, true);
  D loss = mse_loss(a, b);
  REQUIRE(loss.shape() == Shape{});
  CHECK(loss.item() == doctest::Approx(13.0 / 3).epsilon(1e-12));
  loss.backward();
  check_array(a.grad(), {3}, {0, -4.0 / 3, 2.0});
  check_array(b.grad(), {3}, {0, 4.0 / 3, -2.0});
  const Fn f = [](const In& in) { return mse_loss(in[0], in[1]); };
  grad("mse_loss", f, {input({2, 3}, 531), input({2, 3}, 532)});
  grad("mse_loss", f, {input({4}, 533), input({4}, 534).detach()});
  grad("mse_loss", [](const In& in) { return mse_loss(transpose(in[0], 0, 1), in[1]); },
       {input({3, 2}, 535), input({2, 3}, 536)});
  grad("mse_loss", [](const In& in) { return mul(mse_loss(in[0], in[0] * 0.5), 2.0); }, {input({2, 2}, 537)});
}

// ---- dropout ------------------------------------------------------------------------------

TEST_CASE("dropout: eval mode and p = 0 are the identity, same seed, same mask, p = 1 zeroes all") {
  D x = input({4, 5}, 541);
  Generator gen(1);
  const D eval = dropout(x, 0.5, false, gen);
  CHECK(eval.data() == x.data());
  const D none = dropout(x, 0.0, true, gen);
  CHECK(none.data() == x.data());
  sum(mul(add(eval, none), 1.0)).backward();
  check_array(x.grad(), {4, 5}, std::vector<double>(20, 2.0));
  // eval mode draws nothing from the generator
  Generator fresh(1);
  CHECK(gen.next_u64() == fresh.next_u64());

  Generator g1(7), g2(7), g3(8);
  const D a = dropout(x, 0.5, true, g1);
  const D b = dropout(x, 0.5, true, g2);
  const D c = dropout(x, 0.5, true, g3);
  CHECK(a.data() == b.data());
  CHECK(a.data() != c.data());
  // a fresh mask on the next call
  CHECK(dropout(x, 0.5, true, g1).data() != a.data());

  Generator g4(9);
  D y = input({3, 3}, 542);
  const D all = dropout(y, 1.0, true, g4);
  check_values(all, {3, 3}, std::vector<double>(9, 0.0));
  sum(all).backward();
  check_array(y.grad(), {3, 3}, std::vector<double>(9, 0.0));
}

TEST_CASE("dropout: fraction of zeros near p over a large tensor, kept values scaled by 1/(1-p)") {
  for (const double p : {0.1, 0.3, 0.5}) {
    CAPTURE(p);
    Tensor<float> x = ones<float>({200, 500}, true);
    Generator gen(2024);
    const Tensor<float> y = dropout(x, p, true, gen);
    const float kept = float(1.0 / (1.0 - p));
    std::size_t zeros = 0, scaled = 0;
    for (float v : y.data()) {
      if (v == 0.0f)
        ++zeros;
      else if (v == doctest::Approx(kept).epsilon(1e-6))
        ++scaled;
    }
    CHECK(zeros + scaled == y.numel());  // nothing else
    CHECK(std::abs(double(zeros) / double(y.numel()) - p) < 0.01);
    // the gradient is the same mask and scale: y = x * m, dy/dx = m
    sum(y).backward();
    CHECK(x.grad() == y.data());
    // mean is preserved in expectation
    CHECK(std::abs(double(xt::mean(y.data())()) - 1.0) < 0.02);
  }
}

TEST_CASE("gradcheck: dropout with the generator re-seeded inside fn") {
  const auto f = [](double p) {
    return [p](const In& in) {
      Generator gen(42);
      return dropout(in[0], p, true, gen);
    };
  };
  // the mask used has both dropped and kept elements
  Generator gen(42);
  const D probe = dropout(ones<double>({3, 4}), 0.4, true, gen);
  const auto n_zero = std::count(probe.data().begin(), probe.data().end(), 0.0);
  CHECK(n_zero > 0);
  CHECK(n_zero < 12);
  grad("dropout", f(0.4), {input({3, 4}, 551)});
  grad("dropout", f(0.2), {input({2, 3, 2}, 552)});
  grad("dropout",
       [](const In& in) {
         Generator g(43);
         return dropout(permute(in[0], {1, 0}), 0.5, true, g);
       },
       {input({3, 2}, 553)});
  check_throws_with(
      [] {
        Generator g(1);
        dropout(ones<double>({2}), 1.5, true, g);
      },
      {"dropout: probability must be in [0, 1], got 1.5"});
  check_throws_with(
      [] {
        Generator g(1);
        dropout(ones<double>({2}), -0.1, false, g);
      },
      {"dropout", "-0.1"});
}

// ---- masked_fill, where ---------------------------------------------------------------------

TEST_CASE("forward: masked_fill with a full mask, a broadcast mask and -inf, masked gradient is 0") {
  D x = iota({2, 3}, true);
  check_values(xtgrad::masked_fill(x, make_mask({2, 3}, {1, 0, 0, 0, 1, 1}), 9.0), {2, 3}, {9, 2, 3, 4, 9, 9});
  check_values(xtgrad::masked_fill(x, make_mask({3}, {1, 0, 1}), -1.0), {2, 3}, {-1, 2, -1, -1, 5, -1});
  const D f = xtgrad::masked_fill(x, make_mask({2, 1}, {1, 0}), -kInf);
  check_values(f, {2, 3}, {-kInf, -kInf, -kInf, 4, 5, 6});
  check_values(xtgrad::masked_fill(x, make_mask({}, {1}), 0.5), {2, 3}, std::vector<double>(6, 0.5));
  check_values(xtgrad::masked_fill(x, make_mask({1, 3}, {0, 0, 0}), 0.5), {2, 3}, {1, 2, 3, 4, 5, 6});
  sum(mul(xtgrad::masked_fill(x, make_mask({3}, {0, 1, 0}), -5.0), make({2, 3}, {1, 0, 2, 3, 0, 4}))).backward();
  check_array(x.grad(), {2, 3}, {1, 0, 2, 3, 0, 4});
  // float
  const Tensor<float> xf = iota<float>({2, 2});
  check_values(xtgrad::masked_fill(xf, make_mask({2}, {0, 1}), -std::numeric_limits<float>::infinity()), {2, 2},
               {1, -kInf, 3, -kInf});
}

TEST_CASE("gradcheck: masked_fill with full, broadcast and 0-d masks") {
  grad("masked_fill",
       [](const In& in) {
         return xtgrad::masked_fill(in[0], make_mask({2, 3}, {1, 0, 1, 0, 0, 1}), 2.0);
       },
       {input({2, 3}, 561)});
  grad("masked_fill",
       [](const In& in) {
         return xtgrad::masked_fill(in[0], make_mask({4, 1}, {1, 0, 0, 1}), -1.0);
       },
       {input({2, 4, 3}, 562)});
  grad("masked_fill",
       [](const In& in) {
         return xtgrad::masked_fill(in[0], make_mask({3}, {0, 1, 0}), 0.0);
       },
       {input({2, 3}, 563)});
  grad("masked_fill",
       [](const In& in) {
         return xtgrad::masked_fill(transpose(in[0], 0, 1), make_mask({1, 2}, {0, 1}), 5.0);
       },
       {input({2, 3}, 564)});
  // causal attention mask: -inf above the diagonal, then softmax
  grad("masked_fill",
       [](const In& in) {
         return softmax(xtgrad::masked_fill(in[0], make_mask({3, 3}, {0, 1, 1, 0, 0, 1, 0, 0, 0}), -kInf), -1);
       },
       {input({2, 3, 3}, 565)});
}

TEST_CASE("forward: where with broadcasting mask, a and b, gradients summed to each shape") {
  D a = make({3}, {1, 2, 3}, true);
  D b = make({2, 3}, {10, 20, 30, 40, 50, 60}, true);
  const D y = xtgrad::where(make_mask({2, 1}, {1, 0}), a, b);
  check_values(y, {2, 3}, {1, 2, 3, 40, 50, 60});
  sum(mul(y, iota({2, 3}))).backward();
  check_array(a.grad(), {3}, {1, 2, 3});
  check_array(b.grad(), {2, 3}, {0, 0, 0, 4, 5, 6});
  // the mask is the largest: a (1) and b (2) spread over (2,2)
  check_values(xtgrad::where(make_mask({2, 2}, {1, 0, 0, 1}), make({1}, {7}), make({2}, {-1, -2})), {2, 2},
               {7, -2, -1, 7});
  D c = make({1}, {7}, true);
  D d = make({2}, {-1, -2}, true);
  sum(xtgrad::where(make_mask({2, 2}, {1, 0, 1, 1}), c, d)).backward();
  check_array(c.grad(), {1}, {3});
  check_array(d.grad(), {2}, {0, 1});
}

TEST_CASE("gradcheck: where with broadcasting mask/a/b") {
  grad("where",
       [](const In& in) {
         return xtgrad::where(make_mask({2, 3}, {1, 0, 1, 0, 0, 1}), in[0], in[1]);
       },
       {input({2, 3}, 571), input({2, 3}, 572)});
  grad("where",
       [](const In& in) {
         return xtgrad::where(make_mask({2, 1, 3}, {1, 0, 1, 0, 1, 1}), in[0], in[1]);
       },
       {input({4, 3}, 573), input({2, 4, 1}, 574)});
  grad("where",
       [](const In& in) {
         return xtgrad::where(make_mask({2, 3}, {0, 1, 1, 0, 0, 1}), in[0], in[1]);
       },
       {input({3}, 575), input({1}, 576)});
  grad("where",
       [](const In& in) {
         return xtgrad::where(make_mask({3}, {1, 0, 1}), permute(in[0], {1, 0}), in[1]);
       },
       {input({3, 2}, 577), input({2, 1}, 578)});
  grad("where",
       [](const In& in) {
         return xtgrad::where(make_mask({2, 2}, {1, 0, 0, 1}), in[0], in[0]);
       },
       {input({2, 2}, 579)});
}

// ---- errors -------------------------------------------------------------------------------

TEST_CASE("errors: nn functions name the op and the shapes") {
  const D x = iota({2, 3});
  check_throws_with([&] { softmax(x, 2); }, {"softmax: axis 2 out of range for 2 dimensions"});
  check_throws_with([&] { log_softmax(x, -3); }, {"log_softmax: axis -3 out of range for 2 dimensions"});
  check_throws_with([&] { softmax(make({}, {1})); }, {"softmax", "scalar"});

  const D y = iota({2, 4});
  check_throws_with([&] { layer_norm(y, {5}); },
                    {"layer_norm: normalized shape (5) does not match the trailing dimensions of input (2,4)"});
  check_throws_with([&] { layer_norm(y, {3, 4}); }, {"layer_norm", "(3,4)", "(2,4)"});
  check_throws_with([&] { layer_norm(y, {1, 2, 4}); }, {"layer_norm", "(1,2,4)", "(2,4)"});
  check_throws_with([&] { layer_norm(y, {}); }, {"layer_norm", "()", "(2,4)"});
  check_throws_with([&] { layer_norm<double>(y, {4}, iota({3}), std::nullopt); },
                    {"layer_norm: weight has shape (3), expected (4)"});
  check_throws_with(
      [&] {
        layer_norm<double>(y, {4}, std::nullopt, iota({4, 1}));
      },
      {"layer_norm: bias has shape (4,1), expected (4)"});

  check_throws_with(
      [&] {
        cross_entropy(x, Targets{0, 3});
      },
      {"cross_entropy: target class 3 out of range for 3 classes"});
  check_throws_with([&] { cross_entropy(x, Targets{0, 1, 2}); }, {"cross_entropy", "(2,3)", "3 targets"});
  check_throws_with([&] { cross_entropy(iota({6}), Targets{0}); },
                    {"cross_entropy: logits must be (N,C) or (N,C,d...), got (6)"});
  check_throws_with([&] { cross_entropy(iota({2, 3, 1}), iota({2, 3, 1})); }, {"cross_entropy", "(2,3,1)"});
  check_throws_with(
      [&] {
        cross_entropy(x, iota({3, 2}));
      },
      {"cross_entropy: logits (2,3) and target probabilities (3,2) differ in shape"});

  check_throws_with([&] { mse_loss(x, iota({3, 2})); }, {"mse_loss: input (2,3) and target (3,2) differ in shape"});
  check_throws_with([&] { mse_loss(x, iota({3})); }, {"mse_loss", "(2,3)", "(3)"});

  check_throws_with(
      [&] {
        xtgrad::masked_fill(x, make_mask({2}, {1, 0}), 0.0);
      },
      {"masked_fill: shapes cannot be broadcast together: (2,3) and (2)"});
  check_throws_with(
      [&] {
        xtgrad::masked_fill(x, make_mask({2, 2, 3}, std::vector<int>(12, 1)), 0.0);
      },
      {"masked_fill: mask (2,2,3) does not broadcast to input (2,3)"});
  check_throws_with(
      [&] {
        xtgrad::where(make_mask({2, 3}, std::vector<int>(6, 1)), iota({4}), iota({3}));
      },
      {"where: shapes cannot be broadcast together: (2,3) and (4)"});
  check_throws_with(
      [&] {
        xtgrad::where(make_mask({2, 3}, std::vector<int>(6, 1)), iota({3}), iota({2, 2}));
      },
      {"where: shapes cannot be broadcast together: (2,3) and (2,2)"});
}
