// Shared by the VQA task's test files that run the built xtgrad-vqa program.
#pragma once

#include <string>

#include "helpers.hpp"

namespace vqa_test {

// Runs xtgrad-vqa (XTGRAD_VQA_BIN, defined by the build) with arguments: its exit code, its
// output (stdout and stderr together) in `output` (helpers.hpp's run_program).
inline int run_vqa(const std::string& args, std::string* output = nullptr) {
  return xtgrad::testing::run_program(XTGRAD_VQA_BIN, args, output);
}

inline bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace vqa_test
