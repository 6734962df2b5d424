// Pooling over the last two axes of (N,C,H,W): max_pool2d, avg_pool2d and
// adaptive_avg_pool2d. Each output pixel reads a window of its plane; the windows along an
// axis are listed once (AxisWindows) and every pool walks them the same way:
//   max:  y = the window's largest value; dx at its first position += dy
//   mean: y = window sum / divisor;       dx over the window += dy / divisor
// The divisor is avg_pool2d's divisor_override, or the product of the two axes' counts: for
// avg_pool2d the window clipped to the padded input (count_include_pad) or to the input,
// for adaptive_avg_pool2d the window's own size. Max windows may be dilated: their taps
// are step apart.
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "detail.hpp"
#include "simd.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// Output o along one axis reads input begin[o], begin[o] + step, ... before end[o]; count[o]
// is its share of the divisor of a mean.
struct AxisWindows {
  std::vector<std::size_t> begin, end, count;
  std::size_t step = 1;  // the dilation
  std::size_t size() const { return begin.size(); }
};

// The sizes of a sliding pool along one axis.
struct AxisPool {
  std::size_t in, kernel, stride, padding, dilation;
  bool ceil_mode;
};

// Output size as PyTorch 1.13's pooling_output_shape; 0 when no window fits.
std::size_t pool_out_size(const AxisPool& p) {
  const long span = long(p.dilation * (p.kernel - 1) + 1);
  const long room = long(p.in + 2 * p.padding) - span + (p.ceil_mode ? long(p.stride) - 1 : 0);
  if (room < 0) return 0;
  std::size_t out = std::size_t(room) / p.stride + 1;
  // ceil_mode: the last window must start inside the input or its left padding
  if (p.ceil_mode && (out - 1) * p.stride >= p.in + p.padding) --out;
  return out;
}

// Sliding windows: o's taps are o stride - padding + j dilation (j < kernel), those inside
// the input read. count_padding: the window clipped to the padded input counts, padding
// included (ceil_mode's overhang beyond it is not); otherwise the input values it reads
// (the means have dilation 1).
AxisWindows sliding_windows(const AxisPool& p, bool count_padding) {
  AxisWindows a;
  a.step = p.dilation;
  const long d = long(p.dilation), in = long(p.in);
  for (std::size_t o = 0, out = pool_out_size(p); o < out; ++o) {
    const long from = long(o * p.stride) - long(p.padding);
    const long first = from >= 0 ? from : from + (-from + d - 1) / d * d;  // the first tap at or after 0
    const long stop = std::max(first, std::min(from + d * long(p.kernel - 1) + 1, in));
    a.begin.push_back(std::size_t(first));
    a.end.push_back(std::size_t(stop));
    a.count.push_back(count_padding ? std::size_t(std::min(from + long(p.kernel), in + long(p.padding)) - from)
                                    : std::size_t(stop - first));
  }
  return a;
}

// Adaptive windows: o reads [floor(o in / out), ceil((o + 1) in / out)).
AxisWindows adaptive_windows(std::size_t in, std::size_t out) {
  AxisWindows a;
  for (std::size_t o = 0; o < out; ++o) {
    a.begin.push_back(o * in / out);
    a.end.push_back(((o + 1) * in + out - 1) / out);
    a.count.push_back(a.end.back() - a.begin.back());
  }
  return a;
}

struct PoolShape {
  Shape input;  // (N,C,H,W)
  AxisWindows rows, cols;
  std::optional<long> divisor_override = std::nullopt;  // a mean's divisor for every window
  double divisor(std::size_t oh, std::size_t ow) const {
    return divisor_override ? double(*divisor_override) : double(rows.count[oh] * cols.count[ow]);
  }
  std::size_t planes() const { return input[0] * input[1]; }
  std::size_t plane_in() const { return input[2] * input[3]; }
  std::size_t plane_out() const { return rows.size() * cols.size(); }
  Shape output() const { return {input[0], input[1], rows.size(), cols.size()}; }
};

// The options of a max or average pool (an average pool's dilation is 1).
struct SlidingOptions {
  Size2 kernel, stride, padding, dilation;
  bool ceil_mode, count_padding;
};

