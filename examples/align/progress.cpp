#include "progress.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>

namespace align {

std::string duration_text(double seconds) {
  char text[32];
  const long s = long(std::lround(seconds));
  if (s >= 60)
    std::snprintf(text, sizeof text, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(text, sizeof text, "%.1fs", seconds);
  return text;
}

void Progress::update(std::size_t step, double loss) {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double rate = double(step - first_) / std::max(elapsed, 1e-9);
  const double left = double(last_ - step) / std::max(rate, 1e-9);
  char line[160];
  if (bar_) {
    if (step != last_ && std::chrono::duration<double>(Clock::now() - drawn_).count() < 0.1) return;
    drawn_ = Clock::now();
    const int width = 30, filled = int(width * double(step) / double(last_));
    std::snprintf(line, sizeof line, "\r[%s%s] step %zu/%zu  loss %.4f  %.1f steps/s  %s left ",
                  std::string(std::size_t(filled), '#').c_str(), std::string(std::size_t(width - filled), '.').c_str(),
                  step, last_, loss, rate, duration_text(left).c_str());
    log_ << line << std::flush;
  } else if (step % every_ == 0 || step == last_) {
    std::snprintf(line, sizeof line, "step %zu/%zu  loss %.4f  %.1f steps/s  %s left\n", step, last_, loss, rate,
                  duration_text(left).c_str());
    log_ << line << std::flush;
  }
}

void Progress::note(const std::string& text) { log_ << (bar_ ? "\r\33[K" : "") << text << "\n" << std::flush; }

}  // namespace align
