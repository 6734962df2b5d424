// Fork-join parallel loops over the threads set by set_num_threads (one pool, shared by
// every op). OpenBLAS then runs single-threaded and xtgrad splits the work itself: two
// thread systems spinning on two cores would fight each other.
#pragma once

#include <cstddef>
#include <functional>

namespace xtgrad::parallel {

// Threads in use (1: everything runs on the calling thread).
std::size_t threads();

// Calls task(i) for every i in [0, count), spread over the threads; returns when all
// are done. Runs serially when there is one thread, when called from inside a task (no
// nesting), or when another thread is using the pool. If tasks throw, the rest still run
// and the first exception is rethrown here.
void for_each(std::size_t count, const std::function<void(std::size_t)>& task);

// How many bands for_ranges cuts [0, total) into: one per thread, none shorter than
// min_size, at least one. Band i is [total * i / bands, total * (i + 1) / bands).
std::size_t band_count(std::size_t total, std::size_t min_size);

// Splits [0, total) into band_count(total, min_size) contiguous ranges and calls
// body(begin, end) on each.
void for_ranges(std::size_t total, std::size_t min_size, const std::function<void(std::size_t, std::size_t)>& body);

// Used by set_num_threads.
void set_threads(std::size_t n);

}  // namespace xtgrad::parallel
