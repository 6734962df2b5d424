// Fused multi-head scaled dot-product attention, written as llm.c writes it: each op is a
// named forward and a named backward, and each gradient in a backward names the line of
// the forward pass it differentiates. The model width D of q, k and v is split into H
// column blocks of dh = D / H; BLAS reads each head's block in place (a Matrix with row
// stride D), so no head split or merge is ever copied.
//   S = scale Q K^T (+ -inf where blocked), P = softmax(S) (a row with nothing allowed: 0),
//   Pd = P * dropout scale, O = Pd V
// Backward: dV = Pd^T dO, dPd = dO V^T, dP = dPd * dropout scale,
//   dS = P * (dP - rowsum(dP * P)), dQ = scale dS K, dK = scale dS^T Q.
// Two pairings: `paired` (batch element b of q with b of k and v, as in
// MultiHeadCrossAttention::forward) and `all pairs` (every b of q with every b of k and v,
// forward_all_pairs, in ops_attention_all_pairs.cpp), where the values come already
// multiplied by the output projection (head_values_projected, here).
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "attention_detail.hpp"
#include "blas.hpp"
#include "detail.hpp"
#include "kernels.hpp"
#include "parallel.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

using blas::matrix;
using namespace attention_detail;

// ---- paired ---------------------------------------------------------------------------

// q (B,Lq,D), k (B,Lk,D), allowed (B,Lq,Lk) -> weights (B,H,Lq,Lk):
// P_bh = softmax(scale Q_bh K_bh^T, -inf where not allowed or, when causal, in the future)
template <class T>
void paired_weights_forward(const AttentionShape& a, const T* q, const T* k, const Mask* allowed, bool causal,
                            T* weights) {
  const std::size_t Lq = a.lq, Lk = a.lk;
  for_each_head(a.bq, a.heads, [&](std::size_t b, std::size_t h) {
    T* s = weights + (b * a.heads + h) * Lq * Lk;
    const std::vector<T> kt = transposed(head_block(k, Lk, a, b, h));  // K_bh^T (dh,Lk), while K_bh is in cache
    blas::gemm(matrix(s, Lq, Lk), head_block(q, Lq, a, b, h), matrix(kt.data(), a.dh, Lk), T(a.scale));
    if (allowed) block_disallowed(s, allowed->data() + b * Lq * Lk, Lq * Lk);
    if (causal) block_future(s, Lq, Lk);
    kernels::softmax_rows(s, Lq, Lk);
  });
}

// Pd (B,H,Lq,Lk), v (B,Lk,D) -> out (B,Lq,D): O_bh (Lq,dh) = Pd_bh (Lq,Lk) V_bh (Lk,dh)
template <class T> void paired_mix_forward(const AttentionShape& a, const T* pd, const T* v, T* out) {
  for_each_head(a.bq, a.heads, [&](std::size_t b, std::size_t h) {
    const T* pd_bh = pd + (b * a.heads + h) * a.lq * a.lk;
    blas::gemm(head_block(out, a.lq, a, b, h), matrix(pd_bh, a.lq, a.lk), head_block(v, a.lk, a, b, h));
  });
}

// dO (B,Lq,D) -> the gradients of q, k and v, per (b, h) while its blocks are in cache.
// When q, k and v are one tensor, a task writes its block three times in the order the
// targets were fetched, so only the first write of a fresh gradient overwrites (beta 0).
template <class T>
void paired_backward(const AttentionShape& a, const Saved<T>& saved, const std::vector<NodePtr<T>>& in, const T* dout) {
  const T* q = in[0]->data().data();
  const T* k = in[1]->data().data();
  const T* v = in[2]->data().data();
  const GradTarget<T> dq = grad_target(*in[0]), dk = grad_target(*in[1]), dv = grad_target(*in[2]);
  const std::size_t Lq = a.lq, Lk = a.lk;
  for_each_head(a.bq, a.heads, [&](std::size_t b, std::size_t h) {
    const std::size_t at = (b * a.heads + h) * Lq * Lk;  // this head's (Lq,Lk) block of the weights
    const auto dout_bh = head_block(dout, Lq, a, b, h);
    // in the forward pass this was O = Pd V: dPd (Lq,Lk) = dO_bh (Lq,dh) V_bh^T (dh,Lk)
    std::vector<T> ds(Lq * Lk);
    const std::vector<T> vt = transposed(head_block(v, Lk, a, b, h));
    blas::gemm(matrix(ds.data(), Lq, Lk), dout_bh, matrix(vt.data(), a.dh, Lk));
    // in the forward pass this was Pd = softmax(S) * dropout: dS over dPd, in place
    if (saved.dropout) multiply_rows(ds.data(), saved.dropout_scale.data() + at, Lq, Lk, Lk);
    kernels::softmax_backward_rows(saved.weights->data() + at, ds.data(), Lq, Lk, Lk, T(a.scale));
    const auto ds_matrix = matrix<const T>(ds.data(), Lq, Lk);
    // in the forward pass this was S = scale Q K^T (the scale is in dS): dQ = dS K, dK = dS^T Q
    if (dq) blas::gemm(head_block(dq.data, Lq, a, b, h), ds_matrix, head_block(k, Lk, a, b, h), T(1), dq.beta);
    if (dk) blas::gemm(head_block(dk.data, Lk, a, b, h), ds_matrix.t(), head_block(q, Lq, a, b, h), T(1), dk.beta);
    // in the forward pass this was O = Pd V: dV (Lk,dh) = Pd^T (Lk,Lq) dO_bh (Lq,dh)
    if (dv)
      blas::gemm(head_block(dv.data, Lk, a, b, h), matrix(saved.mixed() + at, Lq, Lk).t(), dout_bh, T(1), dv.beta);
  });
}

