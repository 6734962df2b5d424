// Shared by the tests that compare with PyTorch through JSON fixtures (tests/fixtures/<subdir>/,
// written by tests/fixtures/make_<subdir>_fixtures.py): loading a fixture, finding a case,
// fixture tensors, and the largest deviation over a case (checked, and printed by MESSAGE).
#pragma once

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "helpers.hpp"

#ifndef XTGRAD_FIXTURE_DIR
#error "XTGRAD_FIXTURE_DIR must name tests/fixtures: see target_compile_definitions in tests/CMakeLists.txt"
#endif

namespace xtgrad::testing {

using json = nlohmann::json;

// The contract with PyTorch's float64 results, in rel_deviation.
constexpr double kPyTorchTol = 1e-10;

// tests/fixtures/<subdir>/<name>, parsed. Every subdir's fixtures come from one script,
// named after it, which a missing file's message points to.
inline json load_fixture(const std::string& subdir, const std::string& name) {
  const std::string path = std::string(XTGRAD_FIXTURE_DIR) + "/" + subdir + "/" + name;
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(),
                  "cannot open " << path << " (regenerate with tests/fixtures/make_" << subdir << "_fixtures.py)");
  return json::parse(in);
}

// The entry of fixture[list] whose "name" is name (the scripts call the list "cases" or
// "configs").
inline const json& find_case(const json& fixture, const std::string& name, const std::string& list = "cases") {
  for (const auto& c : fixture.at(list))
    if (c.at("name") == name) return c;
  throw std::runtime_error("no fixture case named " + name + " in '" + list + "'");
}

template <class E> Shape shape_of(const E& a) { return Shape(a.shape().begin(), a.shape().end()); }

// {"shape": [...], "data": [row-major values]}; shape [] is a 0-d array of one value.
inline Array<double> fixture_array(const json& t) {
  const Shape shape = t.at("shape").get<Shape>();
  const std::vector<double> data = t.at("data").get<std::vector<double>>();
  Array<double> a = Array<double>::from_shape(shape);
  REQUIRE_MESSAGE(a.size() == data.size(), "fixture tensor " << shape_str(shape) << " holds " << data.size());
  std::copy(data.begin(), data.end(), a.begin());
  return a;
}
inline D fixture_tensor(const json& t, bool requires_grad = false) { return D(fixture_array(t), requires_grad); }

// A 0-d array holding value.
inline Array<double> scalar_array(double value) {
  Array<double> a = Array<double>::from_shape(Shape{});
  a.fill(value);
  return a;
}

// Every digit of a double: doctest's own formatting (and stream manipulators, which it
// applies to each piece separately) would hide a last-bits difference.
inline std::string digits17(double v) {
  std::ostringstream out;
  out << std::setprecision(17) << v;
  return out.str();
}

// |actual - expected| / max(1, |expected|): relative for large values, absolute near 0 (a
// gradient that cancels to ~1e-17 in one library and to 0 in the other is not wrong). NaN
// is infinitely far, so that it never passes and is never hidden by a finite worst.
inline double rel_deviation(double actual, double expected) {
  const double err = std::abs(actual - expected) / std::max(1.0, std::abs(expected));
  return std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
}

// Two arrays that must have one shape (what names them): the largest rel_deviation, its
// flat (row-major) index, and how many elements are beyond tol.
struct ArrayDeviation {
  double worst = 0;
  std::size_t at = 0;
  std::size_t beyond = 0;
};
inline ArrayDeviation array_deviation(const Array<double>& actual, const Array<double>& expected, double tol,
                                      const std::string& what) {
  REQUIRE_MESSAGE(shape_of(actual) == shape_of(expected),
                  what << ": shape " << shape_str(shape_of(actual)) << " vs " << shape_str(shape_of(expected)));
  ArrayDeviation d;
  // Both are row-major xarrays: storage order is element order.
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double err = rel_deviation(actual.data()[i], expected.data()[i]);
    if (err > d.worst) {
      d.worst = err;
      d.at = i;
    }
    if (err > tol) ++d.beyond;
  }
  return d;
}

// The largest rel_deviation from PyTorch over every value compared for one fixture case.
// Each compare is one CHECK that all its values are within tol, naming the case and the
// worst element, so that a wrong layer does not flood the log; report() prints the case's
// worst (MESSAGE).
class Deviation {
 public:
  explicit Deviation(std::string name, double tol = kPyTorchTol) : name_(std::move(name)), tol_(tol) {}

  // A result against the fixture's {"shape", "data"}.
  void compare(const Array<double>& actual, const json& expected, const std::string& what) {
    compare_arrays(actual, fixture_array(expected), what);
  }
  void compare(double actual, double expected, const std::string& what) {
    compare_arrays(scalar_array(actual), scalar_array(expected), what);
  }

  // The gradient of an input PyTorch has (or has not: null, PyTorch's None).
  void compare_grad(const std::optional<D>& t, const json& expected, const std::string& what) {
    if (expected.is_null()) {
      CHECK_MESSAGE(!t, name_ << ", " << what << ": PyTorch has no such input");
      return;
    }
    REQUIRE_MESSAGE(t.has_value(), name_ << ", " << what << ": we have no such input");
    REQUIRE_MESSAGE(t->has_grad(), name_ << ", " << what << ": no gradient arrived");
    compare(t->grad(), expected, what);
  }

  void report() const {
    MESSAGE(name_ << ": largest deviation |ours - PyTorch| / max(1, |PyTorch|) over " << count_ << " values: " << worst_
                  << " (" << where_ << ")");
    CHECK(count_ > 0);
  }

 private:
  void compare_arrays(const Array<double>& actual, const Array<double>& expected, const std::string& what) {
    const ArrayDeviation d = array_deviation(actual, expected, tol_, name_ + ", " + what);
    // A single value needs no element number.
    const std::string at = expected.size() == 1 ? what : what + ", element " + std::to_string(d.at);
    // (The message is only built on failure, when there is an element to read.)
    CHECK_MESSAGE(d.beyond == 0, name_ << ", " << at << ": " << digits17(actual.data()[d.at]) << " vs PyTorch "
                                       << digits17(expected.data()[d.at]) << " (" << d.beyond << " of "
                                       << expected.size() << " values off by more than " << tol_ << ")");
    if (count_ == 0 || d.worst > worst_) {
      worst_ = d.worst;
      where_ = at;
    }
    count_ += expected.size();
  }

  std::string name_;
  double tol_;
  double worst_ = 0;
  std::string where_ = "nothing compared";
  std::size_t count_ = 0;
};

// After loss.backward(): the gradients of the inputs (by the fixture's names) and of every
// parameter of module (by state_dict key) against the fixture's "input_grads" and
// "param_grads", then the case's largest deviation reported.
template <class M>
void compare_all_gradients(Deviation& dev, const json& fx, const std::map<std::string, D>& inputs, const M& module) {
  const json& input_grads = fx.at("input_grads");
  REQUIRE(input_grads.size() == inputs.size());
  for (const auto& leaf : inputs) dev.compare_grad(leaf.second, input_grads.at(leaf.first), "d loss / d " + leaf.first);
  const json& param_grads = fx.at("param_grads");
  const auto params = module.named_parameters();
  REQUIRE(params.size() == param_grads.size());
  for (const auto& p : params) dev.compare_grad(p.second, param_grads.at(p.first), "d loss / d " + p.first);
  dev.report();
}

}  // namespace xtgrad::testing
