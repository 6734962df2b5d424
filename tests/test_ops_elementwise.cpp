// Elementwise ops: add, sub, mul, div, pow (tensor-tensor and with a scalar on either
// side), the unary functions, clamp, and the operators. Gradients are checked against
// central differences in double precision; forward values against hand-computed numbers.
#include "helpers.hpp"

#include <cmath>
#include <limits>

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// Smallest distance from any element of x to any of the points (to keep gradchecks away
// from kinks).
double min_distance(const D& x, const std::vector<double>& points) {
  double best = std::numeric_limits<double>::infinity();
  for (double v : x.data())
    for (double p : points) best = std::min(best, std::abs(v - p));
  return best;
}

// N(0,1) values, none within 0.05 of any point (values too close are moved away).
D away_from(const Shape& shape, std::uint64_t seed, const std::vector<double>& points) {
  D x = input(shape, seed);
  for (double& v : x.mutable_data())
    for (double p : points)
      if (std::abs(v - p) < 0.05) v = p + (v < p ? -0.1 : 0.1);
  REQUIRE(min_distance(x, points) > 0.04);
  return x;
}

}  // namespace

// ---- binary, tensor-tensor: gradients -------------------------------------------------

TEST_CASE("gradcheck: add and sub broadcasting (2,1,3)+(4,3), (3)+(2,3), (2,3)+(1,1), (4,1)-(1,3), 0-d") {
  const Fn f = [](const In& in) { return add(in[0], in[1]); };
  grad("add", f, {input({2, 1, 3}, 1), input({4, 3}, 2)});
  grad("add", f, {input({3}, 3), input({2, 3}, 4)});
  grad("add", f, {input({2, 3}, 5), input({1, 1}, 6)});
  grad("add", f, {input({}, 7), input({2, 2}, 8)});
  grad("add", f, {input({2, 3}, 9), input({2, 3}, 10)});
  const Fn g = [](const In& in) { return sub(in[0], in[1]); };
  grad("sub", g, {input({4, 1}, 11), input({1, 3}, 12)});
  grad("sub", g, {input({2, 1, 3}, 13), input({4, 3}, 14)});
  grad("sub", g, {input({3, 2}, 15), input({3, 2}, 16)});
}

TEST_CASE("gradcheck: mul broadcasting (2,1,3)*(4,3), (3,1)*(3), (1,)*(2,2)") {
  const Fn f = [](const In& in) { return mul(in[0], in[1]); };
  grad("mul", f, {input({2, 1, 3}, 21), input({4, 3}, 22)});
  grad("mul", f, {input({3, 1}, 23), input({3}, 24)});
  grad("mul", f, {input({1}, 25), input({2, 2}, 26)});
  grad("mul", f, {input({2, 3}, 27), input({2, 3}, 28)});
}

TEST_CASE("gradcheck: div broadcasting (2,3)/(3), (3,1)/(1,4), (2,1,2)/(3,2)") {
  const Fn f = [](const In& in) { return div(in[0], in[1]); };
  grad("div", f, {input({2, 3}, 31), input_uniform({3}, 0.5, 2.0, 32)});
  grad("div", f, {input({3, 1}, 33), input_uniform({1, 4}, 0.5, 2.0, 34)});
  grad("div", f, {input({2, 1, 2}, 35), input_uniform({3, 2}, 0.5, 2.0, 36)});
}

TEST_CASE("gradcheck: pow tensor-tensor with positive bases, broadcasting (2,3)^(3), (3,1)^(1,2)") {
  const Fn f = [](const In& in) { return pow(in[0], in[1]); };
  grad("pow", f, {input_uniform({2, 3}, 0.5, 2.0, 41), input({3}, 42)});
  grad("pow", f, {input_uniform({3, 1}, 0.5, 2.0, 43), input({1, 2}, 44)});
  grad("pow", f, {input_uniform({2, 2}, 0.5, 2.0, 45), input({2, 2}, 46)});
}

