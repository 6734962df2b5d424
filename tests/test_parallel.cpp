// Threads (set_num_threads): the pool runs every task once, nests and shares safely, and
// the ops that split their work give the one-thread results (bitwise where each output
// element is computed the same way; to rounding where partial sums are added per band)
// and pass gradcheck on shapes large enough to be split.
#include "helpers.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../autograd/src/gemm_narrow.hpp"
#include "../autograd/src/parallel.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// Runs the test body with n threads and goes back to the thread count it found.
struct ThreadsGuard {
  explicit ThreadsGuard(int n) : previous(num_threads()) { set_num_threads(n); }
  ~ThreadsGuard() { set_num_threads(previous); }
  int previous;
};

// The loss of a small model that uses every parallel op, and its input gradients.
std::vector<Array<float>> run_model(int threads) {
  ThreadsGuard guard(threads);
  Tensor<float> q = input<float>({16, 4, 32}, 1), kv = input<float>({10, 16, 32}, 2), w = input<float>({32, 32}, 3);
  Tensor<float> lw = input<float>({32}, 4), lb = input<float>({32}, 5);
  Tensor<float> pq = input<float>({10, 4, 32}, 6);                           // queries paired with kv's batch elements
  Tensor<float> ow = input<float>({32, 32}, 7), ob = input<float>({32}, 8);  // all pairs' output projection
  const FusedAttention<float> att = attention_heads_all_pairs<float>(q, kv, kv, 4, ow, ob);  // (16,10,4,32)
  const Tensor<float> mixed = matmul(reshape(att.output, {640, 32}), w);  // 640 rows: split, two bands
  const Tensor<float> y = gelu(layer_norm<float>(mixed, {32}, lw, lb));
  // Paired attention, one task per (batch, head); a mask that leaves query row 1 of batch
  // element 2 nothing to attend to.
  Mask allowed = xt::ones<bool>({std::size_t(10), std::size_t(4), std::size_t(16)});
  for (std::size_t j = 0; j < 16; ++j) allowed(2, 1, j) = false;
  allowed(5, 0, 3) = false;
  const Tensor<float> paired = attention_heads(pq, kv, kv, 4, allowed).output;  // (10,4,32)
  (sum(y * y) + sum(paired * paired)).backward();
  return {y.data(),  q.grad(),      kv.grad(), w.grad(),  lw.grad(),
          lb.grad(), paired.data(), pq.grad(), ow.grad(), ob.grad()};
}

}  // namespace

TEST_CASE("parallel: for_each runs every index exactly once, with 1, 2 and 3 threads") {
  for (int threads : {1, 2, 3}) {
    ThreadsGuard guard(threads);
    CHECK(parallel::threads() == std::size_t(threads));
    for (std::size_t count : {0u, 1u, 2u, 7u, 1000u}) {
      std::vector<std::atomic<int>> hits(count);
      parallel::for_each(count, [&](std::size_t i) { hits[i].fetch_add(1); });
      for (std::size_t i = 0; i < count; ++i) CHECK(hits[i].load() == 1);
    }
    std::vector<int> covered(1001, 0);
    parallel::for_ranges(1001, 10, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) covered[i] += 1;
    });
    CHECK(std::count(covered.begin(), covered.end(), 1) == 1001);
  }
}

// A number for each thread, never reused (a new thread can get an old one's id).
int thread_serial() {
  static std::atomic<int> next{0};
  thread_local const int serial = next++;
  return serial;
}

TEST_CASE("parallel: setting the thread count it already has keeps the same worker threads") {
  ThreadsGuard guard(2);
  const auto workers = [caller = thread_serial()] {  // the threads other than this one that ran a task
    std::mutex m;
    std::set<int> serials;
    for (int round = 0; round < 5; ++round) {
      // Each task waits for the other to start (5 s at most), so the worker takes one even
      // when a busy machine wakes it late: a 1 ms sleep instead failed under make asan.
      std::atomic<int> started{0};
      parallel::for_each(2, [&](std::size_t) {
        started.fetch_add(1);
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (started.load() < 2 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
        std::lock_guard<std::mutex> lock(m);
        if (thread_serial() != caller) serials.insert(thread_serial());
      });
    }
    return serials;
  };
  const std::set<int> before = workers();
  REQUIRE(before.size() == 1);
  xtgrad::set_num_threads(2);
  CHECK(workers() == before);
  xtgrad::set_num_threads(1);
  xtgrad::set_num_threads(2);
  CHECK(workers() != before);  // a new count starts new threads
}

TEST_CASE("parallel: a loop inside a task runs serially, and two callers at once both finish") {
  ThreadsGuard guard(2);
  std::atomic<int> inner{0};
  parallel::for_each(4, [&](std::size_t) { parallel::for_each(10, [&](std::size_t) { inner.fetch_add(1); }); });
  CHECK(inner.load() == 40);
  std::atomic<long> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 2; ++c)
    callers.emplace_back([&] {
      for (int round = 0; round < 200; ++round)
        parallel::for_each(16, [&](std::size_t i) { total.fetch_add(long(i)); });
    });
  for (auto& t : callers) t.join();
  CHECK(total.load() == 2L * 200 * 120);
}

