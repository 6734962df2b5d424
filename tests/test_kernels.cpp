// The internal loops the ops share (autograd/src/kernels.hpp): the float exponential
// against std::exp in double, its special values, row softmax with masked rows, and the
// float GELU (which uses it) against the double one.
#include "helpers.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "../autograd/src/kernels.hpp"

using namespace xtgrad;

TEST_CASE("kernels: float exp within 2 ulp of exp in double over [-87, 88]") {
  std::vector<float> x;
  for (double v = -87.0; v <= 88.0; v += 0.0013) x.push_back(float(v));
  for (float v : {0.0f, -0.0f, 1e-8f, -1e-8f, 0.5f, -0.5f, 1.0f, -1.0f}) x.push_back(v);
  std::vector<float> y = x;
  kernels::exp_in_place(y.data(), y.size());  // 134,623 values: the vector loop and a tail
  double worst_ulps = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double exact = std::exp(double(x[i]));
    const double ulp = std::nextafter(float(exact), std::numeric_limits<float>::infinity()) - float(exact);
    worst_ulps = std::max(worst_ulps, std::abs(double(y[i]) - exact) / ulp);
  }
  MESSAGE("float exp: largest error ", worst_ulps, " ulp over ", x.size(), " arguments");
  CHECK(worst_ulps <= 2.0);
  CHECK(y[x.size() - 8] == 1.0f);  // exp(0) is exactly 1
}

TEST_CASE("kernels: float exp of -inf, large negative, large positive and NaN") {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {-inf, -1000.0f, -88.0f, 89.0f, 1000.0f, inf, std::nanf(""), 88.3f, -87.3f};
  kernels::exp_in_place(x.data(), x.size());
  CHECK(x[0] == 0.0f);
  CHECK(x[1] == 0.0f);
  CHECK(x[2] == 0.0f);  // subnormal in float: flushed
  CHECK(x[3] == inf);
  CHECK(x[4] == inf);
  CHECK(x[5] == inf);
  CHECK(std::isnan(x[6]));
  CHECK(x[7] == doctest::Approx(std::exp(double(88.3f))).epsilon(1e-6));
  CHECK(x[8] == doctest::Approx(std::exp(double(-87.3f))).epsilon(1e-6));
}

TEST_CASE("kernels: softmax_rows: rows sum to 1, -inf entries get 0, an all -inf row gives zeros") {
  const float inf = std::numeric_limits<float>::infinity();
  // 3 rows of 5: plain, one masked entry, all masked
  std::vector<float> x = {1, 2, 3, 4, 5, 0, -inf, 0, 0, 1000, -inf, -inf, -inf, -inf, -inf};
  kernels::softmax_rows(x.data(), 3, 5);
  double total = 0, expected_total = 0;
  for (int j = 0; j < 5; ++j) total += x[j], expected_total += std::exp(double(j) - 4.0);
  CHECK(total == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(x[4] == doctest::Approx(1.0 / expected_total).epsilon(1e-6));
  CHECK(x[6] == 0.0f);
  CHECK(x[9] == 1.0f);  // exp(0 - 1000) = 0 for the others
  for (int j = 10; j < 15; ++j) CHECK(x[j] == 0.0f);
}

TEST_CASE("kernels: sum_of adds in a fixed order and exactly for integers") {
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 64u, 1001u}) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = double(i + 1);
    CHECK(kernels::sum_of<double>(n, [&](std::size_t i) { return v[i]; }) == double(n * (n + 1) / 2));
  }
}

TEST_CASE("kernels: float gelu and its gradient match the double ones to float precision") {
  Array<double> xd = xt::linspace<double>(-9.0, 9.0, 2001);
  Array<float> xf = xt::cast<float>(xd);
  Tensor<double> td(Array<double>(xt::cast<double>(xf)), true);  // the same arguments in double
  Tensor<float> tf(xf, true);
  sum(gelu(td)).backward();
  const Tensor<float> yf = gelu(tf);
  sum(yf).backward();
  const Tensor<double> yd = gelu(Tensor<double>(td.data()));
  double worst_value = 0, worst_grad = 0;
  for (std::size_t i = 0; i < xf.size(); ++i) {
    worst_value = std::max(worst_value, std::abs(double(yf.data()(i)) - yd.data()(i)) / std::max(1.0, std::abs(yd.data()(i))));
    worst_grad = std::max(worst_grad, std::abs(double(tf.grad()(i)) - td.grad()(i)));
  }
  MESSAGE("float gelu vs double: value ", worst_value, " relative (absolute below 1), gradient ", worst_grad, " absolute");
  CHECK(worst_value < 1e-6);
  CHECK(worst_grad < 1e-6);
}
