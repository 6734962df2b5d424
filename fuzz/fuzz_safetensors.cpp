// libFuzzer target: the safetensors reader (io/src/safetensors.cpp) on arbitrary bytes.
//
// Built and run by `make fuzz` (fuzz/CMakeLists.txt: clang with
// -fsanitize=fuzzer,address,undefined). Besides the sanitizers' findings (out-of-bounds,
// use-after-free, leaks, undefined behaviour), libFuzzer's -malloc_limit_mb/-rss_limit_mb
// and -timeout turn a huge allocation or a hang into a crash. On top, the reader's
// contract is checked here, and any breach aborts:
//   - it either returns or throws CheckpointError: any other exception is a bug;
//   - <float> and <double> agree: the same bytes are accepted or refused by both, with
//     the same message, the same names, shapes and metadata, and values that match after
//     rounding (the file's F32/F64 converted to the caller's type).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "xtgrad/safetensors.hpp"

namespace {

[[noreturn]] void contract_broken(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors: contract broken: %s\n", what);
  std::abort();
}

// The result, or the CheckpointError's message; any other exception escapes to libFuzzer,
// which reports it as a crash (std::terminate).
template <class T> std::optional<xtgrad::Safetensors<T>> load(std::string_view bytes, std::string& error) {
  try {
    return xtgrad::load_safetensors_from_memory<T>(bytes, "fuzz-input");
  } catch (const xtgrad::CheckpointError& e) {
    error = e.what();
    return std::nullopt;
  }
}

// f (from <float>) and d (from <double>) hold the same stored value: either the file had
// an F32 and both are exact (d widened from it), or an F64 and f is d rounded to float.
bool same_value(float f, double d) {
  if (std::isnan(f) || std::isnan(d)) return std::isnan(f) && std::isnan(d);
  return f == static_cast<float>(d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A view of libFuzzer's buffer, no copy: ASan catches a read even one byte past its end.
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::string float_error, double_error;
  const auto as_float = load<float>(bytes, float_error);
  const auto as_double = load<double>(bytes, double_error);

  if (as_float.has_value() != as_double.has_value()) contract_broken("float and double disagree on accepting");
  if (!as_float) {
    if (float_error != double_error) contract_broken("float and double refuse with different messages");
    return 0;
  }
  if (as_float->metadata != as_double->metadata) contract_broken("metadata differ");
  if (as_float->tensors.size() != as_double->tensors.size()) contract_broken("tensor counts differ");
  auto d = as_double->tensors.begin();
  for (auto f = as_float->tensors.begin(); f != as_float->tensors.end(); ++f, ++d) {
    const auto& f_array = f->second;
    const auto& d_array = d->second;
    if (f->first != d->first) contract_broken("tensor names differ");
    if (f_array.shape() != d_array.shape() || f_array.size() != d_array.size()) contract_broken("shapes differ");
    for (std::size_t i = 0; i < f_array.size(); ++i)
      if (!same_value(f_array.data()[i], d_array.data()[i])) contract_broken("values differ");
  }
  return 0;
}
