// Post-accumulate-grad hooks (Tensor::register_post_accumulate_grad_hook) and the clean-up
// backward() does when an op's backward or a hook throws.
#include <stdexcept>
#include <string>
#include <utility>

#include "detail.hpp"
#include "xtgrad/tensor.hpp"

namespace xtgrad {

template <class T> void Tensor<T>::register_post_accumulate_grad_hook(std::function<void(Tensor<T>&)> hook) {
  if (!node().is_leaf_ || !node_->requires_grad_)
    throw std::logic_error(
        "register_post_accumulate_grad_hook: only a leaf tensor that requires a gradient takes one, and this is " +
        (node_->is_leaf_ ? std::string("a leaf that requires none")
                         : "the result of op '" + std::string(node_->op_) + "'"));
  if (!hook) throw std::invalid_argument("register_post_accumulate_grad_hook: empty function");
  node_->post_accumulate_grad_hooks_.push_back(std::move(hook));
}

// Called by backward() at the leaf's last appearance in its walk: the leaf's gradient for
// this pass is final.
template <class T>
void Tensor<T>::run_post_accumulate_grad_hooks(const NodePtr<T>& leaf, const std::vector<NodePtr<T>>& order) {
  try {
    Tensor<T> handle(leaf);
    const auto& hooks = leaf->post_accumulate_grad_hooks_;
    for (std::size_t i = 0; i < hooks.size(); ++i) hooks[i](handle);  // by index: a hook may add one
  } catch (...) {
    drop_interior_grads(order);
    throw;
  }
}

// After an error, no half-summed interior gradient stays behind for a later backward to add to.
// (backward() has already dropped the ops it finished: null in order.)
template <class T> void Tensor<T>::drop_interior_grads(const std::vector<NodePtr<T>>& order) {
  for (const auto& n : order)
    if (n && !n->is_leaf_ && !n->retains_grad_) n->grad_.reset();
}

#define INSTANTIATE(T)                                                                                        \
  template void Tensor<T>::register_post_accumulate_grad_hook(std::function<void(Tensor<T>&)>);               \
  template void Tensor<T>::run_post_accumulate_grad_hooks(const NodePtr<T>&, const std::vector<NodePtr<T>>&); \
  template void Tensor<T>::drop_interior_grads(const std::vector<NodePtr<T>>&);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