TEST_CASE("gradcheck: binary ops on transposed and permuted inputs") {
  // a (3,2) transposed to (2,3) meets b (2,3); c (2,3,4) permuted to (4,2,3) meets (3)
  grad("add", [](const In& in) { return add(transpose(in[0], 0, 1), in[1]); }, {input({3, 2}, 51), input({2, 3}, 52)});
  grad("mul",
       [](const In& in) {
         return mul(permute(in[0], {2, 0, 1}), in[1]);
       },
       {input({2, 3, 4}, 53), input({3}, 54)});
  grad("div", [](const In& in) { return div(in[1], transpose(in[0], -1, -2)); },
       {input_uniform({3, 2}, 0.5, 2.0, 55), input({2, 3}, 56)});
  grad("pow",
       [](const In& in) {
         return pow(permute(in[0], {1, 0}), in[1]);
       },
       {input_uniform({3, 2}, 0.5, 2.0, 57), input({2, 1}, 58)});
}

TEST_CASE("gradcheck: the same tensor on both sides of a binary op (x*x, x/x, x-x, x^x)") {
  grad("mul", [](const In& in) { return mul(in[0], in[0]); }, {input({2, 3}, 61)});
  grad("div", [](const In& in) { return div(in[0], in[0]); }, {input_uniform({2, 3}, 0.5, 2.0, 62)});
  grad("sub", [](const In& in) { return sub(in[0], in[0]); }, {input({2, 3}, 63)});
  grad("pow", [](const In& in) { return pow(in[0], in[0]); }, {input_uniform({2, 3}, 0.5, 2.0, 64)});
}

TEST_CASE("gradcheck: add/sub/mul with a scalar on either side") {
  grad("add", [](const In& in) { return add(in[0], 2.5); }, {input({2, 3}, 71)});
  grad("add", [](const In& in) { return add(-1.5, in[0]); }, {input({3, 1}, 72)});
  grad("sub", [](const In& in) { return sub(in[0], 0.75); }, {input({2, 3}, 73)});
  grad("sub", [](const In& in) { return sub(0.75, in[0]); }, {input({2, 1, 2}, 74)});
  grad("mul", [](const In& in) { return mul(in[0], -3.0); }, {input({2, 3}, 75)});
  grad("mul", [](const In& in) { return mul(0.5, in[0]); }, {input({4}, 76)});
}

TEST_CASE("gradcheck: div/pow with a scalar on either side") {
  grad("div", [](const In& in) { return div(in[0], 4.0); }, {input({2, 3}, 81)});
  grad("div", [](const In& in) { return div(3.0, in[0]); }, {input_uniform({2, 3}, 0.5, 2.0, 82)});
  grad("pow", [](const In& in) { return pow(in[0], 2.5); }, {input_uniform({2, 3}, 0.5, 2.0, 83)});
  grad("pow", [](const In& in) { return pow(in[0], -1.5); }, {input_uniform({3, 1}, 0.5, 2.0, 84)});
  grad("pow", [](const In& in) { return pow(in[0], 3.0); }, {input({2, 2}, 85)});  // integer power, any sign
  grad("pow", [](const In& in) { return pow(1.7, in[0]); }, {input({2, 3}, 86)});
  grad("pow", [](const In& in) { return pow(0.4, in[0]); }, {input({3}, 87)});
}

// ---- binary: forward values and hand-computed gradients ------------------------------

