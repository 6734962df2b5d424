#include "blas.hpp"

#include <cblas.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gemm_narrow.hpp"
#include "parallel.hpp"
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

void call(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
          std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  if (is_narrow(tb, n) && narrow_gemm_available()) return narrow_gemm(ta, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  cblas_sgemm(CblasRowMajor, flag(ta), flag(tb), int(m), int(n), int(k), alpha, a, ld(lda), b, ld(ldb), beta, c,
              ld(ldc));
}
void call(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double alpha, const double* a,
          std::size_t lda, const double* b, std::size_t ldb, double beta, double* c, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, flag(ta), flag(tb), int(m), int(n), int(k), alpha, a, ld(lda), b, ld(ldb), beta, c,
              ld(ldc));
}

// Below this many multiply-adds a product runs on one thread: splitting it costs more
// than it saves.
constexpr std::size_t kSplitWork = std::size_t(1) << 18;
}  // namespace

// With several threads, a large product is split into bands of C's rows (or columns,
// when C has few rows), one single-threaded BLAS call each.
template <class T>
void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
          const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  if (m * n * k < kSplitWork || parallel::threads() == 1) return call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (k >= 8 * std::max(m, n)) {
    // A small C from a long inner dimension (a weight gradient summed over many rows):
    // bands of C would each read all of the long operands, so split k instead; the first
    // band accumulates into C, the others into their own buffers, added in band order.
    const std::size_t parts = parallel::band_count(k, 64);
    std::vector<std::vector<T>> partial(parts);
    parallel::for_each(parts, [&](std::size_t part) {
      const std::size_t k0 = k * part / parts, k1 = k * (part + 1) / parts;
      const T* a_part = ta ? a + k0 * lda : a + k0;  // op(A)'s columns k0..k1
      const T* b_part = tb ? b + k0 : b + k0 * ldb;  // op(B)'s rows k0..k1
      if (part == 0) return call(ta, tb, m, n, k1 - k0, alpha, a_part, lda, b_part, ldb, beta, c, ldc);
      partial[part].resize(m * n);
      call(ta, tb, m, n, k1 - k0, alpha, a_part, lda, b_part, ldb, T(0), partial[part].data(), n);
    });
    for (std::size_t part = 1; part < parts; ++part)
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] += partial[part][i * n + j];
    return;
  }
  if (m >= n)  // rows r0..r1 of C need rows r0..r1 of op(A)
    parallel::for_ranges(m, 16, [&](std::size_t r0, std::size_t r1) {
      call(ta, tb, r1 - r0, n, k, alpha, ta ? a + r0 : a + r0 * lda, lda, b, ldb, beta, c + r0 * ldc, ldc);
    });
  else  // columns c0..c1 of C need columns c0..c1 of op(B)
    parallel::for_ranges(n, 16, [&](std::size_t c0, std::size_t c1) {
      call(ta, tb, m, c1 - c0, k, alpha, a, lda, tb ? b + c0 * ldb : b + c0, ldb, beta, c + c0, ldc);
    });
}

template void gemm(bool, bool, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t, const float*,
                   std::size_t, float, float*, std::size_t);
template void gemm(bool, bool, std::size_t, std::size_t, std::size_t, double, const double*, std::size_t,
                   const double*, std::size_t, double, double*, std::size_t);

}  // namespace blas

namespace {
// More threads than cores only take turns, each spinning while it waits for work; four per
// core still lets a test run three threads on a one-core machine, and refuses a typo's 1000.
constexpr int kMaxThreadsPerCore = 4;
int cores() { return int(std::max(1u, std::thread::hardware_concurrency())); }  // 0 means unknown: 1
}  // namespace

int max_num_threads() { return kMaxThreadsPerCore * cores(); }

// xtgrad's own threads split the work (parallel.hpp); OpenBLAS runs each call on one.
void set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("set_num_threads: " + std::to_string(n) + " threads asked for, at least 1 needed");
  if (n > max_num_threads())
    throw std::invalid_argument("set_num_threads: " + std::to_string(n) + " threads asked for, at most " +
                                std::to_string(max_num_threads()) + " on this machine (" +
                                std::to_string(kMaxThreadsPerCore) + " x its " + std::to_string(cores()) + " cores)");
  parallel::set_threads(std::size_t(n));
  openblas_set_num_threads(1);
}
int num_threads() { return int(parallel::threads()); }

}  // namespace xtgrad
