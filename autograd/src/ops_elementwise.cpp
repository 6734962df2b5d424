// Elementwise ops. Binary ops broadcast as NumPy: a and b -> out of the broadcast shape;
// each backward sums its gradient back to its input's shape (detail::add_grad_summed).
#include <algorithm>
#include <cmath>
#include <type_traits>

#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "detail.hpp"
#include "kernels.hpp"
#include "parallel.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

using detail::shape_of;

// Adds the gradient computed by make_grad() (an xtensor expression) to node; skips the
// work when node needs no gradient. A unary op's gradient has its input's shape, so it is
// evaluated straight into node's gradient, element by element in memory order as
// xtensor's own assignment does (the same bits): no temporary array to move in, which
// costs about as much as the arithmetic on a small tensor. Anything else goes through
// add_grad, which checks the shape.
template <class T, class F> void grad_to(Node<T>& node, F&& make_grad) {
  if (!node.requires_grad()) return;
  const auto grad = make_grad();
  const Array<T>& x = node.data();
  const bool walks_as_x = std::equal(grad.shape().begin(), grad.shape().end(), x.shape().begin(), x.shape().end()) &&
                          grad.has_linear_assign(x.strides());
  if (!walks_as_x) return add_grad(node, Array<T>(grad));
  const GradTarget<T> t = grad_target(node);
  auto g = grad.linear_cbegin();
  if (t.beta == T(0))
    for (std::size_t i = 0; i < x.size(); ++i, ++g) t.data[i] = *g;
  else
    for (std::size_t i = 0; i < x.size(); ++i, ++g) t.data[i] += *g;
}

// A binary op on scalars, broadcast over a and b: out = forward(x, y); backward_a(x, y,
// out, g) and backward_b(...) give each element's gradient contributions, summed into
// each input's shape by the same walk. passes_grad: both contributions are g itself (add),
// so an input of the output's shape may take g instead of a copy (take_output_grad).
template <class T, class Fwd, class BackA, class BackB>
Tensor<T> binary(const char* op, const Tensor<T>& a, const Tensor<T>& b, Fwd forward, BackA backward_a,
                 BackB backward_b, bool passes_grad = false) {
  detail::check_defined(op, a, b);
  const Shape sa = a.shape(), sb = b.shape(), so = detail::broadcast_shapes(sa, sb, op);
  Array<T> out(so);
  const T* x = a.data().data();
  const T* y = b.data().data();
  T* o = out.data();
  detail::for_each_broadcast_parallel(
      so, so, sa, sb, [&](std::size_t i, std::size_t ia, std::size_t ib) { o[i] = forward(x[ia], y[ib]); });
  return make_result<T>(
      op, std::move(out), {a, b},
      // The shapes are read again from the nodes (backward refuses inputs changed since)
      // rather than captured: a closure this small lives inside the std::function, unallocated.
      [backward_a, backward_b, passes_grad](const std::vector<NodePtr<T>>& in, const Array<T>& out, const Array<T>& g) {
        const Shape sa = shape_of(in[0]->data()), sb = shape_of(in[1]->data()), so = shape_of(out);
        const T* x = in[0]->data().data();
        const T* y = in[1]->data().data();
        const T* o = out.data();
        const T* go = g.data();
        // Each input's gradient: its contributions summed at its own
        // (broadcast) offsets, ia for a, ib for b (of_a a compile-time constant, so
        // that the inner loop has no branch and vectorises).
        const auto gradient = [&](Node<T>& node, const Shape& shape, auto contribution, auto of_a) {
          if (!node.requires_grad()) return;
          if (shape == so) {  // not broadcast: written in place (no array to move in), no zeroing
            const GradTarget<T> t = grad_target(node);
            T* p = t.data;
            // Two loops, so that neither reads p conditionally (which keeps a loop scalar).
            if (t.beta == T(0))
              detail::for_each_broadcast_parallel(so, so, sa, sb, [&](std::size_t i, std::size_t ia, std::size_t ib) {
                p[i] = contribution(x[ia], y[ib], o[i], go[i]);
              });
            else
              detail::for_each_broadcast_parallel(so, so, sa, sb, [&](std::size_t i, std::size_t ia, std::size_t ib) {
                p[i] += contribution(x[ia], y[ib], o[i], go[i]);
              });
            return;
          }
          Array<T> gin = xt::zeros<T>(shape);
          T* p = gin.data();
          detail::for_each_broadcast_parallel(shape, so, sa, sb, [&](std::size_t i, std::size_t ia, std::size_t ib) {
            p[decltype(of_a)::value ? ia : ib] += contribution(x[ia], y[ib], o[i], go[i]);
          });
          add_grad(node, std::move(gin));
        };
        const auto write = [&](int i) {
          i == 0 ? gradient(*in[0], sa, backward_a, std::true_type{})
                 : gradient(*in[1], sb, backward_b, std::false_type{});
        };
        // add: an input of the output's shape may take g itself, written after the other has
        // read g (for x + x the first write leaves nothing to take: take_output_grad says no)
        const int taker = !passes_grad ? -1 : sb == so ? 1 : sa == so ? 0 : -1;
        for (int i : {0, 1})
          if (i != taker) write(i);
        if (taker >= 0 && !take_output_grad(*in[taker])) write(taker);
      });
}

