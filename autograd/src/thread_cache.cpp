// block_pool: the per-thread cache of small freed blocks (thread_cache.hpp says why and how).
#include "thread_cache.hpp"

#include <cstddef>
#include <new>

namespace xtgrad::detail::block_pool {
namespace {

constexpr std::size_t kClassBytes = 64;       // sizes are rounded up to a multiple of this
constexpr std::size_t kLargestPooled = 1024;  // larger sizes go straight to ::operator new
constexpr std::size_t kClasses = kLargestPooled / kClassBytes;
// Enough for the nodes of a graph of a few thousand ops; beyond it, freed blocks go back
// to ::operator delete, so a thread that only frees (another thread's tensors) keeps at
// most this much per class.
constexpr std::size_t kCachedBytesPerClass = std::size_t(2) << 20;

struct FreeBlock {
  FreeBlock* next;
};

// One thread's lists. Trivially destructible on purpose: it stays valid until the
// thread's storage goes away, so a node freed after ExitDrain has run (by another
// thread_local's or a static object's destructor) still finds `closed` and bypasses it.
struct ThreadCache {
  FreeBlock* head[kClasses];
  std::size_t count[kClasses];
  bool exit_drain_armed;
  bool closed;  // emptied at thread exit: no more caching on this thread
};
thread_local ThreadCache t_cache{};  // all zero: constant initialisation, no guard

std::size_t class_of(std::size_t bytes) { return (bytes - 1) / kClassBytes; }  // bytes in [1, kLargestPooled]
std::size_t class_bytes(std::size_t size_class) { return (size_class + 1) * kClassBytes; }

// Returns a thread's cached blocks when the thread ends (for the main thread: at exit).
// A thread_local with a destructor is constructed, and its destructor registered, on its
// first use in each thread: deallocate() arms it the first time it caches a block.
struct ExitDrain {
  bool armed = false;
  ~ExitDrain() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      while (FreeBlock* block = t_cache.head[c]) {
        t_cache.head[c] = block->next;
        ::operator delete(block);
      }
      t_cache.count[c] = 0;
    }
    t_cache.closed = true;
  }
};
thread_local ExitDrain t_exit_drain;

bool pooled(std::size_t bytes) { return bytes != 0 && bytes <= kLargestPooled; }

}  // namespace

void* allocate(std::size_t bytes) {
  if (!pooled(bytes)) return ::operator new(bytes);
  const std::size_t c = class_of(bytes);
  ThreadCache& cache = t_cache;
  if (FreeBlock* block = cache.head[c]) {
    cache.head[c] = block->next;
    --cache.count[c];
    return block;
  }
  // The class's size, not the request's: the block may serve any size of its class later.
  return ::operator new(class_bytes(c));
}

void deallocate(void* block, std::size_t bytes) noexcept {
  if (!pooled(bytes)) return ::operator delete(block);
  const std::size_t c = class_of(bytes);
  ThreadCache& cache = t_cache;
  if (cache.closed || (cache.count[c] + 1) * class_bytes(c) > kCachedBytesPerClass) return ::operator delete(block);
  if (!cache.exit_drain_armed) {
    t_exit_drain.armed = true;  // the first use constructs it and registers its destructor
    cache.exit_drain_armed = true;
  }
  auto* freed = static_cast<FreeBlock*>(block);
  freed->next = cache.head[c];
  cache.head[c] = freed;
  ++cache.count[c];
}

}  // namespace xtgrad::detail::block_pool
