// Memory the engine keeps per thread for reuse: freed graph nodes (block_pool) and the
// vectors of the backward walk (take_spare / keep_spare). Both exist for small ops, where
// glibc's malloc was a large part of an op's cost (issue 13, item 5).
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace xtgrad::detail {

// ---- block_pool: freed small blocks, per thread ---------------------------------------
// Why: a training step or a loop of small ops makes and frees thousands of nodes (about
// 700 bytes each, with the shared_ptr count). glibc's per-thread cache keeps only 7 freed
// blocks per size; when a whole graph is freed the rest go through its general bins
// (merging neighbours, splitting them again on the next malloc).
//
// How: sizes up to 1024 bytes are rounded up to a multiple of 64, and each such class
// keeps a singly linked list of freed blocks per thread, up to 2 MiB. Every block is an
// ordinary ::operator new block of its class's size, so any thread may free any block:
// it joins the freeing thread's list, or goes back to ::operator delete when that list
// is full, the size is not pooled, or the thread is exiting. No locks, no shared state.
// A thread's lists go back to ::operator delete when the thread ends.
namespace block_pool {
void* allocate(std::size_t bytes);                         // never null: throws std::bad_alloc
void deallocate(void* block, std::size_t bytes) noexcept;  // bytes as given to allocate
}  // namespace block_pool

// A standard allocator over block_pool, for std::allocate_shared: the object and its
// shared_ptr count come from one pooled block.
template <class T> struct PoolAllocator {
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "block_pool gives operator new's alignment");
  using value_type = T;

  PoolAllocator() = default;
  template <class U> PoolAllocator(const PoolAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) { return static_cast<T*>(block_pool::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { block_pool::deallocate(p, n * sizeof(T)); }

  // Stateless: any instance frees what another allocated.
  template <class U> bool operator==(const PoolAllocator<U>&) const noexcept { return true; }
  template <class U> bool operator!=(const PoolAllocator<U>&) const noexcept { return false; }
};

// ---- take_spare / keep_spare: a vector's storage, per thread and type ------------------
// backward() lists every node of the graph, kilobytes that grow as the list does. Freed
// and allocated anew at every pass, such blocks made glibc merge all the small blocks it
// had cached (malloc_consolidate), and the next forward carved every op's small blocks
// out again: about 10% of a small op's time. So each thread keeps one spare vector per
// type: take_spare<V>() returns it (empty, with its capacity; a new vector when it is
// already taken, by a nested backward in a hook, say) and keep_spare(v) clears v and keeps
// it when it holds more room than the spare.
namespace spare {
// Set when a thread's spares are destroyed at its exit. Trivially destructible, so it can
// still be read afterwards (by a backward in another destructor: it allocates its own).
inline thread_local bool t_gone = false;

template <class V> struct Holder {
  V value;
  ~Holder() { t_gone = true; }
};

template <class V> V* slot() {
  if (t_gone) return nullptr;
  static thread_local Holder<V> holder;
  return &holder.value;
}
}  // namespace spare

template <class V> V take_spare() {
  V taken;
  if (V* kept = spare::slot<V>()) taken.swap(*kept);
  taken.clear();
  return taken;
}

template <class V> void keep_spare(V&& used) {
  used.clear();  // the elements go now (for backward's list: its last hold on the nodes)
  V* kept = spare::slot<V>();
  if (kept && kept->capacity() < used.capacity()) kept->swap(used);
}

}  // namespace xtgrad::detail
