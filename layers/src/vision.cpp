#include "xtgrad/vision.hpp"

#include <cmath>
#include <stdexcept>
#include <utility>

namespace xtgrad {
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
  if (in == 0 || out == 0 || kernel.h == 0 || kernel.w == 0)
    throw std::invalid_argument("Conv2d: in_channels, out_channels and kernel_size must be positive, got " +
                                std::to_string(in) + ", " + std::to_string(out) + ", " + kernel.str());
  if (groups == 0 || in % groups != 0 || out % groups != 0)
    throw std::invalid_argument("Conv2d: groups = " + std::to_string(groups) + " must divide in_channels = " +
                                std::to_string(in) + " and out_channels = " + std::to_string(out));
  // PyTorch: kaiming_uniform(a = sqrt(5)) for the weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  // for the bias; both come to the bound 1/sqrt(fan_in), as in Linear.
  const std::size_t fan_in = in / groups * kernel.h * kernel.w;
  const T bound = T(1.0 / std::sqrt(double(fan_in)));
  weight = this->register_parameter("weight", rand<T>({out, in / groups, kernel.h, kernel.w}, gen, -bound, bound));
  if (with_bias) bias = this->register_parameter("bias", rand<T>({out}, gen, -bound, bound));
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

// ---- pools ----------------------------------------------------------------------------
template <class T>
MaxPool2d<T>::MaxPool2d(Size2 kernel, std::optional<Size2> stride, Size2 padding)
    : UnaryModule<T>("MaxPool2d"), kernel_size(kernel), stride(stride.value_or(kernel)), padding(padding) {}

template <class T> std::string MaxPool2d<T>::extra_repr() const {
  return "kernel_size=" + kernel_size.str() + ", stride=" + stride.str() + ", padding=" + padding.str();
}

template <class T>
AvgPool2d<T>::AvgPool2d(Size2 kernel, std::optional<Size2> stride, Size2 padding)
    : UnaryModule<T>("AvgPool2d"), kernel_size(kernel), stride(stride.value_or(kernel)), padding(padding) {}

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
                        double eps, double momentum, bool affine, bool track_running_stats)
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
  if (this->is_training() && num_batches_tracked) num_batches_tracked->mutable_data()() += T(1);
  return batch_norm(x, running_mean, running_var, weight, bias, use_batch, momentum, eps);
}

template <class T> std::string BatchNorm<T>::extra_repr() const {
  return std::to_string(num_features) + ", eps=" + std::to_string(eps) + ", momentum=" + std::to_string(momentum) +
         ", affine=" + (weight ? "true" : "false") + ", track_running_stats=" + (running_mean ? "true" : "false");
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
