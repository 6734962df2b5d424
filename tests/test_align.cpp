// The toy task: the generator, captions, metrics on hand-made cases, a short training run,
// checkpoints, the command line's answers to bad input, and resume equivalence.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <tuple>

#include "align_test_helpers.hpp"
#include "checkpoint.hpp"
#include "helpers.hpp"
#include "train.hpp"

using namespace align;
using namespace align_test;
namespace fs = std::filesystem;

namespace {

// A small but real run: settings every test that needs a checkpoint shares.
const std::string kSmallRun = "--train-size 400 --test-size 100 --batch 16 --eval-every 10";

const float* pixel(const std::vector<float>& image, std::size_t y, std::size_t x) {
  return &image[(y * kImageSize + x) * kChannels];
}

bool same_object(const Object& a, const Object& b) {
  return a.colour == b.colour && a.shape == b.shape && a.cell == b.cell && a.rgb == b.rgb && a.radius == b.radius &&
         a.cy == b.cy && a.cx == b.cx;
}

// The scene and the rendered picture, field by field and bit for bit.
bool same_example(const Example& a, const Example& b) {
  if (a.objects.size() != b.objects.size()) return false;
  for (std::size_t k = 0; k < a.objects.size(); ++k)
    if (!same_object(a.objects[k], b.objects[k])) return false;
  return a.described == b.described && a.caption == b.caption && a.noise_seed == b.noise_seed &&
         image_of(a) == image_of(b);
}

constexpr float kPalette[kColours][3] = {{0.90f, 0.15f, 0.15f}, {0.15f, 0.80f, 0.20f}, {0.20f, 0.35f, 0.95f},
                                         {0.95f, 0.90f, 0.15f}, {0.90f, 0.20f, 0.85f}, {0.15f, 0.85f, 0.90f}};

// The standard normal's distribution function.
double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

}  // namespace

// ---- data -----------------------------------------------------------------------------
TEST_CASE("align data: the same seed gives the same data, another seed other data") {
  const auto a = generate(50, 7), b = generate(50, 7), c = generate(50, 8);
  bool all_same = true, any_differs = false;
  for (std::size_t i = 0; i < 50; ++i) {
    all_same = all_same && same_example(a[i], b[i]);
    any_differs = any_differs || image_of(a[i]) != image_of(c[i]);
  }
  CHECK(all_same);
  CHECK(any_differs);
  // A picture is rendered the same every time.
  const std::vector<float> first = image_of(a[3]);
  for (int round = 0; round < 3; ++round) CHECK(image_of(a[3]) == first);
}

TEST_CASE("align data: example i made alone is example i of the split") {
  const auto split = generate(300, 21);
  for (std::size_t i : {0u, 1u, 2u, 17u, 150u, 299u}) CHECK(same_example(generate_example(21, i), split[i]));
  // A shorter split is a prefix of a longer one; other split seeds give other examples.
  const auto prefix = generate(40, 21);
  bool is_prefix = true;
  for (std::size_t i = 0; i < prefix.size(); ++i) is_prefix = is_prefix && same_example(prefix[i], split[i]);
  CHECK(is_prefix);
  CHECK(generate_example(22, 5).noise_seed != split[5].noise_seed);
  CHECK(generate_example(21, 6).noise_seed != split[5].noise_seed);
  // The train split (seed S) and the test split (seed S + 1) share no noise stream.
  std::set<std::uint64_t> train_streams;
  for (const auto& e : generate(2000, 0)) train_streams.insert(e.noise_seed);
  std::size_t shared = 0;
  for (const auto& e : generate(1000, 1)) shared += train_streams.count(e.noise_seed);
  CHECK(train_streams.size() == 2000);
  CHECK(shared == 0);
}

TEST_CASE("align data: the generated data is pinned (the same on every run and platform)") {
  // The scenes of seed 0's first examples, with their captions, and the noise sampler's
  // first draws: a change to the generator changes every seed's figures, so it must be a
  // deliberate one (and these values updated with it).
  std::ostringstream scenes;
  for (std::size_t i = 0; i < 4; ++i) {
    const Example e = generate_example(0, i);
    for (const Object& o : e.objects) scenes << o.colour << "," << o.shape << "," << o.cell << " ";
    scenes << "| " << caption_text(e.caption) << "\n";
  }
  CHECK(scenes.str() ==
        "2,2,9 | blue triangle bottom left\n"
        "4,3,0 1,2,10 | green triangle bottom right\n"
        "1,1,13 4,2,3 0,3,9 | green square bottom left\n"
        "3,2,6 | yellow triangle top right\n");
  std::uint64_t state = 0;
  for (double expected : {-0.43832672594887434, 2.4363012579320533, 0.063661341894837992, -0.15204909903151306,
                          0.36678155114709449, 1.6818229857050855})
    CHECK(standard_normal(state) == doctest::Approx(expected).epsilon(1e-15));
}

