#include "resume.hpp"

#include <algorithm>

#include "flags.hpp"

namespace caption {

namespace {

// The flags that shape a run: given again on --resume, each must agree with the checkpoint.
void check_stored_flags(const CLI::App& cmd, const TrainOptions& given, const TrainOptions& stored) {
  using common::check_agrees;
  using common::exact_text;
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
  check_agrees(cmd, "--layers", to_string(given.model.layers), to_string(stored.model.layers));
  check_agrees(cmd, "--ff", to_string(given.model.ff), to_string(stored.model.ff));
  for (const char* flag : {"--blind", "--no-attention"})
    if (cmd.count(flag) && given.model.image != stored.model.image)
      throw common::UsageError(std::string(flag) + " differs from the checkpoint's model (image: " +
                               stored.model.image + "; a resumed run keeps its settings)");
}

}  // namespace

TrainOptions resumed_settings(const CLI::App& cmd, TrainOptions options) {
  options.resume_dir = common::checkpoint_dir(options.resume_dir);
  if (!cmd.count("--out")) options.out_dir = options.resume_dir;
  const StoredRun run = stored_run(options.resume_dir, options);
  check_stored_flags(cmd, options, run.settings);
  TrainOptions resumed = run.settings;
  if (cmd.count("--eval-every")) resumed.eval_every = options.eval_every;
  if (cmd.count("--threads")) resumed.threads = options.threads;
  const std::size_t last = resumed.stop_at ? resumed.stop_at : resumed.steps;
  if (run.step >= last)
    throw common::UsageError("the checkpoint in " + options.resume_dir + " is already at step " +
                             std::to_string(run.step) + " (" +
                             (resumed.stop_at ? "--stop-at " + std::to_string(resumed.stop_at)
                                              : "the run's --steps " + std::to_string(resumed.steps)) +
                             "): nothing to train");
  return resumed;
}

}  // namespace caption
