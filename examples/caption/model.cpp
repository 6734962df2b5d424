#include "model.hpp"

#include <algorithm>
#include <stdexcept>

#include "checkpoint_rules.hpp"
#include "flags.hpp"

namespace caption {

using xtgrad::Tensor;

void ModelConfig::check() const {
  const auto range = [](const char* flag, std::size_t v, std::size_t lo, std::size_t hi) {
    if (v < lo || v > hi)
      throw std::invalid_argument(std::string(flag) + " " + std::to_string(v) +
                                  " is out of range: " + std::to_string(lo) + " to " + std::to_string(hi));
  };
  range("--dim", dim, 1, kMaxDim);
  range("--layers", layers, 1, kMaxLayers);
  range("--ff", ff, 1, 4 * kMaxDim);
  if (heads < 1 || dim % heads != 0)
    throw std::invalid_argument("--heads " + std::to_string(heads) + " must divide --dim " + std::to_string(dim));
  if (image != "attention" && image != "blind" && image != "no-attention")
    throw std::invalid_argument("the image mode must be attention, blind or no-attention, got '" + image + "'");
}

std::map<std::string, std::string> ModelConfig::to_metadata() const {
  return {{"dim", std::to_string(dim)},
          {"heads", std::to_string(heads)},
          {"layers", std::to_string(layers)},
          {"ff", std::to_string(ff)},
          {"image", image}};
}

ModelConfig ModelConfig::from_metadata(const std::map<std::string, std::string>& metadata) {
  const auto get = [&](const char* key) { return common::config_text(metadata, key); };
  const auto count = [&](const char* key, std::size_t hi) { return common::config_count(metadata, key, hi); };
  ModelConfig c;
  c.dim = count("dim", kMaxDim);
  c.heads = count("heads", kMaxDim);
  c.layers = count("layers", kMaxLayers);
  c.ff = count("ff", 4 * kMaxDim);
  c.image = get("image");
  c.check();
  return c;
}

TokenBatch token_batch(const std::vector<std::vector<std::size_t>>& captions) {
  TokenBatch b;
  for (const auto& c : captions) b.length = std::max(b.length, c.size() + 1);
  const std::size_t n = captions.size(), L = b.length;
  b.inputs.assign(n * L, kPad);
  b.targets.assign(n * L, kPad);
  b.padding = xt::ones<bool>({n, L});
  for (std::size_t i = 0; i < n; ++i) {
    const auto& c = captions[i];
    b.inputs[i * L] = kBos;
    for (std::size_t k = 0; k < c.size(); ++k) b.inputs[i * L + k + 1] = b.targets[i * L + k] = c[k];
    b.targets[i * L + c.size()] = kEos;
    for (std::size_t k = 0; k <= c.size(); ++k) b.padding(i, k) = false;
  }
  return b;
}

template <class T>
CaptionModel<T>::CaptionModel(const ModelConfig& c, xtgrad::Generator& gen)
    : xtgrad::Module<T>("CaptionModel"), config((c.check(), c)), image_encoder(*this, c.dim, gen) {
  using namespace xtgrad;
  const std::size_t d = c.dim;
  blind_memory = this->register_parameter("blind_memory", randn<T>({1, 1, d}, gen, T(0), T(0.02)));
  token_embed = this->register_module("token_embed", std::make_shared<Embedding<T>>(kVocabSize, d, kPad, gen));
  token_position = this->register_parameter("token_position", randn<T>({kMaxSequence, d}, gen, T(0), T(0.02)));
  decoder = this->register_module(
      "decoder", std::make_shared<TransformerDecoder<T>>(c.layers, d, c.heads, c.ff, 0.0, Activation::gelu, 1e-5,
                                                         /*batch_first=*/true, /*norm_first=*/true,
                                                         /*final_norm=*/true, gen));
  out = this->register_module("out", std::make_shared<Linear<T>>(d, kVocabSize, true, gen));
}

template <class T> typename CaptionModel<T>::Encoded CaptionModel<T>::encode(const Tensor<T>& images) {
  using namespace xtgrad;
  const long b = long(images.shape()[0]), d = long(config.dim);
  Encoded e;
  const Tensor<T> blind = expand(blind_memory, {b, 1, d});
  if (config.image == "blind") {
    e.memory = blind;
    return e;
  }
  const Tensor<T> cells = image_encoder.forward(images);  // (B,16,d)
  if (config.image == "attention") {
    e.memory = cells;
  } else {
    e.memory = blind;
    e.pooled = mean(cells, {1}, /*keepdims=*/true);  // (B,1,d)
  }
  return e;
}

template <class T>
Tensor<T> CaptionModel<T>::embed(const std::vector<std::size_t>& ids, std::size_t batch, std::size_t first,
                                 const Encoded& encoded) {
  const std::size_t length = ids.size() / batch;
  Tensor<T> x = token_embed->forward(ids, {batch, length}) + xtgrad::narrow(token_position, 0, first, length);
  return encoded.pooled.defined() ? x + encoded.pooled : x;
}

template <class T> Tensor<T> CaptionModel<T>::forward(const Tensor<T>& images, const TokenBatch& batch) {
  const Encoded e = encode(images);
  const std::size_t n = images.shape()[0];
  const Tensor<T> x = embed(batch.inputs, n, 0, e);
  const Tensor<T> h = decoder->forward(x, e.memory, std::nullopt, std::nullopt, xtgrad::padding_mask(batch.padding),
                                       std::nullopt, /*tgt_is_causal=*/true);
  return out->forward(h);
}

template <class T> Tensor<T> CaptionModel<T>::loss(const Tensor<T>& images, const TokenBatch& batch) {
  const Tensor<T> logits = forward(images, batch);
  return xtgrad::cross_entropy(xtgrad::reshape(logits, {-1, long(kVocabSize)}), batch.targets, kPad);
}

template <class T>
Tensor<T> CaptionModel<T>::step(const std::vector<std::size_t>& tokens, std::size_t t, const Encoded& encoded,
                                std::vector<xtgrad::DecoderLayerCache<T>>& caches) {
  const Tensor<T> h = decoder->forward_step(embed(tokens, tokens.size(), t, encoded), caches);  // (B,1,d)
  return xtgrad::reshape(out->forward(h), {long(tokens.size()), long(kVocabSize)});
}

template <class T>
std::vector<std::vector<std::size_t>> CaptionModel<T>::greedy(const Tensor<T>& images, std::size_t max_tokens,
                                                              bool use_cache) {
  const std::size_t n = images.shape()[0];
  const Encoded e = encode(images);
  std::vector<xtgrad::DecoderLayerCache<T>> caches;
  if (use_cache) caches = decoder->start_decoding(e.memory);
  std::vector<std::vector<std::size_t>> tokens(n);
  std::vector<std::size_t> prefix(n, kBos);  // (B, t+1) row-major: what the recomputation reads
  std::vector<std::size_t> last(n, kBos);
  std::vector<bool> done(n, false);
  for (std::size_t t = 0; t < max_tokens && std::count(done.begin(), done.end(), false) > 0; ++t) {
    Tensor<T> h;  // (B,1,d) at position t
    if (use_cache) {
      h = decoder->forward_step(embed(last, n, t, e), caches);
    } else {
      const Tensor<T> all = decoder->forward(embed(prefix, n, 0, e), e.memory, std::nullopt, std::nullopt, std::nullopt,
                                             std::nullopt, /*tgt_is_causal=*/true);
      h = xtgrad::narrow(all, 1, t, 1);
    }
    const xtgrad::Indices next = xtgrad::argmax(xtgrad::reshape(out->forward(h), {long(n), long(kVocabSize)}), -1);
    std::vector<std::size_t> grown;
    for (std::size_t i = 0; i < n; ++i) {
      last[i] = next(i);
      if (!done[i]) tokens[i].push_back(next(i));
      done[i] = done[i] || next(i) == kEos;
      grown.insert(grown.end(), prefix.begin() + long(i * (t + 1)), prefix.begin() + long((i + 1) * (t + 1)));
      grown.push_back(next(i));
    }
    prefix.swap(grown);
  }
  return tokens;
}

template class CaptionModel<float>;
template class CaptionModel<double>;

}  // namespace caption
