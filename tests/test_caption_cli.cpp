// xtgrad-caption from the command line: bad flags and values exit 2 with the usage,
// missing, corrupt and foreign checkpoints exit 1 naming the file, and a small run writes
// its metrics and a checkpoint that eval and generate read.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "caption_test_helpers.hpp"
#include "helpers.hpp"
#include "xtgrad/safetensors.hpp"

namespace fs = std::filesystem;
using caption_test::has;
using caption_test::run_caption;
using xtgrad::testing::read_file;
using xtgrad::testing::TempDir;

namespace {

const std::string kSmallRun = "--steps 4 --train-size 64 --test-size 20 --batch 8 --eval-every 2 --dim 16 --ff 32";

}  // namespace

TEST_CASE("caption cli: bad flags and values exit 2 with a message") {
  TempDir dir("caption-cli");
  const std::string out = " --out " + dir.path.string();
  std::string text;
  CHECK(run_caption("train --bogus 3" + out, &text) == 2);
  CHECK(has(text, "--bogus"));
  CHECK(run_caption("train --steps 0" + out, &text) == 2);
  CHECK(has(text, "--steps"));
  CHECK(run_caption("train --steps -5" + out) == 2);
  CHECK(run_caption("train --lr 0" + out, &text) == 2);
  CHECK(has(text, "--lr"));
  CHECK(run_caption("train --heads 3 --dim 64" + out, &text) == 2);
  CHECK(has(text, "must divide --dim 64"));
  CHECK(run_caption("train --warmup 10 --steps 5" + out, &text) == 2);
  CHECK(has(text, "--warmup"));
  CHECK(run_caption("train --blind --no-attention" + out, &text) == 2);
  CHECK(run_caption("train --batch 64 --train-size 10" + out, &text) == 2);
  CHECK(has(text, "--train-size"));
  CHECK(run_caption("generate --checkpoint " + dir.path.string()) == 2);  // no --image-seed
  CHECK(run_caption("") == 2);
  CHECK(run_caption("fly") == 2);
  CHECK_FALSE(fs::exists(dir / "metrics.jsonl"));  // nothing ran
}

TEST_CASE("caption cli: a small run, eval and generate, a run is not overwritten without --overwrite") {
  TempDir dir("caption-run");
  std::string text;
  REQUIRE(run_caption("train " + kSmallRun + " --out " + dir.path.string(), &text) == 0);
  CHECK(has(text, "done: step 4"));
  // One JSON line per evaluation.
  const std::string metrics = read_file(dir / "metrics.jsonl");
  CHECK(std::count(metrics.begin(), metrics.end(), '\n') == 2);
  CHECK(has(metrics, "{\"step\": 2, \"loss\": "));
  CHECK(has(metrics, "\"exact\": "));
  CHECK(has(metrics, "\"bleu4\": "));
  CHECK(run_caption("eval --checkpoint " + dir.path.string(), &text) == 0);
  CHECK(has(text, "{\"step\": 4, \"exact\": "));
  CHECK(run_caption("eval --checkpoint " + (dir / "model.safetensors")) == 0);
  CHECK(run_caption("generate --checkpoint " + dir.path.string() + " --image-seed 7", &text) == 0);
  CHECK(has(text, "reference: "));
  CHECK(run_caption("generate --checkpoint " + dir.path.string() + " --image-seed 7 --beam 3", &text) == 0);
  CHECK(run_caption("generate --checkpoint " + dir.path.string() + " --image-seed 7 --temperature 0.7", &text) == 0);
  CHECK(run_caption("generate --checkpoint " + dir.path.string() + " --image-seed 7 --beam 0", &text) == 2);
  CHECK(run_caption("generate --checkpoint " + dir.path.string() + " --image-seed 7 --temperature -1", &text) == 2);
  CHECK(has(text, "--temperature"));
  CHECK(run_caption("generate --checkpoint " + dir.path.string() + " --image-seed 7 --beam 2 --temperature 1") == 2);
  const std::string model = read_file(dir / "model.safetensors");
  CHECK(run_caption("train " + kSmallRun + " --out " + dir.path.string(), &text) == 2);
  CHECK(has(text, "--overwrite"));
  CHECK(read_file(dir / "model.safetensors") == model);  // untouched
}

TEST_CASE("caption cli: missing, truncated, corrupt and foreign checkpoints exit 1 naming the file") {
  TempDir dir("caption-ckpt");
  REQUIRE(run_caption("train " + kSmallRun + " --out " + dir.path.string()) == 0);
  std::string text;
  CHECK(run_caption("eval --checkpoint " + (dir / "absent"), &text) == 1);
  CHECK(has(text, "does not exist"));
  const std::string good = read_file(dir / "model.safetensors");
  std::ofstream(dir / "model.safetensors", std::ios::binary) << good.substr(0, good.size() / 2);  // truncated
  CHECK(run_caption("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(has(text, "model.safetensors"));
  std::string corrupt = good;
  corrupt[12] = '#';  // inside the JSON header
  std::ofstream(dir / "model.safetensors", std::ios::binary) << corrupt;
  CHECK(run_caption("generate --image-seed 1 --checkpoint " + dir.path.string()) == 1);
  xtgrad::save_safetensors<float>(dir / "model.safetensors", {{"w", xt::zeros<float>({2})}}, {});  // foreign
  CHECK(run_caption("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(has(text, "not an xtgrad-caption model"));
  // The right format with a configuration that does not fit its tensors.
  xtgrad::save_safetensors<float>(dir / "model.safetensors", {{"w", xt::zeros<float>({2})}},
                                  {{"format", "xtgrad-caption-model/1"},
                                   {"step", "1"},
                                   {"seed", "0"},
                                   {"test_size", "10"},
                                   {"dim", "16"},
                                   {"heads", "2"},
                                   {"layers", "1"},
                                   {"ff", "8"},
                                   {"image", "attention"}});
  CHECK(run_caption("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(has(text, "model.safetensors"));
}
