// Fits y = x w + b by gradient descent with the engine alone (no layers, no optimizer).
#include <cstdio>

#include "xtgrad/xtgrad.hpp"
using namespace xtgrad;

int main() {
  Generator gen(0);
  Tensor<float> x = randn<float>({64, 3}, gen);                          // x (64,3)
  Tensor<float> y = matmul(x, Tensor<float>({2.f, -1.f, 0.5f})) + 0.5f;  // y (64)
  Tensor<float> w = zeros<float>({3}, /*requires_grad=*/true);
  Tensor<float> b = zeros<float>({1}, /*requires_grad=*/true);
  float loss_value = 0;
  for (int step = 0; step < 300; ++step) {
    Tensor<float> loss = mse_loss(matmul(x, w) + b, y);  // (64,3) x (3) -> (64)
    w.zero_grad();
    b.zero_grad();
    loss.backward();      // fills w.grad(), b.grad()
    NoGradGuard no_grad;  // updates record no graph
    w.mutable_data() -= 0.1f * w.grad();
    b.mutable_data() -= 0.1f * b.grad();
    loss_value = loss.item();
    if (step % 100 == 0) std::printf("step %3d  loss %.6f\n", step, loss_value);
  }
  std::printf("final loss %.2e, w = (%.3f, %.3f, %.3f), b = %.3f\n", loss_value, w.data()(0), w.data()(1), w.data()(2),
              b.data()(0));
  return loss_value < 1e-6f ? 0 : 1;  // a test runs this: it must converge
}
