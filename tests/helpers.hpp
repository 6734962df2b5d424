// Shared by the test files: inputs, value checks, a gradcheck assertion, error-message
// checks, a temporary directory and whole-file reads.
#pragma once

#include <doctest/doctest.h>

#include <stdlib.h>  // mkdtemp
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "xtgrad/xtgrad.hpp"

namespace xtgrad::testing {

using D = Tensor<double>;

// A tensor of N(0, 1) values (or U(low, high)) that requires a gradient; double unless
// asked otherwise.
template <class T = double> Tensor<T> input(const Shape& shape, std::uint64_t seed) {
  Generator gen(seed);
  return randn<T>(shape, gen, T(0), T(1), true);
}
inline D input_uniform(const Shape& shape, double low, double high, std::uint64_t seed) {
  Generator gen(seed);
  return rand<double>(shape, gen, low, high, true);
}

// Runs gradcheck and fails the test with its message; returns the largest error seen.
inline double check_grad(const GradcheckFn& fn, const std::vector<D>& inputs, const GradcheckOptions& options = {}) {
  const GradcheckResult result = gradcheck(fn, inputs, options);
  CHECK_MESSAGE(result.ok, result.message);
  CHECK(result.checked > 0);
  return result.max_abs_error;
}

using Fn = GradcheckFn;
using In = std::vector<D>;

// A tensor with the given shape and row-major values.
template <class T = double>
Tensor<T> make(const Shape& shape, const std::vector<T>& values, bool requires_grad = false) {
  Array<T> a(shape);
  REQUIRE(a.size() == values.size());
  std::copy(values.begin(), values.end(), a.begin());
  return Tensor<T>(std::move(a), requires_grad);
}

// 1, 2, ..., n in the given shape.
template <class T = double> Tensor<T> iota(const Shape& shape, bool requires_grad = false) {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  std::vector<T> v(n);
  std::iota(v.begin(), v.end(), T(1));
  return make<T>(shape, v, requires_grad);
}

// Checks shape and every value (relative tolerance eps; infinities must match exactly).
template <class T>
void check_values(const Tensor<T>& t, const Shape& shape, const std::vector<double>& expected, double eps = 1e-12) {
  REQUIRE(t.shape() == shape);
  REQUIRE(t.numel() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double value = double(t.data().data()[i]);
    if (std::isinf(expected[i]))
      CHECK_MESSAGE(value == expected[i], "element " << i);  // Approx cannot compare infinities
    else
      CHECK_MESSAGE(value == doctest::Approx(expected[i]).epsilon(eps), "element " << i);
  }
}
template <class T>
void check_array(const Array<T>& a, const Shape& shape, const std::vector<double>& expected, double eps = 1e-12) {
  check_values(Tensor<T>(a), shape, expected, eps);
}

// check_grad, printing the largest error per op family when XTGRAD_GRADCHECK_REPORT is set.
inline double grad(const char* family, const Fn& fn, const In& inputs) {
  const double err = check_grad(fn, inputs);
  if (std::getenv("XTGRAD_GRADCHECK_REPORT")) std::cerr << "gradcheck-error " << family << ' ' << err << '\n';
  return err;
}

// Asserts that f throws Error (std::invalid_argument unless given) whose message contains
// every fragment.
template <class Error = std::invalid_argument, class F>
void check_throws_with(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    FAIL("expected an exception with '" << (fragments.empty() ? "" : fragments.front()) << "'");
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const auto& fragment : fragments)
      CHECK_MESSAGE(what.find(fragment) != std::string::npos, "'" << what << "' lacks '" << fragment << "'");
  }
}

// A fresh directory under the system's temporary directory (mkdtemp: concurrent runs never
// share one), removed with its contents at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& name = "test") {
    std::string pattern = (std::filesystem::temp_directory_path() / ("xtgrad-" + name + "-XXXXXX")).string();
    REQUIRE_MESSAGE(::mkdtemp(pattern.data()) != nullptr, "mkdtemp failed for " << pattern);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  // The names in the directory, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(path)) out.push_back(entry.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::filesystem::path path;
};

// A file's bytes, or a note that it cannot be opened: for an assertion's message, which
// must not assert itself (doctest builds a message while holding its reporter's lock, with
// -s for passing assertions too, and an assertion inside it deadlocks).
inline std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return "(cannot open " + path + ")";
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
// A file's bytes; fails the test when it cannot be opened.
inline std::string read_file(const std::string& path) {
  REQUIRE_MESSAGE(std::ifstream(path).good(), "cannot open " << path);
  return file_text(path);
}

// Runs a built program with arguments through the shell; returns its exit code (-1 when it
// did not exit normally) and its output (stdout and stderr together) in `output`.
inline int run_program(const std::string& program, const std::string& args, std::string* output = nullptr) {
  const std::string log =
      (std::filesystem::temp_directory_path() / ("xtgrad-program-out-" + std::to_string(::getpid()))).string();
  const int status = std::system((program + " " + args + " > " + log + " 2>&1").c_str());
  if (output) *output = read_file(log);
  std::filesystem::remove(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace xtgrad::testing
