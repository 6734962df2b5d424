// Stopping every rank when one of them fails (distributed.hpp: abort_all,
// abort_on_exception).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>

#include "mpi_detail.hpp"

namespace xtgrad::distributed {

void abort_all(const std::string& message, int exit_code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) {  // no MPI job to stop: this process only
    std::fprintf(stderr, "%s\n", message.c_str());
    std::exit(exit_code);
  }
  int r = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  std::fprintf(stderr, "rank %d of %d: %s\n", r, n, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this is for an MPI that would
}

int abort_on_exception(const std::function<int()>& body, int exit_code) {
  try {
    return body();
  } catch (const std::exception& e) {
    abort_all(e.what(), exit_code);
  } catch (...) {
    abort_all("an exception that is not a std::exception", exit_code);
  }
}

}  // namespace xtgrad::distributed
