// Options structs for the layers with more than two optional arguments: PyTorch's keyword
// arguments with PyTorch's defaults, chainable as the optimizers' options, so a call
// states only what differs and can still pass a generator:
//   TransformerEncoderLayer<float> layer(128, 4, TransformerLayerOptions().set_batch_first(true), gen);
//   LSTM<float> lstm(64, 128, {}, gen);  // every default, this generator
// Each layer also keeps PyTorch's positional order.
#pragma once

#include <cstddef>

#include "xtgrad/ops.hpp"

namespace xtgrad {

enum class Activation { relu, gelu };  // the feed-forward activation of a Transformer layer

// A chainable setter: Options().set_name(value).
#define XTGRAD_OPTION(Options, type, name) \
  Options& set_##name(type value) {        \
    name = value;                          \
    return *this;                          \
  }

// The seed's cross-attention layer (ours: PyTorch has none with separate key and value
// widths); the defaults of nn.MultiheadAttention.
struct MultiHeadCrossAttentionOptions {
  bool bias = true;
  double dropout = 0.0;
  XTGRAD_OPTION(MultiHeadCrossAttentionOptions, bool, bias)
  XTGRAD_OPTION(MultiHeadCrossAttentionOptions, double, dropout)
};

struct MultiheadAttentionOptions {
  double dropout = 0.0;
  bool bias = true;
  bool batch_first = false;
  XTGRAD_OPTION(MultiheadAttentionOptions, double, dropout)
  XTGRAD_OPTION(MultiheadAttentionOptions, bool, bias)
  XTGRAD_OPTION(MultiheadAttentionOptions, bool, batch_first)
};

// TransformerEncoderLayer's and TransformerDecoderLayer's.
struct TransformerLayerOptions {
  std::size_t dim_feedforward = 2048;
  double dropout = 0.1;
  Activation activation = Activation::relu;
  double layer_norm_eps = 1e-5;
  bool batch_first = false;
  bool norm_first = false;
  XTGRAD_OPTION(TransformerLayerOptions, std::size_t, dim_feedforward)
  XTGRAD_OPTION(TransformerLayerOptions, double, dropout)
  XTGRAD_OPTION(TransformerLayerOptions, Activation, activation)
  XTGRAD_OPTION(TransformerLayerOptions, double, layer_norm_eps)
  XTGRAD_OPTION(TransformerLayerOptions, bool, batch_first)
  XTGRAD_OPTION(TransformerLayerOptions, bool, norm_first)
};

// LSTM's and GRU's.
struct RecurrentOptions {
  std::size_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
  XTGRAD_OPTION(RecurrentOptions, std::size_t, num_layers)
  XTGRAD_OPTION(RecurrentOptions, bool, bias)
  XTGRAD_OPTION(RecurrentOptions, bool, batch_first)
};

// Conv2d's.
struct ConvOptions {
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  std::size_t groups = 1;
  bool bias = true;
  XTGRAD_OPTION(ConvOptions, Size2, stride)
  XTGRAD_OPTION(ConvOptions, Size2, padding)
  XTGRAD_OPTION(ConvOptions, Size2, dilation)
  XTGRAD_OPTION(ConvOptions, std::size_t, groups)
  XTGRAD_OPTION(ConvOptions, bool, bias)
};

#undef XTGRAD_OPTION

}  // namespace xtgrad
