// xtgrad-caption-dump: writes what examples/caption/reference.py needs to replay the caption
// task's training in PyTorch and compare it with ours, step for step.
//
//   xtgrad-caption-dump --out DIR [--seed S] [--steps K] [--train-size N]
//
// The run is `xtgrad-caption train --seed S --steps K --train-size N` with every other
// setting at its default (so the warm-up is 5% of K and the cosine reaches 0 at step K): the same model
// initialisation, pictures, batch order and schedule, through train.hpp's train_step.
// DIR gets (raw arrays little-endian, C order; B = 32):
//   config.json                   the run's settings (steps, warm-up, lr, model, ...)
//   init.safetensors              the initial parameters and buffers (our state_dict names)
//   batches.i32                   (K,B) the training pictures of each step
//   images.f32                    (K,B,3,32,32) each step's pictures, as the model reads them
//   lengths.i32                   (K) each step's padded caption length L_k
//   inputs.i32, targets.i32       each step's (B,L_k) token ids, one step after the other
//   padding.u8                    each step's (B,L_k) padding mask (1 = <pad>)
//   lrs.txt                       the lr each step ran with
//   losses.f32.txt, losses.f64.txt           the K per-step losses, float and double
//   after_K.safetensors, after_K_f64.safetensors   the parameters and buffers after K steps
// The double run starts from the float initial parameters widened to double, so that the
// two runs (and PyTorch's) start from the same point.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "adamw_run.hpp"
#include "flags.hpp"
#include "train.hpp"
#include "training.hpp"

namespace {

using namespace caption;
namespace fs = std::filesystem;

constexpr std::size_t kMaxDumpSteps = 3000;

// Writes `text` to path through a temporary file and a rename.
void write_file(const fs::path& path, const std::string& text) {
  const fs::path temporary = path.string() + ".tmp";
  std::ofstream out(temporary, std::ios::binary);
  out.write(text.data(), std::streamsize(text.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + temporary.string());
  fs::rename(temporary, path);
}

template <class V> std::string raw_bytes(const std::vector<V>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(V));
}

// What the float run fed the model, step after step.
struct BatchLog {
  std::vector<std::int32_t> pictures, lengths, inputs, targets;
  std::vector<float> images;
  std::vector<std::uint8_t> padding;
  std::vector<double> lrs;

