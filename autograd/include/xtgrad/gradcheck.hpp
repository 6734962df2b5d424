// gradcheck: compares the engine's gradients with central finite differences, in double
// precision, as torch.autograd.gradcheck does. Call it on your own ops and layers:
//
//   auto result = xtgrad::gradcheck(
//       [](const std::vector<Tensor<double>>& in) { return my_layer(in[0], in[1]); },
//       {x, y});
//   CHECK_MESSAGE(result.ok, result.message);
//
// Only the inputs that require a gradient are checked. fn must be deterministic (for
// dropout, reseed the generator inside fn).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xtgrad/tensor.hpp"

namespace xtgrad {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  // Full Jacobian (one backward per output element with a one-hot gradient), or, in fast
  // mode, per input j the projection v^T J_j u with random u, v: two evaluations and one
  // backward per input, for inputs too large for the full Jacobian.
  bool fast_mode = false;
  std::uint64_t seed = 0;  // for fast mode's random u and v

  GradcheckOptions& set_eps(double v) {
    eps = v;
    return *this;
  }
  GradcheckOptions& set_atol(double v) {
    atol = v;
    return *this;
  }
  GradcheckOptions& set_rtol(double v) {
    rtol = v;
    return *this;
  }
  GradcheckOptions& set_fast_mode(bool v) {
    fast_mode = v;
    return *this;
  }
  GradcheckOptions& set_seed(std::uint64_t v) {
    seed = v;
    return *this;
  }
};

struct GradcheckResult {
  bool ok = true;
  std::string message;         // on failure: the output, the input, the element, both values
  double max_abs_error = 0.0;  // largest |analytical - numerical| seen
  std::size_t checked = 0;     // Jacobian entries (or projections) compared
};

using GradcheckFn = std::function<Tensor<double>(const std::vector<Tensor<double>>&)>;

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor<double>>& inputs,
                          const GradcheckOptions& options = {});

// The same check for tensors that fn reads directly rather than as arguments, such as a
// layer's parameters (module.parameters()) and the inputs it is applied to:
//
//   std::vector<Tensor<double>> wrt = layer.parameters();
//   wrt.push_back(x);
//   auto result = xtgrad::gradcheck_params([&] { return layer.forward(x); }, wrt);
//
// They are perturbed in place and restored, with their gradients, before it returns.
GradcheckResult gradcheck_params(const std::function<Tensor<double>()>& fn, const std::vector<Tensor<double>>& tensors,
                                 const GradcheckOptions& options = {});

}  // namespace xtgrad
