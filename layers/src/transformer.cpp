// MultiheadAttention and the Transformer layers (transformer.hpp). The attention itself is
// the fused attention_heads op; this file projects, masks, and composes.
#include "xtgrad/transformer.hpp"
#include "xtgrad/init.hpp"

#include <cmath>
#include <stdexcept>

#include "attention_masks.hpp"

namespace xtgrad {
using namespace attention_masks;

namespace {
// (L, B, E) <-> (B, L, E) when the layer is not batch first
template <class T> Tensor<T> to_batch_first(const Tensor<T>& x, bool batch_first) {
  return batch_first ? x : transpose(x, 0, 1);
}

template <class T> Tensor<T> activate(const Tensor<T>& x, Activation a) {
  return a == Activation::relu ? relu(x) : gelu(x);
}

// query, key and value as the caller passed them, in the layer's layout ((L, B, E), or
// (B, L, E) when batch first): the messages show the shapes as given.
void check_inputs(const char* layer, bool batch_first, std::size_t embed, const Shape& q, const Shape& k,
                  const Shape& v) {
  const std::string layout = batch_first ? "(B, L, " : "(L, B, ";
  for (const auto& [what, shape] : {std::pair{"query", q}, std::pair{"key", k}, std::pair{"value", v}})
    if (shape.size() != 3 || shape[2] != embed)
      throw std::invalid_argument(std::string(layer) + ": " + what + " must be " + layout + std::to_string(embed) +
                                  "), got " + shape_str(shape));
  const std::size_t b = batch_first ? 0 : 1;
  if (k != v || q[b] != k[b])
    throw std::invalid_argument(std::string(layer) + ": query " + shape_str(q) + ", key " + shape_str(k) +
                                " and value " + shape_str(v) + " must share the batch, and key and value the length");
}

// Runs f; an invalid_argument from a layer inside comes out under this layer's name too.
template <class F> auto named(const char* layer, F&& f) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(layer) + ": " + e.what());
  }
}

void check_model_size(const char* layer, std::size_t d_model, std::size_t nhead) {
  if (d_model == 0 || nhead == 0 || d_model % nhead != 0)
    throw std::invalid_argument(std::string(layer) + ": d_model " + std::to_string(d_model) +
                                " must be a positive multiple of nhead " + std::to_string(nhead));
}
}  // namespace

// ---- MultiheadAttention ---------------------------------------------------------------
template <class T>
MultiheadAttention<T>::MultiheadAttention(std::size_t embed, std::size_t heads, double dropout, bool bias,
                                          bool batch_first, Generator& gen)
    : Module<T>("MultiheadAttention"),
      embed_dim(embed),
      num_heads(heads),
      dropout_p(dropout),
      batch_first(batch_first),
      dropout_gen_(gen.next_u64()) {
  if (embed == 0 || heads == 0 || embed % heads != 0)
    throw std::invalid_argument("MultiheadAttention: embed_dim " + std::to_string(embed) +
                                " must be a positive multiple of num_heads " + std::to_string(heads));
  check_probability("MultiheadAttention", "dropout", dropout);
  in_proj_weight = this->register_parameter("in_proj_weight", zeros<T>({3 * embed, embed}));
  init::xavier_uniform_(in_proj_weight, 1.0, gen);
  if (bias) in_proj_bias = this->register_parameter("in_proj_bias", zeros<T>({3 * embed}));
  out_proj = this->register_module("out_proj", std::make_shared<Linear<T>>(embed, embed, bias, gen));
  if (bias) init::zeros_(*out_proj->bias);
}

// x (B, L, E) -> its queries (which 0), keys (1) or values (2): rows which E.. of in_proj
template <class T> Tensor<T> MultiheadAttention<T>::project(const Tensor<T>& x, std::size_t which) const {
  const std::optional<Tensor<T>> b =
      in_proj_bias ? std::optional<Tensor<T>>(narrow(*in_proj_bias, 0, which * embed_dim, embed_dim)) : std::nullopt;
  return linear(x, narrow(in_proj_weight, 0, which * embed_dim, embed_dim), b);
}

