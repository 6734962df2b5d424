// add_layer_norm(x, residual) against layer_norm(x + residual): the same bits forward and
// backward in float (the residual the same shape as x, broadcast over leading axes, or
// with fewer axes), gradients against central differences in double, LayerNorm's
// two-argument forward, and the shape errors.
#include "helpers.hpp"
#include "xtgrad/nn.hpp"

#include <cstring>

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

using F = Tensor<float>;

bool same_bits(const Array<float>& a, const Array<float>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// x, residual, weight, bias as fresh leaves, so that the two graphs' gradients stay apart
struct Leaves {
  F x, residual, weight, bias;
  Leaves(const Shape& xs, const Shape& rs, std::size_t d, std::uint64_t seed)
      : x(input<float>(xs, seed)), residual(input<float>(rs, seed + 1)), weight(input<float>({d}, seed + 2)),
        bias(input<float>({d}, seed + 3)) {}
};

// Both ways on the same values, with an upstream gradient that is not all ones.
void check_same_bits(const Shape& xs, const Shape& rs, std::size_t d, std::uint64_t seed) {
  CAPTURE(shape_str(xs));
  CAPTURE(shape_str(rs));
  Leaves fused(xs, rs, d, seed), apart(xs, rs, d, seed);
  const F upstream = input<float>(xs, seed + 4).detach();
  const F y = add_layer_norm<float>(fused.x, fused.residual, {d}, fused.weight, fused.bias);
  const F expected = layer_norm<float>(apart.x + apart.residual, {d}, apart.weight, apart.bias);
  CHECK(same_bits(y.data(), expected.data()));
  sum(y * upstream).backward();
  sum(expected * upstream).backward();
  CHECK(same_bits(fused.x.grad(), apart.x.grad()));
  CHECK(same_bits(fused.residual.grad(), apart.residual.grad()));
  CHECK(same_bits(fused.weight.grad(), apart.weight.grad()));
  CHECK(same_bits(fused.bias.grad(), apart.bias.grad()));
}

}  // namespace

TEST_CASE("add_layer_norm gives layer_norm(x + residual)'s bits, forward and backward") {
  check_same_bits({3, 5, 16}, {3, 5, 16}, 16, 10);      // the same shape (a post-norm residual block)
  check_same_bits({4, 6, 3, 16}, {4, 1, 3, 16}, 16, 20);  // the toy task's (Bq,Bk,4,d) + (Bq,1,4,d)
  check_same_bits({2, 3, 7, 24}, {7, 24}, 24, 30);      // fewer axes: broadcast over the first two
  check_same_bits({200, 2, 8}, {1, 2, 8}, 8, 40);      // more than one chunk of rows
  check_same_bits({5, 12}, {1, 12}, 12, 50);            // a width that is not a multiple of eight
}

TEST_CASE("add_layer_norm: the same tensor as x and residual gets both gradients") {
  const F x = input<float>({3, 8}, 60), twin = input<float>({3, 8}, 60);
  const F y = add_layer_norm<float>(x, x, {8});
  const F expected = layer_norm<float>(twin + twin, {8});
  CHECK(same_bits(y.data(), expected.data()));
  const F upstream = input<float>({3, 8}, 61).detach();
  sum(y * upstream).backward();
  sum(expected * upstream).backward();
  CHECK(same_bits(x.grad(), twin.grad()));
}

TEST_CASE("gradcheck: add_layer_norm with a broadcast residual, weight and bias") {
  grad("add_layer_norm", [](const In& in) { return add_layer_norm<double>(in[0], in[1], {4}, in[2], in[3]); },
       {input({2, 3, 4}, 71), input({2, 1, 4}, 72), input({4}, 73), input({4}, 74)});
  grad("add_layer_norm", [](const In& in) { return add_layer_norm<double>(in[0], in[1], {2, 3}); },
       {input({2, 2, 3}, 75), input({2, 3}, 76)});
  grad("add_layer_norm", [](const In& in) { return add_layer_norm<double>(in[0], in[1], {3}, std::nullopt, in[2]); },
       {input({3, 3}, 77), input({3, 3}, 78), input({3}, 79)});
  // a residual that needs no gradient still passes its values on
  grad("add_layer_norm", [](const In& in) { return add_layer_norm<double>(in[0], in[1], {4}, in[2]); },
       {input({2, 4}, 80), input({1, 4}, 81).detach(), input({4}, 82)});
}

TEST_CASE("LayerNorm::forward(x, residual) is forward(x + residual)") {
  LayerNorm<float> norm(8);
  Generator gen(90);
  norm.weight = randn<float>({8}, gen, 1.0f, 0.5f, true);
  const F x = input<float>({2, 3, 8}, 91), residual = input<float>({2, 1, 8}, 92);
  CHECK(same_bits(norm.forward(x, residual).data(), norm.forward(x + residual).data()));
}

TEST_CASE("add_layer_norm refuses a residual that does not broadcast to x over its leading axes") {
  const D x = input({2, 3, 4}, 95);
  check_throws_with([&] { add_layer_norm(x, input({3, 3, 4}, 96), {4}); },
                    {"add_layer_norm", "residual (3,3,4)", "input (2,3,4)"});
  // broadcast along the normalised axis would be a different row for each element: refused
  check_throws_with([&] { add_layer_norm(x, input({2, 3, 1}, 97), {4}); }, {"add_layer_norm", "residual (2,3,1)"});
  // x must not be the one broadcast
  check_throws_with([&] { add_layer_norm(input({1, 3, 4}, 98), input({2, 3, 4}, 99), {4}); },
                    {"add_layer_norm", "does not broadcast"});
  check_throws_with([&] { add_layer_norm(x, input({3, 4}, 100), {3}); },
                    {"add_layer_norm", "normalized shape (3)"});
  check_throws_with([&] { add_layer_norm(x, D(), {4}); }, {"add_layer_norm", "argument 2 is an undefined Tensor"});
}
