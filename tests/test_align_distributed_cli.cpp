// xtgrad-align train under mpiexec (docs/distributed.md), run as a child process: N ranks
// on shares of each global batch end where one process ends, rank 0 alone writes, --resume
// works on as many ranks and is refused on another count, bad input on any rank stops every
// rank. The pieces of examples/common/data_parallel.hpp are tested here too. (The kill of a
// rank mid-run: test_align_distributed_fault.sh.)
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "align_test_helpers.hpp"
#include "checkpoint.hpp"
#include "data_parallel.hpp"
#include "helpers.hpp"
#include "model.hpp"
#include "xtgrad/safetensors.hpp"

using namespace align;
using namespace align_test;
namespace fs = std::filesystem;

namespace {

// SGD (its updates scale with the gradient, so a wrongly weighted share would show; Adam's
// normalised steps would hide a uniform factor), 10 steps that move the parameters by 1e-4
// to 1e-2, a checkpoint every 5.
const std::string kRun =
    "train --eval-every 5 --train-size 400 --test-size 100 --batch 24 --dim 32 --heads 2 "
    "--optimizer sgd --lr 0.5 ";

// mpiexec with its flags (tests/CMakeLists.txt), stopped after 60 s: a run whose ranks wait
// for each other forever fails instead of hanging the suite.
const std::string kMpiexec = "timeout 60 " XTGRAD_MPIEXEC;

// mpiexec on `ranks` ranks of xtgrad-align.
int run_ranks(int ranks, const std::string& args, std::string* output = nullptr) {
  return xtgrad::testing::run_program(kMpiexec + " -np " + std::to_string(ranks) + " " XTGRAD_ALIGN_BIN, args, output);
}

std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// The largest |a - e| over every element of every parameter.
double max_abs_difference(const xtgrad::StateDict<float>& actual, const xtgrad::StateDict<float>& expected) {
  double worst = 0;
  for (const auto& [name, e] : expected) {
    const xtgrad::Array<float>& a = actual.at(name);
    REQUIRE(a.shape() == e.shape());
    for (std::size_t i = 0; i < e.size(); ++i) worst = std::max(worst, double(std::abs(a.data()[i] - e.data()[i])));
  }
  return worst;
}

xtgrad::Safetensors<float> model_of(const std::string& dir) {
  return xtgrad::load_safetensors<float>(dir + "/" + kModelFile);
}

std::string files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  std::string all;
  for (const auto& n : names) all += n + " ";
  return all;
}

}  // namespace

TEST_CASE("data parallel: a global batch is split into contiguous shares, the first ranks one row more") {
  const auto share = [](std::size_t batch, std::size_t rank, std::size_t size) {
    const common::Share s = common::share_of_batch(batch, {rank, size});
    return std::make_pair(s.first, s.count);
  };
  CHECK(share(10, 0, 3) == std::make_pair<std::size_t, std::size_t>(0, 4));
  CHECK(share(10, 1, 3) == std::make_pair<std::size_t, std::size_t>(4, 3));
  CHECK(share(10, 2, 3) == std::make_pair<std::size_t, std::size_t>(7, 3));
  CHECK(share(32, 1, 2) == std::make_pair<std::size_t, std::size_t>(16, 16));
  CHECK(share(32, 0, 1) == std::make_pair<std::size_t, std::size_t>(0, 32));
  CHECK(share(3, 2, 3) == std::make_pair<std::size_t, std::size_t>(2, 1));
  xtgrad::testing::check_throws_with(
      [] {
        common::check_batch_covers_ranks("--batch", 2, {0, 3});
      },
      {"--batch 2 is smaller than the 3 ranks"});
  common::check_batch_covers_ranks("--batch", 3, {0, 3});
}

TEST_CASE("data parallel: the launch is read from the launcher's environment, none without one") {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK",
                           "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    REQUIRE_MESSAGE(std::getenv(name) == nullptr, name << " is set: run this test without a launcher");
  CHECK_FALSE(common::launch_from_environment().by_mpi);
  ::setenv("OMPI_COMM_WORLD_RANK", "2", 1);
  ::setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  ::setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1);
  const common::Launch launch = common::launch_from_environment();
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE"})
    ::unsetenv(name);
  CHECK(launch.by_mpi);
  CHECK(launch.ranks.rank == 2);
  CHECK(launch.ranks.size == 4);
  CHECK(launch.local_ranks == 2);
  CHECK(common::default_threads_per_rank(1) >= 1);
  CHECK(common::default_threads_per_rank(1000) == 1);
}

