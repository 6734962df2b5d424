#include "xtgrad/attention.hpp"
#include "xtgrad/init.hpp"

#include "attention_masks.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <stdexcept>

namespace xtgrad {
using namespace attention_masks;

namespace {

// weights (H,Bq,Lq,Bk,Lk), as the all-pairs op computes them (one product per head) ->
// (Bq,K,H,Lq,Lk), or averaged over the heads (Bq,K,Lq,Lk): for every key element kb
// (K = Bk), or, given keys, for kb = keys[qb] alone (K = 1). Both layouts hold rows of Lk
// weights (one query token against one key element) in another order: row (h,qb,t,kb)
// moves whole, to row (qb,kb,h,t) (or is added, divided by H, to row (qb,kb,t)); the heads
// are added in order, so a selected pair's average is the same bits as in the full one.
template <class T>
Array<T> pair_weights(const Array<T>& weights, bool average, const std::vector<std::size_t>* keys = nullptr) {
  const std::size_t H = weights.shape()[0], Bq = weights.shape()[1], Lq = weights.shape()[2];
  const std::size_t Bk = weights.shape()[3], Lk = weights.shape()[4], K = keys ? 1 : Bk;
  Array<T> out = average ? Array<T>(xt::zeros<T>({Bq, K, Lq, Lk})) : Array<T>(Shape{Bq, K, H, Lq, Lk});
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t qb = 0; qb < Bq; ++qb)
      for (std::size_t t = 0; t < Lq; ++t)
        for (std::size_t k = 0; k < K; ++k) {
          const std::size_t kb = keys ? (*keys)[qb] : k;
          const T* from = weights.data() + (((h * Bq + qb) * Lq + t) * Bk + kb) * Lk;
          if (average) {
            T* to = out.data() + ((qb * K + k) * Lq + t) * Lk;
            for (std::size_t j = 0; j < Lk; ++j) to[j] += from[j] / T(H);
          } else {
            std::copy_n(from, Lk, out.data() + (((qb * K + k) * H + h) * Lq + t) * Lk);
          }
        }
  return out;
}

}  // namespace

// ---- CrossAttention -------------------------------------------------------------------
template <class T>
CrossAttention<T>::CrossAttention(std::size_t dq, std::size_t dk, std::size_t dv, std::size_t dout, Generator& gen)
    : Module<T>("CrossAttention"), dim_query(dq), dim_key(dk), dim_value(dv), dim_output(dout) {
  query_linear = this->register_module("query_linear", std::make_shared<Linear<T>>(dq, dout, true, gen));
  key_linear = this->register_module("key_linear", std::make_shared<Linear<T>>(dk, dout, true, gen));
  value_linear = this->register_module("value_linear", std::make_shared<Linear<T>>(dv, dout, true, gen));
  output_linear = this->register_module("output_linear", std::make_shared<Linear<T>>(dout, dout, true, gen));
}

template <class T>
AttentionResult<T> CrossAttention<T>::forward(const Tensor<T>& query, const Tensor<T>& key, const Tensor<T>& value) {
  const Shape qs = check_3d("CrossAttention", "query", query.shape(), dim_query);
  const Shape ks = check_3d("CrossAttention", "key", key.shape(), dim_key);
  const Shape vs = check_3d("CrossAttention", "value", value.shape(), dim_value);
  check_key_value("CrossAttention", qs, ks, vs, true);
  const Tensor<T> q = query_linear->forward(query);  // (B,Lq,D)
  const Tensor<T> k = key_linear->forward(key);      // (B,Lk,D)
  const Tensor<T> v = value_linear->forward(value);  // (B,Lk,D)
  // The seed divides by sqrt(K.size(-1)): K's last size after projection is dim_output.
  const Tensor<T> scores = matmul(q, transpose(k, -2, -1)) * T(1.0 / std::sqrt(double(dim_output)));  // (B,Lq,Lk)
  const Tensor<T> weights = softmax(scores, -1);
  const Tensor<T> context = matmul(weights, v);  // (B,Lq,D)
  return {output_linear->forward(context), weights};
}

