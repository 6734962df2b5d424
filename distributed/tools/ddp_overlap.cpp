// How much of DistributedDataParallel's communication hides behind backward():
//   mpiexec -np 2 build/bin/xtgrad-ddp-overlap [steps]
// An MLP of 4 Linear(1024, 1024) + Tanh in float (16 MB of gradients), 64 rows per rank.
// Medians over the steps, rank 0's clock: backward alone (the model without the wrapper),
// one blocking MPI all-reduce of 16 MB alone (the cost to hide), and for bucket caps of 1
// and 25 MB (25: one bucket, started by the last gradient, so nothing overlaps)
// backward + synchronization, the wait left in finish_gradient_synchronization() and the
// time from the last bucket's start to the end of the wait. The exposed communication is
// (backward + sync) - backward alone.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "xtgrad/distributed.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
namespace dist = xtgrad::distributed;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::shared_ptr<Sequential<float>> make_mlp() {
  Generator gen(1);
  auto mlp = std::make_shared<Sequential<float>>();
  for (int i = 0; i < 4; ++i) {
    mlp->push_back(std::make_shared<Linear<float>>(1024, 1024, true, gen));
    mlp->push_back(std::make_shared<Tanh<float>>());
  }
  return mlp;
}

// Median seconds of backward() on the plain model.
double backward_alone(int steps) {
  auto mlp = make_mlp();
  Generator gen(2 + dist::rank());
  const Tensor<float> x = randn<float>({64, 1024}, gen);
  std::vector<double> times;
  for (int s = 0; s < steps; ++s) {
    mlp->zero_grad();
    Tensor<float> loss = mean((*mlp)(x));
    const double start = now();
    loss.backward();
    times.push_back(now() - start);
  }
  return median(times);
}

// Median seconds of one blocking all-reduce of n floats.
double all_reduce_alone(std::size_t n, int steps) {
  Array<float> flat = Array<float>::from_shape({n});
  flat.fill(1.0f);
  std::vector<double> times;
  for (int s = 0; s < steps; ++s) {
    dist::barrier();
    const double start = now();
    dist::all_reduce(flat);
    times.push_back(now() - start);
  }
  return median(times);
}

void measure(double cap_mb, int steps, double backward_s) {
  dist::DistributedDataParallelOptions options;
  options.bucket_cap_mb = cap_mb;
  dist::DistributedDataParallel<float> ddp(make_mlp(), options);
  Generator gen(2 + dist::rank());
  const Tensor<float> x = randn<float>({64, 1024}, gen);
  std::vector<double> total, wait, after_last_start;
  for (int s = 0; s < steps; ++s) {
    ddp.zero_grad();
    Tensor<float> loss = mean(ddp(x));
    dist::barrier();
    const double start = now();
    loss.backward();
    ddp.finish_gradient_synchronization();
    const auto& t = ddp.last_sync_timing();
    total.push_back(t.wait_end - start);
    wait.push_back(t.wait_end - t.wait_begin);
    after_last_start.push_back(t.wait_end - t.last_bucket_start);
  }
  if (dist::rank() == 0)
    std::printf(
        "cap %4.1f MB, %zu buckets: backward+sync %.1f ms (exposed communication %.1f ms), wait in finish "
        "%.1f ms, last bucket start to end of wait %.1f ms\n",
        cap_mb, ddp.bucket_parameter_names().size(), 1e3 * median(total), 1e3 * (median(total) - backward_s),
        1e3 * median(wait), 1e3 * median(after_last_start));
}
}  // namespace

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20;
  if (steps <= 0) {
    std::fprintf(stderr, "usage: xtgrad-ddp-overlap [steps > 0]\n");
    return 2;
  }
  const double backward_s = backward_alone(steps);
  const double reduce_s = all_reduce_alone(make_mlp()->parameter_count(), steps);
  if (dist::rank() == 0)
    std::printf("%d ranks: backward alone %.1f ms, all-reduce of the gradients alone %.1f ms\n", dist::world_size(),
                1e3 * backward_s, 1e3 * reduce_s);
  for (const double cap : {1.0, 25.0}) measure(cap, steps, backward_s);
  return 0;
}
