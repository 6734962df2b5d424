// The Optimizer base (parameters, lr, per-parameter state, state dicts) and
// clip_grad_norm.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_set>
#include <utility>

#include <xtensor/xbuilder.hpp>

#include "optim_detail.hpp"
#include "xtgrad/optim.hpp"

namespace xtgrad {

// ---- state scalars --------------------------------------------------------------------
template <class T> Array<T> encode_state_scalar(double value) {
  // hi + mid + lo == value exactly: each remainder is exact in double, and a double's
  // 53 bits fit in three floats' 24 (for double T, mid and lo are 0).
  const T hi = static_cast<T>(value);
  const double r1 = value - static_cast<double>(hi);
  const T mid = static_cast<T>(r1);
  const T lo = static_cast<T>(r1 - static_cast<double>(mid));
  Array<T> out = Array<T>::from_shape({3});
  out(0) = hi;
  out(1) = mid;
  out(2) = lo;
  return out;
}

template <class T> double decode_state_scalar(const Array<T>& encoded) {
  if (encoded.dimension() != 1 || encoded.size() != 3)
    throw std::invalid_argument("decode_state_scalar: expected shape (3), got " + shape_str(encoded.shape()));
  return (static_cast<double>(encoded(0)) + static_cast<double>(encoded(1))) + static_cast<double>(encoded(2));
}

namespace optim_detail {

std::string fmt(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

void check_lr(double lr) {
  if (!(lr >= 0.0)) throw std::invalid_argument("Invalid learning rate: " + fmt(lr));
}

}  // namespace optim_detail

namespace {

// A step count stored with encode_state_scalar: a non-negative integer.
template <class T> std::size_t decode_count(const Array<T>& a, const std::string& key) {
  const double v = decode_state_scalar(a);
  if (!(v >= 0.0) || v != std::floor(v) || v > 9007199254740992.0)
    throw std::invalid_argument("load_state_dict: '" + key + "' must be a non-negative integer step count, got " +
                                optim_detail::fmt(v));
  return static_cast<std::size_t>(v);
}

bool is_scalar_shape(const std::vector<std::size_t>& shape) { return shape.size() == 1 && shape[0] == 3; }

// A parameter's key "<index>.<field>" -> (index, field); nullopt for any other key. At most
// 18 digits, so the index cannot overflow.
std::optional<std::pair<std::size_t, std::string>> parse_param_key(const std::string& key) {
  const std::size_t dot = key.find('.');
  if (dot == std::string::npos || dot == 0 || dot > 18) return std::nullopt;
  std::size_t index = 0;
  for (std::size_t c = 0; c < dot; ++c) {
    if (key[c] < '0' || key[c] > '9') return std::nullopt;
    index = index * 10 + static_cast<std::size_t>(key[c] - '0');
  }
  return std::make_pair(index, key.substr(dot + 1));
}

// How many parameters a state dict holds state for (one past the highest index); throws on
// a key that is neither "lr", "step" nor "<index>.step" / "<index>.<buffer>".
template <class T>
std::size_t params_in_state(const StateDict<T>& state, const std::vector<std::string>& buffer_names,
                            const std::string& who, const char* optimizer_name) {
  std::set<std::size_t> indices_in_state;
  for (const auto& [key, value] : state) {
    if (key == "lr" || key == "step") continue;
    const auto parsed = parse_param_key(key);
    const bool known = parsed && (parsed->second == "step" || std::find(buffer_names.begin(), buffer_names.end(),
                                                                        parsed->second) != buffer_names.end());
    if (!known)
      throw std::invalid_argument(who + "unexpected key '" + key + "' (not state of this " + optimizer_name + ")");
    indices_in_state.insert(parsed->first);
  }
  return indices_in_state.empty() ? 0 : *indices_in_state.rbegin() + 1;
}

// The entries load_state_dict needs, each checked as it is looked up; the errors name the key.
template <class T> struct StateLookup {
  const StateDict<T>& state;
  const std::string& who;  // "<optimizer>.load_state_dict: "
  std::size_t n_state, n;  // parameters in the state, in the optimizer

  // state[key], which must exist.
  const Array<T>& find(const std::string& key) const {
    auto it = state.find(key);
    if (it == state.end())
      throw std::invalid_argument(who + "missing key '" + key + "' (the state has " + std::to_string(n_state) +
                                  " parameters, this optimizer " + std::to_string(n) + ")");
    return it->second;
  }

  // state[key], which must be a state scalar (shape (3)).
  const Array<T>& find_scalar(const std::string& key) const {
    const Array<T>& a = find(key);
    const std::vector<std::size_t> shape(a.shape().begin(), a.shape().end());
    if (!is_scalar_shape(shape))
      throw std::invalid_argument(who + "'" + key + "' has shape " + shape_str(shape) +
                                  " but a state scalar has shape (3)");
    return a;
  }

  // The step count under key.
  std::size_t count(const std::string& key) const { return decode_count(find_scalar(key), key); }

  // The learning rate, which must be finite and >= 0.
  double lr() const {
    const double lr = decode_state_scalar(find_scalar("lr"));
    if (!(lr >= 0.0) || !std::isfinite(lr))
      throw std::invalid_argument(who + "'lr' is " + optim_detail::fmt(lr) + ": Invalid learning rate");
    return lr;
  }

  // state[key], a buffer of parameter i (param), which must have param's shape.
  const Array<T>& buffer(const std::string& key, const Tensor<T>& param, std::size_t i) const {
    const Array<T>& a = find(key);
    if (!std::equal(a.shape().begin(), a.shape().end(), param.data().shape().begin(), param.data().shape().end()))
      throw std::invalid_argument(who + "'" + key + "' has shape " + shape_str(a.shape()) + " but parameter " +
                                  std::to_string(i) + " has shape " + shape_str(param.data().shape()));
    return a;
  }
};

// Adds x[0, n)'s share of the norm of order norm_type to acc: the sum of |x|^p, or for
// infinity the largest |x| (nan notes a NaN entry, which the maximum would drop).
template <class T> void accumulate_norm(const T* x, std::size_t n, double norm_type, double& acc, bool& nan) {
  if (std::isinf(norm_type)) {
    for (std::size_t j = 0; j < n; ++j) {
      const double a = std::abs(static_cast<double>(x[j]));
      nan |= std::isnan(a);
      acc = a > acc ? a : acc;
    }
  } else if (norm_type == 2.0) {
    // Four partial sums: independent additions pipeline (one chain waits on each add).
    double s[4] = {0, 0, 0, 0};
    std::size_t j = 0;
    for (; j + 4 <= n; j += 4)
      for (std::size_t u = 0; u < 4; ++u) s[u] += static_cast<double>(x[j + u]) * static_cast<double>(x[j + u]);
    for (; j < n; ++j) s[0] += static_cast<double>(x[j]) * static_cast<double>(x[j]);
    acc += (s[0] + s[1]) + (s[2] + s[3]);
  } else if (norm_type == 1.0) {
    for (std::size_t j = 0; j < n; ++j) acc += std::abs(static_cast<double>(x[j]));
  } else {
    for (std::size_t j = 0; j < n; ++j) acc += std::pow(std::abs(static_cast<double>(x[j])), norm_type);
  }
}

// The norm of order norm_type from what accumulate_norm gathered.
double finish_norm(double acc, bool nan, double norm_type) {
  if (std::isinf(norm_type)) return nan ? std::numeric_limits<double>::quiet_NaN() : acc;
  if (norm_type == 2.0) return std::sqrt(acc);
  if (norm_type == 1.0) return acc;
  return std::pow(acc, 1.0 / norm_type);
}

// Multiplies every parameter's gradient by c.
template <class T> void scale_grads(const std::vector<Tensor<T>>& params, T c) {
  for (Tensor<T> p : params) {  // a handle: its gradient is the parameter's own
    if (!p.defined() || !p.has_grad()) continue;
    Array<T>& g = p.mutable_grad();
    T* x = g.data();
    const std::size_t n = g.size();
    for (std::size_t j = 0; j < n; ++j) x[j] *= c;
  }
}

}  // namespace

// ---- Optimizer ------------------------------------------------------------------------
template <class T>
Optimizer<T>::Optimizer(std::vector<Tensor<T>> params, double lr, const char* name,
                        std::vector<std::string> buffer_names)
    : params_(std::move(params)), buffer_names_(std::move(buffer_names)), lr_(lr), name_(name) {
  const std::string who = name;
  if (params_.empty()) throw std::invalid_argument(who + ": got an empty parameter list");
  std::unordered_set<const Node<T>*> seen;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor<T>& p = params_[i];
    if (!p.defined()) throw std::invalid_argument(who + ": parameter " + std::to_string(i) + " is undefined");
    if (!p.is_leaf())
      throw std::invalid_argument(who + ": parameter " + std::to_string(i) +
                                  " is not a leaf tensor (can't optimize the result of an op '" + p.op_name() + "')");
    if (!seen.insert(p.node_ptr().get()).second)
      throw std::invalid_argument(who + ": parameter " + std::to_string(i) +
                                  " appears more than once in the parameter list");
  }
  // Buffers start at zero; the momentum buffer is overwritten on its first update.
  state_.resize(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Shape shape = params_[i].shape();
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) state_[i].buffers.push_back(Array<T>(xt::zeros<T>(shape)));
  }
}