TEST_CASE("align data: the noise sampler draws standard normals, tails included") {
  // 2,000,000 draws: moments, tail frequencies (the ziggurat's tail beyond r = 3.654 and
  // its wedges both take part), and a chi-square test over 50 equiprobable bins.
  constexpr std::size_t n = 2000000, bins = 50;
  std::uint64_t state = 12345;
  double sum = 0, sum2 = 0, sum4 = 0;
  std::size_t beyond1 = 0, beyond2 = 0, beyond_r = 0, below_minus3 = 0;
  std::vector<std::size_t> count(bins, 0);
  std::vector<double> edges(bins - 1);  // the normal's quantiles at k / bins
  for (std::size_t k = 1; k < bins; ++k) {
    double lo = -10, hi = 10;
    for (int it = 0; it < 200; ++it) (normal_cdf(0.5 * (lo + hi)) < double(k) / bins ? lo : hi) = 0.5 * (lo + hi);
    edges[k - 1] = 0.5 * (lo + hi);
  }
  for (std::size_t i = 0; i < n; ++i) {
    const double z = standard_normal(state);
    sum += z, sum2 += z * z, sum4 += z * z * z * z;
    beyond1 += z > 1.0;
    beyond2 += std::abs(z) > 2.0;
    beyond_r += std::abs(z) > 3.6541528853610088;
    below_minus3 += z < -3.0;
    ++count[std::size_t(std::upper_bound(edges.begin(), edges.end(), z) - edges.begin())];
  }
  const double dn = double(n);
  CHECK(std::abs(sum / dn) < 4.0 / std::sqrt(dn));                            // mean 0
  CHECK(sum2 / dn == doctest::Approx(1.0).epsilon(4 * std::sqrt(2.0 / dn)));  // variance 1
  CHECK(sum4 / dn == doctest::Approx(3.0).epsilon(0.01));                     // kurtosis 3
  const auto near = [&](std::size_t seen, double p) {                         // within 4.5 standard deviations
    const double expected = p * dn;
    return std::abs(double(seen) - expected) < 4.5 * std::sqrt(expected * (1 - p));
  };
  CHECK(near(beyond1, 1 - normal_cdf(1.0)));
  CHECK(near(beyond2, 2 * (1 - normal_cdf(2.0))));
  CHECK(near(below_minus3, normal_cdf(-3.0)));
  CHECK(near(beyond_r, 2 * (1 - normal_cdf(3.6541528853610088))));  // about 516
  double chi2 = 0;
  for (std::size_t c : count) chi2 += (double(c) - dn / bins) * (double(c) - dn / bins) / (dn / bins);
  MESSAGE("chi-square over " << bins << " bins: " << chi2 << " (49 degrees of freedom)");
  CHECK(chi2 < 95.0);  // p < 1e-4 above this
}

TEST_CASE("align data: 1 to 3 objects in distinct cells, each count and value in range") {
  const auto data = generate(600, 3);
  std::size_t by_count[4] = {0, 0, 0, 0};
  for (const auto& e : data) {
    REQUIRE(e.objects.size() >= 1);
    REQUIRE(e.objects.size() <= 3);
    ++by_count[e.objects.size()];
    std::set<std::size_t> cells;
    for (const auto& o : e.objects) {
      cells.insert(o.cell);
      CHECK(o.cell < kPatches);
      CHECK(o.colour < kColours);
      CHECK(o.shape < kShapes);
    }
    CHECK(cells.size() == e.objects.size());
    CHECK(e.described < e.objects.size());
    const std::vector<float> image = image_of(e);
    CHECK(std::all_of(image.begin(), image.end(), [](float v) { return v >= 0.0f && v <= 1.0f; }));
  }
  for (std::size_t n = 1; n <= 3; ++n) CHECK(by_count[n] == doctest::Approx(200).epsilon(0.2));  // uniform
}

