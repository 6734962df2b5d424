#include "xtgrad/vision.hpp"
#include "xtgrad/init.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace xtgrad {
namespace {

// The checks of Conv1d's and Conv2d's arguments, and their initialisation bound: PyTorch's
// kaiming_uniform(a = sqrt(5)) for the weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the
// bias both come to 1/sqrt(fan_in), as in Linear; fan_in = in/groups x kernel_elements.
double conv_init_bound(const std::string& layer, std::size_t in, std::size_t out, std::size_t kernel_elements,
                       const std::string& kernel, std::size_t groups) {
  if (in == 0 || out == 0 || kernel_elements == 0)
    throw std::invalid_argument(layer + ": in_channels, out_channels and kernel_size must be positive, got " +
                                std::to_string(in) + ", " + std::to_string(out) + ", " + kernel);
  if (groups == 0 || in % groups != 0 || out % groups != 0)
    throw std::invalid_argument(layer + ": groups = " + std::to_string(groups) + " must divide in_channels = " +
                                std::to_string(in) + " and out_channels = " + std::to_string(out));
  return 1.0 / std::sqrt(double(in / groups * kernel_elements));
}

// The weight (weight_shape) and optional bias (out) of a convolution, registered on layer
// and drawn from U(-bound, bound).
template <class T>
void register_conv_parameters(Module<T>& layer, const Shape& weight_shape, T bound, bool with_bias, Generator& gen,
                              Tensor<T>& weight, std::optional<Tensor<T>>& bias) {
  weight = layer.register_parameter("weight", zeros<T>(weight_shape));
  init::uniform_(weight, -bound, bound, gen);
  if (with_bias) {
    bias = layer.register_parameter("bias", zeros<T>({weight_shape[0]}));
    init::uniform_(*bias, -bound, bound, gen);
  }
}

// PyTorch prints a Conv1d's sizes as one-element tuples: "(3,)".
std::string tuple1(std::size_t n) { return "(" + std::to_string(n) + ",)"; }

}  // namespace

// ---- Conv2d ---------------------------------------------------------------------------
template <class T>
Conv2d<T>::Conv2d(std::size_t in, std::size_t out, Size2 kernel, Size2 stride, Size2 padding, Size2 dilation,
                  std::size_t groups, bool with_bias, Generator& gen)
    : UnaryModule<T>("Conv2d"),
      in_channels(in),
      out_channels(out),
      kernel_size(kernel),
      stride(stride),
      padding(padding),
      dilation(dilation),
      groups(groups) {
  const T bound = T(conv_init_bound("Conv2d", in, out, kernel.h * kernel.w, kernel.str(), groups));
  register_conv_parameters(*this, {out, in / groups, kernel.h, kernel.w}, bound, with_bias, gen, weight, bias);
}

template <class T> Tensor<T> Conv2d<T>::forward(const Tensor<T>& x) {
  if (x.dim() != 4 || x.shape()[1] != in_channels)
    throw std::invalid_argument("Conv2d: input " + shape_str(x.shape()) +
                                " is not (N, in_channels = " + std::to_string(in_channels) + ", H, W)");
  return conv2d(x, weight, bias, stride, padding, dilation, groups);
}

template <class T> std::string Conv2d<T>::extra_repr() const {
  std::string out = std::to_string(in_channels) + ", " + std::to_string(out_channels) +
                    ", kernel_size=" + kernel_size.str() + ", stride=" + stride.str();
  if (padding.h || padding.w) out += ", padding=" + padding.str();
  if (dilation.h != 1 || dilation.w != 1) out += ", dilation=" + dilation.str();
  if (groups != 1) out += ", groups=" + std::to_string(groups);
  if (!bias) out += ", bias=false";
  return out;
}

// ---- Conv1d ---------------------------------------------------------------------------
template <class T>
Conv1d<T>::Conv1d(std::size_t in, std::size_t out, std::size_t kernel, std::size_t stride, std::size_t padding,
                  std::size_t dilation, std::size_t groups, bool with_bias, Generator& gen)
    : UnaryModule<T>("Conv1d"),
      in_channels(in),
      out_channels(out),
      kernel_size(kernel),
      stride(stride),
      padding(padding),
      dilation(dilation),
      groups(groups) {
  const T bound = T(conv_init_bound("Conv1d", in, out, kernel, std::to_string(kernel), groups));
  register_conv_parameters(*this, {out, in / groups, kernel}, bound, with_bias, gen, weight, bias);
}

template <class T> Tensor<T> Conv1d<T>::forward(const Tensor<T>& x) {
  if (x.dim() != 3 || x.shape()[1] != in_channels)
    throw std::invalid_argument("Conv1d: input " + shape_str(x.shape()) +
                                " is not (N, in_channels = " + std::to_string(in_channels) + ", L)");
  return conv1d(x, weight, bias, stride, padding, dilation, groups);
}

template <class T> std::string Conv1d<T>::extra_repr() const {
  std::string out = std::to_string(in_channels) + ", " + std::to_string(out_channels) +
                    ", kernel_size=" + tuple1(kernel_size) + ", stride=" + tuple1(stride);
  if (padding) out += ", padding=" + tuple1(padding);
  if (dilation != 1) out += ", dilation=" + tuple1(dilation);
  if (groups != 1) out += ", groups=" + std::to_string(groups);
  if (!bias) out += ", bias=false";
  return out;
}

// ---- pools ----------------------------------------------------------------------------
template <class T>
MaxPool2d<T>::MaxPool2d(Size2 kernel, std::optional<Size2> stride, Size2 padding, Size2 dilation, bool ceil_mode)
    : UnaryModule<T>("MaxPool2d"),
      kernel_size(kernel),
      stride(stride.value_or(kernel)),
      padding(padding),
      dilation(dilation),
      ceil_mode(ceil_mode) {}

