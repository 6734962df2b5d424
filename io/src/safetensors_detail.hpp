// What the safetensors reader (safetensors.cpp) and writer (safetensors_write.cpp) share;
// not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <system_error>

#include <nlohmann/json.hpp>

#include "xtgrad/safetensors.hpp"

namespace xtgrad::safetensors_detail {

using json = nlohmann::json;

// Values are stored little-endian and we copy them with memcpy: right on x86_64 and
// aarch64. A big-endian port would byte-swap in save_safetensors / read_tensor.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the safetensors reader and writer copy little-endian data as is: add byte swapping");
static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4, "F32 is IEEE binary32");
static_assert(std::numeric_limits<double>::is_iec559 && sizeof(double) == 8, "F64 is IEEE binary64");
// Offsets and sizes are u64 in the format; we index memory with them.
static_assert(sizeof(std::size_t) >= sizeof(std::uint64_t), "xtgrad's checkpoints need a 64-bit size_t");
// Array<T> can only hold row-major storage (custom strides need a dynamic layout), which
// is safetensors' C order: data() is the tensor's bytes as the file wants them.
static_assert(Array<float>::static_layout == xt::layout_type::row_major &&
              Array<double>::static_layout == xt::layout_type::row_major);

inline constexpr const char* kMetadataKey = "__metadata__";

// Builds the CheckpointError messages: "load_safetensors: 'dir/model.safetensors': ...".
struct Failer {
  const char* function;
  const std::string& path;
  [[noreturn]] void operator()(const std::string& problem) const {
    throw CheckpointError(std::string(function) + ": '" + path + "': " + problem);
  }
};

// The system's text for an errno value.
inline std::string errno_text(int err) { return std::system_category().message(err); }

}  // namespace xtgrad::safetensors_detail
