#include "decode.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace caption {

using xtgrad::Tensor;

namespace {

void check_one_image(const char* what, const xtgrad::Shape& shape) {
  if (shape.size() != 4 || shape[0] != 1)
    throw std::invalid_argument(std::string(what) + ": image must be (1,3,32,32), got " + xtgrad::shape_str(shape));
}

}  // namespace

namespace {

struct Candidate {
  double log_prob;
  std::size_t parent, token;
};

// The step's candidates, best first: those ending in <eos> among the best `beam` join
// `ended`; the best `beam` others are the next live hypotheses (their parents in `parents`).
std::vector<Hypothesis> select(std::vector<Candidate> candidates, const std::vector<Hypothesis>& live, std::size_t beam,
                               std::vector<Hypothesis>& ended, std::vector<std::size_t>& parents) {
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.log_prob > b.log_prob; });
  std::vector<Hypothesis> next;
  parents.clear();
  for (std::size_t rank = 0; rank < candidates.size() && next.size() < beam; ++rank) {
    const Candidate& c = candidates[rank];
    if (c.token == kEos && rank >= beam) continue;
    Hypothesis h{live[c.parent].tokens, c.log_prob};
    h.tokens.push_back(c.token);
    if (c.token == kEos) {
      ended.push_back(std::move(h));
    } else {
      next.push_back(std::move(h));
      parents.push_back(c.parent);
    }
  }
  return next;
}

bool more_likely(const Hypothesis& a, const Hypothesis& b) { return a.log_prob > b.log_prob; }

// Done when `beam` hypotheses have ended and none live can beat the beam-th best of them: a
// live hypothesis's summed log-probability only falls as it grows.
bool finished(std::vector<Hypothesis>& ended, const std::vector<Hypothesis>& live, std::size_t beam) {
  if (live.empty()) return true;
  if (ended.size() < beam) return false;
  std::stable_sort(ended.begin(), ended.end(), more_likely);
  ended.resize(beam);
  return ended.back().log_prob >= live.front().log_prob;
}

}  // namespace

template <class T>
std::vector<Hypothesis> beam_search(CaptionModel<T>& model, const Tensor<T>& image, std::size_t beam,
                                    std::size_t max_tokens) {
  check_one_image("beam_search", image.shape());
  if (beam < 1) throw std::invalid_argument("beam_search: beam must be at least 1");
  const typename CaptionModel<T>::Encoded one = model.encode(image);
  std::vector<Hypothesis> live{Hypothesis{}}, ended;
  std::vector<xtgrad::DecoderLayerCache<T>> caches = model.decoder->start_decoding(one.memory);
  for (std::size_t t = 0; t < max_tokens && !finished(ended, live, beam); ++t) {
    std::vector<std::size_t> last, parents;
    for (const Hypothesis& h : live) last.push_back(h.tokens.empty() ? kBos : h.tokens.back());
    const Tensor<T> log_probs = xtgrad::log_softmax(model.step(last, t, one, caches), -1);  // (live, V)
    std::vector<Candidate> candidates;
    for (std::size_t b = 0; b < live.size(); ++b)
      for (std::size_t v = 0; v < kVocabSize; ++v)
        candidates.push_back({live[b].log_prob + double(log_probs.data()(b, v)), b, v});
    live = select(std::move(candidates), live, beam, ended, parents);
    if (live.empty()) break;
    // Each live hypothesis continues its parent's cached keys and values; the picture's are
    // the same for all (one row per hypothesis; the pooled picture broadcasts).
    const std::vector<std::size_t> same(parents.size(), 0);
    for (auto& cache : caches) {
      cache.self_attn.keys = xtgrad::index_select(cache.self_attn.keys, 0, parents);
      cache.self_attn.values = xtgrad::index_select(cache.self_attn.values, 0, parents);
      cache.memory.keys = xtgrad::index_select(cache.memory.keys, 0, same);
      cache.memory.values = xtgrad::index_select(cache.memory.values, 0, same);
    }
  }
  std::vector<Hypothesis>& out = ended.empty() ? live : ended;
  std::stable_sort(out.begin(), out.end(), more_likely);
  if (out.size() > beam) out.resize(beam);
  return out;
}

template <class T>
Hypothesis sample(CaptionModel<T>& model, const Tensor<T>& image, double temperature, std::size_t max_tokens,
                  xtgrad::Generator& gen) {
  check_one_image("sample", image.shape());
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw std::invalid_argument("sample: the temperature must be a positive number");
  const typename CaptionModel<T>::Encoded one = model.encode(image);
  std::vector<xtgrad::DecoderLayerCache<T>> caches = model.decoder->start_decoding(one.memory);
  Hypothesis h;
  for (std::size_t t = 0; t < max_tokens && (h.tokens.empty() || h.tokens.back() != kEos); ++t) {
    const Tensor<T> logits = model.step({h.tokens.empty() ? kBos : h.tokens.back()}, t, one, caches);  // (1,V)
    const Tensor<T> log_probs = xtgrad::log_softmax(logits * T(1.0 / temperature), -1);
    const double u = gen.uniform();
    double cumulative = 0;
    std::size_t token = kVocabSize - 1;
    for (std::size_t v = 0; v < kVocabSize; ++v) {
      cumulative += std::exp(double(log_probs.data()(0, v)));
      if (u < cumulative) {
        token = v;
        break;
      }
    }
    h.tokens.push_back(token);
    h.log_prob += double(xtgrad::log_softmax(logits, -1).data()(0, token));
  }
  return h;
}

template <class T>
std::vector<std::array<float, scenes::kCells>> word_attention(CaptionModel<T>& model, const Tensor<T>& image,
                                                              const std::vector<std::size_t>& tokens) {
  check_one_image("word_attention", image.shape());
  if (model.config.image != "attention")
    throw std::invalid_argument("word_attention: the model (" + model.config.image +
                                ") has no cross-attention over the picture's cells");
  const typename CaptionModel<T>::Encoded one = model.encode(image);
  std::vector<xtgrad::DecoderLayerCache<T>> caches = model.decoder->start_decoding(one.memory);
  caches.back().need_weights = true;  // the last layer's weights only
  std::vector<std::array<float, scenes::kCells>> maps(tokens.size());
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    model.step({t == 0 ? kBos : tokens[t - 1]}, t, one, caches);
    const xtgrad::Array<T>& weights = caches.back().memory_weights.data();  // (1,1,16)
    for (std::size_t cell = 0; cell < scenes::kCells; ++cell) maps[t][cell] = float(weights(0, 0, cell));
  }
  return maps;
}

template std::vector<Hypothesis> beam_search(CaptionModel<float>&, const Tensor<float>&, std::size_t, std::size_t);
template std::vector<Hypothesis> beam_search(CaptionModel<double>&, const Tensor<double>&, std::size_t, std::size_t);
template Hypothesis sample(CaptionModel<float>&, const Tensor<float>&, double, std::size_t, xtgrad::Generator&);
template Hypothesis sample(CaptionModel<double>&, const Tensor<double>&, double, std::size_t, xtgrad::Generator&);
template std::vector<std::array<float, scenes::kCells>> word_attention(CaptionModel<float>&, const Tensor<float>&,
                                                                       const std::vector<std::size_t>&);
template std::vector<std::array<float, scenes::kCells>> word_attention(CaptionModel<double>&, const Tensor<double>&,
                                                                       const std::vector<std::size_t>&);

}  // namespace caption
