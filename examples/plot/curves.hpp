// Training curves: every example appends one JSON object per evaluation to its run's
// metrics.jsonl ({"step": 500, "loss": 0.41, "exact": 0.93, ...}); this reads such files and
// draws one panel per metric against the step, one coloured line per run, so that runs
// (the attention model and its baselines, say) can be compared at a glance.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "canvas.hpp"

namespace plot {

// One run's curves: metric name -> its (step, value) points in file order.
struct Run {
  std::string label;  // the run directory's name (or the file's, for a bare .jsonl)
  std::map<std::string, std::vector<std::pair<double, double>>> curves;
  std::vector<std::string> metrics;  // the metrics in the order the file first names them
};

// A run directory (its metrics.jsonl) or a .jsonl file. Every line must be a JSON object
// with a numeric "step"; its other numeric fields are metrics (other fields are skipped).
// std::runtime_error naming the file (and the line) when it is missing or malformed.
Run read_run(const std::string& path);

// The metrics of all runs, in first-seen order, without "step" and "elapsed_s" (a time,
// not a result).
std::vector<std::string> metric_names(const std::vector<Run>& runs);

// About max_ticks round values (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int max_ticks);

// The colour of the i-th run's line (a palette that stays distinct in grey scale too, as
// far as possible).
draw::Rgb run_colour(std::size_t i);

// A panel per metric, up to three per row, with axes, round ticks and a legend naming the
// runs. Throws std::invalid_argument when there is nothing to draw.
draw::Canvas render_curves(const std::vector<Run>& runs, const std::vector<std::string>& metrics);

}  // namespace plot
