#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace xtgrad::kernels {

namespace {

// Eight floats as one value (GCC/Clang vector extensions). A scalar loop of the same
// arithmetic does not vectorise: the compiler keeps the range checks as branches.
using Floats = float __attribute__((vector_size(32)));
using Ints = std::int32_t __attribute__((vector_size(32)));
constexpr std::size_t kLanes = 8;

// exp of the kLanes floats at x, in place: exp(x) = 2^n exp(r) with n = round(x / ln 2)
// and |r| <= ln(2) / 2; exp(r) by Cephes' expf polynomial. Takes a pointer, not a vector,
// so that no vector crosses a call (its ABI differs with and without AVX).
[[gnu::always_inline]] inline void exp_lanes(float* x) {
  Floats v;
  std::memcpy(&v, x, sizeof v);
  const float high = 88.3762626647949f, low = -87.3365478515625f;
  Floats c = v < low ? Floats{} + low : v;
  c = c > high ? Floats{} + high : c;
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
  y = v > high ? Floats{} + std::numeric_limits<float>::infinity() : y;
  y = v != v ? v : y;  // NaN in, NaN out
  std::memcpy(x, &y, sizeof y);
}

}  // namespace

// Compiled twice, for AVX2 (eight lanes per instruction) and for any x86-64 (SSE2, four),
// and picked at load time (an ifunc). Without FMA in either, both round every step alike:
// the same bits on every machine. Not under ThreadSanitizer, whose runtime is not up yet
// when the dynamic loader runs the picker (the program crashes at start).
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define XTGRAD_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define XTGRAD_AVX2_CLONE
#endif

XTGRAD_AVX2_CLONE
void exp_in_place(float* x, std::size_t n) {
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) exp_lanes(x + i);
  if (i < n) {  // the tail, padded
    float tail[kLanes] = {};
    std::memcpy(tail, x + i, (n - i) * sizeof(float));
    exp_lanes(tail);
    std::memcpy(x + i, tail, (n - i) * sizeof(float));
  }
}

void exp_in_place(double* x, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}

template <class T>
void softmax_rows(T* x, std::size_t rows, std::size_t len) {
  for (std::size_t r = 0; r < rows; ++r) {
    T* row = x + r * len;
    T peak = -std::numeric_limits<T>::infinity();
    for (std::size_t j = 0; j < len; ++j) peak = std::max(peak, row[j]);
    if (peak == -std::numeric_limits<T>::infinity()) continue;  // all masked: stays -inf, exp gives 0
    for (std::size_t j = 0; j < len; ++j) row[j] -= peak;
  }
  exp_in_place(x, rows * len);  // one long loop: rows are often short (16 keys)
  for (std::size_t r = 0; r < rows; ++r) {
    T* row = x + r * len;
    T total = 0;
    for (std::size_t j = 0; j < len; ++j) total += row[j];
    // A live row holds exp(0) = 1 at its peak, so only an all-masked row sums to 0.
    const T inv = total == T(0) ? T(0) : T(1) / total;
    for (std::size_t j = 0; j < len; ++j) row[j] *= inv;
  }
}

template void softmax_rows(float*, std::size_t, std::size_t);
template void softmax_rows(double*, std::size_t, std::size_t);

}  // namespace xtgrad::kernels
