// xtgrad-caption train --resume: a run stopped at an evaluation and resumed ends with the
// same bits in every tensor (model and train state) and the same metrics lines as a run that
// was never stopped; flags that clash with the stored run exit 2 naming the flag; a missing,
// corrupt or foreign checkpoint exits 1 and leaves the run as it was.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "caption_test_helpers.hpp"
#include "helpers.hpp"
#include "xtgrad/safetensors.hpp"

namespace fs = std::filesystem;
using caption_test::has;
using caption_test::run_caption;
using xtgrad::testing::read_file;
using xtgrad::testing::TempDir;

namespace {

// 8 batches an epoch: the stop at step 4 is in the middle of the first epoch (the sampler's
// position matters) and the run goes on into the second (its generator matters); the
// schedule warms up over 2 steps and decays to 0 at step 12.
const std::string kRun =
    "--steps 12 --warmup 2 --train-size 64 --test-size 20 --batch 8 --eval-every 4 --dim 16 --ff 32";

// Every tensor of two safetensors files: the same names, shapes and bits; and the same
// metadata but for the run's identity.
void check_same_bits(const std::string& a, const std::string& b) {
  CAPTURE(a);
  const xtgrad::Safetensors<float> x = xtgrad::load_safetensors<float>(a), y = xtgrad::load_safetensors<float>(b);
  REQUIRE(x.tensors.size() == y.tensors.size());
  for (const auto& [name, tensor] : x.tensors) {
    CAPTURE(name);
    const auto other = y.tensors.find(name);
    REQUIRE(other != y.tensors.end());
    REQUIRE(tensor.shape() == other->second.shape());
    CHECK(std::memcmp(tensor.data(), other->second.data(), tensor.size() * sizeof(float)) == 0);
  }
  xtgrad::Metadata mx = x.metadata, my = y.metadata;
  CHECK(mx.at("run_id") != my.at("run_id"));  // two runs: their files differ only there
  mx.erase("run_id");
  my.erase("run_id");
  CHECK(mx == my);
}

// The lines of a metrics.jsonl without their wall-clock field ("elapsed_s", the last).
std::vector<std::string> metrics_lines(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line.substr(0, line.find(", \"elapsed_s\"")));
  return out;
}

void set_metadata(const std::string& path, const std::string& key, const std::string& value) {
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);
  file.metadata[key] = value;
  xtgrad::save_safetensors<float>(path, file.tensors, file.metadata);
}

}  // namespace

TEST_CASE("caption resume: stopped at evaluations and resumed, a run ends bit-identical to one run") {
  TempDir dir("caption-resume");
  const std::string once = dir / "once", pieces = dir / "pieces";
  REQUIRE(run_caption("train " + kRun + " --out " + once) == 0);
  std::string text;
  REQUIRE_MESSAGE(run_caption("train " + kRun + " --stop-at 4 --out " + pieces, &text) == 0, text);
  CHECK(has(text, "done: step 4"));
  CHECK(metrics_lines(pieces + "/metrics.jsonl").size() == 1);
  // A line of an evaluation whose checkpoint never landed (a run killed between the two):
  // the resume drops it.
  std::ofstream(pieces + "/metrics.jsonl", std::ios::app) << "{\"step\": 8, \"loss\": 9.0}\n";
  REQUIRE_MESSAGE(run_caption("train --resume " + pieces + " --stop-at 8", &text) == 0, text);
  CHECK(has(text, "done: step 8"));
  REQUIRE_MESSAGE(run_caption("train --resume " + (pieces + "/model.safetensors"), &text) == 0, text);
  CHECK(has(text, "done: step 12"));

  check_same_bits(once + "/model.safetensors", pieces + "/model.safetensors");
  check_same_bits(once + "/train_state.safetensors", pieces + "/train_state.safetensors");
  const std::vector<std::string> expected = metrics_lines(once + "/metrics.jsonl");
  CHECK(expected.size() == 3);
  CHECK(metrics_lines(pieces + "/metrics.jsonl") == expected);
  CHECK_FALSE(fs::exists(pieces + "/train_state.next.safetensors"));
}

TEST_CASE("caption resume: into another --out, the resumed run writes a fresh record there") {
  TempDir dir("caption-resume-out");
  const std::string a = dir / "a", b = dir / "b", once = dir / "once";
  REQUIRE(run_caption("train " + kRun + " --out " + once) == 0);
  REQUIRE(run_caption("train " + kRun + " --stop-at 8 --out " + a) == 0);
  const std::string model = read_file(a + "/model.safetensors");
  std::string text;
  REQUIRE_MESSAGE(run_caption("train --resume " + a + " --out " + b, &text) == 0, text);
  CHECK(read_file(a + "/model.safetensors") == model);  // the run resumed from is not touched
  check_same_bits(once + "/model.safetensors", b + "/model.safetensors");
  const std::vector<std::string> expected = metrics_lines(once + "/metrics.jsonl");
  CHECK(metrics_lines(b + "/metrics.jsonl") == std::vector<std::string>{expected.back()});
}

