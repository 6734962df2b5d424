// Tensor creation and inspection as a PyTorch user expects them: torch.tensor, arange,
// linspace, eye, the *_like family, to<U>(), clone() and operator<< (PyTorch's repr).
// Against PyTorch 1.13 where it has the function (tests/fixtures/make_helpers_fixtures.py
// writes helpers/creation.json and helpers/print.json), by hand elsewhere.
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "fixtures.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// A fixture number; NaN and infinities are strings there.
double number(const json& v) {
  if (!v.is_string()) return v.get<double>();
  const std::string s = v.get<std::string>();
  if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  return s == "inf" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
}

template <class T> Tensor<T> tensor_of(const json& t, bool requires_grad = false) {
  std::vector<T> values;
  for (const auto& v : t.at("data")) values.push_back(T(number(v)));
  return tensor<T>(values, t.at("shape").get<Shape>(), requires_grad);
}

// ---- creation -------------------------------------------------------------------------
template <class T> Tensor<T> make_creation(const json& c) {
  const std::string op = c.at("op");
  const json& a = c.at("args");
  if (op == "arange") return arange<T>(a[0].get<double>(), a[1].get<double>(), a[2].get<double>());
  if (op == "linspace") return linspace<T>(a[0].get<double>(), a[1].get<double>(), a[2].get<std::size_t>());
  return eye<T>(a[0].get<std::size_t>(), a[1].get<std::size_t>());
}

// float: PyTorch's vectorised kernels may round a value's last bit differently.
template <class T> void check_creation(const json& c, double tol) {
  const Tensor<T> ours = make_creation<T>(c);
  Deviation dev(c.at("name").get<std::string>(), tol);
  dev.compare(Array<double>(xt::cast<double>(ours.data())), c.at("out"), "values");
  CHECK_FALSE(ours.requires_grad());
}

// ---- printing -------------------------------------------------------------------------
// The tensor a print case shows: its values (or its arange recipe), then the op that gives
// it PyTorch's grad_fn.
template <class T> Tensor<T> print_subject(const json& c) {
  const bool requires_grad = c.at("requires_grad");
  Tensor<T> x;
  if (c.contains("arange")) {
    const Shape shape = c.at("arange").get<Shape>();
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    std::vector<T> values(n);
    for (std::size_t k = 0; k < values.size(); ++k) values[k] = T(double(k) * c.at("scale").get<double>());
    x = tensor<T>(values, shape, requires_grad);
  } else {
    x = tensor_of<T>(c.at("x"), requires_grad);
  }
  const std::string op = c.at("op").is_null() ? "" : c.at("op").get<std::string>();
  if (op.empty()) return x;
  if (op == "mul") return x * 2.0;
  if (op == "add") return x + x;
  if (op == "sub") return x - 1.0;
  if (op == "sum") return sum(x);
  if (op == "mean") return mean(x);
  if (op == "matmul") return matmul(x, x);
  if (op == "clone") return x.clone();
  if (op == "reshape") return reshape(x, {-1});
  if (op == "relu") return relu(x);
  if (op == "tanh") return tanh(x);
  if (op == "concat") return concat<T>({x, x});
  if (op == "stack") return stack<T>({x, x});
  if (op == "cumsum") return cumsum(x, 0);
  if (op == "logsumexp") return logsumexp(x, {1});
  if (op == "softmax") return softmax(x, -1);
  if (op == "log_softmax") return log_softmax(x, -1);
  if (op == "gather") return gather(x, 1, Indices{{1, 0}});
  if (op == "sort") return sort(x).values;
  if (op == "min") return min(x, {1});
  if (op == "max") return max(x, {1});
  FAIL("unknown print op " << op);
  return x;
}

template <class T> std::string printed(const Tensor<T>& t) {
  std::ostringstream out;
  out << t;
  return out.str();
}

}  // namespace

TEST_CASE("helpers: arange, linspace and eye match PyTorch in float and double") {
  const json fixture = load_fixture("helpers", "creation.json");
  for (const auto& c : fixture.at("cases")) {
    if (c.at("dtype") == "float32")
      check_creation<float>(c, 1e-6);
    else
      check_creation<double>(c, 1e-15);
  }
}

TEST_CASE("helpers: arange by hand: the default start, a negative step, and the bad ranges throw") {
  check_values(arange<double>(4), {4}, {0, 1, 2, 3});
  check_values(arange<float>(5, 2, -1.5), {2}, {5, 3.5});
  check_values(arange<double>(3, 3), {0}, {});
  check_throws_with([] { arange<double>(0, 5, 0); }, {"arange", "step must be nonzero", "[0, 5)"});
  check_throws_with([] { arange<double>(0, 5, -1); }, {"arange", "wrong side", "[0, 5) with step -1"});
  check_throws_with([] { arange<float>(0, std::numeric_limits<double>::infinity()); }, {"arange", "unsupported"});
}

