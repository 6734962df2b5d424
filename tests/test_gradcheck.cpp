// gradcheck itself: it must pass correct ops, catch wrong ones and say where.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>
#include <xtensor/xview.hpp>

#include "helpers.hpp"

using namespace xtgrad;
using xtgrad::testing::check_array;
using xtgrad::testing::input;

namespace {

using D = Tensor<double>;
using Arr = Array<double>;
constexpr std::size_t all_elements = std::numeric_limits<std::size_t>::max();

// out = a * b (same shapes). The backward multiplies input 0's gradient by scale_a and
// input 1's by scale_b, either everywhere (bad == all_elements) or at one flat element.
// Scales of 1 give the correct op.
D scaled_mul(const D& a, const D& b, double scale_a, double scale_b, std::size_t bad = all_elements) {
  return make_result<double>("scaled_mul", Arr(a.data() * b.data()), {a, b},
                             [scale_a, scale_b, bad](const std::vector<NodePtr<double>>& in, const Arr&, const Arr& g) {
                               auto scaled = [bad](Arr grad, double scale) {
                                 if (bad == all_elements)
                                   grad *= scale;
                                 else
                                   grad.data()[bad] *= scale;
                                 return grad;
                               };
                               add_grad(*in[0], scaled(g * in[1]->data(), scale_a));
                               add_grad(*in[1], scaled(g * in[0]->data(), scale_b));
                             });
}

// A correct custom unary op: out = x^3, dout/dx = 3x^2.
D cube(const D& x) {
  return make_result<double>("cube", Arr(x.data() * x.data() * x.data()), {x},
                             [](const std::vector<NodePtr<double>>& in, const Arr&, const Arr& g) {
                               const Arr& v = in[0]->data();
                               add_grad(*in[0], Arr(3.0 * v * v * g));
                             });
}

// out = 2x, its gradient written in place through grad_target, as the built-in products
// write theirs: with beta 0 the buffer is uninitialised, so it is overwritten, not read.
D twice_in_place(const D& x) {
  return make_result<double>("twice_in_place", Arr(2.0 * x.data()), {x},
                             [](const std::vector<NodePtr<double>>& in, const Arr&, const Arr& g) {
                               const GradTarget<double> dx = grad_target(*in[0]);
                               if (!dx) return;  // x needs no gradient
                               for (std::size_t i = 0; i < g.size(); ++i)
                                 dx.data[i] = (dx.beta == 0.0 ? 0.0 : dx.data[i]) + 2.0 * g.data()[i];
                             });
}

// The number after `label` in message ("numerical 0.123, analytical 0.456").
double number_after(const std::string& message, const std::string& label) {
  const std::size_t at = message.find(label);
  REQUIRE_MESSAGE(at != std::string::npos, "'" << message << "' lacks '" << label << "'");
  return std::stod(message.substr(at + label.size()));
}

void check_contains(const std::string& message, const std::string& fragment) {
  CHECK_MESSAGE(message.find(fragment) != std::string::npos, "'" << message << "' lacks '" << fragment << "'");
}

}  // namespace

TEST_CASE("gradcheck: a correct custom op passes") {
  D x = input({3, 4}, 101);
  GradcheckResult r = gradcheck([](const std::vector<D>& in) { return cube(in[0]); }, {x});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.message.empty());
  CHECK(r.checked == 12 * 12);  // full Jacobian

  D a = input({2, 3}, 102), b = input({2, 3}, 103);
  r = gradcheck([](const std::vector<D>& in) { return scaled_mul(in[0], in[1], 1.0, 1.0); }, {a, b});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.checked == 2 * 6 * 6);
}

TEST_CASE("custom op: grad_target and add_grad follow one rule, first write overwrites and later writes add") {
  D x({1.0, -2.0, 0.5}, true);
  sum(twice_in_place(x) + cube(x) + twice_in_place(x)).backward();  // three writes, either kind
  check_array(x.grad(), {3}, {2 + 3 * 1.0 + 2, 2 + 3 * 4.0 + 2, 2 + 3 * 0.25 + 2});
  sum(twice_in_place(x)).backward();  // a later backward adds to the kept gradient
  check_array(x.grad(), {3}, {9.0, 18.0, 6.75});
  D constant({1.0, 2.0});
  CHECK_FALSE(twice_in_place(constant).requires_grad());  // nothing recorded, nothing written
  D y({1.0, 2.0}, true);
  sum(twice_in_place(constant) * y).backward();
  check_array(y.grad(), {2}, {2.0, 4.0});
  const GradcheckResult result =
      gradcheck([](const std::vector<D>& in) { return twice_in_place(in[0]) * in[0]; }, {input({2, 3}, 41)});
  CHECK_MESSAGE(result.ok, result.message);
}