TEST_CASE("forward: add, sub, mul, div, pow values, with broadcasting and with a scalar on either side") {
  const D a = make({2, 3}, {1, 2, 3, 4, 5, 6});
  const D b = make({3}, {1, 2, 4});
  check_values(add(a, b), {2, 3}, {2, 4, 7, 5, 7, 10});
  check_values(sub(a, b), {2, 3}, {0, 0, -1, 3, 3, 2});
  check_values(mul(a, b), {2, 3}, {1, 4, 12, 4, 10, 24});
  check_values(div(a, b), {2, 3}, {1, 1, 0.75, 4, 2.5, 1.5});
  check_values(pow(a, b), {2, 3}, {1, 4, 81, 4, 25, 1296});
  // (2,1) with (1,3) -> (2,3)
  const D c = make({2, 1}, {10, 20});
  const D d = make({1, 3}, {1, 2, 3});
  check_values(sub(c, d), {2, 3}, {9, 8, 7, 19, 18, 17});
  check_values(pow(make({2}, {2.0, 1.5}), make({2}, {0.5, 2.5})), {2}, {1.4142135623730951, 2.7556759606310752});
  const D x = make({3}, {1, 2, 4});
  check_values(add(x, 1.5), {3}, {2.5, 3.5, 5.5});
  check_values(add(1.5, x), {3}, {2.5, 3.5, 5.5});
  check_values(sub(x, 1.0), {3}, {0, 1, 3});
  check_values(sub(10.0, x), {3}, {9, 8, 6});
  check_values(mul(x, -2.0), {3}, {-2, -4, -8});
  check_values(mul(3.0, x), {3}, {3, 6, 12});
  check_values(div(x, 4.0), {3}, {0.25, 0.5, 1});
  check_values(div(8.0, x), {3}, {8, 4, 2});
  check_values(pow(x, 2.0), {3}, {1, 4, 16});
  check_values(pow(x, 0.5), {3}, {1, 1.4142135623730951, 2});
  check_values(pow(2.0, x), {3}, {2, 4, 16});
}

TEST_CASE("backward: broadcast gradients are summed back to each input's shape") {
  D a = make({2, 3}, {1, 2, 3, 4, 5, 6}, true);
  D b = make({3}, {1, 2, 4}, true);
  D c = make({2, 1}, {0.5, 2}, true);
  // y = sum(a * b * c): dy/da = b c, dy/db = sum_i a_i c_i, dy/dc = sum_j a b
  sum(mul(mul(a, b), c)).backward();
  check_array(a.grad(), {2, 3}, {0.5, 1, 2, 2, 4, 8});
  check_array(b.grad(), {3}, {0.5 * 1 + 2 * 4, 0.5 * 2 + 2 * 5, 0.5 * 3 + 2 * 6});
  check_array(c.grad(), {2, 1}, {1 + 4 + 12, 4 + 10 + 24});
  // d(x/y)/dy = -x/y^2 and d(s/y)/dy = -s/y^2
  D x = make({2}, {3, -2}, true);
  D y = make({2}, {2, 4}, true);
  sum(add(div(x, y), div(6.0, y))).backward();
  check_array(x.grad(), {2}, {0.5, 0.25});
  check_array(y.grad(), {2}, {-3.0 / 4 - 6.0 / 4, 2.0 / 16 - 6.0 / 16});
  // d(x^y)/dx = y x^(y-1), d(x^y)/dy = x^y log x
  D p = make({1}, {2.0}, true);
  D q = make({1}, {3.0}, true);
  pow(p, q).backward();
  check_array(p.grad(), {1}, {12.0});
  check_array(q.grad(), {1}, {8.0 * std::log(2.0)});
}

TEST_CASE("backward: pow at a zero base or a zero exponent gives PyTorch's 0, not NaN") {
  // tensor ^ tensor: d/dx is 0 where y == 0; d/dy is 0 where x == 0 and y >= 0
  D x = make({3}, {0.0, 0.0, 2.0}, true);
  D y = make({3}, {2.0, 0.0, 3.0}, true);
  const D p = pow(x, y);
  check_values(p, {3}, {0.0, 1.0, 8.0});
  sum(p).backward();
  check_array(x.grad(), {3}, {0.0, 0.0, 12.0});
  check_array(y.grad(), {3}, {0.0, 0.0, 8.0 * std::log(2.0)});
  // tensor ^ 0 is 1 with a zero gradient everywhere, 0 included
  D z = make({3}, {0.0, 2.0, -1.0}, true);
  const D q = pow(z, 0.0);
  check_values(q, {3}, {1.0, 1.0, 1.0});
  sum(q).backward();
  check_array(z.grad(), {3}, {0.0, 0.0, 0.0});
  // tensor ^ 3 at 0 and at a negative base
  D w = make({2}, {0.0, -2.0}, true);
  sum(pow(w, 3.0)).backward();
  check_array(w.grad(), {2}, {0.0, 12.0});
  // 0 ^ tensor: zero gradient where the exponent is >= 0
  D e = make({3}, {0.0, 1.0, 2.5}, true);
  const D r = pow(0.0, e);
  check_values(r, {3}, {1.0, 0.0, 0.0});
  sum(r).backward();
  check_array(e.grad(), {3}, {0.0, 0.0, 0.0});
}

