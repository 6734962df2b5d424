// Running an example's training data-parallel under mpirun, the pieces that need no MPI
// (the MPI ones are in distributed_run.hpp, built where MPI is found):
//   - whether a launcher started this process: a program started without mpirun never
//     initialises MPI and runs exactly as before;
//   - the share of a global batch each rank takes (--batch is the global batch);
//   - the threads per rank, and rank 0 alone writing the log, the metrics and checkpoints.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <exception>
#include <optional>
#include <ostream>
#include <string>

namespace common {

// Rank `rank` of `size` processes; one process is rank 0 of 1.
struct Ranks {
  std::size_t rank = 0, size = 1;
  bool root() const { return rank == 0; }  // the rank that writes the run's files and log
};

// What the launcher told this process through its environment. An MPI launcher sets these
// before the program starts (MPI need not be initialised to read them):
//   OpenMPI (mpirun, mpiexec):   OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_SIZE
//   MPICH, Intel MPI (hydra):    PMI_RANK, PMI_SIZE, MPI_LOCALNRANKS
//   PMIx launchers (srun --mpi=pmix, prterun): PMIX_RANK
// None of them set: not launched by MPI; the program runs as one process.
struct Launch {
  bool by_mpi = false;
  Ranks ranks;                  // from the environment; MPI's own count is the authority
  std::size_t local_ranks = 1;  // ranks on this machine (all of them when not said)
};
Launch launch_from_environment();

// Rows [first, first + count) of a global batch: rank r of n takes a contiguous share, the
// first (batch % n) ranks one row more (10 over 3 ranks: 4, 3, 3). Every rank computes the
// same split from the same global batch, so no rank needs to ask another.
struct Share {
  std::size_t first = 0, count = 0;
};
Share share_of_batch(std::size_t batch, const Ranks& ranks);

// Throws std::invalid_argument naming the flag unless every rank gets at least one row:
// "--batch 2 is smaller than the 3 ranks ...".
void check_batch_covers_ranks(const char* flag, std::size_t batch, const Ranks& ranks);

// Threads per rank when --threads is not given under a launcher: the cores this process
// may run on (its CPU affinity) divided among the ranks on this machine, at least 1.
int default_threads_per_rank(std::size_t local_ranks);

// Where a rank writes its progress: `out` on rank 0, nowhere on the others (they stay
// silent except for errors).
std::ostream& root_log(const Ranks& ranks, std::ostream& out);

// The message prefix of a rank's errors: "xtgrad-align" on rank 0 (and alone), "xtgrad-align
// rank 2" on the others.
std::string program_on_rank(const std::string& program, const Ranks& ranks);

// The exit code run_main (flags.hpp) gives an exception: 2 for a UsageError, 1 otherwise.
int exit_code_of(const std::exception_ptr& error);

// Thrown on every rank but the one that reports an error every rank stops for (see
// distributed_run.hpp's agree): exit with `code`, printing nothing.
struct ReportedElsewhere {
  int code = 1;
};

// Non-root ranks parse the command line silently first: every rank has the same argv, so a
// usage error or --help is rank 0's to print. Returns the exit code when parsing stops the
// program (2 for an error, 0 for --help), nothing when it parsed.
std::optional<int> parse_quietly(CLI::App& app, int argc, char** argv);

}  // namespace common
