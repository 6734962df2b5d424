#include "checkpoint.hpp"

#include <filesystem>
#include <stdexcept>

#include "checkpoint_rules.hpp"

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

}  // namespace align
