// The OpenBLAS core check that runs before main (see xtgrad/backend.hpp).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "blas.hpp"
#include "gemm_narrow.hpp"
#include "xtgrad/backend.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);

namespace xtgrad {
namespace {
// Set beside OPENBLAS_CORETYPE when xtgrad set it: the core OpenBLAS had picked itself.
constexpr const char* kPickedEnv = "XTGRAD_OPENBLAS_PICKED";
// Tests only: act as if OpenBLAS had picked this core by itself.
constexpr const char* kTestEnv = "XTGRAD_TEST_BLAS_CORE";

// OpenBLAS's names for the x86 cores with AVX2 (or AVX-512) kernels. Any other x86 core
// name is generic as far as a CPU with AVX2 is concerned.
bool has_avx2_kernels(const std::string& core) {
  for (const char* name : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
    if (core == name) return true;
  return false;
}

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}
}  // namespace

CpuFeatures cpu_features() {
  CpuFeatures cpu;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();  // needed before main, in a constructor
  cpu.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  cpu.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  cpu.amd = __builtin_cpu_is("amd");
#endif
  return cpu;
}

std::string cpu_model() {
#if defined(__x86_64__)
  unsigned int regs[12] = {};
  for (unsigned int i = 0; i < 3; ++i)
    if (!__get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]))
      return "unknown";
  char brand[49] = {};
  std::memcpy(brand, regs, 48);
  std::string model(brand);
  model.erase(0, model.find_first_not_of(' '));
  model.erase(model.find_last_not_of(' ') + 1);
  return model;
#else
  return "unknown";
#endif
}

std::string better_blas_core(const std::string& core, const CpuFeatures& cpu) {
  if (has_avx2_kernels(core)) return "";
  if (cpu.avx512) return "SkylakeX";
  if (cpu.avx2_fma) return cpu.amd ? "Zen" : "Haswell";
  return "";
}

BackendInfo backend_info() {
  BackendInfo info;
  info.cpu = cpu_model();
  info.blas = openblas_get_config();
  while (!info.blas.empty() && info.blas.back() == ' ') info.blas.pop_back();
  info.blas_core = openblas_get_corename();
  const std::string picked = env_or_empty(kPickedEnv);
  if (!picked.empty())
    info.core_chosen_by = "xtgrad (OpenBLAS picked " + picked + ")";
  else if (!env_or_empty("OPENBLAS_CORETYPE").empty())
    info.core_chosen_by = "user (OPENBLAS_CORETYPE)";
  else
    info.core_chosen_by = "OpenBLAS";
  info.narrow_gemm = blas::narrow_gemm_available();
  return info;
}

namespace blas {
// Called before main by blas.cpp's constructor, with the program's arguments.
void restart_on_generic_core(char** argv) {
  if (!env_or_empty("OPENBLAS_CORETYPE").empty()) return;  // the user's choice, or ours
  std::string picked = env_or_empty(kTestEnv);
  if (picked.empty()) picked = openblas_get_corename();
  const std::string better = better_blas_core(picked, cpu_features());
  if (better.empty()) return;
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  setenv(kPickedEnv, picked.c_str(), 1);
  if (argv && argv[0]) execv("/proc/self/exe", argv);  // returns only on failure
  std::fprintf(stderr,
               "xtgrad: warning: OpenBLAS picked its generic '%s' kernels on this CPU (%s), which runs the "
               "faster '%s' ones; products will be several times slower. Restarting with OPENBLAS_CORETYPE "
               "set failed (%s): export OPENBLAS_CORETYPE=%s before starting the program.\n",
               picked.c_str(), cpu_model().c_str(), better.c_str(), std::strerror(errno), better.c_str());
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kPickedEnv);
}
}  // namespace blas

}  // namespace xtgrad
