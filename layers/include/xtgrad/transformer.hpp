// Self-attention and Transformer layers as torch.nn names them: MultiheadAttention,
// TransformerEncoderLayer, TransformerDecoderLayer, with PyTorch's parameter names
// (self_attn.in_proj_weight, self_attn.out_proj.weight, linear1.weight, norm1.weight, ...),
// defaults and initialisation, so a PyTorch state_dict loads by its keys. One difference,
// kept from the rest of xtgrad: masks are AttendMasks that say where attention is ALLOWED
// (true = may attend); PyTorch's boolean masks say where it is not: pass a ported one
// through padding_mask(), which inverts it.
//
// Decoding token by token: a KVCache holds, per decoder layer, the self-attention keys and
// values of the steps so far and the memory's keys and values (projected once);
// TransformerDecoderLayer::forward_step attends over them without recomputing the prefix.
// start_decoding(memory, /*need_weights=*/true) also keeps each step's cross-attention
// weights in the cache (memory_weights), e.g. to show where a generated word looked.
#pragma once

#include <optional>
#include <string>

#include "xtgrad/layers.hpp"
#include "xtgrad/module.hpp"
#include "xtgrad/ops.hpp"
#include "xtgrad/options.hpp"

namespace xtgrad {

template <class T> struct MultiheadAttentionOutput {
  Tensor<T> output;   // (L, B, E), or (B, L, E) when batch_first
  Tensor<T> weights;  // (B, L, S) averaged over heads, or (B, H, L, S); undefined unless asked
};

// The keys and values one attention has seen so far: (B, steps, E) each, in the
// attention's projected form (after in_proj, before the split into heads).
template <class T> struct AttentionCache {
  Tensor<T> keys, values;
  std::size_t steps() const { return keys.defined() ? keys.shape()[1] : 0; }
};

template <class T> class MultiheadAttention : public Module<T>, public Callable<MultiheadAttention<T>> {
 public:
  // in_proj_weight (3E, E) ~ xavier_uniform, in_proj_bias (3E) and out_proj.bias zeros,
  // out_proj.weight as Linear's, as PyTorch initialises them.
  MultiheadAttention(std::size_t embed_dim, std::size_t num_heads, double dropout = 0.0, bool bias = true,
                     bool batch_first = false, Generator& gen = global_generator());
  MultiheadAttention(std::size_t embed_dim, std::size_t num_heads, const MultiheadAttentionOptions& o,
                     Generator& gen = global_generator())
      : MultiheadAttention(embed_dim, num_heads, o.dropout, o.bias, o.batch_first, gen) {}
  // query (L, B, E), key and value (S, B, E) (batch first: (B, L, E), (B, S, E)).
  // key_padding_mask (B, S) and attn_mask (L, S) or (B, L, S): true = may attend.
  // is_causal: query i attends to keys 0..i + S - L, inside the fused op (no (L, S) mask).
  MultiheadAttentionOutput<T> forward(const Tensor<T>& query, const Tensor<T>& key, const Tensor<T>& value,
                                      const std::optional<AttendMask>& key_padding_mask = std::nullopt,
                                      bool need_weights = true,
                                      const std::optional<AttendMask>& attn_mask = std::nullopt,
                                      bool average_attn_weights = true, bool is_causal = false);
  // One more query step of self-attention: x (B, 1, E) batch first whatever batch_first
  // says; its key and value are appended to cache, and it attends to every cached step.
  Tensor<T> forward_step(const Tensor<T>& x, AttentionCache<T>& cache);
  // Cross-attention of x (B, 1, E) over keys and values already in cache (a memory
  // projected once by project_memory). With `weights` given, *weights is set to the
  // attention weights (B, 1, S) averaged over heads, what forward with need_weights gives
  // at this position (no gradient flows through them); without, nothing extra is done.
  Tensor<T> forward_step_memory(const Tensor<T>& x, const AttentionCache<T>& memory, Tensor<T>* weights = nullptr);
  // memory (B, S, E) -> its projected keys and values
  AttentionCache<T> project_memory(const Tensor<T>& memory);
  std::string extra_repr() const override;

  const std::size_t embed_dim, num_heads;
  const double dropout_p;
  const bool batch_first;
  Tensor<T> in_proj_weight;
  std::optional<Tensor<T>> in_proj_bias;
  std::shared_ptr<Linear<T>> out_proj;

 private:
  Tensor<T> project(const Tensor<T>& x, std::size_t which) const;  // which: 0 q, 1 k, 2 v
  Generator dropout_gen_;
};

// Post-norm (norm_first = false, PyTorch's default): x = norm1(x + sa(x)); x = norm2(x + ff(x)).
// Pre-norm: x = x + sa(norm1(x)); x = x + ff(norm2(x)). ff = linear2(dropout(act(linear1))).
template <class T> class TransformerEncoderLayer : public UnaryModule<T>, public Callable<TransformerEncoderLayer<T>> {
 public:
  using Callable<TransformerEncoderLayer<T>>::operator();  // (src, masks...) as well as (src)
  TransformerEncoderLayer(std::size_t d_model, std::size_t nhead, std::size_t dim_feedforward = 2048,
                          double dropout = 0.1, Activation activation = Activation::relu, double layer_norm_eps = 1e-5,
                          bool batch_first = false, bool norm_first = false, Generator& gen = global_generator());
  TransformerEncoderLayer(std::size_t d_model, std::size_t nhead, const TransformerLayerOptions& o,
                          Generator& gen = global_generator())
      : TransformerEncoderLayer(d_model, nhead, o.dim_feedforward, o.dropout, o.activation, o.layer_norm_eps,
                                o.batch_first, o.norm_first, gen) {}
  Tensor<T> forward(const Tensor<T>& src) override { return forward(src, std::nullopt, std::nullopt, false); }
  // src (S, B, E) or (B, S, E); src_mask (S, S), src_key_padding_mask (B, S): true = may attend.
  Tensor<T> forward(const Tensor<T>& src, const std::optional<AttendMask>& src_mask,
                    const std::optional<AttendMask>& src_key_padding_mask, bool is_causal = false);

  const bool norm_first;
  const Activation activation;
  std::shared_ptr<MultiheadAttention<T>> self_attn;
  std::shared_ptr<Linear<T>> linear1, linear2;
  std::shared_ptr<LayerNorm<T>> norm1, norm2;
  std::shared_ptr<Dropout<T>> dropout, dropout1, dropout2;

 private:
  Tensor<T> feed_forward(const Tensor<T>& x);
};

// The per-layer cache of step-by-step decoding. With need_weights (start_decoding's
// argument), each forward_step also keeps its cross-attention weights over the memory:
// memory_weights (B, 1, S), averaged over heads, as multihead_attn's forward with
// need_weights gives at that position; without it memory_weights stays undefined.
template <class T> struct DecoderLayerCache {
  AttentionCache<T> self_attn;  // grows by one step per forward_step
  AttentionCache<T> memory;     // the memory's keys and values, projected once
  bool need_weights = false;
  Tensor<T> memory_weights;  // (B, 1, S): the last step's, with need_weights
};

// Self-attention (causal when asked), cross-attention to a memory, feed-forward; post- or
// pre-norm as the encoder layer. Names: self_attn, multihead_attn, linear1, linear2,
// norm1, norm2, norm3, dropout, dropout1, dropout2, dropout3.
template <class T> class TransformerDecoderLayer : public Module<T>, public Callable<TransformerDecoderLayer<T>> {
 public:
  TransformerDecoderLayer(std::size_t d_model, std::size_t nhead, std::size_t dim_feedforward = 2048,
                          double dropout = 0.1, Activation activation = Activation::relu, double layer_norm_eps = 1e-5,
                          bool batch_first = false, bool norm_first = false, Generator& gen = global_generator());
  TransformerDecoderLayer(std::size_t d_model, std::size_t nhead, const TransformerLayerOptions& o,
                          Generator& gen = global_generator())
      : TransformerDecoderLayer(d_model, nhead, o.dim_feedforward, o.dropout, o.activation, o.layer_norm_eps,
                                o.batch_first, o.norm_first, gen) {}
  // tgt (T, B, E), memory (S, B, E) (or batch first); masks true = may attend.
  Tensor<T> forward(const Tensor<T>& tgt, const Tensor<T>& memory,
                    const std::optional<AttendMask>& tgt_mask = std::nullopt,
                    const std::optional<AttendMask>& memory_mask = std::nullopt,
                    const std::optional<AttendMask>& tgt_key_padding_mask = std::nullopt,
                    const std::optional<AttendMask>& memory_key_padding_mask = std::nullopt,
                    bool tgt_is_causal = false);
  // Step-by-step decoding (eval mode): memory (B, S, E) batch first -> a fresh cache;
  // need_weights: every step keeps its cross-attention weights (cache.memory_weights).
  DecoderLayerCache<T> start_decoding(const Tensor<T>& memory, bool need_weights = false);
  // For inspection (where each target position looked): with keep_memory_weights set,
  // forward keeps its cross-attention weights (B, T, S), averaged over heads, in
  // memory_weights (no gradient flows through them); off, memory_weights is left alone.
  // PyTorch's layer calls its multihead_attn with need_weights=False and offers only hooks.
  bool keep_memory_weights = false;
  Tensor<T> memory_weights;
  // The next target position: x (B, 1, E) batch first -> (B, 1, E), as the causal forward
  // gives at that position.
  Tensor<T> forward_step(const Tensor<T>& x, DecoderLayerCache<T>& cache);

  const bool norm_first, batch_first;
  const Activation activation;
  std::shared_ptr<MultiheadAttention<T>> self_attn, multihead_attn;
  std::shared_ptr<Linear<T>> linear1, linear2;
  std::shared_ptr<LayerNorm<T>> norm1, norm2, norm3;
  std::shared_ptr<Dropout<T>> dropout, dropout1, dropout2, dropout3;

 private:
  Tensor<T> feed_forward(const Tensor<T>& x);
};

// num_layers encoder layers of the same settings, then (final_norm) a LayerNorm, as
// PyTorch's TransformerEncoder(layer, num_layers, norm): names "layers.0.self_attn...",
// "norm.weight".
template <class T> class TransformerEncoder : public UnaryModule<T>, public Callable<TransformerEncoder<T>> {
 public:
  using Callable<TransformerEncoder<T>>::operator();  // (src, masks...) as well as (src)
  TransformerEncoder(std::size_t num_layers, std::size_t d_model, std::size_t nhead, std::size_t dim_feedforward = 2048,
                     double dropout = 0.1, Activation activation = Activation::relu, double layer_norm_eps = 1e-5,
                     bool batch_first = false, bool norm_first = false, bool final_norm = false,
                     Generator& gen = global_generator());
  Tensor<T> forward(const Tensor<T>& src) override { return forward(src, std::nullopt, std::nullopt, false); }
  Tensor<T> forward(const Tensor<T>& src, const std::optional<AttendMask>& mask,
                    const std::optional<AttendMask>& src_key_padding_mask, bool is_causal = false);

  std::vector<std::shared_ptr<TransformerEncoderLayer<T>>> layers;
  std::shared_ptr<LayerNorm<T>> norm;  // null without final_norm
};

// num_layers decoder layers, then (final_norm) a LayerNorm, as PyTorch's
// TransformerDecoder; decoding step by step keeps one cache per layer.
template <class T> class TransformerDecoder : public Module<T>, public Callable<TransformerDecoder<T>> {
 public:
  TransformerDecoder(std::size_t num_layers, std::size_t d_model, std::size_t nhead, std::size_t dim_feedforward = 2048,
                     double dropout = 0.1, Activation activation = Activation::relu, double layer_norm_eps = 1e-5,
                     bool batch_first = false, bool norm_first = false, bool final_norm = false,
                     Generator& gen = global_generator());
  Tensor<T> forward(const Tensor<T>& tgt, const Tensor<T>& memory,
                    const std::optional<AttendMask>& tgt_mask = std::nullopt,
                    const std::optional<AttendMask>& memory_mask = std::nullopt,
                    const std::optional<AttendMask>& tgt_key_padding_mask = std::nullopt,
                    const std::optional<AttendMask>& memory_key_padding_mask = std::nullopt,
                    bool tgt_is_causal = false);
  // memory (B, S, E) batch first -> one cache per layer (need_weights: each keeps its
  // layer's cross-attention weights of the last step, caches[i].memory_weights (B, 1, S))
  std::vector<DecoderLayerCache<T>> start_decoding(const Tensor<T>& memory, bool need_weights = false);
  // x (B, 1, E) batch first -> (B, 1, E), as the causal forward at that position
  Tensor<T> forward_step(const Tensor<T>& x, std::vector<DecoderLayerCache<T>>& caches);

  std::vector<std::shared_ptr<TransformerDecoderLayer<T>>> layers;
  std::shared_ptr<LayerNorm<T>> norm;  // null without final_norm
};

}  // namespace xtgrad
