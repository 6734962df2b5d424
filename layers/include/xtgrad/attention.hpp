// Cross-attention: queries from one modality (caption words), keys and values from another
// (image patches): softmax(Q K^T / sqrt(d)) V. CrossAttention (the seed's class) is built
// from the engine's basic ops, its backward their composition; MultiHeadCrossAttention uses
// the fused attention op (ops.hpp), gradient-checked like every op.
//
// MASKS: every mask here is boolean and TRUE MEANS "MAY ATTEND". A query row with nothing
// to attend to gets all-zero weights, a zero output row and a zero gradient (never NaN).
//
// Dimension legend: B batch, Lq queries, Lk keys/values, H heads, D model width,
// dh = D / H per-head width.
#pragma once

#include <optional>
#include <vector>

#include "xtgrad/layers.hpp"
#include "xtgrad/options.hpp"

namespace xtgrad {

template <class T> struct AttentionResult {
  Tensor<T> output;  // (B, Lq, D); all-pairs: (Bq, Bk, Lq, D)
  // (B, Lq, Lk), or (B, H, Lq, Lk) per head; all-pairs: (Bq, Bk, Lq, Lk) or (Bq, Bk, H, Lq, Lk).
  // CrossAttention's weights are differentiable; MultiHeadCrossAttention's are for
  // inspection (its fused op keeps no graph for them) and undefined without need_weights.
  Tensor<T> weights;
};

// The seed article's CrossAttention: query_linear, key_linear, value_linear and
// output_linear, one head, scores scaled by 1/sqrt(dim_output).
//   query (B,Lq,dim_query), key (B,Lk,dim_key), value (B,Lk,dim_value)
//   -> output (B,Lq,dim_output), attention weights (B,Lq,Lk)
template <class T> class CrossAttention : public Module<T>, public Callable<CrossAttention<T>> {
 public:
  CrossAttention(std::size_t dim_query, std::size_t dim_key, std::size_t dim_value, std::size_t dim_output,
                 Generator& gen = global_generator());
  AttentionResult<T> forward(const Tensor<T>& query, const Tensor<T>& key, const Tensor<T>& value);

  const std::size_t dim_query, dim_key, dim_value, dim_output;
  std::shared_ptr<Linear<T>> query_linear, key_linear, value_linear, output_linear;
};

// The heads' output projection (PyTorch's out_proj): a Linear dim -> out_dim, with a second
// way to apply it. Head h's output meets only columns h*dh..(h+1)*dh of the weight (W_h),
// so instead of projecting the joined heads' outputs (forward), the projection can be
// folded into each head's values before the attention weights mix them
// (project_values: V_h W_h^T, the op head_values_projected); the op that mixes them adds
// the bias. forward_all_pairs does that: once per key element instead of once per pair.
template <class T> class OutputProjection : public Linear<T> {
 public:
  OutputProjection(std::size_t dim, std::size_t out_dim, std::size_t heads, bool bias, Generator& gen);
  // v (B,L,dim) -> (H,B,L,out_dim)
  Tensor<T> project_values(const Tensor<T>& v) const;
  std::string extra_repr() const override;

  const std::size_t heads;
};

// Multi-head cross-attention with separate query, key and value widths.
//   q_proj: query_dim -> out_dim, k_proj: key_dim -> out_dim, v_proj: value_dim -> out_dim,
//   out_proj: out_dim -> out_dim; num_heads must divide out_dim; scores scaled by 1/sqrt(dh).
// Initialised as PyTorch's nn.MultiheadAttention: Xavier-uniform q/k/v projections, zero
// biases. Dropout (on the attention weights) applies in training mode only.
template <class T> class MultiHeadCrossAttention : public Module<T>, public Callable<MultiHeadCrossAttention<T>> {
 public:
  MultiHeadCrossAttention(std::size_t query_dim, std::size_t num_heads, std::size_t key_dim, std::size_t value_dim,
                          std::size_t out_dim, bool bias = true, double dropout = 0.0,
                          Generator& gen = global_generator());
  // The same with options: (query_dim, heads, key_dim, value_dim, out_dim, {}, gen) passes
  // a generator without spelling out bias and dropout.
  MultiHeadCrossAttention(std::size_t query_dim, std::size_t num_heads, std::size_t key_dim, std::size_t value_dim,
                          std::size_t out_dim, const MultiHeadCrossAttentionOptions& options,
                          Generator& gen = global_generator())
      : MultiHeadCrossAttention(query_dim, num_heads, key_dim, value_dim, out_dim, options.bias, options.dropout, gen) {
  }

  // query (B,Lq,query_dim), key (B,Lk,key_dim), value (B,Lk,value_dim);
  // key_padding_mask (B,Lk) and attn_mask (Lq,Lk) or (B,Lq,Lk): true = may attend.
  // -> output (B,Lq,out_dim), weights averaged over heads (B,Lq,Lk) or per head (B,H,Lq,Lk).
  // The weights are for inspection (no gradient flows through them); need_weights = false
  // skips building them, as a training loop that does not read them should.
  AttentionResult<T> forward(const Tensor<T>& query, const Tensor<T>& key, const Tensor<T>& value,
                             const std::optional<AttendMask>& key_padding_mask = std::nullopt,
                             const std::optional<AttendMask>& attn_mask = std::nullopt, bool average_weights = true,
                             bool need_weights = true);

  // Every query batch element against every key/value batch element, with these weights:
  // queries (Bq,Lq,query_dim), keys (Bk,Lk,key_dim), values (Bk,Lk,value_dim),
  // key_padding_mask (Bk,Lk) -> output (Bq,Bk,Lq,out_dim), weights (Bq,Bk,Lq,Lk) averaged
  // or (Bq,Bk,H,Lq,Lk). Each side is projected once; the scores of all pairs are one
  // batched product per head, (Bq*Lq, dh) x (dh, Bk*Lk): never Bq*Bk separate calls; and
  // out_proj is folded into the values (out_proj->project_values, once per key element),
  // not applied to every pair.
  AttentionResult<T> forward_all_pairs(const Tensor<T>& queries, const Tensor<T>& keys, const Tensor<T>& values,
                                       const std::optional<AttendMask>& key_padding_mask = std::nullopt,
                                       bool average_weights = true, bool need_weights = true);
  // forward_all_pairs in two halves, for several batches of queries against the same keys
  // and values (align's evaluation scores a block of images against its captions in chunks):
  // keys (Bk,Lk,key_dim), values (Bk,Lk,value_dim), key_padding_mask (Bk,Lk) projected once,
  // then the queries against them, bit for bit forward_all_pairs' results.
  struct AllPairsKeys {
    Tensor<T> keys;                     // (Bk,Lk,out_dim): k_proj(keys)
    Tensor<T> values;                   // (H,Bk,Lk,out_dim): v_proj(values), out_proj folded in
    std::optional<Mask> allowed, dead;  // (Bk,Lk) key_padding_mask; (1,Bk,1,1) all-padding elements
  };
  AllPairsKeys project_all_pairs_keys(const Tensor<T>& keys, const Tensor<T>& values,
                                      const std::optional<AttendMask>& key_padding_mask = std::nullopt);
  AttentionResult<T> forward_all_pairs(const Tensor<T>& queries, const AllPairsKeys& keys, bool average_weights = true,
                                       bool need_weights = true);
  // forward_all_pairs keeping one pair's weights per query element: query element i against
  // key element weight_keys[i] (Bq of them, each < Bk) -> output (Bq,Bk,Lq,out_dim), weights
  // (Bq,Lq,Lk) averaged or (Bq,H,Lq,Lk) per head, bit for bit forward_all_pairs'
  // weights[i][weight_keys[i]]. For a caller that reads a few pairs (a caption's attention on
  // its own image): the other pairs' weights are never rearranged or averaged.
  AttentionResult<T> forward_all_pairs_selected(const Tensor<T>& queries, const Tensor<T>& keys,
                                                const Tensor<T>& values, const std::vector<std::size_t>& weight_keys,
                                                const std::optional<AttendMask>& key_padding_mask = std::nullopt,
                                                bool average_weights = true);
  AttentionResult<T> forward_all_pairs_selected(const Tensor<T>& queries, const AllPairsKeys& keys,
                                                const std::vector<std::size_t>& weight_keys,
                                                bool average_weights = true);

  // forward_all_pairs finished as a post-norm block scored by its mean query position:
  // output[qb, kb] = mean_t norm(queries[qb, t] + attention[qb, kb, t]) -> (Bq,Bk,out_dim),
  // weights as forward_all_pairs'. The queries are the residual, so query_dim must equal
  // out_dim, and norm normalises (out_dim). One op (attention_all_pairs_pooled): each key
  // element's block is finished in cache, and the (Bq,Bk,Lq,out_dim) arrays of the separate
  // calls never exist. Bit for bit their forward; the gradients sum in another order.
  AttentionResult<T> forward_all_pairs_pooled(const Tensor<T>& queries, const AllPairsKeys& keys, LayerNorm<T>& norm,
                                              bool average_weights = true, bool need_weights = true);

  std::string extra_repr() const override;

  const std::size_t query_dim, num_heads, key_dim, value_dim, out_dim, head_dim;
  const double dropout_p;
  std::shared_ptr<Linear<T>> q_proj, k_proj, v_proj;
  std::shared_ptr<OutputProjection<T>> out_proj;

 private:
  // Every all-pairs forward: output (Bq,Bk,Lq,out_dim), its pairs with only padding keys
  // zeroed, and the raw weights (H,Bq,Lq,Bk,Lk).
  FusedAttention<T> all_pairs(const Tensor<T>& queries, const AllPairsKeys& keys);
  // dropout_p while training, 0 in eval mode: what the fused ops are given.
  double active_dropout() const { return this->is_training() ? dropout_p : 0.0; }

  Generator dropout_gen_;
};

}  // namespace xtgrad