TEST_CASE("gradcheck: a 1.1x gradient for input 1 is caught and located") {
  D a = input({2, 3}, 104), b = input({2, 3}, 105);
  // Only element (1,2) [flat 5] of input 1's gradient is wrong.
  const GradcheckResult r =
      gradcheck([](const std::vector<D>& in) { return scaled_mul(in[0], in[1], 1.0, 1.1, 5); }, {a, b});
  REQUIRE_FALSE(r.ok);
  INFO(r.message);
  check_contains(r.message, "output element (1,2) [flat 5]");
  check_contains(r.message, "input 1");
  check_contains(r.message, "input 1, element (1,2) [flat 5]");
  CHECK(r.message.find("input 0") == std::string::npos);
  // d(a*b)/db at (1,2) is a(1,2): numerical is that, analytical 1.1 times it.
  const double expected = a.data()(1, 2);
  CHECK(number_after(r.message, "numerical ") == doctest::Approx(expected).epsilon(1e-6));
  CHECK(number_after(r.message, "analytical ") == doctest::Approx(1.1 * expected).epsilon(1e-8));
  CHECK(r.max_abs_error == doctest::Approx(0.1 * std::abs(expected)).epsilon(1e-5));
  CHECK(r.checked == 2 * 6 * 6);  // keeps measuring after the first failure
}

TEST_CASE("gradcheck: a wrong gradient for input 0 is reported as input 0") {
  D a = input({4}, 106), b = input({4}, 107);
  const GradcheckResult r =
      gradcheck([](const std::vector<D>& in) { return scaled_mul(in[0], in[1], 0.9, 1.0); }, {a, b});
  REQUIRE_FALSE(r.ok);
  check_contains(r.message, "input 0, element (0) [flat 0]");
  check_contains(r.message, "output element (0) [flat 0]");
  CHECK(number_after(r.message, "numerical ") == doctest::Approx(b.data()(0)).epsilon(1e-6));
  CHECK(number_after(r.message, "analytical ") == doctest::Approx(0.9 * b.data()(0)).epsilon(1e-8));
}

TEST_CASE("gradcheck: a transposed Jacobian is caught") {
  // out = A x with a non-symmetric A; the backward wrongly uses A g instead of A^T g.
  const Arr A = {{1.0, 2.0, 0.0}, {-1.0, 0.5, 3.0}, {0.0, 4.0, -2.0}};
  auto wrong = [A](const std::vector<D>& in) {
    const Arr& x = in[0].data();
    Arr out = xt::sum(A * xt::view(x, xt::newaxis(), xt::all()), {1});
    return make_result<double>("wrong_matvec", std::move(out), {in[0]},
                               [A](const std::vector<NodePtr<double>>& nodes, const Arr&, const Arr& g) {
                                 add_grad(*nodes[0], Arr(xt::sum(A * xt::view(g, xt::newaxis(), xt::all()), {1})));
                               });
  };
  D x = input({3}, 108);
  const GradcheckResult r = gradcheck(wrong, {x});
  REQUIRE_FALSE(r.ok);
  // Input elements are perturbed in turn, each compared against every output. The
  // diagonal agrees; the first mismatch is d out_1 / d x_0 = A(1,0) = -1, where the
  // wrong backward gives A(0,1) = 2.
  check_contains(r.message, "output element (1) [flat 1]");
  check_contains(r.message, "input 0, element (0) [flat 0]");
  CHECK(number_after(r.message, "numerical ") == doctest::Approx(-1.0).epsilon(1e-6));
  CHECK(number_after(r.message, "analytical ") == doctest::Approx(2.0));
}

TEST_CASE("gradcheck: fast mode passes a correct (64,64) matmul") {
  D a = input({64, 64}, 109), b = input({64, 64}, 110);
  const GradcheckResult r = gradcheck([](const std::vector<D>& in) { return matmul(in[0], in[1]); }, {a, b},
                                      GradcheckOptions().set_fast_mode(true).set_seed(7));
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.checked == 2);  // one projection per input
  CHECK(r.max_abs_error < 1e-5);
}

TEST_CASE("gradcheck: fast mode catches the wrong op") {
  D a = input({64, 64}, 111), b = input({64, 64}, 112);
  const GradcheckResult r = gradcheck([](const std::vector<D>& in) { return scaled_mul(in[0], in[1], 1.0, 1.1); },
                                      {a, b}, GradcheckOptions().set_fast_mode(true));
  REQUIRE_FALSE(r.ok);
  check_contains(r.message, "input 1");
  check_contains(r.message, "projection");
  const double numerical = number_after(r.message, "numerical ");
  const double analytical = number_after(r.message, "analytical ");
  CHECK(analytical == doctest::Approx(1.1 * numerical).epsilon(1e-6));
  CHECK(r.max_abs_error > 0.05 * std::abs(numerical));
}