TEST_CASE("parallel: an exception in a task reaches the caller; the other tasks still run; the pool goes on") {
  ThreadsGuard guard(2);
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH_AS(parallel::for_each(64,
                                            [&](std::size_t i) {
                                              ran.fetch_add(1);
                                              if (i % 10 == 3)
                                                throw std::runtime_error("task " + std::to_string(i % 10));
                                            }),
                         "task 3", std::runtime_error);
    CHECK(ran.load() == 64);
  }
  std::atomic<int> after{0};
  parallel::for_each(8, [&](std::size_t) { after.fetch_add(1); });
  CHECK(after.load() == 8);
}

TEST_CASE("parallel: set_num_threads refuses 0, a negative count and more than max_num_threads()") {
  const int before = num_threads();
  check_throws_with([] { set_num_threads(0); }, {"set_num_threads: 0 threads asked for, at least 1 needed"});
  check_throws_with([] { set_num_threads(-3); }, {"set_num_threads: -3 threads asked for, at least 1 needed"});
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const int most = max_num_threads();
  CHECK(most == 4 * cores);
  for (const int n : {most + 1, 1000, 1 << 30})
    check_throws_with([n] { set_num_threads(n); },
                      {"set_num_threads: " + std::to_string(n) + " threads asked for, at most " + std::to_string(most) +
                       " on this machine (4 x its " + std::to_string(cores) + " cores)"});
  CHECK(num_threads() == before);
  ThreadsGuard guard(most);  // the maximum itself is accepted
  CHECK(num_threads() == most);
}

namespace {

std::size_t live_threads() {
  std::size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) n += entry.exists();
  return n;
}

// In a forked child: lets one worker thread start, then makes the next one fail as under
// `ulimit -v`, and checks that set_num_threads throws, joins the started worker and leaves
// the thread count alone. Returns 0, or the number of the first check that failed; a hang
// (what the pool did before) ends the child by SIGALRM.
int start_threads_under_a_memory_limit() {
  ::alarm(30);
  const std::size_t threads_before = live_threads();
  // Thread stacks of 256 MiB: none of the parent's cached 8 MiB stacks can be reused, so
  // every worker maps a new stack, and the limit admits one and a half of them.
  const std::size_t stack = std::size_t(256) << 20;
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0 || pthread_attr_setstacksize(&attr, stack) != 0 ||
      pthread_setattr_default_np(&attr) != 0)
    return 1;
  std::size_t pages = 0;
  std::ifstream("/proc/self/statm") >> pages;  // the first field: the whole address space
  if (pages == 0) return 2;
  const rlim_t used = rlim_t(pages) * rlim_t(::sysconf(_SC_PAGESIZE));
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0) return 3;
  limit.rlim_cur = used + stack + stack / 2;
  if (::setrlimit(RLIMIT_AS, &limit) != 0) return 4;
  try {
    set_num_threads(max_num_threads());
    return 5;  // every thread started: the limit did not bite
  } catch (const std::system_error& e) {
    const std::string what = e.what();
    const std::string expected = "set_num_threads(" + std::to_string(max_num_threads()) +
                                 "): cannot start worker thread 2 of " + std::to_string(max_num_threads() - 1) +
                                 " (1 started and stopped again; the thread count is unchanged)";
    if (what.find(expected) != 0) return 6;
  }
  if (num_threads() != 1) return 7;
  if (live_threads() != threads_before) return 8;  // the started worker was joined
  std::atomic<int> ran{0};
  parallel::for_each(8, [&](std::size_t) { ran.fetch_add(1); });
  return ran.load() == 8 ? 0 : 9;
}

}  // namespace

TEST_CASE("parallel: a thread that cannot start makes set_num_threads throw, not hang; the started ones are joined") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  MESSAGE("skipped under a sanitizer: its runtime maps memory of its own for every thread");
  return;
#endif
  REQUIRE(num_threads() == 1);  // fork copies this thread only: no pool may be running
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(start_threads_under_a_memory_limit());
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK_MESSAGE(!WIFSIGNALED(status),
                "the child died of signal " << WTERMSIG(status) << " (6: SIGABRT, 14: SIGALRM: a hang)");
  if (WIFEXITED(status))
    CHECK_MESSAGE(WEXITSTATUS(status) == 0,
                  "check " << WEXITSTATUS(status) << " of start_threads_under_a_memory_limit failed");
}

