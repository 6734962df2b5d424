// What the data-parallel tests (run under mpiexec) share.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
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

}  // namespace xtgrad::testing
