// Keeping freed memory for reuse (see reuse_freed_memory in ops.hpp).
#include <malloc.h>

#include <algorithm>

#include "xtgrad/ops.hpp"

namespace xtgrad {

bool reuse_freed_memory(std::size_t largest_reused_bytes) {
#ifdef M_MMAP_THRESHOLD
  // Blocks up to largest_reused_bytes come from the heap instead of their own mmap, and
  // the heap keeps up to four times that free at its top instead of returning it to the
  // kernel: a training step's tensors are then carved from pages the previous step
  // already touched, instead of being faulted in (and zeroed by the kernel) every step.
  const int limit = int(std::min<std::size_t>(largest_reused_bytes, std::size_t(1) << 28));
  return mallopt(M_MMAP_THRESHOLD, limit) == 1 && mallopt(M_TRIM_THRESHOLD, 4 * limit) == 1;
#else
  (void)largest_reused_bytes;
  return false;  // not glibc: its malloc has its own policy
#endif
}

}  // namespace xtgrad
