#include <doctest/doctest.h>

#include "xtgrad/xtgrad.hpp"

using namespace xtgrad;

TEST_CASE("smoke: y = sum(x * x) gives 2x") {
  Tensor<double> x({1.0, 2.0, 3.0}, true);
  auto y = sum(x * x);
  y.backward();
  CHECK(x.grad()(0) == doctest::Approx(2.0));
  CHECK(x.grad()(2) == doctest::Approx(6.0));
}
