// Fused attention of every query batch element against every key batch element, with
// the output projection folded into the values (ops_attention.cpp's head_values_projected
// makes them), and the same attention finished by a residual, a layer norm and a mean
// over the query positions (attention_all_pairs_pooled). The formulas are those of
// ops_attention.cpp; each op is a named forward and backward, and each gradient names the
// line of the forward pass it differentiates.
#include <memory>
#include <utility>
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

// ---- all pairs ------------------------------------------------------------------------
// Per head, the scores of all pairs are one product (Bq*Lq, dh) x (dh, Bk*Lk): rows over
// (qb, t), columns over (kb, j). The values arrive projected (head_values_projected):
// VW_h = V_h W_h^T (Bk*Lk, E), so a pair's output is sum_h P_h VW_h + bias, and every
// product is E wide, never dh; the pairs' unprojected outputs never exist.

// q (Bq,Lq,D), k (Bk,Lk,D), key_allowed (Bk,Lk) -> weights (H, Bq*Lq, Bk*Lk):
// S_h = scale Q_h K_h^T, each segment of Lk (one query row against one key element) a softmax row
template <class T>
void all_pairs_weights_forward(const AttentionShape& a, const T* q, const T* k, const Mask* key_allowed, T* weights) {
  const std::size_t rows = a.bq * a.lq, cols = a.bk * a.lk;
  const std::vector<T> kt = transposed(matrix(k, cols, a.d));  // K^T (D, cols)
  parallel::for_each(a.heads, [&](std::size_t h) {
    T* s = weights + h * rows * cols;
    blas::gemm(matrix(s, rows, cols), matrix(q + h * a.dh, rows, a.dh, a.d),
               matrix(kt.data() + h * a.dh * cols, a.dh, cols), T(a.scale));
    if (key_allowed)
      for (std::size_t r = 0; r < rows; ++r) block_disallowed(s + r * cols, key_allowed->data(), cols);
    kernels::softmax_rows(s, rows * a.bk, a.lk);
  });
}

// Key element kb's outputs for every query row, (rows, E), rows over (qb, t):
// block = bias + sum_h Pd_h[:, kb] (rows,Lk) VW_h[kb] (Lk,E), the heads added in order.
template <class T>
void mix_key_block(const AttentionShape& a, std::size_t E, const T* pd, const T* vw, const T* bias, std::size_t kb,
                   T* block) {
  const std::size_t rows = a.bq * a.lq, cols = a.bk * a.lk;
  for (std::size_t r = 0; r < rows; ++r) {  // the block starts as the bias; the heads add to it
    if (bias)
      std::copy_n(bias, E, block + r * E);
    else
      std::fill_n(block + r * E, E, T(0));
  }
  for (std::size_t h = 0; h < a.heads; ++h)
    blas::gemm(matrix(block, rows, E), matrix(pd + h * rows * cols + kb * a.lk, rows, a.lk, cols),
               matrix(vw + (h * cols + kb * a.lk) * E, a.lk, E), T(1), T(1));
}

// Pd (H, rows, cols), vw (H, Bk*Lk, E), bias (E) -> out (Bq,Bk,Lq,E):
// out[qb, kb] = sum_h Pd_h[qb, kb] VW_h[kb] + bias. Each thread takes a band of key
// elements kb; each kb's block (rows, E) is made in cache, then scattered into out.
template <class T>
void all_pairs_mix_forward(const AttentionShape& a, std::size_t E, const T* pd, const T* vw, const T* bias, T* out) {
  const std::size_t rows = a.bq * a.lq;
  parallel::for_ranges(a.bk, 1, [&](std::size_t kb_begin, std::size_t kb_end) {
    std::vector<T> block(rows * E);
    for (std::size_t kb = kb_begin; kb < kb_end; ++kb) {
      mix_key_block(a, E, pd, vw, bias, kb, block.data());
      for (std::size_t qb = 0; qb < a.bq; ++qb)
        std::copy_n(block.data() + qb * a.lq * E, a.lq * E, out + (qb * a.bk + kb) * a.lq * E);
    }
  });
}