TEST_CASE("align data: each shape paints the pixels docs/align-task.md specifies") {
  const double r = 3.0;
  // circle: dy^2 + dx^2 <= r^2
  CHECK(painted(0, 0, 3.0, r));
  CHECK(painted(0, 2.1, 2.1, r));
  CHECK_FALSE(painted(0, 2.2, 2.2, r));
  // square: |dy|, |dx| <= 0.85 r = 2.55
  CHECK(painted(1, 2.5, -2.5, r));
  CHECK_FALSE(painted(1, 2.6, 0, r));
  // triangle: -r <= dy <= 0.8 r and |dx| <= 0.6 (dy + r): apex up, base down
  CHECK(painted(2, -2.9, 0, r));
  CHECK_FALSE(painted(2, -2.9, 0.2, r));
  CHECK(painted(2, 2.4, 3.2, r));
  CHECK_FALSE(painted(2, 2.5, 0, r));
  // cross: (|dy| <= 0.35 r = 1.05 and |dx| <= r) or the transpose
  CHECK(painted(3, 1.0, 2.9, r));
  CHECK(painted(3, 2.9, -1.0, r));
  CHECK_FALSE(painted(3, 2.0, 2.0, r));
}

TEST_CASE("align data: every pixel is painted as docs/align-task.md specifies") {
  // Each object's drawn colour, radius and centre are in their ranges; each pixel is the
  // clipped colour of the last object whose shape covers its centre, or else background.
  std::vector<double> background;
  std::size_t painted_pixels = 0, clipped_to_zero = 0, wrong_cell = 0, wrong_colour = 0, out_of_range = 0;
  for (const auto& e : generate(300, 4)) {
    for (const auto& o : e.objects) {
      for (std::size_t c = 0; c < 3; ++c) CHECK(std::abs(o.rgb[c] - kPalette[o.colour][c]) <= 0.0801f);
      CHECK(o.radius >= 2.6);
      CHECK(o.radius < 3.5);
      CHECK(std::abs(o.cy - double(o.cell / kGrid * kCellSize + 4)) <= 0.5);
      CHECK(std::abs(o.cx - double(o.cell % kGrid * kCellSize + 4)) <= 0.5);
    }
    const std::vector<float> image = image_of(e);
    for (std::size_t y = 0; y < kImageSize; ++y)
      for (std::size_t x = 0; x < kImageSize; ++x) {
        const Object* top = nullptr;
        for (const auto& o : e.objects)
          if (painted(o.shape, y + 0.5 - o.cy, x + 0.5 - o.cx, o.radius)) top = &o;
        const float* p = pixel(image, y, x);
        if (top) {
          ++painted_pixels;
          wrong_cell += top->cell != y / kCellSize * kGrid + x / kCellSize;  // inside its own cell
          for (std::size_t c = 0; c < 3; ++c) wrong_colour += p[c] != std::clamp(top->rgb[c], 0.0f, 1.0f);
        } else {
          for (std::size_t c = 0; c < 3; ++c) {
            out_of_range += !(p[c] >= 0.0f && p[c] <= 1.0f);
            clipped_to_zero += p[c] == 0.0f;
            background.push_back(p[c]);
          }
        }
      }
  }
  CHECK(wrong_cell == 0);
  CHECK(wrong_colour == 0);
  CHECK(out_of_range == 0);
  // The background: 0.1 + N(0, 0.03), clipped at 0 (0.1 is 3.33 deviations above it).
  double mean = 0, var = 0;
  for (double v : background) mean += v;
  mean /= double(background.size());
  for (double v : background) var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / double(background.size()));
  MESSAGE(background.size() << " background values: mean " << mean << ", sd " << sd << ", " << clipped_to_zero
                            << " clipped to 0; " << painted_pixels << " painted pixels");
  CHECK(mean == doctest::Approx(0.1).epsilon(0.002));
  CHECK(sd == doctest::Approx(0.03).epsilon(0.01));
  CHECK(painted_pixels > 300 * 20);                                      // shapes cover about 20 to 40 pixels each
  const double p_zero = 0.5 * std::erfc((0.1 / 0.03) / std::sqrt(2.0));  // P(z < -3.33)
  CHECK(double(clipped_to_zero) == doctest::Approx(p_zero * double(background.size())).epsilon(0.25));
}

