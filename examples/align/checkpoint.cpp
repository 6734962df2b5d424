#include "checkpoint.hpp"

#include <filesystem>
#include <stdexcept>

#include "checkpoint_rules.hpp"

namespace align {

namespace fs = std::filesystem;

LoadedModel load_model(const std::string& checkpoint) {
  const std::string path = (fs::path(checkpoint_dir(checkpoint)) / kModelFile).string();
  xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);  // checks the format itself
  const auto format = file.metadata.find("format");
  if (format == file.metadata.end() || format->second != kModelFormat)
    throw xtgrad::CheckpointError(path + ": not an xtgrad-align model (metadata \"format\" is " +
                                  (format == file.metadata.end() ? "missing" : "\"" + format->second + "\"") + ")");
  LoadedModel loaded;
  loaded.step = common::metadata_count(path, file.metadata, "step", 0, UINT64_MAX);
  common::check_finite(path, file.tensors);
  try {
    loaded.config = ModelConfig::from_metadata(file.metadata);
    xtgrad::Generator unused(0);
    loaded.model = std::make_unique<AlignModel<float>>(loaded.config, unused);
    loaded.model->load_state_dict(file.tensors);  // strict: names and shapes, all or nothing
  } catch (const std::exception& e) {
    throw xtgrad::CheckpointError(path + ": " + e.what());
  }
  loaded.metadata = std::move(file.metadata);
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