// The windows of a max or average pool; checks the sizes, naming op.
PoolShape sliding_pool(const char* op, const Shape& xs, const SlidingOptions& o) {
  const Size2 k = o.kernel, d = o.dilation;
  if (xs.size() != 4) detail::fail(op, "input must be (N,C,H,W), got " + shape_str(xs));
  if (k.h == 0 || k.w == 0 || o.stride.h == 0 || o.stride.w == 0 || d.h == 0 || d.w == 0)
    detail::fail(op, "kernel, stride and dilation must be positive, got kernel " + k.str() + ", stride " +
                         o.stride.str() + ", dilation " + d.str() + " for input " + shape_str(xs));
  if (2 * o.padding.h > k.h || 2 * o.padding.w > k.w)
    detail::fail(op, "padding " + o.padding.str() + " must be at most half the kernel " + k.str());
  const AxisPool rows{xs[2], k.h, o.stride.h, o.padding.h, d.h, o.ceil_mode};
  const AxisPool cols{xs[3], k.w, o.stride.w, o.padding.w, d.w, o.ceil_mode};
  const std::string sizes =
      "kernel " + k.str() + " with dilation " + d.str() + ", input " + shape_str(xs) + ", padding " + o.padding.str();
  if (pool_out_size(rows) == 0 || pool_out_size(cols) == 0)
    detail::fail(op, "no window fits, the kernel is larger than the padded input: " + sizes);
  PoolShape s{xs, sliding_windows(rows, o.count_padding), sliding_windows(cols, o.count_padding)};
  for (const AxisWindows* a : {&s.rows, &s.cols})
    for (std::size_t i = 0; i < a->size(); ++i)
      if (a->begin[i] == a->end[i]) detail::fail(op, "a window's taps all fall in the padding: " + sizes);
  return s;
}

// x (planes, H, W) -> y (planes, Ho, Wo): the mean of each window, the padding counted
// when the divisor says so.
template <class T> Array<T> mean_pool_forward(const PoolShape& s, const T* x) {
  Array<T> y(s.output());
  T* out = y.data();
  for (std::size_t p = 0; p < s.planes(); ++p, x += s.plane_in())
    for (std::size_t oh = 0; oh < s.rows.size(); ++oh)
      for (std::size_t ow = 0; ow < s.cols.size(); ++ow) {
        T total = T(0);
        for (std::size_t h = s.rows.begin[oh]; h < s.rows.end[oh]; h += s.rows.step)
          for (std::size_t w = s.cols.begin[ow]; w < s.cols.end[ow]; w += s.cols.step) total += x[h * s.input[3] + w];
        *out++ = total / T(s.divisor(oh, ow));
      }
  return y;
}

// in the forward pass this was y = window sum / divisor: dx over the window += dy / divisor
template <class T> void mean_pool_backward(const PoolShape& s, const T* dy, Node<T>& input) {
  const GradTarget<T> dx = grad_target(input);
  if (!dx) return;
  if (dx.beta == T(0)) std::fill_n(dx.data, s.planes() * s.plane_in(), T(0));
  T* plane = dx.data;
  for (std::size_t p = 0; p < s.planes(); ++p, plane += s.plane_in())
    for (std::size_t oh = 0; oh < s.rows.size(); ++oh)
      for (std::size_t ow = 0; ow < s.cols.size(); ++ow) {
        const T share = *dy++ / T(s.divisor(oh, ow));
        for (std::size_t h = s.rows.begin[oh]; h < s.rows.end[oh]; h += s.rows.step)
          for (std::size_t w = s.cols.begin[ow]; w < s.cols.end[ow]; w += s.cols.step)
            plane[h * s.input[3] + w] += share;
      }
}

template <class T> Tensor<T> mean_pool(const char* op, const Tensor<T>& x, const PoolShape& s) {
  return make_result<T>(op, mean_pool_forward(s, x.data().data()), {x},
                        [s](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& g) {
                          mean_pool_backward(s, g.data(), *inputs[0]);
                        });
}

// Whether v replaces best as a window's maximum: larger, or the first NaN (NaN wins, as in
// PyTorch; with two NaN in a window PyTorch 1.13 points the gradient at the last one, we at
// the first). Ties keep the earlier position, PyTorch's first maximum.
template <class T> bool replaces(T v, T best) { return v > best || (std::isnan(v) && !std::isnan(best)); }

// Every window along the axis is the two taps 2o, 2o + 1: kernel 2, stride 2, no padding,
// dilation 1, and no clipped window at the end (an odd size's last tap is simply unread).
bool pairs_axis(const AxisWindows& a) {
  for (std::size_t o = 0; o < a.size(); ++o)
    if (a.begin[o] != 2 * o || a.end[o] != 2 * o + 2) return false;
  return a.step == 1;
}

// x (planes, H, W) -> y (planes, Ho, Wo) for any windows: the largest value of each and
// its offset within the plane (argmax, one per output).
template <class T> void max_pool_windows(const PoolShape& s, const T* x, T* y, std::size_t* argmax) {
  const std::size_t width = s.input[3];
  for (std::size_t p = 0; p < s.planes(); ++p, x += s.plane_in())
    for (std::size_t oh = 0; oh < s.rows.size(); ++oh)
      for (std::size_t ow = 0; ow < s.cols.size(); ++ow) {
        std::size_t at = s.rows.begin[oh] * width + s.cols.begin[ow];
        T best = x[at];
        for (std::size_t h = s.rows.begin[oh]; h < s.rows.end[oh]; h += s.rows.step)
          for (std::size_t w = s.cols.begin[ow]; w < s.cols.end[ow]; w += s.cols.step)
            if (replaces(x[h * width + w], best)) best = x[at = h * width + w];
        *y++ = best;
        *argmax++ = at;
      }
}

}  // namespace

