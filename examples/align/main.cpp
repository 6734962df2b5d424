// xtgrad-align: the toy image-caption alignment task from the command line.
//   xtgrad-align train  [--steps N --batch N --lr X --optimizer adam|adamw|sgd --dim N --heads N
//                        --seed N --train-size N --test-size N --eval-every N --threads N
//                        --out DIR --resume DIR --overwrite --no-attention --detect-anomaly]
//   xtgrad-align eval   --checkpoint PATH
//   xtgrad-align show   --checkpoint PATH --caption "red circle top left" [--image N] --png FILE
//   xtgrad-align sample [--count 16] [--seed N] --png FILE
// Exit codes (examples/common/flags.hpp): 0 success, 2 bad flags or values (with a usage
// message), 1 a missing or bad checkpoint or a failure while running.
// `mpirun -np N xtgrad-align train ...` trains data-parallel, --batch being the global batch
// (docs/distributed.md); started without a launcher it never initialises MPI.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>

#include "checkpoint.hpp"
#include "data_parallel.hpp"
#include "distributed_run.hpp"
#include "flags.hpp"
#include "render.hpp"
#include "run_dir.hpp"
#include "train.hpp"

namespace {

// Wall time since the program started (static initialisation, before main).
const auto kProgramStart = std::chrono::steady_clock::now();
double seconds_since_start() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - kProgramStart).count();
}

using namespace align;
using common::check_agrees;
using common::UsageError;
namespace fs = std::filesystem;

// The settings of a resumed run: the checkpoint's, where flags given again must agree;
// --eval-every and --threads given again replace the stored ones. A data-parallel run
// resumes on as many ranks as it ran on.
TrainOptions resumed_settings(const CLI::App& cmd, TrainOptions options) {
  options.resume_dir = checkpoint_dir(options.resume_dir);
  if (!cmd.count("--out")) options.out_dir = options.resume_dir;
  const StoredRun run = stored_run(options.resume_dir, options);
  const TrainOptions& stored = run.settings;
  check_agrees(cmd, "--batch", std::to_string(options.batch), std::to_string(stored.batch));
  check_agrees(cmd, "--optimizer", options.optimizer, stored.optimizer);
  check_agrees(cmd, "--seed", std::to_string(options.seed), std::to_string(stored.seed));
  check_agrees(cmd, "--train-size", std::to_string(options.train_size), std::to_string(stored.train_size));
  check_agrees(cmd, "--test-size", std::to_string(options.test_size), std::to_string(stored.test_size));
  check_agrees(cmd, "--dim", std::to_string(options.model.dim), std::to_string(stored.model.dim));
  check_agrees(cmd, "--heads", std::to_string(options.model.heads), std::to_string(stored.model.heads));
  if (cmd.count("--lr") && options.lr != stored.lr) throw UsageError("--lr differs from the checkpoint's");
  if (cmd.count("--no-attention") && stored.model.attention) throw UsageError("the checkpoint has attention");
  if (options.world_size != stored.world_size)
    throw UsageError(
        "the run in " + options.resume_dir + " was trained on " + std::to_string(stored.world_size) +
        (stored.world_size == 1 ? " process" : " ranks (mpirun -np " + std::to_string(stored.world_size) + ")") +
        " and this resume runs on " + std::to_string(options.world_size) + ": resume it on " +
        std::to_string(stored.world_size) + " (each rank's share of the batch would change)");
  TrainOptions resumed = stored;
  if (cmd.count("--eval-every")) resumed.eval_every = options.eval_every;
  if (cmd.count("--threads")) resumed.threads = options.threads;
  if (run.step >= resumed.steps)
    throw UsageError("the checkpoint is already at step " + std::to_string(run.step) + "; pass --steps above it");
  return resumed;
}

// The settings every rank of a data-parallel run must share (not --threads, --out).
std::string run_settings_text(const TrainOptions& o) {
  std::ostringstream text;
  text << o.steps << ' ' << o.batch << ' ' << common::exact_text(o.lr) << ' ' << o.optimizer << ' ' << o.seed << ' '
       << o.train_size << ' ' << o.test_size << ' ' << o.eval_every << ' ' << o.model.dim << ' ' << o.model.heads << ' '
       << o.model.attention << ' ' << o.detect_anomaly;
  return text.str();
}

