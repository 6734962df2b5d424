// The toy task: the generator, captions, metrics on hand-made cases, a short training run,
// checkpoints, the command line's answers to bad input, and resume equivalence.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

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

const float* pixel(const Example& e, std::size_t y, std::size_t x) { return &e.image[(y * kImageSize + x) * kChannels]; }

}  // namespace

// ---- data -----------------------------------------------------------------------------
TEST_CASE("align data: the same seed gives the same data, another seed other data") {
  const auto a = generate(50, 7), b = generate(50, 7), c = generate(50, 8);
  bool all_same = true, any_differs = false;
  for (std::size_t i = 0; i < 50; ++i) {
    all_same = all_same && a[i].image == b[i].image && a[i].caption == b[i].caption;
    any_differs = any_differs || a[i].image != c[i].image;
  }
  CHECK(all_same);
  CHECK(any_differs);
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
    for (float v : e.image) CHECK_MESSAGE((v >= 0.0f && v <= 1.0f), "value " << v);
  }
  for (std::size_t n = 1; n <= 3; ++n) CHECK(by_count[n] == doctest::Approx(200).epsilon(0.2));  // uniform
}

TEST_CASE("align data: each shape paints the pixels TASK.md specifies") {
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

TEST_CASE("align data: objects sit in their cells in their colour, the background is dark") {
  const float palette[kColours][3] = {{0.90f, 0.15f, 0.15f}, {0.15f, 0.80f, 0.20f}, {0.20f, 0.35f, 0.95f},
                                      {0.95f, 0.90f, 0.15f}, {0.90f, 0.20f, 0.85f}, {0.15f, 0.85f, 0.90f}};
  for (const auto& e : generate(200, 4)) {
    std::set<std::size_t> occupied;
    for (const auto& o : e.objects) {
      occupied.insert(o.cell);
      // The cell's centre pixel is inside every shape (r >= 2.6, centre jitter <= 0.5).
      const float* p = pixel(e, o.cell / kGrid * kCellSize + 4, o.cell % kGrid * kCellSize + 4);
      for (std::size_t c = 0; c < 3; ++c) CHECK(std::abs(p[c] - palette[o.colour][c]) <= 0.0801f);
    }
    for (std::size_t cell = 0; cell < kPatches; ++cell)
      if (!occupied.count(cell)) {
        const float* p = pixel(e, cell / kGrid * kCellSize + 4, cell % kGrid * kCellSize + 4);
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
  for (const char* bad : {"purple circle top left", "circle red top left", "red circle top", "red circle top left now"}) {
    try {
      parse_caption(bad);
      FAIL("accepted: " << bad);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("vocabulary: red green blue") != std::string::npos);
    }
  }
}

TEST_CASE("align data: patches are 8x8x3 blocks, row-major over the grid") {
  const auto data = generate(1, 6);
  std::vector<float> patches(kPatches * kPatchValues);
  patches_of(data[0], patches.data());
  // patch 6 = row 1, column 2; its value (y=3, x=5, c=2) is pixel (11, 21) channel 2
  CHECK(patches[6 * kPatchValues + (3 * 8 + 5) * 3 + 2] == pixel(data[0], 11, 21)[2]);
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
  e.described = 0;  // the object in cell 9
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
  CHECK(attention.metrics.p_at_1 > 0.3);      // chance is about 0.02
  CHECK(attention.metrics.grounding > 0.8);   // chance is about 1/16
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
  CHECK_THROWS_WITH_AS(load_model(dir.path.string()), doctest::Contains("missing 'norm.bias'"), xtgrad::CheckpointError);
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

  CHECK(run_align("show --checkpoint " + dir.path.string() + " --caption \"red circle top middle\" --png " +
                      (dir / "x.png"), &text) == 2);
  CHECK(text.find("vocabulary: red green blue") != std::string::npos);
  CHECK(run_align("show --checkpoint " + dir.path.string() + " --caption \"red circle top left\" --png " + (dir / "s.png"),
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
  CHECK(run_align("train --resume " + a + " --steps 20", &text) == 2);  // already there
  CHECK(run_align("train --resume " + a + " --steps 40 --lr 0.5", &text) == 2);  // settings are the run's
  REQUIRE(run_align("train --resume " + a + " --steps 40 --eval-every 10") == 0);
  REQUIRE(run_align("train --steps 40 " + kSmallRun + " --out " + b) == 0);
  CHECK(read_file(a + "/model.safetensors") == read_file(b + "/model.safetensors"));
  CHECK(read_file(a + "/train_state.safetensors") == read_file(b + "/train_state.safetensors"));
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

TEST_CASE("align checkpoint: temporaries of dead writers are removed, a live writer's are kept") {
  TempDir dir("stale");
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // a pid that no longer runs
  const std::string dead = dir / ("model.safetensors.tmp-" + std::to_string(child) + "-0");
  const std::string live = dir / ("train_state.safetensors.tmp-" + std::to_string(::getpid()) + "-3");
  std::ofstream(dead) << "partial";
  std::ofstream(live) << "partial";
  std::ofstream(dir / "notes.tmp-1-1") << "not ours";
  CHECK(remove_stale_temporaries(dir.path.string()) == 1);
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(live));
  CHECK(fs::exists(dir / "notes.tmp-1-1"));
}
