// The pieces the fused attention ops (ops_attention.cpp) share: shapes and their checks,
// the saved weights and dropout mask, head blocks as matrices in place. Not installed.
#pragma once

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blas.hpp"
#include "detail.hpp"
#include "kernels.hpp"
#include "parallel.hpp"
#include "xtgrad/random.hpp"

namespace xtgrad::attention_detail {

using blas::matrix;

// The shapes of one fused attention call.
struct AttentionShape {
  std::size_t bq, lq, bk, lk, d, heads, dh;
  double scale;
};

inline AttentionShape check_shapes(const char* op, const Shape& q, const Shape& k, const Shape& v, std::size_t heads,
                                   bool all_pairs) {
  if (q.size() != 3 || k.size() != 3 || v.size() != 3)
    detail::fail(op, "q, k and v must be 3-D (batch, length, width), got " + shape_str(q) + ", " + shape_str(k) + ", " +
                         shape_str(v));
  if (k != v) detail::fail(op, "k " + shape_str(k) + " and v " + shape_str(v) + " differ");
  if (q[2] != k[2]) detail::fail(op, "q " + shape_str(q) + " and k " + shape_str(k) + " differ in width");
  if (!all_pairs && q[0] != k[0])
    detail::fail(op, "q " + shape_str(q) + " and k " + shape_str(k) + " differ in batch size");
  if (heads == 0 || q[2] % heads != 0)
    detail::fail(op, std::to_string(heads) + " heads do not divide the width " + std::to_string(q[2]));
  const std::size_t dh = q[2] / heads;
  return {q[0], q[1], k[0], k[1], q[2], heads, dh, 1.0 / std::sqrt(double(dh))};
}

inline void check_key_mask(const char* op, const std::optional<Mask>& key_allowed, const AttentionShape& a) {
  if (key_allowed && detail::shape_of(*key_allowed) != Shape{a.bk, a.lk})
    detail::fail(op,
                 "key mask " + shape_str(key_allowed->shape()) + " is not (Bk,Lk) = " + shape_str(Shape{a.bk, a.lk}));
}

// What the backward keeps: the weights (shared with the caller) and, with dropout, the
// scale (0 or 1/(1-p) per weight) and the dropped weights the values were mixed with.
template <class T> struct Saved {
  std::shared_ptr<const Array<T>> weights;
  bool dropout = false;
  Array<T> dropout_scale, dropped;
  const T* mixed() const { return dropout ? dropped.data() : weights->data(); }
};

// The Saved of weights, drawing a dropout mask (kept with probability 1-p) when asked.
template <class T> Saved<T> save_weights(std::shared_ptr<const Array<T>> weights, double p, Generator* gen) {
  Saved<T> saved{std::move(weights), p > 0 && gen, {}, {}};
  if (!saved.dropout) return saved;
  saved.dropout_scale = detail::dropout_scale<T>(detail::shape_of(*saved.weights), p, *gen);
  saved.dropped = *saved.weights * saved.dropout_scale;
  return saved;
}

// x *= y elementwise over `rows` rows of `len` values, `stride` apart in both.
template <class T> void multiply_rows(T* x, const T* y, std::size_t rows, std::size_t len, std::size_t stride) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < len; ++j) x[r * stride + j] *= y[r * stride + j];
}

// scores[i] = -inf where !allowed[i], for i < n.
template <class T> void block_disallowed(T* scores, const bool* allowed, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!allowed[i]) scores[i] = -std::numeric_limits<T>::infinity();
}

// Causal blocking of one head's scores (Lq,Lk): query i may attend keys 0..i + Lk - Lq
// (the last Lq of Lk positions when the keys include a cached prefix), never a later one.
template <class T> void block_future(T* scores, std::size_t lq, std::size_t lk) {
  for (std::size_t i = 0; i < lq; ++i) {
    const long last_allowed = long(i) + long(lk) - long(lq);
    for (long j = std::max(last_allowed + 1, 0L); j < long(lk); ++j)
      scores[i * lk + std::size_t(j)] = -std::numeric_limits<T>::infinity();
  }
}

// m^T, contiguous. The products that contract over a head's dh read K or V transposed:
// BLAS runs A B^T with so short an inner dimension at a third of the speed of A B
// (bench/: attn_small, align_step), more than the copy costs.
template <class T> std::vector<T> transposed(blas::Matrix<const T> m) {
  std::vector<T> out(m.rows * m.cols);
  kernels::transpose(m.rows, m.cols, m.data, m.stride, out.data(), m.rows);
  return out;
}

// Head h's columns of batch element b of x (B, L, D): (L, dh), rows D apart.
template <class T>
blas::Matrix<T> head_block(T* x, std::size_t L, const AttentionShape& a, std::size_t b, std::size_t h) {
  return matrix(x + b * L * a.d + h * a.dh, L, a.dh, a.d);
}

// f(b, h) for every batch element b < B and head h < H, spread over the threads.
template <class F> void for_each_head(std::size_t B, std::size_t H, F&& f) {
  parallel::for_each(B * H, [&](std::size_t bh) { f(bh / H, bh % H); });
}

}  // namespace xtgrad::attention_detail
