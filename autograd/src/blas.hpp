// Row-major gemm over raw pointers. Kept apart from xtensor-blas: <cblas.h> and
// xtensor-blas/xlinalg.hpp do not compile in one translation unit.
#pragma once

#include <cstddef>

namespace xtgrad::blas {

// C (m,n) = alpha * op(A) (m,k) * op(B) (k,n) + beta * C, op = transpose when the flag is set.
// lda, ldb, ldc are the row strides of A, B, C as stored.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
          const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

}  // namespace xtgrad::blas