TEST_CASE("align data: objects sit in their cells in their colour, the background is dark") {
  for (const auto& e : generate(200, 4)) {
    const std::vector<float> image = image_of(e);
    std::set<std::size_t> occupied;
    for (const auto& o : e.objects) {
      occupied.insert(o.cell);
      // The cell's centre pixel is inside every shape (r >= 2.6, centre jitter <= 0.5).
      const float* p = pixel(image, o.cell / kGrid * kCellSize + 4, o.cell % kGrid * kCellSize + 4);
      for (std::size_t c = 0; c < 3; ++c) CHECK(std::abs(p[c] - kPalette[o.colour][c]) <= 0.0801f);
    }
    for (std::size_t cell = 0; cell < kPatches; ++cell)
      if (!occupied.count(cell)) {
        const float* p = pixel(image, cell / kGrid * kCellSize + 4, cell % kGrid * kCellSize + 4);
        for (std::size_t c = 0; c < 3; ++c) CHECK(std::abs(p[c] - 0.1f) < 0.25f);
      }
  }
}

TEST_CASE("align data: captions describe an object of their image and match it") {
  for (const auto& e : generate(300, 5)) {
    const Object& o = e.objects[e.described];
    CHECK(e.caption == caption_of(o));
    CHECK(matches(e.caption, e));
    CHECK(e.caption[0] == o.colour);
    CHECK(e.caption[1] == 6 + o.shape);
    CHECK(e.caption[2] == (o.cell / kGrid < 2 ? 10u : 11u));
    CHECK(e.caption[3] == (o.cell % kGrid < 2 ? 12u : 13u));
  }
  Example hand;
  hand.objects = {{0, 0, 5}};  // a red circle in row 1, column 1: top left
  CHECK(matches(parse_caption("red circle top left"), hand));
  CHECK_FALSE(matches(parse_caption("red circle top right"), hand));
  CHECK_FALSE(matches(parse_caption("red square top left"), hand));
}

TEST_CASE("align data: captions parse and print, bad words name the vocabulary") {
  const Caption c = parse_caption("  cyan   cross bottom right ");
  CHECK(c == Caption{5, 9, 11, 13});
  CHECK(caption_text(c) == "cyan cross bottom right");
  for (const char* bad :
       {"purple circle top left", "circle red top left", "red circle top", "red circle top left now"}) {
    try {
      parse_caption(bad);
      FAIL("accepted: " << bad);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("vocabulary: red green blue") != std::string::npos);
    }
  }
}

TEST_CASE("align data: patches are 8x8x3 blocks, row-major over the grid") {
  const auto data = generate(2, 6);
  const std::vector<float> image = image_of(data[0]);
  std::vector<float> patches(kPatches * kPatchValues);
  patches_of(data[0], patches.data());
  // patch 6 = row 1, column 2; its value (y=3, x=5, c=2) is pixel (11, 21) channel 2
  CHECK(patches[6 * kPatchValues + (3 * 8 + 5) * 3 + 2] == pixel(image, 11, 21)[2]);
  // Every value: patches_of is a rearrangement of the rendered picture.
  bool all = true;
  for (std::size_t p = 0; p < kPatches; ++p)
    for (std::size_t y = 0; y < kCellSize; ++y)
      for (std::size_t x = 0; x < kCellSize; ++x)
        for (std::size_t c = 0; c < kChannels; ++c)
          all = all && patches[p * kPatchValues + (y * kCellSize + x) * kChannels + c] ==
                           pixel(image, p / kGrid * kCellSize + y, p % kGrid * kCellSize + x)[c];
  CHECK(all);
  // A batch holds each example's patches, in the order asked, for float and double.
  const auto batch = patch_batch<float>(data, {1, 0});
  const auto batch64 = patch_batch<double>(data, {1, 0});
  bool in_batch = true;
  for (std::size_t v = 0; v < kPatches * kPatchValues; ++v)
    in_batch = in_batch && batch.data().data()[kPatches * kPatchValues + v] == patches[v] &&
               batch64.data().data()[kPatches * kPatchValues + v] == double(patches[v]);
  CHECK(in_batch);
}

// ---- metrics --------------------------------------------------------------------------
TEST_CASE("align metrics: P@1 counts captions whose top image matches") {
  std::vector<Example> block(3);
  block[0].objects = {{0, 0, 0}};   // red circle top left
  block[1].objects = {{1, 1, 15}};  // green square bottom right
  block[2].objects = {{0, 0, 1}};   // another red circle top left
  for (auto& e : block) e.described = 0, e.caption = caption_of(e.objects[0]);
  xtgrad::Array<float> scores = {{0.1f, 0.0f, 0.9f},   // caption 0 picks image 2: it matches too
                                 {0.8f, 0.1f, 0.0f},   // caption 1 picks image 0: a miss
                                 {0.0f, 0.0f, 0.5f}};  // caption 2 picks its own image
  CHECK(top1_hits(scores, block) == 2);
}

