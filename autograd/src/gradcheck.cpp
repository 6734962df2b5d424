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
  template <class Where> void compare(double analytical, double numerical, Where where) {
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

// Values are perturbed and gradients used as scratch by gradcheck_params; this puts both
// back as they were when it returns, also when fn throws.
struct Restore {
  std::vector<Tensor<double>>& leaves;
  std::vector<Arr> values;
  std::vector<std::optional<Arr>> grads;

  explicit Restore(std::vector<Tensor<double>>& tensors) : leaves(tensors) {
    for (const auto& t : leaves) {
      values.push_back(t.data());
      grads.push_back(t.has_grad() ? std::optional<Arr>(t.grad()) : std::nullopt);
    }
  }
  Restore(const Restore&) = delete;
  Restore& operator=(const Restore&) = delete;
  ~Restore() {
    for (std::size_t j = 0; j < leaves.size(); ++j) {
      leaves[j].mutable_data() = std::move(values[j]);
      if (grads[j])
        leaves[j].set_grad(std::move(*grads[j]));
      else
        leaves[j].reset_grad();
    }
  }
};

// Why there is nothing to compare (no input requires a gradient, or out depends on none), or nullptr.
const char* nothing_to_check(const std::vector<Tensor<double>>& leaves, const Tensor<double>& out) {
  bool any_input = false;
  for (const auto& t : leaves) any_input = any_input || t.requires_grad();
  if (!any_input) return "gradcheck: no input requires a gradient, so there is nothing to check";
  if (!out.requires_grad()) return "gradcheck: the output does not depend on any input that requires grad";
  return nullptr;
}

// The analytical side, per input (empty for one that requires no gradient). Full mode:
// row i of each input's Jacobian is that input's gradient after a backward with a one-hot
// output gradient, so (n_out, n_in). Fast mode: one backward with v, so grad . v.
std::vector<Arr> analytical_side(Tensor<double>& out, std::vector<Tensor<double>>& leaves, const Arr& v,
                                 bool fast_mode) {
  const Shape out_shape = out.shape();
  const std::size_t n_out = out.numel();
  std::vector<Arr> analytical(leaves.size());
  for (std::size_t j = 0; j < leaves.size(); ++j)
    if (leaves[j].requires_grad())
      analytical[j] =
          fast_mode ? Arr(xt::zeros<double>(leaves[j].shape())) : Arr(xt::zeros<double>({n_out, leaves[j].numel()}));
  const std::size_t passes = fast_mode ? 1 : n_out;
  for (std::size_t i = 0; i < passes; ++i) {
    for (auto& t : leaves) t.zero_grad();
    Arr seed = fast_mode ? v : Arr(xt::zeros<double>(out_shape));
    if (!fast_mode) seed.data()[i] = 1.0;
    out.backward(seed, /*retain_graph=*/true);
    for (std::size_t j = 0; j < leaves.size(); ++j)
      if (leaves[j].requires_grad() && leaves[j].has_grad())
        std::copy(leaves[j].grad().begin(), leaves[j].grad().end(),
                  analytical[j].data() + (fast_mode ? 0 : i * leaves[j].numel()));
  }
  return analytical;
}

// Fast mode, one input: v^T J u by central differences against (v^T J) u for a random u (v: output-shaped).
void check_projection(Checker& check, const std::function<Tensor<double>()>& fn, Tensor<double>& leaf,
                      const std::string& input, const Arr& analytical, const Arr& v, Generator& gen) {
  const double eps = check.options.eps;
  Arr& x = leaf.mutable_data();
  const Arr u = randn<double>(leaf.shape(), gen).data();
  const Arr x0 = x;
  x = x0 + eps * u;
  const Arr plus = evaluate(fn);
  x = x0 - eps * u;
  const Arr minus = evaluate(fn);
  x = x0;
  double numerical = 0, projected = 0;
  for (std::size_t i = 0; i < v.size(); ++i) numerical += v.data()[i] * (plus.data()[i] - minus.data()[i]) / (2 * eps);
  for (std::size_t k = 0; k < x.size(); ++k) projected += analytical.data()[k] * u.data()[k];
  check.compare(projected, numerical, [&] { return "Jacobian projection v^T J u mismatch " + input; });
}

// Full mode, one input: each Jacobian entry by central differences against analytical (n_out, n_in).
void check_jacobian(Checker& check, const std::function<Tensor<double>()>& fn, Tensor<double>& leaf,
                    const std::string& input, const Arr& analytical, const Shape& out_shape) {
  const double eps = check.options.eps;
  Arr& x = leaf.mutable_data();
  const std::size_t n_in = x.size();
  const std::size_t n_out = analytical.shape()[0];
  for (std::size_t k = 0; k < n_in; ++k) {
    const double saved = x.data()[k];
    x.data()[k] = saved + eps;
    const Arr plus = evaluate(fn);
    x.data()[k] = saved - eps;
    const Arr minus = evaluate(fn);
    x.data()[k] = saved;
    for (std::size_t i = 0; i < n_out; ++i) {
      const double numerical = (plus.data()[i] - minus.data()[i]) / (2 * eps);
      check.compare(analytical.data()[i * n_in + k], numerical, [&] {
        return "Jacobian mismatch for output element " + element_str(i, out_shape) + " " + input + ", element " +
               element_str(k, leaf.shape());
      });
    }
  }
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor<double>>& inputs,
                          const GradcheckOptions& options) {
  // Private leaf copies: the caller's tensors keep their values and gradients.
  std::vector<Tensor<double>> leaves;
  for (const auto& t : inputs) leaves.emplace_back(Arr(t.data()), t.requires_grad());
  return gradcheck_params([&] { return fn(leaves); }, leaves, options);
}

GradcheckResult gradcheck_params(const std::function<Tensor<double>()>& fn, const std::vector<Tensor<double>>& tensors,
                                 const GradcheckOptions& options) {
  std::vector<Tensor<double>> leaves = tensors;  // handles: the same nodes
  Restore restore(leaves);                       // puts values and gradients back on return
  Checker check{options, {}};

  Tensor<double> out = fn();
  const Shape out_shape = out.shape();
  if (const char* problem = nothing_to_check(leaves, out)) {
    check.result.ok = false;
    check.result.message = problem;
    return check.result;
  }
  Generator gen(options.seed);
  const Arr v = options.fast_mode ? randn<double>(out_shape, gen).data() : Arr();
  const std::vector<Arr> analytical = analytical_side(out, leaves, v, options.fast_mode);
  out = Tensor<double>();  // drop the graph before the inputs are perturbed in place

  // Numerical side, central differences, in input order (fast mode draws u from gen).
  for (std::size_t j = 0; j < leaves.size(); ++j) {
    if (!leaves[j].requires_grad()) continue;
    const std::string input = "with respect to input " + std::to_string(j);
    if (options.fast_mode)
      check_projection(check, fn, leaves[j], input, analytical[j], v, gen);
    else
      check_jacobian(check, fn, leaves[j], input, analytical[j], out_shape);
  }
  return check.result;
}

}  // namespace xtgrad