TEST_CASE("gradcheck: inputs that do not require grad are skipped") {
  D a = input({2, 3}, 113);
  D b = input({2, 3}, 114).set_requires_grad(false);
  auto wrong_b = [](const std::vector<D>& in) { return scaled_mul(in[0], in[1], 1.0, 1.1); };
  GradcheckResult r = gradcheck(wrong_b, {a, b});
  CHECK_MESSAGE(r.ok, r.message);  // only input 0 is compared, and it is right
  CHECK(r.checked == 6 * 6);

  // The index in the message is the position in the input list, not among checked ones.
  D c = input({2, 3}, 115).set_requires_grad(false);
  D d = input({2, 3}, 116);
  r = gradcheck(wrong_b, {c, d});
  REQUIRE_FALSE(r.ok);
  check_contains(r.message, "input 1");
  CHECK(r.checked == 6 * 6);

  // No input to check at all: refused, as PyTorch's gradcheck refuses it.
  r = gradcheck(wrong_b, {c, b});
  CHECK_FALSE(r.ok);
  CHECK(r.checked == 0);
  check_contains(r.message, "no input requires a gradient");
}

TEST_CASE("gradcheck: the caller's input tensors are not modified") {
  D a = input({3, 2}, 117), b = input({3, 2}, 118);
  sum(a * 2.0).backward();  // a carries an existing gradient of 2s
  const Arr a_value = a.data(), b_value = b.data(), a_grad = a.grad();
  auto correct = [](const std::vector<D>& in) { return cube(in[0]) * in[1]; };
  auto wrong = [](const std::vector<D>& in) { return scaled_mul(in[0], in[1], 1.2, 1.0); };

  CHECK(gradcheck(correct, {a, b}).ok);
  CHECK_FALSE(gradcheck(wrong, {a, b}).ok);
  CHECK(gradcheck(correct, {a, b}, GradcheckOptions().set_fast_mode(true)).ok);
  CHECK_FALSE(gradcheck(wrong, {a, b}, GradcheckOptions().set_fast_mode(true)).ok);

  CHECK(a.data() == a_value);
  CHECK(b.data() == b_value);
  REQUIRE(a.has_grad());
  CHECK(a.grad() == a_grad);
  CHECK_FALSE(b.has_grad());
  CHECK(a.requires_grad());
  CHECK(b.requires_grad());
  CHECK(a.is_leaf());
}

TEST_CASE("gradcheck: max_abs_error is small for a correct op and reported") {
  D x = input({3, 3}, 119), y = input({3, 3}, 120);
  GradcheckResult r = gradcheck([](const std::vector<D>& in) { return exp(in[0]) * tanh(in[1]); }, {x, y});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.max_abs_error >= 0.0);
  CHECK(r.max_abs_error < 1e-7);

  // Wrong everywhere on input 1 by 10%: the largest error is 0.1 max|x|.
  r = gradcheck([](const std::vector<D>& in) { return scaled_mul(in[0], in[1], 1.0, 1.1); }, {x, y});
  CHECK_FALSE(r.ok);
  CHECK(r.max_abs_error == doctest::Approx(0.1 * xt::amax(xt::abs(x.data()))()).epsilon(1e-5));
}

TEST_CASE("gradcheck: a NaN gradient fails") {
  D x = input({3}, 121);
  auto nan_grad = [](const std::vector<D>& in) {
    return make_result<double>("nan_grad", Arr(in[0].data() * 2.0), {in[0]},
                               [](const std::vector<NodePtr<double>>& nodes, const Arr&, const Arr& g) {
                                 add_grad(*nodes[0], Arr(g * std::numeric_limits<double>::quiet_NaN()));
                               });
  };
  const GradcheckResult r = gradcheck(nan_grad, {x});
  CHECK_FALSE(r.ok);
  CHECK(std::isinf(r.max_abs_error));
  check_contains(r.message, "nan");  // printed as "nan" or "-nan"
}

TEST_CASE("gradcheck: an output that does not depend on the inputs fails with a message") {
  D x = input({3}, 122);
  const GradcheckResult r = gradcheck([](const std::vector<D>& in) { return in[0].detach() * 2.0; }, {x});
  CHECK_FALSE(r.ok);
  check_contains(r.message, "does not depend");
}
