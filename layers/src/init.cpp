#include "xtgrad/init.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace xtgrad::init {

namespace {

template <class T> void check_defined(const char* fn, const Tensor<T>& tensor) {
  if (!tensor.defined()) throw std::invalid_argument(std::string("init.") + fn + ": the tensor is undefined");
}

template <class T> Array<T>& values_of(const char* fn, Tensor<T>& tensor) {
  check_defined(fn, tensor);
  return tensor.mutable_data();
}

// Copies a freshly drawn tensor's values into tensor's own buffer: the handles the model
// holds keep seeing them, and the draws are rand's and randn's, so a layer and a
// hand-initialised tensor agree for one seed.
template <class T> Tensor<T>& assign(const char* fn, Tensor<T>& tensor, const Tensor<T>& drawn) {
  Array<T>& values = values_of(fn, tensor);
  std::copy(drawn.data().begin(), drawn.data().end(), values.begin());
  return tensor;
}

std::size_t fan(const Shape& shape, FanMode mode) {
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(shape);
  return mode == FanMode::fan_in ? fan_in : fan_out;
}

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, double param) {
  switch (nonlinearity) {
    case Nonlinearity::tanh:
      return 5.0 / 3.0;
    case Nonlinearity::relu:
      return std::sqrt(2.0);
    case Nonlinearity::leaky_relu:
      return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::selu:
      return 3.0 / 4.0;  // keeps the variance of self-normalising networks
    default:
      return 1.0;  // linear, the convolutions, sigmoid
  }
}

// shape (out, in, k...) -> (in * r, out * r), r = product of k...
std::pair<std::size_t, std::size_t> calculate_fan_in_and_fan_out(const Shape& shape) {
  if (shape.size() < 2)
    throw std::invalid_argument("init.calculate_fan_in_and_fan_out: shape " + shape_str(shape) +
                                " has fewer than 2 dimensions: no fan in and fan out");
  std::size_t receptive_field = 1;
  for (std::size_t d = 2; d < shape.size(); ++d) receptive_field *= shape[d];
  return {shape[1] * receptive_field, shape[0] * receptive_field};
}

template <class T> Tensor<T>& uniform_(Tensor<T>& tensor, double a, double b, Generator& gen) {
  if (!(a <= b))
    throw std::invalid_argument("init.uniform_: a = " + float_repr(a) + " must not exceed b = " + float_repr(b));
  check_defined("uniform_", tensor);
  return assign("uniform_", tensor, rand<T>(tensor.shape(), gen, T(a), T(b)));
}

template <class T> Tensor<T>& normal_(Tensor<T>& tensor, double mean, double stddev, Generator& gen) {
  if (!(stddev >= 0.0)) throw std::invalid_argument("init.normal_: std = " + float_repr(stddev) + " must be >= 0");
  check_defined("normal_", tensor);
  return assign("normal_", tensor, randn<T>(tensor.shape(), gen, T(mean), T(stddev)));
}

template <class T>
Tensor<T>& trunc_normal_(Tensor<T>& tensor, double mean, double stddev, double a, double b, Generator& gen) {
  if (!(a < b) || !(stddev > 0.0))
    throw std::invalid_argument("init.trunc_normal_: needs a < b and std > 0, got a = " + float_repr(a) +
                                ", b = " + float_repr(b) + ", std = " + float_repr(stddev));
  for (T& v : values_of("trunc_normal_", tensor)) {
    double x = gen.normal(mean, stddev);
    for (int tries = 1; x < a || x > b; ++tries) {
      if (tries == 1000)
        throw std::invalid_argument("init.trunc_normal_: [" + float_repr(a) + ", " + float_repr(b) +
                                    "] holds almost none of N(" + float_repr(mean) + ", " + float_repr(stddev) + "^2)");
      x = gen.normal(mean, stddev);
    }
    v = std::clamp(T(x), T(a), T(b));  // rounding to float must not step outside [a, b]
  }
  return tensor;
}