TEST_CASE("caption resume: a flag that clashes with the stored run exits 2 naming it, nothing touched") {
  TempDir dir("caption-resume-flags");
  const std::string run = dir.path.string();
  REQUIRE(run_caption("train " + kRun + " --stop-at 4 --out " + run) == 0);
  const std::string model = read_file(dir / "model.safetensors"), state = read_file(dir / "train_state.safetensors");
  const std::string metrics = read_file(dir / "metrics.jsonl");
  std::string text;
  for (const char* flag : {"--steps 20", "--lr 0.5", "--batch 4", "--weight-decay 0", "--warmup 3", "--warmup 0",
                           "--seed 1", "--train-size 72", "--test-size 30", "--dim 32", "--heads 2", "--layers 1",
                           "--ff 64", "--blind", "--no-attention"}) {
    CAPTURE(flag);
    CHECK(run_caption("train --resume " + run + " " + flag, &text) == 2);
    const std::string name = std::string(flag).substr(0, std::string(flag).find(' '));
    CHECK_MESSAGE(has(text, name + " "), text);
    CHECK_MESSAGE(has(text, "checkpoint's"), text);
  }
  CHECK(run_caption("train --resume " + run + " --stop-at 6", &text) == 2);  // not an evaluation step
  CHECK_MESSAGE(has(text, "--stop-at 6"), text);
  CHECK(run_caption("train --resume " + run + " --stop-at 4", &text) == 2);  // already there
  CHECK_MESSAGE(has(text, "already at step 4"), text);
  CHECK(run_caption("train --resume " + run + " --stop-at -4", &text) == 2);
  CHECK(read_file(dir / "model.safetensors") == model);
  CHECK(read_file(dir / "train_state.safetensors") == state);
  CHECK(read_file(dir / "metrics.jsonl") == metrics);
  // The stored settings given again agree; --eval-every and --threads may change.
  CHECK_MESSAGE(run_caption("train --resume " + run + " --steps 12 --batch 8 --lr 0.002 --warmup 2 --dim 16 " +
                                "--eval-every 2 --threads 2 --stop-at 6",
                            &text) == 0,
                text);
  CHECK(has(text, "done: step 6"));
  CHECK(run_caption("train --resume " + run + " --eval-every 2 --stop-at 12") == 0);
  CHECK(run_caption("train --resume " + run, &text) == 2);  // the run is complete
  CHECK_MESSAGE(has(text, "already at step 12"), text);
}

TEST_CASE("caption resume: a missing, corrupt or foreign checkpoint exits 1 naming the file, nothing touched") {
  TempDir dir("caption-resume-bad");
  const std::string run = dir / "run", other = dir / "other";
  REQUIRE(run_caption("train " + kRun + " --stop-at 4 --out " + run) == 0);
  REQUIRE(run_caption("train " + kRun + " --stop-at 4 --out " + other) == 0);  // the same settings, another run
  const std::string model_path = run + "/model.safetensors", state_path = run + "/train_state.safetensors";
  const std::string model = read_file(model_path), state = read_file(state_path);
  const auto restore = [&] {
    std::ofstream(model_path, std::ios::binary) << model;
    std::ofstream(state_path, std::ios::binary) << state;
  };
  std::string text;
  CHECK(run_caption("train --resume " + (dir / "absent"), &text) == 1);
  CHECK_MESSAGE(has(text, "does not exist"), text);
  fs::create_directories(dir / "empty");
  CHECK(run_caption("train --resume " + (dir / "empty"), &text) == 1);
  CHECK_MESSAGE(has(text, "model.safetensors"), text);

  const auto refused = [&](const std::string& why, const std::string& expected) {
    CAPTURE(why);
    CHECK(run_caption("train --resume " + run, &text) == 1);
    CHECK_MESSAGE(has(text, expected), text);
    CHECK_FALSE(fs::exists(run + "/metrics.jsonl.tmp"));
    restore();
  };
  fs::remove(state_path);
  refused("no train state", "train_state.safetensors");
  std::ofstream(state_path, std::ios::binary) << state.substr(0, state.size() / 2);
  refused("a truncated train state", "train_state.safetensors");
  fs::copy_file(other + "/train_state.safetensors", state_path, fs::copy_options::overwrite_existing);
  refused("another run's train state", "copied from another run");
  set_metadata(state_path, "format", "xtgrad-align-train-state/1");
  refused("a foreign train state", "not an xtgrad-caption train state");
  set_metadata(state_path, "step", "8");
  refused("a train state of another step", "it is at step 8 but the model is at step 4");
  set_metadata(state_path, "sampler.position", "-1");
  refused("a bad sampler position", "-1");
  {
    xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(state_path);
    file.tensors.erase("scheduler.step");  // a train state without the schedule's position
    xtgrad::save_safetensors<float>(state_path, file.tensors, file.metadata);
  }
  refused("no schedule position", "'step'");
  std::string corrupt = model;
  corrupt[12] = '#';  // inside the JSON header
  std::ofstream(model_path, std::ios::binary) << corrupt;
  refused("a corrupt model", "model.safetensors");
  set_metadata(model_path, "format", "xtgrad-align-model/1");
  refused("a foreign model", "not an xtgrad-caption model");
  set_metadata(model_path, "steps", "12abc");
  refused("bad metadata", "'steps' = \"12abc\"");
  set_metadata(model_path, "run_id", "0123456789abcdef");
  refused("a model of another run", "copied from another run");

  CHECK(read_file(model_path) == model);  // restored, and a resume still works from it
  CHECK(read_file(run + "/metrics.jsonl").size() > 0);
  CHECK_MESSAGE(run_caption("train --resume " + run, &text) == 0, text);
}
