// xtgrad-vqa ask --png (examples/vqa/render.*, model.* cross_attention): the model's
// cross-attention weights are distributions over the 16 cells that depend on the picture
// and not on the batch's padding; the page draws given weights where its corners say (the
// largest hottest); the command line writes the page, refusing models without
// cross-attention (exit 2) and unwritable files (exit 1).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "render.hpp"

using namespace vqa;
using draw::Rgb;
using xtgrad::testing::run_program;
using xtgrad::testing::TempDir;
namespace fs = std::filesystem;

namespace {

int run_vqa(const std::string& args, std::string* output = nullptr) {
  return run_program(XTGRAD_VQA_BIN, args, output);
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

float luminance(Rgb c) { return 0.2126f * c.r + 0.7152f * c.g + 0.0722f * c.b; }

ModelConfig tiny_config(const std::string& image) {
  ModelConfig c;
  c.dim = 16;
  c.heads = 2;
  c.ff = 32;
  c.image = image;
  return c;
}

// Map i's weights: a little everywhere, most on cell (5 i + 3) mod 16.
CellWeights fake_map(std::size_t i) {
  CellWeights w;
  for (std::size_t c = 0; c < scenes::kCells; ++c) w[c] = 0.01f + 0.005f * float((c * 7 + i) % 4);
  w[(5 * i + 3) % scenes::kCells] += 0.6f;
  return w;
}

// The heat colour's luminance drawn over each cell of the map at `at` (scale), recovered from
// the blend at the cell's centre; checks the blend matches the weights' colours.
std::vector<float> drawn_heat(const draw::Canvas& page, const std::vector<float>& image, const CellWeights& w,
                              Corner at, std::size_t scale) {
  const long cell = long(scenes::kCellSize * scale);
  const float largest = *std::max_element(w.begin(), w.end()), a = kMapAlpha;
  std::vector<float> heat(scenes::kCells);
  for (std::size_t c = 0; c < scenes::kCells; ++c) {
    const std::size_t ix = (c % 4) * 8 + 4, iy = (c / 4) * 8 + 4;  // the centre's picture pixel
    const float* under = &image[(iy * scenes::kImageSize + ix) * 3];
    const Rgb drawn = page.pixel(std::size_t(at.x + long(c % 4) * cell + cell / 2),
                                 std::size_t(at.y + long(c / 4) * cell + cell / 2));
    const Rgb expected = draw::heat_colour(w[c] / largest);
    CHECK(std::abs(drawn.r - ((1 - a) * under[0] + a * expected.r)) <= 1e-5f);
    CHECK(std::abs(drawn.g - ((1 - a) * under[1] + a * expected.g)) <= 1e-5f);
    heat[c] = luminance(
        {(drawn.r - (1 - a) * under[0]) / a, (drawn.g - (1 - a) * under[1]) / a, (drawn.b - (1 - a) * under[2]) / a});
  }
  return heat;
}

std::size_t argmax(const std::vector<float>& v) {
  return std::size_t(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

TEST_CASE("vqa cross_attention: per layer (B,L,16) rows summing to 1, by picture, not by padding") {
  const std::vector<Example> data = make_split(2, 3);
  const auto short_q = question_words(parse_question("how many circles"));
  const auto long_q = question_words(parse_question("what colour is the object nearest to the red circle"));
  xtgrad::Generator gen(5);
  VqaModel<double> model(tiny_config("attention"), gen);
  model.eval();
  const xtgrad::NoGradGuard no_grad;
  const auto both = vision::image_batch<double>({data[0].scene, data[1].scene});
  const auto weights = model.cross_attention(both, question_batch({short_q, long_q}));
  REQUIRE(weights.size() == 2);  // fusion layers
  for (const auto& w : weights) {
    REQUIRE(w.shape() == xtgrad::Shape{2, long_q.size(), scenes::kCells});
    for (std::size_t b = 0; b < 2; ++b)
      for (std::size_t i = 0; i < long_q.size(); ++i) {
        double total = 0;
        for (std::size_t c = 0; c < scenes::kCells; ++c) {
          CHECK(w.data()(b, i, c) >= 0);
          total += w.data()(b, i, c);
        }
        CHECK(std::abs(total - 1) <= 1e-12);
      }
  }
  // The short question alone: its rows as in the padded batch; another picture: other weights.
  const auto alone = model.cross_attention(vision::image_batch<double>({data[0].scene}), question_batch({short_q}));
  const auto other = model.cross_attention(vision::image_batch<double>({data[1].scene}), question_batch({short_q}));
  double padding_change = 0, picture_change = 0;
  for (std::size_t l = 0; l < 2; ++l)
    for (std::size_t i = 0; i < short_q.size(); ++i)
      for (std::size_t c = 0; c < scenes::kCells; ++c) {
        padding_change = std::max(padding_change, std::abs(alone[l].data()(0, i, c) - weights[l].data()(0, i, c)));
        picture_change = std::max(picture_change, std::abs(alone[l].data()(0, i, c) - other[l].data()(0, i, c)));
      }
  CHECK(padding_change <= 1e-12);
  CHECK(picture_change > 1e-4);
  VqaModel<double> blind(tiny_config("blind"), gen);
  CHECK_THROWS_AS(blind.cross_attention(both, question_batch({short_q, long_q})), std::invalid_argument);
}

TEST_CASE("vqa render: fill_maps averages the layers and pools the words as the model does") {
  xtgrad::Array<float> w0 = xt::zeros<float>({std::size_t(1), std::size_t(3), scenes::kCells});
  xtgrad::Array<float> w1 = w0;
  for (std::size_t i = 0; i < 3; ++i) w0(0, i, i) = 1, w1(0, i, 15) = 1;
  AnsweredQuestion mean_pooled, last_pooled;
  fill_maps({w0, w1}, 3, "mean", mean_pooled);
  fill_maps({w0, w1}, 3, "last", last_pooled);
  REQUIRE(mean_pooled.word_maps.size() == 3);
  CHECK(mean_pooled.word_maps[1][1] == doctest::Approx(0.5));
  CHECK(mean_pooled.word_maps[1][15] == doctest::Approx(0.5));
  CHECK(mean_pooled.pooled[0] == doctest::Approx(1.0 / 6));
  CHECK(mean_pooled.pooled[15] == doctest::Approx(0.5));
  CHECK(last_pooled.pooled[2] == doctest::Approx(0.5));
  CHECK(last_pooled.pooled[0] == 0.0f);
  CHECK_THROWS_AS(fill_maps({w0}, 4, "mean", mean_pooled), std::invalid_argument);
}

TEST_CASE("vqa render: the question's map and each word's show their weights, the largest hottest") {
  AnsweredQuestion s;
  s.scene = scenes::generate_scene(4, 0);
  s.picture_name = "scene 0 of seed 4";
  s.words = {"what", "colour", "is", "the", "object", "left", "of", "the", "red", "circle"};
  s.answer = "blue";
  s.probability = 0.9f;
  s.truth = "blue";
  s.pooled = fake_map(20);
  for (std::size_t i = 0; i < s.words.size(); ++i) s.word_maps.push_back(fake_map(i));
  s.pooled_as = "the mean of the word maps";
  s.averaged_over = "the 2 heads and the 2 fusion layers";
  const draw::Canvas page = render_ask(s);
  std::vector<float> image(scenes::kImageValues);
  scenes::render_image(s.scene, image.data());
  CHECK(argmax(drawn_heat(page, image, s.pooled, pooled_map_corner(), kPooledScale)) == (5 * 20 + 3) % 16);
  for (std::size_t i = 0; i < s.words.size(); ++i) {
    CAPTURE(i);
    CHECK(argmax(drawn_heat(page, image, s.word_maps[i], word_map_corner(i), kWordScale)) == (5 * i + 3) % 16);
  }
  CHECK(word_map_corner(5).y > word_map_corner(4).y);
  CHECK(word_map_corner(9).y + long(scenes::kImageSize * kWordScale) < long(page.height()));
  s.word_maps.pop_back();
  CHECK_THROWS_AS(render_ask(s), std::invalid_argument);
}

TEST_CASE("vqa cli: ask --png writes the page; no cross-attention exits 2, an unwritable file 1") {
  TempDir dir("vqa-png");
  const std::string run = (dir.path / "run").string(), blind = (dir.path / "blind").string();
  const std::string small =
      "--steps 2 --train-size 16 --test-size 8 --batch 8 --eval-every 2 --dim 16 --ff 32 --heads 2";
  REQUIRE(run_vqa("train " + small + " --out " + run) == 0);
  REQUIRE(run_vqa("train --blind " + small + " --out " + blind) == 0);
  const std::string ask = " --image-seed 7 --question \"what shape is left of the red circle\"";
  const fs::path png = dir.path / "ask.png";
  std::string text;
  CHECK(run_vqa("ask --checkpoint " + run + ask + " --png " + png.string(), &text) == 0);
  CHECK(has(text, "picture: " + png.string()));
  REQUIRE(fs::exists(png));
  CHECK(fs::file_size(png) > 1000);
  CHECK(run_vqa("ask --checkpoint " + blind + ask + " --png " + (dir.path / "b.png").string(), &text) == 2);
  CHECK(has(text, "--png"));
  CHECK(!fs::exists(dir.path / "b.png"));
  CHECK(run_vqa("ask --checkpoint " + run + ask + " --png " + (dir.path / "no/such/dir.png").string(), &text) == 1);
  CHECK(run_vqa("ask --checkpoint " + run + ask + " --png", &text) == 2);  // --png without its file
}
