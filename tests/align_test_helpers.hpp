// Shared by the toy task's test files (test_align.cpp, test_align_reliability.cpp): a
// temporary directory, running the built xtgrad-align program, reading a file whole.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace align_test {

// A fresh directory under the system's temporary directory, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name) {
    path = std::filesystem::temp_directory_path() /
           ("xtgrad-align-test-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& file) const { return (path / file).string(); }
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

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
