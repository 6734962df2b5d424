#include "train.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <ostream>
#include <stdexcept>

#include "background_eval.hpp"
#include "checkpoint.hpp"
#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "parallel.hpp"
#include "progress.hpp"
#include "run_dir.hpp"
#include "sampler.hpp"
#include "train_state.hpp"

namespace align {

using Clock = std::chrono::steady_clock;

// ---- settings -------------------------------------------------------------------------
template <class T>
std::unique_ptr<xtgrad::Optimizer<T>> make_optimizer(const std::string& name,
                                                     const std::vector<xtgrad::Tensor<T>>& params, double lr) {
  if (name == "adam")
    return std::make_unique<xtgrad::Adam<T>>(params, xtgrad::AdamOptions().set_lr(lr).set_betas(0.9, 0.999));
  if (name == "adamw") return std::make_unique<xtgrad::AdamW<T>>(params, xtgrad::AdamWOptions().set_lr(lr));
  if (name == "sgd") return std::make_unique<xtgrad::SGD<T>>(params, xtgrad::SGDOptions().set_lr(lr).set_momentum(0.9));
  throw std::invalid_argument("unknown optimizer '" + name + "' (adam, adamw or sgd)");
}
template std::unique_ptr<xtgrad::Optimizer<float>> make_optimizer(const std::string&,
                                                                  const std::vector<xtgrad::Tensor<float>>&, double);
template std::unique_ptr<xtgrad::Optimizer<double>> make_optimizer(const std::string&,
                                                                   const std::vector<xtgrad::Tensor<double>>&, double);

namespace {

xtgrad::Metadata settings_metadata(const TrainOptions& o) {
  xtgrad::Metadata m = {{"batch", std::to_string(o.batch)},
                        {"lr", common::exact_text(o.lr)},
                        {"optimizer", o.optimizer},
                        {"seed", std::to_string(o.seed)},
                        {"train_size", std::to_string(o.train_size)},
                        {"test_size", std::to_string(o.test_size)},
                        {"eval_every", std::to_string(o.eval_every)},
                        {"threads", std::to_string(o.threads)},
                        {"run_id", o.run_id}};
  if (o.world_size > 1) m["world_size"] = std::to_string(o.world_size);  // absent: one process, as before
  return m;
}

}  // namespace

double step_memory_bytes(const TrainOptions& o) {
  // Peak resident size over short runs on the development machine (AMD EPYC, this build):
  // batch 128-512, dim 64-128, heads 4 fit pairs x (100 x dim + 200 x heads) bytes within
  // 10%, plus about 32 MB for the program, the model and the data's scenes.
  const double pairs = double(o.batch) * double(o.batch);
  return pairs * (100.0 * double(o.model.dim) + 200.0 * double(o.model.heads)) + 32e6 + 64.0 * double(o.train_size);
}

void validate(const TrainOptions& o, bool check_out_dir) {
  const auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  common::check_in_range("--steps", o.steps, 1, Limits::kMaxSteps);
  common::check_in_range("--batch", o.batch, 2, Limits::kMaxBatch);
  common::check_in_range("--train-size", o.train_size, o.batch, Limits::kMaxTrainSize);
  common::check_in_range("--test-size", o.test_size, kBlock, Limits::kMaxTestSize);
  common::check_in_range("--eval-every", o.eval_every, 1, Limits::kMaxSteps);
  common::check_in_range("--seed", o.seed, 0, Limits::kMaxSeed);
  common::check_in_range("--threads", std::uint64_t(std::max(o.threads, 0)), 1,
                         std::uint64_t(xtgrad::max_num_threads()));
  if (o.test_size % kBlock != 0) fail("--test-size " + std::to_string(o.test_size) + " is not a multiple of 100");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) fail("--lr must be a positive number, got " + common::exact_text(o.lr));
  if (o.optimizer != "adam" && o.optimizer != "adamw" && o.optimizer != "sgd")
    fail("--optimizer must be adam, adamw or sgd, got '" + o.optimizer + "'");
  o.model.check();
  const double needed = step_memory_bytes(o), available = double(common::available_memory());
  if (needed > 0.8 * available)
    fail("--batch " + std::to_string(o.batch) + " with --dim " + std::to_string(o.model.dim) + " needs about " +
         common::bytes_text(needed) +
         " of memory for one step (every caption is scored against every image of the "
         "batch: it grows with batch^2 x dim), and " +
         common::bytes_text(available) + " is available: lower --batch (or --dim)");
  if (check_out_dir) common::check_writable_dir(o.out_dir);  // before any work is done
}