// A unary op: out = forward(x); backward(x, out, g) gives the input's gradient.
template <class T, class Fwd, class Back>
Tensor<T> unary(const char* op, const Tensor<T>& x, Fwd forward, Back backward) {
  detail::check_defined(op, x);
  return make_result<T>(op, Array<T>(forward(x.data())), {x},
                        [backward](const std::vector<NodePtr<T>>& in, const Array<T>& out, const Array<T>& g) {
                          grad_to(*in[0], [&] { return backward(in[0]->data(), out, g); });
                        });
}

}  // namespace

// ---- binary ---------------------------------------------------------------------------
template <class T> Tensor<T> add(const Tensor<T>& a, const Tensor<T>& b) {
  return binary(
      "add", a, b, [](const auto& x, const auto& y) { return x + y; },
      [](const auto&, const auto&, const auto&, const auto& g) { return g; },
      [](const auto&, const auto&, const auto&, const auto& g) { return g; }, true);
}

template <class T> Tensor<T> sub(const Tensor<T>& a, const Tensor<T>& b) {
  return binary(
      "sub", a, b, [](const auto& x, const auto& y) { return x - y; },
      [](const auto&, const auto&, const auto&, const auto& g) { return g; },
      [](const auto&, const auto&, const auto&, const auto& g) { return -g; });
}

template <class T> Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b) {
  return binary(
      "mul", a, b, [](const auto& x, const auto& y) { return x * y; },
      [](const auto&, const auto& y, const auto&, const auto& g) { return g * y; },
      [](const auto& x, const auto&, const auto&, const auto& g) { return g * x; });
}

template <class T> Tensor<T> div(const Tensor<T>& a, const Tensor<T>& b) {
  // d(x/y)/dx = 1/y, d(x/y)/dy = -x/y^2 = -out/y
  return binary(
      "div", a, b, [](const auto& x, const auto& y) { return x / y; },
      [](const auto&, const auto& y, const auto&, const auto& g) { return g / y; },
      [](const auto&, const auto& y, const auto& out, const auto& g) { return -g * out / y; });
}

template <class T> Tensor<T> pow(const Tensor<T>& base, const Tensor<T>& exponent) {
  // d(x^y)/dx = y x^(y-1), d(x^y)/dy = x^y log x. As in PyTorch, the first is 0 where
  // y == 0 and the second 0 where x == 0 and y >= 0 (not 0 * inf = NaN at x = 0).
  return binary(
      "pow", base, exponent, [](T x, T y) { return std::pow(x, y); },
      [](T x, T y, T, T g) { return y == T(0) ? T(0) : g * y * std::pow(x, y - T(1)); },
      [](T x, T y, T out, T g) { return x == T(0) && y >= T(0) ? T(0) : g * out * std::log(x); });
}

