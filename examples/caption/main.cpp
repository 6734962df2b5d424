// xtgrad-caption: caption generation on the toy pictures (docs/caption-task.md).
//   xtgrad-caption train    [--steps N --batch N --lr X --weight-decay X --warmup N --dim N --heads N
//                            --layers N --ff N --seed N --train-size N --test-size N --eval-every N
//                            --threads N --out DIR --overwrite --blind | --no-attention]
//                          [--resume DIR [--steps N --stop-at N ...]]  continues a run, bit-identical
//   xtgrad-caption eval     --checkpoint PATH
//   xtgrad-caption generate --checkpoint PATH --image-seed N [--beam K | --temperature T --sample-seed S]
//                            [--png FILE]
//   xtgrad-caption sample   [--count N --seed S] --png FILE
// Exit codes (examples/common/flags.hpp): 0 success, 2 bad flags or values (with a usage
// message), 1 a missing or bad checkpoint or a failure while running.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>

#include "decode.hpp"
#include "distributed_run.hpp"
#include "flags.hpp"
#include "render.hpp"
#include "resume.hpp"
#include "run_dir.hpp"
#include "train.hpp"

namespace {

using namespace caption;
using common::UsageError;

int run_train(const CLI::App& cmd, TrainOptions options, const common::DistributedRun& parallel) {
  const TrainResult r = common::train_from_flags(cmd, options, kProgram, parallel, resumed_settings, validate,
                                                 [&](const TrainOptions& o) { return train(o, std::cout, &parallel); });
  if (!parallel.ranks().root()) return 0;
  std::printf(
      "\ndone: step %zu, loss %.4f, test exact %.3f (in order %.3f), object F1 %.3f, parse failures %.3f, BLEU-4 "
      "%.3f\ntime: %.1f s (median step %.2f ms, %.1f s evaluating and saving)\ncheckpoint: %s/%s\n",
      r.step, r.last_loss, r.metrics.exact, r.metrics.exact_in_order, r.metrics.f1, r.metrics.parse_fail,
      r.metrics.bleu4, r.seconds, r.median_step_ms, r.eval_seconds, options.out_dir.c_str(), kModelFile);
  return 0;
}

int run_eval(const std::string& checkpoint) {
  LoadedModel loaded = load_model(checkpoint);
  const Metrics m = evaluate(*loaded.model, make_split(loaded.test_size, loaded.seed + 1));
  std::printf("{\"step\": %zu, %s}\n", loaded.step, metrics_json(m).c_str());
  return 0;
}

struct GenerateOptions {
  std::string checkpoint;
  std::uint64_t image_seed = 0;
  std::size_t beam = 1;
  double temperature = 0;  // 0: no sampling
  std::uint64_t sample_seed = 0;
  std::string png;  // empty: no picture
};

// What the heat maps of generate's picture average over (word_attention).
std::string averaged_over(const ModelConfig& c) {
  return "the " + std::to_string(c.heads) + " heads of the last decoder layer (of " + std::to_string(c.layers) + ")";
}

// The caption of scene 0 of the split with seed image_seed: greedy, beam search or sampled.
int run_generate(const GenerateOptions& g) {
  if (g.temperature < 0 || !std::isfinite(g.temperature))
    throw UsageError("--temperature must be a positive number (0: no sampling)");
  if (g.temperature > 0 && g.beam > 1) throw UsageError("--beam and --temperature exclude each other");
  LoadedModel loaded = load_model(g.checkpoint);
  if (!g.png.empty() && loaded.model->config.image != "attention")
    throw UsageError("--png: this model has no cross-attention over the picture to show (trained with --" +
                     loaded.model->config.image + ")");
  const scenes::Scene scene = scenes::generate_scene(g.image_seed, 0);
  const xtgrad::NoGradGuard no_grad;
  loaded.model->eval();
  const xtgrad::Tensor<float> image = image_batch<float>({scene});
  std::vector<std::size_t> tokens;
  if (g.temperature > 0) {
    xtgrad::Generator gen(g.sample_seed);
    tokens = sample(*loaded.model, image, g.temperature, kMaxDecode, gen).tokens;
  } else {
    tokens = beam_search(*loaded.model, image, g.beam, kMaxDecode).front().tokens;
  }
  const auto parsed = parse_decoded(tokens);
  const std::vector<std::size_t> reference = caption_words(scene);
  const bool exact = parsed && score_captions({tokens}, {reference}).exact == 1.0;
  const std::vector<std::size_t> words = words_before_eos(tokens);
  const std::string verdict = !parsed ? "does not parse" : exact ? "exact" : "not exact";
  std::printf("%s\nreference: %s\n%s\n", caption_text(words).c_str(), caption_text(reference).c_str(), verdict.c_str());
  if (!g.png.empty()) {
    const GeneratedCaption shown{
        scene,     "scene 0 of seed " + std::to_string(g.image_seed),
        words,     word_attention(*loaded.model, image, words),
        reference, verdict,
        exact,     averaged_over(loaded.model->config),
    };
    render_generate(shown).save_png(g.png);
    std::printf("picture: %s\n", g.png.c_str());
  }
  return 0;
}

// The first `count` pictures of the training split of --seed `seed` with their captions.
int run_sample(std::size_t count, std::uint64_t seed, const std::string& png) {
  const std::vector<scenes::Scene> shown = make_split(count, seed);
  const std::string title = std::to_string(count) + " pictures of the training split of --seed " +
                            std::to_string(seed) + " and their reference captions";
  render_sample(shown, title).save_png(png);
  for (std::size_t i = 0; i < shown.size(); ++i)
    std::printf("%2zu  %s\n", i, caption_text(caption_words(shown[i])).c_str());
  std::printf("picture: %s\n", png.c_str());
  return 0;
}

CLI::App* add_train_command(CLI::App& app, TrainOptions& o, common::BaselineFlags& baseline) {
  CLI::App* cmd = app.add_subcommand("train", "train the model; writes DIR/metrics.jsonl and DIR/model.safetensors");
  common::add_run_flags(cmd, o, baseline, "pictures", "baseline: the decoder never sees the picture",
                        "baseline: the picture mean-pooled into every token, no cross-attention");
  common::add_count_flag(cmd, "--dim", o.model.dim, "model width", 1, ModelConfig::kMaxDim);
  common::add_count_flag(cmd, "--heads", o.model.heads, "attention heads (must divide --dim)", 1, ModelConfig::kMaxDim);
  common::add_count_flag(cmd, "--layers", o.model.layers, "decoder layers", 1, ModelConfig::kMaxLayers);
  common::add_count_flag(cmd, "--ff", o.model.ff, "decoder feed-forward width", 1, 4 * ModelConfig::kMaxDim);
  return cmd;
}

CLI::App* add_generate_command(CLI::App& app, GenerateOptions& g) {
  CLI::App* cmd = app.add_subcommand("generate", "the caption of one picture: greedy, beam search or sampled");
  cmd->add_option("--checkpoint", g.checkpoint, "run directory or its model.safetensors")->required();
  cmd->add_option("--image-seed", g.image_seed, "the picture: scene 0 of this seed")
      ->required()
      ->check(common::count_in(0, Limits::kMaxSeed));
  common::add_count_flag(cmd, "--beam", g.beam, "beam width (1: greedy)", 1, 1000);
  cmd->add_option("--temperature", g.temperature, "sample at this temperature instead (0: do not)");
  common::add_count_flag(cmd, "--sample-seed", g.sample_seed, "the sampler's seed", 0, UINT64_MAX);
  cmd->add_option("--png", g.png, "also draw the picture and each word's cross-attention to this PNG file");
  return cmd;
}

}  // namespace