namespace {

std::string metrics_line(const TrainResult& r) {
  char line[256];
  std::snprintf(line, sizeof line,
                "{\"step\": %zu, \"loss\": %.6f, \"p_at_1\": %.4f, \"grounding\": %.4f, \"ms_per_step\": %.3f, "
                "\"elapsed_s\": %.3f}",
                r.step, r.last_loss, r.metrics.p_at_1, r.metrics.grounding, r.ms_per_step, r.seconds);
  return line;
}

// What a run that stopped keeps in its output directory, said truthfully.
std::string kept_checkpoint(const TrainOptions& options, std::size_t saved_step) {
  if (saved_step == 0)
    return "no checkpoint was written to " + options.out_dir + " (the first evaluation would have been at step " +
           std::to_string(options.eval_every) + ")";
  return "the checkpoint of step " + std::to_string(saved_step) + " in " + options.out_dir + " is kept";
}

void check_finite_parameters(const AlignModel<float>& model, std::size_t step, const std::string& kept) {
  // A step can turn the parameters non-finite while its loss was still finite: never
  // overwrite a good checkpoint with them.
  for (const auto& [name, p] : model.named_parameters())
    if (!std::all_of(p.data().begin(), p.data().end(), [](float v) { return std::isfinite(v); }))
      throw std::runtime_error("parameter '" + name + "' became non-finite at step " + std::to_string(step) +
                               " (try a smaller --lr, or --detect-anomaly to find the op); " + kept);
}

}  // namespace

template <class T>
StepResult<T> train_step(AlignModel<T>& model, xtgrad::Optimizer<T>& optimizer, const std::vector<Example>& data,
                         const Batch<T>& batch) {
  optimizer.zero_grad();
  ModelOutput<T> out = model.forward(batch.patches, batch.caption_ids, /*need_attention=*/false);
  xtgrad::Tensor<T> loss = alignment_loss(out.scores, data, batch.indices);
  const double value = loss.item();
  if (std::isfinite(value)) {
    loss.backward();
    optimizer.step();
  }
  return {value, std::move(out.scores)};
}
template StepResult<float> train_step(AlignModel<float>&, xtgrad::Optimizer<float>&, const std::vector<Example>&,
                                      const Batch<float>&);
template StepResult<double> train_step(AlignModel<double>&, xtgrad::Optimizer<double>&, const std::vector<Example>&,
                                       const Batch<double>&);

namespace {

// What a run works with: the data, and the model, optimizer and sampler at `step` (the
// resumed checkpoint's, or 0).
struct Run {
  std::vector<Example> train_data, test_data;
  std::shared_ptr<AlignModel<float>> model;
  std::unique_ptr<xtgrad::Optimizer<float>> optimizer;
  BatchSampler sampler;
  std::size_t step = 0;
};

Run set_up(const TrainOptions& options, std::ostream& log) {
  const common::Doing generating("generating the data (--train-size " + std::to_string(options.train_size) + ")");
  log << "generating " << options.train_size << " training and " << options.test_size << " test pairs (seed "
      << options.seed << ")\n";
  Run run{generate(options.train_size, options.seed),
          generate(options.test_size, options.seed + 1),
          nullptr,
          nullptr,
          BatchSampler(options.train_size, options.batch, sampler_seed(options.seed)),
          0};
  xtgrad::Generator init(options.seed);
  run.model = std::make_shared<AlignModel<float>>(options.model, init);
  if (!options.resume_dir.empty()) {
    LoadedModel loaded = load_model(options.resume_dir);
    run.model = std::move(loaded.model);
    run.step = loaded.step;
  }
  run.optimizer = make_optimizer<float>(options.optimizer, run.model->parameters(), options.lr);
  if (!options.resume_dir.empty())
    common::load_train_state(options.resume_dir, {kProgram, options.run_id, run.step}, {*run.optimizer, run.sampler});
  log << run.model->summary() << "\n"
      << run.model->parameter_count() << " parameters; training steps " << run.step + 1 << " to " << options.steps
      << " with " << options.optimizer << ", lr " << options.lr << ", batch " << options.batch;
  if (options.world_size > 1)
    log << " (global: " << options.world_size << " ranks of about " << options.batch / options.world_size << ")";
  log << "\n";
  return run;
}

// The training steps since the last evaluation: their mean loss and time.
struct Window {
  double loss_sum = 0, train_ms = 0;
  std::size_t steps = 0;
  void add(double loss, double ms) {
    loss_sum += loss;
    train_ms += ms;
    ++steps;
  }
};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// A run's evaluations, every eval_every steps and at the last. Each evaluates on the test
// split (every rank) and, where metrics is given (rank 0), appends the metrics line and
// saves a checkpoint (the line is taken back if the save fails, so the record ends where
// the checkpoint does). With `background` (one process whose steps leave a core free),
// each evaluates a copy of the run and writes its record on a thread of its own, beside
// the steps; the last, with no steps left, is waited for.
class Evaluations {
 public:
  Evaluations(const TrainOptions& options, Run& run, Trainer& trainer, common::MetricsLog* metrics, Progress& progress,
              std::size_t saved_step, int evaluation_threads, bool background, Clock::time_point start)
      : options_(options),
        run_(run),
        trainer_(trainer),
        metrics_(metrics),
        progress_(progress),
        saved_step_(saved_step),
        threads_(evaluation_threads),
        start_(start) {
    if (background) background_.emplace(run.model->config, options.optimizer);
  }

