#include "flags.hpp"

#include <iomanip>
#include <iostream>
#include <new>
#include <sstream>

#include "xtgrad/ops.hpp"

namespace common {

std::uint64_t parse_count(const std::string& text, std::uint64_t lo, std::uint64_t hi) {
  const std::string range = "a whole number from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (text.empty()) throw std::invalid_argument("an empty value is not " + range);
  std::uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') throw std::invalid_argument("\"" + text + "\" is not " + range);
    const std::uint64_t digit = std::uint64_t(c - '0');
    if (value > (UINT64_MAX - digit) / 10) throw std::invalid_argument(text + " is out of range: " + range);
    value = value * 10 + digit;
  }
  if (value < lo || value > hi) throw std::invalid_argument(text + " is out of range: " + range);
  return value;
}

void check_in_range(const char* flag, std::uint64_t value, std::uint64_t lo, std::uint64_t hi) {
  if (value < lo || value > hi)
    throw std::invalid_argument(std::string(flag) + " " + std::to_string(value) +
                                " is out of range: " + std::to_string(lo) + " to " + std::to_string(hi));
}

void check_agrees(const CLI::App& cmd, const char* flag, const std::string& given, const std::string& stored) {
  if (cmd.count(flag) && given != stored)
    throw UsageError(std::string(flag) + " " + given + " differs from the checkpoint's " + stored +
                     " (a resumed run keeps its settings)");
}

std::string exact_text(double value) {
  std::ostringstream out;
  out << std::setprecision(17) << value;
  return out.str();
}

CLI::Validator count_in(std::uint64_t lo, std::uint64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        try {
          parse_count(text, lo, hi);
          return {};
        } catch (const std::invalid_argument& e) {
          return e.what();
        }
      },
      std::to_string(lo) + ".." + std::to_string(hi));
}

CLI::Validator thread_count() {
  const int most = xtgrad::max_num_threads();
  CLI::Validator check = count_in(1, std::uint64_t(most));
  return check.description("1.." + std::to_string(most) + " (4 x this machine's cores)");
}

namespace {
thread_local std::string doing = "running";
}

Doing::Doing(std::string what) : previous_(std::move(doing)) { doing = std::move(what); }
Doing::~Doing() { doing = std::move(previous_); }
std::string Doing::current() { return doing; }

int run_main(CLI::App& app, int argc, char** argv, const std::string& program, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << program << ": " << e.what() << "\n\n" << app.help();
    return 2;
  }
  try {
    return body();
  } catch (const UsageError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << program << ": out of memory while " << Doing::current() << "\n";
    return 1;
  } catch (const std::exception& e) {  // bad checkpoints and failures while running
    std::cerr << program << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace common
