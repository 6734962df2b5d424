// xtgrad-vqa from the command line: bad flags, values and questions exit 2 with a message,
// missing, corrupt and foreign checkpoints exit 1 naming the file, and a small run writes
// its metrics and a checkpoint that eval and ask read.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "helpers.hpp"
#include "vqa_test_helpers.hpp"
#include "xtgrad/safetensors.hpp"

namespace fs = std::filesystem;
using vqa_test::has;
using vqa_test::run_vqa;
using xtgrad::testing::read_file;
using xtgrad::testing::TempDir;

namespace {

const std::string kSmallRun =
    "--steps 4 --train-size 64 --test-size 30 --batch 8 --eval-every 2 --dim 16 --ff 32 --heads 2";

}  // namespace

TEST_CASE("vqa cli: bad flags and values exit 2 with a message") {
  TempDir dir("vqa-cli");
  const std::string out = " --out " + dir.path.string();
  std::string text;
  CHECK(run_vqa("train --bogus 3" + out, &text) == 2);
  CHECK(has(text, "--bogus"));
  CHECK(run_vqa("train --steps 0" + out, &text) == 2);
  CHECK(has(text, "--steps"));
  CHECK(run_vqa("train --steps -5" + out) == 2);
  CHECK(run_vqa("train --lr 0" + out, &text) == 2);
  CHECK(has(text, "--lr"));
  CHECK(run_vqa("train --heads 3 --dim 64" + out, &text) == 2);
  CHECK(has(text, "must divide --dim 64"));
  CHECK(run_vqa("train --text-encoder gru" + out, &text) == 2);
  CHECK(has(text, "--text-encoder"));
  CHECK(run_vqa("train --pool max" + out, &text) == 2);
  CHECK(run_vqa("train --fusion-layers 0" + out, &text) == 2);
  CHECK(run_vqa("train --warmup 10 --steps 5" + out, &text) == 2);
  CHECK(has(text, "--warmup"));
  CHECK(run_vqa("train --blind --no-attention" + out) == 2);
  CHECK(run_vqa("train --batch 64 --train-size 10" + out, &text) == 2);
  CHECK(has(text, "--train-size"));
  CHECK(run_vqa("ask --checkpoint " + dir.path.string() + " --question \"how many circles\"") == 2);  // no seed
  CHECK(run_vqa("") == 2);
  CHECK(run_vqa("fly") == 2);
  CHECK_FALSE(fs::exists(dir / "metrics.jsonl"));  // nothing ran
}

TEST_CASE("vqa cli: a small run, eval and ask, unknown words and other forms exit 2, no overwrite") {
  TempDir dir("vqa-run");
  std::string text;
  REQUIRE(run_vqa("train " + kSmallRun + " --out " + dir.path.string(), &text) == 0);
  CHECK(has(text, "done: step 4"));
  CHECK(has(text, "relational"));
  // One JSON line per evaluation, with every type's accuracy.
  const std::string metrics = read_file(dir / "metrics.jsonl");
  CHECK(std::count(metrics.begin(), metrics.end(), '\n') == 2);
  CHECK(has(metrics, "{\"step\": 2, \"loss\": "));
  for (const char* key : {"\"accuracy\": ", "\"non_relational\": ", "\"counting\": ", "\"relational\": ",
                          "\"types\": {\"colour_of_shape\": ", "\"above\": "})
    CHECK(has(metrics, key));
  CHECK(run_vqa("eval --checkpoint " + dir.path.string(), &text) == 0);
  CHECK(has(text, "step 4, test split: 30 questions"));
  CHECK(has(text, "nearest"));
  CHECK(run_vqa("eval --checkpoint " + (dir / "model.safetensors")) == 0);
  CHECK(run_vqa("ask --checkpoint " + dir.path.string() + " --image-seed 7 --question \"How many circles?\"", &text) ==
        0);
  CHECK(has(text, "picture: scene 0 of seed 7: "));
  CHECK(has(text, "how many circles? "));
  CHECK(has(text, "(probability 0."));
  CHECK(has(text, "right answer: "));  // a count always has one
  CHECK(run_vqa("ask --checkpoint " + dir.path.string() + " --image-seed 7 --question \"how many hexagons\"", &text) ==
        2);
  CHECK(has(text, "unknown word \"hexagons\""));
  CHECK(has(text, "the words are: what colour is the"));
  CHECK(run_vqa("ask --checkpoint " + dir.path.string() + " --image-seed 7 --question \"red circle\"", &text) == 2);
  CHECK(has(text, "is not a question of the grammar"));
  CHECK(has(text, "is the <colour> <shape> above the <colour> <shape>"));
  const std::string model = read_file(dir / "model.safetensors");
  CHECK(run_vqa("train " + kSmallRun + " --out " + dir.path.string(), &text) == 2);
  CHECK(has(text, "--overwrite"));
  CHECK(read_file(dir / "model.safetensors") == model);  // untouched
}

TEST_CASE("vqa cli: missing, truncated, corrupt and foreign checkpoints exit 1 naming the file") {
  TempDir dir("vqa-ckpt");
  REQUIRE(run_vqa("train " + kSmallRun + " --out " + dir.path.string()) == 0);
  std::string text;
  CHECK(run_vqa("eval --checkpoint " + (dir / "absent"), &text) == 1);
  CHECK(has(text, "does not exist"));
  const std::string good = read_file(dir / "model.safetensors");
  std::ofstream(dir / "model.safetensors", std::ios::binary) << good.substr(0, good.size() / 2);  // truncated
  CHECK(run_vqa("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(has(text, "model.safetensors"));
  std::string corrupt = good;
  corrupt[12] = '#';  // inside the JSON header
  std::ofstream(dir / "model.safetensors", std::ios::binary) << corrupt;
  CHECK(run_vqa("ask --image-seed 1 --question \"how many circles\" --checkpoint " + dir.path.string()) == 1);
  xtgrad::save_safetensors<float>(dir / "model.safetensors", {{"w", xt::zeros<float>({2})}}, {});  // foreign
  CHECK(run_vqa("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(has(text, "not an xtgrad-vqa model"));
  // The right format with a configuration that does not fit its tensors.
  xtgrad::save_safetensors<float>(dir / "model.safetensors", {{"w", xt::zeros<float>({2})}},
                                  {{"format", "xtgrad-vqa-model/1"},
                                   {"step", "1"},
                                   {"seed", "0"},
                                   {"test_size", "10"},
                                   {"dim", "16"},
                                   {"heads", "2"},
                                   {"fusion_layers", "1"},
                                   {"text_layers", "1"},
                                   {"ff", "8"},
                                   {"text_encoder", "lstm"},
                                   {"image", "attention"},
                                   {"pool", "mean"}});
  CHECK(run_vqa("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(has(text, "model.safetensors"));
  // A parameter that is not finite.
  std::ofstream(dir / "model.safetensors", std::ios::binary) << good;
  xtgrad::Safetensors<float> loaded = xtgrad::load_safetensors<float>(dir / "model.safetensors");
  loaded.tensors.begin()->second.flat(0) = NAN;
  xtgrad::save_safetensors<float>(dir / "model.safetensors", loaded.tensors, loaded.metadata);
  CHECK(run_vqa("eval --checkpoint " + dir.path.string(), &text) == 1);
  CHECK(has(text, "a checkpoint with a non-finite parameter is refused"));
}
