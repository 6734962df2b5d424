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

using xtgrad::testing::read_file;
using xtgrad::testing::TempDir;

// Runs xtgrad-align (XTGRAD_ALIGN_BIN, defined by the build) with arguments through the
// shell; returns its exit code (-1 when it did not exit normally), its output (stdout and
// stderr together) in `output`.
inline int run_align(const std::string& args, std::string* output = nullptr) {
  const std::string log = (std::filesystem::temp_directory_path() /
                           ("xtgrad-align-out-" + std::to_string(::getpid())))
                              .string();
  const int status = std::system((std::string(XTGRAD_ALIGN_BIN) + " " + args + " > " + log + " 2>&1").c_str());
  if (output) *output = read_file(log);
  std::filesystem::remove(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace align_test
