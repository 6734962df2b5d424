// The caption task (examples/caption, docs/caption-task.md): the grammar and its parser,
// the metrics on hand-made captions, batches and padding, decoding through the key/value
// cache against recomputation, checkpoints, and a short training run.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "grammar.hpp"
#include "helpers.hpp"
#include "metrics.hpp"
#include "model.hpp"
#include "train.hpp"

using namespace caption;
using xtgrad::testing::TempDir;

namespace {

scenes::Object object(std::size_t colour, std::size_t shape, std::size_t cell) {
  scenes::Object o{};
  o.colour = colour;
  o.shape = shape;
  o.cell = cell;
  return o;
}

std::vector<std::size_t> words(const std::string& text) { return words_from_text(text); }

}  // namespace

TEST_CASE("caption grammar: every object in reading order, joined by and") {
  scenes::Scene scene;
  // Drawn in another order than the reading order: cells 14, 2, 4.
  scene.objects = {object(2, 1, 14), object(0, 0, 2), object(5, 3, 4)};
  CHECK(caption_text(caption_words(scene)) ==
        "red circle top right and cyan cross top left and blue square bottom right");
  scene.objects = {object(3, 2, 9)};
  CHECK(caption_text(caption_words(scene)) == "yellow triangle bottom left");
  // Two objects with the same phrase: said twice.
  scene.objects = {object(4, 0, 5), object(4, 0, 0)};
  CHECK(caption_text(caption_words(scene)) == "magenta circle top left and magenta circle top left");
}

TEST_CASE("caption grammar: generated captions parse back to their objects, 4, 9 or 14 words") {
  std::size_t lengths[15] = {};
  for (const scenes::Scene& s : make_split(600, 0)) {
    const std::vector<std::size_t> w = caption_words(s);
    ++lengths[w.size()];
    const auto parsed = parse_words(w);
    REQUIRE(parsed);
    CHECK(*parsed == triples_of(s));
    CHECK(words_of(*parsed) == w);
    CHECK(words_from_text(caption_text(w)) == w);
    std::vector<std::size_t> decoded = w;
    decoded.push_back(kEos);
    CHECK(parse_decoded(decoded) == parsed);
  }
  CHECK(lengths[4] > 150);
  CHECK(lengths[9] > 150);
  CHECK(lengths[14] > 150);
  CHECK(lengths[4] + lengths[9] + lengths[14] == 600);
}

TEST_CASE("caption grammar: what does not parse") {
  CHECK(parse_words(words("red circle top left")));
  CHECK_FALSE(parse_words({}));
  CHECK_FALSE(parse_words(words("red circle top")));
  CHECK_FALSE(parse_words(words("circle red top left")));
  CHECK_FALSE(parse_words(words("red circle left top")));
  CHECK_FALSE(parse_words(words("red circle top left red circle top left")));        // no "and"
  CHECK_FALSE(parse_words(words("red circle top left and")));                        // a dangling "and"
  CHECK_FALSE(parse_words(words("red circle top left and blue square top <eos>")));  // a special token
  CHECK_FALSE(
      parse_words(words("red circle top left and red circle top left and red circle top left and "
                        "red circle top left")));            // four objects
  CHECK_FALSE(parse_decoded(words("red circle top left")));  // no <eos>
  CHECK(parse_decoded(words("red circle top left <eos> <pad> and")));
  CHECK_THROWS_WITH_AS(words_from_text("red circle middle left"), doctest::Contains("unknown word \"middle\""),
                       std::invalid_argument);
}

