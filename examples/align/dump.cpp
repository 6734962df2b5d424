// xtgrad-align-dump: writes what examples/align/reference.py needs to replay the toy task's
// training in PyTorch and compare it with ours, step for step.
//
//   xtgrad-align-dump --seed S --out DIR [--steps K]
//
// DIR gets (raw arrays little-endian, C order):
//   init.safetensors           the initial parameters (as train.cpp builds the model)
//   train_patches.f32          (20000,16,192) patches_of() of the train split (seed S)
//   train_captions.i32         (20000,4) word ids
//   test_patches.f32           (1000,16,192) of the test split (seed S + 1)
//   test_captions.i32          (1000,4)
//   test_cells.i32             (1000) the described object's cell (grounding)
//   test_match.u8              (10,100,100) matches(caption i, image j) within each block
//   batches.i32                (2000,32) the BatchSampler's batches, as train.cpp draws them
//   batch_match.u8             (2000,32,32) matches(caption i, image j) within each batch
//   scores0.f32, scores0.f64   (32,32) the first batch's scores, float and double model
//   grads0.safetensors         gradients after the first backward (float), and
//   grads0_f64.safetensors     the same in double (the float init, widened)
//   losses.f32.txt, losses.f64.txt   the K per-step losses
//   after_K.safetensors, after_K_f64.safetensors   the parameters after K steps
//   metrics.jsonl              evaluate() every 250 steps (float run), as train.cpp
// --init-seed N initialises from Generator(N) instead (train.cpp: N = S); --init-only writes
// init.safetensors and stops.
// The double run starts from the float initial parameters widened to double, so that the
// two runs (and PyTorch's) start from the same point.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "metrics.hpp"
#include "model.hpp"
#include "train.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/safetensors.hpp"

namespace {

using namespace align;
namespace fs = std::filesystem;

constexpr std::size_t kTrainSize = 20000, kTestSize = 1000, kBatch = 32, kAllSteps = 2000;

template <class V> void write_raw(const fs::path& path, const std::vector<V>& values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(V)));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_split(const fs::path& dir, const std::string& name, const std::vector<Example>& data) {
  std::vector<float> patches(data.size() * kPatches * kPatchValues);
  std::vector<std::int32_t> captions;
  for (std::size_t i = 0; i < data.size(); ++i) {
    patches_of(data[i], patches.data() + i * kPatches * kPatchValues);
    for (std::size_t id : data[i].caption) captions.push_back(std::int32_t(id));
  }
  write_raw(dir / (name + "_patches.f32"), patches);
  write_raw(dir / (name + "_captions.i32"), captions);
}

template <class T> xtgrad::StateDict<T> gradients_of(const AlignModel<T>& model) {
  xtgrad::StateDict<T> out;
  for (const auto& [name, p] : model.named_parameters())
    if (p.has_grad()) out.emplace(name, p.grad());
  return out;
}

// K steps of train_step, as training takes them; writes the first batch's scores and
// gradients, the losses and the final parameters. evaluate() every 250 steps for the
// float model.
template <class T>
void run(AlignModel<T>& model, const std::vector<Example>& train_data, const std::vector<Example>& test_data,
         std::uint64_t seed, std::size_t steps, const fs::path& dir, const std::string& suffix) {
  const TrainOptions defaults;  // the settings `xtgrad-align train` runs with by default
  const auto optimizer = make_optimizer<T>(defaults.optimizer, model.parameters(), defaults.lr);
  BatchSampler sampler(kTrainSize, kBatch, sampler_seed(seed));
  std::ofstream losses(dir / ("losses." + suffix + ".txt"));
  losses.precision(17);
  for (std::size_t step = 1; step <= steps; ++step) {
    const StepResult<T> result = train_step(model, *optimizer, train_data, make_batch<T>(train_data, sampler.next()));
    losses << result.loss << "\n";
    if (step == 1) {  // the gradients of this step are still there
      write_raw(dir / ("scores0." + suffix), std::vector<T>(result.scores.data().begin(), result.scores.data().end()));
      xtgrad::save_safetensors<T>((dir / (suffix == "f32" ? "grads0.safetensors" : "grads0_f64.safetensors")).string(),
                                  gradients_of(model));
    }
    if constexpr (std::is_same_v<T, float>) {
      if (step % 250 == 0 || step == steps) {
        const Metrics m = evaluate(model, test_data);
        char line[128];
        std::snprintf(line, sizeof line, "{\"step\": %zu, \"p_at_1\": %.4f, \"grounding\": %.4f}", step, m.p_at_1,
                      m.grounding);
        std::ofstream(dir / "metrics.jsonl", std::ios::app) << line << "\n";
        std::cout << line << std::endl;
      }
    }
  }
  const std::string name = suffix == "f32" ? "after_" + std::to_string(steps) + ".safetensors"
                                           : "after_" + std::to_string(steps) + "_f64.safetensors";
  xtgrad::save_safetensors<T>((dir / name).string(), model.state_dict());
}

