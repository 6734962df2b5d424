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
CBLAS_TRANSPOSE flag(bool transposed) { return transposed ? CblasTrans : CblasNoTrans; }
int ld(std::size_t stride) { return static_cast<int>(std::max<std::size_t>(stride, 1)); }

// One single-threaded product: ours for a narrow float result where the CPU allows, else
// OpenBLAS.
void call(Matrix<float> c, Matrix<const float> a, Matrix<const float> b, float alpha, float beta) {
  if (is_narrow(b.transposed, c.cols) && narrow_gemm_available()) return narrow_gemm(c, a, b, alpha, beta);
  cblas_sgemm(CblasRowMajor, flag(a.transposed), flag(b.transposed), int(c.rows), int(c.cols), int(a.cols), alpha,
              a.data, ld(a.stride), b.data, ld(b.stride), beta, c.data, ld(c.stride));
}
void call(Matrix<double> c, Matrix<const double> a, Matrix<const double> b, double alpha, double beta) {
  cblas_dgemm(CblasRowMajor, flag(a.transposed), flag(b.transposed), int(c.rows), int(c.cols), int(a.cols), alpha,
              a.data, ld(a.stride), b.data, ld(b.stride), beta, c.data, ld(c.stride));
}

// Below this many multiply-adds a product runs on one thread: splitting it costs more
// than it saves.
constexpr std::size_t kSplitWork = std::size_t(1) << 18;

// A small C from a long inner dimension (a weight gradient summed over many rows): bands
// of C would each read all of the long operands, so split k instead; the first band
// accumulates into C, the others into their own buffers, added in band order.
template <class T> void gemm_split_inner(Matrix<T> c, Matrix<const T> a, Matrix<const T> b, T alpha, T beta) {
  const std::size_t m = c.rows, n = c.cols, k = a.cols;
  const std::size_t parts = parallel::band_count(k, 64);
  std::vector<std::vector<T>> partial(parts);
  parallel::for_each(parts, [&](std::size_t part) {
    const std::size_t k0 = k * part / parts, k1 = k * (part + 1) / parts;
    const Matrix<const T> a_part = a.col_range(k0, k1), b_part = b.row_range(k0, k1);
    if (part == 0) return call(c, a_part, b_part, alpha, beta);
    partial[part].resize(m * n);
    call(matrix(partial[part].data(), m, n), a_part, b_part, alpha, T(0));
  });
  for (std::size_t part = 1; part < parts; ++part)
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) c.data[i * c.stride + j] += partial[part][i * n + j];
}
}  // namespace

// With several threads, a large product is split into bands of C's rows (or columns,
// when C has few rows), one single-threaded BLAS call each.
template <class T>
void gemm(Matrix<T> c, typename read_only<T>::type a, typename read_only<T>::type b, T alpha, T beta) {
  if (c.transposed || a.rows != c.rows || b.cols != c.cols || a.cols != b.rows)
    throw std::logic_error("blas::gemm: (" + std::to_string(c.rows) + "," + std::to_string(c.cols) + ") = (" +
                           std::to_string(a.rows) + "," + std::to_string(a.cols) + ") x (" + std::to_string(b.rows) +
                           "," + std::to_string(b.cols) + ")" + (c.transposed ? ", C transposed" : ""));
  const std::size_t m = c.rows, n = c.cols, k = a.cols;
  if (m * n * k < kSplitWork || parallel::threads() == 1) return call(c, a, b, alpha, beta);
  if (k >= 8 * std::max(m, n)) return gemm_split_inner(c, a, b, alpha, beta);
  if (m >= n)  // rows r0..r1 of C need rows r0..r1 of A
    parallel::for_ranges(
        m, 16, [&](std::size_t r0, std::size_t r1) { call(c.row_range(r0, r1), a.row_range(r0, r1), b, alpha, beta); });
  else  // columns c0..c1 of C need columns c0..c1 of B
    parallel::for_ranges(
        n, 16, [&](std::size_t c0, std::size_t c1) { call(c.col_range(c0, c1), a, b.col_range(c0, c1), alpha, beta); });
}

template void gemm(Matrix<float>, Matrix<const float>, Matrix<const float>, float, float);
template void gemm(Matrix<double>, Matrix<const double>, Matrix<const double>, double, double);

// Before main (glibc passes a constructor the program's arguments): when OpenBLAS fell
// back to a generic core, restart once on a better one (blas_core.cpp); then OpenBLAS runs
// each call on one thread from the start, as set_num_threads has it (its own threads
// would spin beside ours). Here, in the file every product links, so both come with them.
__attribute__((constructor)) void set_up_blas_before_main(int, char** argv, char**) {
  restart_on_generic_core(argv);
  openblas_set_num_threads(1);
}
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