TEST_CASE("caption metrics: exact, in order, triples, parse failures on hand-made captions") {
  const std::vector<std::vector<std::size_t>> references = {
      words("red circle top left"), words("blue square top left and green cross bottom right"),
      words("yellow triangle top right"), words("cyan cross bottom left")};
  const std::vector<std::vector<std::size_t>> generated = {
      words("red circle top left <eos>"),                                // exact, in order
      words("green cross bottom right and blue square top left <eos>"),  // exact, other order
      words("yellow circle top right <eos>"),                            // one wrong triple
      words("cyan cross bottom")};                                       // no <eos>: does not parse
  const Metrics m = score_captions(generated, references);
  CHECK(m.count == 4);
  CHECK(m.exact == doctest::Approx(0.5));
  CHECK(m.exact_in_order == doctest::Approx(0.25));
  CHECK(m.parse_fail == doctest::Approx(0.25));
  CHECK(m.precision == doctest::Approx(3.0 / 4));  // 3 of the 4 described triples are there
  CHECK(m.recall == doctest::Approx(3.0 / 5));     // 3 of the 5 objects are described
  CHECK(m.f1 == doctest::Approx(2 * 0.75 * 0.6 / 1.35));
  const Metrics perfect = score_captions(
      {words("red circle top left <eos>"), words("blue square top left and green cross bottom right <eos>")},
      {references[0], references[1]});
  CHECK(perfect.exact == 1.0);
  CHECK(perfect.f1 == 1.0);
  CHECK(perfect.bleu4 == doctest::Approx(1.0));
  // A described object too many: precision drops, recall stays.
  const Metrics extra = score_captions({words("red circle top left and red circle top left <eos>")}, {references[0]});
  CHECK(extra.exact == 0.0);
  CHECK(extra.precision == doctest::Approx(0.5));
  CHECK(extra.recall == doctest::Approx(1.0));
  CHECK_THROWS_AS(score_captions({}, {references[0]}), std::invalid_argument);
}

TEST_CASE("caption metrics: corpus BLEU-4 by hand") {
  // 1- to 4-gram precisions 4/5, 3/4, 2/3, 1/2, equal lengths: (0.2)^(1/4).
  CHECK(corpus_bleu4({{1, 2, 3, 4, 5}}, {{1, 2, 3, 4, 6}}) == doctest::Approx(std::pow(0.2, 0.25)));
  // Every n-gram right but one word short: the brevity penalty exp(1 - 5/4).
  CHECK(corpus_bleu4({{1, 2, 3, 4}}, {{1, 2, 3, 4, 5}}) == doctest::Approx(std::exp(-0.25)));
  // Counts are clipped by the reference's: "7 7 7 7" against "7 8 9 10" has no right 2-gram.
  CHECK(corpus_bleu4({{7, 7, 7, 7}}, {{7, 8, 9, 10}}) == 0.0);
  // Corpus-level sums, not a mean of sentence scores: 4-grams (1 + 1) / (2 + 1) overall.
  const double expected = std::pow((8.0 / 9) * (6.0 / 7) * (4.0 / 5) * (2.0 / 3), 0.25);
  CHECK(corpus_bleu4({{1, 2, 3, 4, 5}, {1, 2, 3, 4}}, {{1, 2, 3, 4, 6}, {1, 2, 3, 4}}) == doctest::Approx(expected));
}

TEST_CASE("caption batches: teacher forcing, padding and its mask") {
  const TokenBatch b =
      token_batch({words("red circle top left"), words("blue square top left and red cross top right")});
  CHECK(b.length == 10);
  const std::vector<std::size_t> row0(b.inputs.begin(), b.inputs.begin() + 10);
  const std::vector<std::size_t> target0(b.targets.begin(), b.targets.begin() + 10);
  CHECK(row0 == std::vector<std::size_t>{kBos, 4, 10, 14, 16, kPad, kPad, kPad, kPad, kPad});
  CHECK(target0 == std::vector<std::size_t>{4, 10, 14, 16, kEos, kPad, kPad, kPad, kPad, kPad});
  CHECK(b.targets[19] == kEos);
  CHECK_FALSE(b.padding(0, 4));
  CHECK(b.padding(0, 5));
  CHECK_FALSE(b.padding(1, 9));
}