// The 2x2 windows tiling a plane (pairs_axis on both axes), the CNNs' common pool, as
// max_pool_windows: the first maximum in the tap order 0 1 / 2 3 (top row, then bottom),
// a NaN first of all. In loops without branches that the compiler vectorises over the
// whole plane (rows are as short as 4 outputs): the VQA encoder's three pools on ReLU
// outputs took 0.85 ms against 5.5 with a branching loop per window (Zen 4, batch 64),
// whose comparisons were coin flips.

// Columns of each row pair of a plane x (H, W): column[q w2 + w] is the first maximum of
// x[2q, w] and x[2q+1, w] for w < w2 (an odd width's last column is unread); code bit 0
// says the bottom one won, bit 1 that either is NaN.
template <class T>
[[gnu::always_inline]] inline void pair_columns(const T* x, std::size_t pairs, std::size_t width, std::size_t w2,
                                                T* column, std::int32_t* code) {
  for (std::size_t q = 0; q < pairs; ++q) {
    const T* __restrict top = x + 2 * q * width;
    const T* __restrict bottom = top + width;
    T* __restrict v = column + q * w2;
    std::int32_t* __restrict k = code + q * w2;
    for (std::size_t w = 0; w < w2; ++w) {
      const T a = top[w], c = bottom[w];
      const std::int32_t lower = c > a, nan = (a != a) | (c != c);
      v[w] = lower ? c : a;
      k[w] = lower | nan << 1;
    }
  }
}

// Windows o from column pairs (2o, 2o+1): y[o], and tap[o] in 0..3, or -1 for a NaN. The
// right column wins when larger, or when equal with tap 1 against tap 2 (the first maximum).
template <class T>
[[gnu::always_inline]] inline void pair_windows(const T* __restrict column, const std::int32_t* __restrict code,
                                                std::size_t n, T* __restrict y, std::int32_t* __restrict tap) {
  for (std::size_t o = 0; o < n; ++o) {
    const T left = column[2 * o], right = column[2 * o + 1];
    const std::int32_t kl = code[2 * o], kr = code[2 * o + 1];
    const std::int32_t larger = right > left, equal = right == left;
    const std::int32_t to_right = larger | (equal & kl & ~kr & 1);
    y[o] = to_right ? right : left;
    const std::int32_t chosen = to_right ? 1 + 2 * (kr & 1) : 2 * (kl & 1);
    tap[o] = chosen | -(((kl | kr) & 2) >> 1);  // all bits set (-1) for a NaN
  }
}

// x (planes, H, W) -> y (planes, H/2, W/2) and argmax (offsets within the plane).
template <class T>
[[gnu::always_inline]] inline void max_pool_pairs_impl(std::size_t planes, std::size_t height, std::size_t width,
                                                       const T* x, T* y, std::size_t* argmax) {
  const std::size_t out_height = height / 2, out_width = width / 2, n = out_height * out_width;
  std::vector<T> column(2 * n);
  std::vector<std::int32_t> code(2 * n), tap(n);
  for (std::size_t p = 0; p < planes; ++p, x += height * width, y += n, argmax += n) {
    pair_columns(x, out_height, width, 2 * out_width, column.data(), code.data());
    pair_windows(column.data(), code.data(), n, y, tap.data());
    for (std::size_t oh = 0; oh < out_height; ++oh)
      for (std::size_t ow = 0; ow < out_width; ++ow) {
        const std::size_t o = oh * out_width + ow, first = 2 * oh * width + 2 * ow;  // taps first + {0, 1, W, W + 1}
        if (tap[o] < 0) {                                                            // a NaN wins, the first one
          const T window[4] = {x[first], x[first + 1], x[first + width], x[first + width + 1]};
          std::int32_t at = 0;
          for (std::int32_t t = 1; t < 4; ++t)
            if (replaces(window[t], window[at])) at = t;
          tap[o] = at;
          y[o] = window[at];
        }
        argmax[o] = first + std::size_t(tap[o] & 1) + std::size_t(tap[o] >> 1) * width;
      }
  }
}

