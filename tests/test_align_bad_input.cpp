// Bad input and run safety of xtgrad-align (and of examples/common, which every example
// program shares): values out of range, runs that would be lost or mixed, checkpoints that
// must not load. Each case is one the audit of the command line found handled badly.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>

#include "align_test_helpers.hpp"
#include "checkpoint.hpp"
#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "helpers.hpp"
#include "run_dir.hpp"
#include "train.hpp"

using namespace align;
using namespace align_test;
namespace fs = std::filesystem;

namespace {

const std::string kSmall = "--train-size 400 --test-size 100 --batch 16 ";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Rewrites a run's model file with one metadata value changed.
void set_metadata(const std::string& dir, const std::string& key, const std::string& value) {
  const std::string path = dir + "/" + kModelFile;
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);
  file.metadata[key] = value;
  xtgrad::save_safetensors<float>(path, file.tensors, file.metadata);
}

// A trained run of `steps` steps with a checkpoint every 2, in dir.
void small_run(const std::string& dir, int steps = 4, const std::string& extra = "") {
  std::string text;
  REQUIRE_MESSAGE(
      run_align("train --steps " + std::to_string(steps) + " --eval-every 2 " + kSmall + extra + " --out " + dir,
                &text) == 0,
      text);
}

}  // namespace

// ---- values -----------------------------------------------------------------------------
TEST_CASE("align bad input: every unsigned flag refuses a negative or too large value, naming it, exit 2") {
  TempDir dir("flags");
  const std::string out = " --out " + dir.path.string();
  for (const char* flag : {"--steps", "--batch", "--dim", "--heads", "--train-size", "--test-size", "--eval-every",
                           "--seed", "--threads"}) {
    for (const char* value : {"-1", "99999999999999999999", "1e3", "+5", " 7"}) {
      CAPTURE(flag);
      CAPTURE(value);
      std::string text;
      CHECK(run_align(std::string("train ") + flag + " '" + value + "'" + out, &text) == 2);
      CHECK_MESSAGE(contains(text, flag), text);
      CHECK_MESSAGE(contains(text, value), text);  // the value as the user typed it
      CHECK_MESSAGE(!contains(text, "generating"), text);
    }
  }
  std::string text;
  CHECK(run_align("sample --seed -1 --png " + (dir / "s.png"), &text) == 2);
  CHECK_MESSAGE(contains(text, "\"-1\" is not a whole number"), text);
  CHECK(run_align("sample --count -3 --png " + (dir / "s.png"), &text) == 2);
  CHECK(run_align("train --dim 4100 --heads 4" + out, &text) == 2);  // a model no loader would take
  CHECK_MESSAGE(contains(text, "4100"), text);
  CHECK_FALSE(fs::exists(dir / "metrics.jsonl"));
}

TEST_CASE("align bad input: --threads is bounded by the machine, with the limit in the message") {
  TempDir dir("threads");
  std::string text;
  const std::string too_many = std::to_string(xtgrad::max_num_threads() + 1);
  CHECK(run_align("train --threads " + too_many + " --out " + dir.path.string(), &text) == 2);
  CHECK_MESSAGE(contains(text, too_many + " is out of range"), text);
  CHECK(run_align("train --threads 100000 --out " + dir.path.string(), &text) == 2);
  CHECK(run_align("train --threads 0 --out " + dir.path.string(), &text) == 2);
}

TEST_CASE("align bad input: a batch that cannot fit in memory is refused before any work, naming the flag") {
  TempDir dir("memory");
  std::string text;
  CHECK(run_align("train --batch 100000 --train-size 100000 --out " + dir.path.string(), &text) == 2);
  CHECK_MESSAGE(contains(text, "lower --batch"), text);
  CHECK_MESSAGE(contains(text, "is available"), text);
  CHECK_MESSAGE(!contains(text, "generating"), text);
  // The estimate is of the right size: the default run's step needs far less than 1 GB.
  TrainOptions defaults;
  CHECK(step_memory_bytes(defaults) < 1e9);
  defaults.batch = 512;  // measured: 1.8 GB resident
  CHECK(step_memory_bytes(defaults) > 1.5e9);
  CHECK(step_memory_bytes(defaults) < 2.5e9);
}

TEST_CASE("align bad input: running out of memory anyway says what was being done, exit 1") {
  CLI::App app{"test"};
  const char* argv[] = {"test"};
  int code = 0;
  {
    const common::Doing doing("painting 7 pictures");
    code = common::run_main(app, 1, const_cast<char**>(argv), "test", []() -> int { throw std::bad_alloc(); });
  }
  CHECK(code == 1);
  CHECK(common::Doing::current() == "running");
  CHECK(common::run_main(app, 1, const_cast<char**>(argv), "test", []() -> int { throw common::UsageError("no"); }) ==
        2);
}

