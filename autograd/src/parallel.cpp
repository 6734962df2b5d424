#include "parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace xtgrad::parallel {
namespace {

thread_local bool inside_task = false;

// A hint that this thread is spinning (x86's pause): no system call, and it leaves the
// core's resources to the thread that has work.
inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Workers wait for a new generation of work, spinning for a while first: the ops of a
// training step come tens of microseconds apart, and waking a sleeping thread costs
// about as much as a small op.
class Pool {
 public:
  // std::thread throws std::system_error when a thread cannot start (ulimit -v, a process
  // limit), or std::bad_alloc. The workers already running must then be stopped here: a
  // throwing constructor runs no destructor, and destroying the condition variable they
  // wait on hung the caller.
  explicit Pool(std::size_t workers) {
    threads_.reserve(workers);
    try {
      for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
    } catch (const std::system_error& e) {
      fail_to_start(e.code(), workers);
    } catch (const std::bad_alloc&) {
      fail_to_start(std::make_error_code(std::errc::not_enough_memory), workers);
    }
  }
  ~Pool() { stop(); }
  std::size_t size() const { return threads_.size() + 1; }

  // False when another thread holds the pool (the caller then runs the tasks itself).
  bool run(std::size_t count, const std::function<void(std::size_t)>& task) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    task_ = &task;
    count_ = count;
    next_.store(0);
    unfinished_.store(threads_.size());
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    take_tasks();
    for (int i = 0; unfinished_.load() != 0; ++i) (i % 16 == 15) ? std::this_thread::yield() : spin_pause();
    if (error_) {  // a task threw (out of memory, say): the caller sees it, every task done
      std::exception_ptr error = std::exchange(error_, nullptr);
      std::rethrow_exception(error);
    }
    return true;
  }

 private:
  // Runs tasks until none is left. An exception stops nothing else: the first is kept
  // for run() to rethrow on the calling thread (escaping a worker would end the process).
  void take_tasks() {
    inside_task = true;
    for (std::size_t i = next_.fetch_add(1); i < count_; i = next_.fetch_add(1)) {
      try {
        (*task_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    inside_task = false;
  }

  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      bool woken = false;
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (!woken && std::chrono::steady_clock::now() < spin_until) {
        for (int i = 0; i < 16 && !woken; ++i) {
          woken = generation_.load(std::memory_order_acquire) != seen;
          if (!woken) spin_pause();
        }
        // and let the scheduler run another thread on this core (the caller, when both
        // landed on one core: pause alone would hold the core for a whole time slice)
        if (!woken) std::this_thread::yield();
      }
      if (!woken) {
        std::unique_lock<std::mutex> lock(wake_mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
      }
      seen = generation_.load();
      if (stop_) return;
      take_tasks();
      unfinished_.fetch_sub(1);
    }
  }

  [[noreturn]] void fail_to_start(std::error_code code, std::size_t workers) {
    const std::size_t started = threads_.size();
    stop();
    throw std::system_error(code, "set_num_threads(" + std::to_string(workers + 1) + "): cannot start worker thread " +
                                      std::to_string(started + 1) + " of " + std::to_string(workers) + " (" +
                                      std::to_string(started) +
                                      " started and stopped again; the thread count is unchanged)");
  }

  // Wakes every worker to return, and joins them.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  std::vector<std::thread> threads_;
  std::mutex busy_;  // one parallel loop at a time
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::size_t> next_{0}, unfinished_{0};
  const std::function<void(std::size_t)>* task_ = nullptr;
  std::mutex error_mutex_;
  std::exception_ptr error_;
  std::size_t count_ = 0;
  bool stop_ = false;
};

std::mutex pool_mutex;
std::shared_ptr<Pool> pool;  // null: one thread

std::shared_ptr<Pool> current_pool() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  return pool;
}

}  // namespace

std::size_t threads() {
  const auto p = current_pool();
  return p ? p->size() : 1;
}

void set_threads(std::size_t n) {
  if (threads() == n) return;  // keeps its pool: starting threads costs more than many ops
  std::shared_ptr<Pool> fresh = n > 1 ? std::make_shared<Pool>(n - 1) : nullptr;
  std::lock_guard<std::mutex> lock(pool_mutex);
  pool = std::move(fresh);  // the old pool stops when its last user lets go
}

void for_each(std::size_t count, const std::function<void(std::size_t)>& task) {
  if (count == 0) return;
  if (count > 1 && !inside_task) {
    const auto p = current_pool();
    if (p && p->run(count, task)) return;
  }
  for (std::size_t i = 0; i < count; ++i) task(i);
}

std::size_t band_count(std::size_t total, std::size_t min_size) {
  return std::max<std::size_t>(1, std::min(threads(), total / std::max<std::size_t>(min_size, 1)));
}

void for_ranges(std::size_t total, std::size_t min_size, const std::function<void(std::size_t, std::size_t)>& body) {
  const std::size_t bands = band_count(total, min_size);
  for_each(bands, [&](std::size_t i) { body(total * i / bands, total * (i + 1) / bands); });
}

}  // namespace xtgrad::parallel
