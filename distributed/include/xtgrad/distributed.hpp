// xtgrad::distributed: data-parallel training over MPI (built only where CMake finds MPI;
// link xtgrad::distributed). Every rank runs the same program on its own share of the
// batch; these calls are collective: every rank makes the same calls in the same order
// with arrays of matching shapes, or they wait for each other forever. A failing MPI call
// throws MpiError naming the call (MPI_ERRORS_RETURN on MPI_COMM_WORLD); mismatched shapes
// throw std::invalid_argument on every rank alike.
//
//   xtgrad::distributed::Environment mpi(argc, argv);   // MPI_Init ... MPI_Finalize
//   auto model = std::make_shared<Net>();
//   DistributedDataParallel<float> ddp(model);           // rank 0's weights everywhere
//   SGD<float> opt(ddp.parameters(), {0.1});
//   for (...) {                                          // this rank's share of each batch
//     opt.zero_grad();
//     loss_fn(ddp(x), y).backward();                    // all-reduces start in here
//     ddp.finish_gradient_synchronization();            // waits: averaged gradients
//     opt.step();
//   }
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "xtgrad/module.hpp"
#include "xtgrad/tensor.hpp"
#include "xtgrad/vision.hpp"

namespace xtgrad::distributed {

// An MPI call returned an error: what() names the call and MPI's message.
class MpiError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// MPI for the lifetime of this object: MPI_Init (unless MPI is already initialised, which
// it then leaves alone) and MPI_Finalize. Create one at the top of main().
class Environment {
 public:
  Environment();
  Environment(int& argc, char**& argv);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  bool owns_mpi_ = false;
};

int rank();        // this process's rank in MPI_COMM_WORLD; throws when MPI is not initialised
int world_size();  // the number of processes
void barrier();

// Stops every rank (fault.cpp): prints "rank R of N: <message>" on stderr, then
// MPI_Abort(MPI_COMM_WORLD, exit_code), after which mpiexec ends the other ranks and exits
// non-zero. For an error only some ranks see (bad input on one machine): returning from
// main on those ranks would leave the others waiting in a collective, and MPI_Finalize
// waiting for them, forever. Without MPI running, prints the message and exits.
[[noreturn]] void abort_all(const std::string& message, int exit_code = 1);
// Runs body() and returns what it returns; an exception escaping it stops every rank
// through abort_all(what(), exit_code). Wrap main's work in it under mpiexec:
//   return abort_on_exception([&] { return train(argc, argv); });
int abort_on_exception(const std::function<int()>& body, int exit_code = 1);

enum class ReduceOp { sum, avg };  // torch.distributed.ReduceOp.SUM, AVG

// x (any shape, the same on every rank): root's values everywhere.
template <class T> void broadcast(Array<T>& x, int root = 0);
template <class T> void broadcast(Tensor<T>& x, int root = 0);  // in place: counts as a write
// x (any shape, the same on every rank): the element-wise sum (or mean) over ranks, in
// place. Not differentiable, as torch.distributed.all_reduce.
template <class T> void all_reduce(Array<T>& x, ReduceOp op = ReduceOp::sum);
template <class T> void all_reduce(Tensor<T>& x, ReduceOp op = ReduceOp::sum);
// x (n_r, ...) on rank r -> (n_0 + n_1 + ..., ...): every rank's rows in rank order. The
// row counts n_r may differ; the other sizes may not.
template <class T> Array<T> all_gather(const Array<T>& x);
// The same as an op, as torch.distributed.nn.all_gather (concatenated): its backward gives
// each rank the rows of the gradient that its x produced, summed over every rank's
// gradient (each rank's loss reads everyone's rows). Every rank must then run backward
// through it, since the backward is collective too.
template <class T> Tensor<T> all_gather(const Tensor<T>& x);

struct DistributedDataParallelOptions {
  double bucket_cap_mb = 25;      // gradients per all-reduce, as PyTorch's bucket_cap_mb
  bool broadcast_buffers = true;  // forward() first copies rank 0's buffers everywhere
};

// Times of the last gradient synchronization (std::chrono::steady_clock, in seconds), to
// measure how much of the communication hid behind backward().
struct GradientSyncTiming {
  double first_gradient = 0;     // the first hook of the pass (backward is under way)
  double last_bucket_start = 0;  // MPI_Iallreduce of the last bucket
  double wait_begin = 0;         // finish_gradient_synchronization() entered
  double wait_end = 0;           // every bucket reduced and written back
  std::size_t buckets = 0;
  std::size_t buckets_started_in_backward = 0;  // the others start in finish_gradient_synchronization()
  std::size_t buckets_done_before_wait = 0;     // all-reduces that completed during backward
};

// torch.nn.parallel.DistributedDataParallel: wraps a module (registered as "module", so
// names read "module.fc.weight" as in PyTorch). At construction rank 0's parameters and
// buffers are copied to every rank. Gradients go into buckets of about bucket_cap_mb, in
// reverse registration order (roughly the order backward produces them); a bucket's
// MPI_Iallreduce starts from a post-accumulate-grad hook as soon as its last gradient is
// final, while backward goes on, and buckets start in the same order on every rank.
// Differences from PyTorch: the wait is explicit, finish_gradient_synchronization()
// after backward() (PyTorch waits at the end of backward); a parameter the pass did not
// reach is averaged with the gradient it holds (none counts as zeros), as PyTorch's
// find_unused_parameters=True; no first small bucket. BatchNorm's batch
// statistics stay per rank, as in PyTorch without SyncBatchNorm.
// With local batches of different sizes, scale each rank's mean loss by
// world_size() * local / global so that the average of the gradients is the global one.
template <class T> class DistributedDataParallel : public Module<T> {
  struct Reducer;  // ddp.cpp: buckets and MPI requests

 public:
  explicit DistributedDataParallel(std::shared_ptr<Module<T>> module,
                                   const DistributedDataParallelOptions& options = {});
  ~DistributedDataParallel() override;

  // The wrapped module's forward, for a UnaryModule (others: call module() directly; the
  // synchronization does not depend on forward).
  Tensor<T> forward(const Tensor<T>& x);
  Tensor<T> operator()(const Tensor<T>& x) { return forward(x); }
  const std::shared_ptr<Module<T>>& module() const { return module_; }

  // Call once after every backward(), on every rank, before the optimizer step: starts the
  // buckets backward did not start, waits for all and writes each parameter's gradient
  // averaged over ranks.
  void finish_gradient_synchronization();

  // torch's no_sync(): while the returned guard lives, backward() only accumulates
  // gradients on this rank (no all-reduce; finish_gradient_synchronization() does nothing).
  // The first backward() after it all-reduces what every pass accumulated: gradient
  // accumulation over micro-batches with one all-reduce per step.
  //   { auto guard = ddp.no_sync(); loss(first_half).backward(); }
  //   loss(second_half).backward(); ddp.finish_gradient_synchronization(); opt.step();
  class NoSync {
   public:
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    friend class DistributedDataParallel;
    explicit NoSync(std::shared_ptr<Reducer> reducer);
    std::shared_ptr<Reducer> reducer_;
    bool previous_;  // guards nest: the enclosing state comes back
  };
  [[nodiscard]] NoSync no_sync();

  // The parameters' names (as named_parameters()) in each bucket, in all-reduce order.
  std::vector<std::vector<std::string>> bucket_parameter_names() const;
  const GradientSyncTiming& last_sync_timing() const;

 private:
  std::shared_ptr<Module<T>> module_;
  DistributedDataParallelOptions options_;
  std::shared_ptr<Reducer> reducer_;  // the hooks hold it weakly
};

// torch.nn.SyncBatchNorm: batch normalisation over the whole global batch, x (N, C, *) on
// each rank: in training (and in eval without running statistics) the mean and variance
// of each channel are reduced over every rank's rows (two all-reduces forward, two in
// backward), so N ranks on shares of a batch compute what one BatchNorm computes on the
// whole; the running statistics (unbiased over the global count) are then the same on every
// rank. Eval with running statistics is BatchNorm's, local. Every rank must call forward
// (and backward) together. Names as BatchNorm's (weight, bias, running_mean, running_var,
// num_batches_tracked), so state dicts move between the two.
template <class T> class SyncBatchNorm : public BatchNorm<T> {
 public:
  explicit SyncBatchNorm(std::size_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                         bool affine = true, bool track_running_stats = true);
  Tensor<T> forward(const Tensor<T>& x) override;
};

// PyTorch's SyncBatchNorm.convert_sync_batchnorm: every BatchNorm1d/2d inside a Sequential
// below `module` becomes a SyncBatchNorm of the same settings and state. Returns how many;
// std::invalid_argument naming a BatchNorm held any other way (a C++ member cannot be
// swapped from outside: build that one as a SyncBatchNorm). Convert before building the
// optimizer and the DistributedDataParallel wrapper, as in PyTorch.
template <class T> std::size_t convert_sync_batchnorm(Module<T>& module);

}  // namespace xtgrad::distributed
