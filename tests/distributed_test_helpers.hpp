// What the data-parallel tests (run under mpiexec) share.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>
#include <xtensor/xmath.hpp>

#include "xtgrad/module.hpp"

namespace xtgrad::testing {

// Largest |a - e| over the largest |e|, over every tensor of `expected` but `skip`.
inline double max_relative_difference(const StateDict<double>& actual, const StateDict<double>& expected,
                                      const std::string& skip = "") {
  double worst = 0;
  for (const auto& [name, e] : expected) {
    if (name == skip) continue;
    const Array<double>& a = actual.at(name);
    REQUIRE(a.shape() == e.shape());
    const double scale = std::max(1e-300, double(xt::amax(xt::abs(e))()));
    worst = std::max(worst, double(xt::amax(xt::abs(a - e))()) / scale);
  }
  return worst;
}

// Rank r's rows of a global batch of b rows on n ranks: b / n each for an even n, and an
// uneven split for an odd n (b / n + (n - 1) / 2 - r: 5, 4, 3 for 12 rows on 3 ranks).
inline std::vector<std::size_t> split_rows(std::size_t b, std::size_t n) {
  std::vector<std::size_t> rows(n, b / n);
  if (n % 2 == 1)
    for (std::size_t r = 0; r < n; ++r) rows[r] = b / n + (n - 1) / 2 - r;
  return rows;
}

// The index of rank r's first row in that split.
inline std::size_t first_row(const std::vector<std::size_t>& rows, std::size_t r) {
  return std::accumulate(rows.begin(), rows.begin() + long(r), std::size_t{0});
}

}  // namespace xtgrad::testing