// ---- values through the output projection ---------------------------------------------

// v (B,L,D), out_weight (E,D) -> vw (H, B*L, E): VW_h = V_h (B*L,dh) W_h^T (dh,E), W_h the
// columns h*dh.. of out_weight. W^T is copied so that the product contracts over dh with
// B as stored (see transposed()).
template <class T>
void head_values_forward(std::size_t heads, std::size_t values, std::size_t D, std::size_t E, const T* v, const T* w,
                         T* vw) {
  const std::size_t dh = D / heads;
  const std::vector<T> wt = transposed(matrix(w, E, D));  // (D, E)
  parallel::for_each(heads, [&](std::size_t h) {
    blas::gemm(matrix(vw + h * values * E, values, E), matrix(v + h * dh, values, dh, D),
               matrix(wt.data() + h * dh * E, dh, E));
  });
}

// dVW (H, B*L, E) -> the gradients of v and out_weight.
template <class T>
void head_values_backward(std::size_t heads, std::size_t values, std::size_t D, std::size_t E,
                          const std::vector<NodePtr<T>>& in, const T* dvw) {
  const std::size_t dh = D / heads;
  const T* v = in[0]->data().data();
  const T* w = in[1]->data().data();
  // in the forward pass this was VW_h = V_h W_h^T: dV_h = dVW_h W_h, dW_h = dVW_h^T V_h
  if (const GradTarget<T> dv = grad_target(*in[0]))
    parallel::for_each(heads, [&](std::size_t h) {  // dV_h (B*L,dh) = dVW_h (B*L,E) W_h (E,dh)
      blas::gemm(matrix(dv.data + h * dh, values, dh, D), matrix(dvw + h * values * E, values, E),
                 matrix(w + h * dh, E, dh, D), T(1), dv.beta);
    });
  if (const GradTarget<T> dw = grad_target(*in[1]))
    parallel::for_each(heads, [&](std::size_t h) {  // dW_h (E,dh) = dVW_h^T (E,B*L) V_h (B*L,dh)
      blas::gemm(matrix(dw.data + h * dh, E, dh, D), matrix(dvw + h * values * E, values, E).t(),
                 matrix(v + h * dh, values, dh, D), T(1), dw.beta);
    });
}

}  // namespace

// q (B,Lq,D), k, v (B,Lk,D), allowed (B,Lq,Lk) -> out (B,Lq,D), weights (B,H,Lq,Lk)
template <class T>
FusedAttention<T> attention_heads(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, std::size_t heads,
                                  const std::optional<Mask>& allowed, double dropout_p, Generator* gen, bool causal) {
  const char* op = "attention_heads";
  detail::check_defined(op, q, k, v);
  const AttentionShape a = check_shapes(op, q.shape(), k.shape(), v.shape(), heads, false);
  if (allowed && detail::shape_of(*allowed) != Shape{a.bq, a.lq, a.lk})
    detail::fail(op,
                 "mask " + shape_str(allowed->shape()) + " is not (B,Lq,Lk) = " + shape_str(Shape{a.bq, a.lq, a.lk}));
  check_probability(op, "dropout", dropout_p);

  auto weights = std::make_shared<Array<T>>(Shape{a.bq, a.heads, a.lq, a.lk});
  paired_weights_forward(a, q.data().data(), k.data().data(), allowed ? &*allowed : nullptr, causal, weights->data());
  Saved<T> saved = save_weights<T>(weights, dropout_p, gen);
  Array<T> out(Shape{a.bq, a.lq, a.d});
  paired_mix_forward(a, saved.mixed(), v.data().data(), out.data());
  Tensor<T> output =
      make_result<T>(op, std::move(out), {q, k, v},
                     [a, saved = std::move(saved)](const std::vector<NodePtr<T>>& in, const Array<T>&,
                                                   const Array<T>& g) { paired_backward(a, saved, in, g.data()); });
  return {output, weights};
}

// v (B,L,D), out_weight (E,D) -> (H,B,L,E)
template <class T> Tensor<T> head_values_projected(const Tensor<T>& v, const Tensor<T>& out_weight, std::size_t heads) {
  const char* op = "head_values_projected";
  detail::check_defined(op, v, out_weight);
  const Shape vs = v.shape(), ws = out_weight.shape();
  if (vs.size() != 3) detail::fail(op, "v must be 3-D (batch, length, width), got " + shape_str(vs));
  if (ws.size() != 2 || ws[1] != vs[2])
    detail::fail(op, "out_weight " + shape_str(ws) + " is not (E," + std::to_string(vs[2]) + ") for width " +
                         std::to_string(vs[2]));
  if (heads == 0 || vs[2] % heads != 0)
    detail::fail(op, std::to_string(heads) + " heads do not divide the width " + std::to_string(vs[2]));
  const std::size_t values = vs[0] * vs[1], D = vs[2], E = ws[0];
  Array<T> vw(Shape{heads, vs[0], vs[1], E});
  head_values_forward(heads, values, D, E, v.data().data(), out_weight.data().data(), vw.data());
  return make_result<T>(op, std::move(vw), {v, out_weight},
                        [heads, values, D, E](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          head_values_backward(heads, values, D, E, in, g.data());
                        });
}

#define INSTANTIATE(T)                                                                                          \
  template FusedAttention<T> attention_heads(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, std::size_t, \
                                             const std::optional<Mask>&, double, Generator*, bool);             \
  template Tensor<T> head_values_projected(const Tensor<T>&, const Tensor<T>&, std::size_t);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
