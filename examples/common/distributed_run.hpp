// A training program's processes under mpirun: MPI when a launcher started this process
// (data_parallel.hpp's Launch), none otherwise, and the rules for stopping every rank when
// one fails. Built over xtgrad::distributed where CMake finds MPI (XTGRAD_WITH_MPI); without
// it, or without a launcher, a run is one process and every call here is trivial.
//
//   int main(int argc, char** argv) {
//     common::DistributedRun run(argc, argv);                  // MPI_Init only under mpirun
//     ... parse flags ...
//     const std::string program = common::program_on_rank("xtgrad-align", run.ranks());
//     return common::run_main(app, argc, argv, program,
//                             [&] { return run.guard(program, [&] { return train(run, ...); }); });
//   }
//   train: run.agree([&] { validate, read the checkpoint ... });   // every rank, same point
//
// How a run stops:
//   - a failure in agree()'s setup on any rank (bad input, a missing checkpoint): every rank
//     stops there; the lowest failing rank reports it and every rank exits with its code
//     (2 bad usage, 1 bad file), MPI finalised normally;
//   - a failure after the ranks agreed (out of memory on one machine, a failed save on rank
//     0): the failing rank prints "rank R of N: <program>: <message>" and aborts the job
//     (MPI_Abort with the exit code): mpirun ends the other ranks and exits with that code;
//   - a rank killed: mpirun notices, names it ("process rank 1 ... exited on signal 9")
//     and ends the others.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data_parallel.hpp"

namespace common {

class DistributedRun {
 public:
  // Reads the launch from the environment and initialises MPI under a launcher. Throws
  // std::runtime_error when a launcher started several processes but this program was
  // built without MPI (each would train alone).
  DistributedRun(int& argc, char**& argv);
  ~DistributedRun();
  DistributedRun(const DistributedRun&) = delete;
  DistributedRun& operator=(const DistributedRun&) = delete;

  const Launch& launch() const { return launch_; }
  const Ranks& ranks() const { return ranks_; }  // MPI's rank and size; 0 of 1 without MPI
  bool distributed() const { return mpi_ != nullptr; }

  // Runs setup on every rank, then compares (a collective: every rank calls it at the same
  // point). When setup threw on any rank, every rank stops here: the lowest failing rank
  // rethrows its exception (run_main reports it), the others throw ReportedElsewhere with
  // its exit code.
  void agree(const std::function<void()>& setup) const;

  // main's work: returns body()'s code; ReportedElsewhere exits quietly with its code; any
  // other exception after agree() succeeded stops every rank through MPI_Abort (see above).
  // Without MPI, or before any agreement, exceptions pass through to run_main.
  int guard(const std::string& program, const std::function<int()>& body) const;

  // main's parse and run (flags.hpp's run_main) on every rank: rank 0 parses aloud (usage
  // errors and --help are its to print), the others quietly; then body() under guard(),
  // messages prefixed with the rank (program_on_rank).
  int run_main(CLI::App& app, int argc, char** argv, const std::string& program,
               const std::function<int()>& body) const;

  // The sum over ranks (every rank gets it); x alone without MPI.
  double sum(double x) const;
  // The element-wise sum over ranks, in place (the same length on every rank).
  void sum_in_place(std::vector<double>& values) const;

  // Throws UsageError "the ranks were started with different <what> ..." on every rank
  // unless `text` is the same on every rank (compared by a 48-bit hash); a collective. For
  // the settings that must agree (a launcher's MPMD form can give ranks other flags).
  void check_same(const std::string& what, const std::string& text) const;

 private:
  struct Mpi;  // the xtgrad::distributed::Environment, where MPI is built
  Launch launch_;
  Ranks ranks_;
  std::unique_ptr<Mpi> mpi_;
  mutable bool stop_together_ = true;  // until a setup is agreed: a failure is every rank's
};

// main's first step: `parallel` emplaced (MPI under a launcher), or false after printing
// why it cannot start (main then exits 2).
bool start_ranks(std::optional<DistributedRun>& parallel, int& argc, char**& argv, const std::string& program);

}  // namespace common
