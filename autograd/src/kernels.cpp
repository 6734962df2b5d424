#include "kernels.hpp"
#include "simd.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace xtgrad::kernels {

namespace {

// exp of the kLanes floats at x, in place (exp_vector, simd.hpp)
[[gnu::always_inline]] inline void exp_lanes(float* x) {
  Floats v;
  exp_vector(load(v, x));
  store(x, v);
}

// exp over n values in place: floats by the vector polynomial, the tail through a padded
// block; doubles by std::exp.
[[gnu::always_inline]] inline void exp_block(double* x, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}
[[gnu::always_inline]] inline void exp_block(float* x, std::size_t n) {
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) exp_lanes(x + i);
  if (i < n) {
    float tail[kLanes] = {};
    std::memcpy(tail, x + i, (n - i) * sizeof(float));
    exp_lanes(tail);
    std::memcpy(x + i, tail, (n - i) * sizeof(float));
  }
}

// Phi(x) = erfc(-x / sqrt 2) / 2 of the kLanes floats at x, into cdf. erfc(z) for z >= 0
// is t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), with the Chebyshev fit P of Numerical
// Recipes (fractional error below 1.2e-7); erfc(-z) = 2 - erfc(z).
[[gnu::always_inline]] inline void phi_lanes(const float* x, float* cdf) {
  Floats v, e_vec;
  load(v, x);
  const Floats z = (v < 0 ? -v : v) * 0.70710678118654752f;  // |x| / sqrt 2
  const Floats t = 1.0f / (1.0f + 0.5f * z);
  Floats p = Floats{} + 0.17087277f;
  for (const float c :
       {-0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f})
    p = p * t + c;
  float e[kLanes];
  store(e, p * t - 1.26551223f - z * z);
  exp_lanes(e);
  const Floats half_erfc = 0.5f * t * load(e_vec, e);  // erfc(|x| / sqrt 2) / 2
  store(cdf, v < 0 ? half_erfc : 1.0f - half_erfc);
}

// Row maxima of floats as eight-lane vectors, in max_of's order (simd.hpp has the sums);
// the double version is max_of itself.
[[gnu::always_inline]] inline float row_max(const float* x, std::size_t n) {
  constexpr float lowest = -std::numeric_limits<float>::infinity();
  Floats8 acc = Floats8{} + lowest, v;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    load8(v, x + i);
    acc = acc < v ? v : acc;
  }
  float peak = lowest;
  for (int j = 0; j < 8; ++j) peak = peak < acc[j] ? acc[j] : peak;
  for (; i < n; ++i) peak = peak < x[i] ? x[i] : peak;
  return peak;
}
[[gnu::always_inline]] inline double row_max(const double* x, std::size_t n) {
  return max_of<double>(n, [x](std::size_t i) { return x[i]; });
}

}  // namespace

XTGRAD_CLONES
void exp_in_place(float* x, std::size_t n) { exp_block(x, n); }

void exp_in_place(double* x, std::size_t n) { exp_block(x, n); }

namespace {
template <class T> [[gnu::always_inline]] inline void softmax_rows_impl(T* x, std::size_t rows, std::size_t len) {
  // In blocks of about 4096 values (16 KB of floats), so that the three passes over a
  // block find it in L1; exp runs over the whole block: rows are often short (16 keys).
  const std::size_t block = std::max<std::size_t>(1, 4096 / std::max<std::size_t>(len, 1));
  for (std::size_t r0 = 0; r0 < rows; r0 += block) {
    const std::size_t r1 = std::min(rows, r0 + block);
    for (std::size_t r = r0; r < r1; ++r) {
      T* row = x + r * len;
      const T peak = row_max(row, len);
      if (peak == -std::numeric_limits<T>::infinity()) continue;  // all masked: stays -inf, exp gives 0
      for (std::size_t j = 0; j < len; ++j) row[j] -= peak;
    }
    exp_block(x + r0 * len, (r1 - r0) * len);
    for (std::size_t r = r0; r < r1; ++r) {
      T* row = x + r * len;
      const T total = row_sum(row, len);
      // A live row holds exp(0) = 1 at its peak, so only an all-masked row sums to 0.
      const T inv = total == T(0) ? T(0) : T(1) / total;
      for (std::size_t j = 0; j < len; ++j) row[j] *= inv;
    }
  }
}

template <class T> [[gnu::always_inline]] inline void log_softmax_rows_impl(T* x, std::size_t rows, std::size_t len) {
  std::vector<T> shifted(len);  // one row's x - peak, exponentiated to find the total
  for (std::size_t r = 0; r < rows; ++r) {
    T* row = x + r * len;
    const T peak = row_max(row, len);
    if (peak == -std::numeric_limits<T>::infinity()) {  // all masked: no probabilities, NaN as PyTorch
      std::fill(row, row + len, std::numeric_limits<T>::quiet_NaN());
      continue;
    }
    for (std::size_t j = 0; j < len; ++j) shifted[j] = row[j] - peak;
    exp_block(shifted.data(), len);
    const T log_total = std::log(row_sum(shifted.data(), len)) + peak;
    for (std::size_t j = 0; j < len; ++j) row[j] -= log_total;
  }
}

template <class T>
[[gnu::always_inline]] inline void log_softmax_backward_impl(const T* y, T* g, std::size_t rows, std::size_t len) {
  std::vector<T> p(len);  // one row's softmax, exp(y)
  for (std::size_t r = 0; r < rows; ++r) {
    const T* yr = y + r * len;
    T* gr = g + r * len;
    std::copy(yr, yr + len, p.data());
    exp_block(p.data(), len);
    const T total = row_sum(gr, len);
    for (std::size_t j = 0; j < len; ++j) gr[j] -= p[j] * total;
  }
}

template <class T>
[[gnu::always_inline]] inline void softmax_backward_impl(const T* p, T* ds, std::size_t rows, std::size_t len,
                                                         std::size_t stride, T scale) {
  for (std::size_t r = 0; r < rows; ++r) {
    const T* pr = p + r * stride;
    T* dr = ds + r * stride;
    const T dot = row_sum(dr, pr, len);
    for (std::size_t j = 0; j < len; ++j) dr[j] = scale * pr[j] * (dr[j] - dot);
  }
}
}  // namespace

