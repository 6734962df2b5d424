// A new op, written outside the library with the same public API the built-in ops use,
// and its gradient check. softplus(x) = log(1 + e^x), softplus'(x) = sigmoid(x).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <xtensor/xmath.hpp>

#include "xtgrad/xtgrad.hpp"
using namespace xtgrad;

// x (any shape) -> same shape
template <class T> Tensor<T> softplus(const Tensor<T>& x) {
  // log1p(exp(-|x|)) + max(x, 0): no overflow for large x
  Array<T> out = xt::log1p(xt::exp(-xt::abs(x.data()))) + xt::maximum(x.data(), T(0));
  return make_result<T>("softplus", std::move(out), {x},
                        [](const std::vector<NodePtr<T>>& inputs, const Array<T>& /*out*/, const Array<T>& grad_out) {
                          const Array<T>& in = inputs[0]->data();
                          add_grad(*inputs[0], Array<T>(grad_out / (T(1) + xt::exp(-in))));
                        });
}

TEST_CASE("softplus: values and gradient check") {
  Tensor<double> x({-30.0, -1.0, 0.0, 2.0, 40.0});
  CHECK(softplus(x).data()(2) == doctest::Approx(std::log(2.0)));
  CHECK(softplus(x).data()(4) == doctest::Approx(40.0));

  Generator gen(0);
  Tensor<double> input = randn<double>({3, 4}, gen, 0.0, 2.0, /*requires_grad=*/true);
  GradcheckResult result = gradcheck([](const std::vector<Tensor<double>>& in) { return softplus(in[0]); }, {input});
  CHECK_MESSAGE(result.ok, result.message);
}
