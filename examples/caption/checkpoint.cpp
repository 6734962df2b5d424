// The caption task's checkpoint (declared in train.hpp): the model file with the run's
// settings in its metadata, read strictly for eval, generate and resume. The train state
// beside it is examples/common/train_state.hpp's.
#include <filesystem>
#include <stdexcept>

#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "train.hpp"

namespace caption {

namespace fs = std::filesystem;

namespace {

xtgrad::Metadata settings_metadata(const TrainOptions& o, std::size_t step) {
  xtgrad::Metadata m = o.model.to_metadata();
  m.insert({{"format", kModelFormat},
            {"step", std::to_string(step)},
            {"batch", std::to_string(o.batch)},
            {"lr", common::exact_text(o.lr)},
            {"weight_decay", common::exact_text(o.weight_decay)},
            {"seed", std::to_string(o.seed)},
            {"train_size", std::to_string(o.train_size)},
            {"test_size", std::to_string(o.test_size)},
            {"steps", std::to_string(o.steps)},
            {"warmup", std::to_string(o.warmup_steps())},
            {"eval_every", std::to_string(o.eval_every)},
            {"threads", std::to_string(o.threads)},
            {"run_id", o.run_id}});
  return m;
}

// Every stored setting of a model file's metadata, parsed strictly; the per-invocation
// fields are left as in `base`.
TrainOptions stored_settings(const std::string& file, const xtgrad::Metadata& m, TrainOptions base) {
  using common::metadata_count;
  base.batch = metadata_count(file, m, "batch", 1, Limits::kMaxBatch);
  base.lr = common::metadata_number(file, m, "lr");
  base.weight_decay = common::metadata_number(file, m, "weight_decay");
  base.seed = metadata_count(file, m, "seed", 0, Limits::kMaxSeed);
  base.train_size = metadata_count(file, m, "train_size", base.batch, Limits::kMaxTrainSize);
  base.test_size = metadata_count(file, m, "test_size", 1, Limits::kMaxTestSize);
  base.steps = metadata_count(file, m, "steps", 1, Limits::kMaxSteps);
  base.warmup = metadata_count(file, m, "warmup", 1, base.steps);  // stored resolved
  base.eval_every = metadata_count(file, m, "eval_every", 1, Limits::kMaxSteps);
  base.threads = int(metadata_count(file, m, "threads", 1, 1u << 20));
  base.run_id = common::metadata_text(file, m, "run_id");
  return base;
}

}  // namespace

void save_model(const std::string& dir, const CaptionModel<float>& model, std::size_t step, const TrainOptions& o) {
  xtgrad::save_safetensors<float>((fs::path(dir) / kModelFile).string(), model.state_dict(),
                                  settings_metadata(o, step));
}

LoadedModel load_model(const std::string& checkpoint) {
  const std::string file = (fs::path(common::checkpoint_dir(checkpoint)) / kModelFile).string();
  xtgrad::Safetensors<float> loaded_file = xtgrad::load_safetensors<float>(file);  // checks the format itself
  const xtgrad::Metadata& meta = loaded_file.metadata;
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kModelFormat)
    throw xtgrad::CheckpointError(file + ": not an xtgrad-caption model (metadata \"format\" is " +
                                  (format == meta.end() ? "missing" : "\"" + format->second + "\"") + ")");
  LoadedModel loaded;
  loaded.step = common::metadata_count(file, meta, "step", 0, Limits::kMaxSteps);
  loaded.seed = common::metadata_count(file, meta, "seed", 0, Limits::kMaxSeed);
  loaded.test_size = common::metadata_count(file, meta, "test_size", 1, Limits::kMaxTestSize);
  common::check_finite(file, loaded_file.tensors);
  try {
    xtgrad::Generator unused(0);
    loaded.model = std::make_unique<CaptionModel<float>>(ModelConfig::from_metadata(meta), unused);
    loaded.model->load_state_dict(loaded_file.tensors);  // strict: names and shapes, all or nothing
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError(file + ": " + e.what());
  }
  loaded.metadata = meta;
  return loaded;
}

StoredRun stored_run(const std::string& dir, TrainOptions base) {
  const LoadedModel loaded = load_model(dir);  // the model file holds the run's settings
  const std::string file = (fs::path(common::checkpoint_dir(dir)) / kModelFile).string();
  base = stored_settings(file, loaded.metadata, base);
  base.model = loaded.model->config;
  return {base, loaded.step};
}

}  // namespace caption
