// Ordering and comparing: torch.sort / argsort (values differentiable, indices not), the
// elementwise comparisons that build masks, and torch.multinomial. Only sort's values
// carry a gradient: an index or a mask has none.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>

#include "detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

using detail::product;

// x's layout around axis: (outer, n, inner) with element (o, i, j) at (o n + i) inner + j.
struct AxisLayout {
  std::size_t outer, n, inner;
  AxisLayout(const Shape& s, std::size_t a) : outer(product(s, 0, a)), n(s[a]), inner(product(s, a + 1)) {}
  std::size_t at(std::size_t o, std::size_t i, std::size_t j) const { return (o * n + i) * inner + j; }
};

// The sorting permutation of every line along axis, in x's shape: ascending with NaN last,
// or descending with NaN first, ties in index order (stable), as torch.sort(stable=True).
template <class T> Indices sort_order(const Tensor<T>& x, const char* op, int axis, bool descending) {
  if (x.dim() == 0) detail::fail(op, "needs at least one dimension, got a scalar");
  const Shape xs = x.shape();
  const AxisLayout l(xs, detail::normalize_axis(axis, xs.size(), op));
  Indices order(xs);
  std::vector<std::size_t> line(l.n);
  std::vector<T> values(l.n);
  const T* data = x.data().data();
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t j = 0; j < l.inner; ++j) {
      for (std::size_t i = 0; i < l.n; ++i) values[i] = data[l.at(o, i, j)];
      std::iota(line.begin(), line.end(), std::size_t(0));
      const auto before = [&](std::size_t p, std::size_t q) {
        const T a = values[p], b = values[q];
        return descending ? (std::isnan(a) && !std::isnan(b)) || a > b : (!std::isnan(a) && std::isnan(b)) || a < b;
      };
      std::stable_sort(line.begin(), line.end(), before);
      for (std::size_t i = 0; i < l.n; ++i) order.data()[l.at(o, i, j)] = line[i];
    }
  return order;
}

// out[k] = a[k] op b[k], both broadcast to the common shape
template <class T, class Compare> Mask compare(const char* op, const Tensor<T>& a, const Tensor<T>& b, Compare cmp) {
  detail::check_defined(op, a, b);
  const Shape sa = a.shape(), sb = b.shape(), out_shape = detail::broadcast_shapes(sa, sb, op);
  xt::xarray<bool> out(out_shape);
  const T* pa = a.data().data();
  const T* pb = b.data().data();
  detail::for_each_broadcast(
      out_shape, sa, sb, [&](std::size_t i, std::size_t ia, std::size_t ib) { out.data()[i] = cmp(pa[ia], pb[ib]); });
  return out;
}

template <class T, class Compare> Mask compare(const char* op, const Tensor<T>& a, T s, Compare cmp) {
  detail::check_defined(op, a);
  xt::xarray<bool> out(a.shape());
  std::transform(a.data().begin(), a.data().end(), out.begin(), [&](T v) { return cmp(v, s); });
  return out;
}

// One row of multinomial: k category indices drawn from weights w (C) into out.
void draw_row(std::vector<double> w, std::size_t k, bool replacement, Generator& gen, std::size_t* out) {
  std::vector<double> cumulative(w.size());
  for (std::size_t s = 0; s < k; ++s) {
    std::partial_sum(w.begin(), w.end(), cumulative.begin());
    // The first category whose running sum passes u: a zero weight is never chosen.
    const double u = gen.uniform() * cumulative.back();
    std::size_t c = std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin();
    if (c == w.size())  // u rounded up onto the total: the last nonzero weight
      c = std::size_t(std::find_if(w.rbegin(), w.rend(), [](double v) { return v != 0; }).base() - w.begin()) - 1;
    out[s] = c;
    if (!replacement) w[c] = 0;
  }
}

}  // namespace

// x (..., n, ...) -> values, indices of x's shape
template <class T> Sorted<T> sort(const Tensor<T>& x, int axis, bool descending) {
  detail::check_defined("sort", x);
  Indices order = sort_order(x, "sort", axis, descending);
  const Shape xs = x.shape();
  const AxisLayout l(xs, detail::normalize_axis(axis, xs.size(), "sort"));
  Array<T> values(xs);
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t i = 0; i < l.n; ++i)
      for (std::size_t j = 0; j < l.inner; ++j)
        values.data()[l.at(o, i, j)] = x.data().data()[l.at(o, order.data()[l.at(o, i, j)], j)];
  auto shared = std::make_shared<const Indices>(order);
  Tensor<T> result = make_result<T>("sort", std::move(values), {x},
                                    [shared, l](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                                      // in the forward pass this was out[i] = x[order[i]] along the axis: dx[order[i]]
                                      // = dy[i] (a permutation: every element of dx is written once)
                                      const GradTarget<T> dx = grad_target(*in[0]);
                                      if (!dx) return;
                                      for (std::size_t o = 0; o < l.outer; ++o)
                                        for (std::size_t i = 0; i < l.n; ++i)
                                          for (std::size_t j = 0; j < l.inner; ++j) {
                                            const std::size_t k = l.at(o, i, j);
                                            detail::write_grad(dx, l.at(o, shared->data()[k], j), g.data()[k]);
                                          }
                                    });
  return {std::move(result), std::move(order)};
}