template <class T>
MultiheadAttentionOutput<T> MultiheadAttention<T>::forward(const Tensor<T>& query, const Tensor<T>& key,
                                                           const Tensor<T>& value,
                                                           const std::optional<AttendMask>& key_padding_mask,
                                                           bool need_weights,
                                                           const std::optional<AttendMask>& attn_mask,
                                                           bool average_attn_weights, bool is_causal) {
  const char* layer = "MultiheadAttention";
  check_inputs(layer, batch_first, embed_dim, query.shape(), key.shape(), value.shape());
  const Tensor<T> q = to_batch_first(query, batch_first), k = to_batch_first(key, batch_first),
                  v = to_batch_first(value, batch_first);  // (B, L, E), (B, S, E)
  const Shape qs = q.shape(), ks = k.shape();
  std::optional<Mask> allowed, dead_rows;  // (B, L, S), (B, L, 1)
  if (key_padding_mask || attn_mask) {
    allowed = combine_masks(layer, qs[0], qs[1], ks[1], key_padding_mask, attn_mask);
    dead_rows = rows_allowing_nothing(*allowed);
  }
  const double p = this->is_training() ? dropout_p : 0.0;
  const FusedAttention<T> attended =
      attention_heads(project(q, 0), project(k, 1), project(v, 2), num_heads, allowed, p, &dropout_gen_, is_causal);
  MultiheadAttentionOutput<T> result{zero_dead_rows(out_proj->forward(attended.output), dead_rows), {}};
  result.output = to_batch_first(result.output, batch_first);  // back to (L, B, E) when seq first
  if (need_weights) {                                          // (B, H, L, S), or averaged over H
    const Array<T>& w = *attended.weights;
    result.weights = Tensor<T>(average_attn_weights ? Array<T>(xt::mean(w, {1})) : w);
  }
  return result;
}

template <class T> Tensor<T> MultiheadAttention<T>::forward_step(const Tensor<T>& x, AttentionCache<T>& cache) {
  check_3d("MultiheadAttention.forward_step", "x", x.shape(), embed_dim);
  if (x.shape()[1] != 1 || (cache.steps() && cache.keys.shape()[0] != x.shape()[0]))
    throw std::invalid_argument("MultiheadAttention.forward_step: x must be (B, 1, E) with the cache's batch, got " +
                                shape_str(x.shape()) + " for a cache of " + std::to_string(cache.steps()) + " steps" +
                                (cache.steps() ? " and batch " + std::to_string(cache.keys.shape()[0]) : ""));
  const Tensor<T> k = project(x, 1), v = project(x, 2);  // (B, 1, E)
  const bool first = cache.steps() == 0;
  cache.keys = first ? k : concat<T>({cache.keys, k}, 1);  // (B, steps + 1, E)
  cache.values = first ? v : concat<T>({cache.values, v}, 1);
  const double p = this->is_training() ? dropout_p : 0.0;
  return out_proj->forward(
      attention_heads(project(x, 0), cache.keys, cache.values, num_heads, std::nullopt, p, &dropout_gen_).output);
}

template <class T>
Tensor<T> MultiheadAttention<T>::forward_step_memory(const Tensor<T>& x, const AttentionCache<T>& memory,
                                                     Tensor<T>* weights) {
  check_3d("MultiheadAttention.forward_step_memory", "x", x.shape(), embed_dim);
  if (!memory.steps() || memory.keys.shape()[0] != x.shape()[0])
    throw std::invalid_argument("MultiheadAttention.forward_step_memory: x " + shape_str(x.shape()) +
                                " does not match the projected memory (project_memory first)");
  const double p = this->is_training() ? dropout_p : 0.0;
  const FusedAttention<T> attended =
      attention_heads(project(x, 0), memory.keys, memory.values, num_heads, std::nullopt, p, &dropout_gen_);
  if (weights) *weights = Tensor<T>(Array<T>(xt::mean(*attended.weights, {1})));  // (B, H, 1, S) -> (B, 1, S)
  return out_proj->forward(attended.output);
}

template <class T> AttentionCache<T> MultiheadAttention<T>::project_memory(const Tensor<T>& memory) {
  check_3d("MultiheadAttention.project_memory", "memory", memory.shape(), embed_dim);
  return {project(memory, 1), project(memory, 2)};
}

