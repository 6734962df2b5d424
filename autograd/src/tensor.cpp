// The engine: Tensor, recording ops, backward, grad mode (creation: creation.cpp).
#include "xtgrad/tensor.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xnoalias.hpp>

#include "detail.hpp"
#include "thread_cache.hpp"

namespace xtgrad {

// ---- Node -----------------------------------------------------------------------------
template <class T> Node<T>::~Node() {
  // Unlink the chain by hand: destroying inputs recursively would use one stack frame
  // per op, and a long chain would overflow the stack.
  std::vector<NodePtr<T>> pending = std::move(inputs_);
  backward_ = nullptr;
  while (!pending.empty()) {
    NodePtr<T> next = std::move(pending.back());
    pending.pop_back();
    if (next && next.use_count() == 1) {
      for (auto& in : next->inputs_) pending.push_back(std::move(in));
      next->inputs_.clear();
    }
  }
}

// ---- grad mode ------------------------------------------------------------------------
namespace {
thread_local bool t_grad_enabled = true;
}
bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

// ---- anomaly detection ----------------------------------------------------------------
namespace {
thread_local bool t_detect_anomaly = false;

template <class T> bool all_finite(const Array<T>& a) {
  return std::all_of(a.begin(), a.end(), [](T v) { return std::isfinite(v); });
}

// Throws when a holds a NaN, or an infinity unless infinities are allowed.
template <class T> void check_values(const Array<T>& a, bool allow_infinite, const std::string& where) {
  const auto bad =
      std::find_if(a.begin(), a.end(), [&](T v) { return std::isnan(v) || (!allow_infinite && std::isinf(v)); });
  if (bad == a.end()) return;
  throw AnomalyError("anomaly detected: " + where + " produced " + (std::isnan(*bad) ? "NaN" : "Inf") +
                     " (first at flat element " + std::to_string(bad - a.begin()) + " of shape " +
                     shape_str(a.shape()) + ")");
}

// Every node: the node and its shared_ptr count in one block from the per-thread pool.
template <class T> NodePtr<T> new_node(Array<T>&& data) {
  return std::allocate_shared<Node<T>>(detail::PoolAllocator<Node<T>>(), std::move(data));
}
}  // namespace

bool anomaly_detection_enabled() { return t_detect_anomaly; }
AnomalyGuard::AnomalyGuard(bool enabled) : previous_(t_detect_anomaly) { t_detect_anomaly = enabled; }
AnomalyGuard::~AnomalyGuard() { t_detect_anomaly = previous_; }

// ---- Tensor ---------------------------------------------------------------------------
template <class T> Tensor<T>::Tensor() = default;

template <class T> Tensor<T>::Tensor(Array<T> data, bool requires_grad) : node_(new_node(std::move(data))) {
  node_->requires_grad_ = requires_grad;
}

template <class T> Node<T>& Tensor<T>::node() const {
  if (!node_) throw std::logic_error("xtgrad: use of an undefined Tensor");
  return *node_;
}

template <class T> Shape Tensor<T>::shape() const { return detail::shape_of(data()); }

template <class T> T Tensor<T>::item() const {
  if (numel() != 1)
    throw std::invalid_argument("item: tensor of shape " + shape_str(shape()) + " has more than one element");
  return *data().data();
}

template <class T> Tensor<T>& Tensor<T>::set_requires_grad(bool requires) {
  if (!node().is_leaf_)
    throw std::logic_error(
        "set_requires_grad: only leaf tensors can change requires_grad "
        "(use detach() on an op's result)");
  node_->requires_grad_ = requires;
  return *this;
}

namespace {
// Why a tensor has no gradient, for grad() and mutable_grad().
template <class T> std::string no_grad_reason(const char* caller, const Node<T>& node) {
  if (!node.is_leaf() && !node.retains_grad())
    return std::string(caller) + ": only leaf tensors keep their gradient, and this one is the result of op '" +
           node.op() + "'; call retain_grad() on it before backward() to keep its gradient";
  if (!node.requires_grad())
    return std::string(caller) + ": this tensor does not require a gradient (set_requires_grad() on a leaf)";
  return std::string(caller) + ": this tensor has no gradient yet (call backward() first)";
}
}  // namespace

template <class T> const Array<T>& Tensor<T>::grad() const {
  if (!node().grad_) throw std::logic_error(no_grad_reason("grad", *node_));
  return *node_->grad_;
}

template <class T> void Tensor<T>::retain_grad() {
  if (!node().requires_grad_)
    throw std::logic_error("retain_grad: this tensor does not require a gradient, so it will never have one");
  node_->retains_grad_ = true;
}

template <class T> Array<T>& Tensor<T>::mutable_grad() {
  if (!node().grad_) throw std::logic_error(no_grad_reason("mutable_grad", *node_));
  return *node_->grad_;
}

template <class T> void Tensor<T>::zero_grad() {
  if (node().grad_) std::fill(node_->grad_->begin(), node_->grad_->end(), T(0));
}

template <class T> void Tensor<T>::set_grad(Array<T> grad) {
  if (detail::shape_of(grad) != shape())
    throw std::invalid_argument("set_grad: gradient of shape " + shape_str(grad.shape()) + " for a tensor of shape " +
                                shape_str(shape()));
  node_->grad_ = std::move(grad);
}

template <class T> void Tensor<T>::reset_grad() { node().grad_.reset(); }

template <class T> Tensor<T> Tensor<T>::detach() const { return Tensor<T>(Array<T>(data()), false); }

template <class T> void Tensor<T>::backward(bool retain_graph) {
  if (numel() != 1)
    throw std::invalid_argument(
        "backward: a gradient can be created implicitly only for a "
        "one-element output, but this tensor has shape " +
        shape_str(shape()) + "; pass the output gradient");
  backward(xt::ones<T>(shape()), retain_graph);
}

namespace {
// The op whose backward is running on this thread, for add_grad's message.
thread_local const char* t_running_op = "backward";
// Its output's gradient, offered to it when nothing reads it afterwards (take_output_grad).
template <class T> thread_local std::optional<Array<T>>* t_offered_grad = nullptr;
// Both for the length of one op's backward, however it ends.
template <class T> struct RunningOp {
  RunningOp(const char* op, std::optional<Array<T>>* offered_grad) {
    t_running_op = op;
    t_offered_grad<T> = offered_grad;
  }
  ~RunningOp() {
    t_running_op = "backward";
    t_offered_grad<T> = nullptr;
  }
};

// An op's backward reads its inputs and output as they were when it ran: refuse when one
// was written since through mutable_data() (PyTorch's "modified by an inplace operation").
// Stricter than PyTorch: every input counts, not only those the backward reads.
template <class T> void check_versions(const Node<T>& node) {
  auto fail = [&](const std::string& which, const Node<T>& changed, std::uint64_t saved) {
    throw std::logic_error("backward: op '" + std::string(node.op()) + "' needs its " + which + " of shape " +
                           shape_str(changed.data().shape()) +
                           ", which was modified in place (mutable_data()) after the op read it: version " +
                           std::to_string(changed.version()) + ", expected " + std::to_string(saved) +
                           ". Change a tensor only after backward(), or give the op a copy.");
  };
  if (node.version() != 0) fail("output", node, 0);
  for (std::size_t i = 0; i < node.inputs().size(); ++i)
    if (node.inputs()[i]->version() != node.input_versions()[i])
      fail("input " + std::to_string(i) + " ('" + node.inputs()[i]->op() + "')", *node.inputs()[i],
           node.input_versions()[i]);
}
}  // namespace

namespace {
// A number per backward pass, marked on the interior nodes it reaches.
std::atomic<std::uint64_t> g_last_visit_mark{0};
}  // namespace

// Every node that root's gradient reaches, inputs before the ops that read them, by an
// iterative depth-first search (post-order), so that deep graphs cannot overflow the
// stack. The list owns its nodes: releasing one node's inputs must not free a node that
// is still waiting for its turn. Visited interior nodes carry the pass's mark (no set to
// hash into or allocate for). Leaves are not marked, as the same parameter may be in
// graphs other threads walk at the same time: a leaf reached twice is listed twice, and
// the pass skips leaves anyway.
template <class T> std::vector<NodePtr<T>> Tensor<T>::topological_order(const NodePtr<T>& root) {
  const std::uint64_t mark = ++g_last_visit_mark;
  // The list and the stack reuse the last pass's storage (detail::take_spare says why).
  auto order = detail::take_spare<std::vector<NodePtr<T>>>();
  root->visit_mark_ = mark;
  auto stack = detail::take_spare<std::vector<std::pair<NodePtr<T>, std::size_t>>>();
  stack.push_back({root, 0});
  while (!stack.empty()) {
    auto& [node, next_input] = stack.back();
    if (node->released())
      throw std::logic_error("backward: the graph through op '" + std::string(node->op()) +
                             "' was already released by an earlier backward(); pass retain_graph = true to the "
                             "first backward() to run backward twice");
    if (next_input < node->inputs().size()) {
      const NodePtr<T>& child = node->inputs()[next_input++];
      if (!child->requires_grad() || child->visit_mark_ == mark) continue;
      if (!child->is_leaf()) child->visit_mark_ = mark;
      stack.push_back({child, 0});
    } else {
      order.push_back(std::move(node));
      stack.pop_back();
    }
  }
  detail::keep_spare(std::move(stack));
  return order;
}

template <class T> void Tensor<T>::backward(const Array<T>& grad_output, bool retain_graph) {
  Node<T>& root = node();
  if (!root.requires_grad_)
    throw std::logic_error(root.recorded_without_grad_
                               ? "backward: this tensor was computed by op '" + std::string(root.op_) +
                                     "' while a NoGradGuard was alive, so no graph was recorded for it"
                               : std::string("backward: this tensor does not require a gradient (no input of its "
                                             "graph requires one)"));
  if (detail::shape_of(grad_output) != shape())
    throw std::invalid_argument("backward: gradient of shape " + shape_str(grad_output.shape()) +
                                " for an output of shape " + shape_str(shape()));
  std::vector<NodePtr<T>> order = topological_order(node_);
  // A leaf is listed once per edge that reaches it, so its gradient is final at its last
  // appearance in the reversed walk: there its post-accumulate-grad hooks run.
  std::unordered_map<Node<T>*, std::size_t> hooked_leaf_uses;
  for (const auto& n : order)
    if (!n->post_accumulate_grad_hooks_.empty()) ++hooked_leaf_uses[n.get()];

  add_grad(root, Array<T>(grad_output));
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node<T>* node = it->get();
    if (node->is_leaf_) {
      if (!node->post_accumulate_grad_hooks_.empty() && --hooked_leaf_uses[node] == 0)
        run_post_accumulate_grad_hooks(*it, order);
      continue;
    }
    if (node->grad_) {
      try {
        check_versions(*node);
        {  // unless retained or checked for anomalies, nothing reads the gradient after this
          const RunningOp<T> running(node->op_, node->retains_grad_ || t_detect_anomaly ? nullptr : &node->grad_);
          node->backward_(node->inputs_, node->data_, *node->grad_);
        }
        if (t_detect_anomaly && all_finite(*node->grad_))
          for (std::size_t i = 0; i < node->inputs_.size(); ++i)
            if (node->inputs_[i]->grad_)
              check_values(*node->inputs_[i]->grad_, false,
                           "the backward of op '" + std::string(node->op_) + "' (gradient of its input " +
                               std::to_string(i) + ")");
      } catch (...) {
        drop_interior_grads(order);  // none half-summed left for a later backward to add to
        throw;
      }
    }
    // Only leaves keep their gradient, as in PyTorch; interior gradients are scratch.
    if (!node->retains_grad_) node->grad_.reset();
    if (!retain_graph) {
      // Drop the graph: intermediate values are freed as soon as nothing else holds them.
      node->backward_ = nullptr;
      node->inputs_.clear();
      node->input_versions_.clear();
      node->released_ = true;
    }
    // Every op that reads this node has run: the list's hold on it is the last one unless
    // the caller or a retained graph keeps it, so its value is freed now, not after the walk.
    it->reset();
  }
  detail::keep_spare(std::move(order));
}

