// The MPI environment and the collectives over arrays and tensors.
#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <xtensor/xview.hpp>

#include "mpi_detail.hpp"

namespace xtgrad::distributed {

namespace detail {
MPI_Comm world(const char* caller) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized)
    throw std::logic_error(std::string(caller) +
                           ": MPI is not running; create an xtgrad::distributed::Environment first");
  return MPI_COMM_WORLD;
}
}  // namespace detail

using detail::check;

namespace {
void start_mpi(int* argc, char*** argv, bool& owns) {
  int initialized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!initialized) {
    check(MPI_Init(argc, argv), "MPI_Init");
    owns = true;
  }
  check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
}
}  // namespace

Environment::Environment() { start_mpi(nullptr, nullptr, owns_mpi_); }
Environment::Environment(int& argc, char**& argv) { start_mpi(&argc, &argv, owns_mpi_); }
Environment::~Environment() {
  if (owns_mpi_) MPI_Finalize();
}

int rank() {
  int r = 0;
  check(MPI_Comm_rank(detail::world("rank"), &r), "MPI_Comm_rank");
  return r;
}
int world_size() {
  int n = 0;
  check(MPI_Comm_size(detail::world("world_size"), &n), "MPI_Comm_size");
  return n;
}
void barrier() { check(MPI_Barrier(detail::world("barrier")), "MPI_Barrier"); }

namespace {
constexpr std::size_t max_dims = 8;

// Every rank's shape (rank order), so that each rank can refuse a mismatch alike.
std::vector<Shape> gather_shapes(const Shape& shape, const char* caller) {
  MPI_Comm comm = detail::world(caller);
  if (shape.size() > max_dims)
    throw std::invalid_argument(std::string(caller) + ": arrays of more than 8 dimensions are not supported, got " +
                                shape_str(shape));
  std::vector<unsigned long> mine(max_dims + 1, 0), all;
  mine[0] = shape.size();
  std::copy(shape.begin(), shape.end(), mine.begin() + 1);
  all.resize(mine.size() * static_cast<std::size_t>(world_size()));
  check(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_UNSIGNED_LONG, all.data(),
                      static_cast<int>(mine.size()), MPI_UNSIGNED_LONG, comm),
        "MPI_Allgather");
  std::vector<Shape> shapes;
  for (std::size_t r = 0; r < all.size(); r += mine.size())
    shapes.emplace_back(all.begin() + r + 1, all.begin() + r + 1 + all[r]);
  return shapes;
}

[[noreturn]] void mismatch(const char* caller, std::size_t r, const Shape& theirs, std::size_t r0, const Shape& ref,
                           const char* rule) {
  throw std::invalid_argument(std::string(caller) + ": rank " + std::to_string(r) + " has shape " + shape_str(theirs) +
                              " but rank " + std::to_string(r0) + " has " + shape_str(ref) + " (" + rule + ")");
}

void require_same_shapes(const Shape& shape, std::size_t root, const char* caller) {
  const auto shapes = gather_shapes(shape, caller);
  for (std::size_t r = 0; r < shapes.size(); ++r)
    if (shapes[r] != shapes[root])
      mismatch(caller, r, shapes[r], root, shapes[root], "every rank needs the same shape");
}

}  // namespace

