// xtgrad-ddp-bench: data-parallel training steps of the align and VQA models under
// DistributedDataParallel, a fixed GLOBAL batch split over the ranks. Rank 0 prints one
// JSON line per model:
//   mpiexec --bind-to none -np R build/bin/xtgrad-ddp-bench [--model align|vqa|all]
//       [--threads N] [--repeats N] [--batch B] [--bucket-cap-mb MB] [--as-share-of N]
// Each repeat runs one step of the DDP model and one step of a twin without DDP on the
// same local batch ("no_comm": no hooks, no all-reduce), so both see the same load; the
// figures are medians over the repeats on rank 0's clock, after a warm-up:
//   step_ms             zero_grad, forward and loss, backward, the synchronization, the
//                       optimizer step; steps_per_s = 1000 / step_ms
//   forward_backward_ms forward and loss and backward (the all-reduces start in backward)
//   sync_ms             finish_gradient_synchronization(): the communication backward did
//                       not hide, and waiting for the slower rank
//   no_comm_step_ms     the twin's whole step
//   allreduce_bytes     the bytes each step all-reduces: every parameter's gradient
//   allreduce_alone_ms  one blocking all-reduce of those bytes after a barrier: the
//                       communication without the wait for a slower rank
// --as-share-of N times, in one process, rank 0's share of an N-rank run (its local batch
// and, for align, all B images): the compute of a step at N ranks, for docs/scaling.md.
// "ranks" is then N, "processes" 1 and "as_share_of" true.
// align: rank r scores its share of the captions against all B images (every rank embeds
// the B pictures: the image side is repeated, the B/R x B pairs are split); the mean loss
// over its captions, averaged by DDP, is the global batch's loss. vqa: rank r's share of
// the pictures, questions and answers. Optimizers as bench.cpp's align_step (Adam, lr
// 1e-3) and vqa_step (AdamW, lr 2e-3, weight decay 0.01; no schedule).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "../examples/align/model.hpp"  // by path: align and vqa both have a model.hpp
#include "../examples/vqa/model.hpp"
#include "flags.hpp"
#include "xtgrad/distributed.hpp"
#include "xtgrad/nn.hpp"

namespace {

using namespace xtgrad;
namespace dist = xtgrad::distributed;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// Rank r's rows [first, first + count) of a global batch over n ranks: the remainder goes
// to the first ranks.
struct Share {
  std::size_t global, ranks, first, count;
  // The factor on the local mean loss so that DDP's average over ranks is the global mean.
  float loss_scale() const { return float(double(ranks) * double(count) / double(global)); }
};
Share share_of(std::size_t global, std::size_t n, std::size_t r) {
  const std::size_t base = global / n, extra = global % n;
  return {global, n, r * base + std::min(r, extra), base + (r < extra ? 1 : 0)};
}

// A model, its optimizer and the loss of this rank's share of one fixed global batch.
struct Workload {
  std::shared_ptr<Module<float>> model;
  std::function<Tensor<float>()> loss;  // forward: a scalar
  std::unique_ptr<Optimizer<float>> optimizer;
};

Workload align_workload(const Share& s) {
  const std::vector<align::Example> data = align::generate(s.global, 0);
  std::vector<std::size_t> all(s.global), mine(s.count);
  std::iota(all.begin(), all.end(), std::size_t{0});
  std::iota(mine.begin(), mine.end(), s.first);
  const Tensor<float> patches = align::patch_batch<float>(data, all);  // (B,16,192)
  const std::vector<std::size_t> ids = align::caption_batch(data, mine);
  const Tensor<float> targets =
      slice(align::alignment_targets<float>(data, all), 0, s.first, s.first + s.count);  // (b,B)
  Generator gen(0);
  auto model = std::make_shared<align::AlignModel<float>>(align::ModelConfig{}, gen);
  Workload w{model, nullptr, std::make_unique<Adam<float>>(model->parameters(), AdamOptions().set_lr(1e-3))};
  const float scale = s.loss_scale();
  w.loss = [model, patches, ids, targets, scale] {
    return cross_entropy(model->forward(patches, ids, false).scores, targets) * scale;  // scores (b,B)
  };
  return w;
}

// bench.cpp's vqa_step batch: random pictures, questions of 4 to 10 words, answers i % 20.
Workload vqa_workload(const Share& s) {
  Generator gen(0);
  auto model = std::make_shared<vqa::VqaModel<float>>(vqa::ModelConfig{}, gen);
  std::vector<std::vector<std::size_t>> questions(s.global);
  std::vector<std::size_t> answers;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    for (std::size_t k = 0; k < 4 + i % 7; ++k) questions[i].push_back(1 + gen.below(vqa::kWordCount - 1));
    answers.push_back(i % vqa::kAnswerCount);
  }
  const Tensor<float> images = slice(rand<float>({s.global, 3, 32, 32}, gen), 0, s.first, s.first + s.count);
  const vqa::QuestionBatch batch =
      vqa::question_batch({questions.begin() + long(s.first), questions.begin() + long(s.first + s.count)});
  const std::vector<std::size_t> my_answers(answers.begin() + long(s.first), answers.begin() + long(s.first + s.count));
  Workload w{model, nullptr,
             std::make_unique<AdamW<float>>(model->parameters(), AdamWOptions().set_lr(2e-3).set_weight_decay(0.01))};
  const float scale = s.loss_scale();
  w.loss = [model, images, batch, my_answers, scale] { return model->loss(images, batch, my_answers) * scale; };
  return w;
}