// ---- OutputProjection -----------------------------------------------------------------
template <class T>
OutputProjection<T>::OutputProjection(std::size_t dim, std::size_t out_dim, std::size_t heads, bool bias,
                                      Generator& gen)
    : Linear<T>("OutputProjection", dim, out_dim, bias, gen), heads(heads) {}

template <class T> Tensor<T> OutputProjection<T>::project_values(const Tensor<T>& v) const {
  return head_values_projected(v, this->weight, heads);
}

template <class T> std::string OutputProjection<T>::extra_repr() const {
  return Linear<T>::extra_repr() + ", heads=" + std::to_string(heads);
}

// ---- MultiHeadCrossAttention ----------------------------------------------------------
template <class T>
MultiHeadCrossAttention<T>::MultiHeadCrossAttention(std::size_t qd, std::size_t heads, std::size_t kd, std::size_t vd,
                                                    std::size_t od, bool bias, double dropout, Generator& gen)
    : Module<T>("MultiHeadCrossAttention"),
      query_dim(qd),
      num_heads(heads),
      key_dim(kd),
      value_dim(vd),
      out_dim(od),
      head_dim(heads ? od / heads : 0),
      dropout_p(dropout),
      dropout_gen_(gen.next_u64()) {
  if (heads == 0 || od % heads != 0)
    throw std::invalid_argument("MultiHeadCrossAttention: num_heads = " + std::to_string(heads) +
                                " must divide out_dim = " + std::to_string(od));
  check_probability("MultiHeadCrossAttention", "dropout", dropout);
  q_proj = this->register_module("q_proj", std::make_shared<Linear<T>>(qd, od, bias, gen));
  k_proj = this->register_module("k_proj", std::make_shared<Linear<T>>(kd, od, bias, gen));
  v_proj = this->register_module("v_proj", std::make_shared<Linear<T>>(vd, od, bias, gen));
  out_proj = this->register_module("out_proj", std::make_shared<OutputProjection<T>>(od, od, heads, bias, gen));
  // PyTorch's nn.MultiheadAttention initialisation: Xavier-uniform query, key and value
  // projections and zero biases (out_proj keeps Linear's weight initialisation). When all
  // widths are equal PyTorch initialises the three as one (3 out, in) matrix, whose Xavier
  // bound is smaller; we follow it there too.
  const std::initializer_list<Linear<T>*> qkv{q_proj.get(), k_proj.get(), v_proj.get()};
  if (qd == od && kd == od && vd == od) {
    Tensor<T> stacked = zeros<T>({3 * od, qd});  // q's rows, then k's, then v's
    init::xavier_uniform_(stacked, 1.0, gen);
    std::size_t offset = 0;
    for (Linear<T>* proj : qkv) {
      std::copy_n(stacked.data().data() + offset, od * qd, proj->weight.mutable_data().data());
      offset += od * qd;
    }
  } else {
    for (Linear<T>* proj : qkv) init::xavier_uniform_(proj->weight, 1.0, gen);
  }
  for (Linear<T>* proj : {q_proj.get(), k_proj.get(), v_proj.get(), static_cast<Linear<T>*>(out_proj.get())})
    if (proj->bias) init::zeros_(*proj->bias);
}

template <class T>
AttentionResult<T> MultiHeadCrossAttention<T>::forward(const Tensor<T>& query, const Tensor<T>& key,
                                                       const Tensor<T>& value,
                                                       const std::optional<AttendMask>& key_padding_mask,
                                                       const std::optional<AttendMask>& attn_mask, bool average_weights,
                                                       bool need_weights) {
  const char* layer = "MultiHeadCrossAttention";
  const Shape qs = check_3d(layer, "query", query.shape(), query_dim);
  const Shape ks = check_3d(layer, "key", key.shape(), key_dim);
  const Shape vs = check_3d(layer, "value", value.shape(), value_dim);
  check_key_value(layer, qs, ks, vs, true);
  std::optional<Mask> allowed, dead_rows;  // allowed (B,Lq,Lk), dead_rows (B,Lq,1)
  if (key_padding_mask || attn_mask) {
    allowed = combine_masks(layer, qs[0], qs[1], ks[1], key_padding_mask, attn_mask);
    dead_rows = rows_allowing_nothing(*allowed);
  }
  const FusedAttention<T> attended =
      attention_heads(q_proj->forward(query), k_proj->forward(key), v_proj->forward(value), num_heads, allowed,
                      active_dropout(), &dropout_gen_);                                          // (B,Lq,D)
  AttentionResult<T> result{zero_dead_rows(out_proj->forward(attended.output), dead_rows), {}};  // (B,Lq,out_dim)
  if (need_weights) {  // weights (B,H,Lq,Lk), averaged over H on request
    const Array<T>& w = *attended.weights;
    result.weights = Tensor<T>(average_weights ? Array<T>(xt::mean(w, {1})) : w);
  }
  return result;
}