TEST_CASE("align bad input: parse_count takes digits only, within its range") {
  CHECK(common::parse_count("0", 0, 5) == 0);
  CHECK(common::parse_count("18446744073709551615", 0, UINT64_MAX) == UINT64_MAX);
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "0x10", "1e3", "18446744073709551616", "6"})
    CHECK_THROWS_AS(common::parse_count(bad, 0, 5), std::invalid_argument);
  CHECK_THROWS_WITH(common::parse_count("-5", 1, 9), "\"-5\" is not a whole number from 1 to 9");
}

// ---- show on a checkpoint whose split is not what it claims -----------------------------
TEST_CASE("align bad input: show checks the test split and --image instead of crashing") {
  TempDir dir("show");
  small_run(dir.path.string());
  const std::string show =
      "show --checkpoint " + dir.path.string() + " --caption \"red circle top left\" --png " + (dir / "o.png");
  std::string text;
  CHECK(run_align(show + " --image 120", &text) == 2);
  CHECK_MESSAGE(contains(text, "--image 120 is out of range"), text);
  CHECK(run_align(show + " --image -5", &text) == 2);
  CHECK_MESSAGE(contains(text, "-5"), text);
  for (const char* size : {"50", "150", "0", "abc"}) {
    CAPTURE(size);
    set_metadata(dir.path.string(), "test_size", size);
    CHECK(run_align(show, &text) == 1);
    CHECK_MESSAGE(contains(text, "'test_size' = \"" + std::string(size) + "\""), text);
    CHECK_MESSAGE(contains(text, "model.safetensors"), text);
  }
}

// ---- runs that would be lost or mixed ---------------------------------------------------
TEST_CASE("align bad input: --out into a run is refused unless --overwrite; nothing of it is touched") {
  TempDir dir("overwrite");
  const std::string a = dir / "a", b = dir / "b";
  small_run(a);
  small_run(b, 4, "--seed 1");
  const std::string model_a = read_file(a + "/" + kModelFile), metrics_a = read_file(a + "/metrics.jsonl");
  const std::string model_b = read_file(b + "/" + kModelFile);
  std::string text;
  CHECK(run_align("train --steps 2 " + kSmall + "--out " + a, &text) == 2);
  CHECK_MESSAGE(contains(text, "already holds a run"), text);
  CHECK_MESSAGE(contains(text, "--overwrite"), text);
  CHECK(run_align("train --resume " + a + " --steps 6 --out " + b, &text) == 2);
  CHECK(read_file(a + "/" + kModelFile) == model_a);
  CHECK(read_file(a + "/metrics.jsonl") == metrics_a);
  CHECK(read_file(b + "/" + kModelFile) == model_b);
  // Said explicitly, it goes ahead.
  CHECK(run_align("train --steps 2 --eval-every 2 " + kSmall + "--out " + a + " --overwrite", &text) == 0);
  CHECK(read_file(a + "/metrics.jsonl").find("\"step\": 4") == std::string::npos);
  CHECK(run_align("train --resume " + a + " --steps 4 --out " + b + " --overwrite", &text) == 0);
}