TEST_CASE("align metrics: grounding averages the colour and shape tokens") {
  Example e;
  e.objects = {{2, 3, 9}, {4, 1, 2}};
  e.described = 0;                             // the object in cell 9
  std::vector<float> attention(4 * 16, 0.0f);  // (token, patch)
  attention[0 * 16 + 9] = 0.6f;                // colour token looks at cell 9
  attention[1 * 16 + 2] = 0.5f;                // shape token prefers cell 2 ...
  attention[1 * 16 + 9] = 0.3f;                // ... but the mean favours cell 9 (0.45 vs 0.25)
  attention[2 * 16 + 2] = 1.0f;                // position tokens do not count
  attention[3 * 16 + 2] = 1.0f;
  CHECK(grounding_hit(attention.data(), e));
  e.described = 1;
  CHECK_FALSE(grounding_hit(attention.data(), e));
}

namespace {

// rows of `count` floats: a's row i equals b's row i, bit for bit
bool same_floats(const float* a, const float* b, std::size_t count) { return std::equal(a, a + count, b); }

}  // namespace

TEST_CASE("align metrics: evaluation's halves give forward's scores and its attention on the chosen pairs exactly") {
  const auto data = generate(8, 3);
  const std::vector<std::size_t> images{0, 1, 2, 3, 4, 5, 6, 7}, captions{2, 5, 0, 7, 6};
  const std::vector<std::size_t> chosen{2, 5, 0, 7, 2};  // caption i's own image, but the last
  const auto patches = patch_batch<float>(data, images);
  const auto ids = caption_batch(data, captions);
  for (const bool with_attention : {true, false}) {
    xtgrad::Generator gen(5);
    AlignModel<float> model(ModelConfig{32, 4, with_attention}, gen);
    xtgrad::NoGradGuard no_grad;
    const ModelOutput<float> full = model.forward(patches, ids);  // attention (5,8,4,16)
    const ImageKeys<float> keys = model.image_keys(patches);
    CHECK(keys.keys.has_value() == with_attention);
    const ModelOutput<float> picked = model.score_images_selected(keys, ids, chosen);
    CHECK(picked.scores.data() == full.scores.data());
    REQUIRE(picked.attention.defined() == with_attention);
    if (!with_attention) continue;
    REQUIRE(picked.attention.shape() == xtgrad::Shape{5, 4, 16});
    const std::size_t pair = kCaptionLength * kPatches;
    for (std::size_t i = 0; i < captions.size(); ++i)
      CHECK(same_floats(picked.attention.data().data() + i * pair,
                        full.attention.data().data() + (i * images.size() + chosen[i]) * pair, pair));
    CHECK(picked.attention.data()(0, 0, 3) > 0.0f);  // weights, not zeros: each row sums to 1
    const float* row = picked.attention.data().data() + (1 * kCaptionLength + 2) * kPatches;  // caption 1, token 2
    CHECK(std::abs(std::accumulate(row, row + kPatches, 0.0f) - 1.0f) < 1e-5f);
  }
}

TEST_CASE("align attention: forward_all_pairs_selected and projected keys are forward_all_pairs exactly") {
  xtgrad::Generator gen(11);
  xtgrad::MultiHeadCrossAttention<float> attn(8, 2, 6, 5, 8, true, 0.0, gen);
  const auto queries = xtgrad::randn<float>({3, 2, 8}, gen), keys = xtgrad::randn<float>({4, 5, 6}, gen);
  const auto values = xtgrad::randn<float>({4, 5, 5}, gen);
  const xtgrad::AttendMask padding = xtgrad::attend_mask(xtgrad::Mask{{true, false, true, true, true},
                                                                      {false, false, false, false, false},
                                                                      {true, true, true, true, false},
                                                                      {true, true, true, true, true}});
  const std::vector<std::size_t> chosen{1, 3, 0};
  for (const bool average : {true, false}) {
    const auto all = attn.forward_all_pairs(queries, keys, values, padding, average);
    const auto picked = attn.forward_all_pairs_selected(queries, keys, values, chosen, padding, average);
    const auto projected = attn.project_all_pairs_keys(keys, values, padding);
    const auto again = attn.forward_all_pairs_selected(queries, projected, chosen, average);
    CHECK(attn.forward_all_pairs(queries, projected, average).weights.data() == all.weights.data());
    CHECK(picked.output.data() == all.output.data());
    CHECK(again.output.data() == all.output.data());
    CHECK(picked.weights.shape() == (average ? xtgrad::Shape{3, 2, 5} : xtgrad::Shape{3, 2, 2, 5}));
    const std::size_t pair = (average ? 1 : 2) * 2 * 5;  // (H,) Lq, Lk
    for (std::size_t i = 0; i < 3; ++i) {
      const float* expected = all.weights.data().data() + (i * 4 + chosen[i]) * pair;
      CHECK(same_floats(picked.weights.data().data() + i * pair, expected, pair));
      CHECK(same_floats(again.weights.data().data() + i * pair, expected, pair));
    }
  }
  CHECK(attn.forward_all_pairs_selected(queries, keys, values, chosen, padding).weights.data()(2, 0, 1) == 0.0f);
  CHECK_THROWS_WITH_AS(attn.forward_all_pairs_selected(queries, keys, values, {1, 4, 0}),
                       "MultiHeadCrossAttention.forward_all_pairs_selected: weight key 4 is out of range: 4 key "
                       "elements",
                       std::invalid_argument);
  CHECK_THROWS_AS(attn.forward_all_pairs_selected(queries, keys, values, {1, 2}), std::invalid_argument);
}