TEST_CASE("errors: broadcast failures name the op and both shapes") {
  const D a = make({2, 3}, {1, 2, 3, 4, 5, 6});
  const D b = make({4, 3}, std::vector<double>(12, 1.0));
  const D c = make({2}, {1, 2});
  const auto msg = [](const char* op, const char* s1, const char* s2) {
    return std::string(op) + ": shapes cannot be broadcast together: " + s1 + " and " + s2;
  };
  check_throws_with([&] { add(a, b); }, {msg("add", "(2,3)", "(4,3)")});
  check_throws_with([&] { sub(b, a); }, {msg("sub", "(4,3)", "(2,3)")});
  check_throws_with([&] { mul(a, c); }, {msg("mul", "(2,3)", "(2)")});
  check_throws_with([&] { div(c, a); }, {msg("div", "(2)", "(2,3)")});
  check_throws_with([&] { pow(a, b); }, {msg("pow", "(2,3)", "(4,3)")});
  check_throws_with([&] { a + b; }, {"add", "(2,3)", "(4,3)"});
  check_throws_with([&] { a* c; }, {"mul", "(2,3)", "(2)"});
  const D d = make({2, 3, 4}, std::vector<double>(24, 1.0));
  check_throws_with([&] { add(d, make({3, 3}, std::vector<double>(9, 1.0))); }, {msg("add", "(2,3,4)", "(3,3)")});
}

// ---- unary: gradients -----------------------------------------------------------------

TEST_CASE("gradcheck: neg, exp (any input) and log, sqrt (positive inputs) on several shapes and permuted inputs") {
  for (const char* name : {"neg", "exp"}) {
    const bool is_neg = std::string(name) == "neg";
    const Fn f = [is_neg](const In& in) { return is_neg ? neg(in[0]) : exp(in[0]); };
    grad(name, f, {input({2, 3}, 101)});
    grad(name, f, {input({1, 4}, 102)});
    grad(name, f, {input({}, 103)});
    grad(name,
         [is_neg](const In& in) {
           const D p = permute(in[0], {1, 2, 0});
           return is_neg ? neg(p) : exp(p);
         },
         {input({2, 3, 2}, 104)});
  }
  grad("log", [](const In& in) { return log(in[0]); }, {input_uniform({2, 3}, 0.5, 2.0, 111)});
  grad("log", [](const In& in) { return log(in[0]); }, {input_uniform({3, 1, 2}, 0.5, 2.0, 112)});
  grad("log", [](const In& in) { return log(transpose(in[0], 0, 1)); }, {input_uniform({2, 3}, 0.5, 2.0, 113)});
  grad("sqrt", [](const In& in) { return sqrt(in[0]); }, {input_uniform({2, 3}, 0.5, 2.0, 114)});
  grad("sqrt", [](const In& in) { return sqrt(in[0]); }, {input_uniform({3, 1, 2}, 0.5, 2.0, 115)});
  grad("sqrt", [](const In& in) { return sqrt(transpose(in[0], 0, 1)); }, {input_uniform({2, 3}, 0.5, 2.0, 116)});
}

