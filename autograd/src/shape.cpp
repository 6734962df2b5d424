// Shapes: the Shape type's checked constructor and the shape helpers every op uses
// (axis normalisation, broadcasting, reducing a broadcast gradient back to its input).
#include <algorithm>
#include <stdexcept>
#include <string>

#include <xtensor/xbuilder.hpp>

#include "detail.hpp"
#include "xtgrad/ops.hpp"
#include "xtgrad/tensor.hpp"

namespace xtgrad {

Shape::Shape(std::initializer_list<Extent> sizes) {
  reserve(sizes.size());
  for (const Extent& e : sizes) {
    if (e.value < 0) throw std::invalid_argument("Shape: negative size " + std::to_string(e.value));
    push_back(static_cast<std::size_t>(e.value));
  }
}

Axes::Axes(std::initializer_list<Extent> axes) {
  reserve(axes.size());
  for (const Extent& e : axes) push_back(static_cast<int>(e.value));
}

Extents::Extents(std::initializer_list<Extent> extents) {
  reserve(extents.size());
  for (const Extent& e : extents) push_back(e.value);
}

// ---- detail ---------------------------------------------------------------------------
namespace detail {

std::size_t normalize_axis(int axis, std::size_t ndim, const char* op) {
  const long n = static_cast<long>(ndim);
  if (axis < -n || axis >= n)
    fail(op, "axis " + std::to_string(axis) + " out of range for " + std::to_string(ndim) + " dimensions");
  return static_cast<std::size_t>(axis < 0 ? axis + n : axis);
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const std::size_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      fail(op, "shapes cannot be broadcast together: " + shape_str(a) + " and " + shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::size_t product(const Shape& shape, std::size_t begin, std::size_t end) {
  std::size_t p = 1;
  for (std::size_t i = begin; i < std::min(end, shape.size()); ++i) p *= shape[i];
  return p;
}

template <class T> void add_grad_summed(Node<T>& node, Array<T>&& grad) {
  const Shape gshape = shape_of(grad), shape = shape_of(node.data());
  // Nothing to sum: grad goes in as it is. (Returning it from a helper would cost a move,
  // and xtensor moves an array's shape vectors element by element: 5-10% of a small op.)
  if (gshape == shape) return add_grad(node, std::move(grad));
  Array<T> reduced = xt::zeros<T>(shape);
  const T* g = grad.data();
  T* r = reduced.data();
  for_each_broadcast(gshape, gshape, shape, [&](std::size_t i, std::size_t, std::size_t ir) { r[ir] += g[i]; });
  add_grad(node, std::move(reduced));
}
template void add_grad_summed(Node<float>&, Array<float>&&);
template void add_grad_summed(Node<double>&, Array<double>&&);

}  // namespace detail

}  // namespace xtgrad
