#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace xtgrad::kernels {

namespace {

// Four floats as one value (GCC/Clang vector extensions): plain SSE2 code without
// -march. A scalar loop of the same arithmetic does not
// vectorise: the compiler keeps the range checks as branches.
using Floats = float __attribute__((vector_size(16)));
using Ints = std::int32_t __attribute__((vector_size(16)));
constexpr std::size_t kLanes = 4;

Floats splat(float v) { return Floats{} + v; }

// exp(x) = 2^n exp(r) with n = round(x / ln 2) and |r| <= ln(2) / 2; exp(r) by Cephes'
// expf polynomial.
Floats exp_lanes(Floats x) {
  const float high = 88.3762626647949f, low = -87.3365478515625f;
  Floats c = x < low ? splat(low) : x;
  c = c > high ? splat(high) : c;
  // round to nearest without a library call: adding 1.5 * 2^23 drops the fraction
  const Floats n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const Floats r = (c - n * 0.693359375f) + n * 2.12194440e-4f;  // ln 2 in two parts
  Floats p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const Floats exp_r = p * r * r + r + 1.0f;
  const Ints bits = (__builtin_convertvector(n, Ints) + 127) << 23;  // 2^n, n in [-126, 127]
  Floats y = exp_r * (Floats)bits;
  y = x < low ? splat(0.0f) : y;
  y = x > high ? splat(std::numeric_limits<float>::infinity()) : y;
  return x != x ? x : y;  // NaN in, NaN out
}

}  // namespace

void exp_in_place(float* x, std::size_t n) {
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Floats v;
    std::memcpy(&v, x + i, sizeof v);
    v = exp_lanes(v);
    std::memcpy(x + i, &v, sizeof v);
  }
  if (i < n) {  // the tail, padded
    Floats v{};
    std::memcpy(&v, x + i, (n - i) * sizeof(float));
    v = exp_lanes(v);
    std::memcpy(x + i, &v, (n - i) * sizeof(float));
  }
}

void exp_in_place(double* x, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}

template <class T>
void softmax_rows(T* x, std::size_t rows, std::size_t len) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  std::vector<unsigned char> dead(rows, 0);  // rows with nothing allowed
  for (std::size_t r = 0; r < rows; ++r) {
    T* row = x + r * len;
    T peak = kNegInf;
    for (std::size_t j = 0; j < len; ++j) peak = std::max(peak, row[j]);
    if (peak == kNegInf) {
      dead[r] = 1;
      std::fill(row, row + len, T(0));
      continue;
    }
    for (std::size_t j = 0; j < len; ++j) row[j] -= peak;
  }
  exp_in_place(x, rows * len);  // one long loop: rows are often short (16 keys)
  for (std::size_t r = 0; r < rows; ++r) {
    T* row = x + r * len;
    if (dead[r]) {
      std::fill(row, row + len, T(0));
      continue;
    }
    T total = 0;
    for (std::size_t j = 0; j < len; ++j) total += row[j];
    const T inv = T(1) / total;
    for (std::size_t j = 0; j < len; ++j) row[j] *= inv;
  }
}

template void softmax_rows(float*, std::size_t, std::size_t);
template void softmax_rows(double*, std::size_t, std::size_t);

}  // namespace xtgrad::kernels
