// Fused multi-head scaled dot-product attention. The model width D of q, k and v is split
// into H column blocks of dh = D / H; BLAS reads each head's block in place through its
// leading dimension (lda = D), so no head split or merge is ever copied.
//   S = scale Q K^T (+ -inf where blocked), P = softmax(S) (a row with nothing allowed: 0),
//   Pd = P * dropout scale, O = Pd V
// Backward (DESIGN.md): dV = Pd^T dO, dPd = dO V^T, dP = dPd * dropout scale,
//   dS = P * (dP - rowsum(dP * P)), dQ = scale dS K, dK = scale dS^T Q.
// Two pairings share these kernels: `paired` (batch element b of q with b of k and v, as in
// MultiHeadCrossAttention) and `all pairs` (every b of q with every b of k and v).
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "blas.hpp"
#include "detail.hpp"
#include "kernels.hpp"
#include "parallel.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

// The shapes of one fused attention call.
struct AttentionShape {
  std::size_t bq, lq, bk, lk, d, heads, dh;
  double scale;
};

AttentionShape check_shapes(const char* op, const Shape& q, const Shape& k, const Shape& v, std::size_t heads,
                            bool all_pairs) {
  if (q.size() != 3 || k.size() != 3 || v.size() != 3)
    detail::fail(op, "q, k and v must be 3-D (batch, length, width), got " + shape_str(q) + ", " + shape_str(k) +
                         ", " + shape_str(v));
  if (k != v) detail::fail(op, "k " + shape_str(k) + " and v " + shape_str(v) + " differ");
  if (q[2] != k[2]) detail::fail(op, "q " + shape_str(q) + " and k " + shape_str(k) + " differ in width");
  if (!all_pairs && q[0] != k[0])
    detail::fail(op, "q " + shape_str(q) + " and k " + shape_str(k) + " differ in batch size");
  if (heads == 0 || q[2] % heads != 0)
    detail::fail(op, std::to_string(heads) + " heads do not divide the width " + std::to_string(q[2]));
  const std::size_t dh = q[2] / heads;
  return {q[0], q[1], k[0], k[1], q[2], heads, dh, 1.0 / std::sqrt(double(dh))};
}

// What the backward keeps: the weights (shared with the caller) and, with dropout, the
// scale (0 or 1/(1-p) per weight) and the dropped weights the values were mixed with.
template <class T>
struct Saved {
  std::shared_ptr<const Array<T>> weights;
  bool dropout = false;
  Array<T> dropout_scale, dropped;
  const T* mixed() const { return dropout ? dropped.data() : weights->data(); }
};

// The Saved of weights, drawing a dropout mask (kept with probability 1-p) when asked.
template <class T>
Saved<T> save_weights(std::shared_ptr<const Array<T>> weights, double p, Generator* gen) {
  Saved<T> saved{std::move(weights), p > 0 && gen, {}, {}};
  if (!saved.dropout) return saved;
  const Array<T>& w = *saved.weights;
  saved.dropout_scale = Array<T>(w.shape());
  saved.dropped = Array<T>(w.shape());
  const T kept = T(1.0 / (1.0 - p));
  for (std::size_t i = 0; i < w.size(); ++i) {
    saved.dropout_scale.data()[i] = gen->uniform() >= p ? kept : T(0);
    saved.dropped.data()[i] = w.data()[i] * saved.dropout_scale.data()[i];
  }
  return saved;
}

// x (rows, cols) -> (cols, rows). The products below that contract over a head's dh read
// K or V transposed: BLAS runs A B^T with so short an inner dimension at a third of the
// speed of A B (bench/: attn_small, align_step), more than the transpose costs.
template <class T>
std::vector<T> transposed(const T* x, std::size_t rows, std::size_t cols) {
  std::vector<T> out(rows * cols);
  kernels::transpose(rows, cols, x, cols, out.data(), rows);
  return out;
}

// f(b, h) for every batch element b < B and head h < H, spread over the threads.
template <class F>
void for_each_head(std::size_t B, std::size_t H, F&& f) {
  parallel::for_each(B * H, [&](std::size_t bh) { f(bh / H, bh % H); });
}

void check_dropout(const char* op, double p) {
  if (!(p >= 0.0 && p < 1.0)) detail::fail(op, "dropout must be in [0, 1), got " + std::to_string(p));
}

}  // namespace

