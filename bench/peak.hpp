// The one-core float FMA peak the benchmark cases are compared with (peak.cpp).
#pragma once

#include <string>

struct PeakResult {
  double gflops;    // 0 when the CPU has neither AVX2+FMA nor AVX-512
  const char* isa;  // "avx512", "avx2" or "none"
};

// The float FMA peak of `threads` threads running at once, in GFLOP/s summed over them
// (about 0.2 s). Two threads on two cores give about twice one thread's figure; on two
// hyperthreads of one core about the same, since they share its FMA units.
PeakResult fma_peak(int threads = 1);

// The logical CPUs that share CPU 0's core, as Linux lists them ("0-1" or "0,1" for two
// hyperthreads; "0" when CPU 0 has its core to itself; "" where Linux does not say).
std::string cpu0_core_siblings();
