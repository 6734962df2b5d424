// A layer a user writes: gated cross-attention, as in Flamingo. Text tokens x attend to
// image features; the result is added through a learned tanh gate that starts at 0, so
// the block starts as the identity and opens as training finds it useful.
#pragma once

#include "xtgrad/attention.hpp"

template <class T> class GatedCrossAttention : public xtgrad::Module<T> {
 public:
  GatedCrossAttention(std::size_t dim, std::size_t context_dim, std::size_t heads,
                      xtgrad::Generator& gen = xtgrad::global_generator())
      : xtgrad::Module<T>("GatedCrossAttention") {
    norm = this->register_module("norm", std::make_shared<xtgrad::LayerNorm<T>>(xtgrad::Shape{dim}));
    attn = this->register_module("attn", std::make_shared<xtgrad::MultiHeadCrossAttention<T>>(
                                             dim, heads, context_dim, context_dim, dim, true, 0.0, gen));
    gate = this->register_parameter("gate", xtgrad::zeros<T>({1}));
  }

  // x (B,L,dim), context (B,Lc,context_dim) -> (B,L,dim)
  xtgrad::Tensor<T> forward(const xtgrad::Tensor<T>& x, const xtgrad::Tensor<T>& context) {
    const auto attended = attn->forward(norm->forward(x), context, context).output;
    return x + xtgrad::tanh(gate) * attended;
  }

  std::shared_ptr<xtgrad::LayerNorm<T>> norm;
  std::shared_ptr<xtgrad::MultiHeadCrossAttention<T>> attn;
  xtgrad::Tensor<T> gate;
};
