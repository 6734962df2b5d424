// xtgrad-caption's pictures (examples/caption/render.*): generate's page draws each word's
// heat map with the given weights where generate_map_corner says (the largest weight
// hottest), sample's page holds every picture with its caption, and the command line writes
// exactly these pages to PNG files (generate --png, sample --png), refusing bad flags.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "decode.hpp"
#include "helpers.hpp"
#include "page.hpp"
#include "png_check.hpp"
#include "render.hpp"
#include "train.hpp"

namespace {

using draw::Canvas;
using draw::picture_of;
using draw::Rgb;
using xtgrad::testing::check_png_is;
using xtgrad::testing::run_program;
using xtgrad::testing::TempDir;
namespace fs = std::filesystem;

int run_caption(const std::string& args, std::string* output = nullptr) {
  return run_program(XTGRAD_CAPTION_BIN, args, output);
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

float luminance(Rgb c) { return 0.2126f * c.r + 0.7152f * c.g + 0.0722f * c.b; }

// Word i's weights: a little everywhere, most on cell (5 i + 3) mod 16.
caption::CellWeights fake_map(std::size_t i) {
  caption::CellWeights w;
  for (std::size_t c = 0; c < scenes::kCells; ++c) w[c] = 0.01f + 0.005f * float((c * 7 + i) % 4);
  w[(5 * i + 3) % scenes::kCells] += 0.6f;
  return w;
}

caption::GeneratedCaption fake_generated(std::uint64_t seed) {
  caption::GeneratedCaption g;
  g.scene = scenes::generate_scene(seed, 0);
  g.picture_name = "scene 0 of seed " + std::to_string(seed);
  g.reference = caption::caption_words(g.scene);
  g.words = g.reference;
  for (std::size_t i = 0; i < g.words.size(); ++i) g.maps.push_back(fake_map(i));
  g.verdict = "exact";
  g.exact = true;
  g.averaged_over = "the 4 heads of the last decoder layer (of 2)";
  return g;
}

}  // namespace

TEST_CASE("caption render: each word's heat map shows its weights, the largest hottest, at its corner") {
  const caption::GeneratedCaption g = fake_generated(3);
  REQUIRE(g.words.size() >= 4);
  const Canvas page = caption::render_generate(g);
  const std::vector<float> image = picture_of(g.scene);
  const long cell = long(scenes::kCellSize * caption::kMapScale);
  for (std::size_t i = 0; i < g.words.size(); ++i) {
    CAPTURE(i);
    const caption::Corner at = caption::generate_map_corner(i);
    const caption::CellWeights& w = g.maps[i];
    const float largest = *std::max_element(w.begin(), w.end());
    const std::size_t peak = (5 * i + 3) % scenes::kCells;
    // The colour drawn over each cell, recovered from the blend at the cell's centre.
    std::vector<float> heat(scenes::kCells);
    for (std::size_t c = 0; c < scenes::kCells; ++c) {
      const std::size_t ix = (c % 4) * 8 + 4, iy = (c / 4) * 8 + 4;  // the centre's picture pixel
      const float* under = &image[(iy * scenes::kImageSize + ix) * 3];
      const Rgb drawn = page.pixel(std::size_t(at.x + long(c % 4) * cell + cell / 2),
                                   std::size_t(at.y + long(c / 4) * cell + cell / 2));
      const Rgb expected = draw::heat_colour(w[c] / largest);
      const float a = caption::kMapAlpha;
      CHECK(std::abs(drawn.r - ((1 - a) * under[0] + a * expected.r)) <= 1e-5f);
      CHECK(std::abs(drawn.g - ((1 - a) * under[1] + a * expected.g)) <= 1e-5f);
      CHECK(std::abs(drawn.b - ((1 - a) * under[2] + a * expected.b)) <= 1e-5f);
      heat[c] = luminance(
          {(drawn.r - (1 - a) * under[0]) / a, (drawn.g - (1 - a) * under[1]) / a, (drawn.b - (1 - a) * under[2]) / a});
    }
    CHECK(std::size_t(std::max_element(heat.begin(), heat.end()) - heat.begin()) == peak);
    // The largest cell outlined in white, the word written under the map.
    const Rgb corner = page.pixel(std::size_t(at.x + long(peak % 4) * cell), std::size_t(at.y + long(peak / 4) * cell));
    CHECK((corner.r == 1.0f && corner.g == 1.0f && corner.b == 1.0f));
    std::size_t ink = 0;
    for (long y = at.y + cell * 4 + 8; y < at.y + cell * 4 + 20; ++y)
      for (long x = at.x; x < at.x + cell * 4; ++x) ink += luminance(page.pixel(std::size_t(x), std::size_t(y))) < 0.5f;
    CHECK(ink > 10);
  }
  // Nothing where a further word's map would go.
  const caption::Corner next = caption::generate_map_corner(g.words.size());
  if (std::size_t(next.x + 2 * cell) < page.width() && std::size_t(next.y + 2 * cell) < page.height()) {
    const Rgb empty = page.pixel(std::size_t(next.x + cell), std::size_t(next.y + cell));
    CHECK((empty.r == page.background().r && empty.g == page.background().g && empty.b == page.background().b));
  }
  // A row of maps per five words: 14 words take three rows, 4 words one.
  CHECK(caption::generate_map_corner(5).y > caption::generate_map_corner(4).y);
  CHECK(caption::generate_map_corner(5).x == caption::generate_map_corner(0).x);
  CHECK(page.width() <= 1000);
  CHECK(page.height() <= 700);

  caption::GeneratedCaption mismatched = g;
  mismatched.maps.pop_back();
  CHECK_THROWS_AS(caption::render_generate(mismatched), std::invalid_argument);
}

TEST_CASE("caption render: sample's page holds every picture with its caption, a row per four") {
  std::vector<scenes::Scene> scenes;
  for (std::size_t i = 0; i < 6; ++i) scenes.push_back(scenes::generate_scene(5, i));
  const Canvas page = caption::render_sample(scenes, "six pictures");
  // The first picture, 5x enlarged, at the top left of the grid (title above it).
  const std::vector<float> image = picture_of(scenes[0]);
  std::size_t found = 0;
  for (std::size_t y = 0; y + 160 < page.height() && !found; ++y)
    for (std::size_t x = 0; x + 160 < page.width() && !found; ++x) {
      const Rgb p = page.pixel(x + 2, y + 2), q = page.pixel(x + 157, y + 157);
      found = std::abs(p.r - image[0]) < 1e-6f && std::abs(p.g - image[1]) < 1e-6f &&
              std::abs(q.r - image[(31 * 32 + 31) * 3]) < 1e-6f &&
              std::abs(q.b - image[(31 * 32 + 31) * 3 + 2]) < 1e-6f;
    }
  CHECK(found);
  CHECK(page.width() >= 4 * 160);
  CHECK(page.width() <= 1400);
  // Two rows of tiles as tall as the longest caption (up to six lines of text).
  CHECK(page.height() >= 2 * 160);
  const Canvas one_row = caption::render_sample({scenes.begin(), scenes.begin() + 4}, "four");
  CHECK(one_row.height() + 160 < page.height());
}

TEST_CASE("caption render: generate --png and sample --png write these pages; bad flags exit 2") {
  TempDir dir("caption-render");
  const std::string run = dir.path.string();
  REQUIRE(
      run_caption("train --steps 4 --train-size 64 --test-size 10 --batch 8 --eval-every 4 --dim 16 --ff 32 --out " +
                  run) == 0);
  std::string text;
  for (const char* beam : {"1", "3"}) {
    CAPTURE(beam);
    const std::string png = dir / (std::string("generate-") + beam + ".png");
    REQUIRE(run_caption("generate --checkpoint " + run + " --image-seed 7 --beam " + beam + " --png " + png, &text) ==
            0);
    CHECK(has(text, "picture: " + png));
    // The page is the one render_generate draws for the chosen tokens and their attention.
    caption::LoadedModel loaded = caption::load_model(run);
    const xtgrad::NoGradGuard no_grad;
    loaded.model->eval();
    caption::GeneratedCaption g = fake_generated(7);
    const xtgrad::Tensor<float> image = caption::image_batch<float>({g.scene});
    const auto tokens =
        caption::beam_search(*loaded.model, image, std::stoul(beam), caption::kMaxDecode).front().tokens;
    g.words = caption::words_before_eos(tokens);
    g.maps = caption::word_attention(*loaded.model, image, g.words);
    const bool parsed = caption::parse_decoded(tokens).has_value();
    g.exact = parsed && caption::score_captions({tokens}, {g.reference}).exact == 1.0;
    g.verdict = !parsed ? "does not parse" : g.exact ? "exact" : "not exact";
    g.averaged_over = "the 4 heads of the last decoder layer (of 2)";
    check_png_is(png, caption::render_generate(g));
  }
  const std::string sample = dir / "sample.png";
  REQUIRE(run_caption("sample --count 6 --seed 5 --png " + sample, &text) == 0);
  std::vector<scenes::Scene> scenes;
  for (std::size_t i = 0; i < 6; ++i) scenes.push_back(scenes::generate_scene(5, i));
  check_png_is(sample, caption::render_sample(
                           scenes, "6 pictures of the training split of --seed 5 and their reference captions"));
  CHECK(has(text, caption::caption_text(caption::caption_words(scenes[5]))));

  for (const char* bad : {"sample --count 0 --png x.png", "sample --count -1 --png x.png",
                          "sample --count 257 --png x.png", "sample --seed -2 --png x.png", "sample --count 3",
                          "sample --png x.png --bogus", "generate --checkpoint DIR --image-seed -1 --png x.png"}) {
    CAPTURE(bad);
    CHECK(run_caption(bad, &text) == 2);
    CHECK(has(text, "Usage"));
  }
  // A page that cannot be written: exit 1 naming it, nothing left behind.
  const std::string nowhere = dir / "absent/page.png";
  CHECK(run_caption("sample --png " + nowhere, &text) == 1);
  CHECK(has(text, nowhere));
  CHECK_FALSE(fs::exists(dir / "absent"));
  CHECK(run_caption("generate --checkpoint " + run + " --image-seed 7 --png " + nowhere, &text) == 1);

  // A model without cross-attention has nothing to draw: refused before decoding.
  const std::string blind = dir / "blind";
  REQUIRE(run_caption("train --steps 2 --train-size 16 --test-size 4 --batch 8 --eval-every 2 --dim 16 --ff 32 --blind "
                      "--out " +
                      blind) == 0);
  CHECK(run_caption("generate --checkpoint " + blind + " --image-seed 7 --png " + (dir / "b.png"), &text) == 2);
  CHECK(has(text, "no cross-attention"));
  CHECK_FALSE(fs::exists(dir / "b.png"));
}

TEST_CASE("caption word_attention: a map per token that sums to 1, the same for a prefix; none without attention") {
  caption::ModelConfig config;
  config.dim = 16;
  config.heads = 2;
  config.ff = 32;
  xtgrad::Generator gen(5);
  caption::CaptionModel<double> model(config, gen);
  model.eval();
  const xtgrad::NoGradGuard no_grad;
  const scenes::Scene scene = scenes::generate_scene(11, 2);
  const xtgrad::Tensor<double> image = caption::image_batch<double>({scene});
  std::vector<std::size_t> tokens = caption::caption_words(scene);
  tokens.push_back(caption::kEos);
  const std::vector<caption::CellWeights> maps = caption::word_attention(model, image, tokens);
  REQUIRE(maps.size() == tokens.size());
  for (const caption::CellWeights& map : maps) {
    double sum = 0;
    for (float w : map) sum += w;
    CHECK(std::abs(sum - 1.0) <= 1e-6);
  }
  CHECK(maps[0] != maps[1]);
  // The last layer's weights (the first layer's differ): the cache's, kept for every layer.
  const auto encoded = model.encode(image);
  auto caches = model.decoder->start_decoding(encoded.memory, /*need_weights=*/true);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    model.step({t == 0 ? caption::kBos : tokens[t - 1]}, t, encoded, caches);
    double last = 0, first = 0;
    for (std::size_t c = 0; c < scenes::kCells; ++c) {
      last = std::max(last, std::abs(caches.back().memory_weights.data()(0, 0, c) - double(maps[t][c])));
      first = std::max(first, std::abs(caches.front().memory_weights.data()(0, 0, c) - double(maps[t][c])));
    }
    CHECK(last <= 1e-7);
    CHECK(first > 1e-4);
  }
  // A step sees only the tokens before it: a prefix's maps are the whole caption's first ones.
  const std::vector<caption::CellWeights> prefix =
      caption::word_attention(model, image, std::vector<std::size_t>(tokens.begin(), tokens.begin() + 3));
  REQUIRE(prefix.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) CHECK(prefix[i] == maps[i]);

  config.image = "no-attention";
  caption::CaptionModel<double> pooled(config, gen);
  pooled.eval();
  CHECK_THROWS_AS(caption::word_attention(pooled, image, tokens), std::invalid_argument);
}
