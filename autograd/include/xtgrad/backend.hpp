// What runs the products: the CPU, the BLAS library and the kernels it picked.
//
// Debian 12's OpenBLAS (0.3.21) picks its kernels once, in its library constructor, from
// the CPU's model number. On a model it does not know (Intel's Emerald Rapids, for one) it
// falls back to "Prescott", generic SSE3 kernels 4-8x slower than the AVX2 / AVX-512 ones
// the CPU can run. xtgrad checks this before main: when OpenBLAS picked a generic core on
// a CPU with AVX2 or AVX-512 and OPENBLAS_CORETYPE is unset, it sets OPENBLAS_CORETYPE to
// the CPU's best core and starts the program again (execv of /proc/self/exe, same
// arguments), once. A setting of OPENBLAS_CORETYPE by the user always wins. If the restart
// fails, one warning on stderr names the cause and the fix.
#pragma once

#include <string>

namespace xtgrad {

// The instruction sets that decide which OpenBLAS kernels a CPU can run.
struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 and FMA3, usable (the OS saves the registers)
  bool avx512 = false;    // AVX-512 F, BW, VL and DQ: SkylakeX's kernels
  bool amd = false;
};

CpuFeatures cpu_features();
std::string cpu_model();  // the CPU's brand string, e.g. "AMD EPYC"

// The core to set when OpenBLAS picked `core` (openblas_get_corename()) on a CPU with
// `cpu`: "SkylakeX" on AVX-512, "Zen" (AMD) or "Haswell" on AVX2, and only when `core` is
// a generic one from before AVX2 (Prescott, Core2, Nehalem, Sandybridge, ...). Empty when
// `core` is fine or nothing better is known.
std::string better_blas_core(const std::string& core, const CpuFeatures& cpu);

struct BackendInfo {
  std::string cpu;             // cpu_model()
  std::string blas;            // openblas_get_config(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ..."
  std::string blas_core;       // the kernels in use: openblas_get_corename()
  std::string core_chosen_by;  // "OpenBLAS", "user (OPENBLAS_CORETYPE)" or "xtgrad (OpenBLAS picked X)"
  bool narrow_gemm = false;    // xtgrad's own AVX-512 kernel for narrow float products
};

BackendInfo backend_info();

}  // namespace xtgrad
