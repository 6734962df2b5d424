// Loops over contiguous float/double buffers that the ops share: exponentials, the one
// row softmax (and log softmax) with their backwards, GELU, layer norm, transpose. Not
// installed. The float versions are compiled for AVX-512, AVX2 and plain x86-64 and
// picked at load time (kernels.cpp); the double versions are plain loops over the
// standard library's functions.
#pragma once

#include <cstddef>
#include <limits>

namespace xtgrad::kernels {

// x[i] = exp(x[i]). Float uses a polynomial that the compiler vectorises (within 2 ulp
// of std::exp, checked against it in the tests; exp(x) = 0 below -87.3, where the float
// result would be subnormal; inf above 88.37; NaN stays NaN); double calls std::exp.
void exp_in_place(float* x, std::size_t n);
void exp_in_place(double* x, std::size_t n);

// Softmax of each of `rows` contiguous rows of `len` values, in place. A row that is all
// -inf (everything masked) becomes zeros.
void softmax_rows(float* x, std::size_t rows, std::size_t len);
void softmax_rows(double* x, std::size_t rows, std::size_t len);

// Log softmax of each of `rows` contiguous rows of `len` values, in place:
// x - (log sum exp(x - max) + max). A row that is all -inf becomes NaN, as in PyTorch
// (log 0 - log 0 has no value; zeros would claim probability 1 everywhere).
void log_softmax_rows(float* x, std::size_t rows, std::size_t len);
void log_softmax_rows(double* x, std::size_t rows, std::size_t len);
// Its backward from the output y: g = g - exp(y) * sum(g) per row, in place over g.
void log_softmax_backward_rows(const float* y, float* g, std::size_t rows, std::size_t len);
void log_softmax_backward_rows(const double* y, double* g, std::size_t rows, std::size_t len);

// Softmax backward for `rows` rows of `len` values, row r at offset r * stride of both
// p (the softmax output) and ds: ds = scale * p * (ds - <ds, p>), in place over ds (which
// holds dL/dp on entry, dL/d(scores / scale) on exit).
void softmax_backward_rows(const float* p, float* ds, std::size_t rows, std::size_t len, std::size_t stride,
                           float scale);
void softmax_backward_rows(const double* p, double* ds, std::size_t rows, std::size_t len, std::size_t stride,
                           double scale);

// Exact GELU, y = x Phi(x), keeping Phi(x) in cdf for the backward. Float takes Phi from
// erfc in Numerical Recipes' Chebyshev form (relative error about 1e-7, in the negative
// tail too, where 1 + erf loses every digit); double is 0.5 (1 + std::erf(x / sqrt 2)).
void gelu_forward(const float* x, float* y, float* cdf, std::size_t n);
void gelu_forward(const double* x, double* y, double* cdf, std::size_t n);
// gx = g (Phi(x) + x phi(x)), with Phi(x) from gelu_forward.
void gelu_backward(const float* x, const float* cdf, const float* g, float* gx, std::size_t n);
void gelu_backward(const double* x, const double* cdf, const double* g, double* gx, std::size_t n);

// Layer norm of `rows` contiguous rows of d values: y = (x - mean) * rstd * w + b, with
// rstd = 1 / sqrt(var + eps); w and b may be null (1 and 0). Writes each row's mean and
// rstd for the backward.
void layer_norm_rows(const float* x, float* y, const float* w, const float* b, float* means, float* rstds,
                     std::size_t rows, std::size_t d, float eps);
void layer_norm_rows(const double* x, double* y, const double* w, const double* b, double* means, double* rstds,
                     std::size_t rows, std::size_t d, double eps);
// Its backward for the same rows, from the upstream gradient g: dxhat = g * w,
// gx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) when gx is not null (it is
// overwritten); g * xhat and g are added to gw and gb when those are not null.
void layer_norm_rows_backward(const float* x, const float* g, const float* w, const float* means, const float* rstds,
                              float* gx, float* gw, float* gb, std::size_t rows, std::size_t d);
void layer_norm_rows_backward(const double* x, const double* g, const double* w, const double* means,
                              const double* rstds, double* gx, double* gw, double* gb, std::size_t rows, std::size_t d);

// b (cols, rows) = a^T for a (rows, cols); lda and ldb are the row strides as stored.
// In tiles of 16 x 16, so that both sides stay in cache lines already loaded.
void transpose(std::size_t rows, std::size_t cols, const float* a, std::size_t lda, float* b, std::size_t ldb);
void transpose(std::size_t rows, std::size_t cols, const double* a, std::size_t lda, double* b, std::size_t ldb);

// Sums with eight independent partial sums: the compiler keeps them in vector registers,
// where one running sum would be a chain of dependent adds (it may not reorder float
// additions itself). The order is fixed, so results are the same on every run and on
// every instruction set.
template <class T, class F> inline T sum_of(std::size_t n, F term) {
  T partial[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t j = 0; j < 8; ++j) partial[j] += term(i + j);
  T total =
      ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
  for (; i < n; ++i) total += term(i);
  return total;
}

// The largest of term(0..n-1), in eight lanes as sum_of (the maximum does not depend on
// the order). NaN terms are skipped; -inf for n = 0.
template <class T, class F> inline T max_of(std::size_t n, F term) {
  constexpr T lowest = -std::numeric_limits<T>::infinity();
  T partial[8] = {lowest, lowest, lowest, lowest, lowest, lowest, lowest, lowest};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t j = 0; j < 8; ++j) partial[j] = partial[j] < term(i + j) ? term(i + j) : partial[j];
  T peak = lowest;
  for (std::size_t j = 0; j < 8; ++j) peak = peak < partial[j] ? partial[j] : peak;
  for (; i < n; ++i) peak = peak < term(i) ? term(i) : peak;
  return peak;
}

}  // namespace xtgrad::kernels
