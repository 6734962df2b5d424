// The one-core float FMA peak the benchmark cases are compared with (peak.cpp).
#pragma once

struct PeakResult {
  double gflops;    // 0 when the CPU has neither AVX2+FMA nor AVX-512
  const char* isa;  // "avx512", "avx2" or "none"
};

PeakResult fma_peak();  // about 0.2 s