int detail::count(std::size_t n, const char* caller) {
  if (n > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw std::invalid_argument(std::string(caller) + ": " + std::to_string(n) + " elements exceed MPI's int count");
  return static_cast<int>(n);
}
using detail::count;

template <class T> void broadcast(Array<T>& x, int root) {
  if (root < 0 || root >= world_size())
    throw std::invalid_argument("broadcast: root " + std::to_string(root) + " outside the " +
                                std::to_string(world_size()) + " ranks");
  require_same_shapes(detail::shape_of_array(x), static_cast<std::size_t>(root), "broadcast");
  check(MPI_Bcast(x.data(), count(x.size(), "broadcast"), detail::datatype<T>(), root, MPI_COMM_WORLD), "MPI_Bcast");
}
template <class T> void broadcast(Tensor<T>& x, int root) { broadcast(x.mutable_data(), root); }

template <class T> void all_reduce(Array<T>& x, ReduceOp op) {
  require_same_shapes(detail::shape_of_array(x), 0, "all_reduce");
  check(MPI_Allreduce(MPI_IN_PLACE, x.data(), count(x.size(), "all_reduce"), detail::datatype<T>(), MPI_SUM,
                      MPI_COMM_WORLD),
        "MPI_Allreduce");
  if (op == ReduceOp::avg) x /= static_cast<T>(world_size());
}
template <class T> void all_reduce(Tensor<T>& x, ReduceOp op) { all_reduce(x.mutable_data(), op); }

namespace detail {
std::vector<std::size_t> gathered_rows(const Shape& shape, const char* caller) {
  const auto shapes = gather_shapes(shape, caller);
  std::vector<std::size_t> rows;
  for (std::size_t r = 0; r < shapes.size(); ++r) {
    if (shapes[r].empty() ||
        !std::equal(shapes[r].begin() + 1, shapes[r].end(), shapes[0].begin() + 1, shapes[0].end()))
      mismatch(caller, r, shapes[r], 0, shapes[0], "all sizes but the first must agree, and x needs a dimension");
    rows.push_back(shapes[r][0]);
  }
  return rows;
}

template <class T> Array<T> gather_rows(const Array<T>& x, const std::vector<std::size_t>& rows) {
  const std::size_t row_size = x.shape()[0] == 0 ? 0 : x.size() / x.shape()[0];
  Shape out_shape = shape_of_array(x);
  out_shape[0] = std::accumulate(rows.begin(), rows.end(), std::size_t{0});
  Array<T> out = Array<T>::from_shape(out_shape);
  std::vector<int> counts, displs;
  std::size_t offset = 0;
  for (std::size_t n : rows) {
    counts.push_back(count(n * row_size, "all_gather"));
    displs.push_back(count(offset, "all_gather"));
    offset += n * row_size;
  }
  check(MPI_Allgatherv(x.data(), count(x.size(), "all_gather"), datatype<T>(), out.data(), counts.data(), displs.data(),
                       datatype<T>(), MPI_COMM_WORLD),
        "MPI_Allgatherv");
  return out;
}
}  // namespace detail

template <class T> Array<T> all_gather(const Array<T>& x) {
  return detail::gather_rows(x, detail::gathered_rows(detail::shape_of_array(x), "all_gather"));
}

namespace {
// dy (sum n_r, ...) -> dx (n_r, ...): every rank's dy summed, the rows this rank gave.
template <class T> BackwardFn<T> all_gather_backward(std::size_t first_row, std::size_t rows) {
  return [first_row, rows](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& dy) {
    Array<T> total = dy;
    check(MPI_Allreduce(MPI_IN_PLACE, total.data(), count(total.size(), "all_gather backward"), detail::datatype<T>(),
                        MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
    add_grad(*inputs[0], Array<T>(xt::view(total, xt::range(first_row, first_row + rows))));
  };
}
}  // namespace

// x (n_r, ...) on rank r -> (sum n_r, ...)
template <class T> Tensor<T> all_gather(const Tensor<T>& x) {
  const auto rows = detail::gathered_rows(x.shape(), "all_gather");
  const auto me = static_cast<std::size_t>(rank());
  const std::size_t first_row = std::accumulate(rows.begin(), rows.begin() + me, std::size_t{0});
  return make_result<T>("all_gather", detail::gather_rows(x.data(), rows), {x},
                        all_gather_backward<T>(first_row, rows[me]));
}

#define INSTANTIATE(T)                            \
  template void broadcast(Array<T>&, int);        \
  template void broadcast(Tensor<T>&, int);       \
  template void all_reduce(Array<T>&, ReduceOp);  \
  template void all_reduce(Tensor<T>&, ReduceOp); \
  template Array<T> all_gather(const Array<T>&);  \
  template Tensor<T> all_gather(const Tensor<T>&);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace xtgrad::distributed
