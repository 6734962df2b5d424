// Faults under DistributedDataParallel, for the ctest fault tests (tests/CMakeLists.txt):
//   mpiexec -np 2 xtgrad-ddp-fault kill K    rank 1 sends itself SIGKILL at step K
//   mpiexec -np 2 xtgrad-ddp-fault throw K   rank 1 alone throws std::invalid_argument at
//                                            step K (bad input on one rank only)
// Every rank trains a small MLP on its own rows for 20 steps and rank 0 prints
// "step k done" after each; the other ranks are then waiting in the step's all-reduce when
// rank 1 fails. A kill: mpiexec sees the lost rank and ends the others. A throw: the
// exception escapes abort_on_exception, which stops every rank through MPI_Abort with the
// message. Either way mpiexec exits non-zero instead of hanging.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "xtgrad/distributed.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
namespace dist = xtgrad::distributed;

namespace {
constexpr int kSteps = 20;

// rank 1 fails at step fault_step as `mode` says; the others train on.
void fail_here(const std::string& mode, int step) {
  std::printf("rank 1: %s at step %d\n", mode == "kill" ? "SIGKILL" : "throwing", step);
  std::fflush(stdout);
  if (mode == "kill") std::raise(SIGKILL);
  throw std::invalid_argument("bad input on rank 1 only: step " + std::to_string(step) + "'s batch is unreadable");
}

int train(const std::string& mode, int fault_step) {
  Generator gen(1);
  auto mlp = std::make_shared<Sequential<float>>(std::vector<std::shared_ptr<UnaryModule<float>>>{
      std::make_shared<Linear<float>>(16, 32, true, gen), std::make_shared<Tanh<float>>(),
      std::make_shared<Linear<float>>(32, 4, true, gen)});
  dist::DistributedDataParallel<float> ddp(mlp);
  SGD<float> opt(ddp.parameters(), SGDOptions().set_lr(0.1));
  Generator data(10 + dist::rank());
  for (int step = 1; step <= kSteps; ++step) {
    opt.zero_grad();
    if (dist::rank() == 1 && step == fault_step) fail_here(mode, step);
    mean(ddp(randn<float>({8, 16}, data))).backward();  // (8,16) -> (8,4)
    ddp.finish_gradient_synchronization();
    opt.step();
    if (dist::rank() == 0) std::printf("step %d done\n", step), std::fflush(stdout);
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  const std::string mode = argc == 3 ? argv[1] : "";
  char* end = nullptr;
  const long fault_step = argc == 3 ? std::strtol(argv[2], &end, 10) : 0;
  if (argc == 3 && *end != '\0') return std::fprintf(stderr, "xtgrad-ddp-fault: bad STEP '%s'\n", argv[2]), 2;
  if ((mode != "kill" && mode != "throw") || fault_step < 1 || fault_step > kSteps || dist::world_size() < 2) {
    std::fprintf(stderr, "usage: mpiexec -np 2 xtgrad-ddp-fault kill|throw STEP (1 to 20, 2 or more ranks)\n");
    return 2;
  }
  return dist::abort_on_exception([&] { return train(mode, int(fault_step)); });
}