// train.cpp evaluates on every core whatever --threads says: that is only sound because
// the forward pass gives the same bits at any thread count. The real evaluation's shapes
// (a block of 100 images, 25 captions a chunk), a model moved off its initial weights.
TEST_CASE("align metrics: evaluation gives the same bits on 1, 2 and 3 threads") {
  const auto data = generate(100, 7);
  xtgrad::Generator gen(3);
  AlignModel<float> model(ModelConfig{}, gen);
  for (auto& p : model.parameters()) p.mutable_data() += xtgrad::randn<float>(p.shape(), gen, 0.0f, 0.05f).data();
  std::vector<std::size_t> images(100), captions(25);
  std::iota(images.begin(), images.end(), 0);
  std::iota(captions.begin(), captions.end(), 40);
  const auto patches = patch_batch<float>(data, images);
  const auto ids = caption_batch(data, captions);
  const int before = xtgrad::num_threads();
  const auto outputs_on = [&](int threads) {
    xtgrad::set_num_threads(threads);
    xtgrad::NoGradGuard no_grad;
    const ModelOutput<float> out = model.forward(patches, ids);
    return std::tuple{out.scores.data(), out.attention.data(), count_hits(model, data)};
  };
  const auto [scores, attention, counts] = outputs_on(1);
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    const auto [scores_n, attention_n, counts_n] = outputs_on(threads);
    CHECK(std::equal(scores.begin(), scores.end(), scores_n.begin(), scores_n.end()));
    CHECK(std::equal(attention.begin(), attention.end(), attention_n.begin(), attention_n.end()));
    CHECK(counts_n.hits == counts.hits);
    CHECK(counts_n.grounded == counts.grounded);
  }
  xtgrad::set_num_threads(before);
  CHECK(counts.hits > 0);  // a model that scores something, not a degenerate one
}

// train.cpp renders batches ahead on a thread of their own only when the steps leave a
// core free; both ways must hand the steps the sampler's batches, rendered alike.
TEST_CASE("align sampler: batches drawn ahead or on demand are the sampler's, rendered alike") {
  const auto data = generate(40, 2);
  const BatchSampler start(data.size(), 8, sampler_seed(2));
  BatchSampler ahead_sampler = start, demand_sampler = start, reference = start;
  BatchPrefetcher ahead(data, start, {}, true), on_demand(data, start, {}, false);
  for (int step = 0; step < 7; ++step) {  // into the second epoch
    CAPTURE(step);
    const RankBatch a = ahead.next(ahead_sampler), b = on_demand.next(demand_sampler);
    const std::vector<std::size_t> expected = reference.next();
    CHECK(a.global == expected);
    CHECK(b.global == expected);
    CHECK(b.local.indices == expected);
    CHECK(b.local.caption_ids == caption_batch(data, expected));
    CHECK(a.local.patches.data() == b.local.patches.data());
    CHECK(b.local.patches.data() == patch_batch<float>(data, expected).data());
  }
  BatchSampler skipped = start;
  skipped.next();  // a run sampler one batch ahead of the prefetcher's
  CHECK_THROWS_AS(on_demand.next(skipped), std::logic_error);
}

