// The toy task's model (docs/align-task.md): caption words attend to image patches.
//   patches (Bk,16,192) -> Linear(192,d) + position (16,d)      = image  (Bk,16,d)
//   ids (Bq,4)          -> Embedding(14,d) + position (4,d)     = tokens (Bq,4,d)
//   all-pairs multi-head cross-attention, queries = tokens, keys/values = image
//                                                                -> (Bq,Bk,4,d)
//   per pair: LayerNorm(token + attended), mean over the 4 tokens, Linear(d,d), GELU,
//   Linear(d,1)                                                  -> scores (Bq,Bk)
// With attention off, `attended` is the mean of the image's patches for every token: the
// baseline that cannot tell where an object is.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "data.hpp"
#include "xtgrad/nn.hpp"

namespace align {

struct ModelConfig {
  // The widest model: the one limit for --dim and for a checkpoint's "dim".
  static constexpr std::size_t kMaxDim = 4096;

  std::size_t dim = 64;
  std::size_t heads = 4;
  bool attention = true;

  // Throws std::invalid_argument unless 1 <= heads, heads divides dim and dim <= kMaxDim,
  // naming the flags (--dim, --heads) and their values.
  void check() const;

  // As checkpoint metadata, and back (throws std::invalid_argument on bad values, with
  // check()'s rule).
  std::map<std::string, std::string> to_metadata() const;
  static ModelConfig from_metadata(const std::map<std::string, std::string>& metadata);
};

template <class T> struct ModelOutput {
  xtgrad::Tensor<T> scores;  // (Bq,Bk): caption i against image j
  // (Bq,Bk,4,16), averaged over heads ((Bq,4,16) from score_images_selected); undefined
  // without attention
  xtgrad::Tensor<T> attention;
};

// A batch of images ready to be scored against several batches of captions: their features
// and, with attention, their keys and values projected once.
template <class T> struct ImageKeys {
  xtgrad::Tensor<T> features;                                                     // (Bk,16,d)
  std::optional<typename xtgrad::MultiHeadCrossAttention<T>::AllPairsKeys> keys;  // none without attention
};

template <class T> class AlignModel : public xtgrad::Module<T> {
 public:
  AlignModel(const ModelConfig& config, xtgrad::Generator& gen);

  // patches (Bk,16,192), caption_ids Bq*4 word ids -> scores (Bq,Bk) and, with
  // need_attention, the attention weights (training does not need them)
  ModelOutput<T> forward(const xtgrad::Tensor<T>& patches, const std::vector<std::size_t>& caption_ids,
                         bool need_attention = true);
  // forward in two halves, so that a data-parallel run can gather every rank's images
  // between them: patches (Bk,16,192) -> image features (Bk,16,d), then the captions
  // (Bq*4 word ids) against those images -> scores (Bq,Bk) (and attention).
  xtgrad::Tensor<T> image_features(const xtgrad::Tensor<T>& patches);
  ModelOutput<T> score_images(const xtgrad::Tensor<T>& image, const std::vector<std::size_t>& caption_ids,
                              bool need_attention = true);
  // Evaluation's halves: patches (Bk,16,192) -> image_features and, with attention, their keys
  // and values; then captions (Bq*4 word ids) against them -> scores (Bq,Bk) and the attention
  // (Bq,4,16) of caption i over image attention_images[i] only (grounding reads a caption's
  // own image alone), bit for bit forward's scores and attention[i][attention_images[i]].
  ImageKeys<T> image_keys(const xtgrad::Tensor<T>& patches);
  ModelOutput<T> score_images_selected(const ImageKeys<T>& images, const std::vector<std::size_t>& caption_ids,
                                       const std::vector<std::size_t>& attention_images);

  const ModelConfig config;
  std::shared_ptr<xtgrad::Linear<T>> patch_embed;
  xtgrad::Tensor<T> patch_position;
  std::shared_ptr<xtgrad::Embedding<T>> token_embed;
  xtgrad::Tensor<T> token_position;
  std::shared_ptr<xtgrad::MultiHeadCrossAttention<T>> attention;  // null without attention
  std::shared_ptr<xtgrad::LayerNorm<T>> norm;
  std::shared_ptr<xtgrad::Linear<T>> hidden, score;

 private:
  // Every score_images: image (Bk,16,d) with its keys if projected already; the attention of
  // all pairs, of the pairs (i, attention_images[i]) where given, or none.
  ModelOutput<T> score_pairs(const xtgrad::Tensor<T>& image,
                             const typename xtgrad::MultiHeadCrossAttention<T>::AllPairsKeys* keys,
                             const std::vector<std::size_t>& caption_ids, bool need_attention,
                             const std::vector<std::size_t>* attention_images);
};

// (Bk,16,192) patches of the given examples, in that order, rendered from their scenes.
template <class T>
xtgrad::Tensor<T> patch_batch(const std::vector<Example>& data, const std::vector<std::size_t>& indices);
// Their captions as Bq*4 word ids.
std::vector<std::size_t> caption_batch(const std::vector<Example>& data, const std::vector<std::size_t>& indices);

// One training batch, ready for a step: the examples' indices, their rendered patches and
// their captions' word ids.
template <class T> struct Batch {
  std::vector<std::size_t> indices;
  xtgrad::Tensor<T> patches;             // (B,16,192)
  std::vector<std::size_t> caption_ids;  // B*4
};
template <class T> Batch<T> make_batch(const std::vector<Example>& data, std::vector<std::size_t> indices);

// The targets of one batch of pairs, (B,B): row i is uniform over the batch's images that
// caption i matches (its own always does).
template <class T>
xtgrad::Tensor<T> alignment_targets(const std::vector<Example>& data, const std::vector<std::size_t>& indices);
// The rows of the captions data[captions] against the images data[images] -> (Bq,Bk), each
// row uniform over the images its caption matches (a data-parallel rank's rows of the
// global batch's targets: its captions against every image).
template <class T>
xtgrad::Tensor<T> alignment_targets(const std::vector<Example>& data, const std::vector<std::size_t>& captions,
                                    const std::vector<std::size_t>& images);

// The training loss of one batch of pairs: for each caption, cross-entropy of the softmax
// over the batch's images against alignment_targets. scores (B,B) -> scalar
template <class T>
xtgrad::Tensor<T> alignment_loss(const xtgrad::Tensor<T>& scores, const std::vector<Example>& data,
                                 const std::vector<std::size_t>& indices);

}  // namespace align
