// Products whose result is narrow (16 to 64 columns): our own AVX-512 kernel.
// OpenBLAS 0.3.21 packs both operands for every call; when C has at most 64 columns, B's
// rows stay in L1 and a plain broadcast kernel does better (a 4096 x 64 x 64 product 1.35x
// faster here). The toy model's attention products and its linears' gradients run through
// here (README, "Benchmark").
#include "gemm_narrow.hpp"

#include <algorithm>
#include <stdexcept>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define XTGRAD_NARROW_GEMM 1
#endif

namespace xtgrad::blas {

#ifdef XTGRAD_NARROW_GEMM
namespace {

// Rows i0 .. i0 + Rows of C, over the inner indices p0 .. p1:
//   C[i, :] = alpha * sum_p op(A)[i, p] B[p, :] + (first panel ? beta : 1) * C[i, :]
// One accumulator register per (row, 16 columns); B's row p is loaded once per block and
// A's element broadcast, so each load feeds Rows (or Vecs) multiply-adds.
template <int Vecs, int Rows, bool TransA>
__attribute__((target("avx512f"), always_inline)) inline void row_block(std::size_t i0, std::size_t p0, std::size_t p1,
                                                                        float alpha, const float* a, std::size_t lda,
                                                                        const float* b, std::size_t ldb, float beta,
                                                                        float* c, std::size_t ldc) {
  __m512 acc[Rows][Vecs];
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < Vecs; ++j) acc[r][j] = _mm512_setzero_ps();
  for (std::size_t p = p0; p < p1; ++p) {
    __m512 b_row[Vecs];
    for (int j = 0; j < Vecs; ++j) b_row[j] = _mm512_loadu_ps(b + p * ldb + 16 * j);
    for (int r = 0; r < Rows; ++r) {
      const __m512 a_ip = _mm512_set1_ps(TransA ? a[p * lda + i0 + r] : a[(i0 + r) * lda + p]);
      for (int j = 0; j < Vecs; ++j) acc[r][j] = _mm512_fmadd_ps(a_ip, b_row[j], acc[r][j]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha), keep = _mm512_set1_ps(beta);
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < Vecs; ++j) {
      float* out = c + (i0 + r) * ldc + 16 * j;
      const __m512 product = _mm512_mul_ps(scale, acc[r][j]);
      // beta 0 never reads C: it may hold NaN or uninitialised memory, as BLAS allows
      _mm512_storeu_ps(out, beta == 0.0f ? product : _mm512_fmadd_ps(keep, _mm512_loadu_ps(out), product));
    }
}

template <int Vecs, bool TransA>
__attribute__((target("avx512f"))) void narrow(std::size_t m, std::size_t k, float alpha, const float* a,
                                               std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                                               std::size_t ldc) {
  // Enough independent accumulators to cover the multiply-add latency: 8 rows of one
  // vector, 4 rows of 2 to 4.
  constexpr int kRows = Vecs == 1 ? 8 : 4;
  // B in panels of at most 64 KB, so a panel stays in L2 while every row block reads it;
  // the panels after the first add to C.
  const std::size_t panel = 65536 / (64 * Vecs);
  for (std::size_t p0 = 0; p0 == 0 || p0 < k; p0 += panel) {
    const std::size_t p1 = std::min(k, p0 + panel);
    const float keep = p0 == 0 ? beta : 1.0f;
    std::size_t i = 0;
    for (; i + kRows <= m; i += kRows) row_block<Vecs, kRows, TransA>(i, p0, p1, alpha, a, lda, b, ldb, keep, c, ldc);
    for (; i < m; ++i) row_block<Vecs, 1, TransA>(i, p0, p1, alpha, a, lda, b, ldb, keep, c, ldc);
  }
}

template <bool TransA>
void narrow_by_width(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                     const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  switch (n / 16) {
    case 1:
      return narrow<1, TransA>(m, k, alpha, a, lda, b, ldb, beta, c, ldc);
    case 2:
      return narrow<2, TransA>(m, k, alpha, a, lda, b, ldb, beta, c, ldc);
    case 3:
      return narrow<3, TransA>(m, k, alpha, a, lda, b, ldb, beta, c, ldc);
    default:
      return narrow<4, TransA>(m, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

}  // namespace

bool narrow_gemm_available() {
  static const bool available = __builtin_cpu_supports("avx512f");
  return available;
}

void narrow_gemm(Matrix<float> c, Matrix<const float> a, Matrix<const float> b, float alpha, float beta) {
  if (a.transposed)
    return narrow_by_width<true>(c.rows, c.cols, a.cols, alpha, a.data, a.stride, b.data, b.stride, beta, c.data,
                                 c.stride);
  narrow_by_width<false>(c.rows, c.cols, a.cols, alpha, a.data, a.stride, b.data, b.stride, beta, c.data, c.stride);
}

#else

bool narrow_gemm_available() { return false; }
void narrow_gemm(Matrix<float>, Matrix<const float>, Matrix<const float>, float, float) {
  throw std::logic_error("narrow_gemm: this build has no AVX-512 kernel (check narrow_gemm_available first)");
}

#endif

bool is_narrow(bool trans_b, std::size_t n) { return !trans_b && n % 16 == 0 && n >= 16 && n <= 64; }

}  // namespace xtgrad::blas
