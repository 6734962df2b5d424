// Our own kernel for products with a narrow result (see gemm_narrow.cpp); blas::gemm
// sends float products here when the machine has AVX-512.
#pragma once

#include <cstddef>

#include "blas.hpp"

namespace xtgrad::blas {

// Whether a product with B transposed as given and C n columns wide is narrow: B as
// stored (not transposed) and n one of 16, 32, 48, 64.
bool is_narrow(bool trans_b, std::size_t n);

// Whether this machine (and build) runs narrow_gemm: x86-64 with AVX-512F.
bool narrow_gemm_available();

// C = alpha A B + beta C, for is_narrow(b, c) only, and only where narrow_gemm_available().
// beta = 0 does not read C.
void narrow_gemm(Matrix<float> c, Matrix<const float> a, Matrix<const float> b, float alpha, float beta);

}  // namespace xtgrad::blas
