// The custom layer's tests: what every layer of yours should have.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "gated_cross_attention.hpp"
#include "xtgrad/gradcheck.hpp"

using namespace xtgrad;

TEST_CASE("gated cross-attention starts as the identity") {
  Generator gen(0);
  GatedCrossAttention<float> block(8, 6, 2, gen);
  const auto x = randn<float>({2, 3, 8}, gen), image = randn<float>({2, 5, 6}, gen);
  CHECK(block.forward(x, image).data() == x.data());
  // Own parameters first, then each submodule's, as in PyTorch.
  CHECK(block.named_parameters()[0].first == "gate");
  CHECK(block.named_parameters()[1].first == "norm.weight");
  CHECK(block.named_parameters()[3].first == "attn.q_proj.weight");
}

TEST_CASE("gated cross-attention: gradient check in double, every parameter and input") {
  Generator gen(1);
  GatedCrossAttention<double> block(4, 3, 2, gen);
  block.gate.mutable_data().fill(0.7);  // an open gate, so every parameter matters
  const auto x = randn<double>({2, 3, 4}, gen, 0.0, 1.0, /*requires_grad=*/true);
  const auto image = randn<double>({2, 5, 3}, gen, 0.0, 1.0, /*requires_grad=*/true);
  std::vector<Tensor<double>> wrt = block.parameters();
  wrt.push_back(x);
  wrt.push_back(image);
  const GradcheckResult result = gradcheck_params([&] { return block.forward(x, image); }, wrt);
  CHECK_MESSAGE(result.ok, result.message);
  CHECK(result.max_abs_error < 1e-7);
}
