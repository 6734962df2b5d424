// Shared by the tests of `train --resume` (caption, vqa): two runs' files compared bit for
// bit, their metrics records compared, and a checkpoint's metadata edited to make it bad.
#pragma once

#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "xtgrad/safetensors.hpp"

namespace xtgrad::testing {

// Every tensor of two safetensors files: the same names, shapes and bits; and the same
// metadata but for the run's identity.
inline void check_same_bits(const std::string& a, const std::string& b) {
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
inline std::vector<std::string> metrics_lines(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line.substr(0, line.find(", \"elapsed_s\"")));
  return out;
}

inline void set_metadata(const std::string& path, const std::string& key, const std::string& value) {
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);
  file.metadata[key] = value;
  xtgrad::save_safetensors<float>(path, file.tensors, file.metadata);
}

// Runs a program with arguments: its exit code, its output in `output` (run_program's).
using RunProgram = std::function<int(const std::string& args, std::string* output)>;

// `train <settings>` (12 steps, evaluations at 4, 8 and 12) run once into dir/once, and in
// pieces into dir/pieces: stopped at 4, resumed to 8 in place (after the metrics line a run
// killed between evaluation and checkpoint leaves), resumed from 8 into dir/other, and
// resumed in place to the end. Both resumed runs end with the bits of the run done once
// (model and train state) and its metrics lines (dir/other a fresh record of its own).
inline void check_resume_bit_identical(const RunProgram& run, const std::string& settings,
                                       const std::filesystem::path& dir) {
  const std::string once = dir / "once", pieces = dir / "pieces", other = dir / "other";
  std::string text;
  REQUIRE_MESSAGE(run("train " + settings + " --out " + once, &text) == 0, text);
  REQUIRE_MESSAGE(run("train " + settings + " --stop-at 4 --out " + pieces, &text) == 0, text);
  CHECK(text.find("done: step 4") != std::string::npos);
  CHECK(metrics_lines(pieces + "/metrics.jsonl").size() == 1);
  std::ofstream(pieces + "/metrics.jsonl", std::ios::app) << "{\"step\": 8, \"loss\": 9.0}\n";
  REQUIRE_MESSAGE(run("train --resume " + pieces + " --stop-at 8", &text) == 0, text);
  CHECK(text.find("done: step 8") != std::string::npos);
  const std::string model = read_file(pieces + "/model.safetensors");
  REQUIRE_MESSAGE(run("train --resume " + pieces + " --out " + other, &text) == 0, text);
  CHECK(read_file(pieces + "/model.safetensors") == model);  // the run resumed from is not touched
  REQUIRE_MESSAGE(run("train --resume " + (pieces + "/model.safetensors"), &text) == 0, text);
  CHECK(text.find("done: step 12") != std::string::npos);

  for (const std::string& resumed : {pieces, other}) {
    CAPTURE(resumed);
    check_same_bits(once + "/model.safetensors", resumed + "/model.safetensors");
    check_same_bits(once + "/train_state.safetensors", resumed + "/train_state.safetensors");
  }
  const std::vector<std::string> expected = metrics_lines(once + "/metrics.jsonl");
  CHECK(expected.size() == 3);
  CHECK(metrics_lines(pieces + "/metrics.jsonl") == expected);
  CHECK(metrics_lines(other + "/metrics.jsonl") == std::vector<std::string>{expected.back()});
  CHECK_FALSE(std::filesystem::exists(pieces + "/train_state.next.safetensors"));
}

// `train --resume dir <flag>` for each flag, which differs from the run's stored setting:
// exit 2 naming the flag and the checkpoint's setting, and the run directory untouched.
inline void check_clashing_flags(const RunProgram& run, const std::filesystem::path& dir,
                                 const std::vector<std::string>& flags) {
  const std::string model = read_file(dir / "model.safetensors"), state = read_file(dir / "train_state.safetensors");
  const std::string metrics = read_file(dir / "metrics.jsonl");
  std::string text;
  for (const std::string& flag : flags) {
    CAPTURE(flag);
    CHECK(run("train --resume " + dir.string() + " " + flag, &text) == 2);
    CHECK_MESSAGE(text.find(flag.substr(0, flag.find(' ')) + " ") != std::string::npos, text);
    CHECK_MESSAGE(text.find("checkpoint's") != std::string::npos, text);
  }
  CHECK(read_file(dir / "model.safetensors") == model);
  CHECK(read_file(dir / "train_state.safetensors") == state);
  CHECK(read_file(dir / "metrics.jsonl") == metrics);
}

// Two runs of the same settings stopped at step 4, dir/run and dir/other: `train --resume
// dir/run` refuses a missing checkpoint, then each bad train state (missing, truncated,
// another run's, another program's, of another step, a bad sampler position, no schedule
// position) and each bad model file (corrupt, another program's, bad metadata, another
// run's) with exit 1 naming the problem and nothing left behind; each is put back before
// the next, and the resume then works.
inline void check_bad_checkpoints(const RunProgram& run_program, const std::string& program,
                                  const std::filesystem::path& dir) {
  const std::string run = dir / "run", other = dir / "other";
  const std::string model_path = run + "/model.safetensors", state_path = run + "/train_state.safetensors";
  const std::string model = read_file(model_path), state = read_file(state_path);
  const auto restore = [&] {
    std::ofstream(model_path, std::ios::binary) << model;
    std::ofstream(state_path, std::ios::binary) << state;
  };
  std::string text;
  CHECK(run_program("train --resume " + (dir / "absent").string(), &text) == 1);
  CHECK_MESSAGE(text.find("does not exist") != std::string::npos, text);
  std::filesystem::create_directories(dir / "empty");
  CHECK(run_program("train --resume " + (dir / "empty").string(), &text) == 1);
  CHECK_MESSAGE(text.find("model.safetensors") != std::string::npos, text);

  const auto refused = [&](const std::string& why, const std::string& expected) {
    CAPTURE(why);
    CHECK(run_program("train --resume " + run, &text) == 1);
    CHECK_MESSAGE(text.find(expected) != std::string::npos, text);
    CHECK_FALSE(std::filesystem::exists(run + "/metrics.jsonl.tmp"));
    restore();
  };
  std::filesystem::remove(state_path);
  refused("no train state", "train_state.safetensors");
  std::ofstream(state_path, std::ios::binary) << state.substr(0, state.size() / 2);
  refused("a truncated train state", "train_state.safetensors");
  std::filesystem::copy_file(other + "/train_state.safetensors", state_path,
                             std::filesystem::copy_options::overwrite_existing);
  refused("another run's train state", "copied from another run");
  set_metadata(state_path, "format", "xtgrad-align-train-state/1");
  refused("a foreign train state", "not an " + program + " train state");
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
  refused("a foreign model", "not an " + program + " model");
  set_metadata(model_path, "steps", "12abc");
  refused("bad metadata", "'steps' = \"12abc\"");
  set_metadata(model_path, "run_id", "0123456789abcdef");
  refused("a model of another run", "copied from another run");

  CHECK(read_file(model_path) == model);  // restored, and a resume still works from it
  CHECK(read_file(run + "/metrics.jsonl").size() > 0);
  CHECK_MESSAGE(run_program("train --resume " + run + " --stop-at 8", &text) == 0, text);
}

}  // namespace xtgrad::testing
