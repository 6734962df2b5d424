// matmul with PyTorch semantics, one BLAS gemm per batch matrix.
//   a (..., n, k), b (..., k, m) -> (..., n, m); batch axes broadcast.
//   a (k) is treated as (1, k) and b (k) as (k, 1); the added axis is dropped again.
// Backward: dA = dC B^T and dB = A^T dC, with B^T and A^T read in place (Matrix::t()),
// written straight into the gradient buffers by grad_target's rule.
#include <algorithm>

#include "blas.hpp"
#include "detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// The plan of one matmul: matrix sizes and, for each output matrix, which matrix of a
// and of b it multiplies (0 for a broadcast batch axis).
struct MatmulPlan {
  std::size_t n = 1, k = 1, m = 1;
  Shape out_shape;
  std::vector<std::size_t> a_index, b_index;  // per output matrix
  std::size_t a_count = 1, b_count = 1;       // matrices stored in a and in b

  MatmulPlan(const Shape& a, const Shape& b) {
    if (a.empty() || b.empty())
      detail::fail("matmul", "both arguments need at least one dimension, got " + shape_str(a) + " x " + shape_str(b));
    Shape a2 = a, b2 = b;
    if (a.size() == 1) a2.insert(a2.begin(), 1);
    if (b.size() == 1) b2.push_back(1);
    n = a2[a2.size() - 2];
    k = a2.back();
    m = b2.back();
    if (b2[b2.size() - 2] != k)
      detail::fail("matmul", "inner dimensions differ: " + shape_str(a) + " x " + shape_str(b));
    const Shape a_batch(a2.begin(), a2.end() - 2), b_batch(b2.begin(), b2.end() - 2);
    Shape batch;
    try {
      batch = detail::broadcast_shapes(a_batch, b_batch, "matmul");
    } catch (const std::invalid_argument&) {
      detail::fail("matmul", "batch dimensions cannot be broadcast: " + shape_str(a) + " x " + shape_str(b));
    }
    a_count = detail::product(a_batch);
    b_count = detail::product(b_batch);
    // Walk the output batch in row-major order, tracking the matching a and b matrices.
    const std::size_t total = detail::product(batch);
    a_index.resize(total);
    b_index.resize(total);
    std::vector<std::size_t> idx(batch.size(), 0);
    for (std::size_t t = 0; t < total; ++t) {
      a_index[t] = flat_index(idx, batch, a_batch);
      b_index[t] = flat_index(idx, batch, b_batch);
      for (std::size_t d = batch.size(); d-- > 0;) {
        if (++idx[d] < batch[d]) break;
        idx[d] = 0;
      }
    }
    out_shape = batch;
    if (a.size() > 1) out_shape.push_back(n);
    if (b.size() > 1) out_shape.push_back(m);
  }

  // Index into a (right-aligned, possibly broadcast) batch shape of the output index idx.
  static std::size_t flat_index(const std::vector<std::size_t>& idx, const Shape& batch, const Shape& own) {
    std::size_t flat = 0;
    const std::size_t lead = batch.size() - own.size();
    for (std::size_t d = 0; d < own.size(); ++d) flat = flat * own[d] + (own[d] == 1 ? 0 : idx[lead + d]);
    return flat;
  }
};

// Matrices no product touched (only with an empty batch) get a zero gradient.
template <class T> void zero_unwritten(T* grad, const std::vector<bool>& written, std::size_t matrix_size) {
  for (std::size_t i = 0; i < written.size(); ++i)
    if (!written[i]) std::fill(grad + i * matrix_size, grad + (i + 1) * matrix_size, T(0));
}

// dA (n,k) = dC (n,m) B^T and dB (k,m) = A^T dC (n,m), per output matrix t. A matrix of a
// (or b) that several output matrices share (a broadcast batch axis) gets the sum of their
// gradients: in a fresh gradient (beta 0) its first product overwrites, every other adds.
template <class T> void matmul_backward(const MatmulPlan& plan, Node<T>& a, Node<T>& b, const T* dc) {
  const std::size_t n = plan.n, k = plan.k, m = plan.m, outputs = plan.a_index.size();
  const auto dc_t = [&](std::size_t t) { return blas::matrix(dc + t * n * m, n, m); };
  const auto a_t = [&](std::size_t t) { return blas::matrix(a.data().data() + plan.a_index[t] * n * k, n, k); };
  const auto b_t = [&](std::size_t t) { return blas::matrix(b.data().data() + plan.b_index[t] * k * m, k, m); };
  if (const GradTarget<T> da = grad_target(a)) {
    std::vector<bool> written(plan.a_count, da.beta != T(0));
    for (std::size_t t = 0; t < outputs; ++t) {  // in the forward pass this was C_t = A_i B_t
      const std::size_t i = plan.a_index[t];
      blas::gemm(blas::matrix(da.data + i * n * k, n, k), dc_t(t), b_t(t).t(), T(1), written[i] ? T(1) : T(0));
      written[i] = true;
    }
    zero_unwritten(da.data, written, n * k);
  }
  if (const GradTarget<T> db = grad_target(b)) {
    std::vector<bool> written(plan.b_count, db.beta != T(0));
    for (std::size_t t = 0; t < outputs; ++t) {  // in the forward pass this was C_t = A_t B_i
      const std::size_t i = plan.b_index[t];
      blas::gemm(blas::matrix(db.data + i * k * m, k, m), a_t(t).t(), dc_t(t), T(1), written[i] ? T(1) : T(0));
      written[i] = true;
    }
    zero_unwritten(db.data, written, k * m);
  }
}

}  // namespace

// a (..., n, k), b (..., k, m) -> (..., n, m): C_t (n,m) = A (n,k) B (k,m) per output matrix t
template <class T> Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b) {
  detail::check_defined("matmul", a, b);
  const MatmulPlan plan(a.shape(), b.shape());
  const std::size_t n = plan.n, k = plan.k, m = plan.m;
  Array<T> out(plan.out_shape);
  for (std::size_t t = 0; t < plan.a_index.size(); ++t)
    blas::gemm(blas::matrix(out.data() + t * n * m, n, m),
               blas::matrix(a.data().data() + plan.a_index[t] * n * k, n, k),
               blas::matrix(b.data().data() + plan.b_index[t] * k * m, k, m));
  return make_result<T>("matmul", std::move(out), {a, b},
                        [plan](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          matmul_backward(plan, *in[0], *in[1], g.data());
                        });
}

template Tensor<float> matmul(const Tensor<float>&, const Tensor<float>&);
template Tensor<double> matmul(const Tensor<double>&, const Tensor<double>&);

}  // namespace xtgrad