TEST_CASE("helpers: tensor() takes values in row-major order and names both sizes when they differ") {
  const Tensor<float> t = tensor<float>({1, 2, 3, 4, 5, 6}, {2, 3}, true);
  check_values(t, {2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(t.requires_grad());
  CHECK(t.is_leaf());
  check_values(tensor<double>({7}, {}), {}, {7});  // a 0-d tensor
  check_throws_with([] { tensor<double>({1, 2, 3, 4, 5}, {2, 2}); }, {"tensor", "5 values", "(2,2)", "holds 4"});
}

TEST_CASE("helpers: zeros_like, ones_like, full_like and randn_like take x's shape, not its values") {
  const D x = iota({2, 3}, true);
  const D z = zeros_like(x), o = ones_like(x, true), f = full_like(x, 2.5);
  check_values(z, {2, 3}, std::vector<double>(6, 0.0));
  check_values(o, {2, 3}, std::vector<double>(6, 1.0));
  check_values(f, {2, 3}, std::vector<double>(6, 2.5));
  CHECK_FALSE(z.requires_grad());
  CHECK(o.requires_grad());
  const Tensor<float> xf = iota<float>({3});
  check_values(full_like(xf, 0.5), {3}, {0.5, 0.5, 0.5});  // a double literal for a float tensor
  Generator g1(7), g2(7);
  const D r = randn_like(x, g1);
  const D expected = randn<double>({2, 3}, g2);
  REQUIRE(r.shape() == Shape{2, 3});
  for (std::size_t i = 0; i < 6; ++i) CHECK(r.data().data()[i] == expected.data().data()[i]);
  check_throws_with([] { zeros_like(D()); }, {"zeros_like", "undefined"});
}

TEST_CASE("helpers: eye(n) is square; eye(n, m) rectangular") {
  check_values(eye<float>(2), {2, 2}, {1, 0, 0, 1});
  check_values(eye<double>(2, 3), {2, 3}, {1, 0, 0, 0, 1, 0});
}

TEST_CASE("helpers: to<U>() copies into another scalar type as a leaf keeping requires_grad") {
  Tensor<float> xf = tensor<float>({0.1f, -2.0f, 3.5f}, {3}, true);
  const Tensor<float> y = xf * 2.0;
  const Tensor<double> yd = y.to<double>();
  CHECK(yd.is_leaf());
  CHECK(yd.requires_grad());
  for (std::size_t i = 0; i < 3; ++i) CHECK(yd.data()(i) == double(y.data()(i)));  // float to double is exact
  const Tensor<float> back = tensor<double>({0.1, 1e-50}, {2}).to<float>();
  CHECK_FALSE(back.requires_grad());
  CHECK(back.data()(0) == 0.1f);
  CHECK(back.data()(1) == 0.0f);
  // To its own type: the very tensor, as PyTorch's x.to(x.dtype) is x.
  CHECK(xf.to<float>().node_ptr() == xf.node_ptr());
  // The copy owns its storage.
  Tensor<double> xd = xf.to<double>();
  xd.mutable_data()(0) = 9;
  CHECK(xf.data()(0) == 0.1f);
}

TEST_CASE("helpers: clone() is a copy in new storage that passes the gradient through") {
  D x = iota({2, 2}, true);
  D c = x.clone();
  CHECK(c.data().data() != x.data().data());
  CHECK_FALSE(c.is_leaf());
  CHECK(std::string(c.op_name()) == "clone");
  sum(c * iota({2, 2})).backward();
  check_array(x.grad(), {2, 2}, {1, 2, 3, 4});
  grad("clone", [](const In& in) { return in[0].clone() * in[0]; }, {input({3}, 1)});
  grad("clone", [](const In& in) { return in[0].clone(); }, {input({2, 3, 2}, 2)});
}

TEST_CASE("helpers: operator<< prints as PyTorch's repr") {
  const json fixture = load_fixture("helpers", "print.json");
  std::size_t compared = 0;
  for (const auto& c : fixture.at("cases")) {
    const std::string expected = c.at("repr"), name = c.at("name");
    const std::string ours =
        c.at("dtype") == "float64" ? printed(print_subject<double>(c)) : printed(print_subject<float>(c));
    CHECK_MESSAGE(ours == expected, name << ":\nours:\n" << ours << "\nPyTorch:\n" << expected);
    ++compared;
  }
  CHECK(compared >= 50);
}

TEST_CASE("helpers: operator<< by hand: an undefined tensor, and a result made without grad mode is a leaf") {
  CHECK(printed(D()) == "tensor(undefined)");
  const Tensor<float> x = tensor<float>({1, 2}, {2}, true);
  NoGradGuard guard;
  CHECK(printed(x * 2.0) == "tensor([2., 4.])");
}
