// A seeded random generator: the same seed gives the same numbers on every run and every
// platform (mt19937_64 with our own uniform and Box-Muller normal, not std:: distributions,
// whose output the standard leaves to the library).
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "xtgrad/tensor.hpp"

namespace xtgrad {

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) : engine_(seed) {}

  double uniform();                         // [0, 1)
  double uniform(double low, double high);  // [low, high)
  double normal(double mean = 0.0, double stddev = 1.0);
  std::uint64_t next_u64() { return engine_(); }
  std::uint64_t below(std::uint64_t n);  // uniform integer in [0, n)

  // The full state as text (for checkpoints), and back.
  std::string state() const;
  void set_state(const std::string& state);

 private:
  std::mt19937_64 engine_;
  double spare_normal_ = 0.0;
  bool has_spare_ = false;
};

template <class T>
Tensor<T> randn(const Shape& shape, Generator& gen, T mean = T(0), T stddev = T(1), bool requires_grad = false);
template <class T>
Tensor<T> rand(const Shape& shape, Generator& gen, T low = T(0), T high = T(1), bool requires_grad = false);

}  // namespace xtgrad
