// conv2d: x (N,Cin,H,W), weight (Cout,Cin/groups,kh,kw), bias (Cout) -> (N,Cout,Ho,Wo);
// conv1d is conv2d on a height-1 view of its (N,Cin,L) input.
// As im2col: each image's group of input channels is unfolded into a matrix whose column
// p holds the Cin/groups x kh x kw input values output pixel p sees (zeros where the
// window reaches into the padding); the convolution is then one product per image and
// group, with the group's weight seen as a (Cout/groups, K) matrix, K = Cin/groups kh kw:
//   y_ng  (Cg,P)  = W_g (Cg,K) cols (K,P) + b         P = Ho Wo output pixels
//   dW_g  (Cg,K) += dy_ng (Cg,P) cols^T (P,K)          summed over the images
//   dcols (K,P)   = W_g^T (K,Cg) dy_ng (Cg,P), folded back onto dx (col2im)
//   db    (Cout)  = sums of dy over images and pixels
// The columns are unfolded again in the backward instead of kept: one pass over x
// against N x K x P values held from forward to backward.
#include <algorithm>
#include <vector>

#include "blas.hpp"
#include "detail.hpp"
#include "kernels.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// The sizes of one convolution; "channels" are one group's input channels.
struct ConvShape {
  std::size_t batch, in_channels, out_channels, groups;
  std::size_t height, width, out_height, out_width;
  Size2 kernel, stride, padding, dilation;

  std::size_t group_in() const { return in_channels / groups; }
  std::size_t group_out() const { return out_channels / groups; }
  std::size_t columns_rows() const { return group_in() * kernel.h * kernel.w; }  // K
  std::size_t pixels() const { return out_height * out_width; }                  // P
};

// Output size along one axis, or 0 when the (dilated) kernel does not fit the padded input.
std::size_t conv_out_size(std::size_t in, std::size_t kernel, std::size_t stride, std::size_t padding,
                          std::size_t dilation) {
  const std::size_t span = dilation * (kernel - 1) + 1;
  if (in + 2 * padding < span) return 0;
  return (in + 2 * padding - span) / stride + 1;
}

// x (N,Cin,...) against weight (Cout,Cin/groups,...): groups divides both channel counts.
void check_channels(const char* op, const Shape& xs, const Shape& ws, std::size_t groups) {
  if (groups == 0 || xs[1] % groups != 0 || ws[0] % groups != 0)
    detail::fail(op, "groups = " + std::to_string(groups) + " must divide the input channels of " + shape_str(xs) +
                         " and the output channels of weight " + shape_str(ws));
  if (ws[1] * groups != xs[1])
    detail::fail(op, "input " + shape_str(xs) + " has " + std::to_string(xs[1]) + " channels; weight " + shape_str(ws) +
                         " with groups = " + std::to_string(groups) + " expects " + std::to_string(ws[1] * groups));
}

ConvShape conv_shape(const Shape& xs, const Shape& ws, Size2 stride, Size2 padding, Size2 dilation,
                     std::size_t groups) {
  const char* op = "conv2d";
  if (xs.size() != 4) detail::fail(op, "input must be (N,Cin,H,W), got " + shape_str(xs));
  if (ws.size() != 4) detail::fail(op, "weight must be (Cout,Cin/groups,kh,kw), got " + shape_str(ws));
  check_channels(op, xs, ws, groups);
  if (stride.h == 0 || stride.w == 0 || dilation.h == 0 || dilation.w == 0 || ws[2] == 0 || ws[3] == 0)
    detail::fail(op, "kernel, stride and dilation must be positive, got kernel " + shape_str(ws) + ", stride " +
                         stride.str() + ", dilation " + dilation.str());
  ConvShape s{xs[0], xs[1], ws[0], groups, xs[2], xs[3], 0, 0, {ws[2], ws[3]}, stride, padding, dilation};
  s.out_height = conv_out_size(s.height, ws[2], stride.h, padding.h, dilation.h);
  s.out_width = conv_out_size(s.width, ws[3], stride.w, padding.w, dilation.w);
  if (s.out_height == 0 || s.out_width == 0)
    detail::fail(op, "kernel " + s.kernel.str() + " with dilation " + dilation.str() +
                         " is larger than the padded input: input " + shape_str(xs) + ", padding " + padding.str());
  return s;
}