TEST_CASE("gradcheck: abs and relu away from 0 on (2,3), (4,1) and a permuted (2,3,2)") {
  grad("abs", [](const In& in) { return abs(in[0]); }, {away_from({2, 3}, 121, {0.0})});
  grad("abs", [](const In& in) { return abs(in[0]); }, {away_from({4, 1}, 122, {0.0})});
  grad("abs", [](const In& in) { return abs(permute(in[0], {2, 0, 1})); }, {away_from({2, 3, 2}, 123, {0.0})});
  grad("relu", [](const In& in) { return relu(in[0]); }, {away_from({2, 3}, 124, {0.0})});
  grad("relu", [](const In& in) { return relu(in[0]); }, {away_from({4, 1}, 125, {0.0})});
  grad("relu", [](const In& in) { return relu(permute(in[0], {2, 0, 1})); }, {away_from({2, 3, 2}, 126, {0.0})});
}

TEST_CASE("gradcheck: tanh, sigmoid on (2,3), (1,5) and a transposed input") {
  grad("tanh", [](const In& in) { return tanh(in[0]); }, {input({2, 3}, 131)});
  grad("tanh", [](const In& in) { return tanh(in[0]); }, {input({1, 5}, 132)});
  grad("tanh", [](const In& in) { return tanh(transpose(in[0], 0, 1)); }, {input({3, 2}, 133)});
  grad("sigmoid", [](const In& in) { return sigmoid(in[0]); }, {input({2, 3}, 134)});
  grad("sigmoid", [](const In& in) { return sigmoid(in[0]); }, {input({1, 5}, 135)});
  grad("sigmoid", [](const In& in) { return sigmoid(transpose(in[0], 0, 1)); }, {input({3, 2}, 136)});
}

TEST_CASE("gradcheck: gelu exact (erf) and tanh approximation") {
  for (const auto approx : {GeluApproximation::none, GeluApproximation::tanh}) {
    const char* name = approx == GeluApproximation::none ? "gelu" : "gelu_tanh";
    grad(name, [approx](const In& in) { return gelu(in[0], approx); }, {input({2, 3}, 141)});
    grad(name, [approx](const In& in) { return gelu(in[0], approx); },
         {mul(input({4, 1}, 142), 3.0).detach().set_requires_grad()});
    grad(name, [approx](const In& in) { return gelu(permute(in[0], {1, 0}), approx); }, {input({3, 2}, 143)});
  }
}

TEST_CASE("gradcheck: clamp with values inside, below and above the bounds") {
  const Fn f = [](const In& in) { return clamp(in[0], -0.5, 0.7); };
  const D x = away_from({3, 4}, 151, {-0.5, 0.7});
  // the check must see all three regions
  std::size_t below = 0, inside = 0, above = 0;
  for (double v : x.data()) (v < -0.5 ? below : v > 0.7 ? above : inside) += 1;
  REQUIRE(below > 0);
  REQUIRE(inside > 0);
  REQUIRE(above > 0);
  grad("clamp", f, {x});
  grad("clamp", [](const In& in) { return clamp(transpose(in[0], 0, 1), -1.0, 1.0); },
       {away_from({2, 3}, 152, {-1.0, 1.0})});
}

// ---- unary: forward values ------------------------------------------------------------

TEST_CASE("forward: neg, exp, log, sqrt, abs, tanh, sigmoid, relu values") {
  const D x = make({4}, {-2.0, -0.5, 0.0, 1.0});
  check_values(neg(x), {4}, {2.0, 0.5, 0.0, -1.0});
  check_values(exp(make({3}, {0.0, 1.0, -1.0})), {3}, {1.0, 2.718281828459045, 1.0 / 2.718281828459045});
  check_values(log(make({3}, {1.0, 2.0, 2.718281828459045})), {3}, {0.0, 0.6931471805599453, 1.0});
  check_values(sqrt(make({3}, {4.0, 2.0, 0.25})), {3}, {2.0, 1.4142135623730951, 0.5});
  check_values(abs(x), {4}, {2.0, 0.5, 0.0, 1.0});
  check_values(tanh(make({3}, {0.0, 0.5, -0.5})), {3}, {0.0, 0.46211715726000974, -0.46211715726000974});
  check_values(sigmoid(make({3}, {0.0, 1.0, -1.0})), {3}, {0.5, 0.7310585786300049, 1 - 0.7310585786300049});
  check_values(relu(x), {4}, {0.0, 0.0, 0.0, 1.0});
  // log of 0 is -inf, as in PyTorch
  CHECK(log(make({1}, {0.0})).data()(0) == -std::numeric_limits<double>::infinity());
}