template <class T> void Optimizer<T>::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

template <class T> void Optimizer<T>::set_lr(double lr) {
  optim_detail::check_lr(lr);
  lr_ = lr;
}

template <class T> const T* Optimizer<T>::grad_or_null(std::size_t i) const {
  const Tensor<T>& p = params_[i];
  if (!p.has_grad()) return nullptr;
  const Array<T>& g = p.grad();
  if (g.size() != p.numel())
    throw std::logic_error(std::string(name_) + ": gradient of parameter " + std::to_string(i) + " has shape " +
                           shape_str(g.shape()) + " but the parameter has " + shape_str(p.data().shape()));
  return g.data();
}

template <class T> StateDict<T> Optimizer<T>::state_dict() const {
  StateDict<T> out;
  out.emplace("lr", encode_state_scalar<T>(lr_));
  out.emplace("step", encode_state_scalar<T>(static_cast<double>(steps_)));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const std::string prefix = std::to_string(i) + ".";
    out.emplace(prefix + "step", encode_state_scalar<T>(static_cast<double>(state_[i].step)));
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) out.emplace(prefix + buffer_names_[b], state_[i].buffers[b]);
  }
  return out;
}

template <class T> void Optimizer<T>::load_state_dict(const StateDict<T>& state) {
  const std::string who = std::string(name_) + ".load_state_dict: ";
  const std::size_t n = params_.size();

  // 1. Parse the keys: every one must be one we know, for a parameter we have.
  const std::size_t n_state = params_in_state(state, buffer_names_, who, name_);
  if (n_state > n)
    throw std::invalid_argument(who + "the state holds parameter " + std::to_string(n_state - 1) +
                                " but this optimizer has " + std::to_string(n) + " parameters");

  // 2. Check: every key we need, with the right shape and value.
  const StateLookup<T> lookup{state, who, n_state, n};
  const double lr = lookup.lr();
  const std::size_t steps = lookup.count("step");
  std::vector<std::size_t> param_steps(n);
  std::vector<std::vector<const Array<T>*>> buffers(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string prefix = std::to_string(i) + ".";
    param_steps[i] = lookup.count(prefix + "step");
    for (const auto& name : buffer_names_) buffers[i].push_back(&lookup.buffer(prefix + name, params_[i], i));
  }

  // 3. Assign: copies into buffers of the same shapes, nothing can fail from here.
  lr_ = lr;
  steps_ = steps;
  for (std::size_t i = 0; i < n; ++i) {
    state_[i].step = param_steps[i];
    for (std::size_t b = 0; b < buffers[i].size(); ++b)
      std::copy(buffers[i][b]->begin(), buffers[i][b]->end(), state_[i].buffers[b].begin());
  }
}

