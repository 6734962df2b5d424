// What the distributed sources share: MPI error checks and datatypes.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "xtgrad/distributed.hpp"

namespace xtgrad::distributed::detail {

// Throws MpiError("MPI_Allreduce failed: <MPI's message>") unless rc is MPI_SUCCESS.
inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char message[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, message, &length) != MPI_SUCCESS) length = 0;
  throw MpiError(std::string(call) +
                 " failed: " + (length > 0 ? std::string(message, length) : "error code " + std::to_string(rc)));
}

// MPI_COMM_WORLD, after checking that MPI is running.
MPI_Comm world(const char* caller);

template <class T> MPI_Datatype datatype() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

template <class T> Shape shape_of_array(const Array<T>& a) { return Shape(a.shape().begin(), a.shape().end()); }

// n as MPI's int count; throws above INT_MAX.
int count(std::size_t n, const char* caller);
// Each rank's row count for an all_gather of x's shape; throws when a rank's x is a
// scalar or its other sizes differ from rank 0's.
std::vector<std::size_t> gathered_rows(const Shape& shape, const char* caller);
// x (n_r, ...) -> (sum n_r, ...) given every rank's row count.
template <class T> Array<T> gather_rows(const Array<T>& x, const std::vector<std::size_t>& rows);

}  // namespace xtgrad::distributed::detail
