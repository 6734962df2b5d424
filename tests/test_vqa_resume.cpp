// xtgrad-vqa train --resume: a run stopped at an evaluation and resumed ends with the same
// bits in every tensor (model and train state) and the same metrics lines as a run that was
// never stopped; flags that clash with the stored run exit 2 naming the flag; a missing,
// corrupt or foreign checkpoint exits 1 and leaves the run as it was.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "resume_checks.hpp"
#include "vqa_test_helpers.hpp"

namespace fs = std::filesystem;
using vqa_test::has;
using vqa_test::run_vqa;
using xtgrad::testing::check_bad_checkpoints;
using xtgrad::testing::check_clashing_flags;
using xtgrad::testing::check_resume_bit_identical;
using xtgrad::testing::TempDir;

namespace {

// 8 batches an epoch: the stop at step 4 is in the middle of the first epoch (the sampler's
// position matters) and the run goes on into the second (its generator matters); the
// schedule warms up over 2 steps and decays to 0 at step 12.
const std::string kRun =
    "--steps 12 --warmup 2 --train-size 64 --test-size 20 --batch 8 --eval-every 4 --dim 16 --ff 32 --heads 2";

}  // namespace

TEST_CASE("vqa resume: stopped at evaluations and resumed, a run ends bit-identical to one run") {
  TempDir dir("vqa-resume");
  check_resume_bit_identical(run_vqa, kRun, dir.path);
}

TEST_CASE("vqa resume: a flag that clashes with the stored run exits 2 naming it, nothing touched") {
  TempDir dir("vqa-resume-flags");
  const std::string run = dir.path.string();
  REQUIRE(run_vqa("train " + kRun + " --stop-at 4 --out " + run) == 0);
  check_clashing_flags(run_vqa, dir.path,
                       {"--steps 20", "--lr 0.5", "--batch 4", "--weight-decay 0", "--warmup 0", "--seed 1",
                        "--train-size 72", "--test-size 30", "--dim 32", "--heads 4", "--ff 64", "--fusion-layers 3",
                        "--text-layers 3", "--text-encoder transformer", "--pool last", "--blind", "--no-attention"});
  std::string text;
  CHECK(run_vqa("train --resume " + run + " --stop-at 4", &text) == 2);  // already there
  CHECK_MESSAGE(has(text, "already at step 4"), text);
  CHECK(run_vqa("train --resume " + run + " --stop-at -4", &text) == 2);
  // The stored settings given again agree; --eval-every and --threads may change.
  CHECK_MESSAGE(run_vqa("train --resume " + run + " --steps 12 --batch 8 --lr 0.002 --warmup 2 --dim 16 --heads 2 " +
                            "--text-encoder lstm --eval-every 2 --threads 2 --stop-at 6",
                        &text) == 0,
                text);
  CHECK(has(text, "done: step 6"));
}

TEST_CASE("vqa resume: a missing, corrupt or foreign checkpoint exits 1 naming the file, nothing touched") {
  TempDir dir("vqa-resume-bad");
  REQUIRE(run_vqa("train " + kRun + " --stop-at 4 --out " + (dir / "run")) == 0);
  REQUIRE(run_vqa("train " + kRun + " --stop-at 4 --out " + (dir / "other")) == 0);  // the same settings, another run
  check_bad_checkpoints(run_vqa, "xtgrad-vqa", dir.path);
}
