#include "curves.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace plot {

namespace fs = std::filesystem;
using draw::Canvas;
using draw::Rgb;

// ---- Reading --------------------------------------------------------------------------

namespace {

void add_point(Run& run, const std::string& metric, double step, double value) {
  auto& curve = run.curves[metric];
  if (curve.empty()) run.metrics.push_back(metric);
  curve.emplace_back(step, value);
}

// One line of metrics.jsonl into run; what is wrong with it otherwise.
void read_line(Run& run, const std::string& line, const std::string& where) {
  nlohmann::ordered_json object;  // keeps the file's key order: panels come in that order
  try {
    object = nlohmann::ordered_json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(where + ": not JSON (" + e.what() + ")");
  }
  if (!object.is_object() || !object.contains("step") || !object["step"].is_number())
    throw std::runtime_error(where + ": expected a JSON object with a numeric \"step\"");
  const double step = object["step"].get<double>();
  for (const auto& [key, value] : object.items())
    if (key != "step" && value.is_number()) add_point(run, key, step, value.get<double>());
}

}  // namespace

Run read_run(const std::string& path) {
  fs::path file(path);
  Run run;
  run.label = file.filename().string();
  if (fs::is_directory(file)) {
    run.label = fs::absolute(file).lexically_normal().filename().string();
    if (run.label.empty()) run.label = fs::absolute(file).lexically_normal().parent_path().filename().string();
    file /= "metrics.jsonl";
  }
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string() + " (a run directory or a metrics.jsonl file)");
  std::string line;
  std::size_t number = 0, evaluations = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    read_line(run, line, file.string() + ":" + std::to_string(number));
    ++evaluations;
  }
  if (evaluations == 0) throw std::runtime_error(file.string() + " holds no evaluations");
  return run;
}

std::vector<std::string> metric_names(const std::vector<Run>& runs) {
  std::vector<std::string> names;
  for (const Run& run : runs)
    for (const std::string& m : run.metrics)
      if (m != "elapsed_s" && std::find(names.begin(), names.end(), m) == names.end()) names.push_back(m);
  return names;
}

// ---- Axes -----------------------------------------------------------------------------

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, max_ticks - 1);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double factor : {1.0, 2.0, 5.0, 10.0})
    if (factor * power >= raw) {
      step = factor * power;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::floor(lo / step) * step; t <= hi + step * 0.999; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);  // no "-0" or 1e-17 labels
  return ticks;
}

Rgb run_colour(std::size_t i) {
  // Tableau 10's first eight.
  static constexpr Rgb kPalette[] = {{0.12f, 0.47f, 0.71f}, {1.00f, 0.50f, 0.05f}, {0.17f, 0.63f, 0.17f},
                                     {0.84f, 0.15f, 0.16f}, {0.58f, 0.40f, 0.74f}, {0.55f, 0.34f, 0.29f},
                                     {0.89f, 0.47f, 0.76f}, {0.50f, 0.50f, 0.50f}};
  return kPalette[i % (sizeof kPalette / sizeof kPalette[0])];
}