// ---- training -------------------------------------------------------------------------
TEST_CASE("align training: a short run climbs far above chance, the baseline cannot ground") {
  TempDir dir("short");
  TrainOptions options;
  options.steps = 200;
  options.eval_every = 200;
  options.train_size = 2000;
  options.test_size = 200;
  options.out_dir = dir.path.string();
  std::ostringstream log;
  const TrainResult attention = train(options, log);
  MESSAGE("200 steps: P@1 " << attention.metrics.p_at_1 << ", grounding " << attention.metrics.grounding);
  CHECK(attention.metrics.p_at_1 > 0.3);     // chance is about 0.02
  CHECK(attention.metrics.grounding > 0.8);  // chance is about 1/16
  const auto lines = read_file(dir / "metrics.jsonl");
  CHECK(lines.find("\"step\": 200, \"loss\": ") != std::string::npos);
  CHECK(lines.find("\"ms_per_step\": ") != std::string::npos);
  CHECK(fs::exists(dir / "model.safetensors"));
  CHECK(fs::exists(dir / "train_state.safetensors"));

  options.model.attention = false;  // mean pooling: knows what, not where
  const TrainResult pooled = train(options, log);
  MESSAGE("200 steps without attention: P@1 " << pooled.metrics.p_at_1);
  CHECK(pooled.metrics.grounding == 0.0);
  CHECK(pooled.metrics.p_at_1 < attention.metrics.p_at_1 - 0.1);
}

// ---- checkpoints ----------------------------------------------------------------------
TEST_CASE("align checkpoint: a saved model loads with the same outputs, from the directory or the file") {
  TempDir dir("ckpt");
  xtgrad::Generator gen(1);
  AlignModel<float> model(ModelConfig{32, 2, true}, gen);
  save_model(dir.path.string(), model, 7, {{"seed", "3"}});
  for (const std::string& path : {dir.path.string(), dir / "model.safetensors"}) {
    LoadedModel loaded = load_model(path);
    CHECK(loaded.step == 7);
    CHECK(loaded.config.dim == 32);
    CHECK(loaded.metadata.at("seed") == "3");
    const auto data = generate(4, 2);
    const std::vector<std::size_t> idx{0, 1, 2, 3};
    const auto patches = patch_batch<float>(data, idx);
    const auto ids = caption_batch(data, idx);
    CHECK(loaded.model->forward(patches, ids).scores.data() == model.forward(patches, ids).scores.data());
  }
}

TEST_CASE("align checkpoint: foreign, mismatched and missing checkpoints are refused by name") {
  TempDir dir("foreign");
  xtgrad::Generator gen(1);
  AlignModel<float> model(ModelConfig{32, 2, true}, gen);
  auto state = model.state_dict();
  auto config = model.config.to_metadata();
  // no "format": a safetensors file that is not ours
  xtgrad::save_safetensors<float>(dir / "model.safetensors", state, config);
  CHECK_THROWS_WITH_AS(load_model(dir.path.string()), doctest::Contains("not an xtgrad-align model"),
                       xtgrad::CheckpointError);
  // our format, but a tensor short
  config["format"] = kModelFormat;
  config["step"] = "1";
  state.erase("norm.bias");
  xtgrad::save_safetensors<float>(dir / "model.safetensors", state, config);
  CHECK_THROWS_WITH_AS(load_model(dir.path.string()), doctest::Contains("missing 'norm.bias'"),
                       xtgrad::CheckpointError);
  // a configuration the tensors do not fit
  state = model.state_dict();
  config["dim"] = "64";
  config["heads"] = "4";
  xtgrad::save_safetensors<float>(dir / "model.safetensors", state, config);
  CHECK_THROWS_WITH_AS(load_model(dir.path.string()), doctest::Contains("has shape"), xtgrad::CheckpointError);
  CHECK_THROWS_AS(load_model(dir / "nothing-here"), xtgrad::CheckpointError);
}