template <class T> Tensor<T>& constant_(Tensor<T>& tensor, double val) {
  values_of("constant_", tensor).fill(T(val));
  return tensor;
}

template <class T> Tensor<T>& zeros_(Tensor<T>& tensor) {
  values_of("zeros_", tensor).fill(T(0));
  return tensor;
}

template <class T> Tensor<T>& ones_(Tensor<T>& tensor) {
  values_of("ones_", tensor).fill(T(1));
  return tensor;
}

template <class T> Tensor<T>& eye_(Tensor<T>& tensor) {
  check_defined("eye_", tensor);
  if (tensor.dim() != 2)
    throw std::invalid_argument("init.eye_: only 2-D tensors are supported, got " + shape_str(tensor.shape()));
  Array<T>& values = values_of("eye_", tensor);
  values.fill(T(0));
  for (std::size_t i = 0; i < std::min(values.shape()[0], values.shape()[1]); ++i) values(i, i) = T(1);
  return tensor;
}

template <class T> Tensor<T>& xavier_uniform_(Tensor<T>& tensor, double gain, Generator& gen) {
  check_defined("xavier_uniform_", tensor);
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(tensor.shape());
  // PyTorch writes sqrt(3) * gain * sqrt(2 / (fan_in + fan_out)); one root is the same
  // bound, and the one xtgrad's layers have always drawn with (same seeds in double).
  const double bound = gain * std::sqrt(6.0 / double(fan_in + fan_out));
  return uniform_(tensor, -bound, bound, gen);
}

template <class T> Tensor<T>& xavier_normal_(Tensor<T>& tensor, double gain, Generator& gen) {
  check_defined("xavier_normal_", tensor);
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(tensor.shape());
  return normal_(tensor, 0.0, gain * std::sqrt(2.0 / double(fan_in + fan_out)), gen);
}

template <class T>
Tensor<T>& kaiming_uniform_(Tensor<T>& tensor, double a, FanMode mode, Nonlinearity nonlinearity, Generator& gen) {
  check_defined("kaiming_uniform_", tensor);
  if (tensor.numel() == 0) return tensor;  // PyTorch: a no-op
  const double stddev = calculate_gain(nonlinearity, a) / std::sqrt(double(fan(tensor.shape(), mode)));
  const double bound = std::sqrt(3.0) * stddev;  // U(-bound, bound) has this std
  return uniform_(tensor, -bound, bound, gen);
}

template <class T>
Tensor<T>& kaiming_normal_(Tensor<T>& tensor, double a, FanMode mode, Nonlinearity nonlinearity, Generator& gen) {
  check_defined("kaiming_normal_", tensor);
  if (tensor.numel() == 0) return tensor;
  const double stddev = calculate_gain(nonlinearity, a) / std::sqrt(double(fan(tensor.shape(), mode)));
  return normal_(tensor, 0.0, stddev, gen);
}

#define INSTANTIATE(T)                                                                         \
  template Tensor<T>& uniform_(Tensor<T>&, double, double, Generator&);                        \
  template Tensor<T>& normal_(Tensor<T>&, double, double, Generator&);                         \
  template Tensor<T>& trunc_normal_(Tensor<T>&, double, double, double, double, Generator&);   \
  template Tensor<T>& constant_(Tensor<T>&, double);                                           \
  template Tensor<T>& zeros_(Tensor<T>&);                                                      \
  template Tensor<T>& ones_(Tensor<T>&);                                                       \
  template Tensor<T>& eye_(Tensor<T>&);                                                        \
  template Tensor<T>& xavier_uniform_(Tensor<T>&, double, Generator&);                         \
  template Tensor<T>& xavier_normal_(Tensor<T>&, double, Generator&);                          \
  template Tensor<T>& kaiming_uniform_(Tensor<T>&, double, FanMode, Nonlinearity, Generator&); \
  template Tensor<T>& kaiming_normal_(Tensor<T>&, double, FanMode, Nonlinearity, Generator&);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace xtgrad::init