// ---- with a scalar --------------------------------------------------------------------
// With the scalar first, the tensor is argument 2: those check it themselves, before
// unary() would call it argument 1.
template <class T> Tensor<T> add(const Tensor<T>& a, scalar_t<T> s) {
  return unary(
      "add", a, [s](const auto& x) { return x + s; }, [](const auto&, const auto&, const auto& g) { return g; });
}
template <class T> Tensor<T> add(scalar_t<T> s, const Tensor<T>& a) {
  detail::check_defined("add", s, a);
  return add(a, s);
}
template <class T> Tensor<T> sub(const Tensor<T>& a, scalar_t<T> s) {
  return unary(
      "sub", a, [s](const auto& x) { return x - s; }, [](const auto&, const auto&, const auto& g) { return g; });
}
template <class T> Tensor<T> sub(scalar_t<T> s, const Tensor<T>& a) {
  detail::check_defined("sub", s, a);
  return unary(
      "sub", a, [s](const auto& x) { return s - x; }, [](const auto&, const auto&, const auto& g) { return -g; });
}
template <class T> Tensor<T> mul(const Tensor<T>& a, scalar_t<T> s) {
  return unary(
      "mul", a, [s](const auto& x) { return x * s; }, [s](const auto&, const auto&, const auto& g) { return g * s; });
}
template <class T> Tensor<T> mul(scalar_t<T> s, const Tensor<T>& a) {
  detail::check_defined("mul", s, a);
  return mul(a, s);
}
template <class T> Tensor<T> div(const Tensor<T>& a, scalar_t<T> s) {
  return unary(
      "div", a, [s](const auto& x) { return x / s; }, [s](const auto&, const auto&, const auto& g) { return g / s; });
}
template <class T> Tensor<T> div(scalar_t<T> s, const Tensor<T>& a) {
  detail::check_defined("div", s, a);
  // d(s/x)/dx = -s/x^2 = -out/x
  return unary(
      "div", a, [s](const auto& x) { return s / x; },
      [](const auto& x, const auto& out, const auto& g) { return -g * out / x; });
}
template <class T> Tensor<T> pow(const Tensor<T>& base, scalar_t<T> exponent) {
  // exponent 0 gives a zero gradient (as PyTorch), not 0 * 0^-1 = NaN at x = 0
  const T lowered = exponent == T(0) ? T(0) : exponent - T(1);
  return unary(
      "pow", base, [exponent](const auto& x) { return xt::pow(x, exponent); },
      [exponent, lowered](const auto& x, const auto&, const auto& g) { return g * exponent * xt::pow(x, lowered); });
}
template <class T> Tensor<T> pow(scalar_t<T> base, const Tensor<T>& exponent) {
  detail::check_defined("pow", base, exponent);
  const T log_base = std::log(base);
  const auto forward = [base](const auto& y) { return xt::pow(base, y); };
  if (base == T(0))  // as PyTorch: a zero gradient where y >= 0, not 0 * log 0 = NaN
    return unary("pow", exponent, forward, [log_base](const auto& y, const auto& out, const auto& g) {
      return xt::where(y >= T(0), T(0), g * out * log_base);
    });
  return unary("pow", exponent, forward,
               [log_base](const auto&, const auto& out, const auto& g) { return g * out * log_base; });
}

// ---- unary ----------------------------------------------------------------------------
template <class T> Tensor<T> neg(const Tensor<T>& x) {
  return unary(
      "neg", x, [](const auto& v) { return -v; }, [](const auto&, const auto&, const auto& g) { return -g; });
}
template <class T> Tensor<T> exp(const Tensor<T>& x) {
  return unary(
      "exp", x, [](const auto& v) { return xt::exp(v); },
      [](const auto&, const auto& out, const auto& g) { return g * out; });
}
template <class T> Tensor<T> log(const Tensor<T>& x) {
  return unary(
      "log", x, [](const auto& v) { return xt::log(v); },
      [](const auto& v, const auto&, const auto& g) { return g / v; });
}
template <class T> Tensor<T> sqrt(const Tensor<T>& x) {
  return unary(
      "sqrt", x, [](const auto& v) { return xt::sqrt(v); },
      [](const auto&, const auto& out, const auto& g) { return g * T(0.5) / out; });
}
template <class T> Tensor<T> abs(const Tensor<T>& x) {
  return unary(
      "abs", x, [](const auto& v) { return xt::abs(v); },
      [](const auto& v, const auto&, const auto& g) { return g * xt::sign(v); });
}
template <class T> Tensor<T> tanh(const Tensor<T>& x) {
  return unary(
      "tanh", x, [](const auto& v) { return xt::tanh(v); },
      [](const auto&, const auto& out, const auto& g) { return g * (T(1) - out * out); });
}
template <class T> Tensor<T> sigmoid(const Tensor<T>& x) {
  return unary(
      "sigmoid", x, [](const auto& v) { return T(1) / (T(1) + xt::exp(-v)); },
      [](const auto&, const auto& out, const auto& g) { return g * out * (T(1) - out); });
}
// x (...) -> same shape, max(x, 0). Plain loops: xtensor's where() over the gradient
// took 14% of a small CNN's training step.
template <class T> Tensor<T> relu(const Tensor<T>& x) {
  detail::check_defined("relu", x);
  const T* v = x.data().data();
  Array<T> y(x.shape());
  for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = v[i] < T(0) ? T(0) : v[i];  // NaN stays NaN, as in PyTorch
  return make_result<T>("relu", std::move(y), {x},
                        [](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          // in the forward pass this was y = max(x, 0): dx = dy where x > 0
                          const GradTarget<T> dx = grad_target(*in[0]);
                          if (!dx) return;
                          const T* xs = in[0]->data().data();
                          const T* gs = g.data();
                          // Two loops, and g read unconditionally, so that each loop vectorises
                          // (a conditional read keeps it scalar: 14% of a small CNN's step).
                          const auto passed = [&](std::size_t i) {
                            const T gi = gs[i];
                            return xs[i] > T(0) ? gi : T(0);
                          };
                          if (dx.beta == T(0))
                            for (std::size_t i = 0; i < g.size(); ++i) dx.data[i] = passed(i);
                          else
                            for (std::size_t i = 0; i < g.size(); ++i) dx.data[i] += passed(i);
                        });
}

