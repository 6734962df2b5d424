// Shape checks and mask helpers shared by the attention layers (attention.cpp,
// transformer.cpp); private to layers/.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "xtgrad/ops.hpp"

namespace xtgrad::attention_masks {

// Checks x is (batch?, len?, width) and returns its shape; the message names the layer.
inline Shape check_3d(const char* layer, const char* what, const Shape& shape, std::size_t width) {
  if (shape.size() != 3 || shape[2] != width)
    throw std::invalid_argument(std::string(layer) + ": " + what + " must be (B, L, " + std::to_string(width) +
                                "), got " + shape_str(shape));
  return shape;
}

inline void check_key_value(const char* layer, const Shape& query, const Shape& key, const Shape& value,
                            bool same_batch) {
  if (key[0] != value[0] || key[1] != value[1])
    throw std::invalid_argument(std::string(layer) + ": key " + shape_str(key) + " and value " + shape_str(value) +
                                " differ in batch or length");
  if (same_batch && query[0] != key[0])
    throw std::invalid_argument(std::string(layer) + ": query " + shape_str(query) + " and key " + shape_str(key) +
                                " differ in batch size");
}

inline Shape shape_of(const Mask& m) { return Shape(m.shape().begin(), m.shape().end()); }

// allowed (..., Lk) -> (..., 1): true where a row allows nothing (a query with nothing to
// attend to); none when every row allows something.
inline std::optional<Mask> rows_allowing_nothing(const Mask& allowed) {
  Shape shape = shape_of(allowed);
  const std::size_t len = shape.back();
  shape.back() = 1;
  Mask dead(shape);
  bool any_dead = false;
  for (std::size_t row = 0; row < dead.size(); ++row) {
    const bool* first = allowed.data() + row * len;
    dead.data()[row] = std::none_of(first, first + len, [](bool ok) { return ok; });
    any_dead = any_dead || dead.data()[row];
  }
  if (!any_dead) return std::nullopt;
  return dead;
}

// The one place a dead query's output is zeroed: the attention gives it zero weights, so
// a zero mix, but the output projection's bias would still show.
template <class T> Tensor<T> zero_dead_rows(const Tensor<T>& output, const std::optional<Mask>& dead) {
  return dead ? masked_fill(output, *dead, T(0)) : output;
}

// allowed (B,Lq,Lk) = key_padding_mask (B,Lk)[b,k] and attn_mask (Lq,Lk) or (B,Lq,Lk)[(b,)q,k]
inline Mask combine_masks(const char* layer, std::size_t B, std::size_t Lq, std::size_t Lk,
                          const std::optional<AttendMask>& key_padding, const std::optional<AttendMask>& attn) {
  const Mask* key_padding_mask = key_padding ? &key_padding->allowed() : nullptr;
  const Mask* attn_mask = attn ? &attn->allowed() : nullptr;
  if (key_padding_mask && shape_of(*key_padding_mask) != Shape{B, Lk})
    throw std::invalid_argument(std::string(layer) + ": key_padding_mask must be (B,Lk) = " + shape_str(Shape{B, Lk}) +
                                ", got " + shape_str(key_padding_mask->shape()));
  const bool batched_attn = attn_mask && attn_mask->dimension() == 3;
  if (attn_mask && shape_of(*attn_mask) != Shape{Lq, Lk} && shape_of(*attn_mask) != Shape{B, Lq, Lk})
    throw std::invalid_argument(std::string(layer) +
                                ": attn_mask must be (Lq,Lk) or (B,Lq,Lk) for Lq = " + std::to_string(Lq) +
                                ", Lk = " + std::to_string(Lk) + ", got " + shape_str(attn_mask->shape()));
  Mask allowed(Shape{B, Lq, Lk});
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t i = 0; i < Lq; ++i)
      for (std::size_t j = 0; j < Lk; ++j) {
        bool ok = !key_padding_mask || (*key_padding_mask)(b, j);
        if (attn_mask) ok = ok && (batched_attn ? (*attn_mask)(b, i, j) : (*attn_mask)(i, j));
        allowed(b, i, j) = ok;
      }
  return allowed;
}

}  // namespace xtgrad::attention_masks
