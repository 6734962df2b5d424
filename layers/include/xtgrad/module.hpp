// Module: what layers are made of. A module owns named parameters and named submodules;
// named_parameters() walks them with dotted names ("attn.q_proj.weight"), as PyTorch's
// C++ frontend does. Forward signatures differ by layer, so forward is not virtual here;
// UnaryModule adds a virtual forward(x) for layers that map one tensor to one tensor
// (what Sequential chains), and Callable gives any module `m(args...)` for
// `m.forward(args...)`.
//
// Weight tying: one tensor may be registered under two names (a decoder's output weight
// that is the token embedding's). As in PyTorch, parameters(), named_parameters() and
// parameter_count() list it once, under the first name met, so an optimizer takes it;
// state_dict() keeps both names, and load_state_dict() takes either or both.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "xtgrad/random.hpp"
#include "xtgrad/tensor.hpp"

namespace xtgrad {

// The generator layers draw their initial weights from when none is given.
Generator& global_generator();
void manual_seed(std::uint64_t seed);  // reseeds global_generator()

// A float as Python's repr() prints it, for summaries that read as PyTorch's: the shortest
// digits that read back as the same double, "0.1", "0.0", "0.0001", "1e-05", "1e+16",
// "inf", "nan".
std::string float_repr(double value);

template <class T> class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Registers a parameter (it is made to require a gradient) and returns its handle.
  // Names must be non-empty, free of '.', and unique within this module. Registering a
  // tensor that another module holds ties the two (see above).
  Tensor<T> register_parameter(const std::string& name, Tensor<T> tensor);
  // Registers non-trainable state (BatchNorm's running statistics) and returns its handle:
  // state_dict() and load_state_dict() carry it, parameters() does not, and it never
  // requires a gradient. Names as for parameters, unique among both.
  Tensor<T> register_buffer(const std::string& name, Tensor<T> tensor);
  template <class M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // This module's, then each child's, in order; a tensor registered twice once.
  std::vector<Tensor<T>> parameters() const;
  std::vector<std::pair<std::string, Tensor<T>>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor<T>>> named_buffers() const;  // dotted names, as parameters
  std::vector<std::shared_ptr<Module<T>>> children() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>>& named_children() const { return children_; }
  // This module (name "") and every submodule below it, depth first, with dotted names
  // ("layers.0.self_attn"); a module registered twice is listed once, as in PyTorch.
  // The pointers live as long as this module.
  std::vector<std::pair<std::string, Module<T>*>> named_modules();
  std::vector<Module<T>*> modules();
  std::size_t parameter_count() const;  // number of scalar values

  // fn on every submodule, then on this one (children first, as PyTorch's apply).
  Module& apply(const std::function<void(Module<T>&)>& fn);
  // requires_grad_(false) freezes every parameter: it stops requiring a gradient and loses
  // the one it had, so backward() leaves it alone and an optimizer that holds it skips it
  // (step() skips a parameter without a gradient, as PyTorch's skips p.grad None; PyTorch
  // keeps a stale gradient here, which its optimizers would go on using). true unfreezes.
  Module& requires_grad_(bool requires_grad = true);

  void train(bool on = true);  // this module and every submodule
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();

  // A copy of every parameter's and buffer's value by dotted name (a tied tensor under
  // each of its names, as PyTorch's).
  StateDict<T> state_dict() const;
  // Checks everything first: a missing (when strict), unexpected (when strict) or
  // mis-shaped tensor is reported by name in one std::invalid_argument, and nothing is
  // changed. Then copies the values in. A tied tensor is loaded from whichever of its
  // names the dict has; it is missing only when it has none, and two names with
  // different values are refused.
  void load_state_dict(const StateDict<T>& state, bool strict = true);

  // One screen, like PyTorch's repr: "Linear(in_features=4, out_features=2, bias=true)",
  // submodules indented beneath their parent with their names.
  std::string summary() const;
  const std::string& type_name() const { return type_name_; }
  // The part inside the parentheses of this module's line in summary().
  virtual std::string extra_repr() const { return ""; }

 protected:
  // The submodule registered as `name` becomes `module` (std::invalid_argument when there
  // is none): for containers that swap a layer, as Sequential::replace.
  void replace_child(const std::string& name, std::shared_ptr<Module<T>> module);

 private:
  void add_child(const std::string& name, std::shared_ptr<Module<T>> module);
  void check_new_name(const std::string& name) const;
  enum class Kind { parameters, buffers };
  void collect(const std::string& prefix, Kind kind, std::vector<std::pair<std::string, Tensor<T>>>& out) const;
  std::vector<std::pair<std::string, Tensor<T>>> named_state() const;  // parameters, then buffers; ties twice
  std::vector<std::string> state_problems(const StateDict<T>& state, bool strict) const;
  void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module<T>*>>& out);
  void describe(std::string& out, int indent) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor<T>>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>> children_;
};