// The output columns ow whose input column ow stride - padding + offset falls inside
// [0, width): [first, last). Computed once per kernel column instead of tested per pixel.
struct ColumnRange {
  std::size_t first, last;
};
ColumnRange inside_columns(std::size_t width, std::size_t out_width, std::size_t stride, std::size_t padding,
                           std::size_t offset) {
  // input column = ow stride + offset - padding; inside when padding - offset <= ow stride < width + padding - offset
  const long low = long(padding) - long(offset), high = long(width) + long(padding) - long(offset);
  // Both ends clipped to [0, out_width]: with padding wider than the output, a kernel
  // column's first inside column can lie past the last output column (then none is inside).
  const long first = std::min<long>(long(out_width), low <= 0 ? 0 : (low + long(stride) - 1) / long(stride));
  const long last = high <= 0 ? 0 : std::min<long>(long(out_width), (high + long(stride) - 1) / long(stride));
  return {std::size_t(first), std::size_t(std::max(first, last))};
}

// Calls visit(row of cols (K,P) for (c,i,j) at output row oh, input row pointer offset,
// first, last) for every in-image stretch; im2col and col2im differ only in what they do
// with it. Input column of output column ow: ow stride + j dilation - padding.
template <class F> void for_each_stretch(const ConvShape& s, F&& visit) {
  for (std::size_t c = 0; c < s.group_in(); ++c)
    for (std::size_t i = 0; i < s.kernel.h; ++i)
      for (std::size_t j = 0; j < s.kernel.w; ++j) {
        const std::size_t row = ((c * s.kernel.h + i) * s.kernel.w + j) * s.pixels();
        const ColumnRange cols = inside_columns(s.width, s.out_width, s.stride.w, s.padding.w, j * s.dilation.w);
        for (std::size_t oh = 0; oh < s.out_height; ++oh) {
          const long h = long(oh * s.stride.h + i * s.dilation.h) - long(s.padding.h);
          const bool inside = h >= 0 && h < long(s.height);
          // x index of output column ow: base + ow stride (only read for ow in [first, last))
          const long base = (long(c * s.height) + h) * long(s.width) + long(j * s.dilation.w) - long(s.padding.w);
          visit(row + oh * s.out_width, base, inside ? cols : ColumnRange{0, 0});
        }
      }
}

// Stride 1 with the output as wide as the input (a "same" width, as 3x3 with padding 1):
// then p = oh Wo + ow in cols and the input index base + p step together, so all of a
// kernel tap's in-image rows are one contiguous run (one copy instead of one per row).
// Inside the run only the columns outside [first, last) are wrong: they wrapped around a
// row's end into the neighbouring row, and are fixed one by one.
bool rows_contiguous(const ConvShape& s) { return s.stride.h == 1 && s.stride.w == 1 && s.out_width == s.width; }

// A kernel tap's run for rows_contiguous: cols row `row`, the x index base + p of cols
// column p, and the run [begin, end) of columns p from the first inside pixel of the first
// in-image row to the last of the last; wrapped columns in between.
struct TapRun {
  std::size_t row, begin, end;
  long base;
  ColumnRange cols;
  std::size_t first_row, last_row;  // output rows whose input row is in the image
};