TEST_CASE("forward: gelu(1) = 0.8413447460685429 exact and 0.8411919906082768 tanh") {
  const D x = make({4}, {1.0, -1.0, 2.0, 0.0});
  check_values(gelu(x), {4}, {0.8413447460685429, -0.15865525393145707, 1.9544997361036416, 0.0});
  check_values(gelu(x, GeluApproximation::tanh), {4},
               {0.8411919906082768, -0.15880800939172324, 1.954597694087775, 0.0});
  // float precision too
  const Tensor<float> xf = make<float>({1}, {1.0f});
  CHECK(gelu(xf).item() == doctest::Approx(0.8413447460685429).epsilon(1e-6));
  CHECK(gelu(xf, GeluApproximation::tanh).item() == doctest::Approx(0.8411919906082768).epsilon(1e-6));
}

TEST_CASE("backward: clamp passes the gradient where min <= x <= max (bounds included), abs and relu give 0 at 0") {
  D x = make({6}, {-3.0, -1.0, 0.0, 0.5, 1.0, 2.0}, true);
  const D y = clamp(x, -1.0, 1.0);
  check_values(y, {6}, {-1.0, -1.0, 0.0, 0.5, 1.0, 1.0});
  sum(mul(y, make({6}, {1, 2, 3, 4, 5, 6}))).backward();
  check_array(x.grad(), {6}, {0, 2, 3, 4, 5, 0});
  check_throws_with([&] { clamp(x, 1.0, -1.0); }, {"clamp", "min", "max"});
  D w = make({5}, {-2.0, -0.5, 0.0, 0.5, 3.0}, true);
  sum(abs(w)).backward();
  check_array(w.grad(), {5}, {-1, -1, 0, 1, 1});
  D z = make({5}, {-2.0, -0.5, 0.0, 0.5, 3.0}, true);
  sum(relu(z)).backward();
  check_array(z.grad(), {5}, {0, 0, 0, 1, 1});
}

TEST_CASE("sigmoid, tanh and exp-based ops stay finite for large |x|") {
  D x = make({4}, {-1000.0, -50.0, 50.0, 1000.0}, true);
  const D s = sigmoid(x);
  check_values(s, {4}, {0.0, 1.9287498479639178e-22, 1.0, 1.0}, 1e-9);
  const D t = tanh(x);
  check_values(t, {4}, {-1.0, -1.0, 1.0, 1.0});
  sum(add(s, t)).backward();
  for (double g : x.grad()) {
    CHECK(std::isfinite(g));
    CHECK(g >= 0.0);
    CHECK(g < 1e-20);
  }
}

// ---- operators ------------------------------------------------------------------------

