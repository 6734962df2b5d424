// Module: what layers are made of. A module owns named parameters and named submodules;
// named_parameters() walks them with dotted names ("attn.q_proj.weight"), as PyTorch's
// C++ frontend does. Forward signatures differ by layer, so forward is not virtual here;
// UnaryModule adds a virtual forward(x) for layers that map one tensor to one tensor
// (what Sequential chains).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "xtgrad/random.hpp"
#include "xtgrad/tensor.hpp"

namespace xtgrad {

// The generator layers draw their initial weights from when none is given.
Generator& global_generator();
void manual_seed(std::uint64_t seed);  // reseeds global_generator()

template <class T> class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Registers a parameter (it is made to require a gradient) and returns its handle.
  // Names must be non-empty, free of '.', and unique within this module.
  Tensor<T> register_parameter(const std::string& name, Tensor<T> tensor);
  // Registers non-trainable state (BatchNorm's running statistics) and returns its handle:
  // state_dict() and load_state_dict() carry it, parameters() does not, and it never
  // requires a gradient. Names as for parameters, unique among both.
  Tensor<T> register_buffer(const std::string& name, Tensor<T> tensor);
  template <class M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  std::vector<Tensor<T>> parameters() const;  // this module's, then each child's, in order
  std::vector<std::pair<std::string, Tensor<T>>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor<T>>> named_buffers() const;  // dotted names, as parameters
  std::vector<std::shared_ptr<Module<T>>> children() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>>& named_children() const { return children_; }
  std::size_t parameter_count() const;  // number of scalar values

  void train(bool on = true);  // this module and every submodule
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();

  // A copy of every parameter's and buffer's value by dotted name.
  StateDict<T> state_dict() const;
  // Checks everything first: a missing (when strict), unexpected (when strict) or
  // mis-shaped tensor is reported by name in one std::invalid_argument, and nothing is
  // changed. Then copies the values in.
  void load_state_dict(const StateDict<T>& state, bool strict = true);

  // One screen, like PyTorch's repr: "Linear(in_features=4, out_features=2, bias=true)",
  // submodules indented beneath their parent with their names.
  std::string summary() const;
  const std::string& type_name() const { return type_name_; }
  // The part inside the parentheses of this module's line in summary().
  virtual std::string extra_repr() const { return ""; }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module<T>> module);
  void check_new_name(const std::string& name) const;
  enum class Kind { parameters, buffers };
  void collect(const std::string& prefix, Kind kind, std::vector<std::pair<std::string, Tensor<T>>>& out) const;
  std::vector<std::pair<std::string, Tensor<T>>> named_state() const;  // parameters, then buffers
  void describe(std::string& out, int indent) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor<T>>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>> children_;
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

 private:
  std::size_t size_ = 0;
};

// Chains unary modules; they are registered as "0", "1", ...
template <class T> class Sequential : public UnaryModule<T> {
 public:
  Sequential() : UnaryModule<T>("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<UnaryModule<T>>> layers);
  Sequential& push_back(std::shared_ptr<UnaryModule<T>> layer);
  Tensor<T> forward(const Tensor<T>& x) override;
  std::size_t size() const { return layers_.size(); }

 private:
  std::vector<std::shared_ptr<UnaryModule<T>>> layers_;
};

}  // namespace xtgrad
