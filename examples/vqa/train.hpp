// Training the VQA task: batches of (picture, question, answer), AdamW with the shared
// warm-up and cosine schedule (examples/common/training.hpp), an evaluation on the test
// split every eval_every steps (a line appended to DIR/metrics.jsonl) and an atomic
// checkpoint DIR/model.safetensors holding the model and, in its metadata, the model's
// configuration and the run's settings.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "metrics.hpp"
#include "model.hpp"
#include "xtgrad/safetensors.hpp"

namespace vqa {

struct Limits {
  static constexpr std::uint64_t kMaxSteps = 1'000'000'000;
  static constexpr std::uint64_t kMaxBatch = 100'000;
  static constexpr std::uint64_t kMaxTrainSize = std::uint64_t(1) << 24;
  static constexpr std::uint64_t kMaxTestSize = 1'000'000;
  static constexpr std::uint64_t kMaxSeed = UINT64_MAX - 1;  // the test split's seed is seed + 1
};

struct TrainOptions {
  // Stored in the checkpoint's metadata.
  std::size_t batch = 32;
  double lr = 2e-3;
  double weight_decay = 0.01;
  std::uint64_t seed = 0;
  std::size_t train_size = 50000;
  std::size_t test_size = 2000;
  std::size_t steps = 16000;
  std::size_t warmup = 0;  // 0: 5% of the steps
  std::size_t eval_every = 2000;
  int threads = 1;
  ModelConfig model;
  // Per invocation.
  std::string out_dir = "runs/vqa";
  bool overwrite = false;
  bool progress_bar = false;
  std::size_t warmup_steps() const { return warmup ? warmup : std::max<std::size_t>(1, steps / 20); }
};

struct TrainResult {
  std::size_t step = 0;
  double last_loss = 0;  // mean training loss since the previous evaluation
  Metrics metrics;
  double seconds = 0, median_step_ms = 0, eval_seconds = 0;
};

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kModelFormat = "xtgrad-vqa-model/1";

// Values in range and an output directory that takes files: std::invalid_argument otherwise.
void validate(const TrainOptions& options);

// A batch of examples: the pictures (B,3,32,32), the questions and the right answers.
template <class T> struct Batch {
  xtgrad::Tensor<T> images;
  QuestionBatch questions;
  std::vector<std::size_t> answers;
};
template <class T> Batch<T> make_batch(const std::vector<Example>& data, const std::vector<std::size_t>& indices);

// The model's answers (argmax) to every example, in eval mode (and back), without gradients.
std::vector<std::size_t> predict(VqaModel<float>& model, const std::vector<Example>& examples);
Metrics evaluate(VqaModel<float>& model, const std::vector<Example>& test);

// Trains from scratch, appending to DIR/metrics.jsonl and checkpointing at every
// evaluation; progress goes to log. std::runtime_error when the loss stops being finite.
TrainResult train(const TrainOptions& options, std::ostream& log);

struct LoadedModel {
  std::unique_ptr<VqaModel<float>> model;
  std::size_t step = 0;
  std::uint64_t seed = 0;
  std::size_t test_size = 0;
  xtgrad::Metadata metadata;
};
// The run directory or its model.safetensors; xtgrad::CheckpointError (exit 1) naming the
// file and the problem: missing, corrupt, foreign, bad metadata, non-finite or misshapen.
LoadedModel load_model(const std::string& checkpoint);
// Writes DIR/model.safetensors atomically (a temporary file and a rename).
void save_model(const std::string& dir, const VqaModel<float>& model, std::size_t step, const TrainOptions& options,
                const std::string& run_id);

}  // namespace vqa
