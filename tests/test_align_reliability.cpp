// Reliability of the toy task: checkpoints survive SIGKILL at any moment (a resumed run
// then ends bit-identical to an uninterrupted one), evaluation from two threads at once
// under the per-thread no-grad guard gives the one-thread answer, and a diverging run
// stops with a clear message and keeps its last finite checkpoint.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "align_test_helpers.hpp"
#include "checkpoint.hpp"
#include "helpers.hpp"
#include "metrics.hpp"
#include "train.hpp"

using namespace align;
using namespace align_test;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Starts xtgrad-align with `args`, its stdout and stderr going to `log`; returns its pid.
pid_t spawn_align(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> all{XTGRAD_ALIGN_BIN};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {  // the child: only async-signal-safe calls until exec
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// The names in `dir` that contain `part` (readdir: cheap enough to spin on).
std::vector<std::string> names_containing(const std::string& dir, const std::string& part) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* entry = ::readdir(d))
      if (std::strstr(entry->d_name, part.c_str())) names.emplace_back(entry->d_name);
    ::closedir(d);
  }
  return names;
}

// A file's inode: a rename over it gives it a new one. 0 when it does not exist.
ino_t inode_of(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 ? info.st_ino : 0;
}

template <class Container> bool all_finite(const Container& values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}

// The step of a train state file, after checking that it loads whole and is finite.
std::size_t train_state_step(const std::string& path) {
  const xtgrad::Safetensors<float> file = xtgrad::load_safetensors<float>(path);
  for (const auto& [name, value] : file.tensors)
    if (!all_finite(value)) throw std::runtime_error(path + ": '" + name + "' is not finite");
  return std::stoul(file.metadata.at("step"));
}

// The model's step, after checking that it loads (align::load_model) and is finite.
std::size_t model_step(const std::string& dir) {
  const LoadedModel loaded = load_model(dir);
  for (const auto& [name, p] : loaded.model->named_parameters())
    if (!all_finite(p.data())) throw std::runtime_error("parameter '" + name + "' is not finite");
  return loaded.step;
}

// Kills and reaps a child still running at scope exit (a failed REQUIRE leaves none behind).
struct ChildGuard {
  pid_t pid = 0;
  ~ChildGuard() {
    if (pid > 0 && ::kill(pid, SIGKILL) == 0) ::waitpid(pid, nullptr, 0);
  }
};

// The small settings of the kill test (with an evaluation and a checkpoint every step).
const std::vector<std::string> kSmallData = {"--train-size", "400", "--test-size", "100", "--batch", "16"};

}  // namespace