  // At an evaluation step: evaluates the run as it is now, or starts evaluating its copy.
  void evaluate(const Window& window) {
    collect(true);  // the record stays in step order
    const auto begin = Clock::now();
    check_finite_parameters(*run_.model, run_.step, kept_checkpoint(options_, saved_step_));
    TrainResult result;
    result.step = run_.step;
    result.last_loss = window.loss_sum / double(window.steps);
    result.ms_per_step = window.train_ms / double(window.steps);
    const bool last = run_.step == options_.steps;
    if (!background_ || last) xtgrad::set_num_threads(threads_);  // no steps to share the cores with
    if (background_) {
      started_ = result;  // completed by the evaluating thread
      background_->start(
          *run_.model, *run_.optimizer, run_.sampler, run_.step, run_.test_data, [this](const Metrics& metrics) {
            write(started_, metrics, background_->model(), background_->optimizer(), background_->sampler());
          });
      if (last)
        collect_background();
      else
        ++in_background_;
    } else {
      write(result, trainer_.evaluate(run_.test_data), *run_.model, *run_.optimizer, run_.sampler);
      written(result);
    }
    xtgrad::set_num_threads(options_.threads);
    seconds_ += seconds_since(begin);
  }

  // Takes in the evaluation running beside the steps once it has finished and written its
  // record (with `wait`, waits for it).
  void collect(bool wait) {
    if (!background_ || !background_->running() || (!wait && !background_->finished())) return;
    const auto begin = Clock::now();
    collect_background();
    seconds_ += seconds_since(begin);
  }

  std::size_t saved_step() const { return saved_step_; }
  // The last evaluation's result, with the seconds this thread spent evaluating.
  TrainResult last() const {
    TrainResult result = last_;
    result.eval_seconds = seconds_;
    result.background_evaluations = in_background_;
    return result;
  }

 private:
  void collect_background() {
    background_->collect();
    written(started_);
  }

  // The step's metrics line and checkpoint, on the thread that evaluated.
  void write(TrainResult& result, const Metrics& metrics, const AlignModel<float>& model,
             xtgrad::Optimizer<float>& optimizer, BatchSampler& sampler) {
    result.metrics = metrics;
    result.seconds = seconds_since(start_);  // evaluations included
    if (!metrics_) return;
    metrics_->append(metrics_line(result), result.step);
    try {
      common::save_checkpoint(options_.out_dir, {kProgram, options_.run_id, result.step}, {optimizer, sampler},
                              [&] { save_model(options_.out_dir, model, result.step, settings_metadata(options_)); });
    } catch (...) {
      metrics_->take_back_after(saved_step_);
      throw;
    }
  }

  // Then, on the training thread: the line on the log.
  void written(const TrainResult& result) {
    if (metrics_) progress_.note(metrics_line(result));
    saved_step_ = result.step;
    last_ = result;
  }

