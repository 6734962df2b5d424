// Recurrent layers as torch.nn names them: LSTM and GRU (stacked, optionally batch_first)
// and their one-step cells. Gate order, parameter names (weight_ih_l0, weight_hh_l0,
// bias_ih_l0, bias_hh_l0, ...) and initialisation U(-1/sqrt(hidden), 1/sqrt(hidden)) are
// PyTorch's, so a PyTorch state_dict loads by its keys.
//   LSTM: i, f, g, o = chunks of x W_ih^T + b_ih + h W_hh^T + b_hh (sigmoid, sigmoid, tanh,
//         sigmoid); c' = f c + i g; h' = o tanh(c')
//   GRU:  r, z = sigmoid of the first two chunks of x W_ih^T + b_ih + h W_hh^T + b_hh;
//         n = tanh(x_n + r (h W_hn^T + b_hn)); h' = (1 - z) n + z h
// A layer projects the inputs of all time steps in one product; only h W_hh^T is per step.
// Variable-length batches: pass `lengths` (one per sequence, in batch order, 1 to the
// sequence length). Sequence b stops at its length, as a PyTorch packed sequence does: its
// outputs after that are zeros and its h_n (and c_n) are its state at its last step.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "xtgrad/module.hpp"
#include "xtgrad/ops.hpp"
#include "xtgrad/options.hpp"

namespace xtgrad {

template <class T> struct LSTMState {
  Tensor<T> h, c;  // (num_layers, B, hidden) for LSTM, (B, hidden) for LSTMCell
};

template <class T> struct LSTMOutput {
  Tensor<T> output;    // (L, B, hidden), or (B, L, hidden) when batch_first
  LSTMState<T> state;  // h_n, c_n: (num_layers, B, hidden)
};

template <class T> struct GRUOutput {
  Tensor<T> output;  // (L, B, hidden), or (B, L, hidden) when batch_first
  Tensor<T> h_n;     // (num_layers, B, hidden)
};

// What LSTMCell and GRUCell share: sizes and the weights, named as PyTorch names them
// (weight_ih (gates hidden, input), weight_hh (gates hidden, hidden), bias_ih, bias_hh).
template <class T> class RecurrentCell : public Module<T> {
 public:
  std::string extra_repr() const override;

  const std::size_t input_size, hidden_size;
  Tensor<T> weight_ih, weight_hh;
  std::optional<Tensor<T>> bias_ih, bias_hh;  // (gates hidden)

 protected:
  RecurrentCell(std::string type_name, std::size_t gates, std::size_t input_size, std::size_t hidden_size, bool bias,
                Generator& gen);
};

// One LSTM step: x (B, input), state (B, hidden) each -> the next (h, c). 4 gates.
template <class T> class LSTMCell : public RecurrentCell<T>, public Callable<LSTMCell<T>> {
 public:
  LSTMCell(std::size_t input_size, std::size_t hidden_size, bool bias = true, Generator& gen = global_generator())
      : RecurrentCell<T>("LSTMCell", 4, input_size, hidden_size, bias, gen) {}
  // No state: zeros.
  LSTMState<T> forward(const Tensor<T>& x, const std::optional<LSTMState<T>>& state = std::nullopt);
};

// One GRU step: x (B, input), h (B, hidden) -> the next h. 3 gates.
template <class T> class GRUCell : public RecurrentCell<T>, public Callable<GRUCell<T>> {
 public:
  GRUCell(std::size_t input_size, std::size_t hidden_size, bool bias = true, Generator& gen = global_generator())
      : RecurrentCell<T>("GRUCell", 3, input_size, hidden_size, bias, gen) {}
  Tensor<T> forward(const Tensor<T>& x, const std::optional<Tensor<T>>& h = std::nullopt);
};

// What LSTM and GRU share: sizes, layout and each layer's weights, registered as
// weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}.
template <class T> class RecurrentLayers : public Module<T> {
 public:
  std::string extra_repr() const override;

  const std::size_t input_size, hidden_size, num_layers;
  const bool batch_first;
  std::vector<Tensor<T>> weight_ih, weight_hh;
  std::vector<std::optional<Tensor<T>>> bias_ih, bias_hh;

 protected:
  RecurrentLayers(std::string type_name, std::size_t gates, std::size_t input_size, std::size_t hidden_size,
                  std::size_t num_layers, bool bias, bool batch_first, Generator& gen);
};

template <class T> class LSTM : public RecurrentLayers<T>, public Callable<LSTM<T>> {
 public:
  LSTM(std::size_t input_size, std::size_t hidden_size, std::size_t num_layers = 1, bool bias = true,
       bool batch_first = false, Generator& gen = global_generator())
      : RecurrentLayers<T>("LSTM", 4, input_size, hidden_size, num_layers, bias, batch_first, gen) {}
  LSTM(std::size_t input_size, std::size_t hidden_size, const RecurrentOptions& o, Generator& gen = global_generator())
      : LSTM(input_size, hidden_size, o.num_layers, o.bias, o.batch_first, gen) {}
  // x (L, B, input) or (B, L, input) when batch_first; state h_0, c_0 (num_layers, B,
  // hidden), zeros when not given.
  LSTMOutput<T> forward(const Tensor<T>& x, const std::optional<LSTMState<T>>& state = std::nullopt,
                        const std::optional<std::vector<std::size_t>>& lengths = std::nullopt);
};

template <class T> class GRU : public RecurrentLayers<T>, public Callable<GRU<T>> {
 public:
  GRU(std::size_t input_size, std::size_t hidden_size, std::size_t num_layers = 1, bool bias = true,
      bool batch_first = false, Generator& gen = global_generator())
      : RecurrentLayers<T>("GRU", 3, input_size, hidden_size, num_layers, bias, batch_first, gen) {}
  GRU(std::size_t input_size, std::size_t hidden_size, const RecurrentOptions& o, Generator& gen = global_generator())
      : GRU(input_size, hidden_size, o.num_layers, o.bias, o.batch_first, gen) {}
  // x as LSTM's; h_0 (num_layers, B, hidden), zeros when not given.
  GRUOutput<T> forward(const Tensor<T>& x, const std::optional<Tensor<T>>& h_0 = std::nullopt,
                       const std::optional<std::vector<std::size_t>>& lengths = std::nullopt);
};

}  // namespace xtgrad