template <class T> Tensor<T> gelu(const Tensor<T>& x, GeluApproximation approx) {
  detail::check_defined("gelu", x);
  if (approx == GeluApproximation::none) {
    // x (...) -> same shape. gelu(x) = x Phi(x); gelu'(x) = Phi(x) + x phi(x). Phi is the
    // costly part, so the forward keeps it for the backward (kernels.hpp).
    const std::size_t n = x.data().size();
    const T* v = x.data().data();
    Array<T> out(x.shape()), cdf(x.shape());
    parallel::for_ranges(n, 8192, [&](std::size_t begin, std::size_t end) {
      kernels::gelu_forward(v + begin, out.data() + begin, cdf.data() + begin, end - begin);
    });
    return make_result<T>(
        "gelu", std::move(out), {x},
        [cdf = std::move(cdf)](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
          Node<T>& input = *in[0];
          if (!input.requires_grad()) return;
          const T* v = input.data().data();
          Array<T> grad(cdf.shape());
          parallel::for_ranges(cdf.size(), 8192, [&](std::size_t begin, std::size_t end) {
            kernels::gelu_backward(v + begin, cdf.data() + begin, g.data() + begin, grad.data() + begin, end - begin);
          });
          add_grad(input, std::move(grad));
        });
  }
  // gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
  const T k = T(std::sqrt(2.0 / M_PI));
  const T c = T(0.044715);
  return unary(
      "gelu_tanh", x, [=](const auto& v) { return T(0.5) * v * (T(1) + xt::tanh(k * (v + c * v * v * v))); },
      [=](const auto& v, const auto&, const auto& g) {
        // Evaluated here: an expression returned from this lambda must not refer to t.
        const Array<T> t = xt::tanh(k * (v + c * v * v * v));
        return Array<T>(g * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3) * c * v * v)));
      });
}

template <class T> Tensor<T> clamp(const Tensor<T>& x, scalar_t<T> min, scalar_t<T> max) {
  detail::check_defined("clamp", x);
  if (min > max) detail::fail("clamp", "min " + std::to_string(min) + " is greater than max " + std::to_string(max));
  return unary(
      "clamp", x, [=](const auto& v) { return xt::clip(v, min, max); },
      [=](const auto& v, const auto&, const auto& g) { return xt::where(v >= min && v <= max, g, T(0)); });
}

#define INSTANTIATE(T)                                          \
  template Tensor<T> add(const Tensor<T>&, const Tensor<T>&);   \
  template Tensor<T> sub(const Tensor<T>&, const Tensor<T>&);   \
  template Tensor<T> mul(const Tensor<T>&, const Tensor<T>&);   \
  template Tensor<T> div(const Tensor<T>&, const Tensor<T>&);   \
  template Tensor<T> pow(const Tensor<T>&, const Tensor<T>&);   \
  template Tensor<T> add(const Tensor<T>&, scalar_t<T>);        \
  template Tensor<T> add(scalar_t<T>, const Tensor<T>&);        \
  template Tensor<T> sub(const Tensor<T>&, scalar_t<T>);        \
  template Tensor<T> sub(scalar_t<T>, const Tensor<T>&);        \
  template Tensor<T> mul(const Tensor<T>&, scalar_t<T>);        \
  template Tensor<T> mul(scalar_t<T>, const Tensor<T>&);        \
  template Tensor<T> div(const Tensor<T>&, scalar_t<T>);        \
  template Tensor<T> div(scalar_t<T>, const Tensor<T>&);        \
  template Tensor<T> pow(const Tensor<T>&, scalar_t<T>);        \
  template Tensor<T> pow(scalar_t<T>, const Tensor<T>&);        \
  template Tensor<T> neg(const Tensor<T>&);                     \
  template Tensor<T> exp(const Tensor<T>&);                     \
  template Tensor<T> log(const Tensor<T>&);                     \
  template Tensor<T> sqrt(const Tensor<T>&);                    \
  template Tensor<T> abs(const Tensor<T>&);                     \
  template Tensor<T> tanh(const Tensor<T>&);                    \
  template Tensor<T> sigmoid(const Tensor<T>&);                 \
  template Tensor<T> relu(const Tensor<T>&);                    \
  template Tensor<T> gelu(const Tensor<T>&, GeluApproximation); \
  template Tensor<T> clamp(const Tensor<T>&, scalar_t<T>, scalar_t<T>);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
