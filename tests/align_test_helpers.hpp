// Shared by the toy task's test files (test_align.cpp, test_align_reliability.cpp): running
// the built xtgrad-align program; helpers.hpp's TempDir and read_file.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "helpers.hpp"

namespace align_test {

using xtgrad::testing::file_text;
using xtgrad::testing::read_file;
using xtgrad::testing::TempDir;

// Runs xtgrad-align (XTGRAD_ALIGN_BIN, defined by the build): helpers.hpp's run_program.
inline int run_align(const std::string& args, std::string* output = nullptr) {
  return xtgrad::testing::run_program(XTGRAD_ALIGN_BIN, args, output);
}

// The bytes of a run's file with the run's identity (the 16 hex digits of its "run_id"
// metadata) blanked: two runs of the same settings write the same bytes but for it.
inline std::string without_run_id(std::string bytes) {
  const std::string key = "\"run_id\":\"";
  const auto at = bytes.find(key);
  if (at != std::string::npos) bytes.replace(at + key.size(), 16, std::string(16, '-'));
  return bytes;
}

// Two files of runs hold the same bytes but for their run identities.
inline bool same_but_run_id(const std::string& a, const std::string& b) {
  return without_run_id(read_file(a)) == without_run_id(read_file(b));
}

}  // namespace align_test
