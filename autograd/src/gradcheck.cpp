// gradcheck: analytical gradients (the engine's backward) against central differences.
#include "xtgrad/gradcheck.hpp"

#include <cmath>
#include <optional>
#include <sstream>

#include "xtgrad/random.hpp"

namespace xtgrad {
namespace {

using Arr = Array<double>;

std::string element_str(std::size_t flat, const Shape& shape) {
  std::vector<std::size_t> idx(shape.size());
  std::size_t rest = flat;
  for (std::size_t d = shape.size(); d-- > 0;) {
    idx[d] = rest % shape[d];
    rest /= shape[d];
  }
  std::ostringstream out;
  out << '(';
  for (std::size_t d = 0; d < idx.size(); ++d) out << (d ? "," : "") << idx[d];
  out << ") [flat " << flat << ']';
  return out.str();
}

struct Checker {
  const GradcheckOptions& options;
  GradcheckResult result;

  // Compares one pair; records the first failure, described by where().
  template <class Where>
  void compare(double analytical, double numerical, Where where) {
    const double err = std::abs(analytical - numerical);
    ++result.checked;
    result.max_abs_error = std::isnan(err) ? INFINITY : std::max(err, result.max_abs_error);
    if (result.ok && !(err <= options.atol + options.rtol * std::abs(numerical))) {
      std::ostringstream msg;
      msg.precision(10);
      msg << where() << ": numerical " << numerical << ", analytical " << analytical;
      result.ok = false;
      result.message = msg.str();
    }
  }
};

// fn evaluated without recording a graph.
Arr evaluate(const std::function<Tensor<double>()>& fn) {
  NoGradGuard no_grad;
  return fn().data();
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor<double>>& inputs,
                          const GradcheckOptions& options) {
  // Private leaf copies: the caller's tensors keep their values and gradients.
  std::vector<Tensor<double>> leaves;
  for (const auto& t : inputs) leaves.emplace_back(Arr(t.data()), t.requires_grad());
  return gradcheck_params([&] { return fn(leaves); }, leaves, options);
}

GradcheckResult gradcheck_params(const std::function<Tensor<double>()>& fn,
                                 const std::vector<Tensor<double>>& tensors, const GradcheckOptions& options) {
  std::vector<Tensor<double>> leaves = tensors;  // handles: the same nodes
  // Values are perturbed and gradients used as scratch below; put both back as they were
  // when this returns, also when fn throws.
  struct Restore {
    std::vector<Tensor<double>>& leaves;
    std::vector<Arr> values;
    std::vector<std::optional<Arr>> grads;
    ~Restore() {
      for (std::size_t j = 0; j < leaves.size(); ++j) {
        leaves[j].mutable_data() = std::move(values[j]);
        if (grads[j]) leaves[j].set_grad(std::move(*grads[j]));
        else leaves[j].reset_grad();
      }
    }
  } restore{leaves, {}, {}};
  for (const auto& t : leaves) {
    restore.values.push_back(t.data());
    restore.grads.push_back(t.has_grad() ? std::optional<Arr>(t.grad()) : std::nullopt);
  }
  Checker check{options, {}};

  // Analytical side. Full mode: row i of each input's Jacobian is that input's gradient
  // after a backward with a one-hot output gradient. Fast mode: one backward with v.
  Tensor<double> out = fn();
  const Shape out_shape = out.shape();
  const std::size_t n_out = out.numel();
  bool any_input = false;
  for (const auto& t : leaves) any_input = any_input || t.requires_grad();
  if (!any_input) {
    check.result.ok = false;
    check.result.message = "gradcheck: no input requires a gradient, so there is nothing to check";
    return check.result;
  }
  if (!out.requires_grad()) {
    check.result.ok = false;
    check.result.message = "gradcheck: the output does not depend on any input that requires grad";
    return check.result;
  }
  Generator gen(options.seed);
  const Arr v = options.fast_mode ? randn<double>(out_shape, gen).data() : Arr();
  std::vector<Arr> analytical(leaves.size());  // full: (n_out, n_in); fast: grad . v
  for (std::size_t j = 0; j < leaves.size(); ++j)
    if (leaves[j].requires_grad())
      analytical[j] = options.fast_mode ? Arr(xt::zeros<double>(leaves[j].shape()))
                                        : Arr(xt::zeros<double>({n_out, leaves[j].numel()}));
  const std::size_t passes = options.fast_mode ? 1 : n_out;
  for (std::size_t i = 0; i < passes; ++i) {
    for (auto& t : leaves) t.zero_grad();
    Arr seed = options.fast_mode ? v : Arr(xt::zeros<double>(out_shape));
    if (!options.fast_mode) seed.data()[i] = 1.0;
    out.backward(seed, /*retain_graph=*/true);
    for (std::size_t j = 0; j < leaves.size(); ++j)
      if (leaves[j].requires_grad() && leaves[j].has_grad())
        std::copy(leaves[j].grad().begin(), leaves[j].grad().end(),
                  analytical[j].data() + (options.fast_mode ? 0 : i * leaves[j].numel()));
  }
  out = Tensor<double>();  // drop the graph before the inputs are perturbed in place

  // Numerical side, central differences.
  for (std::size_t j = 0; j < leaves.size(); ++j) {
    if (!leaves[j].requires_grad()) continue;
    Arr& x = leaves[j].mutable_data();
    const std::size_t n_in = x.size();
    const std::string input = "with respect to input " + std::to_string(j);
    if (options.fast_mode) {
      // v^T J u against (v^T J) u for a random direction u
      const Arr u = randn<double>(leaves[j].shape(), gen).data();
      const Arr x0 = x;
      x = x0 + options.eps * u;
      const Arr plus = evaluate(fn);
      x = x0 - options.eps * u;
      const Arr minus = evaluate(fn);
      x = x0;
      double numerical = 0, projected = 0;
      for (std::size_t i = 0; i < n_out; ++i)
        numerical += v.data()[i] * (plus.data()[i] - minus.data()[i]) / (2 * options.eps);
      for (std::size_t k = 0; k < n_in; ++k) projected += analytical[j].data()[k] * u.data()[k];
      check.compare(projected, numerical, [&] { return "Jacobian projection v^T J u mismatch " + input; });
      continue;
    }
    for (std::size_t k = 0; k < n_in; ++k) {
      const double saved = x.data()[k];
      x.data()[k] = saved + options.eps;
      const Arr plus = evaluate(fn);
      x.data()[k] = saved - options.eps;
      const Arr minus = evaluate(fn);
      x.data()[k] = saved;
      for (std::size_t i = 0; i < n_out; ++i) {
        const double numerical = (plus.data()[i] - minus.data()[i]) / (2 * options.eps);
        check.compare(analytical[j].data()[i * n_in + k], numerical, [&] {
          return "Jacobian mismatch for output element " + element_str(i, out_shape) + " " + input +
                 ", element " + element_str(k, leaves[j].shape());
        });
      }
    }
  }
  return check.result;
}

}  // namespace xtgrad
