// xtgrad-align: the toy image-caption alignment task from the command line.
//   xtgrad-align train  [--steps N --batch N --lr X --optimizer adam|adamw|sgd --dim N --heads N
//                        --seed N --train-size N --test-size N --eval-every N --threads N
//                        --out DIR --resume DIR --no-attention --detect-anomaly]
//   xtgrad-align eval   --checkpoint PATH
//   xtgrad-align show   --checkpoint PATH --caption "red circle top left" [--image N] --png FILE
//   xtgrad-align sample [--count 16] [--seed N] --png FILE
// Exit codes: 0 success, 2 bad flags or values (with a usage message), 1 a missing or bad
// checkpoint or a failure while running.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <numeric>

#include "checkpoint.hpp"
#include "render.hpp"
#include "train.hpp"

namespace {

using namespace align;

struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// On --resume the run's settings come from the checkpoint; a flag given explicitly must agree.
void check_agrees(const CLI::App& cmd, const char* flag, const std::string& given, const std::string& stored) {
  if (cmd.count(flag) && given != stored)
    throw UsageError(std::string(flag) + " " + given + " differs from the checkpoint's " + stored +
                     " (a resumed run keeps its settings)");
}

int run_train(const CLI::App& cmd, TrainOptions options) {
  if (!options.resume_dir.empty()) {
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
    options = stored;
    if (run.step >= options.steps)
      throw UsageError("the checkpoint is already at step " + std::to_string(run.step) + "; pass --steps above it");
  }
  try {
    validate(options);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  const TrainResult r = train(options, std::cout);
  std::printf("\ndone: step %zu, loss %.4f, test P@1 %.3f, grounding %.3f, %.2f ms/step, %.1f s\ncheckpoint: %s/%s\n",
              r.step, r.last_loss, r.metrics.p_at_1, r.metrics.grounding, r.ms_per_step, r.seconds,
              options.out_dir.c_str(), kModelFile);
  return 0;
}

// The test split a checkpoint was evaluated on: its seed + 1, its size.
std::vector<Example> test_split(const LoadedModel& loaded) {
  const auto get = [&](const char* key, std::size_t fallback) {
    const auto found = loaded.metadata.find(key);
    return found == loaded.metadata.end() ? fallback : std::size_t(std::stoull(found->second));
  };
  return generate(get("test_size", 1000), get("seed", 0) + 1);
}

int run_eval(const std::string& checkpoint) {
  LoadedModel loaded = load_model(checkpoint);
  const Metrics m = evaluate(*loaded.model, test_split(loaded));
  std::printf("{\"p_at_1\": %.4f, \"grounding\": %.4f}\n", m.p_at_1, m.grounding);
  return 0;
}

int run_show(const std::string& checkpoint, const std::string& caption_words, long image, const std::string& png) {
  Caption caption;
  try {
    caption = parse_caption(caption_words);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  LoadedModel loaded = load_model(checkpoint);
  if (!loaded.config.attention) throw UsageError("this model has no attention to show (trained with --no-attention)");
  const std::vector<Example> test = test_split(loaded);
  if (image >= long(test.size())) throw UsageError("--image must be below " + std::to_string(test.size()));
  if (image < 0) {  // default: the first test image the caption matches
    const auto found = std::find_if(test.begin(), test.end(), [&](const Example& e) { return matches(caption, e); });
    image = found == test.end() ? 0 : long(found - test.begin());
  }
  // The caption against the 100 images of the image's block.
  const std::size_t start = std::size_t(image) / kBlock * kBlock;
  std::vector<std::size_t> block(kBlock);
  std::iota(block.begin(), block.end(), start);
  std::vector<std::size_t> ids(caption.begin(), caption.end());
  xtgrad::NoGradGuard no_grad;
  const ModelOutput<float> out = loaded.model->forward(patch_batch<float>(test, block), ids);  // (1,100), (1,100,4,16)
  const std::size_t own = std::size_t(image) - start;
  const auto attention = object_attention(out.attention.data().data() + own * kCaptionLength * kPatches);

  std::vector<std::size_t> ranked(kBlock);
  std::iota(ranked.begin(), ranked.end(), std::size_t(0));
  const float* scores = out.scores.data().data();
  std::sort(ranked.begin(), ranked.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  std::vector<RankedImage> top;
  for (std::size_t r = 0; r < 5; ++r)
    top.push_back({&test[start + ranked[r]], scores[ranked[r]], matches(caption, test[start + ranked[r]])});
  render_show(test[std::size_t(image)], caption, attention, top).save_png(png);

  const std::size_t peak = std::size_t(std::max_element(attention.begin(), attention.end()) - attention.begin());
  std::printf("\"%s\" on test image %ld (%s): attention peaks at cell %zu (row %zu, column %zu, weight %.2f); top image "
              "#%zu (score %.2f, %s); picture: %s\n",
              caption_text(caption).c_str(), image, matches(caption, test[std::size_t(image)]) ? "matches" : "no match",
              peak, peak / kGrid, peak % kGrid, attention[peak], start + ranked[0], scores[ranked[0]],
              top[0].matches ? "matches" : "no match", png.c_str());
  return 0;
}

int run_sample(std::size_t count, std::uint64_t seed, const std::string& png) {
  const std::vector<Example> examples = generate(count, seed);
  render_sample(examples).save_png(png);
  for (std::size_t i = 0; i < examples.size(); ++i) std::printf("%2zu  %s\n", i, caption_text(examples[i].caption).c_str());
  std::printf("picture: %s\n", png.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Each training step frees and allocates the same buffers: keep them for reuse instead of
  // faulting fresh pages in every step (see reuse_freed_memory; without it the default
  // run's step took 6.55 ms instead of 5.25 here). The largest, about 1 MB, are far below
  // its limit, and evaluation allocates the same sizes (kEvalCaptions in metrics.hpp).
  xtgrad::reuse_freed_memory();
  CLI::App app{"xtgrad-align: caption words attend to image patches (the toy task of xtgrad)"};
  app.require_subcommand(1);

  TrainOptions options;
  options.progress_bar = isatty(STDOUT_FILENO);
  bool no_attention = false;
  CLI::App* train_cmd = app.add_subcommand("train", "train the model; writes DIR/metrics.jsonl and checkpoints");
  train_cmd->add_option("--steps", options.steps, "train until this step")->capture_default_str();
  train_cmd->add_option("--batch", options.batch, "pairs per batch")->capture_default_str();
  train_cmd->add_option("--lr", options.lr, "learning rate")->capture_default_str();
  train_cmd->add_option("--optimizer", options.optimizer, "adam | adamw | sgd")->capture_default_str();
  train_cmd->add_option("--dim", options.model.dim, "model width")->capture_default_str();
  train_cmd->add_option("--heads", options.model.heads, "attention heads (must divide --dim)")->capture_default_str();
  train_cmd->add_option("--seed", options.seed, "data and initialisation seed")->capture_default_str();
  train_cmd->add_option("--train-size", options.train_size, "training pairs")->capture_default_str();
  train_cmd->add_option("--test-size", options.test_size, "test pairs (a multiple of 100)")->capture_default_str();
  train_cmd->add_option("--eval-every", options.eval_every, "steps between evaluations")->capture_default_str();
  train_cmd->add_option("--threads", options.threads, "threads for the ops (products, attention, row-wise ops)")->capture_default_str();
  train_cmd->add_option("--out", options.out_dir, "run directory")->capture_default_str();
  train_cmd->add_option("--resume", options.resume_dir, "continue the run in this directory");
  train_cmd->add_flag("--no-attention", no_attention, "replace attention by mean pooling (the baseline)");
  train_cmd->add_flag("--detect-anomaly", options.detect_anomaly, "stop at the first op that makes a NaN or Inf (slow)");

  std::string checkpoint, caption, png;
  long image = -1;
  std::size_t count = 16;
  std::uint64_t sample_seed = 0;
  CLI::App* eval_cmd = app.add_subcommand("eval", "P@1 and grounding of a checkpoint on its test split");
  eval_cmd->add_option("--checkpoint", checkpoint, "run directory or its model.safetensors")->required();
  CLI::App* show_cmd = app.add_subcommand("show", "a caption's attention over a test image, as a PNG");
  show_cmd->add_option("--checkpoint", checkpoint, "run directory or its model.safetensors")->required();
  show_cmd->add_option("--caption", caption, "e.g. \"red circle top left\"")->required();
  show_cmd->add_option("--image", image, "test image index (default: the first the caption matches)");
  show_cmd->add_option("--png", png, "output picture")->required();
  CLI::App* sample_cmd = app.add_subcommand("sample", "a grid of generated images, as a PNG");
  sample_cmd->add_option("--count", count, "images")->capture_default_str()->check(CLI::Range(1, 256));
  sample_cmd->add_option("--seed", sample_seed, "generator seed")->capture_default_str();
  sample_cmd->add_option("--png", png, "output picture")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "xtgrad-align: " << e.what() << "\n\n" << app.help();
    return 2;
  }
  try {
    if (train_cmd->parsed()) {
      options.model.attention = !no_attention;
      return run_train(*train_cmd, options);
    }
    if (eval_cmd->parsed()) return run_eval(checkpoint);
    if (show_cmd->parsed()) return run_show(checkpoint, caption, image, png);
    return run_sample(count, sample_seed, png);
  } catch (const UsageError& e) {
    std::cerr << "xtgrad-align: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {  // checkpoint errors and failures while running
    std::cerr << "xtgrad-align: " << e.what() << "\n";
    return 1;
  }
}