template <class T> std::string MultiheadAttention<T>::extra_repr() const {
  return "embed_dim=" + std::to_string(embed_dim) + ", num_heads=" + std::to_string(num_heads) +
         ", dropout=" + float_repr(dropout_p) + (batch_first ? ", batch_first=true" : "");
}

// ---- TransformerEncoderLayer ----------------------------------------------------------
template <class T>
TransformerEncoderLayer<T>::TransformerEncoderLayer(std::size_t d_model, std::size_t nhead, std::size_t ff, double p,
                                                    Activation act, double eps, bool batch_first, bool norm_first,
                                                    Generator& gen)
    : UnaryModule<T>("TransformerEncoderLayer"), norm_first(norm_first), activation(act) {
  check_model_size("TransformerEncoderLayer", d_model, nhead);
  self_attn = this->register_module("self_attn",
                                    std::make_shared<MultiheadAttention<T>>(d_model, nhead, p, true, batch_first, gen));
  linear1 = this->register_module("linear1", std::make_shared<Linear<T>>(d_model, ff, true, gen));
  dropout = this->register_module("dropout", std::make_shared<Dropout<T>>(p, gen));
  linear2 = this->register_module("linear2", std::make_shared<Linear<T>>(ff, d_model, true, gen));
  norm1 = this->register_module("norm1", std::make_shared<LayerNorm<T>>(Shape{d_model}, eps));
  norm2 = this->register_module("norm2", std::make_shared<LayerNorm<T>>(Shape{d_model}, eps));
  dropout1 = this->register_module("dropout1", std::make_shared<Dropout<T>>(p, gen));
  dropout2 = this->register_module("dropout2", std::make_shared<Dropout<T>>(p, gen));
}

template <class T> Tensor<T> TransformerEncoderLayer<T>::feed_forward(const Tensor<T>& x) {
  return dropout2->forward(linear2->forward(dropout->forward(activate(linear1->forward(x), activation))));
}

template <class T>
Tensor<T> TransformerEncoderLayer<T>::forward(const Tensor<T>& src, const std::optional<AttendMask>& src_mask,
                                              const std::optional<AttendMask>& src_key_padding_mask, bool is_causal) {
  const auto attend = [&](const Tensor<T>& x) {
    return dropout1->forward(
        self_attn->forward(x, x, x, src_key_padding_mask, false, src_mask, true, is_causal).output);
  };
  const bool bf = self_attn->batch_first;
  check_inputs("TransformerEncoderLayer", bf, self_attn->embed_dim, src.shape(), src.shape(), src.shape());
  return named("TransformerEncoderLayer", [&] {  // mask errors come from the attention, under this name too
    if (norm_first) {
      const Tensor<T> x = src + attend(norm1->forward(src));
      return x + feed_forward(norm2->forward(x));
    }
    const Tensor<T> x = norm1->forward(src + attend(src));
    return norm2->forward(x + feed_forward(x));
  });
}

// ---- TransformerDecoderLayer ----------------------------------------------------------
template <class T>
TransformerDecoderLayer<T>::TransformerDecoderLayer(std::size_t d_model, std::size_t nhead, std::size_t ff, double p,
                                                    Activation act, double eps, bool batch_first, bool norm_first,
                                                    Generator& gen)
    : Module<T>("TransformerDecoderLayer"), norm_first(norm_first), batch_first(batch_first), activation(act) {
  check_model_size("TransformerDecoderLayer", d_model, nhead);
  const auto attention = [&] {
    return std::make_shared<MultiheadAttention<T>>(d_model, nhead, p, true, batch_first, gen);
  };
  self_attn = this->register_module("self_attn", attention());
  multihead_attn = this->register_module("multihead_attn", attention());
  linear1 = this->register_module("linear1", std::make_shared<Linear<T>>(d_model, ff, true, gen));
  dropout = this->register_module("dropout", std::make_shared<Dropout<T>>(p, gen));
  linear2 = this->register_module("linear2", std::make_shared<Linear<T>>(ff, d_model, true, gen));
  norm1 = this->register_module("norm1", std::make_shared<LayerNorm<T>>(Shape{d_model}, eps));
  norm2 = this->register_module("norm2", std::make_shared<LayerNorm<T>>(Shape{d_model}, eps));
  norm3 = this->register_module("norm3", std::make_shared<LayerNorm<T>>(Shape{d_model}, eps));
  dropout1 = this->register_module("dropout1", std::make_shared<Dropout<T>>(p, gen));
  dropout2 = this->register_module("dropout2", std::make_shared<Dropout<T>>(p, gen));
  dropout3 = this->register_module("dropout3", std::make_shared<Dropout<T>>(p, gen));
}

