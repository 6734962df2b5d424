// The engine: graph recording, backward, accumulation, release of the graph, grad mode,
// detach, deep graphs, error handling, creation and the random generator.
#include <pthread.h>

#include <cmath>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "helpers.hpp"

using namespace xtgrad;
using xtgrad::testing::check_throws_with;
using xtgrad::testing::input;

namespace {

using D = Tensor<double>;
using F = Tensor<float>;

// Same shape and every element within tol (absolute + relative).
template <class A, class B> void check_close(const A& actual, const B& expected, double tol = 1e-12) {
  REQUIRE(Shape(actual.shape().begin(), actual.shape().end()) ==
          Shape(expected.shape().begin(), expected.shape().end()));
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double a = static_cast<double>(actual.data()[i]);
    const double e = static_cast<double>(expected.data()[i]);
    CHECK_MESSAGE(std::abs(a - e) <= tol * (1.0 + std::abs(e)), "element " << i << ": " << a << " vs expected " << e);
  }
}

// Asserts that f throws std::logic_error (or a subclass) whose message contains fragment.
template <class Fn> void check_logic_error_with(Fn&& f, const std::string& fragment) {
  try {
    f();
    FAIL("expected std::logic_error");
  } catch (const std::logic_error& e) {
    const std::string what = e.what();
    CHECK_MESSAGE(what.find(fragment) != std::string::npos, "'" << what << "' lacks '" << fragment << "'");
  }
}