// For one key element kb and its gathered output gradient dO_kb (rows, E): dS_h[:, kb]
// into ds (H, rows, cols) and dVW_h[kb] into dvw, for every head.
template <class T>
void all_pairs_key_backward(const AttentionShape& a, std::size_t E, const Saved<T>& saved, const T* vw, std::size_t kb,
                            const T* dout_kb, T* ds, GradTarget<T> dvw, std::vector<T>& vwt) {
  const std::size_t rows = a.bq * a.lq, cols = a.bk * a.lk, Lk = a.lk;
  for (std::size_t h = 0; h < a.heads; ++h) {
    const std::size_t at = h * rows * cols + kb * Lk;    // Pd_h[:, kb]: rows of Lk, cols apart
    const std::size_t vw_at = (h * cols + kb * Lk) * E;  // VW_h[kb] (Lk, E)
    // in the forward pass this was O_kb += Pd_h[:, kb] VW_h[kb]:
    // dPd_h[:, kb] (rows,Lk) = dO_kb (rows,E) VW_h[kb]^T (E,Lk), VW_h[kb]^T copied contiguous
    // (its rows cols apart would share a few cache sets)
    kernels::transpose(Lk, E, vw + vw_at, E, vwt.data(), Lk);
    blas::gemm(matrix(ds + at, rows, Lk, cols), matrix(dout_kb, rows, E), matrix<const T>(vwt.data(), E, Lk));
    // in the forward pass this was Pd = softmax(S) * dropout: dS over dPd, in place
    if (saved.dropout) multiply_rows(ds + at, saved.dropout_scale.data() + at, rows, Lk, cols);
    kernels::softmax_backward_rows(saved.weights->data() + at, ds + at, rows, Lk, cols, T(a.scale));
    // the same forward line: dVW_h[kb] (Lk,E) = Pd_h[:, kb]^T (Lk,rows) dO_kb (rows,E)
    if (dvw)
      blas::gemm(matrix(dvw.data + vw_at, Lk, E), matrix(saved.mixed() + at, rows, Lk, cols).t(),
                 matrix(dout_kb, rows, E), T(1), dvw.beta);
  }
}

// ds (H, rows, cols) -> the gradients of q and k, inputs 0 and 1.
template <class T>
void all_pairs_query_key_backward(const AttentionShape& a, const T* ds, const std::vector<NodePtr<T>>& in) {
  const std::size_t rows = a.bq * a.lq, cols = a.bk * a.lk, dh = a.dh, D = a.d;
  // in the forward pass this was S_h = scale Q_h K_h^T (the scale is in dS):
  // dQ_h (rows,dh) = dS_h (rows,cols) K_h (cols,dh), dK_h (cols,dh) = dS_h^T (cols,rows) Q_h (rows,dh)
  const T* q = in[0]->data().data();
  const T* k = in[1]->data().data();
  if (const GradTarget<T> dq = grad_target(*in[0]))
    parallel::for_each(a.heads, [&](std::size_t h) {
      blas::gemm(matrix(dq.data + h * dh, rows, dh, D), matrix(ds + h * rows * cols, rows, cols),
                 matrix(k + h * dh, cols, dh, D), T(1), dq.beta);
    });
  if (const GradTarget<T> dk = grad_target(*in[1]))
    parallel::for_each(a.heads, [&](std::size_t h) {
      blas::gemm(matrix(dk.data + h * dh, cols, dh, D), matrix(ds + h * rows * cols, rows, cols).t(),
                 matrix(q + h * dh, rows, dh, D), T(1), dk.beta);
    });
}