XTGRAD_CLONES
void softmax_rows(float* x, std::size_t rows, std::size_t len) {
  const std::size_t done = len == 16 ? softmax_rows_16(x, rows) : 0;  // attention's 16 keys
  softmax_rows_impl(x + done * len, rows - done, len);
}
void softmax_rows(double* x, std::size_t rows, std::size_t len) { softmax_rows_impl(x, rows, len); }

XTGRAD_CLONES
void log_softmax_rows(float* x, std::size_t rows, std::size_t len) { log_softmax_rows_impl(x, rows, len); }
void log_softmax_rows(double* x, std::size_t rows, std::size_t len) { log_softmax_rows_impl(x, rows, len); }

XTGRAD_CLONES
void log_softmax_backward_rows(const float* y, float* g, std::size_t rows, std::size_t len) {
  log_softmax_backward_impl(y, g, rows, len);
}
void log_softmax_backward_rows(const double* y, double* g, std::size_t rows, std::size_t len) {
  log_softmax_backward_impl(y, g, rows, len);
}

XTGRAD_CLONES
void softmax_backward_rows(const float* p, float* ds, std::size_t rows, std::size_t len, std::size_t stride,
                           float scale) {
  const std::size_t done = len == 16 ? softmax_backward_rows_16(p, ds, rows, stride, scale) : 0;
  softmax_backward_impl(p + done * stride, ds + done * stride, rows - done, len, stride, scale);
}
void softmax_backward_rows(const double* p, double* ds, std::size_t rows, std::size_t len, std::size_t stride,
                           double scale) {
  softmax_backward_impl(p, ds, rows, len, stride, scale);
}

XTGRAD_CLONES
void gelu_forward(const float* x, float* y, float* cdf, std::size_t n) {
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    phi_lanes(x + i, cdf + i);
    Floats v, c;
    store(y + i, load(v, x + i) * load(c, cdf + i));
  }
  if (i < n) {  // the tail, padded
    float xt[kLanes] = {}, ct[kLanes];
    std::memcpy(xt, x + i, (n - i) * sizeof(float));
    phi_lanes(xt, ct);
    std::memcpy(cdf + i, ct, (n - i) * sizeof(float));
    for (; i < n; ++i) y[i] = x[i] * cdf[i];
  }
}

void gelu_forward(const double* x, double* y, double* cdf, std::size_t n) {
  const double inv_sqrt2 = 1.0 / std::sqrt(2.0);
  for (std::size_t i = 0; i < n; ++i) {
    cdf[i] = 0.5 * (1.0 + std::erf(x[i] * inv_sqrt2));
    y[i] = x[i] * cdf[i];
  }
}

namespace {
template <class T>
[[gnu::always_inline]] inline void gelu_backward_impl(const T* x, const T* cdf, const T* g, T* gx, std::size_t n) {
  const T inv_sqrt_2pi = T(1.0 / std::sqrt(2.0 * M_PI));
  for (std::size_t i = 0; i < n; ++i) gx[i] = T(-0.5) * x[i] * x[i];
  exp_block(gx, n);  // phi(x) sqrt(2 pi)
  for (std::size_t i = 0; i < n; ++i) gx[i] = g[i] * (cdf[i] + x[i] * inv_sqrt_2pi * gx[i]);
}
}  // namespace

XTGRAD_CLONES
void gelu_backward(const float* x, const float* cdf, const float* g, float* gx, std::size_t n) {
  gelu_backward_impl(x, cdf, g, gx, n);
}
void gelu_backward(const double* x, const double* cdf, const double* g, double* gx, std::size_t n) {
  gelu_backward_impl(x, cdf, g, gx, n);
}

}  // namespace xtgrad::kernels
