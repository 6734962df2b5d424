// Private to the kernels: sixteen floats as one vector value, and the attribute that
// compiles a float kernel for AVX-512, AVX2 and plain x86-64 (kernels.cpp,
// kernels_transpose.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace xtgrad::kernels {
namespace {

// Sixteen floats as one value (GCC/Clang vector extensions): one AVX-512 register, two
// AVX2 or four SSE ones. A scalar loop of the same arithmetic does not vectorise: the
// compiler keeps the range checks as branches.
using Floats = float __attribute__((vector_size(64)));
using Ints = std::int32_t __attribute__((vector_size(64)));
constexpr std::size_t kLanes = 16;

// The vector helpers pass vectors by reference, never by value, so that none crosses a
// call (the ABI differs between the instruction sets); inlined, the copies vanish.
[[gnu::always_inline]] inline Floats& load(Floats& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[gnu::always_inline]] inline void store(float* p, const Floats& v) { std::memcpy(p, &v, sizeof v); }

}  // namespace
}  // namespace xtgrad::kernels

// The float kernels are compiled three times, for AVX-512, AVX2 and any x86-64 (SSE2),
// and picked at load time (an ifunc). None uses FMA and the vectors' lanes never mix
// except in sums written out in a fixed order, so all three give the same bits on every
// machine. Not under ThreadSanitizer, whose runtime is not up yet when the dynamic loader
// runs the picker (the program crashes at start).
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define XTGRAD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define XTGRAD_CLONES
#endif