// dO (Bq,Bk,Lq,E) -> the gradients of q, k, vw and the bias; inputs q, k, vw (, bias).
template <class T>
void all_pairs_backward(const AttentionShape& a, std::size_t E, const Saved<T>& saved,
                        const std::vector<NodePtr<T>>& in, const T* dout) {
  const std::size_t rows = a.bq * a.lq;
  Array<T> ds(saved.weights->shape());  // per head (rows, cols)
  const GradTarget<T> dvw = grad_target(*in[2]);
  parallel::for_ranges(a.bk, 1, [&](std::size_t kb_begin, std::size_t kb_end) {  // bands as in the forward
    std::vector<T> dout_kb(rows * E), vwt(E * a.lk);
    for (std::size_t kb = kb_begin; kb < kb_end; ++kb) {
      for (std::size_t qb = 0; qb < a.bq; ++qb)  // dO_kb (rows, E) gathered from dO
        std::copy_n(dout + (qb * a.bk + kb) * a.lq * E, a.lq * E, dout_kb.data() + qb * a.lq * E);
      all_pairs_key_backward(a, E, saved, in[2]->data().data(), kb, dout_kb.data(), ds.data(), dvw, vwt);
    }
  });
  // in the forward pass this was O = ... + bias: db = column sums of dO
  if (in.size() > 3) detail::write_column_sums(dout, rows * a.bk, E, grad_target(*in[3]));
  all_pairs_query_key_backward(a, ds.data(), in);
}

// ---- all pairs, layer-normed and pooled over the query positions -----------------------
// Each key element's block (rows, E) is finished while in cache: x = residual + block
// (kept for the backward), y = layer_norm(x), out[qb, kb] = mean_t y[qb, t]. The pairs'
// outputs, their sum with the residual and its norm are never whole arrays.

// What the pooled backward keeps besides the attention weights.
template <class T> struct NormSaved {
  Array<T> x;                   // (Bk, rows, E): residual + attention, per key element
  std::vector<T> means, rstds;  // (Bk * rows): layer norm's, per row of x
};

// The pooled op's inputs after q, k, vw (0-2) and the residual (3); `none` when absent.
struct PooledInputs {
  static constexpr std::size_t none = std::size_t(-1);
  std::size_t out_bias = none, norm_weight = none, norm_bias = none;
};

// Pd, vw, bias as in all_pairs_mix_forward; residual (rows, E), norm weight w and bias b
// (E, or null) -> out (Bq,Bk,E), and x, means and rstds into saved. Bit for bit the
// separate ops: the attention's block, residual + it, layer_norm, mean (summed from 0 in
// order of t, then divided).
template <class T>
void pooled_forward(const AttentionShape& a, std::size_t E, const T* pd, const T* vw, const T* bias, const T* residual,
                    const T* w, const T* b, T eps, NormSaved<T>& saved, T* out) {
  const std::size_t rows = a.bq * a.lq;
  parallel::for_ranges(a.bk, 1, [&](std::size_t kb_begin, std::size_t kb_end) {
    std::vector<T> y(rows * E);
    for (std::size_t kb = kb_begin; kb < kb_end; ++kb) {
      T* x = saved.x.data() + kb * rows * E;
      mix_key_block(a, E, pd, vw, bias, kb, x);
      for (std::size_t i = 0; i < rows * E; ++i) x[i] = residual[i] + x[i];
      kernels::layer_norm_rows(x, y.data(), w, b, saved.means.data() + kb * rows, saved.rstds.data() + kb * rows, rows,
                               E, eps);
      for (std::size_t qb = 0; qb < a.bq; ++qb) {
        T* o = out + (qb * a.bk + kb) * E;
        std::fill_n(o, E, T(0));
        for (std::size_t t = 0; t < a.lq; ++t)
          for (std::size_t j = 0; j < E; ++j) o[j] += y[(qb * a.lq + t) * E + j];
        for (std::size_t j = 0; j < E; ++j) o[j] /= T(a.lq);
      }
    }
  });
}