// The settings of the run, checked; rank 0 (or the one process) takes the run directory.
TrainOptions checked_settings(const CLI::App& cmd, TrainOptions options, const common::DistributedRun& parallel,
                              std::optional<common::RunLock>& lock) {
  options.world_size = parallel.ranks().size;
  if (parallel.distributed() && !cmd.count("--threads"))  // a resume keeps its stored count
    options.threads = common::default_threads_per_rank(parallel.launch().local_ranks);
  if (!options.resume_dir.empty()) options = resumed_settings(cmd, options);
  try {
    validate(options, parallel.ranks().root());
    common::check_batch_covers_ranks("--batch", options.batch, parallel.ranks());
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (!parallel.ranks().root()) return options;
  lock.emplace(options.out_dir);  // one writer per run directory
  const bool continues_in_place = !options.resume_dir.empty() && fs::equivalent(options.resume_dir, options.out_dir);
  if (!continues_in_place) common::check_may_write_run(options.out_dir, options.overwrite, "xtgrad-align");
  return options;
}

int run_train(const CLI::App& cmd, TrainOptions options, const common::DistributedRun& parallel) {
  std::optional<common::RunLock> lock;
  parallel.agree([&] { options = checked_settings(cmd, options, parallel, lock); });  // bad input stops every rank
  parallel.agree([&] { parallel.check_same("settings", run_settings_text(options)); });
  const TrainResult r = train(options, std::cout, &parallel);
  if (!parallel.ranks().root()) return 0;
  std::printf("\ndone: step %zu, loss %.4f, test P@1 %.3f, grounding %.3f, %.2f ms/step, %.1f s\n", r.step, r.last_loss,
              r.metrics.p_at_1, r.metrics.grounding, r.ms_per_step, r.seconds);
  // What the loop costs beside its steps: evaluations, saves, waiting for batches.
  const double steps_s = double(r.steps_taken) * r.median_step_ms / 1e3;
  const std::string beside =
      r.background_evaluations ? " (" + std::to_string(r.background_evaluations) + " evaluated beside the steps)" : "";
  std::printf(
      "time: %.1f s = %zu steps x %.2f ms (median) = %.1f s, + %.1f s evaluating and saving%s, + %.1f s other; "
      "%.1f s since start (%.2fx the steps)\ncheckpoint: %s/%s\n",
      r.seconds, r.steps_taken, r.median_step_ms, steps_s, r.eval_seconds, beside.c_str(),
      r.seconds - steps_s - r.eval_seconds, seconds_since_start(), seconds_since_start() / steps_s,
      options.out_dir.c_str(), kModelFile);
  if (r.bytes_per_step > 0)
    std::printf(
        "ranks: %zu; collectives of %s a step (the gradients all-reduced, the image features gathered and their "
        "gradient all-reduced), %.2f ms a step waiting in them (mean)\n",
        options.world_size, common::bytes_text(r.bytes_per_step).c_str(),
        1e3 * r.communication_seconds / double(r.steps_taken));
  return 0;
}

// The test split a checkpoint was evaluated on: its seed + 1, its size.
std::vector<Example> test_split(const std::string& checkpoint, const LoadedModel& loaded) {
  const std::string file = (fs::path(checkpoint_dir(checkpoint)) / kModelFile).string();
  const TrainOptions stored = settings_from_metadata(file, loaded.metadata, TrainOptions{}, /*for_resume=*/false);
  return generate(stored.test_size, stored.seed + 1);
}

int run_eval(const std::string& checkpoint) {
  LoadedModel loaded = load_model(checkpoint);
  const Metrics m = evaluate(*loaded.model, test_split(checkpoint, loaded));
  std::printf("{\"p_at_1\": %.4f, \"grounding\": %.4f}\n", m.p_at_1, m.grounding);
  return 0;
}

int show_image(const LoadedModel& loaded, const std::vector<Example>& test, const Caption& caption, std::size_t image,
               const std::string& png);

// image: a test image index, or none for the first test image the caption matches.
int run_show(const std::string& checkpoint, const std::string& caption_words, std::optional<std::size_t> image,
             const std::string& png) {
  Caption caption;
  try {
    caption = parse_caption(caption_words);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  LoadedModel loaded = load_model(checkpoint);
  if (!loaded.config.attention) throw UsageError("this model has no attention to show (trained with --no-attention)");
  const std::vector<Example> test = test_split(checkpoint, loaded);  // a positive multiple of kBlock long
  if (image && *image >= test.size())
    throw UsageError("--image " + std::to_string(*image) + " is out of range: the test split has images 0 to " +
                     std::to_string(test.size() - 1));
  if (!image) {
    const auto found = std::find_if(test.begin(), test.end(), [&](const Example& e) { return matches(caption, e); });
    image = found == test.end() ? 0 : std::size_t(found - test.begin());
  }
  return show_image(loaded, test, caption, *image, png);
}

// The caption against the 100 test images of image's block: the attention over the image,
// the five best-scoring images, as a PNG and a line of text.
int show_image(const LoadedModel& loaded, const std::vector<Example>& test, const Caption& caption, std::size_t image,
               const std::string& png) {
  const std::size_t start = image / kBlock * kBlock;
  std::vector<std::size_t> block(kBlock);
  std::iota(block.begin(), block.end(), start);
  std::vector<std::size_t> ids(caption.begin(), caption.end());
  xtgrad::NoGradGuard no_grad;
  const ModelOutput<float> out = loaded.model->forward(patch_batch<float>(test, block), ids);  // (1,100), (1,100,4,16)
  const std::size_t own = image - start;
  const auto attention = object_attention(out.attention.data().data() + own * kCaptionLength * kPatches);

  std::vector<std::size_t> ranked(kBlock);
  std::iota(ranked.begin(), ranked.end(), std::size_t(0));
  const float* scores = out.scores.data().data();
  std::sort(ranked.begin(), ranked.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  std::vector<RankedImage> top;
  for (std::size_t r = 0; r < 5; ++r)
    top.push_back({&test[start + ranked[r]], scores[ranked[r]], matches(caption, test[start + ranked[r]])});
  render_show(test[image], caption, attention, top).save_png(png);

  const std::size_t peak = std::size_t(std::max_element(attention.begin(), attention.end()) - attention.begin());
  std::printf(
      "\"%s\" on test image %zu (%s): attention peaks at cell %zu (row %zu, column %zu, weight %.2f); top image "
      "#%zu (score %.2f, %s); picture: %s\n",
      caption_text(caption).c_str(), image, matches(caption, test[image]) ? "matches" : "no match", peak, peak / kGrid,
      peak % kGrid, attention[peak], start + ranked[0], scores[ranked[0]], top[0].matches ? "matches" : "no match",
      png.c_str());
  return 0;
}

int run_sample(std::size_t count, std::uint64_t seed, const std::string& png) {
  const std::vector<Example> examples = generate(count, seed);
  render_sample(examples).save_png(png);
  for (std::size_t i = 0; i < examples.size(); ++i)
    std::printf("%2zu  %s\n", i, caption_text(examples[i].caption).c_str());
  std::printf("picture: %s\n", png.c_str());
  return 0;
}

// A flag holding a count in [lo, hi], its default shown in --help.
// The train subcommand, its flags read into options and no_attention (--no-attention).
CLI::App* add_train_command(CLI::App& app, TrainOptions& options, bool& no_attention) {
  CLI::App* train_cmd = app.add_subcommand("train", "train the model; writes DIR/metrics.jsonl and checkpoints");
  common::add_count_flag(train_cmd, "--steps", options.steps, "train until this step", 1, Limits::kMaxSteps);
  common::add_count_flag(train_cmd, "--batch", options.batch, "pairs per batch", 2, Limits::kMaxBatch);
  train_cmd->add_option("--lr", options.lr, "learning rate")->capture_default_str();
  train_cmd->add_option("--optimizer", options.optimizer, "adam | adamw | sgd")->capture_default_str();
  common::add_count_flag(train_cmd, "--dim", options.model.dim, "model width", 1, ModelConfig::kMaxDim);
  common::add_count_flag(train_cmd, "--heads", options.model.heads, "attention heads (must divide --dim)", 1,
                         ModelConfig::kMaxDim);
  common::add_count_flag(train_cmd, "--seed", options.seed, "data and initialisation seed", 0, Limits::kMaxSeed);
  common::add_count_flag(train_cmd, "--train-size", options.train_size, "training pairs", 2, Limits::kMaxTrainSize);
  common::add_count_flag(train_cmd, "--test-size", options.test_size, "test pairs (a multiple of 100)", kBlock,
                         Limits::kMaxTestSize);
  common::add_count_flag(train_cmd, "--eval-every", options.eval_every, "steps between evaluations (and checkpoints)",
                         1, Limits::kMaxSteps);
  train_cmd
      ->add_option("--threads", options.threads, "threads for the training steps' ops (evaluation uses every core)")
      ->capture_default_str()
      ->check(common::thread_count());
  train_cmd->add_option("--out", options.out_dir, "run directory")->capture_default_str();
  train_cmd->add_option("--resume", options.resume_dir, "continue the run in this directory");
  train_cmd->add_flag("--overwrite", options.overwrite, "replace the run that --out holds");
  train_cmd->add_flag("--no-attention", no_attention, "replace attention by mean pooling (the baseline)");
  train_cmd->add_flag("--detect-anomaly", options.detect_anomaly,
                      "stop at the first op that makes a NaN or Inf (slow)");
  return train_cmd;
}

}  // namespace

int main(int argc, char** argv) {
  // Each training step frees and allocates the same buffers: keep them for reuse instead of
  // faulting fresh pages in every step (see reuse_freed_memory; without it the default
  // run's step took 6.55 ms instead of 5.25 here). The largest, about 1 MB, are far below
  // its limit, and evaluation allocates the same sizes (kEvalCaptions in metrics.hpp).
  xtgrad::reuse_freed_memory();
  // Under mpirun (and only then: the launcher's environment says so) MPI starts here and
  // this process is one rank of a data-parallel run (docs/distributed.md).
  std::optional<common::DistributedRun> parallel;
  if (!common::start_ranks(parallel, argc, argv, "xtgrad-align")) return 2;
  const common::Ranks ranks = parallel->ranks();
  CLI::App app{"xtgrad-align: caption words attend to image patches (the toy task of xtgrad)"};
  app.require_subcommand(1);

  TrainOptions options;
  options.progress_bar = isatty(STDOUT_FILENO) && !parallel->distributed();  // mpirun forwards lines
  bool no_attention = false;
  CLI::App* train_cmd = add_train_command(app, options, no_attention);

  std::string checkpoint, caption, png;
  std::size_t image = 0;
  std::size_t count = 16;
  std::uint64_t sample_seed = 0;
  CLI::App* eval_cmd = app.add_subcommand("eval", "P@1 and grounding of a checkpoint on its test split");
  eval_cmd->add_option("--checkpoint", checkpoint, "run directory or its model.safetensors")->required();
  CLI::App* show_cmd = app.add_subcommand("show", "a caption's attention over a test image, as a PNG");
  show_cmd->add_option("--checkpoint", checkpoint, "run directory or its model.safetensors")->required();
  show_cmd->add_option("--caption", caption, "e.g. \"red circle top left\"")->required();
  show_cmd->add_option("--image", image, "test image index (default: the first the caption matches)")
      ->check(common::count_in(0, Limits::kMaxTestSize - 1));
  show_cmd->add_option("--png", png, "output picture")->required();
  CLI::App* sample_cmd = app.add_subcommand("sample", "a grid of generated images, as a PNG");
  common::add_count_flag(sample_cmd, "--count", count, "images", 1, 256);
  common::add_count_flag(sample_cmd, "--seed", sample_seed, "generator seed", 0, Limits::kMaxSeed);
  sample_cmd->add_option("--png", png, "output picture")->required();

  return parallel->run_main(app, argc, argv, "xtgrad-align", [&] {
    if (train_cmd->parsed()) {
      options.model.attention = !no_attention;
      return run_train(*train_cmd, options, *parallel);
    }
    if (!ranks.root()) return 0;  // eval, show and sample: rank 0's work
    if (eval_cmd->parsed()) return run_eval(checkpoint);
    if (show_cmd->parsed())
      return run_show(checkpoint, caption,
                      show_cmd->count("--image") ? std::optional<std::size_t>(image) : std::nullopt, png);
    return run_sample(count, sample_seed, png);
  });
}
