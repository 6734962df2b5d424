// Training's progress on the log: a live bar on a terminal, plain lines otherwise.
#pragma once

#include <chrono>
#include <cstddef>
#include <iosfwd>
#include <string>

namespace align {

// "42.0s" under a minute, "3m07s" above.
std::string duration_text(double seconds);

// A live bar on a terminal; otherwise a plain line every `every` steps.
class Progress {
 public:
  using Clock = std::chrono::steady_clock;
  Progress(std::ostream& log, bool bar, std::size_t first, std::size_t last, std::size_t every)
      : log_(log), bar_(bar), first_(first), last_(last), every_(every), start_(Clock::now()) {}

  void update(std::size_t step, double loss);
  // A line of its own, not overwritten by the bar.
  void note(const std::string& text);

 private:
  std::ostream& log_;
  bool bar_;
  std::size_t first_, last_, every_;
  Clock::time_point start_, drawn_{};
};

}  // namespace align
