#include "metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "grammar.hpp"

namespace caption {

namespace {

// How many triples two multisets share.
std::size_t shared_count(std::vector<Triple> a, std::vector<Triple> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  std::vector<Triple> both;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
  return both.size();
}

using Ngrams = std::map<std::vector<std::size_t>, std::size_t>;

Ngrams ngrams(const std::vector<std::size_t>& words, std::size_t n) {
  Ngrams out;
  for (std::size_t i = 0; i + n <= words.size(); ++i) ++out[{words.begin() + long(i), words.begin() + long(i + n)}];
  return out;
}

}  // namespace

double corpus_bleu4(const std::vector<std::vector<std::size_t>>& candidates,
                    const std::vector<std::vector<std::size_t>>& references) {
  double clipped[4] = {0, 0, 0, 0}, total[4] = {0, 0, 0, 0};
  double candidate_length = 0, reference_length = 0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    candidate_length += double(candidates[i].size());
    reference_length += double(references[i].size());
    for (std::size_t n = 1; n <= 4; ++n) {
      const Ngrams reference = ngrams(references[i], n);
      for (const auto& [gram, count] : ngrams(candidates[i], n)) {
        const auto found = reference.find(gram);
        clipped[n - 1] += double(std::min(count, found == reference.end() ? 0 : found->second));
        total[n - 1] += double(count);
      }
    }
  }
  double log_sum = 0;
  for (std::size_t n = 0; n < 4; ++n) {
    if (clipped[n] == 0) return 0;
    log_sum += std::log(clipped[n] / total[n]) / 4;
  }
  const double brevity = candidate_length < reference_length ? std::exp(1 - reference_length / candidate_length) : 1;
  return brevity * std::exp(log_sum);
}

Metrics score_captions(const std::vector<std::vector<std::size_t>>& generated,
                       const std::vector<std::vector<std::size_t>>& references) {
  if (generated.size() != references.size())
    throw std::invalid_argument("score_captions: " + std::to_string(generated.size()) + " generated captions for " +
                                std::to_string(references.size()) + " references");
  Metrics m;
  m.count = generated.size();
  if (m.count == 0) return m;
  double matched = 0, described = 0, present = 0;
  std::vector<std::vector<std::size_t>> candidates;
  for (std::size_t i = 0; i < generated.size(); ++i) {
    const auto reference = parse_words(references[i]);
    if (!reference)
      throw std::invalid_argument("score_captions: reference " + std::to_string(i) + " \"" +
                                  caption_text(references[i]) + "\" does not parse");
    const std::vector<Triple>& truth = *reference;
    const auto parsed = parse_decoded(generated[i]);
    candidates.push_back(words_before_eos(generated[i]));
    present += double(truth.size());
    if (!parsed) {
      m.parse_fail += 1;
      continue;
    }
    const std::size_t shared = shared_count(*parsed, truth);
    matched += double(shared);
    described += double(parsed->size());
    m.exact += shared == truth.size() && parsed->size() == truth.size();
    m.exact_in_order += candidates.back() == references[i];
  }
  const double n = double(m.count);
  m.exact /= n;
  m.exact_in_order /= n;
  m.parse_fail /= n;
  m.precision = described > 0 ? matched / described : 0;
  m.recall = present > 0 ? matched / present : 0;
  m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0;
  m.bleu4 = corpus_bleu4(candidates, references);
  return m;
}

std::string metrics_json(const Metrics& m) {
  char text[256];
  std::snprintf(text, sizeof text,
                "\"exact\": %.4f, \"exact_in_order\": %.4f, \"precision\": %.4f, \"recall\": %.4f, \"f1\": %.4f, "
                "\"parse_fail\": %.4f, \"bleu4\": %.4f",
                m.exact, m.exact_in_order, m.precision, m.recall, m.f1, m.parse_fail, m.bleu4);
  return text;
}

}  // namespace caption
