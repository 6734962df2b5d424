// Shared by the caption task's test files that run the built xtgrad-caption program.
#pragma once

#include <string>

#include "helpers.hpp"

namespace caption_test {

// Runs xtgrad-caption (XTGRAD_CAPTION_BIN, defined by the build) with arguments: its exit
// code, its output (stdout and stderr together) in `output` (helpers.hpp's run_program).
inline int run_caption(const std::string& args, std::string* output = nullptr) {
  return xtgrad::testing::run_program(XTGRAD_CAPTION_BIN, args, output);
}

inline bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace caption_test
