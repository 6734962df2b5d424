#include "xtgrad/module.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <unordered_set>

namespace xtgrad {

Generator& global_generator() {
  static Generator generator(0);
  return generator;
}

void manual_seed(std::uint64_t seed) { global_generator() = Generator(seed); }

// Python's float repr: the shortest round-trip digits (Python's "r" mode), positional when
// the decimal exponent is from -4 to 15, as "1e-05" (two exponent digits at least) outside.
std::string float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0.0) return std::signbit(value) ? "-0.0" : "0.0";
  char buf[40];
  for (int precision = 0; precision < 17; ++precision) {  // 17 significant digits always round-trip
    std::snprintf(buf, sizeof buf, "%.*e", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  // buf is "[-]d.ddde[+-]xx": take its digits and its exponent.
  const std::string text(buf);
  const std::size_t e = text.find('e');
  std::string digits;
  for (std::size_t i = 0; i < e; ++i)
    if (text[i] >= '0' && text[i] <= '9') digits += text[i];
  const int exponent = std::atoi(text.c_str() + e + 1);
  const std::string sign = value < 0 ? "-" : "";
  const int point = exponent + 1;  // digits[0:point] come before the decimal point
  const int count = static_cast<int>(digits.size());
  if (point <= -4 || point > 16) {
    const std::string mantissa = digits.substr(0, 1) + (count > 1 ? "." + digits.substr(1) : "");
    const std::string power = std::to_string(std::abs(exponent));
    return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + (power.size() < 2 ? "0" : "") + power;
  }
  if (point <= 0) return sign + "0." + std::string(-point, '0') + digits;
  if (point >= count) return sign + digits + std::string(point - count, '0') + ".0";
  return sign + digits.substr(0, point) + "." + digits.substr(point);
}

template <class T> void Module<T>::check_new_name(const std::string& name) const {
  if (name.empty()) throw std::invalid_argument(type_name_ + ": a parameter or submodule name cannot be empty");
  if (name.find('.') != std::string::npos)
    throw std::invalid_argument(type_name_ + ": name '" + name + "' must not contain '.'");
  const auto same = [&](const auto& entry) { return entry.first == name; };
  if (std::any_of(params_.begin(), params_.end(), same) || std::any_of(buffers_.begin(), buffers_.end(), same) ||
      std::any_of(children_.begin(), children_.end(), same))
    throw std::invalid_argument(type_name_ + ": name '" + name + "' is already registered");
}

template <class T> Tensor<T> Module<T>::register_parameter(const std::string& name, Tensor<T> tensor) {
  check_new_name(name);
  if (!tensor.defined()) throw std::invalid_argument(type_name_ + ": parameter '" + name + "' is undefined");
  tensor.set_requires_grad(true);
  params_.emplace_back(name, tensor);
  return tensor;
}

template <class T> Tensor<T> Module<T>::register_buffer(const std::string& name, Tensor<T> tensor) {
  check_new_name(name);
  if (!tensor.defined()) throw std::invalid_argument(type_name_ + ": buffer '" + name + "' is undefined");
  if (tensor.requires_grad())
    throw std::invalid_argument(type_name_ + ": buffer '" + name + "' requires a gradient (register a parameter)");
  buffers_.emplace_back(name, tensor);
  return tensor;
}

template <class T> void Module<T>::add_child(const std::string& name, std::shared_ptr<Module<T>> module) {
  check_new_name(name);
  if (!module) throw std::invalid_argument(type_name_ + ": submodule '" + name + "' is null");
  children_.emplace_back(name, std::move(module));
}

template <class T> void Module<T>::replace_child(const std::string& name, std::shared_ptr<Module<T>> module) {
  if (!module) throw std::invalid_argument(type_name_ + ": submodule '" + name + "' is null");
  for (auto& [child_name, child] : children_)
    if (child_name == name) {
      child = std::move(module);
      return;
    }
  throw std::invalid_argument(type_name_ + ": no submodule '" + name + "' to replace");
}

template <class T>
void Module<T>::collect(const std::string& prefix, Kind kind,
                        std::vector<std::pair<std::string, Tensor<T>>>& out) const {
  for (const auto& [name, tensor] : kind == Kind::parameters ? params_ : buffers_)
    out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", kind, out);
}

namespace {
// Keeps the first entry of each tensor (by node): PyTorch's remove_duplicate.
template <class T>
std::vector<std::pair<std::string, Tensor<T>>> first_of_each(std::vector<std::pair<std::string, Tensor<T>>> named) {
  std::unordered_set<const Node<T>*> seen;
  named.erase(std::remove_if(named.begin(), named.end(),
                             [&](const auto& entry) { return !seen.insert(entry.second.node_ptr().get()).second; }),
              named.end());
  return named;
}
}  // namespace

template <class T> std::vector<std::pair<std::string, Tensor<T>>> Module<T>::named_parameters() const {
  std::vector<std::pair<std::string, Tensor<T>>> out;
  collect("", Kind::parameters, out);
  return first_of_each(std::move(out));
}

template <class T> std::vector<std::pair<std::string, Tensor<T>>> Module<T>::named_buffers() const {
  std::vector<std::pair<std::string, Tensor<T>>> out;
  collect("", Kind::buffers, out);
  return first_of_each(std::move(out));
}

// Parameters, then buffers, each tied tensor under every name: what a state dict holds.
template <class T> std::vector<std::pair<std::string, Tensor<T>>> Module<T>::named_state() const {
  std::vector<std::pair<std::string, Tensor<T>>> out;
  collect("", Kind::parameters, out);
  collect("", Kind::buffers, out);
  return out;
}

template <class T> std::vector<Tensor<T>> Module<T>::parameters() const {
  std::vector<Tensor<T>> out;
  for (auto& named : named_parameters()) out.push_back(std::move(named.second));
  return out;
}

template <class T> std::vector<std::shared_ptr<Module<T>>> Module<T>::children() const {
  std::vector<std::shared_ptr<Module<T>>> out;
  for (const auto& entry : children_) out.push_back(entry.second);
  return out;
}

template <class T>
void Module<T>::collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module<T>*>>& out) {
  if (std::any_of(out.begin(), out.end(), [&](const auto& entry) { return entry.second == this; })) return;
  out.emplace_back(prefix, this);
  for (const auto& [name, child] : children_) child->collect_modules(prefix.empty() ? name : prefix + "." + name, out);
}