// `m(args...)` calls `m.forward(args...)`, whatever forward takes, as PyTorch's __call__.
// A module adds it by naming itself: `class Net : public Module<float>, public
// Callable<Net>`. The layers whose forward takes more than one tensor have it (lstm(x,
// state), attn(q, k, v), decoder_layer(tgt, memory)); UnaryModule has operator()(x).
template <class Derived> class Callable {
 public:
  template <class... Args> decltype(auto) operator()(Args&&... args) {
    return static_cast<Derived&>(*this).forward(std::forward<Args>(args)...);
  }
};

// A module with one tensor in and one tensor out.
template <class T> class UnaryModule : public Module<T> {
 public:
  using Module<T>::Module;
  virtual Tensor<T> forward(const Tensor<T>& x) = 0;
  Tensor<T> operator()(const Tensor<T>& x) { return forward(x); }
};

// Holds modules registered as "0", "1", ..., as PyTorch's nn.ModuleList: a stack whose
// layers take more than one tensor (a decoder's) keeps them in one, so that the names
// read "layers.0.self_attn.in_proj_weight" as in PyTorch.
template <class T> class ModuleList : public Module<T> {
 public:
  ModuleList() : Module<T>("ModuleList") {}
  template <class M> std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return this->register_module(std::to_string(size_++), std::move(module));
  }
  std::size_t size() const { return size_; }
  std::shared_ptr<Module<T>> operator[](std::size_t i) const {
    if (i >= size_)
      throw std::invalid_argument("ModuleList: index " + std::to_string(i) + " out of range for " +
                                  std::to_string(size_) + " modules");
    return this->named_children()[i].second;
  }

 private:
  std::size_t size_ = 0;
};

// Modules by string key, kept in insertion order, as PyTorch's nn.ModuleDict; state-dict
// names read "dict.key.weight". Keys follow the rule of names (non-empty, no '.') and are
// inserted once (PyTorch's assignment to an existing key replaces; here it throws).
template <class T> class ModuleDict : public Module<T> {
 public:
  ModuleDict() : Module<T>("ModuleDict") {}
  // ModuleDict<float>({{"encoder", encoder}, {"head", head}})
  explicit ModuleDict(std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>> modules) : ModuleDict() {
    for (auto& [key, module] : modules) insert(key, std::move(module));
  }
  template <class M> std::shared_ptr<M> insert(const std::string& key, std::shared_ptr<M> module) {
    return this->register_module(key, std::move(module));
  }
  // The module under key; at<M> casts it to its type. Both throw std::invalid_argument
  // naming the key when it is absent (or of another type).
  std::shared_ptr<Module<T>> operator[](const std::string& key) const {
    const auto& items = this->named_children();
    const auto found = std::find_if(items.begin(), items.end(), [&](const auto& item) { return item.first == key; });
    if (found == items.end()) throw std::invalid_argument("ModuleDict: no key '" + key + "'");
    return found->second;
  }
  template <class M> std::shared_ptr<M> at(const std::string& key) const {
    auto module = std::dynamic_pointer_cast<M>((*this)[key]);
    if (!module) throw std::invalid_argument("ModuleDict: '" + key + "' holds a " + (*this)[key]->type_name());
    return module;
  }
  bool contains(const std::string& key) const {
    const auto& items = this->named_children();
    return std::any_of(items.begin(), items.end(), [&](const auto& item) { return item.first == key; });
  }
  std::size_t size() const { return this->named_children().size(); }
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const auto& item : this->named_children()) out.push_back(item.first);
    return out;
  }
  std::vector<std::shared_ptr<Module<T>>> values() const { return this->children(); }
  const std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>>& items() const {
    return this->named_children();
  }
};

// Chains unary modules; they are registered as "0", "1", ...
template <class T> class Sequential : public UnaryModule<T> {
 public:
  Sequential() : UnaryModule<T>("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<UnaryModule<T>>> layers);
  Sequential& push_back(std::shared_ptr<UnaryModule<T>> layer);
  Tensor<T> forward(const Tensor<T>& x) override;
  std::size_t size() const { return layers_.size(); }
  const std::shared_ptr<UnaryModule<T>>& operator[](std::size_t i) const;
  // Layer i becomes `layer`, under the same name "i" (PyTorch's seq[i] = layer).
  void replace(std::size_t i, std::shared_ptr<UnaryModule<T>> layer);

 private:
  std::vector<std::shared_ptr<UnaryModule<T>>> layers_;
};

// A state dict with every value converted to scalar U: xtgrad's way of PyTorch's
// model.double() / model.float(). A C++ object cannot change its scalar type in place (a
// Linear<float> is not a Linear<double>), so build the same model as Module<double> and
// load the converted dict, e.g. to gradient-check a model trained in float:
//   Net<double> net_d(...);  net_d.load_state_dict(convert_state_dict<double>(net_f.state_dict()));
template <class U, class T> StateDict<U> convert_state_dict(const StateDict<T>& state) {
  StateDict<U> out;
  for (const auto& [name, value] : state) {
    Array<U> converted(value.shape());
    std::transform(value.begin(), value.end(), converted.begin(), [](T v) { return static_cast<U>(v); });
    out.emplace(name, std::move(converted));
  }
  return out;
}

}  // namespace xtgrad
