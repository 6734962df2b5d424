#include "model.hpp"

#include "checkpoint_rules.hpp"
#include "flags.hpp"

#include <stdexcept>
#include <type_traits>

namespace align {

using xtgrad::Tensor;

std::map<std::string, std::string> ModelConfig::to_metadata() const {
  return {{"dim", std::to_string(dim)}, {"heads", std::to_string(heads)}, {"attention", attention ? "true" : "false"}};
}

void ModelConfig::check() const {
  if (dim < 1 || dim > kMaxDim)
    throw std::invalid_argument("--dim " + std::to_string(dim) + " is out of range: 1 to " + std::to_string(kMaxDim));
  if (heads < 1 || dim % heads != 0)
    throw std::invalid_argument("--heads " + std::to_string(heads) + " must divide --dim " + std::to_string(dim));
}

ModelConfig ModelConfig::from_metadata(const std::map<std::string, std::string>& metadata) {
  ModelConfig config;
  config.dim = common::config_count(metadata, "dim", kMaxDim);
  config.heads = common::config_count(metadata, "heads", kMaxDim);
  const std::string& attention = common::config_text(metadata, "attention");
  if (attention != "true" && attention != "false")
    throw std::invalid_argument("model configuration has a bad 'attention': \"" + attention + "\"");
  config.attention = attention == "true";
  config.check();
  return config;
}

template <class T>
AlignModel<T>::AlignModel(const ModelConfig& c, xtgrad::Generator& gen) : xtgrad::Module<T>("AlignModel"), config(c) {
  using namespace xtgrad;
  const std::size_t d = c.dim;
  patch_embed = this->register_module("patch_embed", std::make_shared<Linear<T>>(kPatchValues, d, true, gen));
  patch_position = this->register_parameter("patch_position", randn<T>({kPatches, d}, gen, T(0), T(0.02)));
  token_embed = this->register_module("token_embed", std::make_shared<Embedding<T>>(kVocabSize, d, gen));
  token_position = this->register_parameter("token_position", randn<T>({kCaptionLength, d}, gen, T(0), T(0.02)));
  if (c.attention)
    attention = this->register_module(
        "attention", std::make_shared<MultiHeadCrossAttention<T>>(d, c.heads, d, d, d, true, 0.0, gen));
  norm = this->register_module("norm", std::make_shared<LayerNorm<T>>(Shape{d}));
  hidden = this->register_module("hidden", std::make_shared<Linear<T>>(d, d, true, gen));
  score = this->register_module("score", std::make_shared<Linear<T>>(d, 1, true, gen));
}

template <class T>
ModelOutput<T> AlignModel<T>::forward(const Tensor<T>& patches, const std::vector<std::size_t>& caption_ids,
                                      bool need_attention) {
  return score_images(image_features(patches), caption_ids, need_attention);
}

// patches (Bk,16,192) -> (Bk,16,d)
template <class T> Tensor<T> AlignModel<T>::image_features(const Tensor<T>& patches) {
  return patch_embed->forward(patches) + patch_position;
}

template <class T>
ModelOutput<T> AlignModel<T>::score_images(const Tensor<T>& image, const std::vector<std::size_t>& caption_ids,
                                           bool need_attention) {
  return score_pairs(image, nullptr, caption_ids, need_attention, nullptr);
}

template <class T> ImageKeys<T> AlignModel<T>::image_keys(const Tensor<T>& patches) {
  ImageKeys<T> images{image_features(patches), std::nullopt};
  if (attention) images.keys = attention->project_all_pairs_keys(images.features, images.features);
  return images;
}

template <class T>
ModelOutput<T> AlignModel<T>::score_images_selected(const ImageKeys<T>& images,
                                                    const std::vector<std::size_t>& caption_ids,
                                                    const std::vector<std::size_t>& attention_images) {
  return score_pairs(images.features, images.keys ? &*images.keys : nullptr, caption_ids, true, &attention_images);
}

// image (Bk,16,d), caption_ids Bq*4 -> scores (Bq,Bk), attention (Bq,Bk,4,16) or (Bq,4,16)
template <class T>
ModelOutput<T> AlignModel<T>::score_pairs(const Tensor<T>& image,
                                          const typename xtgrad::MultiHeadCrossAttention<T>::AllPairsKeys* keys,
                                          const std::vector<std::size_t>& caption_ids, bool need_attention,
                                          const std::vector<std::size_t>* attention_images) {
  using namespace xtgrad;
  const long bq = long(caption_ids.size() / kCaptionLength), bk = long(image.shape()[0]), d = long(config.dim);
  const Tensor<T> tokens =
      token_embed->forward(caption_ids, {std::size_t(bq), kCaptionLength}) + token_position;  // (Bq,4,d)
  ModelOutput<T> out;
  Tensor<T> pooled;  // (Bq,Bk,d): per pair, the mean over the 4 tokens of norm(token + attended)
  std::optional<typename MultiHeadCrossAttention<T>::AllPairsKeys> projected;  // unless given
  if (attention && !keys) keys = &projected.emplace(attention->project_all_pairs_keys(image, image));
  if (attention && !attention_images) {  // one op: the (Bq,Bk,4,d) arrays never exist
    AttentionResult<T> pairs = attention->forward_all_pairs_pooled(tokens, *keys, *norm, true, need_attention);
    pooled = pairs.output;
    out.attention = pairs.weights;
  } else {
    Tensor<T> attended;  // (Bq,Bk,4,d), or broadcastable to it
    if (attention) {
      AttentionResult<T> pairs = attention->forward_all_pairs_selected(tokens, *keys, *attention_images);
      attended = pairs.output;
      out.attention = pairs.weights;
    } else {
      attended = reshape(mean(image, {1}), {1, bk, 1, d});  // (1,Bk,1,d): the same for every token
    }
    pooled = mean(norm->forward(reshape(tokens, {bq, 1, long(kCaptionLength), d}) + attended), {2});
  }
  out.scores = reshape(score->forward(gelu(hidden->forward(pooled))), {bq, bk});  // (Bq,Bk)
  return out;
}

template <class T> Tensor<T> patch_batch(const std::vector<Example>& data, const std::vector<std::size_t>& indices) {
  constexpr std::size_t kValues = kPatches * kPatchValues;
  xtgrad::Array<T> out(xtgrad::Shape{indices.size(), kPatches, kPatchValues});
  std::vector<float> buffer(std::is_same_v<T, float> ? 0 : kValues);
  for (std::size_t b = 0; b < indices.size(); ++b) {
    // The pictures are rendered here (data holds scenes): straight into the batch for float.
    if constexpr (std::is_same_v<T, float>) {
      patches_of(data[indices[b]], out.data() + b * kValues);
    } else {
      patches_of(data[indices[b]], buffer.data());
      std::copy(buffer.begin(), buffer.end(), out.data() + b * kValues);
    }
  }
  return Tensor<T>(std::move(out));
}

std::vector<std::size_t> caption_batch(const std::vector<Example>& data, const std::vector<std::size_t>& indices) {
  std::vector<std::size_t> ids;
  ids.reserve(indices.size() * kCaptionLength);
  for (std::size_t i : indices) ids.insert(ids.end(), data[i].caption.begin(), data[i].caption.end());
  return ids;
}

template <class T> Batch<T> make_batch(const std::vector<Example>& data, std::vector<std::size_t> indices) {
  Tensor<T> patches = patch_batch<T>(data, indices);
  std::vector<std::size_t> caption_ids = caption_batch(data, indices);
  return {std::move(indices), std::move(patches), std::move(caption_ids)};
}

template <class T>
Tensor<T> alignment_targets(const std::vector<Example>& data, const std::vector<std::size_t>& indices) {
  return alignment_targets<T>(data, indices, indices);
}

template <class T>
Tensor<T> alignment_targets(const std::vector<Example>& data, const std::vector<std::size_t>& captions,
                            const std::vector<std::size_t>& images) {
  const std::size_t m = captions.size(), n = images.size();
  xtgrad::Array<T> targets = xt::zeros<T>({m, n});  // row i: uniform over the images caption i matches
  for (std::size_t i = 0; i < m; ++i) {
    std::size_t count = 0;
    for (std::size_t j = 0; j < n; ++j)
      if (matches(data[captions[i]].caption, data[images[j]])) targets(i, j) = T(1), ++count;
    if (count == 0)
      throw std::invalid_argument("alignment_targets: caption " + std::to_string(captions[i]) +
                                  " matches none of the images (its own must be among them)");
    for (std::size_t j = 0; j < n; ++j) targets(i, j) /= T(count);
  }
  return Tensor<T>(std::move(targets));
}

template <class T>
Tensor<T> alignment_loss(const Tensor<T>& scores, const std::vector<Example>& data,
                         const std::vector<std::size_t>& indices) {
  return xtgrad::cross_entropy(scores, alignment_targets<T>(data, indices));
}

template class AlignModel<float>;
template class AlignModel<double>;
template Tensor<float> patch_batch(const std::vector<Example>&, const std::vector<std::size_t>&);
template Tensor<double> patch_batch(const std::vector<Example>&, const std::vector<std::size_t>&);
template Batch<float> make_batch(const std::vector<Example>&, std::vector<std::size_t>);
template Batch<double> make_batch(const std::vector<Example>&, std::vector<std::size_t>);
template Tensor<float> alignment_targets(const std::vector<Example>&, const std::vector<std::size_t>&);
template Tensor<double> alignment_targets(const std::vector<Example>&, const std::vector<std::size_t>&);
template Tensor<float> alignment_targets(const std::vector<Example>&, const std::vector<std::size_t>&,
                                         const std::vector<std::size_t>&);
template Tensor<double> alignment_targets(const std::vector<Example>&, const std::vector<std::size_t>&,
                                          const std::vector<std::size_t>&);
template Tensor<float> alignment_loss(const Tensor<float>&, const std::vector<Example>&,
                                      const std::vector<std::size_t>&);
template Tensor<double> alignment_loss(const Tensor<double>&, const std::vector<Example>&,
                                       const std::vector<std::size_t>&);

}  // namespace align
