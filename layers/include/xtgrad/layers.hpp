// The basic layers: Linear, Embedding, LayerNorm, Dropout, activations, FeedForward.
// Every layer is a template on the scalar: float for training, double for gradcheck.
// Initial weights come from the Generator passed in (global_generator() by default).
#pragma once

#include <optional>

#include "xtgrad/module.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {

// x (..., in) -> (..., out). weight (out, in) and bias (out) ~ U(-1/sqrt(in), 1/sqrt(in)),
// PyTorch's default initialisation.
template <class T> class Linear : public UnaryModule<T> {
 public:
  Linear(std::size_t in_features, std::size_t out_features, bool bias = true, Generator& gen = global_generator());
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string extra_repr() const override;

  const std::size_t in_features, out_features;
  Tensor<T> weight;
  std::optional<Tensor<T>> bias;

 protected:
  // For a layer that is a Linear with more to it, under its own name in summary().
  Linear(std::string type_name, std::size_t in_features, std::size_t out_features, bool bias, Generator& gen);
};

// ids (n) -> (n, dim); with a shape for the ids, (shape..., dim). weight (num, dim) ~ N(0, 1).
// With padding_idx, as PyTorch: that row starts as zeros and gets no gradient.
template <class T> class Embedding : public Module<T>, public Callable<Embedding<T>> {
 public:
  Embedding(std::size_t num_embeddings, std::size_t embedding_dim, Generator& gen = global_generator());
  Embedding(std::size_t num_embeddings, std::size_t embedding_dim, std::optional<std::size_t> padding_idx,
            Generator& gen = global_generator());
  Tensor<T> forward(const std::vector<std::size_t>& ids);
  Tensor<T> forward(const std::vector<std::size_t>& ids, const Shape& ids_shape);
  std::string extra_repr() const override;

  const std::size_t num_embeddings, embedding_dim;
  const std::optional<std::size_t> padding_idx;
  Tensor<T> weight;
};

// x (..., normalized_shape) -> same shape; weight ones, bias zeros when elementwise_affine.
template <class T> class LayerNorm : public UnaryModule<T> {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  // One trailing axis of this size, as PyTorch's LayerNorm(int).
  explicit LayerNorm(std::size_t normalized_size, double eps = 1e-5, bool elementwise_affine = true)
      : LayerNorm(Shape{normalized_size}, eps, elementwise_affine) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string extra_repr() const override;

  const Shape normalized_shape;
  const double eps;
  std::optional<Tensor<T>> weight, bias;
};

// Zeroes elements with probability p while training (scaling the rest by 1/(1-p));
// the identity in eval mode. Draws from its own generator, seeded from gen.
template <class T> class Dropout : public UnaryModule<T> {
 public:
  explicit Dropout(double p = 0.5, Generator& gen = global_generator());
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string extra_repr() const override;

  const double p;

 private:
  Generator gen_;
};

template <class T> class ReLU : public UnaryModule<T> {
 public:
  ReLU() : UnaryModule<T>("ReLU") {}
  Tensor<T> forward(const Tensor<T>& x) override { return relu(x); }
};

template <class T> class GELU : public UnaryModule<T> {
 public:
  explicit GELU(GeluApproximation approx = GeluApproximation::none) : UnaryModule<T>("GELU"), approx(approx) {}
  Tensor<T> forward(const Tensor<T>& x) override { return gelu(x, approx); }
  std::string extra_repr() const override { return approx == GeluApproximation::tanh ? "approximate='tanh'" : ""; }
  const GeluApproximation approx;
};

template <class T> class Tanh : public UnaryModule<T> {
 public:
  Tanh() : UnaryModule<T>("Tanh") {}
  Tensor<T> forward(const Tensor<T>& x) override { return tanh(x); }
};

template <class T> class Sigmoid : public UnaryModule<T> {
 public:
  Sigmoid() : UnaryModule<T>("Sigmoid") {}
  Tensor<T> forward(const Tensor<T>& x) override { return sigmoid(x); }
};

// x (..., dim) -> (..., dim): Linear(dim, hidden), GELU, Dropout, Linear(hidden, dim), the
// transformer's position-wise block.
template <class T> class FeedForward : public UnaryModule<T> {
 public:
  FeedForward(std::size_t dim, std::size_t hidden, double dropout = 0.0, Generator& gen = global_generator());
  Tensor<T> forward(const Tensor<T>& x) override;

  std::shared_ptr<Sequential<T>> net;
};

}  // namespace xtgrad
