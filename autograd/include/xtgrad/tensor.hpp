// xtgrad: the tensor, the graph node and the reverse-mode engine.
//
// A Tensor<T> is a cheap handle (one shared_ptr) to a Node<T> that holds the value,
// the gradient and, for an op's result, the op's inputs and its backward function.
// Ops build the graph as they run; backward() walks it in reverse topological order.
// T is float (training) or double (gradient checks); both are instantiated in the .cpp
// files, so a layer written once as a template serves both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <xtensor/xarray.hpp>

namespace xtgrad {

// One size, extent or axis, from any integer type, so that braces mixing int, long and
// std::size_t ({n, 3} with an int n, or {x.shape()[0], -1}) need no cast and give no
// narrowing warning. Implicit on purpose.
struct Extent {
  long value;
  template <class I, std::enable_if_t<std::is_integral_v<I>, int> = 0>
  Extent(I v) : value(static_cast<long>(v)) {}  // NOLINT(google-explicit-constructor)
};

// A tensor's sizes: a vector of std::size_t that braces of any integer type initialise.
// A negative size in braces throws std::invalid_argument. Up to four sizes live inside the
// object (xtensor's svector, as xarray's own shape), so making, copying and comparing
// shapes costs no allocation: ops do it several times each. It converts to and compares
// with std::vector<std::size_t>.
class Shape : public xt::svector<std::size_t, 4> {
  using Base = xt::svector<std::size_t, 4>;

