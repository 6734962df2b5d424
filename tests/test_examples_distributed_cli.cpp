// xtgrad-caption and xtgrad-vqa train under mpiexec (docs/distributed.md), run as child
// processes: N ranks on shares of each global batch (SyncBatchNorm in the CNN, gradients
// averaged by DistributedDataParallel) follow one process on the whole batch; rank 0 alone
// writes; --resume on as many ranks ends bit-identical to a run never stopped, and on
// another count is refused; bad input stops every rank with one message.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "xtgrad/safetensors.hpp"

namespace fs = std::filesystem;
using xtgrad::testing::read_file;
using xtgrad::testing::run_program;
using xtgrad::testing::TempDir;

namespace {

// mpiexec with its flags (tests/CMakeLists.txt), stopped after 120 s: ranks that wait for
// each other forever fail the test instead of hanging the suite.
const std::string kMpiexec = "timeout 120 " XTGRAD_MPIEXEC;

// Tiny runs: 6 steps of a global batch of 8, an evaluation (and checkpoint) every 3.
const std::string kVqaRun =
    "train --steps 6 --warmup 2 --train-size 64 --test-size 12 --batch 8 --eval-every 3 --dim 16 --ff 32 --heads 2";
const std::string kCaptionRun = kVqaRun + " --layers 1";

int run_ranks(const std::string& binary, int ranks, const std::string& args, std::string* output = nullptr) {
  return run_program(kMpiexec + " -np " + std::to_string(ranks) + " " + binary, args, output);
}

// The number after each `key` in `text` (as written: "0.1500").
std::vector<std::string> numbers_after(const std::string& text, const std::string& key) {
  std::vector<std::string> out;
  for (auto at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    const std::size_t from = text.find_first_of("0123456789", at + key.size());
    out.push_back(text.substr(from, text.find_first_not_of("0123456789.eE+-", from) - from));
  }
  return out;
}

// The "loss" of every line of DIR/metrics.jsonl.
std::vector<double> losses_of(const fs::path& dir) {
  std::vector<double> out;
  for (const std::string& x : numbers_after(read_file((dir / "metrics.jsonl").string()), "\"loss\":"))
    out.push_back(std::stod(x));
  return out;
}

// Over every tensor named "...weight": the largest |a - e| / max |e|. (Biases are left out:
// a convolution's bias before BatchNorm and the keys' part of in_proj_bias have gradients
// that are zero but for round-off, which AdamW's normalised step turns into steps of +-lr
// whose signs the order of the sums decides. The losses do not depend on them.)
double max_weight_difference(const fs::path& actual, const fs::path& expected) {
  const auto a = xtgrad::load_safetensors<float>((actual / "model.safetensors").string()).tensors;
  const auto e = xtgrad::load_safetensors<float>((expected / "model.safetensors").string()).tensors;
  double worst = 0;
  for (const auto& [name, x] : e) {
    if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) continue;
    const auto& y = a.at(name);
    REQUIRE(y.shape() == x.shape());
    double scale = 1e-30, diff = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      scale = std::max(scale, double(std::abs(x.data()[i])));
      diff = std::max(diff, double(std::abs(y.data()[i] - x.data()[i])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(dir)) out.push_back(entry.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool same_tensors(const fs::path& a, const fs::path& b, const char* file) {
  const auto x = xtgrad::load_safetensors<float>((a / file).string()).tensors;
  const auto y = xtgrad::load_safetensors<float>((b / file).string()).tensors;
  if (x.size() != y.size()) return false;
  for (const auto& [name, value] : x)
    if (!y.count(name) || !std::equal(value.begin(), value.end(), y.at(name).begin(), y.at(name).end())) return false;
  return true;
}

// The last evaluation of a run on several ranks (each decoding or answering its share of
// the test split) equals one process's `eval` of the checkpoint it saved with it.
void check_split_evaluation(const std::string& binary, const fs::path& run) {
  std::string text;
  REQUIRE(run_program(binary, "eval --checkpoint " + run.string(), &text) == 0);
  const std::string metrics = read_file((run / "metrics.jsonl").string());
  const std::string last = metrics.substr(metrics.rfind("{\"step\""));
  if (binary == XTGRAD_CAPTION_BIN) {  // eval prints {"step": N, <the metrics>}
    const std::string scores = text.substr(text.find(", ") + 2, text.rfind('}') - text.find(", ") - 2);
    CHECK_MESSAGE(last.find(scores) != std::string::npos, last << " has not " << scores);
  } else {  // eval prints a table whose last line is "overall <count> <accuracy>"
    const auto overall = numbers_after(text, "overall"), accuracy = numbers_after(last, "\"accuracy\":");
    REQUIRE(overall.size() == 1);
    REQUIRE(accuracy.size() == 1);
    const std::string total = text.substr(text.find("overall"));  // "overall <count> <accuracy>"
    CHECK(total.find(" " + accuracy[0]) != std::string::npos);
  }
}

void check_follows_one_process(const std::string& binary, const std::string& run, int ranks, const fs::path& dir) {
  std::string text;
  REQUIRE_MESSAGE(run_ranks(binary, ranks, run + " --out " + (dir / "ranks").string(), &text) == 0, text);
  CHECK_MESSAGE(text.find("on " + std::to_string(ranks) + " ranks") != std::string::npos, text);
  REQUIRE(run_program(binary, run + " --out " + (dir / "one").string(), &text) == 0);
  const std::vector<double> parallel = losses_of(dir / "ranks"), alone = losses_of(dir / "one");
  REQUIRE(parallel.size() == 2);
  REQUIRE(alone.size() == 2);
  for (std::size_t i = 0; i < alone.size(); ++i)
    CHECK_MESSAGE(std::abs(parallel[i] - alone[i]) <= 1e-5 * alone[i], parallel[i] << " vs " << alone[i]);
  check_split_evaluation(binary, dir / "ranks");
  const double diff = max_weight_difference(dir / "ranks", dir / "one");
  CHECK_MESSAGE(diff <= 1e-3, "weights differ by " << diff);
  MESSAGE(binary << " on " << ranks << " ranks: largest relative weight difference " << diff);
}

}  // namespace

TEST_CASE("examples under mpiexec: N ranks follow one process on the global batch") {
  TempDir dir("examples-mpi");
  SUBCASE("xtgrad-vqa, 2 ranks") { check_follows_one_process(XTGRAD_VQA_BIN, kVqaRun, 2, dir.path); }
  SUBCASE("xtgrad-caption, 3 ranks (8 = 3 + 3 + 2)") {
    check_follows_one_process(XTGRAD_CAPTION_BIN, kCaptionRun, 3, dir.path);
  }
}

TEST_CASE("examples under mpiexec: rank 0 writes; --resume on as many ranks is bit-identical, on others refused") {
  TempDir dir("examples-mpi-resume");
  const std::string whole = dir / "whole", stopped = dir / "stopped";
  std::string text;
  REQUIRE(run_ranks(XTGRAD_VQA_BIN, 2, kVqaRun + " --out " + whole, &text) == 0);
  CHECK(names_in(whole) ==
        std::vector<std::string>{".lock", "metrics.jsonl", "model.safetensors", "train_state.safetensors"});
  CHECK_MESSAGE(std::count(text.begin(), text.end(), '\n') < 40, text);  // one rank's progress, not two
  REQUIRE(run_ranks(XTGRAD_VQA_BIN, 2, kVqaRun + " --stop-at 3 --out " + stopped, &text) == 0);
  CHECK(run_program(XTGRAD_VQA_BIN, "train --resume " + stopped, &text) == 2);
  CHECK_MESSAGE(
      text.find("was trained on 2 ranks (mpirun -np 2) and this resume runs on 1 process") != std::string::npos, text);
  CHECK(run_ranks(XTGRAD_VQA_BIN, 3, "train --resume " + stopped, &text) == 2);
  REQUIRE_MESSAGE(run_ranks(XTGRAD_VQA_BIN, 2, "train --resume " + stopped, &text) == 0, text);
  CHECK(same_tensors(dir.path / "whole", dir.path / "stopped", "model.safetensors"));
  CHECK(same_tensors(dir.path / "whole", dir.path / "stopped", "train_state.safetensors"));
}

TEST_CASE("examples under mpiexec: bad input stops every rank, reported once, exit 2") {
  TempDir dir("examples-mpi-bad");
  std::string text;
  std::string batch_of_2 = kCaptionRun;
  batch_of_2.replace(batch_of_2.find("--batch 8"), 9, "--batch 2");
  CHECK(run_ranks(XTGRAD_CAPTION_BIN, 3, batch_of_2 + " --out " + (dir / "run"), &text) == 2);
  const std::string message = "--batch 2 is smaller than the 3 ranks";
  CHECK_MESSAGE(text.find(message) != std::string::npos, text);
  CHECK(text.find(message) == text.rfind(message));
  CHECK(run_ranks(XTGRAD_VQA_BIN, 2, "train --steps -3", &text) == 2);
  CHECK(text.find("xtgrad-vqa: --steps") == text.rfind("xtgrad-vqa: --steps"));
}