// One key element's part of the pooled backward: from dOut (Bq,Bk,E), dx (rows, E), the
// gradient of x = residual + attention; into sums: the norm weight's (E), its bias's (E)
// and the residual's (rows*E); and dS, dVW as in all_pairs_backward.
template <class T>
void pooled_key_backward(const AttentionShape& a, std::size_t E, const Saved<T>& saved, const NormSaved<T>& norm,
                         const T* w, const T* vw, std::size_t kb, const T* dout, T* ds, GradTarget<T> dvw,
                         std::vector<T>& scratch, std::vector<T>& vwt, T* sums) {
  const std::size_t rows = a.bq * a.lq, n = rows * E;
  T* dy = scratch.data();  // one row: the Lq rows of a qb share it
  T* dx = scratch.data() + E;
  for (std::size_t qb = 0; qb < a.bq; ++qb) {
    // in the forward pass this was out[qb, kb] = mean_t y[qb, t]: dy[qb, t] = dOut[qb, kb] / Lq
    for (std::size_t j = 0; j < E; ++j) dy[j] = dout[(qb * a.bk + kb) * E + j] * (T(1) / T(a.lq));
    // y = layer_norm(x): dx, and the sums of the norm's weight and bias gradients
    for (std::size_t r = qb * a.lq; r < (qb + 1) * a.lq; ++r)
      kernels::layer_norm_rows_backward(norm.x.data() + kb * n + r * E, dy, w, norm.means.data() + kb * rows + r,
                                        norm.rstds.data() + kb * rows + r, dx + r * E, sums, sums + E, 1, E);
  }
  // x = residual + (bias + attention): dx is the gradient of each term (the bias's is the
  // column sums of the residual's, taken once at the end)
  for (std::size_t i = 0; i < n; ++i) sums[2 * E + i] += dx[i];
  all_pairs_key_backward(a, E, saved, vw, kb, dx, ds, dvw, vwt);
}

// dOut (Bq,Bk,E) -> the gradients of every input. The parameters' and the residual's are
// banded sums over bands of kBandKeys key elements (32 key elements: eight bands for the
// threads), so that their bits do not depend on the thread count.
template <class T>
void pooled_backward(const AttentionShape& a, std::size_t E, const Saved<T>& saved, const NormSaved<T>& norm,
                     const PooledInputs& at, const std::vector<NodePtr<T>>& in, const T* dout) {
  constexpr std::size_t kBandKeys = 4;
  const std::size_t rows = a.bq * a.lq, width = 2 * E + rows * E;
  const T* w = at.norm_weight != PooledInputs::none ? in[at.norm_weight]->data().data() : nullptr;
  Array<T> ds(saved.weights->shape());  // per head (rows, cols)
  const GradTarget<T> dvw = grad_target(*in[2]);
  std::vector<T> total(width, T(0));
  detail::banded_sum(
      a.bk, width, total.data(),
      [&](std::size_t kb_begin, std::size_t kb_end, T* sums) {
        std::vector<T> scratch(E + rows * E), vwt(E * a.lk);
        for (std::size_t kb = kb_begin; kb < kb_end; ++kb)
          pooled_key_backward(a, E, saved, norm, w, in[2]->data().data(), kb, dout, ds.data(), dvw, scratch, vwt, sums);
      },
      kBandKeys);
  const auto write = [&](std::size_t input, const T* values, std::size_t count) {
    if (input == PooledInputs::none) return;
    if (const GradTarget<T> target = grad_target(*in[input]))
      for (std::size_t i = 0; i < count; ++i) detail::write_grad(target, i, values[i]);
  };
  const T* residual_grad = total.data() + 2 * E;
  write(at.norm_weight, total.data(), E);
  write(at.norm_bias, total.data() + E, E);
  if (at.out_bias != PooledInputs::none)  // the column sums of the residual's
    detail::write_column_sums(residual_grad, rows, E, grad_target(*in[at.out_bias]));
  write(3, residual_grad, rows * E);
  all_pairs_query_key_backward(a, ds.data(), in);
}

