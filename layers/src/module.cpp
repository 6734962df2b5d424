#include "xtgrad/module.hpp"

#include <algorithm>
#include <stdexcept>

namespace xtgrad {

Generator& global_generator() {
  static Generator generator(0);
  return generator;
}

void manual_seed(std::uint64_t seed) { global_generator() = Generator(seed); }

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

template <class T>
void Module<T>::collect(const std::string& prefix, Kind kind,
                        std::vector<std::pair<std::string, Tensor<T>>>& out) const {
  for (const auto& [name, tensor] : kind == Kind::parameters ? params_ : buffers_)
    out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", kind, out);
}

template <class T> std::vector<std::pair<std::string, Tensor<T>>> Module<T>::named_parameters() const {
  std::vector<std::pair<std::string, Tensor<T>>> out;
  collect("", Kind::parameters, out);
  return out;
}

template <class T> std::vector<std::pair<std::string, Tensor<T>>> Module<T>::named_buffers() const {
  std::vector<std::pair<std::string, Tensor<T>>> out;
  collect("", Kind::buffers, out);
  return out;
}

// Parameters, then buffers: what a state dict holds.
template <class T> std::vector<std::pair<std::string, Tensor<T>>> Module<T>::named_state() const {
  auto out = named_parameters();
  for (auto& entry : named_buffers()) out.push_back(std::move(entry));
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

template <class T> std::size_t Module<T>::parameter_count() const {
  std::size_t count = 0;
  for (const auto& p : parameters()) count += p.numel();
  return count;
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

template <class T> void Module<T>::load_state_dict(const StateDict<T>& state, bool strict) {
  const auto named = named_state();
  std::vector<std::string> problems;
  for (const auto& [name, tensor] : named) {
    const auto found = state.find(name);
    if (found == state.end()) {
      if (strict) problems.push_back("missing '" + name + "'");
    } else if (!std::equal(found->second.shape().begin(), found->second.shape().end(), tensor.data().shape().begin(),
                           tensor.data().shape().end())) {
      problems.push_back("'" + name + "' has shape " + shape_str(found->second.shape()) + ", the model expects " +
                         shape_str(tensor.shape()));
    }
  }
  if (strict)
    for (const auto& entry : state)
      if (std::none_of(named.begin(), named.end(), [&](const auto& n) { return n.first == entry.first; }))
        problems.push_back("unexpected '" + entry.first + "'");
  if (!problems.empty()) {
    std::string message = type_name_ + ".load_state_dict: nothing loaded: ";
    for (std::size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    throw std::invalid_argument(message);
  }
  for (auto [name, tensor] : named) {
    const auto found = state.find(name);
    if (found != state.end()) std::copy(found->second.begin(), found->second.end(), tensor.mutable_data().begin());
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