  void add(const std::vector<std::size_t>& indices, const TrainBatch<float>& b, double lr) {
    for (std::size_t i : indices) pictures.push_back(std::int32_t(i));
    images.insert(images.end(), b.images.data().begin(), b.images.data().end());
    lengths.push_back(std::int32_t(b.tokens.length));
    for (std::size_t id : b.tokens.inputs) inputs.push_back(std::int32_t(id));
    for (std::size_t id : b.tokens.targets) targets.push_back(std::int32_t(id));
    for (bool pad : b.tokens.padding) padding.push_back(pad ? 1 : 0);
    lrs.push_back(lr);
  }
  void write(const fs::path& dir) const {
    write_file(dir / "batches.i32", raw_bytes(pictures));
    write_file(dir / "images.f32", raw_bytes(images));
    write_file(dir / "lengths.i32", raw_bytes(lengths));
    write_file(dir / "inputs.i32", raw_bytes(inputs));
    write_file(dir / "targets.i32", raw_bytes(targets));
    write_file(dir / "padding.u8", raw_bytes(padding));
    write_file(dir / "lrs.txt", lines(lrs));
  }
  static std::string lines(const std::vector<double>& values) {
    std::ostringstream out;
    out.precision(17);
    for (double v : values) out << v << "\n";
    return out.str();
  }
};

// The run's K steps as train() takes them (AdamW and schedule as set_up makes them); writes
// the losses and the final parameters, and logs the batches when asked.
template <class T>
void replay(CaptionModel<T>& model, const TrainOptions& o, const std::vector<scenes::Scene>& data, const fs::path& dir,
            const std::string& suffix, BatchLog* log) {
  xtgrad::AdamW<T> optimizer(model.parameters(), xtgrad::AdamWOptions().set_lr(o.lr).set_weight_decay(o.weight_decay));
  xtgrad::LRScheduler<T> scheduler(optimizer, common::warmup_cosine(o.steps, o.warmup_steps()));
  common::BatchSampler sampler = common::run_sampler(o);
  std::vector<double> losses;
  for (std::size_t step = 1; step <= o.steps; ++step) {
    const std::vector<std::size_t> indices = sampler.next();
    const TrainBatch<T> batch = train_batch<T>(data, indices);
    if constexpr (std::is_same_v<T, float>)
      if (log) log->add(indices, batch, scheduler.lr());
    losses.push_back(train_step(model, optimizer, scheduler, batch, step));
  }
  write_file(dir / ("losses." + suffix + ".txt"), BatchLog::lines(losses));
  const std::string after = "after_" + std::to_string(o.steps) + (suffix == "f32" ? "" : "_f64") + ".safetensors";
  xtgrad::save_safetensors<T>((dir / after).string(), model.state_dict());
}

std::string config_json(const TrainOptions& o) {
  std::ostringstream out;
  out << "{\"seed\": " << o.seed << ", \"steps\": " << o.steps << ", \"warmup\": " << o.warmup_steps()
      << ", \"batch\": " << o.batch << ", \"train_size\": " << o.train_size << ", \"lr\": " << common::exact_text(o.lr)
      << ", \"weight_decay\": " << common::exact_text(o.weight_decay) << ", \"dim\": " << o.model.dim
      << ", \"heads\": " << o.model.heads << ", \"layers\": " << o.model.layers << ", \"ff\": " << o.model.ff
      << ", \"image\": \"" << o.model.image << "\"}\n";
  return out.str();
}

int dump(const TrainOptions& o, const fs::path& dir) {
  xtgrad::set_num_threads(o.threads);
  fs::create_directories(dir);
  write_file(dir / "config.json", config_json(o));
  xtgrad::Generator init(o.seed);  // as train()'s set_up
  CaptionModel<float> model(o.model, init);
  const xtgrad::StateDict<float> initial = model.state_dict();
  xtgrad::save_safetensors<float>((dir / "init.safetensors").string(), initial);
  const std::vector<scenes::Scene> data = make_split(o.train_size, o.seed);

  BatchLog log;
  replay(model, o, data, dir, "f32", &log);
  log.write(dir);
  xtgrad::Generator unused(0);
  CaptionModel<double> wide(o.model, unused);
  xtgrad::StateDict<double> widened;
  for (const auto& [name, a] : initial) widened.emplace(name, xtgrad::Array<double>(xt::cast<double>(a)));
  wide.load_state_dict(widened);
  replay<double>(wide, o, data, dir, "f64", nullptr);
  std::cout << "wrote " << o.steps << " steps (float and double) to " << dir.string() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "xtgrad-caption-dump: the caption task's data, initial parameters and K training steps, for "
      "examples/caption/reference.py");
  TrainOptions o;
  o.steps = 40;
  std::string out_dir;
  app.add_option("--out", out_dir, "output directory")->required();
  app.add_option("--seed", o.seed, "data and initialisation seed")
      ->capture_default_str()
      ->check(common::count_in(0, Limits::kMaxSeed));
  app.add_option("--steps", o.steps, "training steps to run and record (the run's length)")
      ->capture_default_str()
      ->check(common::count_in(1, kMaxDumpSteps));
  app.add_option("--train-size", o.train_size, "training pictures (at least a batch)")
      ->capture_default_str()
      ->check(common::count_in(o.batch, Limits::kMaxTrainSize));
  return common::run_main(app, argc, argv, "xtgrad-caption-dump", [&] { return dump(o, out_dir); });
}