template <class T>
AttentionResult<T> MultiHeadCrossAttention<T>::forward_all_pairs(const Tensor<T>& queries, const Tensor<T>& keys,
                                                                 const Tensor<T>& values,
                                                                 const std::optional<AttendMask>& key_padding_mask,
                                                                 bool average_weights, bool need_weights) {
  check_3d("MultiHeadCrossAttention.forward_all_pairs", "queries", queries.shape(), query_dim);  // first
  return forward_all_pairs(queries, project_all_pairs_keys(keys, values, key_padding_mask), average_weights,
                           need_weights);
}

template <class T>
AttentionResult<T> MultiHeadCrossAttention<T>::forward_all_pairs(const Tensor<T>& queries, const AllPairsKeys& keys,
                                                                 bool average_weights, bool need_weights) {
  const FusedAttention<T> attended = all_pairs(queries, keys);
  AttentionResult<T> result{attended.output, {}};
  if (need_weights) result.weights = Tensor<T>(pair_weights(*attended.weights, average_weights));
  return result;
}

template <class T>
AttentionResult<T> MultiHeadCrossAttention<T>::forward_all_pairs_selected(
    const Tensor<T>& queries, const Tensor<T>& keys, const Tensor<T>& values,
    const std::vector<std::size_t>& weight_keys, const std::optional<AttendMask>& key_padding_mask,
    bool average_weights) {
  check_3d("MultiHeadCrossAttention.forward_all_pairs", "queries", queries.shape(), query_dim);  // first
  return forward_all_pairs_selected(queries, project_all_pairs_keys(keys, values, key_padding_mask), weight_keys,
                                    average_weights);
}

template <class T>
AttentionResult<T> MultiHeadCrossAttention<T>::forward_all_pairs_selected(const Tensor<T>& queries,
                                                                          const AllPairsKeys& keys,
                                                                          const std::vector<std::size_t>& weight_keys,
                                                                          bool average_weights) {
  const FusedAttention<T> attended = all_pairs(queries, keys);  // checks the shapes
  const std::size_t Bq = queries.shape()[0], Bk = keys.keys.shape()[0];
  if (weight_keys.size() != Bq)
    throw std::invalid_argument("MultiHeadCrossAttention.forward_all_pairs_selected: weight_keys must name " +
                                std::to_string(Bq) + " key elements, one per query element, got " +
                                std::to_string(weight_keys.size()));
  for (std::size_t key : weight_keys)
    if (key >= Bk)
      throw std::invalid_argument("MultiHeadCrossAttention.forward_all_pairs_selected: weight key " +
                                  std::to_string(key) + " is out of range: " + std::to_string(Bk) + " key elements");
  Array<T> weights = pair_weights(*attended.weights, average_weights, &weight_keys);  // (Bq,1,[H,]Lq,Lk)
  std::vector<std::size_t> dims(weights.shape().begin(), weights.shape().end());
  dims.erase(dims.begin() + 1);  // each query element's one key element
  weights.reshape(dims);
  return {attended.output, Tensor<T>(std::move(weights))};
}