  const TrainOptions& options_;
  Run& run_;
  Trainer& trainer_;
  common::MetricsLog* metrics_;
  Progress& progress_;
  std::size_t saved_step_;
  int threads_;
  Clock::time_point start_;
  std::optional<BackgroundEvaluation> background_;
  TrainResult started_, last_;
  double seconds_ = 0;
  std::size_t in_background_ = 0;
};

// Whether evaluations run beside the steps: on a core they leave free, in one process.
// --detect-anomaly evaluates in turn, so that it names the first op to meet a NaN or Inf.
bool evaluate_beside_steps(const TrainOptions& o, int cores, const common::Ranks& ranks) {
  return o.background_evaluation && o.threads == 1 && cores > 1 && ranks.size == 1 && !o.detect_anomaly;
}

// Rank 0 (or the one process) before it writes: the metrics record and what an interrupted
// save left behind.
std::optional<common::MetricsLog> prepare_run_dir(const TrainOptions& options, std::size_t saved_step,
                                                  std::ostream& log) {
  std::optional<common::MetricsLog> metrics;
  metrics.emplace(options.out_dir, !options.resume_dir.empty() && options.out_dir == options.resume_dir, saved_step);
  if (const std::size_t stale = xtgrad::remove_stale_safetensors_temporaries(options.out_dir))
    log << "removed " << stale << " temporary file(s) left by an interrupted save\n";
  common::finish_interrupted_save(options.out_dir, saved_step);
  return metrics;
}

}  // namespace

TrainResult train(TrainOptions options, std::ostream& out, const common::DistributedRun* parallel) {
  const common::Ranks ranks = parallel ? parallel->ranks() : common::Ranks{};
  std::ostream& log = common::root_log(ranks, out);  // the other ranks stay silent
  xtgrad::set_num_threads(options.threads);
  // Evaluation runs on every core this rank may use, whatever --threads says: the steps'
  // sums depend on the thread count, evaluation's forward pass does not (tests/test_align.cpp).
  const int cores = common::default_threads_per_rank(parallel ? parallel->launch().local_ranks : 1);
  const int evaluation_threads = std::max(options.threads, cores);
  if (options.run_id.empty()) options.run_id = common::new_run_id();
  std::optional<Run> set;
  const auto set_up_run = [&] { set.emplace(set_up(options, log)); };
  parallel ? parallel->agree(set_up_run) : set_up_run();  // a rank that cannot read the checkpoint stops all
  Run& run = *set;
  const std::unique_ptr<Trainer> trainer = make_trainer(parallel, run.model, *run.optimizer, run.train_data);
  std::size_t saved_step = options.out_dir == options.resume_dir ? run.step : 0;
  std::optional<common::MetricsLog> metrics;
  if (ranks.root()) metrics = prepare_run_dir(options, saved_step, log);
  Progress progress(log, options.progress_bar, run.step, options.steps,
                    std::max<std::size_t>(1, options.eval_every / 5));
  const xtgrad::AnomalyGuard anomaly(options.detect_anomaly);
  const common::Doing training("training (--batch " + std::to_string(options.batch) + ", --dim " +
                               std::to_string(options.model.dim) + ")");
  const auto start = Clock::now();
  // A core the steps leave free evaluates and renders the next batch; where they use every
  // core, a thread of its own would stall them (the pool's threads wait for each other).
  const bool free_core = options.threads < cores;
  Evaluations evaluations(options, run, *trainer, metrics ? &*metrics : nullptr, progress, saved_step,
                          evaluation_threads, evaluate_beside_steps(options, cores, ranks), start);
  Window window;
  std::vector<double> step_ms;  // every step of this invocation, for the median
  BatchPrefetcher batches(run.train_data, run.sampler, ranks, free_core);
  while (run.step < options.steps) {
    const RankBatch batch = batches.next(run.sampler);
    const auto step_start = Clock::now();
    const double loss = trainer->step(batch);
    if (!std::isfinite(loss)) {
      evaluations.collect(true);
      throw std::runtime_error("the loss became " + std::to_string(loss) + " at step " + std::to_string(run.step + 1) +
                               " (try a smaller --lr, or --detect-anomaly to find the op); " +
                               kept_checkpoint(options, evaluations.saved_step()));
    }
    ++run.step;
    step_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - step_start).count());
    window.add(loss, step_ms.back());
    progress.update(run.step, loss);
    evaluations.collect(false);
    if (run.step % options.eval_every != 0 && run.step != options.steps) continue;
    evaluations.evaluate(window);
    window = Window();
  }
  TrainResult result = evaluations.last();
  result.steps_taken = step_ms.size();
  std::nth_element(step_ms.begin(), step_ms.begin() + long(step_ms.size() / 2), step_ms.end());
  result.median_step_ms = step_ms[step_ms.size() / 2];
  result.communication_seconds = trainer->communication_seconds();
  result.bytes_per_step = trainer->bytes_per_step();
  return result;
}

}  // namespace align
