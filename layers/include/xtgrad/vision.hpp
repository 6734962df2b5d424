// The layers of a convolutional network, as torch.nn names them: Conv1d, Conv2d, the pools,
// BatchNorm1d / BatchNorm2d and Flatten. Parameter and buffer names, defaults and
// initialisation are PyTorch's, so a PyTorch state_dict loads by its keys.
#pragma once

#include <optional>

#include "xtgrad/module.hpp"
#include "xtgrad/ops.hpp"
#include "xtgrad/options.hpp"

namespace xtgrad {

// x (N,Cin,H,W) -> (N,Cout,Ho,Wo) by conv2d. weight (Cout, Cin/groups, kh, kw) and bias
// (Cout) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = Cin/groups x kh x kw (PyTorch's
// kaiming_uniform_ with a = sqrt(5)).
template <class T> class Conv2d : public UnaryModule<T> {
 public:
  Conv2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size, Size2 stride = 1, Size2 padding = 0,
         Size2 dilation = 1, std::size_t groups = 1, bool bias = true, Generator& gen = global_generator());
  Conv2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size, const ConvOptions& o,
         Generator& gen = global_generator())
      : Conv2d(in_channels, out_channels, kernel_size, o.stride, o.padding, o.dilation, o.groups, o.bias, gen) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string extra_repr() const override;

  const std::size_t in_channels, out_channels;
  const Size2 kernel_size, stride, padding, dilation;
  const std::size_t groups;
  Tensor<T> weight;
  std::optional<Tensor<T>> bias;
};

// x (N,Cin,L) -> (N,Cout,Lo) by conv1d. weight (Cout, Cin/groups, k) and bias (Cout) as
// Conv2d's, with fan_in = Cin/groups x k.
template <class T> class Conv1d : public UnaryModule<T> {
 public:
  Conv1d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel_size, std::size_t stride = 1,
         std::size_t padding = 0, std::size_t dilation = 1, std::size_t groups = 1, bool bias = true,
         Generator& gen = global_generator());
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string extra_repr() const override;

  const std::size_t in_channels, out_channels, kernel_size, stride, padding, dilation, groups;
  Tensor<T> weight;
  std::optional<Tensor<T>> bias;
};

// PyTorch's arguments in its order, without return_indices (a layer returns one tensor).
template <class T> class MaxPool2d : public UnaryModule<T> {
 public:
  explicit MaxPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                     Size2 dilation = 1, bool ceil_mode = false);
  Tensor<T> forward(const Tensor<T>& x) override {
    return max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode);
  }
  std::string extra_repr() const override;
  const Size2 kernel_size, stride, padding, dilation;  // stride defaults to kernel_size
  const bool ceil_mode;
};

template <class T> class AvgPool2d : public UnaryModule<T> {
 public:
  explicit AvgPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                     bool ceil_mode = false, bool count_include_pad = true,
                     std::optional<long> divisor_override = std::nullopt);
  Tensor<T> forward(const Tensor<T>& x) override {
    return avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override);
  }
  std::string extra_repr() const override;  // kernel_size, stride and padding only, as PyTorch's
  const Size2 kernel_size, stride, padding;
  const bool ceil_mode, count_include_pad;
  const std::optional<long> divisor_override;
};

template <class T> class AdaptiveAvgPool2d : public UnaryModule<T> {
 public:
  explicit AdaptiveAvgPool2d(Size2 output_size);
  Tensor<T> forward(const Tensor<T>& x) override { return adaptive_avg_pool2d(x, output_size); }
  std::string extra_repr() const override;
  const Size2 output_size;
};

// Batch norm over channel axis 1. Parameters weight (ones) and bias (zeros) when affine;
// buffers running_mean (zeros), running_var (ones) and num_batches_tracked (0) when
// track_running_stats. Training normalises by the batch and updates the buffers; eval
// by the running statistics (by the batch when they are not tracked). momentum
// std::nullopt is PyTorch's None: a cumulative average, batch k weighted 1/k
// (k = num_batches_tracked after the update).
template <class T> class BatchNorm : public UnaryModule<T> {
 public:
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string extra_repr() const override;

  const std::size_t num_features;
  const double eps;
  const std::optional<double> momentum;
  std::optional<Tensor<T>> weight, bias;
  std::optional<Tensor<T>> running_mean, running_var, num_batches_tracked;

 protected:
  BatchNorm(std::string type_name, std::size_t input_dims_low, std::size_t input_dims_high, std::size_t num_features,
            double eps, std::optional<double> momentum, bool affine, bool track_running_stats);

 private:
  const std::size_t dims_low_, dims_high_;  // the input ranks the layer accepts
};

// x (N,C) or (N,C,L)
template <class T> class BatchNorm1d : public BatchNorm<T> {
 public:
  explicit BatchNorm1d(std::size_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true, bool track_running_stats = true)
      : BatchNorm<T>("BatchNorm1d", 2, 3, num_features, eps, momentum, affine, track_running_stats) {}
};

// x (N,C,H,W)
template <class T> class BatchNorm2d : public BatchNorm<T> {
 public:
  explicit BatchNorm2d(std::size_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true, bool track_running_stats = true)
      : BatchNorm<T>("BatchNorm2d", 4, 4, num_features, eps, momentum, affine, track_running_stats) {}
};

// Axes start_dim..end_dim (negative counts from the end) merged into one.
template <class T> class Flatten : public UnaryModule<T> {
 public:
  explicit Flatten(int start_dim = 1, int end_dim = -1);
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string extra_repr() const override;
  const int start_dim, end_dim;
};

}  // namespace xtgrad