template class Tensor<float>;
template class Tensor<double>;
template class Node<float>;
template class Node<double>;

// ---- recording ops --------------------------------------------------------------------
template <class T>
Tensor<T> make_result(const char* op, Array<T>&& value, const std::vector<Tensor<T>>& inputs, BackwardFn<T> backward,
                      bool may_be_infinite) {
  if (t_detect_anomaly) {
    // An infinity is an anomaly only when the op made it from finite inputs.
    const bool inputs_finite =
        std::all_of(inputs.begin(), inputs.end(), [](const Tensor<T>& t) { return all_finite(t.data()); });
    check_values(value, may_be_infinite || !inputs_finite, "the forward of op '" + std::string(op) + "'");
  }
  NodePtr<T> node = new_node(std::move(value));
  node->op_ = op;
  const bool record =
      grad_enabled() && std::any_of(inputs.begin(), inputs.end(), [](const Tensor<T>& t) { return t.requires_grad(); });
  if (record) {
    node->requires_grad_ = true;
    node->is_leaf_ = false;
    node->inputs_.reserve(inputs.size());
    node->input_versions_.reserve(inputs.size());
    for (const auto& t : inputs) {
      node->inputs_.push_back(t.node_ptr());
      node->input_versions_.push_back(t.node_ptr()->version_);
    }
    node->backward_ = std::move(backward);
  } else if (!grad_enabled()) {
    // Would have been recorded: an input needs a gradient, or was itself cut off this way.
    node->recorded_without_grad_ = std::any_of(inputs.begin(), inputs.end(), [](const Tensor<T>& t) {
      return t.requires_grad() || t.node_ptr()->recorded_without_grad_;
    });
  }
  return Tensor<T>(std::move(node));
}