template <class T> Tensor<T> TransformerDecoderLayer<T>::feed_forward(const Tensor<T>& x) {
  return dropout3->forward(linear2->forward(dropout->forward(activate(linear1->forward(x), activation))));
}

template <class T>
Tensor<T> TransformerDecoderLayer<T>::forward(const Tensor<T>& tgt, const Tensor<T>& memory,
                                              const std::optional<AttendMask>& tgt_mask,
                                              const std::optional<AttendMask>& memory_mask,
                                              const std::optional<AttendMask>& tgt_key_padding_mask,
                                              const std::optional<AttendMask>& memory_key_padding_mask,
                                              bool tgt_is_causal) {
  const auto self_block = [&](const Tensor<T>& x) {
    return dropout1->forward(
        self_attn->forward(x, x, x, tgt_key_padding_mask, false, tgt_mask, true, tgt_is_causal).output);
  };
  const auto memory_block = [&](const Tensor<T>& x) {
    auto attended =
        multihead_attn->forward(x, memory, memory, memory_key_padding_mask, keep_memory_weights, memory_mask);
    if (keep_memory_weights) memory_weights = attended.weights;
    return dropout2->forward(attended.output);
  };
  const char* layer = "TransformerDecoderLayer";
  check_inputs(layer, batch_first, self_attn->embed_dim, tgt.shape(), memory.shape(), memory.shape());
  return named(layer, [&] {  // mask errors come from the attention, under this name too
    if (norm_first) {
      Tensor<T> x = tgt + self_block(norm1->forward(tgt));
      x = x + memory_block(norm2->forward(x));
      return x + feed_forward(norm3->forward(x));
    }
    Tensor<T> x = norm1->forward(tgt + self_block(tgt));
    x = norm2->forward(x + memory_block(x));
    return norm3->forward(x + feed_forward(x));
  });
}

template <class T>
DecoderLayerCache<T> TransformerDecoderLayer<T>::start_decoding(const Tensor<T>& memory, bool need_weights) {
  return named("TransformerDecoderLayer.start_decoding", [&] {
    return DecoderLayerCache<T>{{}, multihead_attn->project_memory(memory), need_weights, {}};
  });
}

// The same blocks as forward, on one position, with the attention reading the cache.
template <class T> Tensor<T> TransformerDecoderLayer<T>::forward_step(const Tensor<T>& x, DecoderLayerCache<T>& cache) {
  const auto self_block = [&](const Tensor<T>& h) {
    return dropout1->forward(self_attn->forward_step(h, cache.self_attn));
  };
  const auto memory_block = [&](const Tensor<T>& h) {
    return dropout2->forward(
        multihead_attn->forward_step_memory(h, cache.memory, cache.need_weights ? &cache.memory_weights : nullptr));
  };
  // Checked before anything is appended to the cache: a refused step leaves it as it was.
  const std::size_t E = self_attn->embed_dim, batch = cache.memory.steps() ? cache.memory.keys.shape()[0] : 0;
  if (x.dim() != 3 || x.shape()[0] != batch || x.shape()[1] != 1 || x.shape()[2] != E)
    throw std::invalid_argument("TransformerDecoderLayer.forward_step: x must be (B, 1, " + std::to_string(E) +
                                ") with the memory's batch B = " + std::to_string(batch) +
                                " (start_decoding first), got " + shape_str(x.shape()));
  if (norm_first) {
    Tensor<T> h = x + self_block(norm1->forward(x));
    h = h + memory_block(norm2->forward(h));
    return h + feed_forward(norm3->forward(h));
  }
  Tensor<T> h = norm1->forward(x + self_block(x));
  h = norm2->forward(h + memory_block(h));
  return norm3->forward(h + feed_forward(h));
}