// ---- crash safety ---------------------------------------------------------------------
// Training is killed with SIGKILL over and over, at pseudo-random moments and at the
// moments a save is under way (a temporary file of the process has just appeared, the
// model has just been renamed into place). After every kill the run directory must hold a
// checkpoint that loads and is finite, and the next life resumes from it; the last life
// runs to completion and must end bit-identical to a run that was never interrupted.
TEST_CASE("reliability: training killed with SIGKILL at any moment resumes from a consistent checkpoint") {
  TempDir root("kill");
  const std::string run = root / "run", log = root / "life.log";
  const std::string model_file = run + "/" + kModelFile, state_file = run + "/" + kTrainStateFile;
  const std::string next_file = run + "/train_state.next.safetensors";
  constexpr int kTargetKills = 20;
  constexpr double kBudgetSeconds = 14;  // for the kills; the final resume and reference follow

  enum Moment { kDelay, kFirstTemp, kModelTemp, kStateTemp, kModelRenamed, kMoments };
  const char* const moment_names[kMoments] = {"a random delay", "the first temporary file",
                                              "the model's temporary file", "the train state's temporary file",
                                              "the model's rename"};
  // Delays from a fixed seed; where they land still depends on the machine's timing.
  std::mt19937 rng(20240607);
  std::uniform_int_distribution<int> delay_ms(5, 150);

  int kills = 0, lives = 0, caught[kMoments] = {}, missed_spins = 0;
  int landed_in_model_write = 0, landed_in_state_write = 0, between_renames = 0, next_left = 0;
  std::set<std::string> killed_pids;  // as text, to match temporary names
  // Leftover temporaries ("<file>.tmp-<pid>-<n>") may only come from killed processes: a
  // save that completes, or fails, removes its own.
  const auto check_temporaries_are_from_killed = [&] {
    for (const std::string& name : names_containing(run, ".tmp-")) {
      const std::size_t begin = name.find(".tmp-") + 5;
      CHECK_MESSAGE(killed_pids.count(name.substr(begin, name.find('-', begin) - begin)),
                    name << " belongs to no killed process");
    }
  };
  const auto start = Clock::now();
  bool resumable = true;
  ChildGuard child;
  while (kills < kTargetKills && seconds_since(start) < kBudgetSeconds && resumable) {
    std::vector<std::string> args{"train", "--steps", "100000"};
    if (lives == 0) {
      args.insert(args.end(), {"--out", run, "--eval-every", "1"});
      args.insert(args.end(), kSmallData.begin(), kSmallData.end());
    } else {
      args.insert(args.end(), {"--resume", run, "--eval-every", "1"});  // the run's settings come from it
    }
    const ino_t state_before = inode_of(state_file);
    const pid_t pid = spawn_align(args, log);
    REQUIRE(pid > 0);
    child.pid = pid;
    ++lives;
    const std::string pid_text = std::to_string(pid), own_temp = ".tmp-" + pid_text + "-";

    // Wait for this life's first complete checkpoint (the train state replaced), or its end.
    int status = 0;
    bool exited = false;
    const auto life_start = Clock::now();
    while (inode_of(state_file) == state_before || inode_of(state_file) == 0) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        child.pid = 0;
        break;
      }
      if (seconds_since(life_start) > 20) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (exited) {  // a resume that failed: the evidence is in its output
      FAIL_CHECK("life " << lives << " exited before its first checkpoint (status " << status
                         << "): " << file_text(log));
      resumable = false;
      break;
    }
    REQUIRE_MESSAGE(seconds_since(life_start) <= 20, "no checkpoint after 20 s: " << file_text(log));

    // Kill it at one of the moments.
    const Moment schedule[] = {kDelay, kFirstTemp, kDelay, kModelTemp, kDelay, kStateTemp, kDelay, kModelRenamed};
    const Moment moment = schedule[kills % 8];
    const ino_t model_before = inode_of(model_file);
    bool seen = true;
    if (moment == kDelay) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    } else {
      const auto spin_start = Clock::now();
      for (seen = false; !seen && seconds_since(spin_start) < 2;) {
        if (moment == kModelRenamed) {
          seen = inode_of(model_file) != model_before;
          continue;
        }
        for (const std::string& name : names_containing(run, own_temp))
          if (moment == kFirstTemp || (moment == kModelTemp && name.rfind("model.", 0) == 0) ||
              (moment == kStateTemp && name.rfind("train_state", 0) == 0))
            seen = true;
      }
    }
    REQUIRE(::kill(pid, SIGKILL) == 0);
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    child.pid = 0;
    CHECK_MESSAGE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL),
                  "life " << lives << " ended by itself (status " << status << "): " << file_text(log));
    ++kills;
    killed_pids.insert(pid_text);
    (seen ? caught[moment] : missed_spins)++;

    // What the kill interrupted, from what it left.
    for (const std::string& name : names_containing(run, own_temp))
      (name.rfind("model.", 0) == 0 ? landed_in_model_write : landed_in_state_write)++;
    std::size_t at = 0, state_at = 0;
    try {
      at = model_step(run);
      state_at = train_state_step(state_file);
    } catch (const std::exception& e) {
      FAIL_CHECK("after kill " << kills << " (" << moment_names[moment] << "): " << e.what());
      resumable = false;
      break;
    }
    CHECK(at >= 1);
    // The train state that belongs to the model: train_state.safetensors, or right after
    // the model's rename, train_state.next.safetensors (see save_checkpoint in train.cpp).
    std::size_t next_at = 0;
    if (fs::exists(next_file)) {
      ++next_left;
      CHECK_NOTHROW(next_at = train_state_step(next_file));
    }
    if (state_at != at) ++between_renames;
    CHECK_MESSAGE((state_at == at || next_at == at),
                  "after kill " << kills << " (" << moment_names[moment] << "): the model is at step " << at
                                << ", the train states at " << state_at << " and " << next_at);
    check_temporaries_are_from_killed();
  }
  const double kill_seconds = seconds_since(start);
  const std::size_t leftovers = names_containing(run, ".tmp-").size();
  MESSAGE(kills << " kills in " << lives << " lives, " << kill_seconds << " s; caught at: delay " << caught[kDelay]
                << ", first temp " << caught[kFirstTemp] << ", model temp " << caught[kModelTemp] << ", state temp "
                << caught[kStateTemp] << ", model rename " << caught[kModelRenamed] << ", spins missed " << missed_spins
                << "; landed in a model write " << landed_in_model_write << ", in a train state write "
                << landed_in_state_write << ", between the two renames " << between_renames
                << " (train_state.next left " << next_left << "); stale temporaries now " << leftovers);
  CHECK(kills >= 10);
  CHECK(landed_in_model_write + landed_in_state_write + between_renames >= 1);     // some kills did hit a save
  CHECK(leftovers <= std::size_t(landed_in_model_write + landed_in_state_write));  // one per killed write at most
  REQUIRE(resumable);

  // The last life runs two more steps to completion ...
  const std::size_t at = model_step(run), end = at + 2;
  std::string text;
  REQUIRE_MESSAGE(
      run_align("train --resume " + run + " --steps " + std::to_string(end) + " --eval-every 1", &text) == 0, text);
  CHECK(model_step(run) == end);
  CHECK(train_state_step(state_file) == end);
  CHECK_FALSE(fs::exists(next_file));
  // train() removes the temporaries of dead writers when it starts: none are left.
  CHECK(names_containing(run, ".tmp-").empty());
  // ... and ends where a run never interrupted ends (with the same --eval-every: it is
  // stored in the model file).
  std::string settings;
  for (const auto& a : kSmallData) settings += a + " ";
  REQUIRE(run_align("train --steps " + std::to_string(end) + " " + settings + "--eval-every 1 --out " +
                    (root / "reference")) == 0);
  const bool same_model = same_but_run_id(model_file, root / "reference/model.safetensors");
  const bool same_state = same_but_run_id(state_file, root / "reference/train_state.safetensors");
  CHECK(same_model);
  CHECK(same_state);
  MESSAGE("resumed to step " << end << " after " << kills << " kills: "
                             << std::string(same_model && same_state ? "bit-identical to" : "DIFFERENT from")
                             << " an uninterrupted run; " << names_containing(run, ".tmp-").size()
                             << " stale temporaries remain");
  CHECK(seconds_since(start) < 40);  // the whole test stays short (about 15-20 s)
}

