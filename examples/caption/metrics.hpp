// The caption task's metrics (docs/caption-task.md, "Metrics on the test split"), from the
// generated token sequences and the reference captions' words.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace caption {

struct Metrics {
  double exact = 0;                          // parses and names exactly the picture's objects (any order)
  double exact_in_order = 0;                 // word for word the reference
  double precision = 0, recall = 0, f1 = 0;  // of (colour, shape, quadrant) triples, over the split
  double parse_fail = 0;                     // share of outputs that do not parse
  double bleu4 = 0;                          // corpus BLEU-4 of the words against the references
  std::size_t count = 0;
};

// generated[i]: a decoder's tokens for picture i (up to and with <eos>, if it made one);
// references[i]: picture i's caption words. Throws std::invalid_argument on a size mismatch.
Metrics score_captions(const std::vector<std::vector<std::size_t>>& generated,
                       const std::vector<std::vector<std::size_t>>& references);

// Corpus BLEU-4 (Papineni et al. 2002): the geometric mean of the clipped 1- to 4-gram
// precisions summed over the corpus, times the brevity penalty exp(1 - r / c) when the
// candidates' length c is below the references' r; 0 when a precision is 0. No smoothing.
double corpus_bleu4(const std::vector<std::vector<std::size_t>>& candidates,
                    const std::vector<std::vector<std::size_t>>& references);

// {"exact": ..., ...}: one JSON object's fields, without braces.
std::string metrics_json(const Metrics& m);

}  // namespace caption