// q (B,Lq,D), k, v (B,Lk,D), allowed (B,Lq,Lk) -> out (B,Lq,D), weights (B,H,Lq,Lk)
template <class T>
FusedAttention<T> attention_heads(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, std::size_t heads,
                                  const std::optional<Mask>& allowed, double dropout_p, Generator* gen) {
  const char* op = "attention_heads";
  detail::check_defined(op, q, k, v);
  const AttentionShape a = check_shapes(op, q.shape(), k.shape(), v.shape(), heads, false);
  if (allowed && detail::shape_of(*allowed) != Shape{a.bq, a.lq, a.lk})
    detail::fail(op, "mask " + shape_str(allowed->shape()) + " is not (B,Lq,Lk) = " + shape_str(Shape{a.bq, a.lq, a.lk}));
  check_dropout(op, dropout_p);
  const std::size_t B = a.bq, H = a.heads, Lq = a.lq, Lk = a.lk, D = a.d, dh = a.dh;
  const T* pq = q.data().data();
  const T* pk = k.data().data();
  const T* pv = v.data().data();

  auto weights = std::make_shared<Array<T>>(Shape{B, H, Lq, Lk});
  T* w = weights->data();
  for_each_head(B, H, [&](std::size_t b, std::size_t h) {
    T* s = w + (b * H + h) * Lq * Lk;  // (Lq,Lk) = scale Q_bh (Lq,dh) K_bh^T (dh,Lk)
    std::vector<T> kt(dh * Lk);  // K_bh^T, while K_bh is in cache
    kernels::transpose(Lk, dh, pk + b * Lk * D + h * dh, D, kt.data(), Lk);
    blas::gemm<T>(false, false, Lq, Lk, dh, T(a.scale), pq + b * Lq * D + h * dh, D, kt.data(), Lk, T(0), s, Lk);
    if (allowed) {
      const bool* ok = allowed->data() + b * Lq * Lk;
      for (std::size_t i = 0; i < Lq * Lk; ++i)
        if (!ok[i]) s[i] = -std::numeric_limits<T>::infinity();
    }
    kernels::softmax_rows(s, Lq, Lk);
  });
  Saved<T> saved = save_weights<T>(weights, dropout_p, gen);
  const T* pd = saved.mixed();  // the weights the values are mixed with

  Array<T> out(Shape{B, Lq, D});
  for_each_head(B, H, [&](std::size_t b, std::size_t h) {  // O_bh (Lq,dh) = Pd_bh (Lq,Lk) V_bh (Lk,dh)
    blas::gemm<T>(false, false, Lq, dh, Lk, T(1), pd + (b * H + h) * Lq * Lk, Lk, pv + b * Lk * D + h * dh, D, T(0),
                  out.data() + b * Lq * D + h * dh, D);
  });

  Tensor<T> output = make_result<T>(
      op, std::move(out), {q, k, v},
      [a, saved = std::move(saved)](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        const std::size_t B = a.bq, H = a.heads, Lq = a.lq, Lk = a.lk, D = a.d, dh = a.dh;
        const T* pq = in[0]->data.data();
        const T* pk = in[1]->data.data();
        const T* pv = in[2]->data.data();
        const T* p = saved.weights->data();
        const bool dropping = saved.dropout;
        const T* pd = saved.mixed();
        // Per (b, h), all while its blocks are in cache: dPd, dS, then the three gradients.
        // Tasks write disjoint blocks. When q, k and v are one tensor, a task writes its
        // block three times, in the order the buffers were fetched (so only the first
        // write of a fresh buffer overwrites: beta 0).
        bool fresh_q = false, fresh_k = false, fresh_v = false;
        T* gq = in[0]->requires_grad ? detail::grad_buffer(*in[0], fresh_q) : nullptr;
        T* gk = in[1]->requires_grad ? detail::grad_buffer(*in[1], fresh_k) : nullptr;
        T* gv = in[2]->requires_grad ? detail::grad_buffer(*in[2], fresh_v) : nullptr;
        for_each_head(B, H, [&](std::size_t b, std::size_t h) {
          const std::size_t blk = (b * H + h) * Lq * Lk;
          const T* q_bh = pq + b * Lq * D + h * dh;
          const T* k_bh = pk + b * Lk * D + h * dh;
          const T* v_bh = pv + b * Lk * D + h * dh;
          const T* g_bh = g.data() + b * Lq * D + h * dh;
          std::vector<T> ds(Lq * Lk), vt(dh * Lk);  // dPd (Lq,Lk) = dO_bh (Lq,dh) V_bh^T (dh,Lk)
          kernels::transpose(Lk, dh, v_bh, D, vt.data(), Lk);
          blas::gemm<T>(false, false, Lq, Lk, dh, T(1), g_bh, D, vt.data(), Lk, T(0), ds.data(), Lk);
          if (dropping)
            for (std::size_t i = 0; i < Lq * Lk; ++i) ds[i] *= saved.dropout_scale.data()[blk + i];
          kernels::softmax_backward_rows(p + blk, ds.data(), Lq, Lk, Lk, T(a.scale));  // dS over dPd
          if (gq)  // dQ_bh (Lq,dh) = dS (Lq,Lk) K_bh (Lk,dh)
            blas::gemm<T>(false, false, Lq, dh, Lk, T(1), ds.data(), Lk, k_bh, D, fresh_q ? T(0) : T(1),
                          gq + b * Lq * D + h * dh, D);
          if (gk)  // dK_bh (Lk,dh) = dS^T (Lk,Lq) Q_bh (Lq,dh)
            blas::gemm<T>(true, false, Lk, dh, Lq, T(1), ds.data(), Lk, q_bh, D, fresh_k ? T(0) : T(1),
                          gk + b * Lk * D + h * dh, D);
          if (gv)  // dV_bh (Lk,dh) = Pd^T (Lk,Lq) dO_bh (Lq,dh)
            blas::gemm<T>(true, false, Lk, dh, Lq, T(1), pd + blk, Lk, g_bh, D, fresh_v ? T(0) : T(1),
                          gv + b * Lk * D + h * dh, D);
        });
      });
  return {output, weights};
}