// The two windows of a save at step N (save_checkpoint in train.cpp), made by hand: the
// kill test hits them only by chance. Before the fix (the model first, then the train
// state in place) the second window left a run that could never be resumed.
TEST_CASE("reliability: a checkpoint caught between its writes resumes, a mismatched one is refused") {
  TempDir dir("windows");
  const std::string settings = "--train-size 400 --test-size 100 --batch 16 ";
  const std::string a = dir / "a", saved = dir / "saved";
  REQUIRE(run_align("train --steps 4 " + settings + "--eval-every 1 --out " + (dir / "reference")) == 0);
  REQUIRE(run_align("train --steps 1 " + settings + "--eval-every 1 --out " + a) == 0);
  fs::create_directories(saved);
  fs::copy_file(a + "/" + kModelFile, saved + "/model1");
  fs::copy_file(a + "/" + kTrainStateFile, saved + "/state1");
  REQUIRE(run_align("train --resume " + a + " --steps 2 --eval-every 1") == 0);
  CHECK_FALSE(fs::exists(a + "/train_state.next.safetensors"));  // a complete save leaves none

  // model, train_state, train_state.next -> does it resume (0) and end as the reference?
  const auto resume = [&](const std::string& name, const char* model, const char* state, const char* next,
                          std::string* text) {
    const std::string run = dir / name;
    fs::create_directories(run);
    const auto put = [&](const char* from, const std::string& to) {
      if (from) fs::copy_file(saved + "/" + from, run + "/" + to);
    };
    put(model, kModelFile);
    put(state, kTrainStateFile);
    put(next, "train_state.next.safetensors");
    return run_align("train --resume " + run + " --steps 4 --eval-every 1", text);
  };
  fs::copy_file(a + "/" + kModelFile, saved + "/model2");
  fs::copy_file(a + "/" + kTrainStateFile, saved + "/state2");
  std::string text;
  // Killed between the model's rename and the train state's: the model is at 2, .next too.
  CHECK_MESSAGE(resume("between-renames", "model2", "state1", "state2", &text) == 0, text);
  // Killed before the model's rename: both at 1, a .next of step 2 left over.
  CHECK_MESSAGE(resume("before-model", "model1", "state1", "state2", &text) == 0, text);
  for (const char* name : {"between-renames", "before-model"}) {
    CAPTURE(name);
    CHECK(same_but_run_id(dir / name + "/" + kModelFile, dir / "reference/model.safetensors"));
    CHECK(same_but_run_id(dir / name + "/" + kTrainStateFile, dir / "reference/train_state.safetensors"));
    CHECK_FALSE(fs::exists(dir / name + "/train_state.next.safetensors"));
  }
  // No train state of the model's step anywhere (what the old save order left): refused.
  CHECK(resume("mismatched", "model2", "state1", nullptr, &text) == 1);
  CHECK_MESSAGE(text.find("train_state.safetensors: it is at step 1 but the model is at step 2") != std::string::npos,
                text);
}

