// Helpers shared by the op files; not installed.
#pragma once

#include <stdexcept>
#include <string>

#include "xtgrad/tensor.hpp"

namespace xtgrad::detail {

[[noreturn]] inline void fail(const std::string& op, const std::string& what) {
  throw std::invalid_argument(op + ": " + what);
}

// axis in [-ndim, ndim) -> [0, ndim)
std::size_t normalize_axis(int axis, std::size_t ndim, const char* op);

// NumPy broadcast of two shapes; throws naming op and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Undo broadcasting: sum grad over the axes along which shape was broadcast.
template <class T>
Array<T> sum_to(Array<T>&& grad, const Shape& shape);

template <class T>
Shape shape_of(const Array<T>& a) {
  return Shape(a.shape().begin(), a.shape().end());
}

std::size_t product(const Shape& shape, std::size_t begin = 0, std::size_t end = SIZE_MAX);

// node's gradient buffer for an op that writes its gradient in place (BLAS with beta),
// allocated uninitialised on first use; `fresh` says it holds no values yet, so the first
// write must overwrite (beta = 0) rather than add.
template <class T>
T* grad_buffer(Node<T>& node, bool& fresh) {
  fresh = !node.has_grad;
  if (fresh) {
    node.grad = Array<T>(node.data.shape());
    node.has_grad = true;
  }
  return node.grad.data();
}

}  // namespace xtgrad::detail

// Explicit instantiation for both scalar types: XTGRAD_INSTANTIATE(MACRO) runs
// MACRO(float) and MACRO(double).
#define XTGRAD_INSTANTIATE(MACRO) MACRO(float) MACRO(double)
