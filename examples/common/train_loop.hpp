// The training loop of the examples that resume bit-identically (caption, vqa): steps from
// the run's step (the resumed checkpoint's, or 0) to --stop-at or --steps, a progress line,
// and every eval_every steps (and at the last) an evaluation appended to DIR/metrics.jsonl
// and a checkpoint (train_state.hpp). Templates over the example's TrainOptions (fields
// steps, eval_every, stop_at, progress_bar, out_dir, resume_dir, run_id, program as
// kProgram) and its Run, which provides:
//   std::size_t step;                       the last step taken
//   double train_step(std::size_t step);    one step on the next batch: its finite loss
//   Metrics evaluate();                     on the test split (metrics_json(Metrics) by ADL)
//   double lr();                            the schedule's current learning rate
//   common::TrainingState state();          what the train state holds
//   void save_model(const Options&);        DIR/model.safetensors at run.step
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "train_state.hpp"
#include "xtgrad/safetensors.hpp"

namespace common {

using TrainClock = std::chrono::steady_clock;

inline double seconds_since(TrainClock::time_point start) {
  return std::chrono::duration<double>(TrainClock::now() - start).count();
}

// A bar on a terminal, else a line every eval_every / 5 steps; the rate counts the steps
// of this invocation (from `first`).
template <class Options>
void progress_line(std::ostream& log, const Options& o, std::size_t first, std::size_t step, double loss,
                   double elapsed) {
  const double rate = double(step - first) / std::max(elapsed, 1e-9);
  const double left = double(o.steps - step) / std::max(rate, 1e-9);
  char line[160];
  std::snprintf(line, sizeof line, "step %zu/%zu  loss %.4f  %.1f steps/s  %.0fs left", step, o.steps, loss, rate,
                left);
  if (o.progress_bar) {
    const int width = 30, filled = int(width * double(step) / double(o.steps));
    log << "\r[" << std::string(std::size_t(filled), '#') << std::string(std::size_t(width - filled), '.') << "] "
        << line << " " << std::flush;
  } else if (step % std::max<std::size_t>(1, o.eval_every / 5) == 0 || step == o.steps) {
    log << line << "\n" << std::flush;
  }
}

// Evaluates on the test split, appends the metrics line and saves a checkpoint (the line
// is taken back if the save fails, so the record ends where the checkpoint does).
template <class Options, class Run, class Result>
void evaluate_and_save(const Options& o, const char* program, Run& run, double window_loss,
                       TrainClock::time_point start, MetricsLog& metrics, std::size_t saved_step, Result& result,
                       std::ostream& log) {
  result.step = run.step;
  result.last_loss = window_loss;
  result.metrics = run.evaluate();
  result.seconds = seconds_since(start);
  const std::string scores = metrics_json(result.metrics);
  std::vector<char> line(scores.size() + 160);
  std::snprintf(line.data(), line.size(), "{\"step\": %zu, \"loss\": %.6f, %s, \"lr\": %.6g, \"elapsed_s\": %.3f}",
                run.step, result.last_loss, scores.c_str(), run.lr(), result.seconds);
  metrics.append(line.data(), run.step);
  log << (o.progress_bar ? "\r\33[K" : "") << line.data() << "\n" << std::flush;
  try {
    save_checkpoint(o.out_dir, {program, o.run_id, run.step}, run.state(), [&] { run.save_model(o); });
  } catch (...) {
    metrics.take_back_after(saved_step);
    throw;
  }
}

// Trains `run` (set up at run.step) to the last step of `o`; `result` gets the last
// evaluation and the timings. A resume in place continues DIR/metrics.jsonl; any other run
// starts it afresh. Every rank evaluates (run.evaluate() may split the test split over
// them); only the root (rank 0 under mpirun, or the one process) writes the run's files.
template <class Options, class Run, class Result>
void train_loop(const Options& o, const char* program, Run& run, Result& result, std::ostream& log, bool root) {
  std::error_code error;
  const bool in_place = !o.resume_dir.empty() && std::filesystem::equivalent(o.resume_dir, o.out_dir, error);
  std::size_t saved_step = in_place ? run.step : 0;
  std::optional<MetricsLog> metrics;  // rank 0's (or the one process's)
  if (root) {
    metrics.emplace(o.out_dir, in_place, saved_step);
    if (const std::size_t stale = xtgrad::remove_stale_safetensors_temporaries(o.out_dir))
      log << "removed " << stale << " temporary file(s) left by an interrupted save\n";
    finish_interrupted_save(o.out_dir, saved_step);
  }
  const std::size_t first = run.step, last = o.stop_at ? o.stop_at : o.steps;
  std::vector<double> step_ms;
  double window_loss = 0;  // the steps since the last evaluation: their summed loss
  std::size_t window_steps = 0;
  const auto start = TrainClock::now();
  while (run.step < last) {
    const auto step_start = TrainClock::now();
    const double loss = run.train_step(run.step + 1);
    ++run.step;
    step_ms.push_back(std::chrono::duration<double, std::milli>(TrainClock::now() - step_start).count());
    window_loss += loss;
    ++window_steps;
    progress_line(log, o, first, run.step, loss, seconds_since(start));
    if (run.step % o.eval_every != 0 && run.step != o.steps) continue;
    const auto eval_start = TrainClock::now();
    if (metrics)
      evaluate_and_save(o, program, run, window_loss / double(window_steps), start, *metrics, saved_step, result, log);
    else
      run.evaluate();  // the other ranks' shares of the evaluation
    result.eval_seconds += seconds_since(eval_start);
    saved_step = run.step;
    window_loss = 0;
    window_steps = 0;
  }
  result.seconds = seconds_since(start);
  std::nth_element(step_ms.begin(), step_ms.begin() + long(step_ms.size() / 2), step_ms.end());
  result.median_step_ms = step_ms[step_ms.size() / 2];
}

}  // namespace common
