// Float softmax and its backward on rows of sixteen values (attention over 16 keys), sixteen
// rows at a time: one row per vector, and each row's maximum and sum found for all sixteen
// rows at once by a tree of shuffles, in the order of kernels.cpp's row_max and row_sum,
// so the results are the row-at-a-time loops' bits.
#include <limits>

#include "simd.hpp"

namespace xtgrad::kernels {

namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// a += b, or a = max(a, b) as row_max takes it (a NaN b is skipped)
template <bool kMax> [[gnu::always_inline]] inline void combine(Floats& a, const Floats& b) {
  if constexpr (kMax)
    a = a < b ? b : a;
  else
    a += b;
}

// The sums (or maxima) of sixteen rows of sixteen: lane r of `out` is row r's. As row_sum:
// lane j of an eight-lane accumulator takes 0, x[j], x[j + 8]; then lanes_sum's pairs
// (0 1) (2 3) (4 5) (6 7), then those in pairs, then the last two. Each level zips two
// vectors so that a row's partial results stay side by side, sixteen rows become one
// vector. For the maximum only the value matters (a max of +0 and -0 may differ in sign;
// after the subtraction, exp gives 1 for either), and no NaN survives the first level.
template <bool kMax> [[gnu::always_inline]] inline void reduce_rows(const Floats (&rows)[kLanes], Floats& out) {
  Floats level[kLanes / 2];
  for (std::size_t i = 0; i < kLanes / 2; ++i) {
    // rows 2i and 2i + 1: their first halves, then their second halves
    const Floats lo =
        __builtin_shufflevector(rows[2 * i], rows[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const Floats hi = __builtin_shufflevector(rows[2 * i], rows[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26,
                                              27, 28, 29, 30, 31);
    level[i] = Floats{} + (kMax ? kMinusInf : 0.0f);
    combine<kMax>(level[i], lo);
    combine<kMax>(level[i], hi);
  }
  for (std::size_t n = kLanes / 4; n >= 1; n /= 2)  // 4, 2, 1 vectors: even lanes with odd ones
    for (std::size_t i = 0; i < n; ++i) {
      Floats even = __builtin_shufflevector(level[2 * i], level[2 * i + 1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,
                                            24, 26, 28, 30);
      const Floats odd = __builtin_shufflevector(level[2 * i], level[2 * i + 1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21,
                                                 23, 25, 27, 29, 31);
      combine<kMax>(even, odd);
      level[i] = even;
    }
  out = level[0];
}

// x (16, 16) contiguous, in place: x - max (unless the row is all -inf), exp, times
// 1 / sum (0 for an all-masked row, whose exps are 0)
[[gnu::always_inline]] inline void softmax_block(float* x) {
  Floats rows[kLanes], peak, total;
  for (std::size_t r = 0; r < kLanes; ++r) load(rows[r], x + r * kLanes);
  reduce_rows<true>(rows, peak);
  // an all-masked row keeps its values: x - 0 is x (-0 too)
  const Floats shift = peak == kMinusInf ? Floats{} : peak;
  for (std::size_t r = 0; r < kLanes; ++r) {
    rows[r] -= shift[r];
    exp_vector<true>(rows[r]);  // x - max <= 0, or -inf or NaN
  }
  reduce_rows<false>(rows, total);
  const Floats inv = total == 0.0f ? Floats{} : 1.0f / total;
  for (std::size_t r = 0; r < kLanes; ++r) store(x + r * kLanes, rows[r] * inv[r]);
}

// p and ds (16, 16), rows `stride` apart: ds = scale * p * (ds - <ds, p>), in place
[[gnu::always_inline]] inline void softmax_backward_block(const float* p, float* ds, std::size_t stride, float scale) {
  Floats pr[kLanes], dr[kLanes], products[kLanes], dot;
  for (std::size_t r = 0; r < kLanes; ++r) {
    load(pr[r], p + r * stride);
    load(dr[r], ds + r * stride);
    products[r] = dr[r] * pr[r];
  }
  reduce_rows<false>(products, dot);
  for (std::size_t r = 0; r < kLanes; ++r) store(ds + r * stride, scale * pr[r] * (dr[r] - dot[r]));
}

}  // namespace

XTGRAD_CLONES
std::size_t softmax_rows_16(float* x, std::size_t rows) {
  const std::size_t blocks = rows / kLanes;
  for (std::size_t b = 0; b < blocks; ++b) softmax_block(x + b * kLanes * kLanes);
  return blocks * kLanes;
}

XTGRAD_CLONES
std::size_t softmax_backward_rows_16(const float* p, float* ds, std::size_t rows, std::size_t stride, float scale) {
  const std::size_t blocks = rows / kLanes;
  for (std::size_t b = 0; b < blocks; ++b)
    softmax_backward_block(p + b * kLanes * stride, ds + b * kLanes * stride, stride, scale);
  return blocks * kLanes;
}

}  // namespace xtgrad::kernels
