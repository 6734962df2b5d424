// linear: x (..., in), weight (out, in), bias (out) -> (..., out) = x weight^T + bias.
// x is seen as a (rows, in) matrix; one gemm forward, two in the backward, all with
// transpose flags instead of transposed copies:
//   y  (rows,out) = x (rows,in) W^T          gemm(no, trans)
//   dx (rows,in)  = dy (rows,out) W (out,in)  gemm(no, no)
//   dW (out,in)   = dy^T (out,rows) x         gemm(trans, no)
//   db (out)      = column sums of dy
#include "blas.hpp"
#include "parallel.hpp"
#include "detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {

namespace detail {
template <class T>
void add_column_sums(const T* g, std::size_t rows, std::size_t cols, Node<T>& node) {
  bool fresh = false;
  T* sum = grad_buffer(node, fresh);
  if (fresh) std::fill(sum, sum + cols, T(0));
  // In bands of 256 rows, spread over the threads and added in band order: the same sums
  // in the same order at any thread count.
  const std::size_t bands = std::max<std::size_t>(1, (rows + 255) / 256);
  std::vector<std::vector<T>> partial(bands);
  parallel::for_each(bands, [&](std::size_t band) {
    std::vector<T> sums(cols, T(0));  // allocated by the thread that fills it
    for (std::size_t r = band * 256; r < std::min(rows, (band + 1) * 256); ++r)
      for (std::size_t j = 0; j < cols; ++j) sums[j] += g[r * cols + j];
    partial[band] = std::move(sums);
  });
  for (const auto& sums : partial)
    for (std::size_t j = 0; j < cols; ++j) sum[j] += sums[j];
}
template void add_column_sums(const float*, std::size_t, std::size_t, Node<float>&);
template void add_column_sums(const double*, std::size_t, std::size_t, Node<double>&);
}  // namespace detail

template <class T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const std::optional<Tensor<T>>& bias) {
  detail::check_defined("linear", x, weight, bias);
  const Shape xs = x.shape(), ws = weight.shape();
  if (ws.size() != 2 || xs.empty() || xs.back() != ws[1])
    detail::fail("linear", "input " + shape_str(xs) + " does not match weight " + shape_str(ws) +
                               " (expected input (..., " + (ws.size() == 2 ? std::to_string(ws[1]) : "in") + "))");
  if (bias && bias->shape() != Shape{ws[0]})
    detail::fail("linear", "bias " + shape_str(bias->shape()) + " does not match weight " + shape_str(ws));
  const std::size_t in = ws[1], out = ws[0], rows = x.numel() / in;
  Shape out_shape = xs;
  out_shape.back() = out;
  Array<T> y(out_shape);
  if (bias) {
    // y starts as the bias in every row and the product is added to it (beta = 1): one
    // pass over y fewer than a product into zeros (BLAS clears C first for beta = 0).
    const T* b = bias->data().data();
    parallel::for_ranges(rows, 256, [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r) std::copy_n(b, out, y.data() + r * out);
    });
  }
  blas::gemm<T>(false, true, rows, out, in, T(1), x.data().data(), in, weight.data().data(), in, T(bias ? 1 : 0),
                y.data(), out);
  std::vector<Tensor<T>> inputs{x, weight};
  if (bias) inputs.push_back(*bias);
  return make_result<T>(
      "linear", std::move(y), inputs,
      [rows, in, out](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& g) {
        const T* px = inputs[0]->data.data();
        const T* pw = inputs[1]->data.data();
        bool fresh = false;
        if (inputs[0]->requires_grad) {
          T* gx = detail::grad_buffer(*inputs[0], fresh);
          blas::gemm<T>(false, false, rows, in, out, T(1), g.data(), out, pw, in, fresh ? T(0) : T(1), gx, in);
        }
        if (inputs[1]->requires_grad) {
          T* gw = detail::grad_buffer(*inputs[1], fresh);
          blas::gemm<T>(true, false, out, in, rows, T(1), g.data(), out, px, in, fresh ? T(0) : T(1), gw, in);
        }
        if (inputs.size() > 2 && inputs[2]->requires_grad) detail::add_column_sums(g.data(), rows, out, *inputs[2]);
      });
}

template Tensor<float> linear(const Tensor<float>&, const Tensor<float>&, const std::optional<Tensor<float>>&);
template Tensor<double> linear(const Tensor<double>&, const Tensor<double>&, const std::optional<Tensor<double>>&);

}  // namespace xtgrad
