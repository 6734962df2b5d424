#include "grammar.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace caption {

const std::array<const char*, kVocabSize> kVocabulary = {"<pad>",    "<bos>",  "<eos>",   "and",    "red",    "green",
                                                         "blue",     "yellow", "magenta", "cyan",   "circle", "square",
                                                         "triangle", "cross",  "top",     "bottom", "left",   "right"};

bool Triple::operator<(const Triple& o) const {
  return std::tie(colour, shape, bottom, right) < std::tie(o.colour, o.shape, o.bottom, o.right);
}

Triple triple_of(const scenes::Object& object) {
  const std::size_t row = object.cell / scenes::kGrid, column = object.cell % scenes::kGrid;
  return {object.colour, object.shape, row >= 2, column >= 2};
}

std::vector<Triple> triples_of(const scenes::Scene& scene) {
  std::vector<const scenes::Object*> objects;
  for (const scenes::Object& o : scene.objects) objects.push_back(&o);
  // Reading order: the objects are drawn in a random order, their cells are distinct.
  std::sort(objects.begin(), objects.end(), [](const auto* a, const auto* b) { return a->cell < b->cell; });
  std::vector<Triple> out;
  for (const auto* o : objects) out.push_back(triple_of(*o));
  return out;
}

std::vector<std::size_t> words_of(const std::vector<Triple>& triples) {
  std::vector<std::size_t> words;
  for (std::size_t i = 0; i < triples.size(); ++i) {
    if (i) words.push_back(kAnd);
    const Triple& t = triples[i];
    words.insert(words.end(),
                 {kFirstColour + t.colour, kFirstShape + t.shape, t.bottom ? kBottom : kTop, t.right ? kRight : kLeft});
  }
  return words;
}

std::vector<std::size_t> caption_words(const scenes::Scene& scene) { return words_of(triples_of(scene)); }

std::optional<std::vector<Triple>> parse_words(const std::vector<std::size_t>& words) {
  // 4 words per phrase and one "and" between phrases: 4, 9 or 14 words.
  if (words.size() % 5 != 4 || words.size() > kMaxWords) return std::nullopt;
  const auto in = [](std::size_t w, std::size_t first, std::size_t count) { return w >= first && w < first + count; };
  std::vector<Triple> triples;
  for (std::size_t at = 0; at < words.size(); at += 5) {
    if (at > 0 && words[at - 1] != kAnd) return std::nullopt;
    const std::size_t colour = words[at], shape = words[at + 1], vertical = words[at + 2], horizontal = words[at + 3];
    if (!in(colour, kFirstColour, scenes::kColours) || !in(shape, kFirstShape, scenes::kShapes) ||
        !in(vertical, kTop, 2) || !in(horizontal, kLeft, 2))
      return std::nullopt;
    triples.push_back({colour - kFirstColour, shape - kFirstShape, vertical == kBottom, horizontal == kRight});
  }
  return triples;
}

std::vector<std::size_t> words_before_eos(const std::vector<std::size_t>& tokens) {
  return {tokens.begin(), std::find(tokens.begin(), tokens.end(), kEos)};
}

std::optional<std::vector<Triple>> parse_decoded(const std::vector<std::size_t>& tokens) {
  if (std::find(tokens.begin(), tokens.end(), kEos) == tokens.end()) return std::nullopt;
  return parse_words(words_before_eos(tokens));
}

std::string caption_text(const std::vector<std::size_t>& tokens) {
  std::string out;
  for (std::size_t i = 0; i < tokens.size(); ++i)
    out += (i ? " " : "") + (tokens[i] < kVocabSize ? std::string(kVocabulary[tokens[i]]) : "?");
  return out;
}

std::vector<std::size_t> words_from_text(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::size_t> ids;
  for (std::string word; in >> word;) {
    const auto found = std::find(kVocabulary.begin(), kVocabulary.end(), word);
    if (found == kVocabulary.end()) {
      std::string list;
      for (const char* w : kVocabulary) list += std::string(list.empty() ? "" : " ") + w;
      throw std::invalid_argument("unknown word \"" + word + "\" in \"" + text + "\"; vocabulary: " + list);
    }
    ids.push_back(std::size_t(found - kVocabulary.begin()));
  }
  return ids;
}

}  // namespace caption