// Comparisons only, so the three instruction sets give the same bits. Outside the
// anonymous namespace, as the kernels' clones (simd.hpp).
XTGRAD_CLONES
void max_pool_pairs(std::size_t planes, std::size_t height, std::size_t width, const float* x, float* y,
                    std::size_t* argmax) {
  max_pool_pairs_impl(planes, height, width, x, y, argmax);
}
void max_pool_pairs(std::size_t planes, std::size_t height, std::size_t width, const double* x, double* y,
                    std::size_t* argmax) {
  max_pool_pairs_impl(planes, height, width, x, y, argmax);
}

namespace {

// x (planes, H, W) -> y (planes, Ho, Wo), the largest of each window, and where it was:
// argmax[i] is its offset within the plane of output i.
template <class T> Array<T> max_pool_forward(const PoolShape& s, const T* x, std::vector<std::size_t>& argmax) {
  Array<T> y(s.output());
  argmax.resize(y.size());
  if (pairs_axis(s.rows) && pairs_axis(s.cols))
    max_pool_pairs(s.planes(), s.input[2], s.input[3], x, y.data(), argmax.data());
  else
    max_pool_windows(s, x, y.data(), argmax.data());
  return y;
}

// in the forward pass this was y = x[argmax]: dx[argmax] += dy
template <class T>
void max_pool_backward(const PoolShape& s, const std::vector<std::size_t>& argmax, const T* dy, Node<T>& input) {
  const GradTarget<T> dx = grad_target(input);
  if (!dx) return;
  if (dx.beta == T(0)) std::fill_n(dx.data, s.planes() * s.plane_in(), T(0));
  const std::size_t* at = argmax.data();
  T* plane = dx.data;
  for (std::size_t p = 0; p < s.planes(); ++p, plane += s.plane_in())
    for (std::size_t i = 0; i < s.plane_out(); ++i) plane[*at++] += *dy++;
}

}  // namespace

// (N,C,H,W) -> (N,C,Ho,Wo)
template <class T>
Tensor<T> max_pool2d(const Tensor<T>& x, Size2 kernel, std::optional<Size2> stride, Size2 padding, Size2 dilation,
                     bool ceil_mode) {
  detail::check_defined("max_pool2d", x);
  const PoolShape s =
      sliding_pool("max_pool2d", x.shape(), {kernel, stride.value_or(kernel), padding, dilation, ceil_mode, false});
  auto argmax = std::make_shared<std::vector<std::size_t>>();
  Array<T> y = max_pool_forward(s, x.data().data(), *argmax);
  return make_result<T>("max_pool2d", std::move(y), {x},
                        [s, argmax](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& g) {
                          max_pool_backward(s, *argmax, g.data(), *inputs[0]);
                        });
}

// (N,C,H,W) -> (N,C,Ho,Wo)
template <class T>
Tensor<T> avg_pool2d(const Tensor<T>& x, Size2 kernel, std::optional<Size2> stride, Size2 padding, bool ceil_mode,
                     bool count_include_pad, std::optional<long> divisor_override) {
  detail::check_defined("avg_pool2d", x);
  if (divisor_override && *divisor_override == 0)
    detail::fail("avg_pool2d", "divisor_override must not be 0, input " + shape_str(x.shape()));
  PoolShape s = sliding_pool("avg_pool2d", x.shape(),
                             {kernel, stride.value_or(kernel), padding, 1, ceil_mode, count_include_pad});
  s.divisor_override = divisor_override;
  return mean_pool("avg_pool2d", x, s);
}

// (N,C,H,W) -> (N,C,output_size.h,output_size.w)
template <class T> Tensor<T> adaptive_avg_pool2d(const Tensor<T>& x, Size2 output_size) {
  const char* op = "adaptive_avg_pool2d";
  detail::check_defined(op, x);
  const Shape xs = x.shape();
  if (xs.size() != 4) detail::fail(op, "input must be (N,C,H,W), got " + shape_str(xs));
  if (output_size.h == 0 || output_size.w == 0 || xs[2] == 0 || xs[3] == 0)
    detail::fail(
        op, "output size " + output_size.str() + " and the input's H and W must be positive, input " + shape_str(xs));
  return mean_pool(op, x,
                   PoolShape{xs, adaptive_windows(xs[2], output_size.h), adaptive_windows(xs[3], output_size.w)});
}

#define XTGRAD_INSTANTIATE_POOL(T)                                                                  \
  template Tensor<T> max_pool2d(const Tensor<T>&, Size2, std::optional<Size2>, Size2, Size2, bool); \
  template Tensor<T> avg_pool2d(const Tensor<T>&, Size2, std::optional<Size2>, Size2, bool, bool,   \
                                std::optional<long>);                                               \
  template Tensor<T> adaptive_avg_pool2d(const Tensor<T>&, Size2);
XTGRAD_INSTANTIATE_POOL(float)
XTGRAD_INSTANTIATE_POOL(double)

}  // namespace xtgrad
