#include "checkpoint_rules.hpp"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "flags.hpp"

namespace common {

const std::string& metadata_text(const std::string& file, const xtgrad::Metadata& metadata, const std::string& key) {
  const auto found = metadata.find(key);
  if (found == metadata.end()) throw xtgrad::CheckpointError(file + ": metadata lacks '" + key + "'");
  return found->second;
}

std::uint64_t metadata_count(const std::string& file, const xtgrad::Metadata& metadata, const std::string& key,
                             std::uint64_t lo, std::uint64_t hi) {
  const std::string& text = metadata_text(file, metadata, key);
  try {
    return parse_count(text, lo, hi);
  } catch (const std::invalid_argument& e) {
    throw xtgrad::CheckpointError(file + ": metadata '" + key + "' = \"" + text + "\": " + e.what());
  }
}

double metadata_number(const std::string& file, const xtgrad::Metadata& metadata, const std::string& key) {
  const std::string& text = metadata_text(file, metadata, key);
  char* end = nullptr;
  const double value = text.empty() ? NAN : std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value) ||
      std::isspace((unsigned char)text[0]))
    throw xtgrad::CheckpointError(file + ": metadata '" + key + "' = \"" + text + "\" is not a finite number");
  return value;
}

void check_finite(const std::string& file, const xtgrad::StateDict<float>& tensors) {
  for (const auto& [name, values] : tensors) {
    const float* data = values.data();
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (std::isfinite(data[i])) continue;
      std::ostringstream message;
      message << file << ": tensor '" << name << "' holds " << data[i] << " at element " << i
              << " (flat index); a checkpoint with a non-finite parameter is refused";
      throw xtgrad::CheckpointError(message.str());
    }
  }
}

const std::string& config_text(const xtgrad::Metadata& metadata, const char* key) {
  const auto found = metadata.find(key);
  if (found == metadata.end()) throw std::invalid_argument(std::string("model configuration lacks '") + key + "'");
  return found->second;
}

std::size_t config_count(const xtgrad::Metadata& metadata, const char* key, std::size_t hi) {
  const std::string& text = config_text(metadata, key);
  try {
    return std::size_t(parse_count(text, 1, hi));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("model configuration has a bad '") + key + "': " + e.what());
  }
}

}  // namespace common