template <class T> std::string MaxPool2d<T>::extra_repr() const {
  return "kernel_size=" + kernel_size.str() + ", stride=" + stride.str() + ", padding=" + padding.str() +
         ", dilation=" + dilation.str() + ", ceil_mode=" + (ceil_mode ? "true" : "false");
}

template <class T>
AvgPool2d<T>::AvgPool2d(Size2 kernel, std::optional<Size2> stride, Size2 padding, bool ceil_mode,
                        bool count_include_pad, std::optional<long> divisor_override)
    : UnaryModule<T>("AvgPool2d"),
      kernel_size(kernel),
      stride(stride.value_or(kernel)),
      padding(padding),
      ceil_mode(ceil_mode),
      count_include_pad(count_include_pad),
      divisor_override(divisor_override) {}

template <class T> std::string AvgPool2d<T>::extra_repr() const {
  return "kernel_size=" + kernel_size.str() + ", stride=" + stride.str() + ", padding=" + padding.str();
}

template <class T>
AdaptiveAvgPool2d<T>::AdaptiveAvgPool2d(Size2 output_size)
    : UnaryModule<T>("AdaptiveAvgPool2d"), output_size(output_size) {}

template <class T> std::string AdaptiveAvgPool2d<T>::extra_repr() const { return "output_size=" + output_size.str(); }

// ---- BatchNorm ------------------------------------------------------------------------
template <class T>
BatchNorm<T>::BatchNorm(std::string type_name, std::size_t dims_low, std::size_t dims_high, std::size_t features,
                        double eps, std::optional<double> momentum, bool affine, bool track_running_stats)
    : UnaryModule<T>(std::move(type_name)),
      num_features(features),
      eps(eps),
      momentum(momentum),
      dims_low_(dims_low),
      dims_high_(dims_high) {
  if (features == 0) throw std::invalid_argument(this->type_name() + ": num_features must be positive");
  if (!(eps > 0)) throw std::invalid_argument(this->type_name() + ": eps must be positive");
  if (affine) {
    weight = this->register_parameter("weight", ones<T>({features}));
    bias = this->register_parameter("bias", zeros<T>({features}));
  }
  if (track_running_stats) {
    running_mean = this->register_buffer("running_mean", zeros<T>({features}));
    running_var = this->register_buffer("running_var", ones<T>({features}));
    num_batches_tracked = this->register_buffer("num_batches_tracked", zeros<T>({}));
  }
}

template <class T> Tensor<T> BatchNorm<T>::forward(const Tensor<T>& x) {
  if (x.dim() < dims_low_ || x.dim() > dims_high_ || x.shape()[1] != num_features)
    throw std::invalid_argument(this->type_name() + ": input " + shape_str(x.shape()) + " is not " +
                                (dims_high_ == 4 ? "(N, C, H, W)" : "(N, C) or (N, C, L)") +
                                " with C = num_features = " + std::to_string(num_features));
  const bool use_batch = this->is_training() || !running_mean;
  double factor = momentum.value_or(0.0);
  if (this->is_training() && num_batches_tracked) {
    num_batches_tracked->mutable_data()() += T(1);
    // momentum None: the running statistics are the mean of every batch so far
    if (!momentum) factor = 1.0 / double(num_batches_tracked->data()());
  }
  return batch_norm(x, running_mean, running_var, weight, bias, use_batch, factor, eps);
}

template <class T> std::string BatchNorm<T>::extra_repr() const {
  return std::to_string(num_features) + ", eps=" + float_repr(eps) +
         ", momentum=" + (momentum ? float_repr(*momentum) : "None") + ", affine=" + (weight ? "true" : "false") +
         ", track_running_stats=" + (running_mean ? "true" : "false");
}

// ---- Flatten --------------------------------------------------------------------------
template <class T>
Flatten<T>::Flatten(int start_dim, int end_dim) : UnaryModule<T>("Flatten"), start_dim(start_dim), end_dim(end_dim) {}

template <class T> Tensor<T> Flatten<T>::forward(const Tensor<T>& x) {
  const long rank = long(x.dim());
  const long start = start_dim < 0 ? start_dim + rank : start_dim, end = end_dim < 0 ? end_dim + rank : end_dim;
  if (start < 0 || end >= rank || start > end)
    throw std::invalid_argument("Flatten: start_dim " + std::to_string(start_dim) + " and end_dim " +
                                std::to_string(end_dim) + " do not fit input " + shape_str(x.shape()));
  std::vector<long> shape;
  for (long d = 0; d < rank; ++d) {
    const long size = long(x.shape()[std::size_t(d)]);
    if (d <= start || d > end)
      shape.push_back(size);
    else
      shape.back() *= size;
  }
  return reshape(x, shape);
}

template <class T> std::string Flatten<T>::extra_repr() const {
  return "start_dim=" + std::to_string(start_dim) + ", end_dim=" + std::to_string(end_dim);
}

#define XTGRAD_INSTANTIATE_VISION(T)   \
  template class Conv1d<T>;            \
  template class Conv2d<T>;            \
  template class MaxPool2d<T>;         \
  template class AvgPool2d<T>;         \
  template class AdaptiveAvgPool2d<T>; \
  template class BatchNorm<T>;         \
  template class BatchNorm1d<T>;       \
  template class BatchNorm2d<T>;       \
  template class Flatten<T>;
XTGRAD_INSTANTIATE_VISION(float)
XTGRAD_INSTANTIATE_VISION(double)

}  // namespace xtgrad