template <class T> std::vector<std::pair<std::string, Module<T>*>> Module<T>::named_modules() {
  std::vector<std::pair<std::string, Module<T>*>> out;
  collect_modules("", out);
  return out;
}

template <class T> std::vector<Module<T>*> Module<T>::modules() {
  std::vector<Module<T>*> out;
  for (const auto& entry : named_modules()) out.push_back(entry.second);
  return out;
}

template <class T> std::size_t Module<T>::parameter_count() const {
  std::size_t count = 0;
  for (const auto& p : parameters()) count += p.numel();
  return count;
}

template <class T> Module<T>& Module<T>::apply(const std::function<void(Module<T>&)>& fn) {
  for (auto& entry : children_) entry.second->apply(fn);
  fn(*this);
  return *this;
}

template <class T> Module<T>& Module<T>::requires_grad_(bool requires_grad) {
  for (auto& p : parameters()) {
    p.set_requires_grad(requires_grad);
    if (!requires_grad) p.reset_grad();
  }
  return *this;
}

template <class T> void Module<T>::train(bool on) {
  training_ = on;
  for (auto& entry : children_) entry.second->train(on);
}

template <class T> void Module<T>::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

template <class T> StateDict<T> Module<T>::state_dict() const {
  StateDict<T> state;
  for (const auto& [name, tensor] : named_state()) state.emplace(name, tensor.data());
  return state;
}

namespace {
// The entries of named_state() grouped by tensor: a tied tensor's names share a group.
template <class T>
std::vector<std::vector<std::pair<std::string, Tensor<T>>>> tie_groups(
    const std::vector<std::pair<std::string, Tensor<T>>>& named) {
  std::vector<std::vector<std::pair<std::string, Tensor<T>>>> groups;
  for (const auto& entry : named) {
    const auto same = [&](const auto& group) { return group[0].second.node_ptr() == entry.second.node_ptr(); };
    const auto found = std::find_if(groups.begin(), groups.end(), same);
    if (found == groups.end())
      groups.push_back({entry});
    else
      found->push_back(entry);
  }
  return groups;
}

template <class T> bool same_values(const Array<T>& a, const Array<T>& b) {
  return a.shape() == b.shape() &&
         std::equal(a.begin(), a.end(), b.begin(), [](T x, T y) { return x == y || (std::isnan(x) && std::isnan(y)); });
}
}  // namespace

