#include "distributed_run.hpp"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>

#include "flags.hpp"

#ifdef XTGRAD_WITH_MPI
#include "xtgrad/distributed.hpp"
#endif

namespace common {

#ifdef XTGRAD_WITH_MPI
struct DistributedRun::Mpi {
  Mpi(int& argc, char**& argv) : environment(argc, argv) {}
  xtgrad::distributed::Environment environment;
};
namespace dist = xtgrad::distributed;
#else
struct DistributedRun::Mpi {};
#endif

DistributedRun::DistributedRun([[maybe_unused]] int& argc, [[maybe_unused]] char**& argv)
    : launch_(launch_from_environment()) {
  if (!launch_.by_mpi) return;  // started alone: never touch MPI
#ifdef XTGRAD_WITH_MPI
  mpi_ = std::make_unique<Mpi>(argc, argv);
  ranks_ = {std::size_t(dist::rank()), std::size_t(dist::world_size())};
#else
  if (launch_.ranks.size > 1)
    throw std::runtime_error(
        "started as rank " + std::to_string(launch_.ranks.rank) + " of " + std::to_string(launch_.ranks.size) +
        " by an MPI launcher, but this program was built without MPI (CMake found none, or XTGRAD_USE_MPI=OFF): "
        "each process would train alone; rebuild with MPI (libopenmpi-dev) or run it once");
#endif
}

DistributedRun::~DistributedRun() = default;

void DistributedRun::agree(const std::function<void()>& setup) const {
  std::exception_ptr error;
  try {
    setup();
  } catch (...) {
    error = std::current_exception();
  }
  if (!mpi_ || ranks_.size == 1) {
    if (error) std::rethrow_exception(error);
    stop_together_ = false;
    return;
  }
#ifdef XTGRAD_WITH_MPI
  // Every rank's exit code (0: its setup went well), in rank order.
  xtgrad::Array<double> codes = xt::zeros<double>({ranks_.size});
  if (error) codes(ranks_.rank) = double(exit_code_of(error));
  dist::all_reduce(codes);
  for (std::size_t r = 0; r < ranks_.size; ++r) {
    if (codes(r) == 0) continue;
    stop_together_ = true;  // every rank stops here, none is left waiting
    if (r == ranks_.rank) std::rethrow_exception(error);
    throw ReportedElsewhere{int(codes(r))};
  }
#endif
  stop_together_ = false;
}

int DistributedRun::guard([[maybe_unused]] const std::string& program, const std::function<int()>& body) const {
  try {
    return body();
  } catch (const ReportedElsewhere& e) {
    return e.code;
  } catch (...) {
    if (!mpi_ || ranks_.size == 1 || stop_together_) throw;
#ifdef XTGRAD_WITH_MPI
    const std::exception_ptr error = std::current_exception();
    std::string message = "an exception that is not a std::exception";
    try {
      throw;
    } catch (const std::bad_alloc&) {
      message = "out of memory while " + Doing::current();
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {}
    dist::abort_all(program + ": " + message, exit_code_of(error));
#endif
    throw;
  }
}

void DistributedRun::check_same([[maybe_unused]] const std::string& what,
                                [[maybe_unused]] const std::string& text) const {
#ifdef XTGRAD_WITH_MPI
  if (!mpi_ || ranks_.size == 1) return;
  const double hash = double(std::hash<std::string>{}(text) & ((std::uint64_t(1) << 48) - 1));  // exact in a double
  const xtgrad::Array<double> all = dist::all_gather(xtgrad::Array<double>{hash});              // one per rank
  for (std::size_t r = 1; r < all.size(); ++r)
    if (all(r) != all(0))
      throw UsageError("the ranks were started with different " + what + " (rank " + std::to_string(r) +
                       "'s differ from rank 0's): every rank needs the same command line");
#endif
}

void DistributedRun::sum_in_place([[maybe_unused]] std::vector<double>& values) const {
#ifdef XTGRAD_WITH_MPI
  if (!mpi_) return;
  xtgrad::Array<double> all = xt::zeros<double>({values.size()});
  std::copy(values.begin(), values.end(), all.begin());
  dist::all_reduce(all);
  std::copy(all.begin(), all.end(), values.begin());
#endif
}

int DistributedRun::run_main(CLI::App& app, int argc, char** argv, const std::string& program,
                             const std::function<int()>& body) const {
  if (!ranks_.root())  // the same command line everywhere: rank 0 reports its mistakes
    if (const auto code = parse_quietly(app, argc, argv)) return *code;
  const std::string name = program_on_rank(program, ranks_);
  return common::run_main(app, argc, argv, name, [&] { return guard(name, body); });
}

bool start_ranks(std::optional<DistributedRun>& parallel, int& argc, char**& argv, const std::string& program) {
  try {
    parallel.emplace(argc, argv);
    return true;
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return false;
  }
}

double DistributedRun::sum(double x) const {
  std::vector<double> value{x};
  sum_in_place(value);
  return value[0];
}

}  // namespace common