TEST_CASE("parallel: two threads give the one-thread values and gradients") {
  const auto one = run_model(1), two = run_model(2);
  const char* names[] = {
      "output",        "dq",        "dkv",         "dw",       "dlayer_norm_weight", "dlayer_norm_bias",
      "paired output", "dq paired", "dout_weight", "dout_bias"};
  for (std::size_t i = 0; i < one.size(); ++i) {
    INFO(names[i]);
    REQUIRE(one[i].shape() == two[i].shape());
    // The split product and the attention compute each element as one thread does; the
    // layer norm's weight and bias gradients add per-band partial sums.
    const double scale = double(xt::amax(xt::abs(one[i]))());
    CHECK(double(xt::amax(xt::abs(one[i] - two[i]))()) <= 1e-6 * scale);
  }
  CHECK(one[6] == two[6]);  // paired attention: every (batch, head) computed as on one thread
  CHECK(one[7] == two[7]);
  // The forward's 640-row product is split into row bands. Our narrow kernel computes each
  // element alike in any band; OpenBLAS need not: its Zen kernels (an AMD EPYC without
  // AVX-512) give other bits for 2,780 of the 20,480 elements of a 640x32x32 product done
  // as two 320-row calls. Bitwise, then, only where the narrow kernel runs the product.
  if (blas::narrow_gemm_available()) {
    CHECK(one[0] == two[0]);  // the forward: bitwise
    CHECK(one[9] == two[9]);  // a bias gradient: bands of fixed size, whatever the thread count
  }
}

TEST_CASE(
    "parallel: gradcheck of split matmul (by rows and along k), attention, layer_norm and gelu with two threads") {
  ThreadsGuard guard(2);
  const D a = input({70, 64}, 1), b = input({64, 60}, 2);  // 268,800 multiply-adds: split
  check_grad([](const In& in) { return matmul(in[0], in[1]); }, {a, b}, GradcheckOptions().set_fast_mode(true));
  // (8,6000) x (6000,6): a small result from a long inner dimension, split along k
  const D long_a = input({8, 6000}, 9), long_b = input({6000, 6}, 10);
  check_grad([](const In& in) { return matmul(in[0], in[1]); }, {long_a, long_b},
             GradcheckOptions().set_fast_mode(true));
  const D q = input({3, 4, 8}, 3), kv = input({5, 6, 8}, 4), ow = input({8, 8}, 12), ob = input({8}, 13);
  check_grad(
      [](const In& in) { return attention_heads_all_pairs<double>(in[0], in[1], in[1], 2, in[2], in[3]).output; },
      {q, kv, ow, ob});
  const D pq = input({5, 4, 8}, 11);  // paired with kv's batch elements; q, k and v one tensor too
  check_grad([](const In& in) { return attention_heads(in[0], in[1], in[1], 2).output; }, {pq, kv});
  check_grad([](const In& in) { return attention_heads(in[0], in[0], in[0], 4).output; }, {kv});
  const D x = input({600, 8}, 5), w = input({8}, 6), bias = input({8}, 7);  // 600 rows: two bands
  check_grad([](const In& in) { return layer_norm<double>(in[0], {8}, in[1], in[2]); }, {x, w, bias},
             GradcheckOptions().set_fast_mode(true));
  const D g = input({20000}, 8);  // above one band of 8192
  check_grad([](const In& in) { return gelu(in[0]); }, {g}, GradcheckOptions().set_fast_mode(true));
}

TEST_CASE("parallel: broadcasting ops and reductions split over the first axis equal one thread") {
  // 40*16*8*8 = 40,960 elements: above the split threshold
  const auto run = [](int threads) {
    ThreadsGuard guard(threads);
    Tensor<float> big = input<float>({40, 16, 8, 8}, 11), per_row = input<float>({40, 1, 8, 8}, 12),
                  per_col = input<float>({16, 1, 8}, 13);
    Tensor<float> first = input<float>({1, 16, 8, 8}, 14);  // broadcast along the first axis: its gradient is not split
    const Tensor<float> y = (big + per_row) * per_col - first;
    Tensor<float> loss = sum(mean(y, {2}, true) * mean(y * y, {0}, true)) + sum(mean(y, {1, 3}));
    loss.backward();
    return std::vector<Array<float>>{y.data(), big.grad(), per_row.grad(), per_col.grad(), first.grad()};
  };
  const auto one = run(1), two = run(2);
  for (std::size_t i = 0; i < one.size(); ++i) CHECK(one[i] == two[i]);  // the same sums in the same order
}

TEST_CASE("parallel: gradcheck of broadcasting ops and reductions with two threads") {
  ThreadsGuard guard(2);
  const D big = input({40, 16, 8, 8}, 15), per_row = input({40, 1, 8, 8}, 16), first = input({1, 16, 8, 8}, 17);
  check_grad([](const In& in) { return mean((in[0] * in[1]) - in[2], {2}); }, {big, per_row, first},
             GradcheckOptions().set_fast_mode(true));
  check_grad([](const In& in) { return sum(in[0], {0, 3}); }, {big}, GradcheckOptions().set_fast_mode(true));
}