// Calls visit(TapRun) for every kernel tap (c,i,j) of one group, for rows_contiguous.
template <class F> void for_each_tap_run(const ConvShape& s, F&& visit) {
  const std::size_t Wo = s.out_width;
  for (std::size_t c = 0; c < s.group_in(); ++c)
    for (std::size_t i = 0; i < s.kernel.h; ++i)
      for (std::size_t j = 0; j < s.kernel.w; ++j) {
        TapRun t{((c * s.kernel.h + i) * s.kernel.w + j) * s.pixels(), 0, 0, 0, {}, 0, 0};
        t.cols = inside_columns(s.width, Wo, 1, s.padding.w, j * s.dilation.w);
        // input row of output row oh: oh + i dh - ph, inside when in [0, height)
        const long shift = long(i * s.dilation.h) - long(s.padding.h);
        t.first_row = std::size_t(std::clamp<long>(-shift, 0, long(s.out_height)));
        t.last_row = std::size_t(std::clamp<long>(long(s.height) - shift, long(t.first_row), long(s.out_height)));
        t.base = (long(c * s.height) + shift) * long(s.width) + long(j * s.dilation.w) - long(s.padding.w);
        if (t.first_row < t.last_row && t.cols.first < t.cols.last) {
          t.begin = t.first_row * Wo + t.cols.first;
          t.end = (t.last_row - 1) * Wo + t.cols.last;
        }
        visit(t);
      }
}

// Sets the wrapped columns of a tap's run to 0: each in-image row's columns outside
// [first, last).
template <class T> void zero_wrapped(const TapRun& t, std::size_t width, T* row) {
  for (std::size_t oh = t.first_row; oh < t.last_row; ++oh) {
    std::fill(row + oh * width, row + oh * width + t.cols.first, T(0));
    std::fill(row + oh * width + t.cols.last, row + (oh + 1) * width, T(0));
  }
}

// x (Cg,H,W) of one image's group -> cols (K,P): row (c,i,j), column (oh,ow) holds
// x[c, oh sh - ph + i dh, ow sw - pw + j dw], 0 in the padding.
template <class T> void im2col(const ConvShape& s, const T* x, T* cols) {
  const std::size_t stride = s.stride.w, out_width = s.out_width;
  if (rows_contiguous(s))
    return for_each_tap_run(s, [&](const TapRun& t) {
      T* out = cols + t.row;
      std::fill(out, out + t.begin, T(0));
      if (t.end > t.begin) std::copy_n(x + (t.base + long(t.begin)), t.end - t.begin, out + t.begin);
      std::fill(out + t.end, out + s.pixels(), T(0));
      zero_wrapped(t, out_width, out);
    });
  for_each_stretch(s, [&](std::size_t at, long base, ColumnRange r) {
    T* out = cols + at;
    std::fill(out, out + r.first, T(0));
    if (stride == 1)  // a contiguous stretch of the input row
      std::copy_n(x + base + long(r.first), r.last - r.first, out + r.first);
    else
      for (std::size_t ow = r.first; ow < r.last; ++ow) out[ow] = x[base + long(ow * stride)];
    std::fill(out + r.last, out + out_width, T(0));
  });
}

// The reverse of im2col: cols (K,P) added onto dx (Cg,H,W); padding values are dropped.
// For rows_contiguous, the wrapped columns of cols are set to 0 first (cols is scratch), so
// that each tap adds one contiguous run: dx gets the same sums, plus zeros.
template <class T> void col2im_add(const ConvShape& s, T* cols, T* dx) {
  const std::size_t stride = s.stride.w;
  if (rows_contiguous(s))
    return for_each_tap_run(s, [&](const TapRun& t) {
      if (t.end == t.begin) return;  // no input pixel under this tap
      zero_wrapped(t, s.out_width, cols + t.row);
      const T* __restrict from = cols + t.row + t.begin;
      T* __restrict to = dx + (t.base + long(t.begin));
      for (std::size_t p = 0; p < t.end - t.begin; ++p) to[p] += from[p];
    });
  for_each_stretch(s, [&](std::size_t at, long base, ColumnRange r) {
    if (stride == 1) {  // contiguous on both sides: a loop the compiler vectorises
      T* to = dx + base;
      const T* from = cols + at;
      for (std::size_t ow = r.first; ow < r.last; ++ow) to[ow] += from[ow];
    } else {
      for (std::size_t ow = r.first; ow < r.last; ++ow) dx[base + long(ow * stride)] += cols[at + ow];
    }
  });
}