// Runs fn on a thread with a 1 MiB stack and waits for it; rethrows what fn threw. A
// recursion of one frame per op needs several MiB for 100,000 ops (the 8 MiB main stack
// can absorb it), so deep-graph tests run here to prove the engine does not recurse.
template <class Fn> void run_on_small_stack(Fn fn) {
  struct Job {
    Fn fn;
    std::exception_ptr error;
  } job{std::move(fn), nullptr};
  pthread_attr_t attr;
  REQUIRE(pthread_attr_init(&attr) == 0);
  REQUIRE(pthread_attr_setstacksize(&attr, std::size_t(1) << 20) == 0);
  pthread_t thread;
  const int created = pthread_create(
      &thread, &attr,
      [](void* arg) -> void* {
        auto* j = static_cast<Job*>(arg);
        try {
          j->fn();
        } catch (...) {
          j->error = std::current_exception();
        }
        return nullptr;
      },
      &job);
  pthread_attr_destroy(&attr);
  REQUIRE(created == 0);
  REQUIRE(pthread_join(thread, nullptr) == 0);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace

// ---- backward ---------------------------------------------------------------------------

TEST_CASE("engine: diamond graph x -> (2x, x*x) -> sum(a*b) gives 6x^2") {
  D x = input({2, 3}, 1);
  D a = x * 2.0;
  D b = x * x;
  D y = sum(a * b);  // sum(2 x^3)
  CHECK(y.item() == doctest::Approx(2.0 * xt::sum(x.data() * x.data() * x.data())()));
  y.backward();
  check_close(x.grad(), Array<double>(6.0 * x.data() * x.data()));
}

TEST_CASE("engine: diamond through an interior node sums both branches before its backward") {
  D x = input({4}, 2);
  D h = x * 3.0;                   // interior node consumed by two ops
  D y = sum((h * 2.0) * (h * h));  // sum(2 h^3), dy/dh = 6 h^2, dy/dx = 18 h^2
  y.backward();
  check_close(x.grad(), Array<double>(18.0 * h.data() * h.data()));
  // Interior gradients are scratch, as in PyTorch: only leaves keep theirs.
  CHECK_FALSE(h.has_grad());
  CHECK_FALSE(y.has_grad());
}

TEST_CASE("engine: one tensor used by several ops accumulates every use") {
  D x = input({3, 2}, 3);
  D y = sum(x * x + exp(x) + x * 3.0 + x);  // x*x uses x twice in one op
  y.backward();
  check_close(x.grad(), Array<double>(2.0 * x.data() + xt::exp(x.data()) + 4.0));
}

TEST_CASE("engine: gradients accumulate across backward calls until zero_grad") {
  D x = input({5}, 4);
  const Array<double> once = 2.0 * x.data();
  sum(x * x).backward();
  check_close(x.grad(), once);
  sum(x * x).backward();  // a fresh graph, the same leaf
  check_close(x.grad(), Array<double>(2.0 * once));

  x.zero_grad();
  REQUIRE(x.has_grad());
  check_close(x.grad(), Array<double>(xt::zeros<double>({5})));

  sum(x * x).backward();
  check_close(x.grad(), once);
}

TEST_CASE("engine: backward with an explicit gradient on a non-scalar output") {
  D x = input({2, 3}, 5);
  D w = input({3}, 6);
  D y = x * x * w;  // (2,3), w broadcast
  const Array<double> g = {{1.0, -2.0, 0.5}, {3.0, 0.0, -1.5}};
  y.backward(g);
  check_close(x.grad(), Array<double>(2.0 * x.data() * w.data() * g));
  check_close(w.grad(), Array<double>(xt::sum(x.data() * x.data() * g, {0})));
}

TEST_CASE("engine: backward with a gradient of the wrong shape throws invalid_argument") {
  D x = input({2, 3}, 7);
  D y = x * 2.0;
  check_throws_with([&] { y.backward(Array<double>(xt::ones<double>({3, 2}))); }, {"backward", "(3,2)", "(2,3)"});
  CHECK_FALSE(x.has_grad());
}

TEST_CASE("engine: backward on a leaf puts the output gradient into the leaf") {
  D x = input({2, 2}, 8);
  const Array<double> g = {{1.0, 2.0}, {3.0, 4.0}};
  x.backward(g);
  check_close(x.grad(), g);
}

TEST_CASE("engine: retain_graph allows a second backward, which accumulates") {
  D x = input({4}, 9);
  D y = sum(x * x * x);
  const Array<double> once = 3.0 * x.data() * x.data();
  y.backward(/*retain_graph=*/true);
  check_close(x.grad(), once);
  y.backward(/*retain_graph=*/true);
  check_close(x.grad(), Array<double>(2.0 * once));  // interior grads did not leak
  y.backward();                                      // last use: releases
  check_close(x.grad(), Array<double>(3.0 * once));
  check_logic_error_with([&] { y.backward(); }, "retain_graph");
  check_close(x.grad(), Array<double>(3.0 * once));  // the failed call added nothing
}

TEST_CASE("engine: a second backward after the graph was released throws logic_error") {
  D x = input({3}, 10);
  D y = sum(x * x);
  y.backward();
  check_logic_error_with([&] { y.backward(); }, "retain_graph");
}

TEST_CASE("engine: backward through an interior node released by another output throws") {
  D x = input({3}, 11);
  D h = x * x;
  D y1 = sum(h);
  D y2 = sum(h * 3.0);
  y1.backward();  // releases h's graph too
  check_logic_error_with([&] { y2.backward(); }, "retain_graph");
  check_close(x.grad(), Array<double>(2.0 * x.data()));
}

TEST_CASE("engine: backward on a non-scalar output without a gradient throws invalid_argument") {
  D x = input({2, 3}, 12);
  D y = x * 2.0;
  check_throws_with([&] { y.backward(); }, {"backward", "one-element", "(2,3)", "gradient"});
  CHECK_FALSE(x.has_grad());
}

TEST_CASE("engine: backward on a tensor that does not require grad throws") {
  D c({1.0, 2.0});
  check_logic_error_with([&] { sum(c).backward(); }, "does not require");
  D s = sum(c * c);
  CHECK_THROWS_AS(s.backward(), std::logic_error);
}

// ---- grad mode --------------------------------------------------------------------------

TEST_CASE("engine: NoGradGuard records no graph") {
  D x = input({3}, 13);
  REQUIRE(grad_enabled());
  {
    NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    D y = x * 2.0 + x;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
    CHECK(y.node_ptr()->inputs().empty());
    check_close(y.data(), Array<double>(3.0 * x.data()));
    CHECK_THROWS_AS(sum(y).backward(), std::logic_error);
  }
  CHECK(grad_enabled());
  D z = x * 2.0;
  CHECK(z.requires_grad());
  CHECK_FALSE(z.is_leaf());
}

TEST_CASE("engine: nested NoGradGuards restore the previous state") {
  CHECK(grad_enabled());
  {
    NoGradGuard outer;
    CHECK_FALSE(grad_enabled());
    {
      NoGradGuard inner;
      CHECK_FALSE(grad_enabled());
    }
    CHECK_FALSE(grad_enabled());  // inner restores "off", not "on"
  }
  CHECK(grad_enabled());
}

TEST_CASE("engine: NoGradGuard on one thread does not affect another thread") {
  D x = input({3}, 14);
  const Array<double> x_value = x.data();

  // A guard on this thread; the other thread still records and differentiates.
  {
    NoGradGuard guard;
    bool enabled = false, requires = false, leaf = true;
    Array<double> grad;
    std::thread worker([&] {
      D w({1.0, 2.0, 3.0}, true);
      enabled = grad_enabled();
      D y = sum(w * w);
      requires = y.requires_grad();
      leaf = y.is_leaf();
      y.backward();
      grad = w.grad();
    });
    worker.join();
    CHECK_FALSE(grad_enabled());
    CHECK(enabled);
    CHECK(requires);
    CHECK_FALSE(leaf);
    check_close(grad, Array<double>{2.0, 4.0, 6.0});
  }

  // A guard alive on the other thread while this thread records.
  std::promise<void> guard_taken, main_done;
  std::future<void> main_done_future = main_done.get_future();
  bool worker_enabled = true;
  std::thread worker([&] {
    NoGradGuard guard;
    worker_enabled = grad_enabled();
    guard_taken.set_value();
    main_done_future.wait();
  });
  guard_taken.get_future().wait();
  CHECK(grad_enabled());
  D y = sum(x * x);
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  main_done.set_value();
  worker.join();
  CHECK_FALSE(worker_enabled);
  y.backward();
  check_close(x.grad(), Array<double>(2.0 * x_value));
}

// ---- detach -----------------------------------------------------------------------------

TEST_CASE("engine: detach keeps the value and stops the gradient") {
  D x = input({2, 2}, 15);
  D h = x * 3.0;
  D d = h.detach();
  check_close(d.data(), h.data(), 0.0);
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
  D y = sum(d * x);  // d = 3x, but only the direct path through x carries a gradient
  y.backward();
  check_close(x.grad(), Array<double>(3.0 * x.data()));  // not 6x
  CHECK_FALSE(d.has_grad());
}

// ---- freeing the graph ------------------------------------------------------------------

TEST_CASE("engine: backward without retain_graph frees intermediate nodes") {
  D x = input({3}, 16);
  std::weak_ptr<Node<double>> weak_h, weak_hh;
  D y;
  {
    D h = x * 2.0;
    D hh = h * h;
    weak_h = h.node_ptr();
    weak_hh = hh.node_ptr();
    y = sum(hh);
  }
  REQUIRE_FALSE(weak_h.expired());  // the output's graph still holds them
  REQUIRE_FALSE(weak_hh.expired());
  y.backward();
  CHECK(weak_h.expired());
  CHECK(weak_hh.expired());
  CHECK(y.node_ptr()->inputs().empty());
  check_close(x.grad(), Array<double>(8.0 * x.data()));                      // d sum(4x^2)/dx
  CHECK(y.item() == doctest::Approx(4.0 * xt::sum(x.data() * x.data())()));  // value kept
}

TEST_CASE("engine: backward with retain_graph keeps intermediate nodes alive") {
  D x = input({3}, 17);
  std::weak_ptr<Node<double>> weak_h;
  D y;
  {
    D h = x * 2.0;
    weak_h = h.node_ptr();
    y = sum(h * h);
  }
  y.backward(/*retain_graph=*/true);
  CHECK_FALSE(weak_h.expired());
  y.backward();  // retained graph still works, then is released
  check_close(x.grad(), Array<double>(16.0 * x.data()));
  CHECK(weak_h.expired());
}

// ---- deep graphs ------------------------------------------------------------------------

TEST_CASE("engine: backward through a chain of 100,000 ops") {
  constexpr int n = 100000;
  constexpr double factor = 1.0000001;
  D x({0.5, -2.0}, true);
  Array<double> y_value;
  run_on_small_stack([&] {
    D y = x;
    for (int i = 0; i < n; ++i) y = y * factor;
    sum(y).backward();
    y_value = y.data();
  });  // the released graph and y are dropped on the small stack too
  double product = 1.0;
  for (int i = 0; i < n; ++i) product *= factor;
  REQUIRE(x.has_grad());
  check_close(x.grad(), Array<double>{product, product}, 1e-12);
  check_close(y_value, Array<double>(x.data() * product), 1e-12);
  CHECK(product == doctest::Approx(std::exp(n * std::log(factor))));
  CHECK(x.node_ptr().use_count() == 1);
}

TEST_CASE("engine: building and dropping a 100,000-op chain without backward") {
  D x({1.0, 2.0}, true);
  std::weak_ptr<Node<double>> first;
  bool alive_before_drop = false;
  double last_value = 0.0;
  run_on_small_stack([&] {
    D y = x + 0.0;
    first = y.node_ptr();
    for (int i = 0; i < 100000; ++i) y = y + 0.0;
    alive_before_drop = !first.expired();
    last_value = y.data()(1);
  });  // ~Node must not recurse once per op
  CHECK(alive_before_drop);
  CHECK(last_value == 2.0);
  CHECK(first.expired());
  CHECK(x.node_ptr().use_count() == 1);
}

TEST_CASE("engine: a chain of 100,000 ops kept with retain_graph, then dropped") {
  D x({3.0}, true);
  run_on_small_stack([&] {
    D y = x;
    for (int i = 0; i < 100000; ++i) y = y + 0.0;
    y.backward(Array<double>{1.0}, /*retain_graph=*/true);
    y.backward(Array<double>{1.0});
  });
  REQUIRE(x.has_grad());
  CHECK(x.grad()(0) == 2.0);
  CHECK(x.node_ptr().use_count() == 1);
}

TEST_CASE("engine: one leaf used by 100,000 ops") {
  D x({1.5, -0.5}, true);
  run_on_small_stack([&] {
    D y = x;
    for (int i = 0; i < 100000; ++i) y = y + x;  // y = 100,001 x
    sum(y).backward();
  });
  REQUIRE(x.has_grad());
  check_close(x.grad(), Array<double>{100001.0, 100001.0});
}

// ---- requires_grad and errors ---------------------------------------------------------

TEST_CASE("engine: requires_grad propagates only from inputs that require it") {
  D a({1.0, 2.0});
  D b({3.0, 4.0});
  D c = a * b + exp(a);
  CHECK_FALSE(c.requires_grad());
  CHECK(c.is_leaf());
  CHECK(c.node_ptr()->inputs().empty());

  D x({0.5, 1.5}, true);
  D y = x * b;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  sum(y).backward();
  check_close(x.grad(), b.data());
  CHECK_FALSE(b.has_grad());
  CHECK_THROWS_AS(b.grad(), std::logic_error);
}

TEST_CASE("engine: set_requires_grad works on leaves and throws on a non-leaf") {
  D x({1.0, 2.0});
  CHECK_FALSE(x.requires_grad());
  CHECK(x.set_requires_grad().requires_grad());  // returns the tensor, chainable
  D y = x * 2.0;
  check_logic_error_with([&] { y.set_requires_grad(false); }, "leaf");
  CHECK(y.requires_grad());
  x.set_requires_grad(false);
  CHECK_FALSE((x * 2.0).requires_grad());
}

TEST_CASE("engine: grad() before backward throws") {
  D x = input({2}, 18);
  CHECK_FALSE(x.has_grad());
  check_logic_error_with([&] { (void)x.grad(); }, "backward");
  x.zero_grad();  // nothing to zero: still no gradient
  CHECK_FALSE(x.has_grad());
}

TEST_CASE("engine: set_grad, mutable_grad and reset_grad, and backward after each") {
  D x = input({2}, 19);
  x.set_grad(Array<double>{1.0, 2.0});
  REQUIRE(x.has_grad());
  x.mutable_grad() *= 3.0;  // in place, as clip_grad_norm scales
  check_close(x.grad(), Array<double>{3.0, 6.0});
  sum(x * 1.0).backward();  // a gradient is there: backward adds to it
  check_close(x.grad(), Array<double>{4.0, 7.0});
  check_throws_with([&] { x.set_grad(Array<double>{1.0}); }, {"set_grad", "(1)", "(2)"});
  x.reset_grad();  // PyTorch's x.grad = None
  CHECK_FALSE(x.has_grad());
  check_logic_error_with([&] { (void)x.mutable_grad(); }, "backward");
  sum(x * 2.0).backward();  // no gradient: backward's first write overwrites
  check_close(x.grad(), Array<double>{2.0, 2.0});
}

TEST_CASE("engine: an op's node shows its inputs and op name, a leaf none") {
  D x = input({2}, 20), z = input({2}, 21);
  D y = x * z;
  CHECK(x.node_ptr()->inputs().empty());
  CHECK(x.node_ptr()->is_leaf());
  REQUIRE(y.node_ptr()->inputs().size() == 2);
  CHECK(y.node_ptr()->inputs()[0] == x.node_ptr());
  CHECK(std::string(y.node_ptr()->op()) == y.op_name());
  CHECK(y.node_ptr()->requires_grad());
}

TEST_CASE("engine: item() needs exactly one element") {
  check_throws_with([] { (void)D({1.0, 2.0}).item(); }, {"item", "(2)"});
  check_throws_with([] { (void)D(Array<double>(xt::zeros<double>({0}))).item(); }, {"item"});
  CHECK(D(Array<double>(xt::ones<double>({1, 1}) * 4.5)).item() == 4.5);
  CHECK(D(Array<double>(2.25)).item() == 2.25);  // 0-d
}

TEST_CASE("engine: an undefined Tensor throws on use") {
  D undefined;
  CHECK_FALSE(undefined.defined());
  CHECK_THROWS_AS((void)undefined.shape(), std::logic_error);
  CHECK_THROWS_AS(undefined.backward(), std::logic_error);
}

TEST_CASE("engine: an undefined Tensor passed to an op is refused naming the op and the argument") {
  const D x = xtgrad::testing::iota({2, 3}), u;
  const F uf;
  const Mask mask = xt::ones<bool>({std::size_t(2), std::size_t(3)});
  Generator gen(1);
  const D q = input({1, 2, 4}, 1), w = input({4, 4}, 2);
  // {op, the argument's position, the call}: every public op, and each tensor position
  // once where an op has several.
  const std::vector<std::tuple<std::string, int, std::function<void()>>> calls = {
      {"add", 1, [&] { add(u, x); }},
      {"add", 2, [&] { add(x, u); }},
      {"add", 2, [&] { add(2.0, u); }},
      {"sub", 1, [&] { sub(u, 2.0); }},
      {"sub", 2, [&] { sub(2.0, u); }},
      {"mul", 2, [&] { mul(2.0, u); }},
      {"mul", 1, [&] { (void)(u * x); }},
      {"div", 2, [&] { div(2.0, u); }},
      {"div", 1, [&] { div(u, 2.0); }},
      {"pow", 2, [&] { xtgrad::pow(x, u); }},
      {"pow", 2, [&] { xtgrad::pow(2.0, u); }},
      {"pow", 1, [&] { xtgrad::pow(u, 2.0); }},
      {"neg", 1, [&] { (void)(-u); }},
      {"exp", 1, [&] { xtgrad::exp(u); }},
      {"log", 1, [&] { xtgrad::log(u); }},
      {"sqrt", 1, [&] { xtgrad::sqrt(u); }},
      {"abs", 1, [&] { xtgrad::abs(u); }},
      {"tanh", 1, [&] { xtgrad::tanh(u); }},
      {"sigmoid", 1, [&] { sigmoid(u); }},
      {"relu", 1, [&] { relu(u); }},
      {"gelu", 1, [&] { gelu(u); }},
      {"gelu", 1, [&] { gelu(u, GeluApproximation::tanh); }},
      {"clamp", 1, [&] { clamp(u, 0.0, 1.0); }},
      {"sum", 1, [&] { sum(u); }},
      {"mean", 1, [&] { mean(u); }},
      {"max", 1, [&] { xtgrad::max(u); }},
      {"var", 1, [&] { var(u); }},
      {"reshape", 1, [&] { reshape(u, {-1}); }},
      {"transpose", 1, [&] { transpose(u, 0, 1); }},
      {"permute", 1,
       [&] {
         permute(u, {1, 0});
       }},
      {"unsqueeze", 1, [&] { unsqueeze(u, 0); }},
      {"squeeze", 1, [&] { squeeze(u, 0); }},
      {"squeeze", 1, [&] { squeeze(u); }},
      {"expand", 1,
       [&] {
         expand(u, {2, 3});
       }},
      {"narrow", 1, [&] { narrow(u, 0, 0, 1); }},
      {"slice", 1, [&] { slice(u, 0, 0, 1); }},
      {"index_select", 1, [&] { index_select(u, 0, {0}); }},
      {"matmul", 1, [&] { matmul(u, x); }},
      {"matmul", 2, [&] { matmul(x, u); }},
      {"matmul", 2,
       [&] {
         matmul(F(xt::ones<float>({2, 2})), uf);
       }},
      {"linear", 2, [&] { linear(x, u); }},
      {"linear", 3, [&] { linear(x, w, std::optional<D>(u)); }},
      {"attention_heads", 2, [&] { attention_heads(q, u, q, 2); }},
      {"attention_heads_all_pairs", 3, [&] { attention_heads_all_pairs(q, q, u, 2, w); }},
      {"attention_heads_all_pairs", 6, [&] { attention_heads_all_pairs(q, q, q, 2, w, std::optional<D>(u)); }},
      {"softmax", 1, [&] { softmax(u); }},
      {"log_softmax", 1, [&] { log_softmax(u); }},
      {"layer_norm", 1, [&] { layer_norm(u, {3}); }},
      {"layer_norm", 4, [&] { layer_norm<double>(x, {3}, std::nullopt, u); }},
      {"cross_entropy", 1,
       [&] {
         cross_entropy(u, std::vector<std::size_t>{0, 1});
       }},
      {"cross_entropy", 2, [&] { cross_entropy(x, u); }},
      {"mse_loss", 2, [&] { mse_loss(x, u); }},
      {"dropout", 1, [&] { dropout(u, 0.5, false, gen); }},
      {"masked_fill", 1, [&] { masked_fill(u, mask, 0.0); }},
      {"where", 3, [&] { where(mask, x, u); }},
  };
  for (const auto& call : calls) {
    const std::string expected =
        std::get<0>(call) + ": argument " + std::to_string(std::get<1>(call)) + " is an undefined Tensor";
    CAPTURE(expected);
    check_throws_with(std::get<2>(call), {expected});
  }
  check_throws_with([&] { concat<double>({x, u, x}); }, {"concat: argument 1 holds an undefined Tensor at index 1"});
  // an empty optional is no tensor at all, not an undefined one
  CHECK(linear<double>(x, D(xt::ones<double>({2, 3})), std::nullopt).shape() == Shape{2, 2});
}

// ---- creation ---------------------------------------------------------------------------

TEST_CASE("creation: a ragged nested initializer list is refused, naming the lengths") {
  // xtensor took the first row's length for all: {{1, 2}, {3}} became (1,2,3,garbage) and
  // {{1}, {2, 3}} wrote past the end of its (2,1) buffer.
  check_throws_with(
      [] {
        F({{1, 2}, {3}});
      },
      {"ragged nested initializer list", "the list at [1] has length 1", "the one at [0] has length 2"});
  check_throws_with([] { D({{1.0}, {2.0, 3.0}}); }, {"the list at [1] has length 2", "the one at [0] has length 1"});
  check_throws_with([] { D({{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0, 7.0}}); }, {"the list at [2] has length 3"});
  // three deep: a short innermost list, then a short middle one
  check_throws_with(
      [] {
        F({{{1, 2}, {3, 4}}, {{5, 6}, {7}}});
      },
      {"the list at [1][1] has length 1", "the one at [0][0] has length 2"});
  check_throws_with(
      [] {
        F({{{1, 2}}, {{3, 4}, {5, 6}}});
      },
      {"the list at [1] has length 2", "the one at [0] has length 1"});
  // four deep
  check_throws_with(
      [] {
        D({{{{1.0, 2.0}}}, {{{3.0}}}});
      },
      {"the list at [1][0][0] has length 1", "the one at [0][0][0] has length 2"});
  // rectangular lists still build, requires_grad passed on
  const F ok({{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}, true);
  CHECK(ok.shape() == Shape{2, 2, 2});
  CHECK(ok.requires_grad());
  CHECK(ok.data()(1, 1, 1) == 8.0f);
  CHECK(D({{{{1.0, 2.0}}}}).shape() == Shape{1, 1, 1, 2});
}

TEST_CASE("creation: zeros, ones and full") {
  D z = zeros<double>({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(xt::all(xt::equal(z.data(), 0.0)));
  CHECK_FALSE(z.requires_grad());
  CHECK(z.is_leaf());

  D o = ones<double>({4}, true);
  CHECK(o.shape() == Shape{4});
  CHECK(xt::all(xt::equal(o.data(), 1.0)));
  CHECK(o.requires_grad());

  D f = xtgrad::full<double>({3, 1, 2}, -2.5);
  CHECK(f.shape() == Shape{3, 1, 2});
  CHECK(f.numel() == 6);
  CHECK(f.dim() == 3);
  CHECK(xt::all(xt::equal(f.data(), -2.5)));

  D s = zeros<double>({});
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
}

TEST_CASE("creation: from_array keeps shape and values") {
  Array<double> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  D t = from_array(a, true);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.requires_grad());
  check_close(t.data(), a, 0.0);
  t.mutable_data()(0, 0) = 100.0;  // the tensor owns a copy
  CHECK(a(0, 0) == 1.0);
}

TEST_CASE("creation: nested initializer lists of 1, 2 and 3 dimensions") {
  D v({1.0, 2.0, 3.0});
  CHECK(v.shape() == Shape{3});
  CHECK(v.data()(2) == 3.0);

  D m({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, true);
  CHECK(m.shape() == Shape{2, 3});
  CHECK(m.requires_grad());
  CHECK(m.data()(1, 0) == 4.0);
  CHECK(m.data()(0, 2) == 3.0);

  D c({{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}}, {{7.0, 8.0}, {9.0, 10.0}, {11.0, 12.0}}});
  CHECK(c.shape() == Shape{2, 3, 2});
  for (std::size_t i = 0; i < 12; ++i) CHECK(c.data().data()[i] == static_cast<double>(i + 1));
  CHECK(c.data()(1, 2, 0) == 11.0);
}

TEST_CASE("random: the same seed gives identical values in two generators") {
  Generator g1(42), g2(42);
  D a1 = randn<double>({10, 10}, g1);
  D b1 = xtgrad::rand<double>({7}, g1, -1.0, 1.0);
  D a2 = randn<double>({10, 10}, g2);
  D b2 = xtgrad::rand<double>({7}, g2, -1.0, 1.0);
  CHECK(a1.data() == a2.data());
  CHECK(b1.data() == b2.data());
  CHECK(g1.next_u64() == g2.next_u64());
}

TEST_CASE("random: different seeds give different values") {
  Generator g1(1), g2(2);
  D a = randn<double>({100}, g1);
  D b = randn<double>({100}, g2);
  std::size_t equal = 0;
  for (std::size_t i = 0; i < 100; ++i) equal += a.data()(i) == b.data()(i);
  CHECK(equal == 0);
}

TEST_CASE("random: rand stays within low <= x < high and fills the range") {
  Generator gen(3);
  D r = xtgrad::rand<double>({100000}, gen, -2.0, 3.0, true);
  CHECK(r.requires_grad());
  CHECK(xt::amin(r.data())() >= -2.0);
  CHECK(xt::amax(r.data())() < 3.0);
  CHECK(xt::amin(r.data())() < -1.99);
  CHECK(xt::amax(r.data())() > 2.99);
  CHECK(xt::mean(r.data())() == doctest::Approx(0.5).epsilon(0.02));
}

TEST_CASE("random: rand<float> never rounds up to high") {
  // With seed 82219, draw 273 of the generator is 0.99999999988..., which rounds to 1.0f
  // when narrowed to float.
  Generator gen(82219);
  F r = xtgrad::rand<float>({1000}, gen);
  CHECK(xt::amax(r.data())() < 1.0f);
  CHECK(r.data()(273) > 0.9999999f);
  CHECK(xt::amin(r.data())() >= 0.0f);
}

TEST_CASE("random: uniform(low, high) never returns high when low + (high - low) u rounds up") {
  // Doubles are 2 apart near 1e16: low + 2u rounds to high for every u >= 0.5.
  const double low = 1e16, high = 1e16 + 2.0;
  Generator gen(7);
  for (int i = 0; i < 100; ++i) {
    const double u = gen.uniform(low, high);
    CHECK(u >= low);
    CHECK(u < high);
  }
  D r = xtgrad::rand<double>({100}, gen, low, high);
  CHECK(xt::amax(r.data())() < high);
  CHECK(xt::amin(r.data())() >= low);
}

TEST_CASE("random: randn has the requested mean and std over 100k samples") {
  Generator gen(4);
  D r = randn<double>({100000}, gen, 3.0, 2.0);
  const double mean = xt::mean(r.data())();
  const double std = std::sqrt(xt::mean(xt::square(r.data() - mean))());
  CHECK(mean == doctest::Approx(3.0).epsilon(0.01));  // sigma of the mean: 0.0063
  CHECK(std == doctest::Approx(2.0).epsilon(0.01));

  F f = randn<float>({100000}, gen);
  CHECK(std::abs(xt::mean(f.data())()) < 0.02f);
}

TEST_CASE("random: Generator state()/set_state() round trip continues identically") {
  Generator gen(5);
  (void)gen.uniform();
  (void)gen.normal();  // leaves the second Box-Muller value pending
  const std::string state = gen.state();

  Generator restored(999);
  restored.set_state(state);
  for (int i = 0; i < 5; ++i) CHECK(restored.normal() == gen.normal());
  CHECK(randn<double>({3, 3}, restored).data() == randn<double>({3, 3}, gen).data());
  CHECK(xtgrad::rand<double>({4}, restored).data() == xtgrad::rand<double>({4}, gen).data());
  CHECK(restored.next_u64() == gen.next_u64());
  CHECK(restored.below(1000) == gen.below(1000));

  CHECK_THROWS_AS(restored.set_state("not a state"), std::invalid_argument);
}

TEST_CASE("engine: Tensor<float> records, differentiates and creates") {
  Generator gen(6);
  F x = randn<float>({3, 4}, gen, 0.0f, 1.0f, true);
  F w = xtgrad::full<float>({4}, 0.5f, true);
  F y = sum(x * x * w + x * 1.5f);
  y.backward();
  check_close(x.grad(), Array<float>(x.data() + 1.5f), 1e-6);
  check_close(w.grad(), Array<float>(xt::sum(x.data() * x.data(), {0})), 1e-5);
  CHECK(F({1.0f, 2.0f}).shape() == Shape{2});
  CHECK(zeros<float>({2, 2}).numel() == 4);
}

// ---- anomaly detection ----------------------------------------------------------------
TEST_CASE("anomaly: a NaN made in a forward names the op") {
  const D x({1.0, -1.0}, true);
  CHECK_NOTHROW(xtgrad::log(x));  // off by default: NaN flows silently, as in PyTorch
  AnomalyGuard guard;
  CHECK_THROWS_WITH_AS(xtgrad::log(x), doctest::Contains("forward of op 'log' produced NaN (first at flat element 1"),
                       AnomalyError);
}

TEST_CASE("anomaly: an infinity made from finite inputs names the op, one passed along does not") {
  AnomalyGuard guard;
  CHECK_THROWS_WITH_AS(xtgrad::exp(D({1.0, 1000.0})), doctest::Contains("forward of op 'exp' produced Inf"),
                       AnomalyError);
  const D inf({std::numeric_limits<double>::infinity(), 1.0});
  CHECK_NOTHROW(inf + 1.0);  // the infinity was there before: not this op's doing
  // masked_fill with -inf is how attention masks: intended, and softmax turns it into 0
  const D scores({{1.0, 2.0}, {3.0, 4.0}}, true);
  Mask blocked = xt::zeros<bool>({2, 2});
  blocked(0, 1) = true;
  D weights;
  CHECK_NOTHROW(weights = softmax(masked_fill(scores, blocked, -std::numeric_limits<double>::infinity())));
  CHECK_NOTHROW(sum(weights * weights).backward());
}

TEST_CASE("anomaly: an infinity made in a backward names the op and the input") {
  const D x({0.0, 4.0}, true);
  D y = sum(xtgrad::sqrt(x));  // d sqrt(x) / dx = 0.5 / sqrt(x): infinite at 0
  AnomalyGuard guard;
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("backward of op 'sqrt' (gradient of its input 0) produced Inf"),
                       AnomalyError);
}

TEST_CASE("anomaly: the guard is per thread and restores the previous state") {
  CHECK_FALSE(anomaly_detection_enabled());
  {
    AnomalyGuard on;
    CHECK(anomaly_detection_enabled());
    bool other_thread = true;
    std::thread([&] { other_thread = anomaly_detection_enabled(); }).join();
    CHECK_FALSE(other_thread);
    {
      AnomalyGuard off(false);
      CHECK_FALSE(anomaly_detection_enabled());
    }
    CHECK(anomaly_detection_enabled());
  }
  CHECK_FALSE(anomaly_detection_enabled());
}
