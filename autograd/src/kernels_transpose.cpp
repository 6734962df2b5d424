// Out-of-place transpose, in 16 x 16 tiles (floats in registers).
#include <algorithm>
#include <type_traits>

#include "kernels.hpp"
#include "simd.hpp"

namespace xtgrad::kernels {

namespace {

// One full 16 x 16 tile of floats, in registers: four rounds of zipping row i with row
// i + 8 (lanes a0 b0 a1 b1 ... into rows 2i and 2i + 1) transpose it.
[[gnu::always_inline]] inline void transpose_tile(const float* a, std::size_t lda, float* b, std::size_t ldb) {
  Floats rows[kLanes], zipped[kLanes];
  for (std::size_t r = 0; r < kLanes; ++r) load(rows[r], a + r * lda);
  for (int round = 0; round < 4; ++round) {
    for (std::size_t i = 0; i < kLanes / 2; ++i) {
      zipped[2 * i] =
          __builtin_shufflevector(rows[i], rows[i + 8], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      zipped[2 * i + 1] =
          __builtin_shufflevector(rows[i], rows[i + 8], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    }
    for (std::size_t r = 0; r < kLanes; ++r) rows[r] = zipped[r];
  }
  for (std::size_t c = 0; c < kLanes; ++c) store(b + c * ldb, rows[c]);
}

template <class T>
[[gnu::always_inline]] inline void transpose_impl(std::size_t rows, std::size_t cols, const T* a, std::size_t lda, T* b,
                                                  std::size_t ldb) {
  constexpr std::size_t tile = kLanes;
  for (std::size_t r0 = 0; r0 < rows; r0 += tile)
    for (std::size_t c0 = 0; c0 < cols; c0 += tile) {
      const std::size_t r1 = std::min(rows, r0 + tile), c1 = std::min(cols, c0 + tile);
      if constexpr (std::is_same_v<T, float>)
        if (r1 - r0 == tile && c1 - c0 == tile) {  // in registers
          transpose_tile(a + r0 * lda + c0, lda, b + c0 * ldb + r0, ldb);
          continue;
        }
      for (std::size_t c = c0; c < c1; ++c)  // doubles, and the ragged edges
        for (std::size_t r = r0; r < r1; ++r) b[c * ldb + r] = a[r * lda + c];
    }
}
}  // namespace

XTGRAD_CLONES
void transpose(std::size_t rows, std::size_t cols, const float* a, std::size_t lda, float* b, std::size_t ldb) {
  transpose_impl(rows, cols, a, lda, b, ldb);
}
void transpose(std::size_t rows, std::size_t cols, const double* a, std::size_t lda, double* b, std::size_t ldb) {
  transpose_impl(rows, cols, a, lda, b, ldb);
}

}  // namespace xtgrad::kernels
