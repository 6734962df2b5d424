#include "data_parallel.hpp"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <streambuf>
#include <thread>

#include "flags.hpp"

namespace common {

namespace {
// The first of the variables that is set, as a count; nothing when none is (or it is not
// a number: a launcher's variable is trusted to be one, a stray one is ignored).
std::optional<std::size_t> environment_count(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    const char* value = std::getenv(name);
    if (!value) continue;
    try {
      return std::size_t(parse_count(value, 0, 1u << 30));
    } catch (const std::invalid_argument&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}
}  // namespace

Launch launch_from_environment() {
  Launch launch;
  const auto rank = environment_count({"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"});
  const auto size = environment_count({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"});
  launch.by_mpi = rank || size;
  if (!launch.by_mpi) return launch;
  launch.ranks.rank = rank.value_or(0);
  launch.ranks.size = std::max<std::size_t>(1, size.value_or(1));
  launch.local_ranks = std::max<std::size_t>(
      1, environment_count({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}).value_or(launch.ranks.size));
  return launch;
}

Share share_of_batch(std::size_t batch, const Ranks& ranks) {
  const std::size_t base = batch / ranks.size, extra = batch % ranks.size;
  return {ranks.rank * base + std::min(ranks.rank, extra), base + (ranks.rank < extra ? 1 : 0)};
}

void check_batch_covers_ranks(const char* flag, std::size_t batch, const Ranks& ranks) {
  if (batch < ranks.size)
    throw std::invalid_argument(std::string(flag) + " " + std::to_string(batch) + " is smaller than the " +
                                std::to_string(ranks.size) + " ranks: " + flag +
                                " is the global batch, split across the ranks, and each needs at least one pair");
}

int default_threads_per_rank(std::size_t local_ranks) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int usable =
      sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : int(std::thread::hardware_concurrency());
  // mpirun binds each rank to a core by default (2 ranks or fewer): the affinity says so.
  const int machine =
      std::max(1, int(std::thread::hardware_concurrency()) / int(std::max<std::size_t>(1, local_ranks)));
  return std::max(1, std::min(usable, machine));
}

namespace {
struct NullBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};
}  // namespace

std::ostream& root_log(const Ranks& ranks, std::ostream& out) {
  static NullBuffer nothing;
  static std::ostream silent(&nothing);
  return ranks.root() ? out : silent;
}

std::string program_on_rank(const std::string& program, const Ranks& ranks) {
  return ranks.root() ? program : program + " rank " + std::to_string(ranks.rank);
}

int exit_code_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const UsageError&) {
    return 2;
  } catch (const ReportedElsewhere& e) {
    return e.code;
  } catch (...) {
    return 1;
  }
}

std::optional<int> parse_quietly(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::CallForHelp&) {
    return 0;
  } catch (const CLI::ParseError&) {
    return 2;
  }
}

}  // namespace common
