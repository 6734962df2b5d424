// Pooling over the last two axes of (N,C,H,W): max_pool2d, avg_pool2d and
// adaptive_avg_pool2d. Each output pixel reads a window of its plane; the windows along an
// axis are listed once (AxisWindows) and every pool walks them the same way:
//   max:  y = the window's largest value; dx at its first position += dy
//   mean: y = window sum / divisor;       dx over the window += dy / divisor
// The divisor counts the padding for avg_pool2d (PyTorch's count_include_pad default) and
// the window's own size for adaptive_avg_pool2d.
#include <cmath>
#include <memory>
#include <vector>

#include "detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// Output o along one axis reads input [begin[o], end[o]); count[o] is its share of the
// divisor of a mean.
struct AxisWindows {
  std::vector<std::size_t> begin, end, count;
  std::size_t size() const { return begin.size(); }
};

// Sliding windows: o reads [o stride - padding, + kernel), clipped to the input.
AxisWindows sliding_windows(std::size_t in, std::size_t kernel, std::size_t stride, std::size_t padding) {
  AxisWindows a;
  for (std::size_t start = 0; start + kernel <= in + 2 * padding; start += stride) {
    const long from = long(start) - long(padding);
    a.begin.push_back(std::size_t(std::max(from, 0L)));
    a.end.push_back(std::min(std::size_t(from + long(kernel)), in));
    a.count.push_back(kernel);  // padding included
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
  std::size_t planes() const { return input[0] * input[1]; }
  std::size_t plane_in() const { return input[2] * input[3]; }
  std::size_t plane_out() const { return rows.size() * cols.size(); }
  Shape output() const { return {input[0], input[1], rows.size(), cols.size()}; }
};

// The windows of a max or average pool; checks the sizes, naming op.
PoolShape sliding_pool(const char* op, const Shape& xs, Size2 kernel, std::optional<Size2> stride_or_kernel,
                       Size2 padding) {
  const Size2 stride = stride_or_kernel.value_or(kernel);
  if (xs.size() != 4) detail::fail(op, "input must be (N,C,H,W), got " + shape_str(xs));
  if (kernel.h == 0 || kernel.w == 0 || stride.h == 0 || stride.w == 0)
    detail::fail(op, "kernel and stride must be positive, got kernel " + kernel.str() + ", stride " + stride.str());
  if (2 * padding.h > kernel.h || 2 * padding.w > kernel.w)
    detail::fail(op, "padding " + padding.str() + " must be at most half the kernel " + kernel.str());
  if (xs[2] + 2 * padding.h < kernel.h || xs[3] + 2 * padding.w < kernel.w)
    detail::fail(op, "kernel " + kernel.str() + " is larger than the padded input: input " + shape_str(xs) +
                         ", padding " + padding.str());
  return {xs, sliding_windows(xs[2], kernel.h, stride.h, padding.h),
          sliding_windows(xs[3], kernel.w, stride.w, padding.w)};
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
        for (std::size_t h = s.rows.begin[oh]; h < s.rows.end[oh]; ++h)
          for (std::size_t w = s.cols.begin[ow]; w < s.cols.end[ow]; ++w) total += x[h * s.input[3] + w];
        *out++ = total / T(s.rows.count[oh] * s.cols.count[ow]);
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
        const T share = *dy++ / T(s.rows.count[oh] * s.cols.count[ow]);
        for (std::size_t h = s.rows.begin[oh]; h < s.rows.end[oh]; ++h)
          for (std::size_t w = s.cols.begin[ow]; w < s.cols.end[ow]; ++w) plane[h * s.input[3] + w] += share;
      }
}

template <class T> Tensor<T> mean_pool(const char* op, const Tensor<T>& x, const PoolShape& s) {
  return make_result<T>(op, mean_pool_forward(s, x.data().data()), {x},
                        [s](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& g) {
                          mean_pool_backward(s, g.data(), *inputs[0]);
                        });
}

// x (planes, H, W) -> y (planes, Ho, Wo), the largest of each window (NaN wins, as in
// PyTorch), and where it was: argmax[i] is its offset within the plane of output i.
template <class T> Array<T> max_pool_forward(const PoolShape& s, const T* x, std::vector<std::size_t>& argmax) {
  Array<T> y(s.output());
  argmax.resize(y.size());
  std::size_t i = 0;
  for (std::size_t p = 0; p < s.planes(); ++p, x += s.plane_in())
    for (std::size_t oh = 0; oh < s.rows.size(); ++oh)
      for (std::size_t ow = 0; ow < s.cols.size(); ++ow, ++i) {
        std::size_t best = s.rows.begin[oh] * s.input[3] + s.cols.begin[ow];
        for (std::size_t h = s.rows.begin[oh]; h < s.rows.end[oh]; ++h)
          for (std::size_t w = s.cols.begin[ow]; w < s.cols.end[ow]; ++w) {
            const T v = x[h * s.input[3] + w];
            if (v > x[best] || (std::isnan(v) && !std::isnan(x[best]))) best = h * s.input[3] + w;
          }
        y.data()[i] = x[best];
        argmax[i] = best;
      }
  return y;
}

// in the forward pass this was y = x[argmax]: dx[argmax] += dy
template <class T>
void max_pool_backward(const PoolShape& s, const std::vector<std::size_t>& argmax, const T* dy, Node<T>& input) {
  const GradTarget<T> dx = grad_target(input);
  if (!dx) return;
  if (dx.beta == T(0)) std::fill_n(dx.data, s.planes() * s.plane_in(), T(0));
  for (std::size_t i = 0; i < argmax.size(); ++i) dx.data[i / s.plane_out() * s.plane_in() + argmax[i]] += dy[i];
}

}  // namespace

// (N,C,H,W) -> (N,C,Ho,Wo)
template <class T> Tensor<T> max_pool2d(const Tensor<T>& x, Size2 kernel, std::optional<Size2> stride, Size2 padding) {
  detail::check_defined("max_pool2d", x);
  const PoolShape s = sliding_pool("max_pool2d", x.shape(), kernel, stride, padding);
  auto argmax = std::make_shared<std::vector<std::size_t>>();
  Array<T> y = max_pool_forward(s, x.data().data(), *argmax);
  return make_result<T>("max_pool2d", std::move(y), {x},
                        [s, argmax](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& g) {
                          max_pool_backward(s, *argmax, g.data(), *inputs[0]);
                        });
}

// (N,C,H,W) -> (N,C,Ho,Wo)
template <class T> Tensor<T> avg_pool2d(const Tensor<T>& x, Size2 kernel, std::optional<Size2> stride, Size2 padding) {
  detail::check_defined("avg_pool2d", x);
  return mean_pool("avg_pool2d", x, sliding_pool("avg_pool2d", x.shape(), kernel, stride, padding));
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

#define XTGRAD_INSTANTIATE_POOL(T)                                                     \
  template Tensor<T> max_pool2d(const Tensor<T>&, Size2, std::optional<Size2>, Size2); \
  template Tensor<T> avg_pool2d(const Tensor<T>&, Size2, std::optional<Size2>, Size2); \
  template Tensor<T> adaptive_avg_pool2d(const Tensor<T>&, Size2);
XTGRAD_INSTANTIATE_POOL(float)
XTGRAD_INSTANTIATE_POOL(double)

}  // namespace xtgrad
