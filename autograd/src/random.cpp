#include "xtgrad/random.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "detail.hpp"

namespace xtgrad {

double Generator::uniform() {
  // 53 random bits -> a double in [0, 1)
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double Generator::uniform(double low, double high) {
  // low + (high - low) * u can round up to high: keep the interval half-open.
  const double r = low + (high - low) * uniform();
  return r < high || !(low < high) ? r : std::nextafter(high, low);
}

double Generator::normal(double mean, double stddev) {
  // Box-Muller, keeping the second value of each pair.
  if (has_spare_) {
    has_spare_ = false;
    return mean + stddev * spare_normal_;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 2.0 * M_PI * u2;
  spare_normal_ = radius * std::sin(angle);
  has_spare_ = true;
  return mean + stddev * radius * std::cos(angle);
}

std::uint64_t Generator::below(std::uint64_t n) {
  if (n == 0) throw std::invalid_argument("Generator::below: n must be positive");
  // Rejection sampling: no modulo bias.
  const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  std::uint64_t r = engine_();
  while (r >= limit) r = engine_();
  return r % n;
}

std::string Generator::state() const {
  std::ostringstream out;
  out.precision(17);
  out << engine_ << ' ' << has_spare_ << ' ' << spare_normal_;
  return out.str();
}

void Generator::set_state(const std::string& state) {
  std::istringstream in(state);
  std::mt19937_64 engine;
  bool has_spare = false;
  double spare = 0.0;
  if (!(in >> engine >> has_spare >> spare)) throw std::invalid_argument("Generator::set_state: malformed state");
  engine_ = engine;
  has_spare_ = has_spare;
  spare_normal_ = spare;
}

template <class T> Tensor<T> randn(const Shape& shape, Generator& gen, T mean, T stddev, bool requires_grad) {
  Array<T> data(shape);
  for (auto& v : data) v = static_cast<T>(gen.normal(mean, stddev));
  return Tensor<T>(std::move(data), requires_grad);
}

template <class T> Tensor<T> rand(const Shape& shape, Generator& gen, T low, T high, bool requires_grad) {
  Array<T> data(shape);
  for (auto& v : data) {
    v = static_cast<T>(gen.uniform(low, high));
    // Narrowing to float can round a value just below high up to high.
    if (!(v < high) && low < high) v = std::nextafter(high, low);
  }
  return Tensor<T>(std::move(data), requires_grad);
}

#define INSTANTIATE(T)                                            \
  template Tensor<T> randn(const Shape&, Generator&, T, T, bool); \
  template Tensor<T> rand(const Shape&, Generator&, T, T, bool);
XTGRAD_INSTANTIATE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace xtgrad