 public:
  Shape() = default;
  Shape(std::initializer_list<Extent> sizes);
  explicit Shape(std::size_t count, std::size_t value = 0) : Base(count, value) {}
  Shape(const std::vector<std::size_t>& sizes) : Base(sizes.begin(), sizes.end()) {}  // NOLINT
  template <class It, class = typename std::iterator_traits<It>::iterator_category>
  Shape(It first, It last) : Base(first, last) {}
  operator std::vector<std::size_t>() const { return {begin(), end()}; }  // NOLINT(google-explicit-constructor)
  // svector's one-value insert makes GCC 12 warn falsely (-Warray-bounds); the range form does not.
  iterator insert(const_iterator pos, std::size_t size) { return Base::insert(pos, &size, &size + 1); }
  template <class It> iterator insert(const_iterator pos, It first, It last) { return Base::insert(pos, first, last); }
};
template <class T> using Array = xt::xarray<T>;
// Boolean mask. masked_fill and where follow PyTorch: true selects the fill / first value.
// (Attention layers take masks where true means "may attend"; they say so in their header.)
using Mask = xt::xarray<bool>;

// Named arrays: a module's parameters by dotted name, an optimizer's state; what
// checkpoints hold.
template <class T> using StateDict = std::map<std::string, Array<T>>;

template <class T> class Node;
template <class T> using NodePtr = std::shared_ptr<Node<T>>;
template <class T> class Tensor;

// The backward of one op. It receives the op's inputs, its output value and the gradient
// flowing into that output, and writes each input's gradient with add_grad() or
// grad_target() (below). It never holds the output node itself, so the graph has no
// reference cycles.
template <class T>
using BackwardFn =
    std::function<void(const std::vector<NodePtr<T>>& inputs, const Array<T>& output, const Array<T>& grad_output)>;

// The result of an op: records inputs and backward only when grad mode is on and some
// input requires a gradient; otherwise a plain leaf holding the value. may_be_infinite
// tells anomaly detection that infinities are intended (masked_fill with -inf).
template <class T>
Tensor<T> make_result(const char* op, Array<T>&& value, const std::vector<Tensor<T>>& inputs, BackwardFn<T> backward,
                      bool may_be_infinite = false);

// ---- writing an input's gradient ------------------------------------------------------
// One rule for every op, built-in or your own: the first write to a gradient overwrites
// it, every later write adds (until zero_grad()). So no gradient is filled with zeros
// first, and an input that several ops (or one op twice) read gets the sum. Two ways to
// write, one rule:
//   add_grad(input, g)         a whole array (input's shape): moved in the first time,
//                              added after.
//   auto t = grad_target(input)   to write in place (a BLAS product, a loop): t.data and
//                              t.beta, 0 the first time and 1 after, BLAS's beta in
//                              C = A B + beta C. With beta 0 the buffer is uninitialised:
//                              write every element once before anything else writes to
//                              this input's gradient.
// Both skip (add_grad) or return an empty target (grad_target) for an input that needs no
// gradient. An op that passes its output's gradient on unchanged (add, as PyTorch's
// AddBackward does) may first try take_output_grad(input): it moves that gradient into an
// input of the output's shape that has none yet, when nothing reads it after this backward
// (not retained, no anomaly check), and says whether it did; after true the op must not
// read grad_output again, so it writes its other inputs' gradients first.
template <class T> struct GradTarget {
  T* data = nullptr;  // null when the input needs no gradient
  T beta = T(0);      // 0: overwrite (the first write), 1: add
  explicit operator bool() const { return data != nullptr; }
};
template <class T> void add_grad(Node<T>& input, Array<T>&& grad);
template <class T> GradTarget<T> grad_target(Node<T>& input);
template <class T> bool take_output_grad(Node<T>& input);

// One value in the graph. Its fields are the engine's (Tensor, make_result and the two
// gradient writers above); an op's backward reads its inputs through the const accessors
// and writes their gradients through add_grad() or grad_target().
template <class T> class Node {
 public:
  Node() = default;
  // The value moved in: a default xarray would allocate a 0-d element only to be replaced.
  explicit Node(Array<T>&& data) : data_(std::move(data)) {}
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();  // iterative: dropping a chain of 100,000 ops must not recurse

  const Array<T>& data() const { return data_; }
  bool requires_grad() const { return requires_grad_; }
  bool is_leaf() const { return is_leaf_; }
  const char* op() const { return op_; }
  const std::vector<NodePtr<T>>& inputs() const { return inputs_; }  // empty for a leaf
  bool released() const { return released_; }                        // backward() already dropped its graph
  // Counts the writes through Tensor::mutable_data(). An op records its inputs' versions;
  // backward refuses to run an op whose input (or output) changed since, as PyTorch does.
  std::uint64_t version() const { return version_; }
  const xt::svector<std::uint64_t, 4>& input_versions() const { return input_versions_; }
  bool retains_grad() const { return retains_grad_; }  // see Tensor::retain_grad()

 private:
  friend class Tensor<T>;
  friend Tensor<T> make_result<T>(const char*, Array<T>&&, const std::vector<Tensor<T>>&, BackwardFn<T>, bool);
  template <class U> friend void add_grad(Node<U>& input, Array<U>&& grad);
  template <class U> friend GradTarget<U> grad_target(Node<U>& input);
  template <class U> friend bool take_output_grad(Node<U>& input);

  Array<T> data_;
  std::optional<Array<T>> grad_;  // none until the first write of a backward pass
  bool requires_grad_ = false;
  bool is_leaf_ = true;                 // created by the user, not by an op
  bool released_ = false;               // backward() already dropped this node's graph
  bool retains_grad_ = false;           // an op's result that keeps its gradient (retain_grad())
  bool recorded_without_grad_ = false;  // made by an op under NoGradGuard from inputs needing one
  std::uint64_t version_ = 0;
  xt::svector<std::uint64_t, 4> input_versions_;  // inputs_[i]'s version when the op read it (inline up to 4)
  std::uint64_t visit_mark_ = 0;                  // the last backward pass that reached it (topological_order)
  const char* op_ = "leaf";
  std::vector<NodePtr<T>> inputs_;
  BackwardFn<T> backward_;
  std::vector<std::function<void(Tensor<T>&)>> post_accumulate_grad_hooks_;  // a leaf's, in order
};

// Shape as "(2,3,4)" for error messages; any sequence of integers (a requested shape
// may hold -1).
template <class S> std::string shape_str(const S& shape) {
  std::string out = "(";
  for (auto it = shape.begin(); it != shape.end(); ++it) out += (it == shape.begin() ? "" : ",") + std::to_string(*it);
  return out + ")";
}

template <class T> class Tensor {
 public:
  using value_type = T;

  Tensor();  // an undefined tensor; defined() is false
  explicit Tensor(Array<T> data, bool requires_grad = false);
  // Nested lists: Tensor<float>({{1, 2}, {3, 4}}). A single column {{1}, {2}} is
  // ambiguous in C++ (each {x} also initialises a scalar): build it with from_array or
  // reshape a 1-D tensor.
  Tensor(xt::nested_initializer_list_t<T, 1> values, bool requires_grad = false);
  Tensor(xt::nested_initializer_list_t<T, 2> values, bool requires_grad = false);
  Tensor(xt::nested_initializer_list_t<T, 3> values, bool requires_grad = false);
  Tensor(xt::nested_initializer_list_t<T, 4> values, bool requires_grad = false);
  explicit Tensor(NodePtr<T> node) : node_(std::move(node)) {}

  bool defined() const { return node_ != nullptr; }
  const Array<T>& data() const { return node().data_; }
  // Mutable value, for initialisation and optimizer updates. Each call counts as a write:
  // a backward that needs this value as it was when an op read it then throws.
  Array<T>& mutable_data() {
    ++node().version_;
    return node_->data_;
  }
  std::uint64_t version() const { return node().version_; }  // PyTorch's t._version
  Shape shape() const;
  std::size_t dim() const { return data().dimension(); }
  std::size_t numel() const { return data().size(); }
  T item() const;  // the value of a one-element tensor

  bool requires_grad() const { return node().requires_grad_; }
  Tensor& set_requires_grad(bool requires = true);  // leaves only
  bool is_leaf() const { return node().is_leaf_; }
  const char* op_name() const { return node().op_; }

  bool has_grad() const { return node().grad_.has_value(); }
  // Throws when no gradient has arrived yet. Only leaves keep their gradient, unless
  // retain_grad() was called on an op's result before backward(), as in PyTorch.
  const Array<T>& grad() const;
  void retain_grad();
  Array<T>& mutable_grad();      // in place, for gradient clipping; throws as grad()
  void zero_grad();              // fills an existing gradient with zeros
  void set_grad(Array<T> grad);  // replaces the gradient; grad must have this tensor's shape
  void reset_grad();             // no gradient at all, as PyTorch's p.grad = None
  // PyTorch's hook of that name, on a leaf: backward() calls hook(leaf) once per pass that
  // reaches the leaf, as soon as its gradient for the pass is final (every op that reads
  // it has run its backward), while the rest of the graph is still being walked. Hooks run
  // in registration order; one that throws stops backward as a failing op does. Not
  // called in a pass that does not reach the leaf. (DistributedDataParallel starts its
  // gradient all-reduces from here.)
  void register_post_accumulate_grad_hook(std::function<void(Tensor<T>&)> hook);

  // Backward from a one-element tensor (seed 1), or with an explicit output gradient.
  // The graph is released afterwards unless retain_graph; gradients accumulate in the
  // leaves across calls until zero_grad().
  void backward(bool retain_graph = false);
  void backward(const Array<T>& grad_output, bool retain_graph = false);

  // The same value, cut from the graph: no gradient flows through it.
  Tensor detach() const;
  // torch.clone: a copy that stays in the graph (its gradient flows back to this tensor).
  Tensor clone() const;
  // A copy in scalar type U (to<double>() to gradient-check a float model): a leaf that
  // requires a gradient when this tensor does. to<T>() is this tensor itself, as PyTorch's
  // x.to(x.dtype) is x.
  template <class U> Tensor<U> to() const;

  const NodePtr<T>& node_ptr() const { return node_; }

 private:
  Node<T>& node() const;
  // Every node root's gradient reaches, inputs before the ops that read them.
  static std::vector<NodePtr<T>> topological_order(const NodePtr<T>& root);
  // backward's helpers (hooks.cpp): a leaf's hooks; the interior gradients dropped on error.
  static void run_post_accumulate_grad_hooks(const NodePtr<T>& leaf, const std::vector<NodePtr<T>>& order);
  static void drop_interior_grads(const std::vector<NodePtr<T>>& order);
  NodePtr<T> node_;
};

// ---- grad mode ------------------------------------------------------------------------
bool grad_enabled();  // per thread; true unless a NoGradGuard is alive on this thread

// While alive, ops on this thread record no graph (evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// ---- anomaly detection ----------------------------------------------------------------
// While an AnomalyGuard is alive on this thread (as torch.autograd.detect_anomaly), every
// op checks what it produces: a NaN, or an infinity made from finite inputs, in an op's
// output or in the gradient its backward gives an input throws AnomalyError naming the
// op, forward or backward, the input and the first bad element. It costs a pass over
// every value: for hunting a bug, not for training.
class AnomalyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
bool anomaly_detection_enabled();
class AnomalyGuard {
 public:
  explicit AnomalyGuard(bool enabled = true);
  ~AnomalyGuard();
  AnomalyGuard(const AnomalyGuard&) = delete;
  AnomalyGuard& operator=(const AnomalyGuard&) = delete;

