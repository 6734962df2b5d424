// matmul with PyTorch semantics, one BLAS gemm per batch matrix.
//   a (..., n, k), b (..., k, m) -> (..., n, m); batch axes broadcast.
//   a (k) is treated as (1, k) and b (k) as (k, 1); the added axis is dropped again.
// Backward: dA = dC B^T and dB = A^T dC, through gemm's transpose flags, accumulated
// (beta = 1) straight into the gradient buffers.
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
      detail::fail("matmul", "both arguments need at least one dimension, got " + shape_str(a) +
                                 " x " + shape_str(b));
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
      detail::fail("matmul", "batch dimensions cannot be broadcast: " + shape_str(a) + " x " +
                                 shape_str(b));
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
  static std::size_t flat_index(const std::vector<std::size_t>& idx, const Shape& batch,
                                const Shape& own) {
    std::size_t flat = 0;
    const std::size_t lead = batch.size() - own.size();
    for (std::size_t d = 0; d < own.size(); ++d) flat = flat * own[d] + (own[d] == 1 ? 0 : idx[lead + d]);
    return flat;
  }
};

// Matrices no product touched (only with an empty batch) get a zero gradient.
template <class T>
void zero_unwritten(T* grad, const std::vector<bool>& written, std::size_t matrix_size) {
  for (std::size_t i = 0; i < written.size(); ++i)
    if (!written[i]) std::fill(grad + i * matrix_size, grad + (i + 1) * matrix_size, T(0));
}

}  // namespace

template <class T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b) {
  detail::check_defined("matmul", a, b);
  const MatmulPlan plan(a.shape(), b.shape());
  const std::size_t n = plan.n, k = plan.k, m = plan.m;
  Array<T> out(plan.out_shape);
  const T* pa = a.data().data();
  const T* pb = b.data().data();
  for (std::size_t t = 0; t < plan.a_index.size(); ++t)
    blas::gemm<T>(false, false, n, m, k, T(1), pa + plan.a_index[t] * n * k, k,
                  pb + plan.b_index[t] * k * m, m, T(0), out.data() + t * n * m, m);

  return make_result<T>(
      "matmul", std::move(out), {a, b},
      [plan](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        const std::size_t n = plan.n, k = plan.k, m = plan.m;
        const T* pa = in[0]->data.data();
        const T* pb = in[1]->data.data();
        const T* pg = g.data();
        // A matrix of a (or b) shared by several output matrices gets the sum of their
        // gradients: the first write overwrites a fresh buffer (beta 0), the rest add.
        if (in[0]->requires_grad) {
          bool fresh;
          T* ga = detail::grad_buffer(*in[0], fresh);
          std::vector<bool> written(plan.a_count, !fresh);
          for (std::size_t t = 0; t < plan.a_index.size(); ++t) {  // dA (n,k) = dC (n,m) B^T
            const std::size_t i = plan.a_index[t];
            blas::gemm<T>(false, true, n, k, m, T(1), pg + t * n * m, m, pb + plan.b_index[t] * k * m, m,
                          written[i] ? T(1) : T(0), ga + i * n * k, k);
            written[i] = true;
          }
          zero_unwritten(ga, written, n * k);
        }
        if (in[1]->requires_grad) {
          bool fresh;
          T* gb = detail::grad_buffer(*in[1], fresh);
          std::vector<bool> written(plan.b_count, !fresh);
          for (std::size_t t = 0; t < plan.b_index.size(); ++t) {  // dB (k,m) = A^T (k,n) dC (n,m)
            const std::size_t i = plan.b_index[t];
            blas::gemm<T>(true, false, k, m, n, T(1), pa + plan.a_index[t] * n * k, k, pg + t * n * m, m,
                          written[i] ? T(1) : T(0), gb + i * k * m, m);
            written[i] = true;
          }
          zero_unwritten(gb, written, k * m);
        }
      });
}

template Tensor<float> matmul(const Tensor<float>&, const Tensor<float>&);
template Tensor<double> matmul(const Tensor<double>&, const Tensor<double>&);

}  // namespace xtgrad