int main(int argc, char** argv) {
  xtgrad::reuse_freed_memory();
  // Under mpirun (and only then: the launcher's environment says so) MPI starts here and
  // this process is one rank of a data-parallel run (docs/distributed.md).
  std::optional<common::DistributedRun> parallel;
  if (!common::start_ranks(parallel, argc, argv, kProgram)) return 2;
  const common::Ranks ranks = parallel->ranks();
  CLI::App app{"xtgrad-caption: a CNN and a Transformer decoder write captions of the toy pictures"};
  app.require_subcommand(1);
  TrainOptions options;
  options.progress_bar = isatty(STDOUT_FILENO) && !parallel->distributed();  // mpirun forwards lines
  common::BaselineFlags baseline;
  CLI::App* train_cmd = add_train_command(app, options, baseline);
  std::string checkpoint;
  CLI::App* eval_cmd = app.add_subcommand("eval", "greedy captions of a checkpoint's test split, scored");
  eval_cmd->add_option("--checkpoint", checkpoint, "run directory or its model.safetensors")->required();
  GenerateOptions g;
  CLI::App* generate_cmd = add_generate_command(app, g);
  std::size_t count = 16;
  std::uint64_t sample_seed = 0;
  std::string png;
  CLI::App* sample_cmd = app.add_subcommand("sample", "pictures of a training split and their captions, as a PNG");
  common::add_count_flag(sample_cmd, "--count", count, "pictures", 1, 256);
  common::add_count_flag(sample_cmd, "--seed", sample_seed, "the split's seed (as train's --seed)", 0,
                         Limits::kMaxSeed);
  sample_cmd->add_option("--png", png, "output picture")->required();

  return parallel->run_main(app, argc, argv, kProgram, [&] {
    if (train_cmd->parsed()) {
      options.model.image = baseline.image();
      return run_train(*train_cmd, options, *parallel);
    }
    if (!ranks.root()) return 0;  // eval, generate and sample: rank 0's work
    if (eval_cmd->parsed()) return run_eval(checkpoint);
    if (generate_cmd->parsed()) return run_generate(g);
    return run_sample(count, sample_seed, png);
  });
}
