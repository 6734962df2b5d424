// The caption model (examples/caption/model.*): padding changes no logit, decoding through
// the key/value cache gives what recomputing the prefix gives, a checkpoint reloads to the
// same captions, and a short training run learns to caption.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "decode.hpp"
#include "grammar.hpp"
#include "helpers.hpp"
#include "model.hpp"
#include "train.hpp"

using namespace caption;
using xtgrad::testing::TempDir;

namespace {

ModelConfig small_config(const std::string& image) {
  ModelConfig c;
  c.dim = 16;
  c.heads = 2;
  c.layers = 2;
  c.ff = 32;
  c.image = image;
  return c;
}

// Each hypothesis's summed log-probability is what the teacher-forced model gives its
// tokens (beam search reordered the cache right), best first. Returns how many went on
// after parting from the best one (so that the reordering mattered).
template <class T>
std::size_t check_beam_scores(CaptionModel<T>& model, const xtgrad::Tensor<T>& picture,
                              const std::vector<Hypothesis>& hypotheses, double tolerance) {
  std::size_t diverged = 0;
  for (std::size_t k = 0; k < hypotheses.size(); ++k) {
    const Hypothesis& h = hypotheses[k];
    if (k > 0) CHECK(hypotheses[k - 1].log_prob >= h.log_prob);
    const auto split =
        std::mismatch(h.tokens.begin(), h.tokens.end(), hypotheses[0].tokens.begin(), hypotheses[0].tokens.end());
    diverged += split.first - h.tokens.begin() + 1 < long(h.tokens.size());  // it went on after parting
    const bool ended = h.tokens.back() == kEos;
    const TokenBatch b = token_batch({std::vector<std::size_t>(h.tokens.begin(), h.tokens.end() - ended)});
    const auto log_probs = xtgrad::log_softmax(model.forward(picture, b), -1);
    double sum = 0;
    for (std::size_t t = 0; t < h.tokens.size(); ++t) sum += double(log_probs.data()(0, t, h.tokens[t]));
    CHECK(sum == doctest::Approx(h.log_prob).epsilon(tolerance));
  }
  return diverged;
}

}  // namespace

TEST_CASE("caption model: teacher-forced logits, padded or not, are those of feeding the tokens one by one") {
  xtgrad::Generator gen(3);
  CaptionModel<double> model(small_config("attention"), gen);
  model.eval();  // BatchNorm by its running statistics: a picture's features do not depend on the batch
  const std::vector<scenes::Scene> data = make_split(2, 0);
  const std::vector<std::size_t> short_caption = words_from_text("red circle top left");
  const auto alone = model.forward(image_batch<double>({data[0]}), token_batch({short_caption}));
  const auto padded = model.forward(image_batch<double>(data),
                                    token_batch({short_caption, words_from_text("blue square top left and red cross "
                                                                                "top right")}));
  REQUIRE(alone.shape() == xtgrad::Shape{1, 5, kVocabSize});
  REQUIRE(padded.shape() == xtgrad::Shape{2, 10, kVocabSize});
  // The reference needs no mask at all: the caption's tokens fed one at a time through the
  // decoder's cache, each seeing the ones before it.
  const std::vector<std::size_t> inputs = token_batch({short_caption}).inputs;
  auto caches = model.decoder->start_decoding(model.encode(image_batch<double>({data[0]})).memory);
  std::size_t differ = 0;  // a NaN differs too
  for (std::size_t t = 0; t < 5; ++t) {
    const auto x = model.token_embed->forward({inputs[t]}, {1, 1}) + xtgrad::narrow(model.token_position, 0, t, 1);
    const auto step = model.out->forward(model.decoder->forward_step(x, caches));  // (1,1,18)
    for (std::size_t v = 0; v < kVocabSize; ++v) {
      differ += !(std::abs(alone.data()(0, t, v) - step.data()(0, 0, v)) <= 1e-12);
      differ += !(std::abs(padded.data()(0, t, v) - step.data()(0, 0, v)) <= 1e-12);
    }
  }
  CHECK(differ == 0);
}