template <class T> Indices argsort(const Tensor<T>& x, int axis, bool descending) {
  detail::check_defined("argsort", x);
  return sort_order(x, "argsort", axis, descending);
}

template <class T> Mask eq(const Tensor<T>& a, const Tensor<T>& b) { return compare("eq", a, b, std::equal_to<T>()); }
template <class T> Mask ne(const Tensor<T>& a, const Tensor<T>& b) {
  return compare("ne", a, b, std::not_equal_to<T>());
}
template <class T> Mask lt(const Tensor<T>& a, const Tensor<T>& b) { return compare("lt", a, b, std::less<T>()); }
template <class T> Mask le(const Tensor<T>& a, const Tensor<T>& b) { return compare("le", a, b, std::less_equal<T>()); }
template <class T> Mask gt(const Tensor<T>& a, const Tensor<T>& b) { return compare("gt", a, b, std::greater<T>()); }
template <class T> Mask ge(const Tensor<T>& a, const Tensor<T>& b) {
  return compare("ge", a, b, std::greater_equal<T>());
}
template <class T> Mask eq(const Tensor<T>& a, scalar_t<T> s) { return compare("eq", a, s, std::equal_to<T>()); }
template <class T> Mask ne(const Tensor<T>& a, scalar_t<T> s) { return compare("ne", a, s, std::not_equal_to<T>()); }
template <class T> Mask lt(const Tensor<T>& a, scalar_t<T> s) { return compare("lt", a, s, std::less<T>()); }
template <class T> Mask le(const Tensor<T>& a, scalar_t<T> s) { return compare("le", a, s, std::less_equal<T>()); }
template <class T> Mask gt(const Tensor<T>& a, scalar_t<T> s) { return compare("gt", a, s, std::greater<T>()); }
template <class T> Mask ge(const Tensor<T>& a, scalar_t<T> s) { return compare("ge", a, s, std::greater_equal<T>()); }

// probs (C) or (N,C) -> (num_samples) or (N,num_samples)
template <class T>
Indices multinomial(const Tensor<T>& probs, std::size_t num_samples, bool replacement, Generator& gen) {
  detail::check_defined("multinomial", probs);
  const Shape ps = probs.shape();
  const std::string where = " (probs " + shape_str(ps) + ", num_samples " + std::to_string(num_samples) + ")";
  if (ps.size() != 1 && ps.size() != 2) detail::fail("multinomial", "probs must be (C) or (N,C)" + where);
  if (num_samples == 0) detail::fail("multinomial", "num_samples must be positive" + where);
  const std::size_t rows = ps.size() == 2 ? ps[0] : 1, c = ps.back();
  Shape out_shape = ps;
  out_shape.back() = num_samples;
  Indices out(out_shape);
  for (std::size_t r = 0; r < rows; ++r) {
    const T* row = probs.data().data() + r * c;
    std::vector<double> w(row, row + c);
    const std::size_t nonzero = std::count_if(w.begin(), w.end(), [](double v) { return v != 0; });
    if (std::any_of(w.begin(), w.end(), [](double v) { return !std::isfinite(v) || v < 0; }))
      detail::fail("multinomial", "row " + std::to_string(r) + " holds inf, NaN or a negative weight" + where);
    if (nonzero == 0) detail::fail("multinomial", "row " + std::to_string(r) + " has no nonzero weight" + where);
    if (!replacement && nonzero < num_samples)
      detail::fail("multinomial", "row " + std::to_string(r) + " has " + std::to_string(nonzero) +
                                      " nonzero weights: too few to draw without replacement" + where);
    draw_row(std::move(w), num_samples, replacement, gen, out.data() + r * num_samples);
  }
  return out;
}

#define INSTANTIATE(T)                                   \
  template Sorted<T> sort(const Tensor<T>&, int, bool);  \
  template Indices argsort(const Tensor<T>&, int, bool); \
  template Mask eq(const Tensor<T>&, const Tensor<T>&);  \
  template Mask ne(const Tensor<T>&, const Tensor<T>&);  \
  template Mask lt(const Tensor<T>&, const Tensor<T>&);  \
  template Mask le(const Tensor<T>&, const Tensor<T>&);  \
  template Mask gt(const Tensor<T>&, const Tensor<T>&);  \
  template Mask ge(const Tensor<T>&, const Tensor<T>&);  \
  template Mask eq(const Tensor<T>&, T);                 \
  template Mask ne(const Tensor<T>&, T);                 \
  template Mask lt(const Tensor<T>&, T);                 \
  template Mask le(const Tensor<T>&, T);                 \
  template Mask gt(const Tensor<T>&, T);                 \
  template Mask ge(const Tensor<T>&, T);                 \
  template Indices multinomial(const Tensor<T>&, std::size_t, bool, Generator&);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