// ---- clip_grad_norm -------------------------------------------------------------------
template <class T>
double clip_grad_norm(const std::vector<Tensor<T>>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
  if (!(norm_type > 0.0))
    throw std::invalid_argument("clip_grad_norm: norm_type must be > 0 or infinity, got " +
                                optim_detail::fmt(norm_type));
  if (!(max_norm >= 0.0))
    throw std::invalid_argument("clip_grad_norm: max_norm must be >= 0, got " + optim_detail::fmt(max_norm));
  // Accumulate in double over all gradients (the norm of the per-parameter norms, as
  // PyTorch computes it, is the same number).
  double acc = 0.0;
  bool nan = false, any = false;
  for (const auto& p : params) {
    if (!p.defined() || !p.has_grad()) continue;
    any = true;
    const Array<T>& g = p.grad();
    accumulate_norm(g.data(), g.size(), norm_type, acc, nan);
  }
  if (!any) return 0.0;
  const double total = finish_norm(acc, nan, norm_type);

  if (error_if_nonfinite && !std::isfinite(total))
    throw std::runtime_error("clip_grad_norm: the total norm of order " + optim_detail::fmt(norm_type) +
                             " of the gradients is non-finite (" + optim_detail::fmt(total) +
                             "), so it cannot be clipped; pass error_if_nonfinite = false to "
                             "scale the gradients by it anyway");
  const double coef = max_norm / (total + 1e-6);
  // `!(coef >= 1)` rather than `coef < 1`: a NaN factor is applied, as PyTorch does.
  if (!(coef >= 1.0)) scale_grads(params, static_cast<T>(coef));
  return total;
}

#define XTGRAD_OPTIM_INSTANTIATE(T)                        \
  template Array<T> encode_state_scalar<T>(double);        \
  template double decode_state_scalar<T>(const Array<T>&); \
  template class Optimizer<T>;                             \
  template double clip_grad_norm<T>(const std::vector<Tensor<T>>&, double, double, bool);
XTGRAD_OPTIM_INSTANTIATE(float)
XTGRAD_OPTIM_INSTANTIATE(double)

}  // namespace xtgrad
