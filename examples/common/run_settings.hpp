// The settings of a training run of the examples that share them (caption, vqa; the
// settings themselves are common::RunOptions, run_options.hpp): kept in the model file's
// metadata, read back strictly to resume, and checked against the flags given again with
// `train --resume DIR`. Templates over the example's TrainOptions (a RunOptions whose
// model has dim, heads, ff, image and to_metadata()) and RunLimits.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "run_dir.hpp"
#include "train_state.hpp"
#include "xtgrad/random.hpp"
#include "xtgrad/safetensors.hpp"

namespace common {

// The ranges of the settings of caption's and VQA's runs (flags and stored settings).
struct RunLimits {
  static constexpr std::uint64_t kMaxSteps = 1'000'000'000;
  static constexpr std::uint64_t kMaxBatch = 100'000;
  // The sampler's epoch order is stored as float32, exact for indices below 2^24.
  static constexpr std::uint64_t kMaxTrainSize = std::uint64_t(1) << 24;
  static constexpr std::uint64_t kMaxTestSize = 1'000'000;
  static constexpr std::uint64_t kMaxSeed = UINT64_MAX - 1;  // the test split's seed is seed + 1
};

// The model file's metadata: the model's configuration, the format, the step and the run's
// settings (warmup resolved to its number of steps).
template <class Options> xtgrad::Metadata run_metadata(const Options& o, const std::string& format, std::size_t step) {
  xtgrad::Metadata m = o.model.to_metadata();
  m.insert({{"format", format},
            {"step", std::to_string(step)},
            {"batch", std::to_string(o.batch)},
            {"lr", exact_text(o.lr)},
            {"weight_decay", exact_text(o.weight_decay)},
            {"seed", std::to_string(o.seed)},
            {"train_size", std::to_string(o.train_size)},
            {"test_size", std::to_string(o.test_size)},
            {"steps", std::to_string(o.steps)},
            {"warmup", std::to_string(o.warmup_steps())},
            {"eval_every", std::to_string(o.eval_every)},
            {"threads", std::to_string(o.threads)},
            {"run_id", o.run_id}});
  if (o.world_size > 1) m["world_size"] = std::to_string(o.world_size);  // absent: one process
  return m;
}

// Every run setting of a model file's metadata, parsed strictly (xtgrad::CheckpointError
// naming the file, the key and the value); the model and the per-invocation fields are left
// as in `base`.
template <class Limits, class Options>
Options stored_settings(const std::string& file, const xtgrad::Metadata& m, Options base) {
  base.batch = metadata_count(file, m, "batch", 1, Limits::kMaxBatch);
  base.lr = metadata_number(file, m, "lr");
  base.weight_decay = metadata_number(file, m, "weight_decay");
  base.seed = metadata_count(file, m, "seed", 0, Limits::kMaxSeed);
  base.train_size = metadata_count(file, m, "train_size", base.batch, Limits::kMaxTrainSize);
  base.test_size = metadata_count(file, m, "test_size", 1, Limits::kMaxTestSize);
  base.steps = metadata_count(file, m, "steps", 1, Limits::kMaxSteps);
  base.warmup = metadata_count(file, m, "warmup", 1, base.steps);  // stored resolved
  base.eval_every = metadata_count(file, m, "eval_every", 1, Limits::kMaxSteps);
  base.threads = int(metadata_count(file, m, "threads", 1, 1u << 20));
  base.run_id = metadata_text(file, m, "run_id");
  base.world_size = m.count("world_size") ? metadata_count(file, m, "world_size", 2, 1u << 20) : 1;
  return base;
}

// A run's model read back (read_run_model): the model, its step and the settings eval needs.
template <class Model> struct LoadedModel {
  std::unique_ptr<Model> model;
  std::size_t step = 0;
  std::uint64_t seed = 0;
  std::size_t test_size = 0;
  xtgrad::Metadata metadata;
};

// The run directory or its model.safetensors, read strictly (read_model_file,
// load_model_strictly): the model its metadata describes (Model::Config-like
// decltype(Model::config)::from_metadata), with xtgrad::CheckpointError (exit 1) naming the
// file and the problem: missing, corrupt, foreign, bad metadata, non-finite or misshapen.
template <class Model, class Limits>
LoadedModel<Model> read_run_model(const std::string& checkpoint, const std::string& format,
                                  const std::string& program) {
  ModelFile file = read_model_file(checkpoint, format, program);
  const xtgrad::Metadata& meta = file.contents.metadata;
  LoadedModel<Model> loaded;
  loaded.step = metadata_count(file.path, meta, "step", 0, Limits::kMaxSteps);
  loaded.seed = metadata_count(file.path, meta, "seed", 0, Limits::kMaxSeed);
  loaded.test_size = metadata_count(file.path, meta, "test_size", 1, Limits::kMaxTestSize);
  loaded.model = load_model_strictly(file, [&] {
    using Config = std::decay_t<decltype(std::declval<Model>().config)>;
    xtgrad::Generator unused(0);
    return std::make_unique<Model>(Config::from_metadata(meta), unused);
  });
  loaded.metadata = meta;
  return loaded;
}

// Writes DIR/model.safetensors atomically (a temporary file and a rename): the model's
// tensors, and the settings of `o` (and its run_id) in its metadata (run_metadata).
template <class Model, class Options>
void write_run_model(const std::string& dir, const Model& model, std::size_t step, const Options& o,
                     const std::string& format) {
  xtgrad::save_safetensors<float>((std::filesystem::path(dir) / kModelFile).string(), model.state_dict(),
                                  run_metadata(o, format, step));
}

// A run to resume: its stored settings and the step its checkpoint is at.
template <class Options> struct StoredRun {
  Options settings;
  std::size_t step = 0;
};

// The run a checkpoint (a run directory or its model file) holds: load_model(dir) reads the
// model file strictly (the example's, giving .model with its .config, .metadata and .step),
// then every run setting of its metadata is parsed (stored_settings).
template <class Limits, class Options, class LoadModel>
StoredRun<Options> read_stored_run(const std::string& dir, Options base, LoadModel load_model) {
  const auto loaded = load_model(dir);
  const std::string file = checkpoint_dir(dir) + "/" + kModelFile;
  base = stored_settings<Limits>(file, loaded.metadata, base);
  base.model = loaded.model->config;
  return {base, loaded.step};
}

// The flags that shape a run and that both examples have: given again on --resume, each
// must agree with the checkpoint (common::UsageError naming the flag otherwise).
template <class Options> void check_run_flags(const CLI::App& cmd, const Options& given, const Options& stored) {
  using std::to_string;
  check_agrees(cmd, "--steps", to_string(given.steps), to_string(stored.steps));
  check_agrees(cmd, "--batch", to_string(given.batch), to_string(stored.batch));
  check_agrees(cmd, "--lr", exact_text(given.lr), exact_text(stored.lr));
  check_agrees(cmd, "--weight-decay", exact_text(given.weight_decay), exact_text(stored.weight_decay));
  // --warmup 0 means 5% of the run's steps; the checkpoint stores the number it came to.
  const std::size_t warmup = given.warmup ? given.warmup : std::max<std::size_t>(1, stored.steps / 20);
  check_agrees(cmd, "--warmup", to_string(warmup), to_string(stored.warmup));
  check_agrees(cmd, "--seed", to_string(given.seed), to_string(stored.seed));
  check_agrees(cmd, "--train-size", to_string(given.train_size), to_string(stored.train_size));
  check_agrees(cmd, "--test-size", to_string(given.test_size), to_string(stored.test_size));
  check_agrees(cmd, "--dim", to_string(given.model.dim), to_string(stored.model.dim));
  check_agrees(cmd, "--heads", to_string(given.model.heads), to_string(stored.model.heads));
  check_agrees(cmd, "--ff", to_string(given.model.ff), to_string(stored.model.ff));
  for (const char* flag : {"--blind", "--no-attention"})
    if (cmd.count(flag) && given.model.image != stored.model.image)
      throw UsageError(std::string(flag) + " differs from the checkpoint's model (image: " + stored.model.image +
                       "; a resumed run keeps its settings)");
}

// A run resumes on as many processes as it trained on: each rank's share of every batch,
// and so the order of the sums, would change otherwise. UsageError saying how to resume.
inline void check_same_world_size(const std::string& dir, std::size_t stored, std::size_t now) {
  if (stored == now) return;
  const auto processes = [](std::size_t n) {
    return n == 1 ? std::string("1 process") : std::to_string(n) + " ranks (mpirun -np " + std::to_string(n) + ")";
  };
  throw UsageError("the run in " + dir + " was trained on " + processes(stored) + " and this resume runs on " +
                   processes(now) + ": resume it on " + processes(stored));
}

// The settings of a resumed run: the checkpoint's (read_run(dir, options) gives its
// StoredRun), with the per-invocation fields of `options` (--out defaults to the run
// directory). A flag of `cmd` given again must agree with the stored setting
// (check_run_flags, then check_model_flags(cmd, given, stored) for the example's own model
// flags); --eval-every and --threads given again replace the stored ones. UsageError too
// when the checkpoint is already at the last step (--steps, or --stop-at).
template <class Options, class ReadRun, class CheckModelFlags>
Options resumed_settings(const CLI::App& cmd, Options options, ReadRun read_run, CheckModelFlags check_model_flags) {
  options.resume_dir = checkpoint_dir(options.resume_dir);
  if (!cmd.count("--out")) options.out_dir = options.resume_dir;
  const StoredRun<Options> run = read_run(options.resume_dir, options);
  check_run_flags(cmd, options, run.settings);
  check_model_flags(cmd, options, run.settings);
  check_same_world_size(options.resume_dir, run.settings.world_size, options.world_size);
  Options resumed = run.settings;
  if (cmd.count("--eval-every")) resumed.eval_every = options.eval_every;
  if (cmd.count("--threads")) resumed.threads = options.threads;
  const std::size_t last = resumed.stop_at ? resumed.stop_at : resumed.steps;
  if (run.step >= last)
    throw UsageError("the checkpoint in " + options.resume_dir + " is already at step " + std::to_string(run.step) +
                     " (" +
                     (resumed.stop_at ? "--stop-at " + std::to_string(resumed.stop_at)
                                      : "the run's --steps " + std::to_string(resumed.steps)) +
                     "): nothing to train");
  return resumed;
}

// Before a run writes into options.out_dir (held by the caller's common::RunLock): a resume
// continuing in its own run directory may; any other run only as check_may_write_run allows.
template <class Options> void check_may_write(const Options& o, const std::string& program) {
  std::error_code error;
  const bool in_place = !o.resume_dir.empty() && std::filesystem::equivalent(o.resume_dir, o.out_dir, error);
  if (!in_place) check_may_write_run(o.out_dir, o.overwrite, program);
}

}  // namespace common