// q (Bq,Lq,D), k, v (Bk,Lk,D), out_weight (E,D), out_bias (E), key_allowed (Bk,Lk)
//   -> out (Bq,Bk,Lq,E), weights (H,Bq,Lq,Bk,Lk)
// Per head, the scores of all pairs are one product (Bq*Lq, dh) x (dh, Bk*Lk). The output
// projection is folded into the values: with W_h the columns of out_weight that head h's
// output meets (E,dh), a pair's output is sum_h P_h V_h W_h^T + bias, and VW_h = V_h W_h^T
// (Bk*Lk, E) is computed once per image instead of projecting every pair. The outputs of
// one key batch element kb are then, per head, one product (Bq*Lq, Lk) x (Lk, E) added into
// a block (rows over (bq, t)), which is scattered into the (Bq, Bk, Lq, E) output. Every
// product is E wide, never dh, and the pairs' unprojected outputs never exist.
// Each thread takes a band of key batch elements and keeps its block in cache.
// Backward, per kb: dPd_h = dO_kb VW_h[kb]^T, dS as in the paired op, dVW_h[kb] =
// Pd_h[kb]^T dO_kb; then per head dV_h = dVW_h W_h, dW_h = dVW_h^T V_h, dQ_h = dS_h K_h,
// dK_h = dS_h^T Q_h, and the bias gets the column sums of dO.
template <class T>
FusedAttention<T> attention_heads_all_pairs(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                            std::size_t heads, const Tensor<T>& out_weight,
                                            const std::optional<Tensor<T>>& out_bias,
                                            const std::optional<Mask>& key_allowed, double dropout_p,
                                            Generator* gen) {
  const char* op = "attention_heads_all_pairs";
  detail::check_defined(op, q, k, v, heads, out_weight, out_bias);
  const AttentionShape a = check_shapes(op, q.shape(), k.shape(), v.shape(), heads, true);
  if (out_weight.shape().size() != 2 || out_weight.shape()[1] != a.d)
    detail::fail(op, "out_weight " + shape_str(out_weight.shape()) + " is not (E," + std::to_string(a.d) +
                         ") for width " + std::to_string(a.d));
  const std::size_t E = out_weight.shape()[0];
  if (out_bias && out_bias->shape() != Shape{E})
    detail::fail(op, "out_bias " + shape_str(out_bias->shape()) + " does not match out_weight " +
                         shape_str(out_weight.shape()));
  if (key_allowed && detail::shape_of(*key_allowed) != Shape{a.bk, a.lk})
    detail::fail(op, "key mask " + shape_str(key_allowed->shape()) + " is not (Bk,Lk) = " + shape_str(Shape{a.bk, a.lk}));
  check_dropout(op, dropout_p);
  const std::size_t Bq = a.bq, Bk = a.bk, H = a.heads, Lq = a.lq, Lk = a.lk, D = a.d, dh = a.dh;
  const std::size_t rows = Bq * Lq, cols = Bk * Lk;  // of each head's score matrix

  auto weights = std::make_shared<Array<T>>(Shape{H, Bq, Lq, Bk, Lk});
  T* w = weights->data();
  const std::vector<T> kt = transposed(k.data().data(), cols, D);  // (D, cols)
  parallel::for_each(H, [&](std::size_t h) {
    T* s = w + h * rows * cols;  // (rows, cols) = scale Q_h (rows,dh) K_h^T (dh,cols)
    blas::gemm<T>(false, false, rows, cols, dh, T(a.scale), q.data().data() + h * dh, D, kt.data() + h * dh * cols,
                  cols, T(0), s, cols);
    if (key_allowed)
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t kb = 0; kb < Bk; ++kb) {
          T* seg = s + r * cols + kb * Lk;  // query row r against key batch element kb
          const bool* ok = key_allowed->data() + kb * Lk;
          for (std::size_t j = 0; j < Lk; ++j)
            if (!ok[j]) seg[j] = -std::numeric_limits<T>::infinity();
        }
    kernels::softmax_rows(s, rows * Bk, Lk);  // the segments of Lk are the softmax rows
  });
  Saved<T> saved = save_weights<T>(weights, dropout_p, gen);
  const T* pd = saved.mixed();

  // VW (H, cols, E): VW_h (cols,E) = V_h (cols,dh) W_h^T (dh,E), W_h^T = rows h*dh.. of W^T,
  // contracting over dh: B as stored (a copy of W), for the reason given at transposed()
  const std::vector<T> wt = transposed(out_weight.data().data(), E, D);  // (D, E)
  std::vector<T> vw(H * cols * E);
  parallel::for_each(H, [&](std::size_t h) {
    blas::gemm<T>(false, false, cols, E, dh, T(1), v.data().data() + h * dh, D, wt.data() + h * dh * E, E, T(0),
                  vw.data() + h * cols * E, E);
  });
  Array<T> out(Shape{Bq, Bk, Lq, E});
  const T* bias = out_bias ? out_bias->data().data() : nullptr;
  parallel::for_ranges(Bk, 1, [&](std::size_t kb_begin, std::size_t kb_end) {
    std::vector<T> block(rows * E);  // the outputs of one key batch element (rows, E)
    for (std::size_t kb = kb_begin; kb < kb_end; ++kb) {
      for (std::size_t r = 0; r < rows; ++r) {  // the block starts as the bias; the heads add to it
        if (bias) std::copy_n(bias, E, block.data() + r * E);
        else std::fill_n(block.data() + r * E, E, T(0));
      }
      for (std::size_t h = 0; h < H; ++h)  // (rows,E) += Pd_h[:, kb] (rows,Lk) VW_h[kb] (Lk,E)
        blas::gemm<T>(false, false, rows, E, Lk, T(1), pd + h * rows * cols + kb * Lk, cols,
                      vw.data() + (h * cols + kb * Lk) * E, E, T(1), block.data(), E);
      for (std::size_t qb = 0; qb < Bq; ++qb)
        std::copy_n(block.data() + qb * Lq * E, Lq * E, out.data() + (qb * Bk + kb) * Lq * E);
    }
  });

  std::vector<Tensor<T>> inputs{q, k, v, out_weight};
  if (out_bias) inputs.push_back(*out_bias);
  Tensor<T> output = make_result<T>(
      op, std::move(out), inputs,
      [a, E, saved = std::move(saved), vw = std::move(vw)](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
        const std::size_t Bq = a.bq, Bk = a.bk, H = a.heads, Lq = a.lq, Lk = a.lk, D = a.d, dh = a.dh;
        const std::size_t rows = Bq * Lq, cols = Bk * Lk;
        const T* p = saved.weights->data();
        const bool dropping = saved.dropout;
        const T* pd = saved.mixed();
        // Per key batch element kb, in bands as in the forward: dO_kb gathered into a
        // block (rows, E), then per head dPd, dS and dVW.
        Array<T> ds(saved.weights->shape());  // per head (rows, cols)
        std::vector<T> dvw(H * cols * E);     // as VW
        parallel::for_ranges(Bk, 1, [&](std::size_t kb_begin, std::size_t kb_end) {
          std::vector<T> g_block(rows * E), vwt(E * Lk);
          for (std::size_t kb = kb_begin; kb < kb_end; ++kb) {
            for (std::size_t qb = 0; qb < Bq; ++qb)
              std::copy_n(g.data() + (qb * Bk + kb) * Lq * E, Lq * E, g_block.data() + qb * Lq * E);
            for (std::size_t h = 0; h < H; ++h) {
              const std::size_t at = h * rows * cols + kb * Lk;  // Pd_h[:, kb]: rows of Lk, cols apart
              // dPd_h[:, kb] (rows,Lk) = dO_kb (rows,E) VW_h[kb]^T (E,Lk), VW_h[kb]^T copied
              // contiguous: its rows cols apart would share a few cache sets
              kernels::transpose(Lk, E, vw.data() + (h * cols + kb * Lk) * E, E, vwt.data(), Lk);
              blas::gemm<T>(false, false, rows, Lk, E, T(1), g_block.data(), E, vwt.data(), Lk, T(0), ds.data() + at,
                            cols);
              if (dropping)
                for (std::size_t r = 0; r < rows; ++r)
                  for (std::size_t j = 0; j < Lk; ++j) ds.data()[at + r * cols + j] *= saved.dropout_scale.data()[at + r * cols + j];
              kernels::softmax_backward_rows(p + at, ds.data() + at, rows, Lk, cols, T(a.scale));  // dS over dPd
              // dVW_h[kb] (Lk,E) = Pd_h[:, kb]^T (Lk,rows) dO_kb (rows,E)
              blas::gemm<T>(true, false, Lk, E, rows, T(1), pd + at, cols, g_block.data(), E, T(0),
                            dvw.data() + (h * cols + kb * Lk) * E, E);
            }
          }
        });
        bool fresh = false;
        if (in[2]->requires_grad) {  // dV_h (cols,dh) = dVW_h (cols,E) W_h (E,dh), W_h read in place (ld D)
          T* gv = detail::grad_buffer(*in[2], fresh);
          parallel::for_each(H, [&](std::size_t h) {
            blas::gemm<T>(false, false, cols, dh, E, T(1), dvw.data() + h * cols * E, E, in[3]->data.data() + h * dh, D,
                          fresh ? T(0) : T(1), gv + h * dh, D);
          });
        }
        if (in[3]->requires_grad) {  // dW_h (E,dh) = dVW_h^T (E,cols) V_h (cols,dh)
          T* gw = detail::grad_buffer(*in[3], fresh);
          parallel::for_each(H, [&](std::size_t h) {
            blas::gemm<T>(true, false, E, dh, cols, T(1), dvw.data() + h * cols * E, E, in[2]->data.data() + h * dh, D,
                          fresh ? T(0) : T(1), gw + h * dh, D);
          });
        }
        if (in.size() > 4 && in[4]->requires_grad) detail::add_column_sums(g.data(), rows * Bk, E, *in[4]);
        if (in[0]->requires_grad) {  // dQ_h (rows,dh) = dS_h (rows,cols) K_h (cols,dh)
          T* gq = detail::grad_buffer(*in[0], fresh);
          parallel::for_each(H, [&](std::size_t h) {
            blas::gemm<T>(false, false, rows, dh, cols, T(1), ds.data() + h * rows * cols, cols,
                          in[1]->data.data() + h * dh, D, fresh ? T(0) : T(1), gq + h * dh, D);
          });
        }
        if (in[1]->requires_grad) {  // dK_h (cols,dh) = dS_h^T (cols,rows) Q_h (rows,dh)
          T* gk = detail::grad_buffer(*in[1], fresh);
          parallel::for_each(H, [&](std::size_t h) {
            blas::gemm<T>(true, false, cols, dh, rows, T(1), ds.data() + h * rows * cols, cols,
                          in[0]->data.data() + h * dh, D, fresh ? T(0) : T(1), gk + h * dh, D);
          });
        }
      });
  return {output, weights};
}

#define INSTANTIATE(T)                                                                                      \
  template FusedAttention<T> attention_heads(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,           \
                                             std::size_t, const std::optional<Mask>&, double, Generator*);  \
  template FusedAttention<T> attention_heads_all_pairs(                                                     \
      const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, std::size_t, const Tensor<T>&,                   \
      const std::optional<Tensor<T>>&, const std::optional<Mask>&, double, Generator*);
XTGRAD_INSTANTIATE(INSTANTIATE)

}  // namespace xtgrad
