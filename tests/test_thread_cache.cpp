// The memory the engine keeps per thread (autograd/src/thread_cache.hpp): the pool of
// freed node blocks, the spare vectors of the backward walk, and backward freeing each
// op's value as soon as the walk is done with it.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include "helpers.hpp"

#include "../autograd/src/thread_cache.hpp"

using namespace xtgrad;
namespace block_pool = xtgrad::detail::block_pool;

TEST_CASE("block_pool: freed blocks serve the next requests of their size class on that thread, last first") {
  // More than glibc's own per-thread cache keeps (7 a size), so that malloc alone would
  // not give these addresses back in this order.
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) blocks.push_back(block_pool::allocate(700));
  for (void* b : blocks) block_pool::deallocate(b, 700);
  std::vector<void*> again;
  for (int i = 0; i < 64; ++i) again.push_back(block_pool::allocate(650));  // 650 and 700: the class of 704 bytes
  CHECK(std::equal(again.begin(), again.end(), blocks.rbegin()));
  void* fresh = block_pool::allocate(700);  // the list is empty again: a new block
  CHECK(std::find(blocks.begin(), blocks.end(), fresh) == blocks.end());
  for (void* b : again) block_pool::deallocate(b, 650);
  block_pool::deallocate(fresh, 700);
  // Larger than pooled: straight to ::operator new and back.
  void* big = block_pool::allocate(5000);
  block_pool::deallocate(big, 5000);
}

TEST_CASE("block_pool: blocks freed on another thread, and tensors dropped there, are reused or returned") {
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(block_pool::allocate(704));
  std::vector<Tensor<float>> made;
  for (int i = 0; i < 100; ++i) made.push_back(ones<float>({3}, true) * float(i));
  std::thread other([&] {
    for (void* b : blocks) block_pool::deallocate(b, 704);  // join that thread's lists
    made.clear();                                           // nodes made here, freed there
    // That thread reuses them; its lists go back to operator delete when it exits.
    std::vector<void*> again;
    for (int i = 0; i < 100; ++i) again.push_back(block_pool::allocate(704));
    for (void* b : again) block_pool::deallocate(b, 704);
  });
  other.join();
  const Tensor<float> x = ones<float>({3}, true);
  sum(x * 2.0f).backward();
  CHECK(x.grad() == Array<float>{2, 2, 2});
}

TEST_CASE("backward frees an op's value once every op that reads it has run, not at the end") {
  Tensor<double> x({1.0, 2.0}, true);
  std::weak_ptr<Node<double>> middle;
  bool middle_freed_before_x_final = false;
  x.register_post_accumulate_grad_hook([&](Tensor<double>&) { middle_freed_before_x_final = middle.expired(); });
  Tensor<double> out;
  {
    const Tensor<double> y = x * 3.0;  // only out's op reads y
    middle = y.node_ptr();
    out = sum(y * y);
  }
  out.backward();
  CHECK(middle_freed_before_x_final);
  CHECK(x.grad() == Array<double>{18.0, 36.0});  // d/dx sum((3x)^2) = 18 x
  // Nor does the list the walk keeps for the next pass hold any node (here a leaf) after it.
  std::weak_ptr<Node<double>> leaf;
  {
    Tensor<double> z({1.0}, true);
    leaf = z.node_ptr();
    sum(z * 2.0).backward();
  }
  CHECK(leaf.expired());
}

TEST_CASE("backward inside a hook: the nested pass gets its own walk buffers") {
  Tensor<double> w({1.0, -2.0}, true);
  const Tensor<double> v({3.0, 4.0}, true);
  w.register_post_accumulate_grad_hook([&](Tensor<double>&) { sum(v * v * v).backward(); });
  for (int pass = 1; pass <= 2; ++pass) {
    sum(tanh(w) * 2.0).backward();
    const double t1 = std::tanh(1.0), t2 = std::tanh(-2.0);
    xtgrad::testing::check_array(w.grad(), {2}, {pass * 2.0 * (1 - t1 * t1), pass * 2.0 * (1 - t2 * t2)});
    xtgrad::testing::check_array(v.grad(), {2}, {pass * 27.0, pass * 48.0});  // 3 v^2, summed over passes
  }
}
