// Decoding one picture beyond greedy (docs/caption-task.md, "Decoding"): beam search and
// sampling at a temperature, both through the decoder's key/value cache. Call under
// NoGradGuard with the model in eval mode.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "model.hpp"

namespace caption {

struct Hypothesis {
  std::vector<std::size_t> tokens;  // up to and with <eos>, when it was made
  double log_prob = 0;              // the sum over its tokens
};

// Beam search with `beam` hypotheses for image (1,3,32,32), ranked by summed
// log-probability: each step extends every live hypothesis by every token; of the best
// candidates, those ending in <eos> (among the best `beam`) are set aside as ended and the
// best `beam` others live on. It stops when no live hypothesis can beat the beam-th ended
// one, or at max_tokens. Returns up to `beam` ended hypotheses (the live ones if none ended),
// best first. beam 1 is greedy decoding.
template <class T>
std::vector<Hypothesis> beam_search(CaptionModel<T>& model, const xtgrad::Tensor<T>& image, std::size_t beam,
                                    std::size_t max_tokens);

// Each token drawn from softmax(logits / temperature) (temperature > 0) with gen, until
// <eos> or max_tokens.
template <class T>
Hypothesis sample(CaptionModel<T>& model, const xtgrad::Tensor<T>& image, double temperature, std::size_t max_tokens,
                  xtgrad::Generator& gen);

// Where each of `tokens` (decoded for image (1,3,32,32)) looked in the picture: map i is
// the cross-attention over the 16 cells of the step that chose tokens[i] (the step fed
// <bos> and tokens[0..i-1]) in the last decoder layer, averaged over its heads (the last
// layer's maps are the sharper: docs/caption-task.md, "Pictures"). The tokens are fed again through the key/value cache
// with the weights kept: decoding is deterministic, so these are the weights of the search (greedy, beam or sampled)
// that chose them. Throws std::invalid_argument for a model without cross-attention over the cells (--blind,
// --no-attention).
template <class T>
std::vector<std::array<float, scenes::kCells>> word_attention(CaptionModel<T>& model, const xtgrad::Tensor<T>& image,
                                                              const std::vector<std::size_t>& tokens);

}  // namespace caption
