// xtgrad-plot (examples/plot): reading metrics.jsonl, round ticks, the drawn curves, and the
// program's exit codes.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "curves.hpp"
#include "helpers.hpp"

namespace {

using xtgrad::testing::run_program;
using xtgrad::testing::TempDir;

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A run directory `name` under dir holding `lines` as its metrics.jsonl.
std::string make_run(const TempDir& dir, const std::string& name, const std::string& lines) {
  const std::string run = dir / name;
  std::filesystem::create_directories(run);
  write(run + "/metrics.jsonl", lines);
  return run;
}

bool same(draw::Rgb a, draw::Rgb b) {
  return std::abs(a.r - b.r) < 1e-6f && std::abs(a.g - b.g) < 1e-6f && std::abs(a.b - b.b) < 1e-6f;
}

std::size_t count_colour(const draw::Canvas& c, draw::Rgb colour) {
  std::size_t n = 0;
  for (std::size_t y = 0; y < c.height(); ++y)
    for (std::size_t x = 0; x < c.width(); ++x) n += same(c.pixel(x, y), colour);
  return n;
}

}  // namespace

TEST_CASE("plot: a run's metrics.jsonl becomes one curve per numeric field") {
  TempDir dir("plot");
  const std::string run = make_run(dir, "caption-blind",
                                   "{\"step\": 500, \"loss\": 1.5, \"exact\": 0.25, \"image\": \"blind\"}\n\n"
                                   "{\"step\": 1000, \"loss\": 0.75, \"exact\": 0.5, \"elapsed_s\": 3}\n");
  const plot::Run r = plot::read_run(run);
  CHECK(r.label == "caption-blind");
  CHECK(r.metrics == std::vector<std::string>{"loss", "exact", "elapsed_s"});  // the file's order
  REQUIRE(r.curves.at("loss").size() == 2);
  CHECK(r.curves.at("loss")[1] == std::pair<double, double>(1000, 0.75));
  CHECK(r.curves.count("image") == 0);  // not a number
  CHECK(plot::metric_names({r}) == std::vector<std::string>{"loss", "exact"});
  CHECK(plot::read_run(run + "/metrics.jsonl").curves.at("exact")[0].second == 0.25);
}

TEST_CASE("plot: a missing or malformed metrics file is refused with its name and line") {
  TempDir dir("plot");
  xtgrad::testing::check_throws_with<std::runtime_error>([&] { plot::read_run(dir / "nothing"); },
                                                         {"cannot read", "nothing"});
  const std::string bad = make_run(dir, "bad", "{\"step\": 1, \"loss\": 2}\n{\"step\": 2, \"loss\": \n");
  xtgrad::testing::check_throws_with<std::runtime_error>([&] { plot::read_run(bad); }, {"metrics.jsonl:2", "not JSON"});
  const std::string no_step = make_run(dir, "no_step", "{\"loss\": 2}\n");
  xtgrad::testing::check_throws_with<std::runtime_error>([&] { plot::read_run(no_step); }, {":1", "\"step\""});
  const std::string empty = make_run(dir, "empty", "\n");
  xtgrad::testing::check_throws_with<std::runtime_error>([&] { plot::read_run(empty); }, {"no evaluations"});
}

TEST_CASE("plot: ticks are round values that cover the range") {
  CHECK(plot::nice_ticks(0, 1, 6) == std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1});
  CHECK(plot::nice_ticks(0, 20000, 5) == std::vector<double>{0, 5000, 10000, 15000, 20000});
  const std::vector<double> t = plot::nice_ticks(0.931, 0.996, 6);
  REQUIRE(t.size() >= 2);
  CHECK(t.front() <= 0.931);
  CHECK(t.back() >= 0.996);
  CHECK(t[1] - t[0] == doctest::Approx(0.02));
  CHECK(plot::nice_ticks(3, 3, 5) == std::vector<double>{3});
}

TEST_CASE("plot: each run is drawn in its colour, one panel per metric") {
  plot::Run a, b;
  a.label = "attention";
  b.label = "blind";
  a.curves["loss"] = {{0, 2.0}, {100, 1.0}, {200, 0.5}};
  a.curves["exact"] = {{100, 0.5}, {200, 0.9}};
  b.curves["loss"] = {{0, 2.0}, {100, 1.8}, {200, 1.7}};
  const draw::Canvas c = plot::render_curves({a, b}, {"loss", "exact"});
  CHECK(c.width() == 2 * 400 + 32);
  CHECK(c.height() == 16 + 34 + 250 + 16);
  // Lines, dots and the legend's swatch: both colours are there, run a's in more pixels
  // (it has two curves).
  const std::size_t pixels_a = count_colour(c, plot::run_colour(0)), pixels_b = count_colour(c, plot::run_colour(1));
  CHECK(pixels_b > 200);
  CHECK(pixels_a > pixels_b + 200);
  // Run b's loss ends at 1.7 of a 0.5..2 axis (ticks 0.5 apart): its last dot is in
  // the top third of the loss panel's plot area, run a's (0.5) at the bottom.
  const long y_top = 16 + 34 + 30, height = 250 - 30 - 32, x_end = 16 + 400 - 18;
  const auto colour_near = [&](long x, long y, draw::Rgb colour) {
    for (long dy = -2; dy <= 2; ++dy)
      if (same(c.pixel(std::size_t(x), std::size_t(y + dy)), colour)) return true;
    return false;
  };
  CHECK(colour_near(x_end, y_top + height * (2.0 - 1.7) / 1.5 + 0.5, plot::run_colour(1)));
  CHECK(colour_near(x_end, y_top + height * (2.0 - 0.5) / 1.5 + 0.5, plot::run_colour(0)));
  CHECK_THROWS_AS(plot::render_curves({}, {"loss"}), std::invalid_argument);
}

TEST_CASE("plot: xtgrad-plot writes the PNG, exits 2 on bad flags and 1 on a bad file") {
  TempDir dir("plot");
  const std::string run = make_run(dir, "run", "{\"step\": 1, \"loss\": 2}\n{\"step\": 2, \"loss\": 1}\n");
  std::string out;
  CHECK(run_program(XTGRAD_PLOT_BIN, run + " --png " + (dir / "c.png"), &out) == 0);
  CHECK(std::filesystem::file_size(dir / "c.png") > 1000);
  CHECK(dir.names() == std::vector<std::string>{"c.png", "run"});  // no temporary left
  CHECK(run_program(XTGRAD_PLOT_BIN, run + " --png " + (dir / "d.png") + " --metrics exact", &out) == 2);
  CHECK(out.find("the runs report: loss") != std::string::npos);
  CHECK(run_program(XTGRAD_PLOT_BIN, run + " --bogus --png " + (dir / "d.png")) == 2);
  CHECK(run_program(XTGRAD_PLOT_BIN, "--png " + (dir / "d.png")) == 2);  // no run
  CHECK(run_program(XTGRAD_PLOT_BIN, (dir / "missing") + " --png " + (dir / "d.png"), &out) == 1);
  CHECK(out.find("cannot read") != std::string::npos);
  CHECK(!std::filesystem::exists(dir / "d.png"));
}