template <class T>
typename MultiHeadCrossAttention<T>::AllPairsKeys MultiHeadCrossAttention<T>::project_all_pairs_keys(
    const Tensor<T>& keys, const Tensor<T>& values, const std::optional<AttendMask>& key_padding_mask) {
  const char* layer = "MultiHeadCrossAttention.forward_all_pairs";
  const Shape ks = check_3d(layer, "keys", keys.shape(), key_dim);
  const Shape vs = check_3d(layer, "values", values.shape(), value_dim);
  check_key_value(layer, Shape{1, 1, query_dim}, ks, vs, false);
  const std::size_t Bk = ks[0], Lk = ks[1];
  AllPairsKeys projected;
  if (key_padding_mask) {
    projected.allowed = key_padding_mask->allowed();
    if (shape_of(*projected.allowed) != Shape{Bk, Lk})
      throw std::invalid_argument(std::string(layer) + ": key_padding_mask must be (Bk,Lk) = " +
                                  shape_str(Shape{Bk, Lk}) + ", got " + shape_str(projected.allowed->shape()));
    projected.dead = rows_allowing_nothing(*projected.allowed);  // (Bk,1)
    if (projected.dead) projected.dead->reshape({std::size_t(1), Bk, std::size_t(1), std::size_t(1)});
  }
  // Each side projected once, out_proj folded into the values; the pairs meet inside one op.
  projected.values = out_proj->project_values(v_proj->forward(values));  // (H,Bk,Lk,out_dim)
  projected.keys = k_proj->forward(keys);                                // (Bk,Lk,out_dim)
  return projected;
}

template <class T>
FusedAttention<T> MultiHeadCrossAttention<T>::all_pairs(const Tensor<T>& queries, const AllPairsKeys& keys) {
  check_3d("MultiHeadCrossAttention.forward_all_pairs", "queries", queries.shape(), query_dim);
  const FusedAttention<T> attended =
      attention_all_pairs_projected(q_proj->forward(queries), keys.keys, keys.values, out_proj->bias, keys.allowed,
                                    active_dropout(), &dropout_gen_);  // (Bq,Bk,Lq,out_dim)
  return {zero_dead_rows(attended.output, keys.dead), attended.weights};
}

template <class T>
AttentionResult<T> MultiHeadCrossAttention<T>::forward_all_pairs_pooled(const Tensor<T>& queries,
                                                                        const AllPairsKeys& keys, LayerNorm<T>& norm,
                                                                        bool average_weights, bool need_weights) {
  const std::string layer = "MultiHeadCrossAttention.forward_all_pairs_pooled";
  const Shape qs = check_3d(layer.c_str(), "queries", queries.shape(), query_dim);
  if (query_dim != out_dim)
    throw std::invalid_argument(layer + ": the queries are the residual, so query_dim " + std::to_string(query_dim) +
                                " must equal out_dim " + std::to_string(out_dim));
  if (norm.normalized_shape != Shape{out_dim})
    throw std::invalid_argument(layer + ": the norm normalises " + shape_str(norm.normalized_shape) + ", not (" +
                                std::to_string(out_dim) + ")");
  if (keys.dead) {  // pairs whose key element is all padding read zeros, which the fused op does not do
    const AttentionResult<T> pairs = forward_all_pairs(queries, keys, average_weights, need_weights);
    const Tensor<T> residual = reshape(queries, {long(qs[0]), 1L, long(qs[1]), long(out_dim)});
    return {mean(norm.forward(residual + pairs.output), {2}), pairs.weights};
  }
  const FusedAttention<T> attended = attention_all_pairs_pooled(
      q_proj->forward(queries), keys.keys, keys.values, out_proj->bias, queries, norm.weight, norm.bias, norm.eps,
      keys.allowed, active_dropout(), &dropout_gen_);  // (Bq,Bk,out_dim)
  AttentionResult<T> result{attended.output, {}};
  if (need_weights) result.weights = Tensor<T>(pair_weights(*attended.weights, average_weights));
  return result;
}

template <class T> std::string MultiHeadCrossAttention<T>::extra_repr() const {
  return "query_dim=" + std::to_string(query_dim) + ", num_heads=" + std::to_string(num_heads) +
         ", key_dim=" + std::to_string(key_dim) + ", value_dim=" + std::to_string(value_dim) +
         ", out_dim=" + std::to_string(out_dim) + ", dropout=" + float_repr(dropout_p);
}

template class CrossAttention<float>;
template class CrossAttention<double>;
template class OutputProjection<float>;
template class OutputProjection<double>;
template class MultiHeadCrossAttention<float>;
template class MultiHeadCrossAttention<double>;

}  // namespace xtgrad
