// Private to the kernels: sixteen floats as one vector value, their exponential, row sums
// in eight lanes, and the attribute that compiles a float kernel for AVX-512, AVX2 and plain
// x86-64 (kernels.cpp, kernels_softmax.cpp, kernels_transpose.cpp, kernels_layer_norm.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels.hpp"

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

// exp of each lane of v, in place: exp(x) = 2^n exp(r) with n = round(x / ln 2) and
// |r| <= ln(2) / 2; exp(r) by Cephes' expf polynomial. kNonPositive: the caller knows
// that no lane is above 0 (NaN may be), so the steps for large x go, the bits stay.
template <bool kNonPositive = false> [[gnu::always_inline]] inline void exp_vector(Floats& v) {
  const float high = 88.3762626647949f, low = -87.3365478515625f;
  Floats c = v < low ? Floats{} + low : v;
  if constexpr (!kNonPositive) c = c > high ? Floats{} + high : c;
  // round to nearest without a library call: adding 1.5 * 2^23 drops the fraction
  const Floats n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const Floats r = (c - n * 0.693359375f) + n * 2.12194440e-4f;  // ln 2 in two parts
  Floats p = Floats{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const Floats exp_r = p * r * r + r + 1.0f;
  const Ints bits = (__builtin_convertvector(n, Ints) + 127) << 23;  // 2^n, n in [-126, 127]
  Floats y = exp_r * (Floats)bits;
  y = v < low ? Floats{} : y;
  if constexpr (!kNonPositive) y = v > high ? Floats{} + std::numeric_limits<float>::infinity() : y;
  v = v != v ? v : y;  // NaN in, NaN out
}

// Row sums of floats as eight-lane vectors, in sum_of's order (lane j takes x[j], x[j + 8],
// ... in turn; then the lanes in pairs, then the tail), so they give sum_of's bits; the
// double versions are sum_of itself (kernels.cpp's row maxima follow max_of the same way).
using Floats8 = float __attribute__((vector_size(32)));

[[gnu::always_inline]] inline Floats8& load8(Floats8& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[gnu::always_inline]] inline void store8(float* p, const Floats8& v) { std::memcpy(p, &v, sizeof v); }
[[gnu::always_inline]] inline float lanes_sum(const Floats8& p) {
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// sum of x[i] for i < n, or of x[i] * y[i] when y is given
[[gnu::always_inline]] inline float row_sum(const float* x, const float* y, std::size_t n) {
  Floats8 acc{}, a, b;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) acc += y ? load8(a, x + i) * load8(b, y + i) : load8(a, x + i);
  float total = lanes_sum(acc);
  for (; i < n; ++i) total += y ? x[i] * y[i] : x[i];
  return total;
}
[[gnu::always_inline]] inline double row_sum(const double* x, const double* y, std::size_t n) {
  return y ? sum_of<double>(n, [x, y](std::size_t i) { return x[i] * y[i]; })
           : sum_of<double>(n, [x](std::size_t i) { return x[i]; });
}
template <class T> [[gnu::always_inline]] inline T row_sum(const T* x, std::size_t n) {
  return row_sum(x, static_cast<const T*>(nullptr), n);
}

// sum of (x[i] - m)^2 for i < n
[[gnu::always_inline]] inline float row_sum_squares(const float* x, float m, std::size_t n) {
  Floats8 acc{}, a;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    load8(a, x + i) -= m;
    acc += a * a;
  }
  float total = lanes_sum(acc);
  for (; i < n; ++i) total += (x[i] - m) * (x[i] - m);
  return total;
}
[[gnu::always_inline]] inline double row_sum_squares(const double* x, double m, std::size_t n) {
  return sum_of<double>(n, [x, m](std::size_t i) { return (x[i] - m) * (x[i] - m); });
}

}  // namespace

// The float softmax and its backward over blocks of sixteen rows of sixteen values
// (kernels_softmax.cpp), bit for bit as the row-at-a-time loops of kernels.cpp; each
// returns how many rows it did (rows rounded down to a multiple of 16), the caller does
// the rest. Backward rows are `stride` apart.
std::size_t softmax_rows_16(float* x, std::size_t rows);
std::size_t softmax_backward_rows_16(const float* p, float* ds, std::size_t rows, std::size_t stride, float scale);
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