namespace {

constexpr Rgb kPaper{1.0f, 1.0f, 1.0f};
constexpr Rgb kInk{0.12f, 0.12f, 0.14f};
constexpr Rgb kGridLine{0.88f, 0.88f, 0.90f};
constexpr long kMargin = 16, kLegend = 34;
constexpr long kPanelW = 400, kPanelH = 250;
constexpr long kLeft = 62, kRight = 18, kTop = 30, kBottom = 32;  // the plot area inside a panel

std::string tick_label(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return text;
}

struct Range {
  double lo, hi;
};

// The smallest and largest step and value of `metric` over the runs that have it.
std::pair<Range, Range> extent(const std::vector<Run>& runs, const std::string& metric) {
  Range x{INFINITY, -INFINITY}, y{INFINITY, -INFINITY};
  for (const Run& run : runs) {
    const auto found = run.curves.find(metric);
    if (found == run.curves.end()) continue;
    for (const auto& [step, value] : found->second) {
      x = {std::min(x.lo, step), std::max(x.hi, step)};
      if (std::isfinite(value)) y = {std::min(y.lo, value), std::max(y.hi, value)};
    }
  }
  if (x.lo >= 0) x.lo = 0;  // steps start at 0: the curve's start is then where it is
  if (!(y.hi > y.lo)) {     // one value, or none finite: a band around it
    const double centre = std::isfinite(y.lo) ? y.lo : 0.0, half = centre != 0 ? std::abs(centre) * 0.1 : 0.5;
    y = {centre - half, centre + half};
  }
  if (!(x.hi > x.lo)) x.hi = x.lo + 1;
  return {x, y};
}

// Round ticks over the range, the range widened to the outermost ticks.
std::vector<double> ticks_over(Range& r, int max_ticks) {
  std::vector<double> ticks = nice_ticks(r.lo, r.hi, max_ticks);
  r = {std::min(r.lo, ticks.front()), std::max(r.hi, ticks.back())};
  return ticks;
}

void draw_panel(Canvas& canvas, const std::vector<Run>& runs, const std::string& metric, long px, long py) {
  auto [xr, yr] = extent(runs, metric);
  const std::vector<double> xticks = ticks_over(xr, 5), yticks = ticks_over(yr, 6);
  const long x0 = px + kLeft, y0 = py + kTop, w = kPanelW - kLeft - kRight, h = kPanelH - kTop - kBottom;
  const auto to_x = [&](double step) { return double(x0) + (step - xr.lo) / (xr.hi - xr.lo) * double(w); };
  const auto to_y = [&](double v) { return double(y0 + h) - (v - yr.lo) / (yr.hi - yr.lo) * double(h); };
  canvas.draw_text(metric, x0, py + 6, kInk, 2);
  for (double t : yticks) {
    const long y = std::lround(to_y(t));
    canvas.fill_rect(x0, y, w, 1, kGridLine);
    const std::string label = tick_label(t);
    canvas.draw_text(label, x0 - 6 - long(draw::text_width(label)), y - 3, kInk);
  }
  for (double t : xticks) {
    const long x = std::lround(to_x(t));
    canvas.fill_rect(x, y0, 1, h, kGridLine);
    const std::string label = tick_label(t);
    canvas.draw_text(label, x - long(draw::text_width(label)) / 2, y0 + h + 6, kInk);
  }
  canvas.draw_text("step", x0 + w - long(draw::text_width("step")), y0 + h + 18, kInk);
  canvas.stroke_rect(x0, y0, w + 1, h + 1, 1, kInk);
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const auto found = runs[r].curves.find(metric);
    if (found == runs[r].curves.end()) continue;
    const auto& points = found->second;
    for (std::size_t i = 0; i < points.size(); ++i) {
      const double x = to_x(points[i].first), y = to_y(points[i].second);
      if (!std::isfinite(points[i].second)) continue;
      if (i > 0 && std::isfinite(points[i - 1].second))
        canvas.draw_line(to_x(points[i - 1].first), to_y(points[i - 1].second), x, y, run_colour(r), 2);
      canvas.fill_rect(std::lround(x) - 2, std::lround(y) - 2, 5, 5, run_colour(r));
    }
  }
}

void draw_legend(Canvas& canvas, const std::vector<Run>& runs) {
  long x = kMargin;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    canvas.fill_rect(x, kMargin + 6, 22, 4, run_colour(r));
    canvas.draw_text(runs[r].label, x + 28, kMargin, kInk, 2);
    x += 28 + long(draw::text_width(runs[r].label, 2)) + 24;
  }
}

}  // namespace

Canvas render_curves(const std::vector<Run>& runs, const std::vector<std::string>& metrics) {
  if (runs.empty() || metrics.empty()) throw std::invalid_argument("render_curves: no runs or no metrics to draw");
  const long columns = long(std::min<std::size_t>(3, metrics.size()));
  const long rows = (long(metrics.size()) + columns - 1) / columns;
  long legend_width = 2 * kMargin;
  for (const Run& run : runs) legend_width += 52 + long(draw::text_width(run.label, 2));
  Canvas canvas(std::size_t(std::max(columns * kPanelW + 2 * kMargin, legend_width)),
                std::size_t(kMargin + kLegend + rows * kPanelH + kMargin), kPaper);
  draw_legend(canvas, runs);
  for (std::size_t m = 0; m < metrics.size(); ++m)
    draw_panel(canvas, runs, metrics[m], kMargin + long(m) % columns * kPanelW,
               kMargin + kLegend + long(m) / columns * kPanelH);
  return canvas;
}

}  // namespace plot