TEST_CASE("operators on Tensor<double>: + - * / unary - with tensors and scalars") {
  const D a = make({2, 2}, {1, 2, 3, 4});
  const D b = make({2}, {2, 8});
  check_values(a + b, {2, 2}, {3, 10, 5, 12});
  check_values(a - b, {2, 2}, {-1, -6, 1, -4});
  check_values(a * b, {2, 2}, {2, 16, 6, 32});
  check_values(a / b, {2, 2}, {0.5, 0.25, 1.5, 0.5});
  check_values(-a, {2, 2}, {-1, -2, -3, -4});
  check_values(a + 1.0, {2, 2}, {2, 3, 4, 5});
  check_values(1.0 + a, {2, 2}, {2, 3, 4, 5});
  check_values(a - 1.0, {2, 2}, {0, 1, 2, 3});
  check_values(1.0 - a, {2, 2}, {0, -1, -2, -3});
  check_values(a * 0.5, {2, 2}, {0.5, 1, 1.5, 2});
  check_values(0.5 * a, {2, 2}, {0.5, 1, 1.5, 2});
  check_values(a / 2.0, {2, 2}, {0.5, 1, 1.5, 2});
  check_values(12.0 / a, {2, 2}, {12, 6, 4, 3});
  // a composite expression and its gradient: y = sum((2 - x) * x / 4 + -x) -> dy/dx = (2 - 2x)/4 - 1
  grad("operators", [](const In& in) { return (2.0 - in[0]) * in[0] / 4.0 + -in[0]; }, {input({2, 3}, 161)});
  D x = make({3}, {1, 2, 3}, true);
  sum((2.0 - x) * x / 4.0 + -x).backward();
  check_array(x.grad(), {3}, {-1.0, -1.5, -2.0});
}

TEST_CASE("operators on Tensor<float> with double literals (x * 1.01, 2.0 - x, 1.0 / x)") {
  Tensor<float> x = make<float>({3}, {1.0f, 2.0f, 4.0f}, true);
  const Tensor<float> y = x * 1.01;
  check_values(y, {3}, {1.01, 2.02, 4.04}, 1e-6);
  check_values(1.01 * x, {3}, {1.01, 2.02, 4.04}, 1e-6);
  check_values(x + 0.5, {3}, {1.5, 2.5, 4.5}, 1e-6);
  check_values(0.5 + x, {3}, {1.5, 2.5, 4.5}, 1e-6);
  check_values(x - 0.5, {3}, {0.5, 1.5, 3.5}, 1e-6);
  check_values(2.0 - x, {3}, {1.0, 0.0, -2.0}, 1e-6);
  check_values(x / 2.0, {3}, {0.5, 1.0, 2.0}, 1e-6);
  check_values(1.0 / x, {3}, {1.0, 0.5, 0.25}, 1e-6);
  check_values(-x, {3}, {-1.0, -2.0, -4.0}, 1e-6);
  check_values(pow(x, 2.0), {3}, {1.0, 4.0, 16.0}, 1e-6);
  check_values(x * x - x / x, {3}, {0.0, 3.0, 15.0}, 1e-6);
  // float gradient: d/dx sum(x * 1.01 + 1 / x) = 1.01 - 1/x^2
  sum(x * 1.01 + 1.0 / x).backward();
  check_array(x.grad(), {3}, {0.01, 1.01 - 0.25, 1.01 - 1.0 / 16}, 1e-5);
}

TEST_CASE("float gradients of binary and unary ops, first write and accumulation, are exact float arithmetic") {
  // a and b are read by two ops each, so each gets one gradient written and one added.
  const std::vector<float> av = {0.3f, -1.7f, 2.9f}, bv = {0.1f, 1.3f, -0.7f};
  Tensor<float> a = make<float>({3}, av, true), b = make<float>({3}, bv, true);
  const Tensor<float> t = tanh(b);
  sum(a * b - a + t * 3.0f).backward();
  for (std::size_t i = 0; i < 3; ++i) {
    // sub: -1 into a; mul: 1 * b into a and 1 * a into b; tanh: 3 (1 - t^2) into b.
    const float ti = t.data()[i];
    CHECK(a.grad()[i] == -1.0f + 1.0f * bv[i]);
    CHECK(b.grad()[i] == 1.0f * av[i] + (1.0f * 3.0f) * (1.0f - ti * ti));
  }
  // c is read by two unary ops only: one gradient written and one added by unary backwards.
  Tensor<float> c = make<float>({3}, bv, true);
  const Tensor<float> u = tanh(c);
  sum(u * 3.0f + c * 2.0f).backward();
  for (std::size_t i = 0; i < 3; ++i) {
    const float ui = u.data()[i];
    CHECK(c.grad()[i] == (1.0f * 3.0f) * (1.0f - ui * ui) + 1.0f * 2.0f);
  }
}
