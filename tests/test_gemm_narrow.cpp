// The narrow-product kernel (autograd/src/gemm_narrow.cpp) against products summed in
// double: every width it takes, both layouts of A, row counts that leave remainders,
// inner lengths across its B panels, alpha and beta, padded strides; beta 0 not reading C.
#include "helpers.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "../autograd/src/blas.hpp"
#include "../autograd/src/gemm_narrow.hpp"

using namespace xtgrad;

namespace {

struct Product {
  bool trans_a;
  std::size_t m, n, k;
  float alpha, beta;
};

// The largest |error| of narrow_gemm over C, in units of the error bound
// k * 2^-24 * (|alpha| sum_p |a_ip b_pj| + |beta c_ij|) (plus the same for the final
// scaling): a correct float product stays below 1, a wrong element or index far above.
double worst_error(const Product& p, std::mt19937& gen) {
  std::normal_distribution<float> normal;
  const std::size_t a_rows = p.trans_a ? p.k : p.m, a_cols = p.trans_a ? p.m : p.k;
  const std::size_t lda = a_cols + 3, ldb = p.n + 5, ldc = p.n + 7;  // padded: strides matter
  std::vector<float> a(std::max<std::size_t>(a_rows, 1) * lda), b(std::max<std::size_t>(p.k, 1) * ldb), c(p.m * ldc);
  for (float& x : a) x = normal(gen);
  for (float& x : b) x = normal(gen);
  for (float& x : c) x = p.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : normal(gen);
  const std::vector<float> c_before = c;
  const auto a_view = blas::matrix<const float>(a.data(), a_rows, a_cols, lda);
  blas::narrow_gemm(blas::matrix(c.data(), p.m, p.n, ldc), p.trans_a ? a_view.t() : a_view,
                    blas::matrix<const float>(b.data(), p.k, p.n, ldb), p.alpha, p.beta);
  const double eps = std::ldexp(1.0, -24);
  double worst = 0;
  for (std::size_t i = 0; i < p.m; ++i)
    for (std::size_t j = 0; j < ldc; ++j) {
      const float got = c[i * ldc + j];
      if (j >= p.n) {  // the padding between rows is never written
        if (!(got == c_before[i * ldc + j] || (std::isnan(got) && std::isnan(c_before[i * ldc + j])))) return 1e30;
        continue;
      }
      double exact = 0, size = 0;
      for (std::size_t q = 0; q < p.k; ++q) {
        const double aiq = p.trans_a ? a[q * lda + i] : a[i * lda + q];
        exact += aiq * b[q * ldb + j];
        size += std::abs(aiq * b[q * ldb + j]);
      }
      exact *= p.alpha;
      size *= std::abs(p.alpha);
      if (p.beta != 0.0f) {
        exact += double(p.beta) * c_before[i * ldc + j];
        size += std::abs(double(p.beta) * c_before[i * ldc + j]);
      }
      const double bound = (double(p.k) + 2) * eps * size + std::numeric_limits<float>::denorm_min();
      if (!std::isfinite(got)) return 1e30;
      worst = std::max(worst, std::abs(got - exact) / bound);
    }
  return worst;
}

}  // namespace

TEST_CASE("narrow gemm: which products are narrow") {
  for (std::size_t n : {16, 32, 48, 64}) {
    CHECK(blas::is_narrow(false, n));
    CHECK_FALSE(blas::is_narrow(true, n));  // B transposed: BLAS
  }
  for (std::size_t n : {0, 1, 8, 15, 17, 40, 80, 128}) CHECK_FALSE(blas::is_narrow(false, n));
}

TEST_CASE("narrow gemm: matches the product in double for every width, layout and remainder") {
  if (!blas::narrow_gemm_available()) {
    MESSAGE("this machine has no AVX-512F: blas::gemm uses BLAS for every product, nothing to check here");
    return;
  }
  std::mt19937 gen(7);
  double worst = 0;
  int products = 0;
  for (bool trans_a : {false, true})
    for (std::size_t n : {16, 32, 48, 64})
      for (std::size_t m : {1, 3, 4, 5, 8, 9, 37})
        for (std::size_t k : {0, 1, 7, 64, 300, 1100}) {  // 300, 1100: across B's panels
          for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.37f, 1.0f}, {-2.0f, -0.5f}}) {
            const double e = worst_error({trans_a, m, n, k, alpha, beta}, gen);
            INFO("trans_a ", trans_a, ", m ", m, ", n ", n, ", k ", k, ", alpha ", alpha, ", beta ", beta);
            CHECK(e < 1.0);
            worst = std::max(worst, e);
            ++products;
          }
        }
  MESSAGE(products, " products: largest error ", worst, " of the float bound");
}

TEST_CASE("narrow gemm: blas::gemm sends narrow float products to it, with the same result") {
  // A 4096 x 64 x 64 product as in align_step's output projection gradient.
  const std::size_t m = 4096, n = 64, k = 64;
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  std::vector<float> a(m * k), b(k * n), via_gemm(m * n), direct(m * n);
  for (float& x : a) x = normal(gen);
  for (float& x : b) x = normal(gen);
  blas::gemm<float>(blas::matrix(via_gemm.data(), m, n), blas::matrix(a.data(), m, k), blas::matrix(b.data(), k, n));
  if (!blas::narrow_gemm_available()) {
    MESSAGE("no AVX-512F here: only BLAS runs");
    return;
  }
  blas::narrow_gemm(blas::matrix(direct.data(), m, n), blas::matrix<const float>(a.data(), m, k),
                    blas::matrix<const float>(b.data(), k, n), 1.0f, 0.0f);
  CHECK(via_gemm == direct);  // bit for bit: the same kernel ran
}