// The checks every all-pairs op makes of q, k, the projected values, the bias, the key
// mask and the dropout probability: its shapes and E.
template <class T>
std::pair<AttentionShape, std::size_t> check_all_pairs(const char* op, const Tensor<T>& q, const Tensor<T>& k,
                                                       const Tensor<T>& projected_values,
                                                       const std::optional<Tensor<scalar_t<T>>>& out_bias,
                                                       const std::optional<Mask>& key_allowed, double dropout_p) {
  const Shape pv = projected_values.shape();
  if (pv.size() != 4) detail::fail(op, "projected values must be 4-D (H,Bk,Lk,E), got " + shape_str(pv));
  const AttentionShape a = check_shapes(op, q.shape(), k.shape(), k.shape(), pv[0], true);
  const std::size_t E = pv[3];
  if (pv != Shape{a.heads, a.bk, a.lk, E})
    detail::fail(op, "projected values " + shape_str(pv) + " do not match k " + shape_str(k.shape()));
  if (out_bias && out_bias->shape() != Shape{E})
    detail::fail(
        op, "out_bias " + shape_str(out_bias->shape()) + " does not match the projected width " + std::to_string(E));
  check_key_mask(op, key_allowed, a);
  check_probability(op, "dropout", dropout_p);
  return {a, E};
}

}  // namespace

// q (Bq,Lq,D), k (Bk,Lk,D), projected_values (H,Bk,Lk,E), out_bias (E), key_allowed (Bk,Lk)
//   -> out (Bq,Bk,Lq,E), weights (H,Bq,Lq,Bk,Lk)
template <class T>
FusedAttention<T> attention_all_pairs_projected(const Tensor<T>& q, const Tensor<T>& k,
                                                const Tensor<T>& projected_values,
                                                const std::optional<Tensor<scalar_t<T>>>& out_bias,
                                                const std::optional<Mask>& key_allowed, double dropout_p,
                                                Generator* gen) {
  const char* op = "attention_all_pairs_projected";
  detail::check_defined(op, q, k, projected_values, out_bias);
  const auto [a, E] = check_all_pairs(op, q, k, projected_values, out_bias, key_allowed, dropout_p);
  auto weights = std::make_shared<Array<T>>(Shape{a.heads, a.bq, a.lq, a.bk, a.lk});
  all_pairs_weights_forward(a, q.data().data(), k.data().data(), key_allowed ? &*key_allowed : nullptr,
                            weights->data());
  Saved<T> saved = save_weights<T>(weights, dropout_p, gen);
  Array<T> out(Shape{a.bq, a.bk, a.lq, E});
  all_pairs_mix_forward(a, E, saved.mixed(), projected_values.data().data(),
                        out_bias ? out_bias->data().data() : nullptr, out.data());
  std::vector<Tensor<T>> inputs{q, k, projected_values};
  if (out_bias) inputs.push_back(*out_bias);
  Tensor<T> output = make_result<T>(
      op, std::move(out), inputs,
      [a, E, saved = std::move(saved)](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        all_pairs_backward(a, E, saved, in, g.data());
      });
  return {output, weights};
}

// q (Bq,Lq,D), k, v (Bk,Lk,D), out_weight (E,D), out_bias (E), key_allowed (Bk,Lk)
//   -> out (Bq,Bk,Lq,E), weights (H,Bq,Lq,Bk,Lk): the two ops above
template <class T>
FusedAttention<T> attention_heads_all_pairs(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                            std::size_t heads, const Tensor<T>& out_weight,
                                            const std::optional<Tensor<scalar_t<T>>>& out_bias,
                                            const std::optional<Mask>& key_allowed, double dropout_p, Generator* gen) {
  const char* op = "attention_heads_all_pairs";
  detail::check_defined(op, q, k, v, heads, out_weight, out_bias);
  const AttentionShape a = check_shapes(op, q.shape(), k.shape(), v.shape(), heads, true);
  if (out_weight.shape().size() != 2 || out_weight.shape()[1] != a.d)
    detail::fail(op, "out_weight " + shape_str(out_weight.shape()) + " is not (E," + std::to_string(a.d) +
                         ") for width " + std::to_string(a.d));
  if (out_bias && out_bias->shape() != Shape{out_weight.shape()[0]})
    detail::fail(
        op, "out_bias " + shape_str(out_bias->shape()) + " does not match out_weight " + shape_str(out_weight.shape()));
  check_key_mask(op, key_allowed, a);
  check_probability(op, "dropout", dropout_p);
  return attention_all_pairs_projected(q, k, head_values_projected(v, out_weight, heads), out_bias, key_allowed,
                                       dropout_p, gen);
}

