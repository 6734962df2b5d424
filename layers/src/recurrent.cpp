// LSTM, GRU and their cells (recurrent.hpp), built from the engine's ops: autograd gives
// the backward through time. A state is a list of tensors, (h) for a GRU and (h, c) for an
// LSTM, so that stacking, masking and the time loop are written once for both.
#include "xtgrad/recurrent.hpp"
#include "xtgrad/init.hpp"

#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

namespace xtgrad {
namespace {

template <class T> using State = std::vector<Tensor<T>>;  // (h) or (h, c), each (B, hidden)

[[noreturn]] void fail(const std::string& layer, const std::string& what) {
  throw std::invalid_argument(layer + ": " + what);
}

// gates (B, n hidden) -> chunk k (B, hidden)
template <class T> Tensor<T> chunk(const Tensor<T>& gates, std::size_t k, std::size_t hidden) {
  return narrow(gates, 1, k * hidden, hidden);
}

// x_gates = x W_ih^T + b_ih and h_gates = h W_hh^T + b_hh, each (B, 4 hidden)
template <class T> State<T> lstm_step(const Tensor<T>& x_gates, const Tensor<T>& h_gates, const State<T>& state) {
  const std::size_t hidden = state[0].shape()[1];
  const Tensor<T> gates = x_gates + h_gates;
  const Tensor<T> i = sigmoid(chunk(gates, 0, hidden)), f = sigmoid(chunk(gates, 1, hidden));
  const Tensor<T> g = tanh(chunk(gates, 2, hidden)), o = sigmoid(chunk(gates, 3, hidden));
  const Tensor<T> c = f * state[1] + i * g;
  return {o * tanh(c), c};
}

// x_gates, h_gates (B, 3 hidden): r and z from their sums; n = tanh(x_n + r h_n)
template <class T> State<T> gru_step(const Tensor<T>& x_gates, const Tensor<T>& h_gates, const State<T>& state) {
  const std::size_t hidden = state[0].shape()[1];
  const Tensor<T> r = sigmoid(chunk(x_gates, 0, hidden) + chunk(h_gates, 0, hidden));
  const Tensor<T> z = sigmoid(chunk(x_gates, 1, hidden) + chunk(h_gates, 1, hidden));
  const Tensor<T> n = tanh(chunk(x_gates, 2, hidden) + r * chunk(h_gates, 2, hidden));
  return {n + z * (state[0] - n)};  // (1 - z) n + z h
}

template <class T>
using Step = std::function<State<T>(const Tensor<T>& x_gates, const Tensor<T>& h_gates, const State<T>& state)>;

// The weights of one layer (or cell), registered under PyTorch's names with `suffix`.
template <class T> struct Weights {
  Tensor<T> ih, hh;
  std::optional<Tensor<T>> b_ih, b_hh;
};

template <class T>
Weights<T> register_weights(Module<T>& m, const std::string& suffix, std::size_t gates, std::size_t input,
                            std::size_t hidden, bool bias, Generator& gen) {
  const double bound = 1.0 / std::sqrt(double(hidden));  // every parameter ~ U(-bound, bound)
  const auto draw = [&](const std::string& name, const Shape& shape) {
    Tensor<T> p = m.register_parameter(name + suffix, zeros<T>(shape));
    return init::uniform_(p, -bound, bound, gen);
  };
  Weights<T> w;
  w.ih = draw("weight_ih", {gates * hidden, input});
  w.hh = draw("weight_hh", {gates * hidden, hidden});
  if (bias) {
    w.b_ih = draw("bias_ih", {gates * hidden});
    w.b_hh = draw("bias_hh", {gates * hidden});
  }
  return w;
}

void check_sizes(const std::string& layer, std::size_t input, std::size_t hidden, std::size_t layers = 1) {
  if (input == 0 || hidden == 0 || layers == 0)
    fail(layer, "input_size, hidden_size and num_layers must be positive, got " + std::to_string(input) + ", " +
                    std::to_string(hidden) + ", " + std::to_string(layers));
}

void check_state(const std::string& layer, const char* name, const Shape& got, const Shape& expected) {
  if (got != expected) fail(layer, std::string(name) + " must be " + shape_str(expected) + ", got " + shape_str(got));
}

// finished[t] (B, 1): true where sequence b has ended before step t
std::vector<Mask> finished_masks(const std::string& layer, const std::vector<std::size_t>& lengths, std::size_t steps,
                                 std::size_t batch) {
  if (lengths.size() != batch)
    fail(layer, "lengths has " + std::to_string(lengths.size()) + " entries for a batch of " + std::to_string(batch));
  for (std::size_t len : lengths)
    if (len == 0 || len > steps)
      fail(layer, "every length must be from 1 to the sequence length " + std::to_string(steps) + ", got " +
                      std::to_string(len));
  std::vector<Mask> finished(steps, Mask(Shape{batch, 1}));
  for (std::size_t t = 0; t < steps; ++t)
    for (std::size_t b = 0; b < batch; ++b) finished[t](b, 0) = t >= lengths[b];
  return finished;
}

// One layer over the whole sequence: x (L, B, input) -> outputs (L, B, hidden); state
// is updated to the last step's (each sequence's own last step when finished is given).
template <class T>
Tensor<T> run_layer(const Tensor<T>& x, const Weights<T>& w, const Step<T>& step, State<T>& state,
                    const std::vector<Mask>* finished) {
  const Tensor<T> x_gates = linear(x, w.ih, w.b_ih);  // (L, B, gates): every step in one product
  const std::size_t steps = x.shape()[0], batch = x.shape()[1];
  std::vector<Tensor<T>> outputs;
  for (std::size_t t = 0; t < steps; ++t) {
    const Tensor<T> x_t = reshape(narrow(x_gates, 0, t, 1), {long(batch), -1});
    State<T> next = step(x_t, linear(state[0], w.hh, w.b_hh), state);
    if (finished) {  // ended sequences keep their state and output zeros
      for (std::size_t s = 0; s < next.size(); ++s) next[s] = xtgrad::where((*finished)[t], state[s], next[s]);
      outputs.push_back(unsqueeze(masked_fill(next[0], (*finished)[t], T(0)), 0));
    } else {
      outputs.push_back(unsqueeze(next[0], 0));
    }
    state = std::move(next);
  }
  return concat(outputs, 0);
}

// The stacked layers: x (L, B, input) or (B, L, input) -> output, and the final states
// stacked over layers. initial: per state tensor, (num_layers, B, hidden), or empty.
template <class T> struct Stacked {
  Tensor<T> output;
  State<T> final_state;  // each (num_layers, B, hidden)
};

template <class T>
Stacked<T> run_stack(const std::string& layer, const Tensor<T>& x, bool batch_first, std::size_t input_size,
                     std::size_t hidden, const std::vector<Weights<T>>& weights, const Step<T>& step,
                     const State<T>& initial, const std::vector<const char*>& state_names,
                     const std::optional<std::vector<std::size_t>>& lengths) {
  if (x.dim() != 3 || x.shape()[2] != input_size)
    fail(layer, "input must be " + std::string(batch_first ? "(B, L, " : "(L, B, ") + std::to_string(input_size) +
                    "), got " + shape_str(x.shape()));
  const Tensor<T> seq = batch_first ? transpose(x, 0, 1) : x;  // (L, B, input)
  const std::size_t steps = seq.shape()[0], batch = seq.shape()[1], layers = weights.size();
  for (std::size_t s = 0; s < initial.size(); ++s)
    check_state(layer, state_names[s], initial[s].shape(), {layers, batch, hidden});
  const std::vector<Mask> finished = lengths ? finished_masks(layer, *lengths, steps, batch) : std::vector<Mask>();
  Tensor<T> out = seq;
  std::vector<std::vector<Tensor<T>>> finals(state_names.size());
  for (std::size_t k = 0; k < layers; ++k) {
    State<T> state;
    for (std::size_t s = 0; s < state_names.size(); ++s)
      state.push_back(initial.empty() ? zeros<T>({batch, hidden}) : squeeze(narrow(initial[s], 0, k, 1), 0));
    out = run_layer(out, weights[k], step, state, lengths ? &finished : nullptr);
    for (std::size_t s = 0; s < state.size(); ++s) finals[s].push_back(unsqueeze(state[s], 0));
  }
  Stacked<T> result{batch_first ? transpose(out, 0, 1) : out, {}};
  for (auto& f : finals) result.final_state.push_back(concat(f, 0));
  return result;
}

template <class T> void check_cell_input(const std::string& layer, const Tensor<T>& x, std::size_t input_size) {
  if (x.dim() != 2 || x.shape()[1] != input_size)
    fail(layer, "input must be (B, " + std::to_string(input_size) + "), got " + shape_str(x.shape()));
}

std::string sizes_repr(std::size_t input, std::size_t hidden) {
  return std::to_string(input) + ", " + std::to_string(hidden);
}

}  // namespace

// ---- cells ----------------------------------------------------------------------------
template <class T>
RecurrentCell<T>::RecurrentCell(std::string type_name, std::size_t gates, std::size_t input, std::size_t hidden,
                                bool bias, Generator& gen)
    : Module<T>(std::move(type_name)), input_size(input), hidden_size(hidden) {
  check_sizes(this->type_name(), input, hidden);
  const Weights<T> w = register_weights<T>(*this, "", gates, input, hidden, bias, gen);
  weight_ih = w.ih, weight_hh = w.hh, bias_ih = w.b_ih, bias_hh = w.b_hh;
}

template <class T> std::string RecurrentCell<T>::extra_repr() const {
  return sizes_repr(input_size, hidden_size) + (bias_ih ? "" : ", bias=false");
}

// x (B, input), state (B, hidden) each -> (h, c)
template <class T> LSTMState<T> LSTMCell<T>::forward(const Tensor<T>& x, const std::optional<LSTMState<T>>& state) {
  check_cell_input("LSTMCell", x, this->input_size);
  const Shape expected{x.shape()[0], this->hidden_size};
  State<T> s{zeros<T>(expected), zeros<T>(expected)};
  if (state) {
    check_state("LSTMCell", "h", state->h.shape(), expected);
    check_state("LSTMCell", "c", state->c.shape(), expected);
    s = {state->h, state->c};
  }
  State<T> next = lstm_step(linear(x, this->weight_ih, this->bias_ih), linear(s[0], this->weight_hh, this->bias_hh), s);
  return {next[0], next[1]};
}

// x (B, input), h (B, hidden) -> h
template <class T> Tensor<T> GRUCell<T>::forward(const Tensor<T>& x, const std::optional<Tensor<T>>& h) {
  check_cell_input("GRUCell", x, this->input_size);
  const Shape expected{x.shape()[0], this->hidden_size};
  if (h) check_state("GRUCell", "h", h->shape(), expected);
  const State<T> s{h ? *h : zeros<T>(expected)};
  return gru_step(linear(x, this->weight_ih, this->bias_ih), linear(s[0], this->weight_hh, this->bias_hh), s)[0];
}

// ---- stacked layers -------------------------------------------------------------------
template <class T>
RecurrentLayers<T>::RecurrentLayers(std::string type_name, std::size_t gates, std::size_t input, std::size_t hidden,
                                    std::size_t layers, bool bias, bool batch_first, Generator& gen)
    : Module<T>(std::move(type_name)),
      input_size(input),
      hidden_size(hidden),
      num_layers(layers),
      batch_first(batch_first) {
  check_sizes(this->type_name(), input, hidden, layers);
  for (std::size_t k = 0; k < layers; ++k) {
    const Weights<T> w =
        register_weights<T>(*this, "_l" + std::to_string(k), gates, k == 0 ? input : hidden, hidden, bias, gen);
    weight_ih.push_back(w.ih), weight_hh.push_back(w.hh), bias_ih.push_back(w.b_ih), bias_hh.push_back(w.b_hh);
  }
}

template <class T> std::string RecurrentLayers<T>::extra_repr() const {
  return sizes_repr(input_size, hidden_size) + ", num_layers=" + std::to_string(num_layers) +
         (bias_ih[0] ? "" : ", bias=false") + (batch_first ? ", batch_first=true" : "");
}

// Each layer's weights, in the order run_stack takes them.
template <class T> std::vector<Weights<T>> layer_weights(const RecurrentLayers<T>& m) {
  std::vector<Weights<T>> weights;
  for (std::size_t k = 0; k < m.num_layers; ++k)
    weights.push_back({m.weight_ih[k], m.weight_hh[k], m.bias_ih[k], m.bias_hh[k]});
  return weights;
}

template <class T>
LSTMOutput<T> LSTM<T>::forward(const Tensor<T>& x, const std::optional<LSTMState<T>>& state,
                               const std::optional<std::vector<std::size_t>>& lengths) {
  const State<T> initial = state ? State<T>{state->h, state->c} : State<T>{};
  Stacked<T> r = run_stack<T>("LSTM", x, this->batch_first, this->input_size, this->hidden_size, layer_weights(*this),
                              lstm_step<T>, initial, {"h_0", "c_0"}, lengths);
  return {r.output, {r.final_state[0], r.final_state[1]}};
}

template <class T>
GRUOutput<T> GRU<T>::forward(const Tensor<T>& x, const std::optional<Tensor<T>>& h_0,
                             const std::optional<std::vector<std::size_t>>& lengths) {
  const State<T> initial = h_0 ? State<T>{*h_0} : State<T>{};
  Stacked<T> r = run_stack<T>("GRU", x, this->batch_first, this->input_size, this->hidden_size, layer_weights(*this),
                              gru_step<T>, initial, {"h_0"}, lengths);
  return {r.output, r.final_state[0]};
}

template class RecurrentCell<float>;
template class RecurrentCell<double>;
template class RecurrentLayers<float>;
template class RecurrentLayers<double>;
template class LSTMCell<float>;
template class LSTMCell<double>;
template class GRUCell<float>;
template class GRUCell<double>;
template class LSTM<float>;
template class LSTM<double>;
template class GRU<float>;
template class GRU<double>;

}  // namespace xtgrad
