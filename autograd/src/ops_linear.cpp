// linear: x (..., in), weight (out, in), bias (out) -> (..., out) = x weight^T + bias.
// x is seen as a (rows, in) matrix; one gemm forward, two in the backward, the transposes
// read in place (Matrix::t(), BLAS's transpose flag) instead of copied:
//   y  (rows,out) = x (rows,in) W^T
//   dx (rows,in)  = dy (rows,out) W (out,in)
//   dW (out,in)   = dy^T (out,rows) x
//   db (out)      = column sums of dy
#include "blas.hpp"
#include "detail.hpp"
#include "parallel.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// x (rows,in), weight (out,in), dy (rows,out) -> the gradients of x, weight and bias
template <class T>
void linear_backward(std::size_t rows, std::size_t in, std::size_t out, const std::vector<NodePtr<T>>& inputs,
                     const T* dy) {
  const auto x = blas::matrix(inputs[0]->data().data(), rows, in);
  const auto weight = blas::matrix(inputs[1]->data().data(), out, in);
  const auto dy_matrix = blas::matrix(dy, rows, out);
  // in the forward pass this was y = x W^T: dx (rows,in) = dy (rows,out) W (out,in)
  if (const GradTarget<T> dx = grad_target(*inputs[0]))
    blas::gemm(blas::matrix(dx.data, rows, in), dy_matrix, weight, T(1), dx.beta);
  // in the forward pass this was y = x W^T: dW (out,in) = dy^T (out,rows) x (rows,in)
  if (const GradTarget<T> dw = grad_target(*inputs[1]))
    blas::gemm(blas::matrix(dw.data, out, in), dy_matrix.t(), x, T(1), dw.beta);
  // in the forward pass this was y += b (every row): db (out) = column sums of dy
  if (inputs.size() > 2) detail::write_column_sums(dy, rows, out, grad_target(*inputs[2]));
}

}  // namespace

// x (..., in), weight (out, in), bias (out) -> (..., out)
template <class T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const std::optional<Tensor<scalar_t<T>>>& bias) {
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
  // y (rows,out) = x (rows,in) W^T (in,out) + y
  blas::gemm(blas::matrix(y.data(), rows, out), blas::matrix(x.data().data(), rows, in),
             blas::matrix(weight.data().data(), out, in).t(), T(1), T(bias ? 1 : 0));
  std::vector<Tensor<T>> inputs{x, weight};
  if (bias) inputs.push_back(*bias);
  return make_result<T>("linear", std::move(y), inputs,
                        [rows, in, out](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& g) {
                          linear_backward(rows, in, out, inputs, g.data());
                        });
}

template Tensor<float> linear(const Tensor<float>&, const Tensor<float>&, const std::optional<Tensor<float>>&);
template Tensor<double> linear(const Tensor<double>&, const Tensor<double>&, const std::optional<Tensor<double>>&);

}  // namespace xtgrad
