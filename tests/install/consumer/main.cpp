// Uses the installed xtgrad: a matmul gradient (BLAS), an elementwise chain and gradcheck.
// Exits nonzero when any value is wrong.
#include <cmath>
#include <cstdio>
#include <vector>

#include <xtgrad/xtgrad.hpp>

namespace {

int failures = 0;

void expect(double actual, double expected, const char* what) {
  if (!(std::abs(actual - expected) <= 1e-12 * (1.0 + std::abs(expected)))) {
    std::printf("FAIL %s: %.17g, expected %.17g\n", what, actual, expected);
    ++failures;
  }
}

}  // namespace

int main() {
  using xtgrad::Tensor;

  // y = sum(a @ b): dy/da[i][j] = sum_k b[j][k], dy/db[j][k] = sum_i a[i][j].
  Tensor<double> a({{1.0, 2.0}, {3.0, 4.0}}, true);
  Tensor<double> b({{0.5, -1.0}, {2.0, 0.25}}, true);
  Tensor<double> y = xtgrad::sum(xtgrad::matmul(a, b));
  expect(y.item(), 0.5 - 1.0 + 4.0 + 0.5 + 1.5 - 3.0 + 8.0 + 1.0, "sum(a @ b)");
  y.backward();
  const double grad_a[2][2] = {{-0.5, 2.25}, {-0.5, 2.25}};
  const double grad_b[2][2] = {{4.0, 4.0}, {6.0, 6.0}};
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 2; ++j) {
      expect(a.grad()(i, j), grad_a[i][j], "grad a");
      expect(b.grad()(i, j), grad_b[i][j], "grad b");
    }

  // float: z = sum(x * x * 3) -> 6x
  Tensor<float> x({1.0f, -2.0f}, true);
  xtgrad::sum(x * x * 3.0f).backward();
  expect(x.grad()(0), 6.0, "grad x[0]");
  expect(x.grad()(1), -12.0, "grad x[1]");

  // gradcheck and the random generator from the library
  xtgrad::Generator gen(1);
  Tensor<double> p = xtgrad::randn<double>({3, 4}, gen, 0.0, 1.0, true);
  Tensor<double> q = xtgrad::randn<double>({4, 2}, gen, 0.0, 1.0, true);
  const auto check = xtgrad::gradcheck(
      [](const std::vector<Tensor<double>>& in) { return xtgrad::tanh(xtgrad::matmul(in[0], in[1])); }, {p, q});
  if (!check.ok || check.checked != 6 * 12 + 6 * 8) {
    std::printf("FAIL gradcheck: %s (checked %zu)\n", check.message.c_str(), check.checked);
    ++failures;
  }

  if (failures == 0) std::printf("xtgrad consumer: all gradients correct\n");
  return failures == 0 ? 0 : 1;
}