TEST_CASE("align data-parallel: 2 and 3 ranks end at one process's parameters, rank 0 alone writes") {
  TempDir dir("dp");
  std::string text;
  REQUIRE_MESSAGE(run_align(kRun + "--steps 10 --out " + (dir / "one"), &text) == 0, text);
  const auto expected = model_of(dir / "one");
  xtgrad::Generator init_gen(0);  // the run's initialisation (seed 0)
  const auto init = AlignModel<float>(ModelConfig{32, 2, true}, init_gen).state_dict();
  CHECK(max_abs_difference(init, expected.tensors) > 1e-3);  // the steps moved the parameters
  for (const int ranks : {2, 3}) {
    CAPTURE(ranks);
    const std::string out = dir / ("ranks" + std::to_string(ranks));
    REQUIRE_MESSAGE(run_ranks(ranks, kRun + "--steps 10 --out " + out, &text) == 0, text);
    const auto actual = model_of(out);
    // Float round-off: the ranks add the same products in other orders (their own row
    // blocks of each product, the all-reduce's sums); measured at most 1.2e-7, one ulp of
    // the largest parameters (|p| <= 4): the tolerance is 8 ulps of 1.
    const double diff = max_abs_difference(actual.tensors, expected.tensors);
    CHECK_MESSAGE(diff <= 1e-6, "largest difference " << diff);
    CHECK(actual.metadata.at("world_size") == std::to_string(ranks));
    CHECK(actual.metadata.at("threads") == "1");     // 2 cores shared by 2 or 3 ranks
    CHECK(occurrences(text, "done: step 10") == 1);  // the other ranks print nothing
    CHECK(occurrences(text, "generating 400 training") == 1);
    CHECK(files_in(out) == ".lock metrics.jsonl model.safetensors train_state.safetensors ");
    CHECK(occurrences(read_file(out + "/metrics.jsonl"), "\"step\": ") == 2);
  }
  CHECK(expected.metadata.count("world_size") == 0);  // one process writes what it wrote before
}

TEST_CASE("align data-parallel: --resume on as many ranks continues bit-identically, another count is refused") {
  TempDir dir("dp-resume");
  const std::string a = dir / "a", b = dir / "b";
  std::string text;
  REQUIRE_MESSAGE(run_ranks(2, kRun + "--steps 10 --out " + a, &text) == 0, text);
  CHECK(run_ranks(3, "train --resume " + a + " --steps 20", &text) == 2);
  CHECK_MESSAGE(text.find("was trained on 2 ranks (mpirun -np 2) and this resume runs on 3") != std::string::npos,
                text);
  CHECK(occurrences(text, "was trained on") == 1);  // reported once, by rank 0
  CHECK(run_align("train --resume " + a + " --steps 20", &text) == 2);
  CHECK(text.find("and this resume runs on 1") != std::string::npos);
  REQUIRE_MESSAGE(run_ranks(2, "train --resume " + a + " --steps 20", &text) == 0, text);
  REQUIRE_MESSAGE(run_ranks(2, kRun + "--steps 20 --out " + b, &text) == 0, text);
  CHECK(same_but_run_id(a + "/model.safetensors", b + "/model.safetensors"));
  CHECK(same_but_run_id(a + "/train_state.safetensors", b + "/train_state.safetensors"));
}

TEST_CASE("align data-parallel: bad input on any rank stops every rank with its message") {
  TempDir dir("dp-bad");
  std::string text;
  CHECK(run_ranks(3, "train --batch 2 --out " + (dir / "x"), &text) == 2);
  CHECK(occurrences(text, "--batch 2 is smaller than the 3 ranks") == 1);
  CHECK(run_ranks(2, "train --steps -1 --out " + (dir / "x"), &text) == 2);
  CHECK(occurrences(text, "--steps: -1 is out of range") + occurrences(text, "\"-1\" is not") == 1);
  // Rank 1 alone cannot read its checkpoint (another command line for it: mpiexec's MPMD
  // form): every rank stops before training, rank 1's message says why.
  const std::string a = dir / "a";
  REQUIRE_MESSAGE(run_ranks(2, kRun + "--steps 10 --out " + a, &text) == 0, text);
  const std::string before = read_file(a + "/model.safetensors");
  const std::string rank0 = XTGRAD_ALIGN_BIN " train --steps 20 --resume " + a;
  const std::string rank1 = XTGRAD_ALIGN_BIN " train --steps 20 --resume " + (dir / "missing");
  const int code = xtgrad::testing::run_program(kMpiexec + " -np 1 " + rank0 + " : -np 1", rank1, &text);
  CHECK(code == 1);
  CHECK_MESSAGE(
      text.find("xtgrad-align rank 1: checkpoint " + (dir / "missing") + " does not exist") != std::string::npos, text);
  CHECK(text.find("done:") == std::string::npos);
  CHECK(read_file(a + "/model.safetensors") == before);
  // Ranks given other settings would wait for each other forever once one finished.
  const std::string run = XTGRAD_ALIGN_BIN " " + kRun + "--out " + (dir / "b") + " --steps ";
  CHECK(xtgrad::testing::run_program(kMpiexec + " -np 1 " + run + "10 : -np 1", run + "20", &text) == 2);
  CHECK(occurrences(text, "the ranks were started with different settings (rank 1's differ from rank 0's)") == 1);
}