// ---- stacks ---------------------------------------------------------------------------
namespace {
// num_layers layers made by make_layer, registered in a ModuleList "layers" of owner, and
// the final LayerNorm "norm" when asked: what both stacks are made of.
template <class T, class Layer, class Make>
void build_stack(Module<T>& owner, std::size_t num_layers, const Make& make_layer, bool final_norm, std::size_t d_model,
                 double eps, std::vector<std::shared_ptr<Layer>>& layers, std::shared_ptr<LayerNorm<T>>& norm) {
  auto list = owner.register_module("layers", std::make_shared<ModuleList<T>>());
  for (std::size_t i = 0; i < num_layers; ++i) layers.push_back(list->push_back(make_layer()));
  if (final_norm) norm = owner.register_module("norm", std::make_shared<LayerNorm<T>>(Shape{d_model}, eps));
}
}  // namespace

template <class T>
TransformerEncoder<T>::TransformerEncoder(std::size_t num_layers, std::size_t d_model, std::size_t nhead,
                                          std::size_t ff, double p, Activation act, double eps, bool batch_first,
                                          bool norm_first, bool final_norm, Generator& gen)
    : UnaryModule<T>("TransformerEncoder") {
  const auto make_layer = [&] {
    return std::make_shared<TransformerEncoderLayer<T>>(d_model, nhead, ff, p, act, eps, batch_first, norm_first, gen);
  };
  build_stack<T>(*this, num_layers, make_layer, final_norm, d_model, eps, layers, norm);
}

template <class T>
Tensor<T> TransformerEncoder<T>::forward(const Tensor<T>& src, const std::optional<AttendMask>& mask,
                                         const std::optional<AttendMask>& src_key_padding_mask, bool is_causal) {
  Tensor<T> x = src;
  for (auto& layer : layers) x = layer->forward(x, mask, src_key_padding_mask, is_causal);
  return norm ? norm->forward(x) : x;
}

template <class T>
TransformerDecoder<T>::TransformerDecoder(std::size_t num_layers, std::size_t d_model, std::size_t nhead,
                                          std::size_t ff, double p, Activation act, double eps, bool batch_first,
                                          bool norm_first, bool final_norm, Generator& gen)
    : Module<T>("TransformerDecoder") {
  const auto make_layer = [&] {
    return std::make_shared<TransformerDecoderLayer<T>>(d_model, nhead, ff, p, act, eps, batch_first, norm_first, gen);
  };
  build_stack<T>(*this, num_layers, make_layer, final_norm, d_model, eps, layers, norm);
}

template <class T>
Tensor<T> TransformerDecoder<T>::forward(const Tensor<T>& tgt, const Tensor<T>& memory,
                                         const std::optional<AttendMask>& tgt_mask,
                                         const std::optional<AttendMask>& memory_mask,
                                         const std::optional<AttendMask>& tgt_key_padding_mask,
                                         const std::optional<AttendMask>& memory_key_padding_mask, bool tgt_is_causal) {
  Tensor<T> x = tgt;
  for (auto& layer : layers)
    x = layer->forward(x, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal);
  return norm ? norm->forward(x) : x;
}

template <class T>
std::vector<DecoderLayerCache<T>> TransformerDecoder<T>::start_decoding(const Tensor<T>& memory, bool need_weights) {
  std::vector<DecoderLayerCache<T>> caches;
  for (auto& layer : layers) caches.push_back(layer->start_decoding(memory, need_weights));
  return caches;
}

template <class T>
Tensor<T> TransformerDecoder<T>::forward_step(const Tensor<T>& x, std::vector<DecoderLayerCache<T>>& caches) {
  if (caches.size() != layers.size())
    throw std::invalid_argument("TransformerDecoder.forward_step: " + std::to_string(caches.size()) + " caches for " +
                                std::to_string(layers.size()) + " layers (start_decoding first)");
  Tensor<T> h = x;
  for (std::size_t i = 0; i < layers.size(); ++i) h = layers[i]->forward_step(h, caches[i]);
  return norm ? norm->forward(h) : h;
}

template class MultiheadAttention<float>;
template class MultiheadAttention<double>;
template class TransformerEncoderLayer<float>;
template class TransformerEncoderLayer<double>;
template class TransformerDecoderLayer<float>;
template class TransformerDecoderLayer<double>;
template class TransformerEncoder<float>;
template class TransformerEncoder<double>;
template class TransformerDecoder<float>;
template class TransformerDecoder<double>;

}  // namespace xtgrad