// q (Bq,Lq,D), k (Bk,Lk,D), projected_values (H,Bk,Lk,E), out_bias (E), residual (Bq,Lq,E),
// norm_weight, norm_bias (E), key_allowed (Bk,Lk) -> out (Bq,Bk,E), weights (H,Bq,Lq,Bk,Lk)
template <class T>
FusedAttention<T> attention_all_pairs_pooled(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& projected_values,
                                             const std::optional<Tensor<scalar_t<T>>>& out_bias,
                                             const Tensor<T>& residual,
                                             const std::optional<Tensor<scalar_t<T>>>& norm_weight,
                                             const std::optional<Tensor<scalar_t<T>>>& norm_bias, double eps,
                                             const std::optional<Mask>& key_allowed, double dropout_p, Generator* gen) {
  const char* op = "attention_all_pairs_pooled";
  detail::check_defined(op, q, k, projected_values, out_bias, residual, norm_weight, norm_bias);
  const auto [a, E] = check_all_pairs(op, q, k, projected_values, out_bias, key_allowed, dropout_p);
  if (residual.shape() != Shape{a.bq, a.lq, E})
    detail::fail(op,
                 "residual " + shape_str(residual.shape()) + " is not (Bq,Lq,E) = " + shape_str(Shape{a.bq, a.lq, E}));
  for (const auto* p : {&norm_weight, &norm_bias})
    if (p->has_value() && (*p)->shape() != Shape{E})
      detail::fail(op, std::string(p == &norm_weight ? "norm_weight " : "norm_bias ") + shape_str((*p)->shape()) +
                           " is not (E) = " + shape_str(Shape{E}));

  auto weights = std::make_shared<Array<T>>(Shape{a.heads, a.bq, a.lq, a.bk, a.lk});
  all_pairs_weights_forward(a, q.data().data(), k.data().data(), key_allowed ? &*key_allowed : nullptr,
                            weights->data());
  Saved<T> saved = save_weights<T>(weights, dropout_p, gen);
  const std::size_t rows = a.bq * a.lq;
  NormSaved<T> norm{Array<T>(Shape{a.bk, rows, E}), std::vector<T>(a.bk * rows), std::vector<T>(a.bk * rows)};
  Array<T> out(Shape{a.bq, a.bk, E});
  const auto data_of = [](const auto& t) { return t ? t->data().data() : nullptr; };
  pooled_forward(a, E, saved.mixed(), projected_values.data().data(), data_of(out_bias), residual.data().data(),
                 data_of(norm_weight), data_of(norm_bias), T(eps), norm, out.data());

  std::vector<Tensor<T>> inputs{q, k, projected_values, residual};
  PooledInputs at;
  const auto add_input = [&](const std::optional<Tensor<scalar_t<T>>>& t, std::size_t& index) {
    if (t) index = inputs.size(), inputs.push_back(*t);
  };
  add_input(out_bias, at.out_bias);
  add_input(norm_weight, at.norm_weight);
  add_input(norm_bias, at.norm_bias);
  Tensor<T> output = make_result<T>(op, std::move(out), inputs,
                                    [a, E, at, saved = std::move(saved), norm = std::move(norm)](
                                        const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                                      pooled_backward(a, E, saved, norm, at, in, g.data());
                                    });
  return {output, weights};
}

#define INSTANTIATE(T)                                                                                                \
  template FusedAttention<T> attention_all_pairs_projected(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,      \
                                                           const std::optional<Tensor<scalar_t<T>>>&,                 \
                                                           const std::optional<Mask>&, double, Generator*);           \
  template FusedAttention<T> attention_heads_all_pairs(                                                               \
      const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, std::size_t, const Tensor<T>&,                            \
      const std::optional<Tensor<scalar_t<T>>>&, const std::optional<Mask>&, double, Generator*);                     \
  template FusedAttention<T> attention_all_pairs_pooled(                                                              \
      const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const std::optional<Tensor<scalar_t<T>>>&,                \
      const Tensor<T>&, const std::optional<Tensor<scalar_t<T>>>&, const std::optional<Tensor<scalar_t<T>>>&, double, \
      const std::optional<Mask>&, double, Generator*);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