TEST_CASE("align bad input: a second writer to a run directory is refused, naming the holder's pid") {
  TempDir dir("lock");
  std::string text;
  {
    const common::RunLock held(dir.path.string());
    CHECK(run_align("train --steps 2 " + kSmall + "--out " + dir.path.string(), &text) == 2);
    CHECK_MESSAGE(contains(text, "pid " + std::to_string(::getpid())), text);
    CHECK_FALSE(fs::exists(dir / "metrics.jsonl"));
  }
  // A holder that dies, however it dies, releases the lock (the kernel does).
  const pid_t child = ::fork();
  if (child == 0) {
    const common::RunLock held(dir.path.string());
    ::raise(SIGKILL);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(run_align("train --steps 2 --eval-every 2 " + kSmall + "--out " + dir.path.string(), &text) == 0);
}

TEST_CASE("align bad input: a train state of another run is refused on resume") {
  TempDir dir("run-id");
  const std::string a = dir / "a", b = dir / "b";
  small_run(a);
  small_run(b, 4, "--seed 1");
  fs::copy_file(b + "/" + kTrainStateFile, a + "/" + kTrainStateFile, fs::copy_options::overwrite_existing);
  std::string text;
  CHECK(run_align("train --resume " + a + " --steps 6", &text) == 1);
  CHECK_MESSAGE(contains(text, "copied from another run"), text);
}

TEST_CASE("align bad input: a run that diverges before its first checkpoint says there is none") {
  TempDir dir("diverge-early");
  std::string text;
  CHECK(run_align("train --lr 99999999999999999999 --steps 4 --eval-every 2 " + kSmall + "--out " + dir.path.string(),
                  &text) == 1);
  CHECK_MESSAGE(contains(text, "no checkpoint was written"), text);
  CHECK_MESSAGE(!contains(text, "is kept"), text);
  CHECK_FALSE(fs::exists(dir / kModelFile));
}

TEST_CASE("align bad input: a failed save takes back its metrics line and leaves no train state behind") {
  TempDir dir("failed-save");
  fs::create_directories(dir / kModelFile);  // the model's rename must fail: a directory is in the way
  std::ofstream(dir / kModelFile + "/x") << "x";
  std::string text;
  CHECK(run_align("train --steps 4 --eval-every 2 " + kSmall + "--overwrite --out " + dir.path.string(), &text) == 1);
  CHECK_MESSAGE(contains(text, "model.safetensors"), text);
  CHECK(read_file(dir / "metrics.jsonl").empty());
  CHECK_FALSE(fs::exists(dir / "train_state.next.safetensors"));
}

TEST_CASE("align bad input: every setting that shapes a run is stored; metrics end at the checkpoint") {
  TempDir dir("stored");
  const std::string run = dir.path.string();
  small_run(run, 4);  // --eval-every 2
  // A line of an evaluation whose checkpoint never landed (a run killed between the two).
  std::ofstream(dir / "metrics.jsonl", std::ios::app) << "{\"step\": 5, \"loss\": 1}\n";
  std::string text;
  REQUIRE(run_align("train --resume " + run + " --steps 8", &text) == 0);
  const std::string metrics = read_file(dir / "metrics.jsonl");
  CHECK_MESSAGE(contains(metrics, "\"step\": 6,"), metrics);  // every 2 steps still, not 250
  CHECK_MESSAGE(!contains(metrics, "\"step\": 5,"), metrics);
  CHECK_MESSAGE(contains(metrics, "\"step\": 8,"), metrics);
  const LoadedModel loaded = load_model(run);
  CHECK(loaded.metadata.at("eval_every") == "2");
  CHECK(loaded.metadata.at("threads") == "1");
  CHECK(loaded.metadata.at("run_id").size() == 16);
}

// ---- checkpoints that must not load -----------------------------------------------------
TEST_CASE("align bad input: a checkpoint with a NaN or an infinity is refused, naming the tensor and element") {
  TempDir dir("nan");
  small_run(dir.path.string());
  const std::string path = dir / kModelFile;
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);
  file.tensors.at("score.weight").data()[3] = std::numeric_limits<float>::quiet_NaN();
  xtgrad::save_safetensors<float>(path, file.tensors, file.metadata);
  std::string text;
  CHECK(run_align("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK_MESSAGE(contains(text, "'score.weight' holds nan at element 3"), text);
  file.tensors.at("score.weight").data()[3] = -std::numeric_limits<float>::infinity();
  xtgrad::save_safetensors<float>(path, file.tensors, file.metadata);
  CHECK(run_align(
            "show --checkpoint " + dir.path.string() + " --caption \"red circle top left\" --png " + (dir / "o.png"),
            &text) == 1);
  CHECK_MESSAGE(contains(text, "holds -inf at element 3"), text);
}

TEST_CASE("align bad input: metadata is parsed strictly, naming the file, the key and the value") {
  TempDir dir("metadata");
  const std::string run = dir.path.string();
  small_run(run);
  std::string text;
  set_metadata(run, "step", "-5");
  CHECK(run_align("train --resume " + run + " --steps 8", &text) == 1);
  CHECK_MESSAGE(contains(text, "model.safetensors: metadata 'step' = \"-5\""), text);
  set_metadata(run, "step", "4");
  for (const char* key : {"batch", "seed", "train_size", "eval_every", "lr"}) {
    CAPTURE(key);
    const std::string before = load_model(run).metadata.at(key);
    set_metadata(run, key, "12abc");
    CHECK(run_align("train --resume " + run + " --steps 8", &text) == 1);
    CHECK_MESSAGE(contains(text, "'" + std::string(key) + "' = \"12abc\""), text);
    set_metadata(run, key, before);
  }
  // One limit for the flag and the loader.
  const xtgrad::Metadata wide{{"dim", "4100"}, {"heads", "4"}, {"attention", "true"}};
  CHECK_THROWS_WITH_AS(ModelConfig::from_metadata(wide), doctest::Contains("4100"), std::invalid_argument);
  CHECK_THROWS_AS((ModelConfig{ModelConfig::kMaxDim + 4, 4, true}.check()), std::invalid_argument);
  CHECK_NOTHROW((ModelConfig{ModelConfig::kMaxDim, 4, true}.check()));
}
