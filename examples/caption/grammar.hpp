// The caption task's language (docs/caption-task.md): every object of a picture as a
// phrase "colour shape vertical horizontal", in reading order (by cell, row-major), joined
// by "and", between <bos> and <eos>. Words are token ids; a caption's words exclude
// <bos> and <eos>.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "scenes.hpp"

namespace caption {

constexpr std::size_t kPad = 0, kBos = 1, kEos = 2, kAnd = 3;
constexpr std::size_t kFirstColour = 4, kFirstShape = 10, kTop = 14, kBottom = 15, kLeft = 16, kRight = 17;
constexpr std::size_t kVocabSize = 18;
constexpr std::size_t kMaxObjects = 3;
constexpr std::size_t kMaxWords = 4 * kMaxObjects + (kMaxObjects - 1);  // 14
// Tokens a decoder may produce for one caption: the longest caption's words and <eos>.
constexpr std::size_t kMaxDecode = kMaxWords + 1;  // 15
// Tokens a training sequence holds: <bos> and the words (inputs), or words and <eos>.
constexpr std::size_t kMaxSequence = kMaxWords + 1;

extern const std::array<const char*, kVocabSize> kVocabulary;

// What a phrase says of an object: colour 0..5, shape 0..3, bottom (rows 2-3), right
// (columns 2-3).
struct Triple {
  std::size_t colour = 0, shape = 0;
  bool bottom = false, right = false;
  bool operator==(const Triple& o) const {
    return colour == o.colour && shape == o.shape && bottom == o.bottom && right == o.right;
  }
  bool operator<(const Triple& o) const;
};

Triple triple_of(const scenes::Object& object);
// The scene's objects in reading order (cell ascending) as triples.
std::vector<Triple> triples_of(const scenes::Scene& scene);
// Triples -> the caption's words (phrases joined by "and").
std::vector<std::size_t> words_of(const std::vector<Triple>& triples);
// The reference caption of a scene: words_of(triples_of(scene)).
std::vector<std::size_t> caption_words(const scenes::Scene& scene);

// A caption's words under the grammar: its 1 to 3 triples, or nothing when it does not
// parse (a word out of place, a special token, too many or too few phrases).
std::optional<std::vector<Triple>> parse_words(const std::vector<std::size_t>& words);
// A decoder's output: the words up to an <eos>, parsed; nothing without an <eos>.
std::optional<std::vector<Triple>> parse_decoded(const std::vector<std::size_t>& tokens);
// The words before the first <eos> (all of them without one).
std::vector<std::size_t> words_before_eos(const std::vector<std::size_t>& tokens);

// Token ids as words separated by spaces ("<eos>" and the others by their names).
std::string caption_text(const std::vector<std::size_t>& tokens);
// Words -> ids; throws std::invalid_argument naming an unknown word and listing the vocabulary.
std::vector<std::size_t> words_from_text(const std::string& text);

}  // namespace caption