TEST_CASE("caption model: decoding with the key/value cache equals decoding by recomputation") {
  for (const std::string image : {"attention", "blind", "no-attention"}) {
    CAPTURE(image);
    xtgrad::Generator gen(11);
    CaptionModel<double> model(small_config(image), gen);
    model.eval();
    const xtgrad::NoGradGuard no_grad;
    const auto images = image_batch<double>(make_split(6, 5));
    const auto cached = model.greedy(images, kMaxDecode, /*use_cache=*/true);
    const auto recomputed = model.greedy(images, kMaxDecode, /*use_cache=*/false);
    CHECK(cached == recomputed);
    std::size_t tokens = 0;
    for (const auto& c : cached) tokens += c.size();
    CHECK(tokens > 6);  // not all stopped at once
  }
}

TEST_CASE(
    "caption decoding: beam 1 and a near-zero temperature are greedy, beams score their tokens as the model does") {
  for (const std::string image : {"attention", "no-attention"}) {
    CAPTURE(image);
    xtgrad::Generator gen(5);
    CaptionModel<double> model(small_config(image), gen);
    model.eval();
    const xtgrad::NoGradGuard no_grad;
    for (const scenes::Scene& scene : make_split(4, 9)) {
      const auto picture = image_batch<double>({scene});
      const std::vector<std::size_t> greedy = model.greedy(picture, kMaxDecode)[0];
      const std::vector<Hypothesis> one = beam_search(model, picture, 1, kMaxDecode);
      REQUIRE(one.size() == 1);
      CHECK(one[0].tokens == greedy);
      xtgrad::Generator sampler(1);
      CHECK(sample(model, picture, 1e-9, kMaxDecode, sampler).tokens == greedy);
      // 4 beams: each hypothesis's log-probability is what the teacher-forced model gives its
      // tokens (the cache was reordered right), best first.
      const std::vector<Hypothesis> four = beam_search(model, picture, 4, kMaxDecode);
      REQUIRE_FALSE(four.empty());
      CHECK(four.size() <= 4);
      check_beam_scores(model, picture, four, 1e-9);
    }
  }
}

TEST_CASE("caption training: a short run learns to caption, the blind baseline cannot, checkpoints reload") {
  TempDir dir("caption-train");
  TrainOptions o;
  o.steps = 450;
  o.eval_every = 450;
  o.test_size = 200;
  o.out_dir = dir.path.string();
  std::ostringstream log;
  const TrainResult r = train(o, log);
  CAPTURE(log.str());
  CHECK(r.step == 450);
  CHECK(r.metrics.exact >= 0.6);  // 0.81 on the development machine
  CHECK(r.metrics.f1 >= 0.8);     // 0.89
  CHECK(r.metrics.parse_fail <= 0.05);

  // The checkpoint holds the model: the same captions after loading.
  LoadedModel loaded = load_model(dir.path.string());
  CHECK(loaded.step == 450);
  CHECK(loaded.seed == 0);
  CHECK(loaded.test_size == 200);
  const auto test = make_split(200, 1);
  std::vector<std::vector<std::size_t>> generated;
  const Metrics again = evaluate(*loaded.model, test, &generated);
  CHECK(again.exact == doctest::Approx(r.metrics.exact));
  CHECK(again.f1 == doctest::Approx(r.metrics.f1));
  // Beam search (4) on the trained model: parseable captions, as exact as greedy's or more.
  std::vector<std::vector<std::size_t>> beams, references;
  {
    const xtgrad::NoGradGuard no_grad;
    loaded.model->eval();
    for (std::size_t i = 0; i < 50; ++i) {
      beams.push_back(beam_search(*loaded.model, image_batch<float>({test[i]}), 4, kMaxDecode).front().tokens);
      references.push_back(caption_words(test[i]));
    }
  }
  const std::vector<std::vector<std::size_t>> greedy50(generated.begin(), generated.begin() + 50);
  CHECK(score_captions(beams, references).exact >= score_captions(greedy50, references).exact - 0.06);
  CHECK(score_captions(beams, references).parse_fail <= 0.05);
  // The trained model's beams part ways: their scores check the cache's reordering.
  std::size_t diverged = 0;
  {
    const xtgrad::NoGradGuard no_grad;
    for (std::size_t i = 0; i < 5; ++i) {
      const auto picture = image_batch<float>({test[i]});
      diverged += check_beam_scores(*loaded.model, picture, beam_search(*loaded.model, picture, 4, kMaxDecode), 1e-4);
    }
  }
  CHECK(diverged >= 5);

  TempDir blind_dir("caption-blind");
  o.model.image = "blind";
  o.out_dir = blind_dir.path.string();
  const TrainResult blind = train(o, log);
  CHECK(blind.metrics.exact <= 0.05);
  CHECK(blind.metrics.f1 < 0.2);
}