// ---- writing gradients: the first write overwrites, later writes add ------------------
template <class T> void add_grad(Node<T>& input, Array<T>&& grad) {
  if (!input.requires_grad_) return;
  if (!std::equal(grad.shape().begin(), grad.shape().end(), input.data_.shape().begin(), input.data_.shape().end()))
    throw std::logic_error(std::string(t_running_op) + ": backward produced a gradient of shape " +
                           shape_str(grad.shape()) + " for a tensor of shape " + shape_str(input.data_.shape()));
  if (!input.grad_)
    input.grad_ = std::move(grad);
  else
    xt::noalias(*input.grad_) += grad;
}

template <class T> GradTarget<T> grad_target(Node<T>& input) {
  if (!input.requires_grad_) return {};
  if (input.grad_) return {input.grad_->data(), T(1)};
  input.grad_.emplace(input.data_.shape());  // uninitialised: the caller overwrites it
  return {input.grad_->data(), T(0)};
}

template <class T> bool take_output_grad(Node<T>& input) {
  std::optional<Array<T>>*& offered = t_offered_grad<T>;
  if (!input.requires_grad_ || input.grad_ || !offered || !*offered ||
      !std::equal((*offered)->shape().begin(), (*offered)->shape().end(), input.data_.shape().begin(),
                  input.data_.shape().end()))
    return false;
  input.grad_ = std::move(**offered);
  offered->reset();
  offered = nullptr;  // taken once
  return true;
}

#define INSTANTIATE(T)                                                                                         \
  template Tensor<T> make_result(const char*, Array<T>&&, const std::vector<Tensor<T>>&, BackwardFn<T>, bool); \
  template void add_grad(Node<T>&, Array<T>&&);                                                                \
  template GradTarget<T> grad_target(Node<T>&);                                                                \
  template bool take_output_grad(Node<T>&);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