template <class T> std::vector<std::string> Module<T>::state_problems(const StateDict<T>& state, bool strict) const {
  const auto named = named_state();
  std::vector<std::string> problems;
  for (const auto& group : tie_groups(named)) {
    const std::string* first = nullptr;  // the first of the tensor's names the dict has, of the right shape
    bool present = false;
    for (const auto& [name, tensor] : group) {
      const auto found = state.find(name);
      if (found == state.end()) continue;
      present = true;
      const auto& value = found->second;
      if (!std::equal(value.shape().begin(), value.shape().end(), tensor.data().shape().begin(),
                      tensor.data().shape().end()))
        problems.push_back("'" + name + "' has shape " + shape_str(value.shape()) + ", the model expects " +
                           shape_str(tensor.shape()));
      else if (!first)
        first = &name;
      else if (!same_values(state.at(*first), value))
        problems.push_back("'" + *first + "' and '" + name + "' are one tied tensor but hold different values");
    }
    if (!present && strict) {
      std::string names = "'" + group[0].first + "'";
      for (std::size_t i = 1; i < group.size(); ++i) names += " (or its tied name '" + group[i].first + "')";
      problems.push_back("missing " + names);
    }
  }
  if (strict)
    for (const auto& entry : state)
      if (std::none_of(named.begin(), named.end(), [&](const auto& n) { return n.first == entry.first; }))
        problems.push_back("unexpected '" + entry.first + "'");
  return problems;
}

template <class T> void Module<T>::load_state_dict(const StateDict<T>& state, bool strict) {
  const std::vector<std::string> problems = state_problems(state, strict);
  if (!problems.empty()) {
    std::string message = type_name_ + ".load_state_dict: nothing loaded: ";
    for (std::size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    throw std::invalid_argument(message);
  }
  for (auto& group : tie_groups(named_state())) {
    for (auto& [name, tensor] : group) {
      const auto found = state.find(name);
      if (found == state.end()) continue;
      std::copy(found->second.begin(), found->second.end(), tensor.mutable_data().begin());
      break;  // a tied tensor once: its other names hold the same values
    }
  }
}

template <class T> void Module<T>::describe(std::string& out, int indent) const {
  out += type_name_ + "(" + extra_repr();
  if (!children_.empty()) {
    out += "\n";
    for (const auto& [name, child] : children_) {
      out += std::string(indent + 2, ' ') + "(" + name + "): ";
      child->describe(out, indent + 2);
      out += "\n";
    }
    out += std::string(indent, ' ');
  }
  out += ")";
}

template <class T> std::string Module<T>::summary() const {
  std::string out;
  describe(out, 0);
  return out;
}

// ---- Sequential -----------------------------------------------------------------------
template <class T> Sequential<T>::Sequential(std::vector<std::shared_ptr<UnaryModule<T>>> layers) : Sequential() {
  for (auto& layer : layers) push_back(std::move(layer));
}

template <class T> Sequential<T>& Sequential<T>::push_back(std::shared_ptr<UnaryModule<T>> layer) {
  this->register_module(std::to_string(layers_.size()), layer);
  layers_.push_back(std::move(layer));
  return *this;
}

template <class T> const std::shared_ptr<UnaryModule<T>>& Sequential<T>::operator[](std::size_t i) const {
  if (i >= layers_.size())
    throw std::invalid_argument("Sequential: index " + std::to_string(i) + " out of range for " +
                                std::to_string(layers_.size()) + " layers");
  return layers_[i];
}

template <class T> void Sequential<T>::replace(std::size_t i, std::shared_ptr<UnaryModule<T>> layer) {
  (*this)[i];  // the index check
  this->replace_child(std::to_string(i), layer);
  layers_[i] = std::move(layer);
}

template <class T> Tensor<T> Sequential<T>::forward(const Tensor<T>& x) {
  Tensor<T> y = x;
  for (auto& layer : layers_) y = layer->forward(y);
  return y;
}

template class Module<float>;
template class Module<double>;
template class Sequential<float>;
template class Sequential<double>;

}  // namespace xtgrad
