// xtgrad-plot: the training curves of one run or several side by side, as a PNG.
//   xtgrad-plot RUN [RUN...] --png FILE [--metrics loss,exact,...]
// RUN is a run directory (xtgrad-align, xtgrad-caption, xtgrad-vqa train --out DIR) or a
// metrics.jsonl file. Every metric the runs report gets a panel unless --metrics names some.
//   xtgrad-plot runs/caption runs/caption-blind runs/caption-no-attention --png curves.png
// Exit codes as every example's (examples/common/flags.hpp): 2 bad flags, 1 a missing or
// malformed metrics file.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "curves.hpp"
#include "flags.hpp"

namespace {

// The metrics to draw: those asked for, each of which some run must report.
std::vector<std::string> chosen_metrics(const std::vector<plot::Run>& runs, const std::vector<std::string>& asked) {
  const std::vector<std::string> known = plot::metric_names(runs);
  if (asked.empty()) return known;
  for (const std::string& m : asked)
    if (std::find(known.begin(), known.end(), m) == known.end()) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      throw common::UsageError("--metrics: no run reports '" + m + "'; the runs report: " + list);
    }
  return asked;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xtgrad-plot: training curves (metrics.jsonl) of one or more runs, as a PNG"};
  std::vector<std::string> paths, metrics;
  std::string png;
  app.add_option("runs", paths, "run directories or metrics.jsonl files")->required();
  app.add_option("--png", png, "the PNG to write")->required();
  app.add_option("--metrics", metrics, "the metrics to draw, comma-separated (default: all)")->delimiter(',');
  return common::run_main(app, argc, argv, "xtgrad-plot", [&] {
    std::vector<plot::Run> runs;
    for (const std::string& path : paths) runs.push_back(plot::read_run(path));
    const std::vector<std::string> drawn = chosen_metrics(runs, metrics);
    plot::render_curves(runs, drawn).save_png(png);
    std::printf("%s: %zu runs, %zu metrics\n", png.c_str(), runs.size(), drawn.size());
    return 0;
  });
}
