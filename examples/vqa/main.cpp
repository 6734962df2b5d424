// xtgrad-vqa: visual question answering on the toy pictures (docs/vqa-task.md).
//   xtgrad-vqa train [--steps N --batch N --lr X --weight-decay X --warmup N --dim N --heads N
//                     --fusion-layers N --text-layers N --ff N --text-encoder lstm|transformer
//                     --pool mean|last --seed N --train-size N --test-size N --eval-every N
//                     --threads N --out DIR --overwrite --blind | --no-attention]
//                    [--resume DIR [--steps N --stop-at N ...]]  continues a run, bit-identical
//   xtgrad-vqa eval  --checkpoint PATH
//   xtgrad-vqa ask   --checkpoint PATH --image-seed N --question "..." [--png FILE]
//   xtgrad-vqa sample [--count N --seed S] --png FILE
// Exit codes (examples/common/flags.hpp): 0 success, 2 bad flags or values (with a usage
// message; an unknown word or a question outside the grammar too), 1 a missing or bad
// checkpoint or a failure while running.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <optional>

#include "distributed_run.hpp"
#include "flags.hpp"
#include "render.hpp"
#include "run_dir.hpp"
#include "sample.hpp"
#include "train.hpp"

namespace {

using namespace vqa;
using common::UsageError;

int run_train(const CLI::App& cmd, TrainOptions options, const common::DistributedRun& parallel) {
  const TrainResult r = common::train_from_flags(cmd, options, kProgram, parallel, resumed_settings, validate,
                                                 [&](const TrainOptions& o) { return train(o, std::cout, &parallel); });
  if (!parallel.ranks().root()) return 0;
  std::printf("\ndone: step %zu, loss %.4f, test accuracy %.4f\n%s", r.step, r.last_loss, r.metrics.overall(),
              metrics_table(r.metrics).c_str());
  std::printf("time: %.1f s (median step %.2f ms, %.1f s evaluating and saving)\ncheckpoint: %s/%s\n", r.seconds,
              r.median_step_ms, r.eval_seconds, options.out_dir.c_str(), kModelFile);
  return 0;
}

int run_eval(const std::string& checkpoint) {
  LoadedModel loaded = load_model(checkpoint);
  const Metrics m = evaluate(*loaded.model, make_split(loaded.test_size, loaded.seed + 1));
  std::printf("step %zu, test split: %zu questions from seed %llu\n%s", loaded.step, m.count(),
              static_cast<unsigned long long>(loaded.seed + 1), metrics_table(m).c_str());
  return 0;
}

struct AskOptions {
  std::string checkpoint, question, png;  // png empty: no picture
  std::uint64_t image_seed = 0;
};

// The answer to a question about scene 0 of the split with seed image_seed.
int run_ask(const AskOptions& a) {
  Question question;
  try {
    question = parse_question(a.question);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--question: ") + e.what());
  }
  LoadedModel loaded = load_model(a.checkpoint);
  if (!a.png.empty() && loaded.model->config.image != "attention")
    throw UsageError("--png: this model has no cross-attention over the picture to show (trained with --" +
                     loaded.model->config.image + ")");
  const scenes::Scene scene = scenes::generate_scene(a.image_seed, 0);
  const xtgrad::NoGradGuard no_grad;
  loaded.model->eval();
  const auto logits =
      loaded.model->forward(vision::image_batch<float>({scene}), question_batch({question_words(question)}));
  const auto probs = xtgrad::softmax(logits, -1);
  const std::size_t best = xtgrad::argmax(logits, -1)(0);
  const std::optional<std::size_t> truth = answer_of(scene, question);
  std::string objects;  // what the picture holds, by (row, column)
  for (const scenes::Object& o : scene.objects)
    objects += std::string(objects.empty() ? "" : ", ") + kAnswers[o.colour] + " " +
               kAnswers[kFirstShapeAnswer + o.shape] + " (" + std::to_string(o.cell / scenes::kGrid) + ", " +
               std::to_string(o.cell % scenes::kGrid) + ")";
  std::printf("picture: scene 0 of seed %llu: %s\n", static_cast<unsigned long long>(a.image_seed), objects.c_str());
  std::printf("%s? %s (probability %.3f)\n", question_text(question).c_str(), kAnswers[best],
              double(probs.data()(0, best)));
  if (truth)
    std::printf("right answer: %s (%s)\n", kAnswers[*truth], *truth == best ? "right" : "wrong");
  else
    std::printf("this picture gives the question no unique answer (docs/vqa-task.md, the uniqueness rule)\n");
  if (!a.png.empty()) {
    const std::string name = "scene 0 of seed " + std::to_string(a.image_seed);
    render_ask(answer_with_attention(*loaded.model, scene, question, name)).save_png(a.png);
    std::printf("picture: %s\n", a.png.c_str());
  }
  return 0;
}

// The first `count` triples of the training split of --seed `seed`, drawn with their answers.
int run_sample(std::size_t count, std::uint64_t seed, const std::string& png) {
  const std::vector<Example> shown = make_split(count, seed);
  render_sample(shown, std::to_string(count) + " triples of the training split of --seed " + std::to_string(seed))
      .save_png(png);
  for (std::size_t i = 0; i < shown.size(); ++i)
    std::printf("%2zu  %s? %s\n", i, question_text(shown[i].question).c_str(), kAnswers[shown[i].answer]);
  std::printf("picture: %s\n", png.c_str());
  return 0;
}

void add_model_flags(CLI::App* cmd, ModelConfig& m) {
  common::add_count_flag(cmd, "--dim", m.dim, "model width", 1, ModelConfig::kMaxDim);
  common::add_count_flag(cmd, "--heads", m.heads, "attention heads (must divide --dim)", 1, ModelConfig::kMaxDim);
  common::add_count_flag(cmd, "--fusion-layers", m.fusion_layers, "layers attending to the picture", 1,
                         ModelConfig::kMaxLayers);
  common::add_count_flag(cmd, "--text-layers", m.text_layers, "TransformerEncoder layers (--text-encoder transformer)",
                         1, ModelConfig::kMaxLayers);
  common::add_count_flag(cmd, "--ff", m.ff, "feed-forward width of the Transformer layers", 1,
                         4 * ModelConfig::kMaxDim);
  cmd->add_option("--text-encoder", m.text_encoder, "the question's encoder")
      ->capture_default_str()
      ->check(CLI::IsMember({"lstm", "transformer"}));
  cmd->add_option("--pool", m.pool, "the fused question: the mean over its words or its last word")
      ->capture_default_str()
      ->check(CLI::IsMember({"mean", "last"}));
}

CLI::App* add_train_command(CLI::App& app, TrainOptions& o, common::BaselineFlags& baseline) {
  CLI::App* cmd = app.add_subcommand("train", "train the model; writes DIR/metrics.jsonl and DIR/model.safetensors");
  common::add_run_flags(cmd, o, baseline, "triples", "baseline: the question only, never the picture",
                        "baseline: the picture mean-pooled into every word, no cross-attention");
  add_model_flags(cmd, o.model);
  return cmd;
}

CLI::App* add_ask_command(CLI::App& app, AskOptions& a) {
  CLI::App* cmd = app.add_subcommand("ask", "answer a question about one picture, with its probability");
  cmd->add_option("--checkpoint", a.checkpoint, "run directory or its model.safetensors")->required();
  cmd->add_option("--image-seed", a.image_seed, "the picture: scene 0 of this seed")
      ->required()
      ->check(common::count_in(0, UINT64_MAX));
  cmd->add_option("--question", a.question, "a question of the grammar (docs/vqa-task.md)")->required();
  cmd->add_option("--png", a.png, "also draw the picture, the answer and the question's cross-attention to this PNG");
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
  CLI::App app{"xtgrad-vqa: a CNN, an LSTM and cross-attention answer questions about the toy pictures"};
  app.require_subcommand(1);
  TrainOptions options;
  options.progress_bar = isatty(STDOUT_FILENO) && !parallel->distributed();  // mpirun forwards lines
  common::BaselineFlags baseline;
  CLI::App* train_cmd = add_train_command(app, options, baseline);
  std::string checkpoint;
  CLI::App* eval_cmd = app.add_subcommand("eval", "accuracy per question type on a checkpoint's test split");
  eval_cmd->add_option("--checkpoint", checkpoint, "run directory or its model.safetensors")->required();
  AskOptions ask;
  add_ask_command(app, ask);

  std::size_t count = 16;
  std::uint64_t sample_seed = 0;
  std::string png;
  CLI::App* sample_cmd =
      app.add_subcommand("sample", "pictures of a training split with questions and answers, as a PNG");
  common::add_count_flag(sample_cmd, "--count", count, "triples", 1, 256);
  common::add_count_flag(sample_cmd, "--seed", sample_seed, "the split's seed (as train's --seed)", 0,
                         Limits::kMaxSeed);
  sample_cmd->add_option("--png", png, "output picture")->required();

  return parallel->run_main(app, argc, argv, kProgram, [&] {
    if (train_cmd->parsed()) {
      options.model.image = baseline.image();
      return run_train(*train_cmd, options, *parallel);
    }
    if (!ranks.root()) return 0;  // eval, ask and sample: rank 0's work
    if (eval_cmd->parsed()) return run_eval(checkpoint);
    if (sample_cmd->parsed()) return run_sample(count, sample_seed, png);
    return run_ask(ask);
  });
}