// ---- threads --------------------------------------------------------------------------
namespace {

struct ThreadResult {
  Metrics metrics;
  xtgrad::Array<float> scores, attention;
  bool grad_was_off = false, recorded = true;
};

bool bitwise_equal(const xtgrad::Array<float>& a, const xtgrad::Array<float>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("reliability: evaluation from two threads at once under no-grad equals one thread") {
  TempDir dir("threads");
  TrainOptions options;
  options.steps = options.eval_every = 40;
  options.train_size = 400;
  options.test_size = 200;
  options.batch = 16;
  options.threads = 1;  // OpenBLAS threads: the configuration known to be safe here
  options.out_dir = dir.path.string();
  std::ostringstream log;
  train(options, log);
  xtgrad::set_num_threads(1);
  REQUIRE(xtgrad::num_threads() == 1);

  LoadedModel loaded = load_model(dir.path.string());
  AlignModel<float>& model = *loaded.model;
  const std::vector<Example> test = generate(options.test_size, options.seed + 1);
  std::vector<std::size_t> block(kBlock);
  for (std::size_t i = 0; i < kBlock; ++i) block[i] = kBlock + i;  // the second block
  const xtgrad::Tensor<float> patches = patch_batch<float>(test, block);
  const std::vector<std::size_t> ids = caption_batch(test, block);

  // One thread.
  const Metrics reference = evaluate(model, test);
  xtgrad::Array<float> reference_scores, reference_attention;
  {
    xtgrad::NoGradGuard no_grad;
    const ModelOutput<float> out = model.forward(patches, ids);
    reference_scores = out.scores.data();
    reference_attention = out.attention.data();
  }
  REQUIRE(all_finite(reference_scores));
  REQUIRE(reference.p_at_1 > 0.05);  // trained a little: far from degenerate ties
  MESSAGE("one thread: P@1 " << reference.p_at_1 << ", grounding " << reference.grounding);

  // Two threads, started together, several times over.
  for (int round = 0; round < 4; ++round) {
    std::atomic<int> ready{0};
    ThreadResult results[2];
    const auto work = [&](ThreadResult& r) {
      xtgrad::NoGradGuard no_grad;
      r.grad_was_off = !xtgrad::grad_enabled();
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      r.metrics = evaluate(model, test);
      const ModelOutput<float> out = model.forward(patches, ids);
      r.scores = out.scores.data();
      r.attention = out.attention.data();
      r.recorded = out.scores.requires_grad();
    };
    std::thread a(work, std::ref(results[0])), b(work, std::ref(results[1]));
    a.join();
    b.join();
    for (const ThreadResult& r : results) {
      CHECK(r.grad_was_off);
      CHECK_FALSE(r.recorded);
      CHECK(r.metrics.p_at_1 == reference.p_at_1);  // exactly
      CHECK(r.metrics.grounding == reference.grounding);
      CHECK(bitwise_equal(r.scores, reference_scores));
      CHECK(bitwise_equal(r.attention, reference_attention));
    }
  }
  CHECK(xtgrad::grad_enabled());  // the threads' guards never touched this thread
}

TEST_CASE("reliability: a NoGradGuard on one thread does not stop recording on another") {
  xtgrad::set_num_threads(1);
  xtgrad::Generator gen(3);
  AlignModel<float> model(ModelConfig{32, 2, true}, gen);
  const std::vector<Example> data = generate(100, 11);
  std::vector<std::size_t> idx(8);
  for (std::size_t i = 0; i < 8; ++i) idx[i] = i;
  const xtgrad::Tensor<float> patches = patch_batch<float>(data, idx);
  const std::vector<std::size_t> ids = caption_batch(data, idx);
  const Metrics reference = evaluate(model, data);

  // Thread A holds a guard and evaluates while thread B, with none, records and
  // back-propagates through the same model; they overlap for sure: B starts only once A's
  // guard is alive, and A releases its guard only once B is done.
  std::atomic<int> phase{0};
  bool a_off = false, a_recorded = true, a_on_after = false, b_on = false, b_recorded = false, b_grads = false;
  Metrics a_metrics;
  xtgrad::Tensor<float> x({1.0f, 2.0f, 3.0f}, true);
  xtgrad::Array<float> x_grad;
  std::thread a([&] {
    {
      xtgrad::NoGradGuard no_grad;
      a_off = !xtgrad::grad_enabled();
      phase.store(1);
      a_metrics = evaluate(model, data);
      a_recorded = (x * 2.0f).requires_grad();
      while (phase.load() < 2) std::this_thread::yield();
    }
    a_on_after = xtgrad::grad_enabled();
  });
  std::thread b([&] {
    while (phase.load() < 1) std::this_thread::yield();
    b_on = xtgrad::grad_enabled();
    xtgrad::Tensor<float> y = xtgrad::sum(x * 2.0f);
    b_recorded = y.requires_grad() && !y.is_leaf();
    y.backward();
    x_grad = x.grad();
    model.zero_grad();
    const ModelOutput<float> out = model.forward(patches, ids);
    xtgrad::Tensor<float> loss = alignment_loss(out.scores, data, idx);
    loss.backward();
    b_grads = out.scores.requires_grad() && model.patch_embed->weight.has_grad() &&
              xt::any(xt::abs(model.patch_embed->weight.grad()) > 0.0f);
    phase.store(2);
  });
  a.join();
  b.join();
  CHECK(a_off);
  CHECK_FALSE(a_recorded);
  CHECK(a_on_after);
  CHECK(b_on);
  CHECK(b_recorded);
  CHECK(x_grad == xtgrad::Array<float>{2.0f, 2.0f, 2.0f});
  CHECK(b_grads);
  CHECK(a_metrics.p_at_1 == reference.p_at_1);
  CHECK(a_metrics.grounding == reference.grounding);
}

// ---- a diverging run ------------------------------------------------------------------
TEST_CASE("reliability: a loss that becomes non-finite stops the run with code 1 and keeps a finite checkpoint") {
  TempDir dir("diverge");
  const std::string settings = "--lr 1e30 --steps 50 --eval-every 1 --train-size 400 --test-size 100 --batch 16 --out ";
  std::string text;
  CHECK(run_align("train " + settings + dir.path.string(), &text) == 1);
  CHECK_MESSAGE(text.find("xtgrad-align: the loss became ") != std::string::npos, text);
  CHECK_MESSAGE((text.find("nan at step") != std::string::npos || text.find("inf at step") != std::string::npos), text);
  CHECK_MESSAGE(text.find(" in " + dir.path.string() + " is kept") != std::string::npos, text);
  CHECK(text.find("done: step") == std::string::npos);
  // The checkpoint on disk is the last finite one, and it is whole.
  const std::size_t at = model_step(dir.path.string());
  CHECK(at >= 1);
  CHECK(at < 50);
  CHECK(train_state_step(dir / kTrainStateFile) == at);
  CHECK(text.find("at step " + std::to_string(at + 1)) != std::string::npos);  // the step after it failed
  CHECK(text.find("the checkpoint of step " + std::to_string(at) + " in") != std::string::npos);
  CHECK(names_containing(dir.path.string(), ".tmp-").empty());

  // With --detect-anomaly the message names the op that produced the first NaN or Inf.
  TempDir anomaly_dir("diverge-anomaly");
  CHECK(run_align("train --detect-anomaly " + settings + anomaly_dir.path.string(), &text) == 1);
  CHECK_MESSAGE(text.find("xtgrad-align: anomaly detected: the forward of op '") != std::string::npos, text);
  // The evaluation after step 1, which comes before that step's checkpoint, already meets
  // an Inf: nothing is saved.
  CHECK_FALSE(fs::exists(anomaly_dir / kModelFile));
}
