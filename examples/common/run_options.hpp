// The settings, the result and the `train` flags of a training run of the examples that
// share them (caption, vqa): one struct, one flag block, one way from the flags to a run.
// Each example's TrainOptions derives from RunOptions<ModelConfig> with its own defaults
// (RunDefaults); run_settings.hpp stores these settings in the checkpoint and reads them
// back on --resume.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "data_parallel.hpp"
#include "distributed_run.hpp"
#include "flags.hpp"
#include "run_dir.hpp"
#include "run_settings.hpp"

namespace common {

// What differs between the examples' defaults.
struct RunDefaults {
  std::size_t train_size, test_size, steps, eval_every;
  const char* out_dir;
};

template <class ModelConfig> struct RunOptions {
  explicit RunOptions(const RunDefaults& d)
      : train_size(d.train_size),
        test_size(d.test_size),
        steps(d.steps),
        eval_every(d.eval_every),
        out_dir(d.out_dir) {}
  // Stored in the checkpoint's metadata (run_settings.hpp).
  std::size_t batch = 32;
  double lr = 2e-3;
  double weight_decay = 0.01;
  std::uint64_t seed = 0;
  std::size_t train_size, test_size, steps;
  std::size_t warmup = 0;  // 0: 5% of the steps
  std::size_t eval_every;
  int threads = 1;             // per rank under mpirun
  std::size_t world_size = 1;  // processes the run trains on (mpirun -np N); --batch is theirs together
  ModelConfig model;
  std::string run_id;  // the run's identity; empty: train() draws a new one
  // Per invocation.
  std::string out_dir;
  std::string resume_dir;   // empty: a fresh run
  std::size_t stop_at = 0;  // > 0: stop after this step's checkpoint, as if interrupted (--resume goes on)
  bool overwrite = false;
  bool progress_bar = false;
  std::size_t warmup_steps() const { return warmup ? warmup : std::max<std::size_t>(1, steps / 20); }
};

// What train() returns: the last evaluation and the timings (train_loop.hpp fills it).
template <class Metrics> struct TrainResult {
  std::size_t step = 0;
  double last_loss = 0;  // mean training loss since the previous evaluation
  Metrics metrics;
  double seconds = 0, median_step_ms = 0, eval_seconds = 0;
};

// The model's picture: "attention" (cross-attention over the grid), or a baseline:
// "blind" (never sees it) or "no-attention" (the grid mean-pooled).
struct BaselineFlags {
  bool blind = false, no_attention = false;
  std::string image() const { return blind ? "blind" : no_attention ? "no-attention" : "attention"; }
};

// `train`'s flags shared by caption and VQA (the model's own flags are the example's);
// `item` names what a batch holds ("pictures", "questions").
template <class ModelConfig>
void add_run_flags(CLI::App* cmd, RunOptions<ModelConfig>& o, BaselineFlags& baseline, const std::string& item,
                   const char* blind_help, const char* no_attention_help) {
  add_count_flag(cmd, "--steps", o.steps, "training steps", 1, RunLimits::kMaxSteps);
  add_count_flag(cmd, "--batch", o.batch, item + " per batch", 1, RunLimits::kMaxBatch);
  cmd->add_option("--lr", o.lr, "peak learning rate (AdamW)")->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW's weight decay")->capture_default_str();
  add_count_flag(cmd, "--warmup", o.warmup, "warm-up steps (0: 5% of --steps)", 0, RunLimits::kMaxSteps);
  add_count_flag(cmd, "--seed", o.seed, "data and initialisation seed (test split: seed + 1)", 0, RunLimits::kMaxSeed);
  add_count_flag(cmd, "--train-size", o.train_size, "training " + item, 1, RunLimits::kMaxTrainSize);
  add_count_flag(cmd, "--test-size", o.test_size, "test " + item, 1, RunLimits::kMaxTestSize);
  add_count_flag(cmd, "--eval-every", o.eval_every, "steps between evaluations (and checkpoints)", 1,
                 RunLimits::kMaxSteps);
  cmd->add_option("--threads", o.threads, "threads for the ops")->capture_default_str()->check(thread_count());
  cmd->add_option("--out", o.out_dir, "run directory")->capture_default_str();
  cmd->add_flag("--overwrite", o.overwrite, "replace the run that --out holds");
  cmd->add_option("--resume", o.resume_dir, "continue the run in this directory, with its settings");
  add_count_flag(cmd, "--stop-at", o.stop_at, "stop after this evaluation step, as if interrupted (0: at --steps)", 0,
                 RunLimits::kMaxSteps);
  auto* blind_flag = cmd->add_flag("--blind", baseline.blind, blind_help);
  cmd->add_flag("--no-attention", baseline.no_attention, no_attention_help)->excludes(blind_flag);
}

// `train` from its parsed flags, on every rank alike (parallel: this process's ranks, from
// DistributedRun): the resumed run's settings (resumed_settings(cmd, options)) or the
// flags' own, validated (validate(options) throws std::invalid_argument: a usage error),
// then train(options) with rank 0 (or the one process) holding the run directory (one
// writer, check_may_write). A bad setting on any rank stops every rank (agree). Under
// mpirun --threads defaults to the cores of the rank's share of its machine; the other
// settings must be the same on every rank.
template <class Options, class Resume, class Validate, class Train>
auto train_from_flags(const CLI::App& cmd, Options& options, const char* program, const DistributedRun& parallel,
                      Resume resumed_settings, Validate validate, Train train) {
  std::optional<RunLock> lock;
  parallel.agree([&] {
    options.world_size = parallel.ranks().size;
    if (parallel.distributed() && !cmd.count("--threads"))
      options.threads = default_threads_per_rank(parallel.launch().local_ranks);
    if (!options.resume_dir.empty()) options = resumed_settings(cmd, options);
    try {
      validate(options);
      check_batch_covers_ranks("--batch", options.batch, parallel.ranks());
      if (parallel.ranks().root()) check_writable_dir(options.out_dir);  // before any work is done
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
    if (!parallel.ranks().root()) return;
    lock.emplace(options.out_dir);
    check_may_write(options, program);
  });
  parallel.agree([&] {  // a launcher's MPMD form can start ranks with other flags
    std::string settings;
    for (const auto& [key, value] : run_metadata(options, program, 0))
      if (key != "threads" && key != "run_id") settings += key + "=" + value + " ";
    parallel.check_same("settings", settings);
  });
  return train(options);
}

}  // namespace common
