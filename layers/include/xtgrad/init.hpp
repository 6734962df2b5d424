// torch.nn.init: fill a tensor in place with one of PyTorch's initialisations and return
// it, e.g. in Module::apply:
//
//   model.apply([](Module<float>& m) {
//     if (auto* lin = dynamic_cast<Linear<float>*>(&m)) {
//       init::xavier_uniform_(lin->weight);
//       if (lin->bias) init::zeros_(*lin->bias);
//     }
//   });
//
// Names, argument order, defaults and formulas are PyTorch 1.13's. The random ones draw from
// the Generator passed last (global_generator() by default, as PyTorch 2's generator=
// argument), element by element in row-major order; they write the values directly, so no
// graph is recorded (PyTorch runs them under no_grad). The layers' own initialisations are
// made of these functions, so a layer and a hand-initialised tensor agree for one seed.
#pragma once

#include <cstddef>
#include <utility>

#include "xtgrad/module.hpp"
#include "xtgrad/random.hpp"

namespace xtgrad::init {

// PyTorch's nonlinearity names, for calculate_gain and the kaiming_ functions.
enum class Nonlinearity {
  linear,
  conv1d,
  conv2d,
  conv3d,
  conv_transpose1d,
  conv_transpose2d,
  conv_transpose3d,
  sigmoid,
  tanh,
  relu,
  leaky_relu,
  selu
};

// Which fan the kaiming_ functions keep the variance of: fan_in (the forward pass) or
// fan_out (the backward pass).
enum class FanMode { fan_in, fan_out };

// The recommended gain for a nonlinearity: 1 for linear, the convolutions and sigmoid,
// 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + param^2)) for leaky_relu (param is its
// negative slope), 3/4 for selu.
double calculate_gain(Nonlinearity nonlinearity, double param = 0.01);

// PyTorch's _calculate_fan_in_and_fan_out: for a shape (out, in, k...) of at least two
// dimensions, fan_in = in * r and fan_out = out * r, r = the product of the dims from 2 on
// (the receptive field: 1 for a matrix). Throws std::invalid_argument below two dims.
std::pair<std::size_t, std::size_t> calculate_fan_in_and_fan_out(const Shape& shape);

// U(a, b); a <= b.
template <class T>
Tensor<T>& uniform_(Tensor<T>& tensor, double a = 0.0, double b = 1.0, Generator& gen = global_generator());
// N(mean, std^2); std >= 0.
template <class T>
Tensor<T>& normal_(Tensor<T>& tensor, double mean = 0.0, double stddev = 1.0, Generator& gen = global_generator());
// N(mean, std^2) restricted to [a, b] (a < b), drawn by rejection: the distribution
// PyTorch's inverse-CDF method gives, other draws. Throws std::invalid_argument when
// [a, b] holds so little of the normal that a thousand draws miss it.
template <class T>
Tensor<T>& trunc_normal_(Tensor<T>& tensor, double mean = 0.0, double stddev = 1.0, double a = -2.0, double b = 2.0,
                         Generator& gen = global_generator());
template <class T> Tensor<T>& constant_(Tensor<T>& tensor, double val);
template <class T> Tensor<T>& zeros_(Tensor<T>& tensor);
template <class T> Tensor<T>& ones_(Tensor<T>& tensor);
// The identity of a 2-D tensor: ones where row == column, zeros elsewhere (any shape).
template <class T> Tensor<T>& eye_(Tensor<T>& tensor);

// Glorot: U(-bound, bound), bound = gain * sqrt(6 / (fan_in + fan_out)), and
// N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).
template <class T>
Tensor<T>& xavier_uniform_(Tensor<T>& tensor, double gain = 1.0, Generator& gen = global_generator());
template <class T> Tensor<T>& xavier_normal_(Tensor<T>& tensor, double gain = 1.0, Generator& gen = global_generator());

// He: with gain = calculate_gain(nonlinearity, a) and fan the mode's,
// U(-bound, bound), bound = gain * sqrt(3 / fan), and N(0, std^2), std = gain / sqrt(fan).
// a is leaky_relu's negative slope (ignored by other nonlinearities). PyTorch's Linear and
// Conv2d use kaiming_uniform_(w, sqrt(5)), which comes to bound = 1 / sqrt(fan_in).
template <class T>
Tensor<T>& kaiming_uniform_(Tensor<T>& tensor, double a = 0.0, FanMode mode = FanMode::fan_in,
                            Nonlinearity nonlinearity = Nonlinearity::leaky_relu, Generator& gen = global_generator());
template <class T>
Tensor<T>& kaiming_normal_(Tensor<T>& tensor, double a = 0.0, FanMode mode = FanMode::fan_in,
                           Nonlinearity nonlinearity = Nonlinearity::leaky_relu, Generator& gen = global_generator());

}  // namespace xtgrad::init
