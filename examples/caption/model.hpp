// The caption task's model (docs/caption-task.md):
//   images (B,3,32,32) -> 3 x [Conv2d 3x3, BatchNorm2d, ReLU, MaxPool2d 2] -> (B,d,4,4)
//                      -> the 16 cells (B,16,d) + row and column embeddings = memory
//   tokens (B,L) -> Embedding(18,d) + position (L,d) -> TransformerDecoder (causal
//                   self-attention, cross-attention to the memory, pre-norm, final norm)
//                -> Linear(d,18)                                   = logits (B,L,18)
// --blind: the memory is one learned vector for every picture. --no-attention: the blind
// memory, and the mean of the 16 cells added to every token embedding.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "grammar.hpp"
#include "grid_encoder.hpp"
#include "xtgrad/nn.hpp"

namespace caption {

struct ModelConfig {
  static constexpr std::size_t kMaxDim = 4096, kMaxLayers = 64;
  std::size_t dim = 64;
  std::size_t heads = 4;
  std::size_t layers = 2;
  std::size_t ff = 256;             // the decoder's feed-forward width
  std::string image = "attention";  // attention | blind | no-attention

  // Throws std::invalid_argument naming the flag and its value.
  void check() const;
  std::map<std::string, std::string> to_metadata() const;
  static ModelConfig from_metadata(const std::map<std::string, std::string>& metadata);
};

// A batch of pictures as (B,3,32,32) (examples/vision, shared with xtgrad-vqa).
using vision::image_batch;

// Teacher forcing: inputs <bos> w1..wn and targets w1..wn <eos>, each padded to the batch's
// longest with <pad> (B*L ids, row-major), and the padding as a (B,L) mask (true = pad).
struct TokenBatch {
  std::size_t length = 0;
  std::vector<std::size_t> inputs, targets;
  xtgrad::Mask padding;
};
TokenBatch token_batch(const std::vector<std::vector<std::size_t>>& captions);

template <class T> class CaptionModel : public xtgrad::Module<T> {
 public:
  CaptionModel(const ModelConfig& config, xtgrad::Generator& gen);

  // What the decoder sees of the pictures: the memory (B,S,d) and, without attention, the
  // pooled picture (B,1,d) added to every token (undefined otherwise).
  struct Encoded {
    xtgrad::Tensor<T> memory, pooled;
  };
  Encoded encode(const xtgrad::Tensor<T>& images);
  // Teacher-forced logits (B,L,18) for input ids (B*L) with their padding mask (B,L).
  xtgrad::Tensor<T> forward(const xtgrad::Tensor<T>& images, const TokenBatch& batch);
  // The mean cross-entropy of the non-padding targets.
  xtgrad::Tensor<T> loss(const xtgrad::Tensor<T>& images, const TokenBatch& batch);

  // Greedy decoding of each picture, up to max_tokens tokens or <eos> (which is kept).
  // With use_cache, token by token through the decoder's key/value cache; without, the
  // whole prefix again at every step (the reference the cache must equal). Call under
  // NoGradGuard with the model in eval mode.
  std::vector<std::vector<std::size_t>> greedy(const xtgrad::Tensor<T>& images, std::size_t max_tokens,
                                               bool use_cache = true);

  // One decoding step through the cache: the tokens at position t (one per row) -> the
  // logits of position t + 1's token (B,18).
  xtgrad::Tensor<T> step(const std::vector<std::size_t>& tokens, std::size_t t, const Encoded& encoded,
                         std::vector<xtgrad::DecoderLayerCache<T>>& caches);

  const ModelConfig config;
  vision::GridEncoder<T> image_encoder;  // registers cnn, row_position, column_position
  xtgrad::Tensor<T> blind_memory, token_position;
  std::shared_ptr<xtgrad::Embedding<T>> token_embed;
  std::shared_ptr<xtgrad::TransformerDecoder<T>> decoder;
  std::shared_ptr<xtgrad::Linear<T>> out;

 private:
  // Token embeddings (B,L,d) of ids (B*L) at positions first..first+L-1.
  xtgrad::Tensor<T> embed(const std::vector<std::size_t>& ids, std::size_t batch, std::size_t first,
                          const Encoded& encoded);
};

}  // namespace caption
