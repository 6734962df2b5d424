#include "xtgrad/layers.hpp"
#include "xtgrad/init.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace xtgrad {

// ---- Linear ---------------------------------------------------------------------------
template <class T>
Linear<T>::Linear(std::size_t in, std::size_t out, bool with_bias, Generator& gen)
    : Linear("Linear", in, out, with_bias, gen) {}

template <class T>
Linear<T>::Linear(std::string type_name, std::size_t in, std::size_t out, bool with_bias, Generator& gen)
    : UnaryModule<T>(std::move(type_name)), in_features(in), out_features(out) {
  if (in == 0 || out == 0) throw std::invalid_argument("Linear: in_features and out_features must be positive");
  // PyTorch: kaiming_uniform_(weight, a = sqrt(5)) and a bias ~ U(-1/sqrt(fan_in),
  // 1/sqrt(fan_in)). The kaiming bound comes to 1/sqrt(fan_in) too, so both are drawn with
  // it: the floats kaiming_uniform_ gives (tests/test_module.cpp), and in double the values
  // xtgrad always drew (PyTorch's longer formula differs there in the last bit).
  weight = this->register_parameter("weight", zeros<T>({out, in}));
  const double bound = 1.0 / std::sqrt(double(init::calculate_fan_in_and_fan_out(weight.shape()).first));
  init::uniform_(weight, -bound, bound, gen);
  if (with_bias) {
    bias = this->register_parameter("bias", zeros<T>({out}));
    init::uniform_(*bias, -bound, bound, gen);
  }
}

template <class T> Tensor<T> Linear<T>::forward(const Tensor<T>& x) {
  if (x.dim() == 0 || x.shape().back() != in_features)
    throw std::invalid_argument("Linear: input " + shape_str(x.shape()) +
                                " does not end in in_features = " + std::to_string(in_features));
  return linear(x, weight, bias);
}

template <class T> std::string Linear<T>::extra_repr() const {
  return "in_features=" + std::to_string(in_features) + ", out_features=" + std::to_string(out_features) +
         ", bias=" + (bias ? "true" : "false");
}

// ---- Embedding ------------------------------------------------------------------------
template <class T>
Embedding<T>::Embedding(std::size_t num, std::size_t dim, Generator& gen) : Embedding(num, dim, std::nullopt, gen) {}

template <class T>
Embedding<T>::Embedding(std::size_t num, std::size_t dim, std::optional<std::size_t> padding, Generator& gen)
    : Module<T>("Embedding"), num_embeddings(num), embedding_dim(dim), padding_idx(padding) {
  if (padding && *padding >= num)
    throw std::invalid_argument("Embedding: padding_idx " + std::to_string(*padding) + " out of range for " +
                                std::to_string(num) + " embeddings");
  Tensor<T> initial = zeros<T>({num, dim});
  init::normal_(initial, 0.0, 1.0, gen);
  if (padding) std::fill_n(initial.mutable_data().data() + *padding * dim, dim, T(0));
  weight = this->register_parameter("weight", initial);
}

template <class T> Tensor<T> Embedding<T>::forward(const std::vector<std::size_t>& ids) {
  for (std::size_t id : ids)
    if (id >= num_embeddings)
      throw std::invalid_argument("Embedding: index " + std::to_string(id) + " out of range for " +
                                  std::to_string(num_embeddings) + " embeddings");
  const Tensor<T> rows = index_select(weight, 0, ids);  // (n, dim)
  if (!padding_idx || std::find(ids.begin(), ids.end(), *padding_idx) == ids.end()) return rows;
  // The padding rows read the weight's values but pass no gradient back to them.
  Mask padding(Shape{ids.size(), 1});
  for (std::size_t i = 0; i < ids.size(); ++i) padding(i, 0) = ids[i] == *padding_idx;
  return xtgrad::where(padding, rows.detach(), rows);
}

template <class T> Tensor<T> Embedding<T>::forward(const std::vector<std::size_t>& ids, const Shape& ids_shape) {
  std::size_t count = 1;
  for (std::size_t d : ids_shape) count *= d;
  if (count != ids.size())
    throw std::invalid_argument("Embedding: " + std::to_string(ids.size()) + " ids do not fill shape " +
                                shape_str(ids_shape));
  std::vector<long> shape(ids_shape.begin(), ids_shape.end());
  shape.push_back(static_cast<long>(embedding_dim));
  return reshape(forward(ids), shape);
}

template <class T> std::string Embedding<T>::extra_repr() const {
  return std::to_string(num_embeddings) + ", " + std::to_string(embedding_dim) +
         (padding_idx ? ", padding_idx=" + std::to_string(*padding_idx) : "");
}

// ---- LayerNorm ------------------------------------------------------------------------
template <class T>
LayerNorm<T>::LayerNorm(Shape shape, double eps_, bool affine)
    : UnaryModule<T>("LayerNorm"), normalized_shape(std::move(shape)), eps(eps_) {
  if (affine) {
    weight = this->register_parameter("weight", ones<T>(normalized_shape));
    bias = this->register_parameter("bias", zeros<T>(normalized_shape));
  }
}

template <class T> Tensor<T> LayerNorm<T>::forward(const Tensor<T>& x) {
  return layer_norm(x, normalized_shape, weight, bias, eps);
}

template <class T> std::string LayerNorm<T>::extra_repr() const {
  return shape_str(normalized_shape) + ", eps=" + float_repr(eps) +
         ", elementwise_affine=" + (weight ? "true" : "false");
}

// ---- Dropout --------------------------------------------------------------------------
template <class T>
Dropout<T>::Dropout(double p_, Generator& gen) : UnaryModule<T>("Dropout"), p(p_), gen_(gen.next_u64()) {
  check_probability("Dropout", "probability", p);
}

template <class T> Tensor<T> Dropout<T>::forward(const Tensor<T>& x) {
  return dropout(x, p, this->is_training(), gen_);
}

template <class T> std::string Dropout<T>::extra_repr() const { return "p=" + float_repr(p); }

// ---- FeedForward ----------------------------------------------------------------------
template <class T>
FeedForward<T>::FeedForward(std::size_t dim, std::size_t hidden, double dropout, Generator& gen)
    : UnaryModule<T>("FeedForward") {
  auto layers = std::make_shared<Sequential<T>>();
  layers->push_back(std::make_shared<Linear<T>>(dim, hidden, true, gen));
  layers->push_back(std::make_shared<GELU<T>>());
  layers->push_back(std::make_shared<Dropout<T>>(dropout, gen));
  layers->push_back(std::make_shared<Linear<T>>(hidden, dim, true, gen));
  net = this->register_module("net", layers);
}

template <class T> Tensor<T> FeedForward<T>::forward(const Tensor<T>& x) { return net->forward(x); }

#define INSTANTIATE(T)         \
  template class Linear<T>;    \
  template class Embedding<T>; \
  template class LayerNorm<T>; \
  template class Dropout<T>;   \
  template class FeedForward<T>;
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace xtgrad