// x (N,Cin,H,W), weight (Cout,Cg,kh,kw), bias (Cout) -> y (N,Cout,Ho,Wo)
template <class T> Array<T> conv2d_forward(const ConvShape& s, const T* x, const T* weight, const T* bias) {
  Array<T> y(Shape{s.batch, s.out_channels, s.out_height, s.out_width});
  std::vector<T> cols(s.columns_rows() * s.pixels());
  const std::size_t image_in = s.in_channels * s.height * s.width, image_out = s.out_channels * s.pixels();
  for (std::size_t n = 0; n < s.batch; ++n)
    for (std::size_t g = 0; g < s.groups; ++g) {
      T* y_ng = y.data() + n * image_out + g * s.group_out() * s.pixels();
      if (bias)  // y starts as the bias and the product is added to it
        for (std::size_t c = 0; c < s.group_out(); ++c)
          std::fill_n(y_ng + c * s.pixels(), s.pixels(), bias[g * s.group_out() + c]);
      im2col(s, x + n * image_in + g * s.group_in() * s.height * s.width, cols.data());
      // y_ng (Cg,P) = W_g (Cg,K) cols (K,P) + y_ng
      blas::gemm(blas::matrix(y_ng, s.group_out(), s.pixels()),
                 blas::matrix(weight + g * s.group_out() * s.columns_rows(), s.group_out(), s.columns_rows()),
                 blas::matrix(static_cast<const T*>(cols.data()), s.columns_rows(), s.pixels()), T(1), T(bias ? 1 : 0));
    }
  return y;
}

// dy (N,Cout,Ho,Wo) -> the gradients of x, weight and bias (inputs in that order)
template <class T> void conv2d_backward(const ConvShape& s, const std::vector<NodePtr<T>>& inputs, const T* dy) {
  const T* x = inputs[0]->data().data();
  const T* weight = inputs[1]->data().data();
  const GradTarget<T> dx = grad_target(*inputs[0]), dw = grad_target(*inputs[1]);
  const std::size_t image_in = s.in_channels * s.height * s.width, image_out = s.out_channels * s.pixels();
  const std::size_t K = s.columns_rows(), P = s.pixels(), Cg = s.group_out();
  if (dx && dx.beta == T(0)) std::fill_n(dx.data, s.batch * image_in, T(0));  // col2im adds
  std::vector<T> cols(K * P);
  for (std::size_t n = 0; n < s.batch; ++n)
    for (std::size_t g = 0; g < s.groups; ++g) {
      const auto dy_ng = blas::matrix(dy + n * image_out + g * Cg * P, Cg, P);
      const auto w_g = blas::matrix(weight + g * Cg * K, Cg, K);
      const std::size_t x_offset = n * image_in + g * s.group_in() * s.height * s.width;
      // in the forward pass this was y_ng = W_g cols: dW_g (Cg,K) += dy_ng (Cg,P) cols^T (P,K)
      if (dw) {
        im2col(s, x + x_offset, cols.data());
        const T beta = n == 0 ? dw.beta : T(1);
        blas::gemm(blas::matrix(dw.data + g * Cg * K, Cg, K), dy_ng,
                   blas::matrix(static_cast<const T*>(cols.data()), K, P).t(), T(1), beta);
      }
      // in the forward pass this was y_ng = W_g cols: dcols (K,P) = W_g^T (K,Cg) dy_ng (Cg,P)
      if (dx) {
        blas::gemm(blas::matrix(cols.data(), K, P), w_g.t(), dy_ng);
        col2im_add(s, cols.data(), dx.data + x_offset);
      }
    }
  // in the forward pass this was y += b per channel: db (Cout) = sums of dy over N and pixels
  if (inputs.size() > 2)
    if (const GradTarget<T> db = grad_target(*inputs[2]))
      for (std::size_t c = 0; c < s.out_channels; ++c) {
        T total = T(0);
        for (std::size_t n = 0; n < s.batch; ++n) {
          const T* plane = dy + n * image_out + c * P;
          total += kernels::sum_of<T>(P, [plane](std::size_t i) { return plane[i]; });
        }
        detail::write_grad(db, c, total);
      }
}

