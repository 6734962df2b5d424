// The OpenBLAS core check (xtgrad/backend.hpp): the rule, and the restart it makes, seen
// from a child run of this test program.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "xtgrad/backend.hpp"

using xtgrad::better_blas_core;
using xtgrad::CpuFeatures;

namespace {
// Runs this program's "backend: print" case in a child with `env` (shell words) and reads
// back the key=value lines it prints.
std::map<std::string, std::string> child_backend(const std::string& env) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string command = "env -u OPENBLAS_CORETYPE -u XTGRAD_OPENBLAS_PICKED " + env +
                              " XTGRAD_PRINT_BACKEND=1 '" + self + "' -tc='backend: print' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::map<std::string, std::string> fields;
  char line[1024];
  while (std::fgets(line, sizeof line, pipe)) {
    std::string text(line);
    if (text.rfind("backend.", 0) != 0) continue;
    text.erase(text.find_last_not_of("\r\n") + 1);
    const auto eq = text.find('=');
    fields[text.substr(8, eq - 8)] = text.substr(eq + 1);
  }
  CHECK(pclose(pipe) == 0);
  return fields;
}
}  // namespace

TEST_CASE("backend: print") {
  const xtgrad::BackendInfo info = xtgrad::backend_info();
  CHECK(!info.blas.empty());
  CHECK(!info.blas_core.empty());
  if (!std::getenv("XTGRAD_PRINT_BACKEND")) return;
  std::printf("backend.core=%s\nbackend.chosen_by=%s\n", info.blas_core.c_str(), info.core_chosen_by.c_str());
}

TEST_CASE("better_blas_core: only a generic core on a CPU with AVX2 or AVX-512 is replaced") {
  CpuFeatures avx512;
  avx512.avx2_fma = avx512.avx512 = true;
  CpuFeatures intel_avx2, amd_avx2;
  intel_avx2.avx2_fma = amd_avx2.avx2_fma = amd_avx2.amd = true;
  CHECK(better_blas_core("Prescott", avx512) == "SkylakeX");
  CHECK(better_blas_core("Prescott", intel_avx2) == "Haswell");
  CHECK(better_blas_core("Nehalem", amd_avx2) == "Zen");
  CHECK(better_blas_core("Sandybridge", intel_avx2) == "Haswell");
  CHECK(better_blas_core("Haswell", avx512) == "");  // OpenBLAS's own choice of AVX2 kernels stands
  CHECK(better_blas_core("Zen", amd_avx2) == "");
  CHECK(better_blas_core("SkylakeX", avx512) == "");
  CHECK(better_blas_core("Prescott", CpuFeatures{}) == "");  // nothing better to run
}

TEST_CASE("backend: a program left on a generic core restarts once on the CPU's best one") {
  const std::string better = better_blas_core("Prescott", xtgrad::cpu_features());
  auto child = child_backend("XTGRAD_TEST_BLAS_CORE=Prescott");
  if (better.empty()) {  // a CPU without AVX2: nothing to do
    CHECK(child["chosen_by"] == "OpenBLAS");
  } else {
    CHECK(child["core"] == better);
    CHECK(child["chosen_by"] == "xtgrad (OpenBLAS picked Prescott)");
  }
}

TEST_CASE("backend: the user's OPENBLAS_CORETYPE wins, and with no setting the core is never generic") {
  auto user = child_backend("OPENBLAS_CORETYPE=Prescott");
  CHECK(user["core"] == "Prescott");
  CHECK(user["chosen_by"] == "user (OPENBLAS_CORETYPE)");
  auto plain = child_backend("");
  REQUIRE(!plain["core"].empty());
  CHECK(better_blas_core(plain["core"], xtgrad::cpu_features()) == "");
}
