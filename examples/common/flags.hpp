// Command-line rules every example program shares (xtgrad-align, xtgrad-caption,
// xtgrad-vqa), so that each refuses bad input the same way:
//   exit 2  bad usage: an unknown flag, a value out of range, a clash with the run on disk;
//           the message names the flag and repeats the value the user typed
//   exit 1  a bad file (a corrupt or foreign checkpoint) or a failure while running
//   exit 0  success
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace common {

// Bad usage found after parsing (a setting that clashes with the stored run, a second
// writer): main turns it into exit code 2.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// A whole number from lo to hi written in decimal digits only: no sign, no spaces, no
// exponent, no overflow. Throws std::invalid_argument saying what was wrong with `text`.
// (std::stoull accepts "-1" and returns 2^64 - 1; this is the parser for every unsigned
// flag and metadata field instead.)
std::uint64_t parse_count(const std::string& text, std::uint64_t lo, std::uint64_t hi);

// Throws std::invalid_argument "<flag> <value> is out of range: <lo> to <hi>" unless
// lo <= value <= hi: the check of a setting that came from a flag or from a checkpoint.
void check_in_range(const char* flag, std::uint64_t value, std::uint64_t lo, std::uint64_t hi);

// On --resume a run's settings come from its checkpoint: a flag given again must agree.
// Throws UsageError "<flag> <given> differs from the checkpoint's <stored> ..." when `flag`
// was given on the command line `cmd` and its value differs from the stored one.
void check_agrees(const CLI::App& cmd, const char* flag, const std::string& given, const std::string& stored);

// A double with 17 significant digits: the text that reads back to the same value (for
// messages and checkpoint metadata).
std::string exact_text(double value);

// A CLI11 check for the same rule, run on the text before CLI11 converts it:
//   cmd->add_option("--steps", steps)->check(common::count_in(1, kMaxSteps));
CLI::Validator count_in(std::uint64_t lo, std::uint64_t hi);

// A whole-number flag checked by count_in(lo, hi), its default shown in the usage.
template <class T>
void add_count_flag(CLI::App* cmd, const char* flag, T& value, const std::string& help, std::uint64_t lo,
                    std::uint64_t hi) {
  cmd->add_option(flag, value, help)->capture_default_str()->check(count_in(lo, hi));
}

// The most threads a --threads flag accepts (the engine's own limit, from
// xtgrad::max_num_threads()).
CLI::Validator thread_count();

// What the program is doing now, for the message when memory runs out: a scope names its
// work ("generating 20000 training pairs") and the name is dropped when the scope ends.
class Doing {
 public:
  explicit Doing(std::string what);
  ~Doing();
  Doing(const Doing&) = delete;
  Doing& operator=(const Doing&) = delete;
  static std::string current();  // the innermost scope's name, or "running"

 private:
  std::string previous_;
};

// Parses argv into `app`, then runs `body`, mapping every way out to an exit code as the
// header says; messages go to stderr prefixed with the program's name.
int run_main(CLI::App& app, int argc, char** argv, const std::string& program, const std::function<int()>& body);

}  // namespace common