// The splits, the test split's cells and matches, and every batch of the run with its
// matches, as reference.py reads them.
void write_data(const fs::path& dir, const std::vector<Example>& train_data, const std::vector<Example>& test_data,
                std::uint64_t seed) {
  write_split(dir, "train", train_data);
  write_split(dir, "test", test_data);
  std::vector<std::int32_t> cells;
  for (const Example& e : test_data) cells.push_back(std::int32_t(e.objects[e.described].cell));
  write_raw(dir / "test_cells.i32", cells);
  std::vector<std::uint8_t> test_match;
  for (std::size_t start = 0; start < kTestSize; start += kBlock)
    for (std::size_t i = 0; i < kBlock; ++i)
      for (std::size_t j = 0; j < kBlock; ++j)
        test_match.push_back(matches(test_data[start + i].caption, test_data[start + j]));
  write_raw(dir / "test_match.u8", test_match);

  BatchSampler sampler(kTrainSize, kBatch, sampler_seed(seed));
  std::vector<std::int32_t> batches;
  std::vector<std::uint8_t> batch_match;
  for (std::size_t s = 0; s < kAllSteps; ++s) {
    const std::vector<std::size_t> batch = sampler.next();
    for (std::size_t i : batch) batches.push_back(std::int32_t(i));
    for (std::size_t i : batch)
      for (std::size_t j : batch) batch_match.push_back(matches(train_data[i].caption, train_data[j]));
  }
  write_raw(dir / "batches.i32", batches);
  write_raw(dir / "batch_match.u8", batch_match);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Dumps the toy task's data, batches, initial parameters and K training steps for reference.py");
  std::uint64_t seed = 0;
  std::string out_dir;
  std::size_t steps = 50;
  bool with_double = true, init_only = false;
  std::optional<std::uint64_t> init_seed;
  app.add_option("--seed", seed, "data and initialisation seed");
  app.add_option("--out", out_dir, "output directory")->required();
  app.add_option("--steps", steps, "training steps to run and record")->check(CLI::Range(1, int(kAllSteps)));
  app.add_flag("!--no-double", with_double, "skip the double-precision run");
  app.add_option("--init-seed", init_seed, "initialise from Generator(this) instead of Generator(--seed)");
  app.add_flag("--init-only", init_only, "write init.safetensors only");
  CLI11_PARSE(app, argc, argv);
  try {
    xtgrad::set_num_threads(1);  // as train.cpp's default --threads 1
    const fs::path dir(out_dir);
    fs::create_directories(dir);
    // The model from Generator(seed) as train.cpp builds it (generate() has its own).
    xtgrad::Generator init(init_seed.value_or(seed));
    AlignModel<float> model(ModelConfig{}, init);
    const xtgrad::StateDict<float> initial = model.state_dict();
    xtgrad::save_safetensors<float>((dir / "init.safetensors").string(), initial);
    if (init_only) return 0;
    fs::remove(dir / "metrics.jsonl");
    const std::vector<Example> train_data = generate(kTrainSize, seed);
    const std::vector<Example> test_data = generate(kTestSize, seed + 1);

    write_data(dir, train_data, test_data, seed);
    std::cout << "data written to " << dir.string() << std::endl;

    run(model, train_data, test_data, seed, steps, dir, "f32");
    if (with_double) {
      xtgrad::Generator unused(0);
      AlignModel<double> wide(ModelConfig{}, unused);
      xtgrad::StateDict<double> widened;
      for (const auto& [name, a] : initial) widened.emplace(name, xtgrad::Array<double>(xt::cast<double>(a)));
      wide.load_state_dict(widened);
      run(wide, train_data, test_data, seed, steps, dir, "f64");
    }
    std::cout << "done: " << steps << " steps" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
