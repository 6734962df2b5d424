// Our own kernel for products with a narrow result (see gemm_narrow.cpp); blas::gemm
// sends float products here when the machine has AVX-512.
#pragma once

#include <cstddef>

namespace xtgrad::blas {

// Whether a product with B transposed as given and C n columns wide is narrow: B as
// stored (not transposed) and n one of 16, 32, 48, 64.
bool is_narrow(bool trans_b, std::size_t n);

// Whether this machine (and build) runs narrow_gemm: x86-64 with AVX-512F.
bool narrow_gemm_available();

// C (m,n) = alpha * op(A) (m,k) * B (k,n) + beta * C, row-major with row strides lda,
// ldb, ldc; for is_narrow(false, n) only, and only where narrow_gemm_available().
// beta = 0 does not read C.
void narrow_gemm(bool trans_a, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                 std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc);

}  // namespace xtgrad::blas
