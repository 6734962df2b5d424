// Creating tensors as PyTorch's factory functions do (nested lists, torch.tensor, zeros,
// ones, full, arange, linspace, eye, the *_like family), and the two copies a Tensor makes
// of itself: clone() (in the graph) and to<U>() (a leaf in another scalar type).
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xoperation.hpp>

#include "detail.hpp"
#include "xtgrad/random.hpp"

namespace xtgrad {
namespace {

std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

// values (n) -> shape, n = product(shape)
template <class T> Tensor<T> tensor(std::vector<T> values, const Shape& shape, bool requires_grad) {
  if (values.size() != detail::product(shape))
    detail::fail("tensor", std::to_string(values.size()) + " values for shape " + shape_str(shape) + ", which holds " +
                               std::to_string(detail::product(shape)));
  Array<T> data = Array<T>::from_shape(shape);
  std::copy(values.begin(), values.end(), data.begin());
  return Tensor<T>(std::move(data), requires_grad);
}

template <class T> Tensor<T> arange(double end) { return arange<T>(0.0, end, 1.0); }

// -> (ceil((end - start) / step)): value i is start + i step, computed in double and then
// rounded to T, as PyTorch's CPU kernel does.
template <class T> Tensor<T> arange(double start, double end, double step) {
  const std::string range = "[" + number(start) + ", " + number(end) + ") with step " + number(step);
  if (step == 0) detail::fail("arange", "step must be nonzero: " + range);
  if (!std::isfinite(start) || !std::isfinite(end)) detail::fail("arange", "unsupported range " + range);
  if ((step > 0 && end < start) || (step < 0 && end > start))
    detail::fail("arange", "end lies on the wrong side of start for the step's sign: " + range);
  const double length = std::ceil((end - start) / step);
  if (!(length < 1e15)) detail::fail("arange", "too many values: " + range);
  Array<T> data = Array<T>::from_shape({std::size_t(length)});
  for (std::size_t i = 0; i < data.size(); ++i) data(i) = T(start + step * double(i));
  return Tensor<T>(std::move(data));
}

// -> (steps): start + i (end - start) / (steps - 1) for the first half, end - (steps - 1 - i)
// times that step for the second, so that both ends are exact; in T, as PyTorch's kernel.
template <class T> Tensor<T> linspace(double start, double end, std::size_t steps) {
  Array<T> data = Array<T>::from_shape({steps});
  const T first = T(start), last = T(end);
  const T step = steps > 1 ? (last - first) / T(steps - 1) : T(0);
  const std::size_t halfway = steps / 2;
  for (std::size_t i = 0; i < steps; ++i) data(i) = i < halfway ? first + step * T(i) : last - step * T(steps - 1 - i);
  if (steps == 1) data(0) = first;  // a single value is start, as in PyTorch
  return Tensor<T>(std::move(data));
}

template <class T> Tensor<T> eye(std::size_t n) { return eye<T>(n, n); }

// -> (n, m)
template <class T> Tensor<T> eye(std::size_t n, std::size_t m) {
  Array<T> data = xt::zeros<T>({n, m});
  for (std::size_t i = 0; i < std::min(n, m); ++i) data(i, i) = T(1);
  return Tensor<T>(std::move(data));
}

template <class T> Tensor<T> zeros_like(const Tensor<T>& x, bool requires_grad) {
  detail::check_defined("zeros_like", x);
  return zeros<T>(x.shape(), requires_grad);
}

template <class T> Tensor<T> ones_like(const Tensor<T>& x, bool requires_grad) {
  detail::check_defined("ones_like", x);
  return ones<T>(x.shape(), requires_grad);
}

template <class T> Tensor<T> full_like(const Tensor<T>& x, typename Tensor<T>::value_type value, bool requires_grad) {
  detail::check_defined("full_like", x);
  return full<T>(x.shape(), value, requires_grad);
}

template <class T> Tensor<T> randn_like(const Tensor<T>& x, Generator& gen, bool requires_grad) {
  detail::check_defined("randn_like", x);
  return randn<T>(x.shape(), gen, T(0), T(1), requires_grad);
}

// x (any) -> the same values in new storage; dx = dy
template <class T> Tensor<T> Tensor<T>::clone() const {
  detail::check_defined("clone", *this);
  return make_result<T>(
      "clone", Array<T>(data()), {*this},
      [](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) { add_grad(*in[0], Array<T>(g)); });
}

template <class T> template <class U> Tensor<U> Tensor<T>::to() const {
  detail::check_defined("to", *this);
  if constexpr (std::is_same_v<T, U>) {
    return *this;
  } else {
    Array<U> copy = xt::cast<U>(data());
    return Tensor<U>(std::move(copy), requires_grad());
  }
}

namespace {
// xtensor sizes an array from a nested list's first row at each depth and then copies
// every value in sequence, so a ragged list is not refused: {{1, 2}, {3}} became
// (1,2,3,garbage) and {{1}, {2, 3}} wrote past the end of its (2,1) buffer. These check
// that every list at one depth has the length of the first one there.
template <class V> void first_lengths(const V&, Shape&) {}  // a value: the innermost depth was reached
template <class L> void first_lengths(std::initializer_list<L> list, Shape& lengths) {
  lengths.push_back(list.size());
  if (list.size() > 0) first_lengths(*list.begin(), lengths);
}

template <class V> void check_lengths(const V&, const Shape&, std::size_t, const std::string&) {}
template <class L>
void check_lengths(std::initializer_list<L> list, const Shape& lengths, std::size_t depth, const std::string& where) {
  if (list.size() != lengths[depth]) {  // never at depth 0: lengths[0] is this list's own
    std::string first;
    for (std::size_t d = 0; d < depth; ++d) first += "[0]";
    throw std::invalid_argument("Tensor: ragged nested initializer list: the list at " + where + " has length " +
                                std::to_string(list.size()) + " but the one at " + first + " has length " +
                                std::to_string(lengths[depth]) + " (every list at one depth needs the same length)");
  }
  for (std::size_t i = 0; i < list.size(); ++i)
    check_lengths(list.begin()[i], lengths, depth + 1, where + "[" + std::to_string(i) + "]");
}

template <class T, class List> Array<T> rectangular_array(List list) {
  Shape lengths;
  first_lengths(list, lengths);
  check_lengths(list, lengths, 0, "");
  return Array<T>(list);
}
}  // namespace

template <class T> Tensor<T>::Tensor(xt::nested_initializer_list_t<T, 1> v, bool rg) : Tensor(Array<T>(v), rg) {}
template <class T>
Tensor<T>::Tensor(xt::nested_initializer_list_t<T, 2> v, bool rg) : Tensor(rectangular_array<T>(v), rg) {}
template <class T>
Tensor<T>::Tensor(xt::nested_initializer_list_t<T, 3> v, bool rg) : Tensor(rectangular_array<T>(v), rg) {}
template <class T>
Tensor<T>::Tensor(xt::nested_initializer_list_t<T, 4> v, bool rg) : Tensor(rectangular_array<T>(v), rg) {}

template <class T> Tensor<T> zeros(const Shape& shape, bool requires_grad) {
  return Tensor<T>(xt::zeros<T>(shape), requires_grad);
}
template <class T> Tensor<T> ones(const Shape& shape, bool requires_grad) {
  return Tensor<T>(xt::ones<T>(shape), requires_grad);
}
template <class T> Tensor<T> full(const Shape& shape, T value, bool requires_grad) {
  Array<T> data(shape);
  data.fill(value);
  return Tensor<T>(std::move(data), requires_grad);
}
template <class T> Tensor<T> from_array(Array<T> data, bool requires_grad) {
  return Tensor<T>(std::move(data), requires_grad);
}

#define INSTANTIATE(T)                                                                  \
  template Tensor<T>::Tensor(xt::nested_initializer_list_t<T, 1>, bool);                \
  template Tensor<T>::Tensor(xt::nested_initializer_list_t<T, 2>, bool);                \
  template Tensor<T>::Tensor(xt::nested_initializer_list_t<T, 3>, bool);                \
  template Tensor<T>::Tensor(xt::nested_initializer_list_t<T, 4>, bool);                \
  template Tensor<T> zeros(const Shape&, bool);                                         \
  template Tensor<T> ones(const Shape&, bool);                                          \
  template Tensor<T> full(const Shape&, T, bool);                                       \
  template Tensor<T> from_array(Array<T>, bool);                                        \
  template Tensor<T> tensor(std::vector<T>, const Shape&, bool);                        \
  template Tensor<T> arange(double);                                                    \
  template Tensor<T> arange(double, double, double);                                    \
  template Tensor<T> linspace(double, double, std::size_t);                             \
  template Tensor<T> eye(std::size_t);                                                  \
  template Tensor<T> eye(std::size_t, std::size_t);                                     \
  template Tensor<T> zeros_like(const Tensor<T>&, bool);                                \
  template Tensor<T> ones_like(const Tensor<T>&, bool);                                 \
  template Tensor<T> full_like(const Tensor<T>&, typename Tensor<T>::value_type, bool); \
  template Tensor<T> randn_like(const Tensor<T>&, Generator&, bool);                    \
  template Tensor<T> Tensor<T>::clone() const;                                          \
  template Tensor<float> Tensor<T>::to<float>() const;                                  \
  template Tensor<double> Tensor<T>::to<double>() const;
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
