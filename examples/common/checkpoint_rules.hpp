// Rules for reading an example's checkpoint, shared by every example: metadata fields are
// parsed strictly (a message names the file, the key and the value), and no parameter that
// is NaN or infinite is ever loaded. Each throws xtgrad::CheckpointError (exit 1).
#pragma once

#include <cstdint>
#include <string>

#include "xtgrad/safetensors.hpp"

namespace common {

// metadata[key] as a whole number from lo to hi (parse_count's rule).
std::uint64_t metadata_count(const std::string& file, const xtgrad::Metadata& metadata, const std::string& key,
                             std::uint64_t lo, std::uint64_t hi);

// metadata[key] as a finite decimal number, all of the text consumed.
double metadata_number(const std::string& file, const xtgrad::Metadata& metadata, const std::string& key);

// metadata[key], which must be present.
const std::string& metadata_text(const std::string& file, const xtgrad::Metadata& metadata, const std::string& key);

// A model configuration's entries, for each example's ModelConfig::from_metadata: the text
// of `key`, or a whole number from 1 to hi. std::invalid_argument "model configuration
// lacks 'key'" or "... has a bad 'key': why" (load_model_strictly adds the file's name).
const std::string& config_text(const xtgrad::Metadata& metadata, const char* key);
std::size_t config_count(const xtgrad::Metadata& metadata, const char* key, std::size_t hi);

// Refuses the first tensor holding a NaN or an infinity, naming it and the element.
void check_finite(const std::string& file, const xtgrad::StateDict<float>& tensors);

}  // namespace common
