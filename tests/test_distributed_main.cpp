// The runner of the MPI tests, started by mpiexec on several ranks (tests/CMakeLists.txt):
// every rank runs every test case (the collectives need all of them); the run fails when
// any rank fails. Only rank 0 prints doctest's summary.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <mpi.h>

#include "xtgrad/distributed.hpp"

int main(int argc, char** argv) {
  xtgrad::distributed::Environment mpi(argc, argv);
  doctest::Context context(argc, argv);
  if (xtgrad::distributed::rank() != 0) context.setOption("minimal", true);  // failures only
  const int failed = context.run() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any_failed;
}