 private:
  bool previous_;
};

// ---- creation -------------------------------------------------------------------------
template <class T> Tensor<T> zeros(const Shape& shape, bool requires_grad = false);
template <class T> Tensor<T> ones(const Shape& shape, bool requires_grad = false);
template <class T> Tensor<T> full(const Shape& shape, T value, bool requires_grad = false);
template <class T> Tensor<T> from_array(Array<T> data, bool requires_grad = false);
// torch.tensor: values in row-major order, in the given shape (values.size() must be its
// product): tensor<float>({1, 2, 3, 4}, {2, 2}).
template <class T> Tensor<T> tensor(std::vector<T> values, const Shape& shape, bool requires_grad = false);
// torch.arange: start, start + step, ... while below end (above it for a negative step):
// ceil((end - start) / step) values, computed in double as PyTorch does.
template <class T> Tensor<T> arange(double end);
template <class T> Tensor<T> arange(double start, double end, double step = 1);
// torch.linspace: steps values from start to end inclusive, evenly spaced.
template <class T> Tensor<T> linspace(double start, double end, std::size_t steps);
// torch.eye: (n, m) with ones on the diagonal; m defaults to n.
template <class T> Tensor<T> eye(std::size_t n);
template <class T> Tensor<T> eye(std::size_t n, std::size_t m);
// New leaves of x's shape (x's value and graph are not used), as torch.*_like.
template <class T> Tensor<T> zeros_like(const Tensor<T>& x, bool requires_grad = false);
template <class T> Tensor<T> ones_like(const Tensor<T>& x, bool requires_grad = false);
template <class T>
Tensor<T> full_like(const Tensor<T>& x, typename Tensor<T>::value_type value, bool requires_grad = false);
class Generator;
// N(0, 1) values drawn from gen (random.hpp), in x's shape.
template <class T> Tensor<T> randn_like(const Tensor<T>& x, Generator& gen, bool requires_grad = false);
// Prints as PyTorch's repr with its default print options (4 decimals; "1." when every
// value is an integer; scientific when the largest |value| is over 1e8 or 1000 times the
// smallest nonzero one, or the smallest is below 1e-4; the middle of a tensor over 1000
// values elided as "..."), then requires_grad=True or grad_fn=<...> and, for double,
// dtype=torch.float64: tensor([[1.0000, 2.5000],
//                              [3.0000, 4.0000]], requires_grad=True)
// grad_fn names are PyTorch's class names where the op maps onto one (MulBackward0,
// CatBackward0, AminBackward0); where PyTorch picks a name by arguments this prints one
// of them: SumBackward0 (a whole sum; over axes PyTorch says SumBackward1), MmBackward0
// for every matmul and bmm (PyTorch: DotBackward0, MvBackward0, BmmBackward0, ...).
template <class T> std::ostream& operator<<(std::ostream& out, const Tensor<T>& x);

}  // namespace xtgrad
