// Float and double layer norm over rows, and its backward (ops_nn.cpp's layer_norm). Float
// rows whose length is a multiple of 8 run in eight-lane vectors, eight rows at a time
// forward and one at a time backward; every float result has the bits of the
// row-at-a-time loops, whose sums are row_sum's.
#include <cmath>
#include <vector>

#include "kernels.hpp"
#include "simd.hpp"

namespace xtgrad::kernels {

namespace {
template <class T>
[[gnu::always_inline]] inline void layer_norm_impl(const T* x, T* y, const T* w, const T* b, T* means, T* rstds,
                                                   std::size_t rows, std::size_t d, T eps) {
  for (std::size_t r = 0; r < rows; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    const T m = row_sum(xr, d) / T(d);
    const T v = row_sum_squares(xr, m, d);
    const T rstd = T(1) / std::sqrt(v / T(d) + eps);
    for (std::size_t i = 0; i < d; ++i) yr[i] = (xr[i] - m) * rstd;  // xhat
    if (w)
      for (std::size_t i = 0; i < d; ++i) yr[i] *= w[i];
    if (b)
      for (std::size_t i = 0; i < d; ++i) yr[i] += b[i];
    means[r] = m;
    rstds[r] = rstd;
  }
}

template <class T>
[[gnu::always_inline]] inline void layer_norm_backward_impl(const T* x, const T* g, const T* w, const T* means,
                                                            const T* rstds, T* gx, T* gw, T* gb, std::size_t rows,
                                                            std::size_t d) {
  std::vector<T> scratch(2 * d);  // one row's xhat and dxhat, reused
  T* xhat = scratch.data();
  T* dxhat = scratch.data() + d;
  for (std::size_t r = 0; r < rows; ++r) {
    const T* xr = x + r * d;
    const T* gr = g + r * d;
    const T m = means[r], rstd = rstds[r];
    for (std::size_t i = 0; i < d; ++i) xhat[i] = (xr[i] - m) * rstd;
    if (w)
      for (std::size_t i = 0; i < d; ++i) dxhat[i] = gr[i] * w[i];
    else
      std::copy(gr, gr + d, dxhat);
    if (gw)
      for (std::size_t i = 0; i < d; ++i) gw[i] += gr[i] * xhat[i];
    if (gb)
      for (std::size_t i = 0; i < d; ++i) gb[i] += gr[i];
    if (!gx) continue;
    const T mean_dxhat = row_sum(dxhat, d) / T(d);
    const T mean_dxhat_xhat = row_sum(dxhat, xhat, d) / T(d);
    T* gxr = gx + r * d;
    for (std::size_t i = 0; i < d; ++i) gxr[i] = rstd * (dxhat[i] - mean_dxhat - xhat[i] * mean_dxhat_xhat);
  }
}

// Eight float rows of layer_norm_impl at once, for d a multiple of 8: per row the same
// arithmetic in the same order (row_sum's and row_sum_squares' eight lanes, lanes_sum, the
// mean, 1 / sqrt), so the same bits; the eight rows' chains of dependent operations overlap
// where one row's would leave the core waiting: 4096 rows of 64 took 67-83 us instead of
// 179-187, and 82-90 four rows at a time. (The backward stays one row at a time: blocks of
// four or eight rows measured slower there.)
constexpr std::size_t kNormRows = 8;
[[gnu::always_inline]] inline void layer_norm_block(const float* x, float* y, const float* w, const float* b,
                                                    float* means, float* rstds, std::size_t d, float eps) {
  Floats8 acc[kNormRows] = {}, v, p;
  float m[kNormRows], rstd[kNormRows];
  for (std::size_t i = 0; i < d; i += 8)
    for (std::size_t r = 0; r < kNormRows; ++r) acc[r] += load8(v, x + r * d + i);
  for (std::size_t r = 0; r < kNormRows; ++r) m[r] = lanes_sum(acc[r]) / float(d), acc[r] = Floats8{};
  for (std::size_t i = 0; i < d; i += 8)
    for (std::size_t r = 0; r < kNormRows; ++r) {
      load8(v, x + r * d + i) -= m[r];
      acc[r] += v * v;
    }
  for (std::size_t r = 0; r < kNormRows; ++r) {
    rstd[r] = 1.0f / std::sqrt(lanes_sum(acc[r]) / float(d) + eps);
    means[r] = m[r], rstds[r] = rstd[r];
  }
  for (std::size_t r = 0; r < kNormRows; ++r)
    for (std::size_t i = 0; i < d; i += 8) {
      v = (load8(v, x + r * d + i) - m[r]) * rstd[r];  // xhat
      if (w) v *= load8(p, w + i);
      if (b) v += load8(p, b + i);
      store8(y + r * d + i, v);
    }
}

// One float row of layer_norm_backward_impl for d a multiple of 8, in eight-lane vectors:
// the same arithmetic, and the sums in row_sum's order. The second pass recomputes xhat and
// dxhat from x and g (the same operations, so the same bits) instead of keeping them.
[[gnu::always_inline]] inline void layer_norm_backward_row8(const float* xr, const float* gr, const float* w, float m,
                                                            float rstd, float* gxr, float* gw, float* gb,
                                                            std::size_t d) {
  Floats8 sum_dxhat{}, sum_dxhat_xhat{}, x8, g8, w8, acc;
  const auto terms = [&](std::size_t i, Floats8& xh, Floats8& dxh) {  // xhat and dxhat at i
    load8(x8, xr + i);
    load8(g8, gr + i);
    xh = (x8 - m) * rstd;
    dxh = w ? g8 * load8(w8, w + i) : g8;
  };
  Floats8 xh, dxh;
  for (std::size_t i = 0; i < d; i += 8) {
    terms(i, xh, dxh);
    if (gw) store8(gw + i, load8(acc, gw + i) + g8 * xh);
    if (gb) store8(gb + i, load8(acc, gb + i) + g8);
    sum_dxhat += dxh;
    sum_dxhat_xhat += dxh * xh;
  }
  if (!gxr) return;
  const float mean_dxhat = lanes_sum(sum_dxhat) / float(d), mean_dxhat_xhat = lanes_sum(sum_dxhat_xhat) / float(d);
  for (std::size_t i = 0; i < d; i += 8) {
    terms(i, xh, dxh);
    store8(gxr + i, rstd * (dxh - mean_dxhat - xh * mean_dxhat_xhat));
  }
}

}  // namespace

XTGRAD_CLONES
void layer_norm_rows(const float* x, float* y, const float* w, const float* b, float* means, float* rstds,
                     std::size_t rows, std::size_t d, float eps) {
  std::size_t r = 0;
  if (d % 8 == 0)
    for (; r + kNormRows <= rows; r += kNormRows)
      layer_norm_block(x + r * d, y + r * d, w, b, means + r, rstds + r, d, eps);
  layer_norm_impl(x + r * d, y + r * d, w, b, means + r, rstds + r, rows - r, d, eps);
}
void layer_norm_rows(const double* x, double* y, const double* w, const double* b, double* means, double* rstds,
                     std::size_t rows, std::size_t d, double eps) {
  layer_norm_impl(x, y, w, b, means, rstds, rows, d, eps);
}

XTGRAD_CLONES
void layer_norm_rows_backward(const float* x, const float* g, const float* w, const float* means, const float* rstds,
                              float* gx, float* gw, float* gb, std::size_t rows, std::size_t d) {
  if (d % 8 != 0) return layer_norm_backward_impl(x, g, w, means, rstds, gx, gw, gb, rows, d);
  for (std::size_t r = 0; r < rows; ++r)
    layer_norm_backward_row8(x + r * d, g + r * d, w, means[r], rstds[r], gx ? gx + r * d : nullptr, gw, gb, d);
}
void layer_norm_rows_backward(const double* x, const double* g, const double* w, const double* means,
                              const double* rstds, double* gx, double* gw, double* gb, std::size_t rows,
                              std::size_t d) {
  layer_norm_backward_impl(x, g, w, means, rstds, gx, gw, gb, rows, d);
}

}  // namespace xtgrad::kernels
