// Tensor::register_post_accumulate_grad_hook: called once per backward per leaf that the
// pass reaches, with the leaf's final gradient, as early as that gradient is final.
#include <stdexcept>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace xtgrad;
using xtgrad::testing::check_throws_with;

namespace {
using D = Tensor<double>;
}

TEST_CASE("post-accumulate-grad hook: once per backward, after every contribution is summed") {
  D w({1.0, 2.0, 3.0}, true);
  D x({4.0, 5.0, 6.0});
  std::vector<Array<double>> seen;
  w.register_post_accumulate_grad_hook([&](D& leaf) { seen.push_back(leaf.grad()); });
  // w reached by four edges: w * x, + w, and w * w (twice). d/dw = x + 1 + 2w.
  auto loss = [&] { return sum(add(add(mul(w, x), w), mul(w, w))); };
  loss().backward();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == Array<double>{4.0 + 1 + 2, 5.0 + 1 + 4, 6.0 + 1 + 6});
  loss().backward();  // gradients accumulate; the hook sees the sum so far
  REQUIRE(seen.size() == 2);
  CHECK(seen[1] == Array<double>{14.0, 20.0, 26.0});
}

TEST_CASE("post-accumulate-grad hook: runs while the rest of the graph is still being walked") {
  D first({0.5, -1.0}, true);  // read at the start of the forward: its gradient comes last
  D second({2.0, 3.0}, true);  // read at the end: its gradient is final early
  bool first_had_grad = true;
  second.register_post_accumulate_grad_hook([&](D& leaf) {
    CHECK(leaf.grad() == Array<double>{std::tanh(0.5), std::tanh(-1.0)});
    first_had_grad = first.has_grad();
  });
  sum(mul(tanh(first), second)).backward();
  CHECK_FALSE(first_had_grad);
  CHECK(first.has_grad());
}

TEST_CASE("post-accumulate-grad hook: not called for a leaf the pass does not reach") {
  D used({1.0}, true), unused({2.0}, true);
  int calls_used = 0, calls_unused = 0;
  used.register_post_accumulate_grad_hook([&](D&) { ++calls_used; });
  unused.register_post_accumulate_grad_hook([&](D&) { ++calls_unused; });
  mul(used, 3.0).backward(Array<double>{1.0});
  CHECK(calls_used == 1);
  CHECK(calls_unused == 0);
  // A leaf that is itself the root is reached.
  unused.backward(Array<double>{1.0});
  CHECK(calls_unused == 1);
}

TEST_CASE("post-accumulate-grad hook: hooks run in registration order, and a throw stops backward") {
  D w({1.0, 2.0}, true);
  std::vector<int> order;
  w.register_post_accumulate_grad_hook([&](D&) { order.push_back(1); });
  w.register_post_accumulate_grad_hook([&](D&) { order.push_back(2); });
  sum(mul(w, w)).backward();
  CHECK(order == std::vector<int>{1, 2});

  D v({3.0}, true);
  v.register_post_accumulate_grad_hook([](D&) { throw std::runtime_error("hook failed on purpose"); });
  D hidden = tanh(v);
  hidden.retain_grad();
  check_throws_with<std::runtime_error>([&] { sum(mul(hidden, v)).backward(); }, {"hook failed on purpose"});
  CHECK(hidden.has_grad());  // a retained gradient stays, as after a failing op
}

TEST_CASE("post-accumulate-grad hook: only on a leaf that requires a gradient") {
  D w({1.0}, true), c({1.0});
  check_throws_with<std::logic_error>([&] { mul(w, 2.0).register_post_accumulate_grad_hook([](D&) {}); },
                                      {"register_post_accumulate_grad_hook", "op 'mul'"});
  check_throws_with<std::logic_error>([&] { c.register_post_accumulate_grad_hook([](D&) {}); }, {"requires none"});
}