// Median milliseconds of one blocking all-reduce of n floats, the ranks lined up by a
// barrier first: the communication alone, without waiting for a slower rank.
double all_reduce_alone_ms(std::size_t n, std::size_t repeats) {
  Array<float> flat = Array<float>::from_shape({n});
  flat.fill(1.0f);
  std::vector<double> times;
  for (std::size_t i = 0; i < repeats; ++i) {
    dist::barrier();
    const double start = now();
    dist::all_reduce(flat);
    times.push_back(1e3 * (now() - start));
  }
  return median(times);
}

struct StepTimes {
  double step, forward_backward, sync;
};

// One training step; ddp null: the twin without communication.
StepTimes timed_step(Workload& w, dist::DistributedDataParallel<float>* ddp) {
  const double start = now();
  w.optimizer->zero_grad();
  Tensor<float> loss = w.loss();
  loss.backward();
  const double backward_end = now();
  if (ddp) ddp->finish_gradient_synchronization();
  const double sync_end = now();
  w.optimizer->step();
  return {now() - start, backward_end - start, sync_end - backward_end};
}

struct Settings {
  std::string model = "all";
  std::size_t threads = 1, repeats = 20, batch = 0;  // batch 0: the model's bench batch
  std::size_t as_share_of = 0;                       // > 0: one process times rank 0's share of that many ranks
  double bucket_cap_mb = 25;
};

double load_average() {
  double load = -1;
  std::ifstream("/proc/loadavg") >> load;
  return load;
}

