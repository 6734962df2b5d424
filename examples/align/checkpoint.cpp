#include "checkpoint.hpp"

#include <filesystem>
#include <stdexcept>

#include "checkpoint_rules.hpp"
#include "train.hpp"
#include "train_state.hpp"

namespace align {

namespace fs = std::filesystem;

LoadedModel load_model(const std::string& checkpoint) {
  common::ModelFile file = common::read_model_file(checkpoint, kModelFormat, "xtgrad-align");
  LoadedModel loaded;
  loaded.step = common::metadata_count(file.path, file.contents.metadata, "step", 0, UINT64_MAX);
  loaded.model = common::load_model_strictly(file, [&] {
    loaded.config = ModelConfig::from_metadata(file.contents.metadata);
    xtgrad::Generator unused(0);
    return std::make_unique<AlignModel<float>>(loaded.config, unused);
  });
  loaded.metadata = std::move(file.contents.metadata);
  return loaded;
}

void save_model(const std::string& dir, const AlignModel<float>& model, std::size_t step, xtgrad::Metadata extra) {
  xtgrad::Metadata metadata = model.config.to_metadata();
  metadata["format"] = kModelFormat;
  metadata["step"] = std::to_string(step);
  metadata.insert(extra.begin(), extra.end());
  xtgrad::save_safetensors<float>((fs::path(dir) / kModelFile).string(), model.state_dict(), metadata);
}

// The run settings a model file stores (train.hpp).
TrainOptions settings_from_metadata(const std::string& file, const xtgrad::Metadata& m, TrainOptions base,
                                    bool for_resume) {
  using common::metadata_count;
  base.seed = metadata_count(file, m, "seed", 0, Limits::kMaxSeed);
  base.test_size = metadata_count(file, m, "test_size", kBlock, Limits::kMaxTestSize);
  if (base.test_size % kBlock != 0)
    throw xtgrad::CheckpointError(file + ": metadata 'test_size' = \"" + m.at("test_size") +
                                  "\" is not a multiple of 100");
  if (!for_resume) return base;
  base.batch = metadata_count(file, m, "batch", 2, Limits::kMaxBatch);
  base.lr = common::metadata_number(file, m, "lr");
  base.optimizer = common::metadata_text(file, m, "optimizer");
  base.train_size = metadata_count(file, m, "train_size", base.batch, Limits::kMaxTrainSize);
  base.eval_every = metadata_count(file, m, "eval_every", 1, Limits::kMaxSteps);
  base.threads = int(metadata_count(file, m, "threads", 1, 1u << 20));
  base.run_id = common::metadata_text(file, m, "run_id");
  base.world_size = m.count("world_size") ? metadata_count(file, m, "world_size", 2, 1u << 20) : 1;
  return base;
}

StoredRun stored_run(const std::string& dir, TrainOptions base) {
  const LoadedModel loaded = load_model(dir);  // the model file holds the run's settings
  const std::string file = (fs::path(checkpoint_dir(dir)) / kModelFile).string();
  base = settings_from_metadata(file, loaded.metadata, base, /*for_resume=*/true);
  base.model = loaded.config;
  return {base, loaded.step};
}

}  // namespace align
