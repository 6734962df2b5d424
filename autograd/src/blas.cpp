#include "blas.hpp"

#include <cblas.h>

#include <algorithm>

#include "xtgrad/ops.hpp"

// OpenBLAS's thread control; declared here because Debian's <cblas.h> may be the
// reference header, which lacks it.
extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace xtgrad {
namespace blas {
namespace {
CBLAS_TRANSPOSE flag(bool t) { return t ? CblasTrans : CblasNoTrans; }
int ld(std::size_t v) { return static_cast<int>(std::max<std::size_t>(v, 1)); }
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta,
                 float* c, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, flag(ta), flag(tb), int(m), int(n), int(k), alpha, a, ld(lda), b,
              ld(ldb), beta, c, ld(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double alpha,
                  const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta,
                  double* c, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, flag(ta), flag(tb), int(m), int(n), int(k), alpha, a, ld(lda), b,
              ld(ldb), beta, c, ld(ldc));
}

}  // namespace blas

void set_num_threads(int n) { openblas_set_num_threads(std::max(n, 1)); }
int num_threads() { return openblas_get_num_threads(); }

}  // namespace xtgrad
