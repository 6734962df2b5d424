// The float multiply-add peak, measured: independent chains of FMAs on the widest
// vectors the CPU has, long enough that each chain's latency is hidden by the others
// (2 FMA units x 4 cycles of latency need 8 chains; we run 16 on AVX-512, 12 on AVX2,
// leaving registers for the operands).
#include "peak.hpp"

#include <chrono>
#include <fstream>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {
constexpr long kRounds = 20'000'000;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) float chains_avx512(long rounds) {
  constexpr int kChains = 16;
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(float(c));
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-6f);
  for (long r = 0; r < rounds; ++r)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], m, a);
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  float lanes[16];
  _mm512_storeu_ps(lanes, sum);
  return lanes[0] + lanes[15];  // used, so the loop stays
}

__attribute__((target("avx2,fma"))) float chains_avx2(long rounds) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(float(c));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-6f);
  for (long r = 0; r < rounds; ++r)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
  float lanes[8];
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  _mm256_storeu_ps(lanes, sum);
  return lanes[0] + lanes[7];
}
#endif

template <class Fn> double gflops(Fn chains, double flops_per_round, int threads) {
  const auto run = [&](long rounds) {
    std::vector<std::thread> others;
    for (int t = 1; t < threads; ++t)
      others.emplace_back([&] {
        volatile float sink = chains(rounds);
        (void)sink;
      });
    volatile float sink = chains(rounds);
    (void)sink;
    for (auto& t : others) t.join();
  };
  run(kRounds / 20);  // warm up: the clock and the vector units
  const auto start = std::chrono::steady_clock::now();
  run(kRounds);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return threads * flops_per_round * double(kRounds) / seconds / 1e9;
}
}  // namespace

PeakResult fma_peak(int threads) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {gflops(chains_avx512, 16 * 16 * 2, threads), "avx512"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {gflops(chains_avx2, 12 * 8 * 2, threads), "avx2"};
#endif
  (void)threads;
  return {0.0, "none"};
}

std::string cpu0_core_siblings() {
  std::ifstream in("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list");
  std::string list;
  std::getline(in, list);
  return list;
}