// ---- the command line -----------------------------------------------------------------
TEST_CASE("align cli: bad flags and values exit 2 with a message") {
  TempDir dir("cli");
  const std::string out = " --out " + dir.path.string();
  std::string text;
  CHECK(run_align("train --bogus 3" + out, &text) == 2);
  CHECK(text.find("--bogus") != std::string::npos);
  CHECK(run_align("train --steps 0" + out, &text) == 2);
  CHECK(text.find("--steps") != std::string::npos);
  CHECK(run_align("train --lr 0" + out, &text) == 2);
  CHECK(text.find("--lr") != std::string::npos);
  CHECK(run_align("train --lr -1" + out) == 2);
  CHECK(run_align("train --steps ten" + out) == 2);
  CHECK(run_align("train --heads 3 --dim 64" + out, &text) == 2);
  CHECK(text.find("must divide --dim 64") != std::string::npos);
  CHECK(run_align("train --optimizer rmsprop" + out, &text) == 2);
  CHECK(text.find("adam, adamw or sgd") != std::string::npos);
  CHECK(run_align("") == 2);
  CHECK(run_align("fly") == 2);
  CHECK_FALSE(fs::exists(dir / "metrics.jsonl"));  // nothing ran
}

TEST_CASE("align cli: an output directory that cannot be written is reported before training") {
  TempDir dir("unwritable");
  std::ofstream(dir / "file") << "x";  // a file where a directory is wanted
  std::string text;
  CHECK(run_align("train --steps 5 --out " + (dir / "file") + "/run", &text) == 2);
  CHECK(text.find("cannot write to the output directory") != std::string::npos);
  CHECK(text.find("generating") == std::string::npos);  // before any work
}

TEST_CASE("align cli: checkpoints: missing, truncated, corrupt and foreign exit 1, bad captions exit 2") {
  TempDir dir("cli-ckpt");
  REQUIRE(run_align("train --steps 10 " + kSmallRun + " --out " + dir.path.string()) == 0);
  std::string text;
  CHECK(run_align("eval --checkpoint " + dir.path.string(), &text) == 0);
  CHECK(text.find("{\"p_at_1\": ") != std::string::npos);
  CHECK(run_align("eval --checkpoint " + (dir / "model.safetensors")) == 0);

  CHECK(run_align(
            "show --checkpoint " + dir.path.string() + " --caption \"red circle top middle\" --png " + (dir / "x.png"),
            &text) == 2);
  CHECK(text.find("vocabulary: red green blue") != std::string::npos);
  CHECK(run_align(
            "show --checkpoint " + dir.path.string() + " --caption \"red circle top left\" --png " + (dir / "s.png"),
            &text) == 0);
  CHECK(fs::file_size(dir / "s.png") > 1000);

  CHECK(run_align("eval --checkpoint " + (dir / "absent"), &text) == 1);
  CHECK(text.find("does not exist") != std::string::npos);

  const std::string good = read_file(dir / "model.safetensors");
  std::ofstream(dir / "model.safetensors", std::ios::binary) << good.substr(0, good.size() / 2);  // truncated
  CHECK(run_align("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(text.find("model.safetensors") != std::string::npos);
  std::string corrupt = good;
  corrupt[12] = '#';  // inside the JSON header
  std::ofstream(dir / "model.safetensors", std::ios::binary) << corrupt;
  CHECK(run_align("eval --checkpoint " + dir.path.string()) == 1);
  xtgrad::save_safetensors<float>(dir / "model.safetensors", {{"w", xt::zeros<float>({2})}}, {});  // foreign
  CHECK(run_align("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(text.find("not an xtgrad-align model") != std::string::npos);
}

TEST_CASE("align cli: a run stopped and resumed ends with the same parameters as one run") {
  TempDir dir("resume");
  const std::string a = dir / "a", b = dir / "b";
  REQUIRE(run_align("train --steps 20 " + kSmallRun + " --out " + a) == 0);
  std::string text;
  CHECK(run_align("train --resume " + a + " --steps 20", &text) == 2);           // already there
  CHECK(run_align("train --resume " + a + " --steps 40 --lr 0.5", &text) == 2);  // settings are the run's
  REQUIRE(run_align("train --resume " + a + " --steps 40 --eval-every 10") == 0);
  REQUIRE(run_align("train --steps 40 " + kSmallRun + " --out " + b) == 0);
  CHECK(same_but_run_id(a + "/model.safetensors", b + "/model.safetensors"));
  CHECK(same_but_run_id(a + "/train_state.safetensors", b + "/train_state.safetensors"));
}

TEST_CASE("align cli: sample writes a picture and prints the captions") {
  TempDir dir("sample");
  std::string text;
  CHECK(run_align("sample --count 8 --png " + (dir / "grid.png"), &text) == 0);
  CHECK(fs::file_size(dir / "grid.png") > 1000);
  const auto data = generate(8, 0);
  CHECK(text.find(caption_text(data[7].caption)) != std::string::npos);
  CHECK(run_align("sample --count 0 --png " + (dir / "none.png")) == 2);
}
