// xtgrad-bench: one JSON object per line, {"case": ..., "ms": <median>, "gflops": ...}.
//   xtgrad-bench [--case NAME] [--threads N] [--repeats N]
// Each case runs a warm-up, then `repeats` timed runs; ms is their median. Reference
// cases (names starting with "ref_") time the raw library call the engine builds on, so
// ratios are measured side by side in one run.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "xtgrad/xtgrad.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Measurement {
  double ms;                     // median over repeats
  std::optional<double> gflops;  // when the case has a FLOP count
};

struct Case {
  std::string name;
  std::string description;
  std::function<Measurement(int repeats)> run;
};

// Median wall time of fn in milliseconds, after a warm-up of a few calls.
double median_ms(const std::function<void()>& fn, int repeats) {
  for (int i = 0; i < std::max(2, repeats / 10); ++i) fn();
  std::vector<double> times;
  times.reserve(repeats);
  for (int i = 0; i < repeats; ++i) {
    const auto start = Clock::now();
    fn();
    times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

Measurement with_flops(double ms, double flops) { return {ms, flops / (ms * 1e6)}; }

// (n,n) x (n,n) through the engine's matmul op, forward only.
Measurement matmul_case(std::size_t n, int repeats) {
  xtgrad::Generator gen(0);
  const auto a = xtgrad::randn<float>({n, n}, gen);
  const auto b = xtgrad::randn<float>({n, n}, gen);
  const double ms = median_ms([&] { xtgrad::matmul(a, b); }, repeats);
  return with_flops(ms, 2.0 * n * n * n);
}

// The same product as one raw cblas_sgemm into a preallocated buffer.
Measurement sgemm_case(std::size_t n, int repeats) {
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  const int ni = static_cast<int>(n);
  const double ms = median_ms(
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.f, a.data(), ni,
                    b.data(), ni, 0.f, c.data(), ni);
      },
      repeats);
  return with_flops(ms, 2.0 * n * n * n);
}

std::vector<Case> all_cases() {
  return {
      {"matmul_256", "float (256,256) x (256,256) through xtgrad::matmul, forward",
       [](int r) { return matmul_case(256, r); }},
      {"ref_sgemm_256", "raw cblas_sgemm of the same size, preallocated output",
       [](int r) { return sgemm_case(256, r); }},
  };
}

[[noreturn]] void usage(const std::string& error) {
  std::cerr << "xtgrad-bench: " << error << "\n"
            << "usage: xtgrad-bench [--case NAME] [--threads N] [--repeats N]\n"
            << "cases:\n";
  for (const auto& c : all_cases()) std::cerr << "  " << c.name << "  " << c.description << "\n";
  std::exit(2);
}

int parse_positive(const std::string& flag, const std::string& value) {
  try {
    std::size_t used = 0;
    const int v = std::stoi(value, &used);
    if (used == value.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  usage(flag + " needs a positive integer, got '" + value + "'");
}

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  int threads = 1, repeats = 50;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") usage("help");
    if (i + 1 >= argc) usage("unknown flag or missing value: " + arg);
    const std::string value = argv[++i];
    if (arg == "--case") only = value;
    else if (arg == "--threads") threads = parse_positive(arg, value);
    else if (arg == "--repeats") repeats = parse_positive(arg, value);
    else usage("unknown flag: " + arg);
  }
  xtgrad::set_num_threads(threads);

  const auto cases = all_cases();
  if (!only.empty() && std::none_of(cases.begin(), cases.end(), [&](const Case& c) { return c.name == only; }))
    usage("unknown case: " + only);
  for (const auto& c : cases) {
    if (!only.empty() && c.name != only) continue;
    const Measurement m = c.run(repeats);
    std::printf("{\"case\": \"%s\", \"ms\": %.4f", c.name.c_str(), m.ms);
    if (m.gflops) std::printf(", \"gflops\": %.2f", *m.gflops);
    std::printf(", \"threads\": %d, \"repeats\": %d}\n", threads, repeats);
    std::fflush(stdout);
  }
  return 0;
}
