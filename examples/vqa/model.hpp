// The VQA task's model (docs/vqa-task.md, "The model"):
//   images (B,3,32,32) -> the caption task's CNN grid (examples/vision)   = cells (B,16,d)
//   question (B,L) -> Embedding(32,d) -> LSTM(d,d) to each length,
//                     or + position (L,d) -> TransformerEncoder (padding masked)
//                                                                         = states (B,L,d)
//   states, cells -> TransformerDecoder (not causal: the states attend to one another and,
//                    by multi-head cross-attention, to the cells; pre-norm, final norm)
//                 -> the mean over real tokens (or the last word's state) (B,d)
//                 -> Linear(d,d), GELU, Linear(d,20)                      = logits (B,20)
// --blind: the memory is one learned vector for every picture. --no-attention: the blind
// memory, and the mean of the 16 cells added to every question state.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "grid_encoder.hpp"
#include "questions.hpp"
#include "xtgrad/nn.hpp"

namespace vqa {

struct ModelConfig {
  static constexpr std::size_t kMaxDim = 4096, kMaxLayers = 64;
  std::size_t dim = 64;
  std::size_t heads = 4;
  std::size_t fusion_layers = 2;      // decoder layers attending to the picture
  std::size_t text_layers = 1;        // TransformerEncoder layers (--text-encoder transformer)
  std::size_t ff = 128;               // the Transformer layers' feed-forward width
  std::string text_encoder = "lstm";  // lstm | transformer
  std::string image = "attention";    // attention | blind | no-attention
  std::string pool = "mean";          // mean | last

  // Throws std::invalid_argument naming the flag and its value.
  void check() const;
  std::map<std::string, std::string> to_metadata() const;
  static ModelConfig from_metadata(const std::map<std::string, std::string>& metadata);
};

// Questions padded with <pad> to the batch's longest: ids (B*L, row-major), each length,
// and the padding as a (B,L) mask (true = pad).
struct QuestionBatch {
  std::size_t length = 0;
  std::vector<std::size_t> ids, lengths;
  xtgrad::Mask padding;
};
QuestionBatch question_batch(const std::vector<std::vector<std::size_t>>& questions);

template <class T> class VqaModel : public xtgrad::Module<T> {
 public:
  VqaModel(const ModelConfig& config, xtgrad::Generator& gen);

  // images (B,3,32,32), questions (B,L) -> answer logits (B,20)
  xtgrad::Tensor<T> forward(const xtgrad::Tensor<T>& images, const QuestionBatch& questions);
  // The mean cross-entropy against the right answers (B ids).
  xtgrad::Tensor<T> loss(const xtgrad::Tensor<T>& images, const QuestionBatch& questions,
                         const std::vector<std::size_t>& answers);
  // Where each question word looked (ask --png), for --image attention only (else throws
  // std::invalid_argument): per fusion layer its cross-attention weights (B,L,16) over the
  // cells, averaged over heads, rows summing to 1 (padding rows too): a forward with the
  // fusion layers' keep_memory_weights on (TransformerDecoderLayer), which changes nothing
  // else.
  std::vector<xtgrad::Tensor<T>> cross_attention(const xtgrad::Tensor<T>& images, const QuestionBatch& questions);

  const ModelConfig config;
  vision::GridEncoder<T> image_encoder;  // registers cnn, row_position, column_position
  xtgrad::Tensor<T> blind_memory, token_position;
  std::shared_ptr<xtgrad::Embedding<T>> token_embed;
  std::shared_ptr<xtgrad::LSTM<T>> lstm;                        // null with the transformer
  std::shared_ptr<xtgrad::TransformerEncoder<T>> text_encoder;  // null with the LSTM
  std::shared_ptr<xtgrad::TransformerDecoder<T>> fusion;
  std::shared_ptr<xtgrad::Linear<T>> hidden, out;

 private:
  xtgrad::Tensor<T> encode_question(const QuestionBatch& questions);                              // -> (B,L,d)
  xtgrad::Tensor<T> pool(const xtgrad::Tensor<T>& states, const QuestionBatch& questions) const;  // -> (B,d)
  // images, questions -> the fusion's input: the question states (B,L,d), the memory (B,S,d)
  std::pair<xtgrad::Tensor<T>, xtgrad::Tensor<T>> fusion_inputs(const xtgrad::Tensor<T>& images,
                                                                const QuestionBatch& questions);
};

}  // namespace vqa