// conv1d's checks in its own terms: conv2d's would name the height-1 view instead.
void check_conv1d(const Shape& xs, const Shape& ws, std::size_t stride, std::size_t padding, std::size_t dilation,
                  std::size_t groups) {
  const char* op = "conv1d";
  if (xs.size() != 3) detail::fail(op, "input must be (N,Cin,L), got " + shape_str(xs));
  if (ws.size() != 3) detail::fail(op, "weight must be (Cout,Cin/groups,k), got " + shape_str(ws));
  check_channels(op, xs, ws, groups);
  if (stride == 0 || dilation == 0 || ws[2] == 0)
    detail::fail(op, "kernel, stride and dilation must be positive, got weight " + shape_str(ws) + ", stride " +
                         std::to_string(stride) + ", dilation " + std::to_string(dilation));
  if (conv_out_size(xs[2], ws[2], stride, padding, dilation) == 0)
    detail::fail(op, "kernel " + std::to_string(ws[2]) + " with dilation " + std::to_string(dilation) +
                         " is larger than the padded input: input " + shape_str(xs) + ", padding " +
                         std::to_string(padding));
}

}  // namespace

// x (N,Cin,H,W), weight (Cout,Cin/groups,kh,kw), bias (Cout) -> (N,Cout,Ho,Wo)
template <class T>
Tensor<T> conv2d(const Tensor<T>& x, const Tensor<T>& weight, const std::optional<Tensor<scalar_t<T>>>& bias,
                 Size2 stride, Size2 padding, Size2 dilation, std::size_t groups) {
  detail::check_defined("conv2d", x, weight, bias);
  const ConvShape s = conv_shape(x.shape(), weight.shape(), stride, padding, dilation, groups);
  if (bias && bias->shape() != Shape{s.out_channels})
    detail::fail("conv2d", "bias " + shape_str(bias->shape()) + " does not match weight " + shape_str(weight.shape()));
  Array<T> y = conv2d_forward(s, x.data().data(), weight.data().data(), bias ? bias->data().data() : nullptr);
  std::vector<Tensor<T>> inputs{x, weight};
  if (bias) inputs.push_back(*bias);
  return make_result<T>("conv2d", std::move(y), inputs,
                        [s](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& g) {
                          conv2d_backward(s, inputs, g.data());
                        });
}

// x (N,Cin,L), weight (Cout,Cin/groups,k), bias (Cout) -> (N,Cout,Lo)
template <class T>
Tensor<T> conv1d(const Tensor<T>& x, const Tensor<T>& weight, const std::optional<Tensor<scalar_t<T>>>& bias,
                 std::size_t stride, std::size_t padding, std::size_t dilation, std::size_t groups) {
  detail::check_defined("conv1d", x, weight, bias);
  check_conv1d(x.shape(), weight.shape(), stride, padding, dilation, groups);
  if (bias && bias->shape() != Shape{weight.shape()[0]})
    detail::fail("conv1d", "bias " + shape_str(bias->shape()) + " does not match weight " + shape_str(weight.shape()));
  // x as (N,Cin,1,L) and weight as (Cout,Cg,1,k): a height of 1 that nothing strides, pads
  // or dilates. The views' gradients flow back through unsqueeze and squeeze.
  const Tensor<T> y = conv2d(unsqueeze(x, 2), unsqueeze(weight, 2), bias, Size2(1, stride), Size2(0, padding),
                             Size2(1, dilation), groups);
  return squeeze(y, 2);
}

#define XTGRAD_INSTANTIATE_CONV(T)                                                                                    \
  template Tensor<T> conv2d(const Tensor<T>&, const Tensor<T>&, const std::optional<Tensor<T>>&, Size2, Size2, Size2, \
                            std::size_t);                                                                             \
  template Tensor<T> conv1d(const Tensor<T>&, const Tensor<T>&, const std::optional<Tensor<T>>&, std::size_t,         \
                            std::size_t, std::size_t, std::size_t);
XTGRAD_INSTANTIATE_CONV(float)
XTGRAD_INSTANTIATE_CONV(double)

}  // namespace xtgrad