void run_model(const std::string& name, const Settings& s) {
  const std::size_t global = s.batch ? s.batch : (name == "align" ? 32 : 64);
  const std::size_t ranks = s.as_share_of ? s.as_share_of : std::size_t(dist::world_size());
  const Share share = share_of(global, ranks, s.as_share_of ? 0 : std::size_t(dist::rank()));
  const auto make = [&] { return name == "align" ? align_workload(share) : vqa_workload(share); };
  Workload plain = make(), wrapped = make();
  dist::DistributedDataParallelOptions options;
  options.bucket_cap_mb = s.bucket_cap_mb;
  dist::DistributedDataParallel<float> ddp(wrapped.model, options);
  std::vector<StepTimes> with, without;
  const std::size_t warmup = std::max<std::size_t>(2, s.repeats / 10);
  for (std::size_t i = 0; i < warmup + s.repeats; ++i) {
    const StepTimes a = timed_step(wrapped, &ddp), b = timed_step(plain, nullptr);
    if (i >= warmup) with.push_back(a), without.push_back(b);
  }
  const auto med = [](const std::vector<StepTimes>& v, double StepTimes::*field) {
    std::vector<double> x;
    for (const auto& t : v) x.push_back(1e3 * (t.*field));
    return median(x);
  };
  const double step_ms = med(with, &StepTimes::step);
  const double reduce_ms = all_reduce_alone_ms(plain.model->parameter_count(), s.repeats);
  const auto& timing = ddp.last_sync_timing();  // the last step's buckets
  if (dist::rank() != 0) return;
  std::printf(
      "{\"model\": \"%s\", \"ranks\": %zu, \"processes\": %d, \"as_share_of\": %s, \"threads\": %zu, "
      "\"global_batch\": %zu, \"local_batch\": %zu, \"steps_per_s\": %.3f, \"step_ms\": %.3f, "
      "\"forward_backward_ms\": %.3f, \"sync_ms\": %.3f, \"no_comm_step_ms\": %.3f, "
      "\"no_comm_forward_backward_ms\": %.3f, \"allreduce_bytes\": %zu, \"allreduce_alone_ms\": %.3f, "
      "\"parameters\": %zu, \"buckets\": %zu, \"buckets_started_in_backward\": %zu, \"repeats\": %zu, "
      "\"load_average_1min\": %.2f}\n",
      name.c_str(), ranks, dist::world_size(), s.as_share_of ? "true" : "false", s.threads, global, share.count,
      1e3 / step_ms, step_ms, med(with, &StepTimes::forward_backward), med(with, &StepTimes::sync),
      med(without, &StepTimes::step), med(without, &StepTimes::forward_backward),
      plain.model->parameter_count() * sizeof(float), reduce_ms, plain.model->parameter_count(), timing.buckets,
      timing.buckets_started_in_backward, s.repeats, load_average());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  Settings s;
  CLI::App app{"Data-parallel training steps of the align and VQA models (bench/ddp_bench.cpp)"};
  app.add_option("--model", s.model, "align, vqa or all")
      ->capture_default_str()
      ->check(CLI::IsMember({"align", "vqa", "all"}));
  common::add_count_flag(&app, "--threads", s.threads, "threads per rank", 1, std::size_t(max_num_threads()));
  common::add_count_flag(&app, "--repeats", s.repeats, "timed steps (after a warm-up)", 1, 100000);
  common::add_count_flag(&app, "--batch", s.batch, "the global batch (0: align 32, vqa 64)", 0, 4096);
  common::add_count_flag(&app, "--as-share-of", s.as_share_of,
                         "N: time, in this one process, rank 0's share of an N-rank run (no communication)", 0, 4096);
  app.add_option("--bucket-cap-mb", s.bucket_cap_mb, "DDP's bucket size in MB")
      ->capture_default_str()
      ->check(CLI::Range(1e-3, 1e3));
  // Every rank parses the same command line: a bad flag fails on all of them alike.
  return common::run_main(app, argc, argv, "xtgrad-ddp-bench", [&] {
    if (s.as_share_of && dist::world_size() > 1)
      throw common::UsageError("--as-share-of runs in one process, not under mpiexec -np " +
                               std::to_string(dist::world_size()));
    const std::size_t ranks = s.as_share_of ? s.as_share_of : std::size_t(dist::world_size());
    if (ranks > std::min<std::size_t>(s.batch ? s.batch : 32, 4096))
      throw common::UsageError("the global batch (--batch, align's default 32) is smaller than the " +
                               std::to_string(ranks) + " ranks");
    return dist::abort_on_exception([&] {  // a failure on one rank stops them all
      set_num_threads(int(s.threads));
      reuse_freed_memory();
      for (const std::string name : {"align", "vqa"})
        if (s.model == "all" || s.model == name) run_model(name, s);
      return 0;
    });
  });
}
