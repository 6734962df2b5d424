// Recurrent layers (recurrent.hpp) against PyTorch 1.13: LSTMCell, GRUCell, LSTM and GRU
// forward values and every gradient (input, initial state, each parameter by PyTorch's
// name), from tests/fixtures/make_recurrent_fixtures.py (float64). Also gradchecks, the
// documented lengths semantics, PyTorch's parameter names, and the errors for bad shapes
// and lengths. Every fixture test prints its largest deviation from PyTorch (MESSAGE).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fixtures.hpp"
#include "xtgrad/recurrent.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

using Named = std::vector<std::pair<std::string, D>>;
using Lengths = std::optional<std::vector<std::size_t>>;

// Ours against ours by another route (other product sizes), in rel_deviation; PyTorch's
// results are held to kPyTorchTol.
constexpr double kSelfTol = 1e-12;

// A layer as a function: x and the initial states (h_0, and c_0 for LSTM kinds; none for
// zeros) -> its results (output, h_n[, c_n] for a stacked layer; h[, c] for a cell). One
// form for all four layers, so the fixture, gradcheck and error checks are written once.
using RunFn = std::function<std::vector<D>(const D& x, const std::vector<D>& state, const Lengths& lengths)>;

RunFn run_lstm(LSTM<double>& lstm) {
  return [&lstm](const D& x, const std::vector<D>& s, const Lengths& lengths) {
    std::optional<LSTMState<double>> state;
    if (!s.empty()) state = LSTMState<double>{s.at(0), s.at(1)};
    const LSTMOutput<double> out = lstm.forward(x, state, lengths);
    return std::vector<D>{out.output, out.state.h, out.state.c};
  };
}

RunFn run_gru(GRU<double>& gru) {
  return [&gru](const D& x, const std::vector<D>& s, const Lengths& lengths) {
    std::optional<D> h_0;
    if (!s.empty()) h_0 = s.at(0);
    const GRUOutput<double> out = gru.forward(x, h_0, lengths);
    return std::vector<D>{out.output, out.h_n};
  };
}

// Cells take no lengths: the argument is ignored.
RunFn run_lstm_cell(LSTMCell<double>& cell) {
  return [&cell](const D& x, const std::vector<D>& s, const Lengths&) {
    std::optional<LSTMState<double>> state;
    if (!s.empty()) state = LSTMState<double>{s.at(0), s.at(1)};
    const LSTMState<double> out = cell.forward(x, state);
    return std::vector<D>{out.h, out.c};
  };
}

RunFn run_gru_cell(GRUCell<double>& cell) {
  return [&cell](const D& x, const std::vector<D>& s, const Lengths&) {
    std::optional<D> h;
    if (!s.empty()) h = s.at(0);
    return std::vector<D>{cell.forward(x, h)};
  };
}

bool all_zero(const Array<double>& a) {
  return std::all_of(a.begin(), a.end(), [](double v) { return v == 0.0; });
}

// ---- fixtures -------------------------------------------------------------------------
// Loads PyTorch's state_dict by its keys (strict) and checks that our parameters come in
// PyTorch's order and now hold PyTorch's values.
void load_pytorch_weights(Module<double>& module, const json& fx) {
  StateDict<double> state;
  for (const auto& item : fx.at("state_dict").items()) state[item.key()] = fixture_array(item.value());
  module.load_state_dict(state);
  std::vector<std::string> names;
  for (const auto& p : module.named_parameters()) {
    names.push_back(p.first);
    REQUIRE_MESSAGE(state.count(p.first) == 1, "PyTorch has no parameter " << p.first);
    CHECK_MESSAGE(p.second.data() == state.at(p.first), p.first << " was not loaded");
  }
  const std::vector<std::string> expected = fx.at("parameter_names").get<std::vector<std::string>>();
  CHECK(names == expected);
}

std::map<std::string, D> load_inputs(const json& fx) {  // leaves that require a gradient
  std::map<std::string, D> in;
  for (const auto& item : fx.at("inputs").items()) in.emplace(item.key(), fixture_tensor(item.value(), true));
  return in;
}

Lengths load_lengths(const json& fx) {
  if (fx.at("lengths").is_null()) return std::nullopt;
  return fx.at("lengths").get<std::vector<std::size_t>>();
}

// Runs a fixture case: PyTorch's weights, input and initial state in; the results compared
// with PyTorch's; then loss = sum over results of sum(result * G) backpropagated and the
// gradients of the input, the initial states and every parameter compared.
void check_against_pytorch(const json& fx, Module<double>& module, const RunFn& run,
                           const std::vector<std::string>& result_names) {
  load_pytorch_weights(module, fx);
  const std::map<std::string, D> in = load_inputs(fx);
  std::vector<D> state;
  for (const char* key : {"h_0", "c_0"})
    if (in.count(key)) state.push_back(in.at(key));
  const std::vector<D> results = run(in.at("input"), state, load_lengths(fx));
  REQUIRE(results.size() == result_names.size());
  REQUIRE(fx.at("outputs").size() == result_names.size());

  Deviation dev(fx.at("name").get<std::string>());
  D loss;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const std::string& name = result_names[i];
    dev.compare(results[i].data(), fx.at("outputs").at(name), name);
    const D term = sum(results[i] * fixture_tensor(fx.at("loss_weights").at(name)));
    loss = loss.defined() ? loss + term : term;
  }
  loss.backward();

  compare_all_gradients(dev, fx, in, module);
}

std::size_t config_size(const json& fx, const char* key) { return fx.at("config").at(key).get<std::size_t>(); }
bool config_flag(const json& fx, const char* key) { return fx.at("config").at(key).get<bool>(); }

void check_lstm_cell_fixture(const std::string& name) {
  const json fx = load_fixture("recurrent", name + ".json");
  REQUIRE(fx.at("module").get<std::string>() == "LSTMCell");
  LSTMCell<double> cell(config_size(fx, "input_size"), config_size(fx, "hidden_size"), config_flag(fx, "bias"));
  check_against_pytorch(fx, cell, run_lstm_cell(cell), {"h", "c"});
}

void check_gru_cell_fixture(const std::string& name) {
  const json fx = load_fixture("recurrent", name + ".json");
  REQUIRE(fx.at("module").get<std::string>() == "GRUCell");
  GRUCell<double> cell(config_size(fx, "input_size"), config_size(fx, "hidden_size"), config_flag(fx, "bias"));
  check_against_pytorch(fx, cell, run_gru_cell(cell), {"h"});
}

void check_lstm_fixture(const std::string& name) {
  const json fx = load_fixture("recurrent", name + ".json");
  REQUIRE(fx.at("module").get<std::string>() == "LSTM");
  LSTM<double> lstm(config_size(fx, "input_size"), config_size(fx, "hidden_size"), config_size(fx, "num_layers"),
                    config_flag(fx, "bias"), config_flag(fx, "batch_first"));
  check_against_pytorch(fx, lstm, run_lstm(lstm), {"output", "h_n", "c_n"});
}

void check_gru_fixture(const std::string& name) {
  const json fx = load_fixture("recurrent", name + ".json");
  REQUIRE(fx.at("module").get<std::string>() == "GRU");
  GRU<double> gru(config_size(fx, "input_size"), config_size(fx, "hidden_size"), config_size(fx, "num_layers"),
                  config_flag(fx, "bias"), config_flag(fx, "batch_first"));
  check_against_pytorch(fx, gru, run_gru(gru), {"output", "h_n"});
}

// ---- gradcheck ------------------------------------------------------------------------
// All results flattened into one vector, so one Jacobian covers output, h_n and c_n.
D concat_flat(const std::vector<D>& parts) {
  std::vector<D> flat;
  for (const D& p : parts) flat.push_back(reshape(p, {static_cast<long>(p.numel())}));
  return concat(flat, 0);
}

// Full-Jacobian gradcheck with respect to every parameter, the input and the initial states.
void gradcheck_layer(Module<double>& layer, const RunFn& run, const D& x, const std::vector<D>& state,
                     const Lengths& lengths, const std::string& what) {
  std::vector<D> wrt = layer.parameters();
  wrt.push_back(x);
  wrt.insert(wrt.end(), state.begin(), state.end());
  const GradcheckResult result = gradcheck_params([&] { return concat_flat(run(x, state, lengths)); }, wrt);
  CHECK_MESSAGE(result.ok, what << ": " << result.message);
  CHECK(result.checked > 0);
  MESSAGE(what << ": gradcheck max abs error " << result.max_abs_error << " over " << result.checked << " entries");
}

// ---- lengths semantics, independent of PyTorch ---------------------------------------
// run: a seq-first layer with input 3, hidden 4 and 2 layers; states: 2 for an LSTM, 1 for
// a GRU. Lengths all equal to L change nothing, and each sequence of a padded batch gives
// what it gives alone: the same outputs up to its length, zeros after, the same h_n (c_n).
void check_lengths_semantics(const std::string& layer, const RunFn& run, std::size_t states, std::uint64_t seed) {
  const std::size_t steps = 5, batch = 3, layers = 2, hidden = 4, input_size = 3;
  const D x = input({steps, batch, input_size}, seed);
  std::vector<D> s0;
  for (std::size_t s = 0; s < states; ++s) s0.push_back(input({layers, batch, hidden}, seed + 1 + s));

  const std::vector<D> plain = run(x, s0, std::nullopt);
  const std::vector<D> full = run(x, s0, std::vector<std::size_t>(batch, steps));
  REQUIRE(full.size() == plain.size());
  for (std::size_t i = 0; i < plain.size(); ++i) {
    const std::string what = layer + " result " + std::to_string(i) + " with every length L";
    const double diff = array_deviation(full[i].data(), plain[i].data(), kSelfTol, what).worst;
    CHECK_MESSAGE(diff <= kSelfTol, what << " differs by " << diff);
  }

  const std::vector<std::size_t> lengths{5, 2, 3};
  const std::vector<D> padded = run(x, s0, lengths);
  for (std::size_t b = 0; b < batch; ++b) {
    const std::size_t n = lengths[b];
    std::vector<D> s_b;
    for (const D& s : s0) s_b.push_back(narrow(s, 1, b, 1));
    const std::vector<D> alone = run(narrow(narrow(x, 1, b, 1), 0, 0, n), s_b, std::nullopt);
    REQUIRE(alone.size() == padded.size());
    const D out_b = narrow(padded[0], 1, b, 1);  // (L, 1, hidden)
    const D head = narrow(out_b, 0, 0, n);
    const std::string what = layer + " output of sequence " + std::to_string(b);
    const double diff = array_deviation(head.data(), alone[0].data(), kSelfTol, what).worst;
    CHECK_MESSAGE(diff <= kSelfTol, what << " differs from it alone by " << diff);
    if (n < steps) {
      const D tail = narrow(out_b, 0, n, steps - n);
      CHECK_MESSAGE(all_zero(tail.data()), what << " is not zero after its end");
    }
    for (std::size_t i = 1; i < padded.size(); ++i) {  // h_n, c_n: (layers, 1, hidden)
      const D final_b = narrow(padded[i], 1, b, 1);
      const std::string state = layer + " final state " + std::to_string(i) + " of sequence " + std::to_string(b);
      const double d = array_deviation(final_b.data(), alone[i].data(), kSelfTol, state).worst;
      CHECK_MESSAGE(d <= kSelfTol, state << " differs by " << d);
    }
  }
}

// ---- parameter names ------------------------------------------------------------------
std::vector<std::string> names_of(const Module<double>& m) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters()) out.push_back(p.first);
  return out;
}

// weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, weight_ih_l1, ... (suffix "" for a cell)
std::vector<std::string> pytorch_names(std::size_t layers, bool bias, bool cell = false) {
  std::vector<std::string> out;
  for (std::size_t k = 0; k < layers; ++k) {
    const std::string suffix = cell ? "" : "_l" + std::to_string(k);
    out.push_back("weight_ih" + suffix);
    out.push_back("weight_hh" + suffix);
    if (bias) {
      out.push_back("bias_ih" + suffix);
      out.push_back("bias_hh" + suffix);
    }
  }
  return out;
}

// Names in PyTorch's order, PyTorch's shapes, initial values in U(-1/sqrt(hidden),
// 1/sqrt(hidden)) and not constant, and the same keys in state_dict (no buffers).
void check_params(const Module<double>& m, std::size_t gates, std::size_t input_size, std::size_t hidden,
                  std::size_t layers, bool bias, bool cell = false) {
  const std::vector<std::string> expected = pytorch_names(layers, bias, cell);
  CHECK(names_of(m) == expected);
  std::map<std::string, Shape> shapes;
  for (std::size_t k = 0; k < layers; ++k) {
    const std::string suffix = cell ? "" : "_l" + std::to_string(k);
    shapes["weight_ih" + suffix] = {gates * hidden, k == 0 ? input_size : hidden};
    shapes["weight_hh" + suffix] = {gates * hidden, hidden};
    shapes["bias_ih" + suffix] = {gates * hidden};
    shapes["bias_hh" + suffix] = {gates * hidden};
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  for (const auto& p : m.named_parameters()) {
    const std::string& name = p.first;
    if (!shapes.count(name)) continue;  // already reported by the name check
    CHECK_MESSAGE(p.second.shape() == shapes.at(name), name << " has shape " << shape_str(p.second.shape()));
    CHECK(p.second.requires_grad());
    const Array<double>& v = p.second.data();
    const double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    CHECK_MESSAGE(lo >= -bound, name << " starts below -1/sqrt(hidden): " << lo);
    CHECK_MESSAGE(hi <= bound, name << " starts above 1/sqrt(hidden): " << hi);
    CHECK_MESSAGE(lo < hi, name << " starts constant");
  }
  std::vector<std::string> keys;
  for (const auto& kv : m.state_dict()) keys.push_back(kv.first);
  std::vector<std::string> sorted = expected;
  std::sort(sorted.begin(), sorted.end());
  CHECK(keys == sorted);
}

// The public per-layer members are the registered parameters themselves, not copies.
template <class Layer> void check_members(const Layer& layer, std::size_t layers, bool bias) {
  const Named p = layer.named_parameters();
  REQUIRE(layer.weight_ih.size() == layers);
  REQUIRE(layer.weight_hh.size() == layers);
  REQUIRE(layer.bias_ih.size() == layers);  // one (empty) optional per layer without biases
  REQUIRE(layer.bias_hh.size() == layers);
  const std::size_t per_layer = bias ? 4 : 2;
  REQUIRE(p.size() == per_layer * layers);
  for (std::size_t k = 0; k < layers; ++k) {
    CHECK(layer.weight_ih[k].node_ptr() == p[per_layer * k].second.node_ptr());
    CHECK(layer.weight_hh[k].node_ptr() == p[per_layer * k + 1].second.node_ptr());
    REQUIRE(layer.bias_ih[k].has_value() == bias);
    REQUIRE(layer.bias_hh[k].has_value() == bias);
    if (bias) {
      CHECK(layer.bias_ih[k]->node_ptr() == p[per_layer * k + 2].second.node_ptr());
      CHECK(layer.bias_hh[k]->node_ptr() == p[per_layer * k + 3].second.node_ptr());
    }
  }
}

// ---- bad input ------------------------------------------------------------------------
// run: a stacked layer with input 4, hidden 6, 2 layers, seq-first; run_bf: the same
// batch_first. states: 2 for an LSTM, 1 for a GRU. Every message names the layer and the
// offending shape (and the expected one for a state).
void check_layer_errors(const std::string& layer, const RunFn& run, const RunFn& run_bf, std::size_t states) {
  const D x = zeros<double>({5, 3, 4});  // L 5, B 3
  const std::vector<D> good(states, zeros<double>({2, 3, 6}));
  const std::vector<std::size_t> good_lengths{5, 2, 3};
  CHECK_NOTHROW(run(x, good, good_lengths));
  CHECK_NOTHROW(run(x, {}, std::nullopt));

  check_throws_with([&] { run(zeros<double>({5, 3, 7}), good, std::nullopt); }, {layer, "(5,3,7)"});
  check_throws_with([&] { run(zeros<double>({5, 3, 7}), {}, std::nullopt); }, {layer, "(5,3,7)"});
  check_throws_with([&] { run(zeros<double>({5, 4}), {}, std::nullopt); }, {layer, "(5,4)"});

  for (std::size_t s = 0; s < states; ++s) {
    for (const Shape& shape : {Shape{2, 3, 5}, Shape{1, 3, 6}, Shape{2, 4, 6}, Shape{3, 6}}) {
      std::vector<D> bad = good;
      bad[s] = zeros<double>(shape);
      check_throws_with([&] { run(x, bad, std::nullopt); }, {layer, shape_str(shape), "(2,3,6)"});
    }
  }

  check_throws_with([&] { run(x, good, std::vector<std::size_t>{5, 2}); }, {layer, "length", "2", "3"});
  check_throws_with([&] { run(x, good, std::vector<std::size_t>{}); }, {layer, "length"});
  check_throws_with([&] { run(x, good, std::vector<std::size_t>{5, 0, 3}); }, {layer, "length", "0"});
  check_throws_with([&] { run(x, good, std::vector<std::size_t>{5, 6, 3}); }, {layer, "length", "6", "5"});

  // batch_first: (3, 5, 4) is B 3, L 5, so the state's batch and the lengths follow B.
  const D x_bf = zeros<double>({3, 5, 4});
  CHECK_NOTHROW(run_bf(x_bf, good, good_lengths));
  const std::vector<D> seq_first_batch(states, zeros<double>({2, 5, 6}));
  check_throws_with([&] { run_bf(x_bf, seq_first_batch, std::nullopt); }, {layer, "(2,5,6)", "(2,3,6)"});
  check_throws_with([&] { run_bf(x_bf, {}, std::vector<std::size_t>{5, 5, 5, 5, 5}); }, {layer, "length", "5", "3"});
  check_throws_with([&] { run_bf(x_bf, {}, std::vector<std::size_t>{6, 1, 2}); }, {layer, "length", "6", "5"});
  check_throws_with([&] { run_bf(zeros<double>({3, 5, 2}), {}, std::nullopt); }, {layer, "(3,5,2)"});
}

// run: a cell with input 4, hidden 6; states: 2 for an LSTMCell, 1 for a GRUCell.
void check_cell_errors(const std::string& cell, const RunFn& run, std::size_t states) {
  const D x = zeros<double>({3, 4});  // B 3
  const std::vector<D> good(states, zeros<double>({3, 6}));
  CHECK_NOTHROW(run(x, good, std::nullopt));
  CHECK_NOTHROW(run(x, {}, std::nullopt));

  check_throws_with([&] { run(zeros<double>({3, 5}), good, std::nullopt); }, {cell, "(3,5)"});
  check_throws_with([&] { run(zeros<double>({1, 3, 4}), good, std::nullopt); }, {cell, "(1,3,4)"});
  for (std::size_t s = 0; s < states; ++s) {
    for (const Shape& shape : {Shape{3, 5}, Shape{2, 6}, Shape{1, 3, 6}}) {
      std::vector<D> bad = good;
      bad[s] = zeros<double>(shape);
      check_throws_with([&] { run(x, bad, std::nullopt); }, {cell, shape_str(shape), "(3,6)"});
    }
  }
}

}  // namespace

// ---- against PyTorch: cells -----------------------------------------------------------

TEST_CASE("recurrent: LSTMCell with a given state matches PyTorch") { check_lstm_cell_fixture("lstm_cell_state"); }
TEST_CASE("recurrent: LSTMCell with the zero state matches PyTorch") {
  check_lstm_cell_fixture("lstm_cell_zero_state");
}
TEST_CASE("recurrent: LSTMCell without biases matches PyTorch") { check_lstm_cell_fixture("lstm_cell_no_bias"); }
TEST_CASE("recurrent: GRUCell with a given state matches PyTorch") { check_gru_cell_fixture("gru_cell_state"); }
TEST_CASE("recurrent: GRUCell with the zero state matches PyTorch") { check_gru_cell_fixture("gru_cell_zero_state"); }
TEST_CASE("recurrent: GRUCell without biases matches PyTorch") { check_gru_cell_fixture("gru_cell_no_bias"); }

// ---- against PyTorch: stacked layers --------------------------------------------------

TEST_CASE("recurrent: LSTM seq-first without an initial state matches PyTorch") {
  check_lstm_fixture("lstm_seq_first");
}
TEST_CASE("recurrent: LSTM with 2 layers, batch_first and (h_0, c_0) matches PyTorch") {
  check_lstm_fixture("lstm_2_layers_batch_first_state");
}
TEST_CASE("recurrent: LSTM with unsorted lengths matches a PyTorch packed sequence") {
  check_lstm_fixture("lstm_lengths_2_layers_state");
  check_lstm_fixture("lstm_lengths_batch_first");
}
TEST_CASE("recurrent: GRU seq-first without an initial state matches PyTorch") { check_gru_fixture("gru_seq_first"); }
TEST_CASE("recurrent: GRU with 2 layers, batch_first and h_0 matches PyTorch") {
  check_gru_fixture("gru_2_layers_batch_first_state");
}
TEST_CASE("recurrent: GRU with unsorted lengths matches a PyTorch packed sequence") {
  check_gru_fixture("gru_lengths_2_layers_state");
  check_gru_fixture("gru_lengths_batch_first");
}

// ---- gradcheck ------------------------------------------------------------------------

TEST_CASE("recurrent: gradcheck LSTMCell and GRUCell, with and without a state") {
  Generator gen(41);
  LSTMCell<double> lstm(3, 4, true, gen);
  gradcheck_layer(lstm, run_lstm_cell(lstm), input({2, 3}, 42), {input({2, 4}, 43), input({2, 4}, 44)}, std::nullopt,
                  "LSTMCell with a state");
  gradcheck_layer(lstm, run_lstm_cell(lstm), input({2, 3}, 45), {}, std::nullopt, "LSTMCell, zero state");
  GRUCell<double> gru(3, 4, true, gen);
  gradcheck_layer(gru, run_gru_cell(gru), input({2, 3}, 46), {input({2, 4}, 47)}, std::nullopt, "GRUCell with a state");
  gradcheck_layer(gru, run_gru_cell(gru), input({2, 3}, 48), {}, std::nullopt, "GRUCell, zero state");
}

TEST_CASE("recurrent: gradcheck LSTM: one step, 2 layers with a state, lengths with batch_first") {
  Generator gen(31);
  LSTM<double> one(2, 3, 1, false, false, gen);
  gradcheck_layer(one, run_lstm(one), input({1, 2, 2}, 32), {}, std::nullopt, "LSTM L=1 without biases");
  LSTM<double> two(2, 3, 2, true, false, gen);
  gradcheck_layer(two, run_lstm(two), input({3, 2, 2}, 33), {input({2, 2, 3}, 34), input({2, 2, 3}, 35)}, std::nullopt,
                  "LSTM L=3, 2 layers, (h_0, c_0)");
  LSTM<double> bf(2, 3, 2, true, true, gen);
  gradcheck_layer(bf, run_lstm(bf), input({2, 3, 2}, 36), {input({2, 2, 3}, 37), input({2, 2, 3}, 38)},
                  std::vector<std::size_t>{1, 3}, "LSTM batch_first L=3, 2 layers, lengths {1, 3}");
}

TEST_CASE("recurrent: gradcheck GRU: one step, 2 layers with a state, lengths with batch_first") {
  Generator gen(51);
  GRU<double> one(2, 3, 1, false, false, gen);
  gradcheck_layer(one, run_gru(one), input({1, 2, 2}, 52), {}, std::nullopt, "GRU L=1 without biases");
  GRU<double> two(2, 3, 2, true, false, gen);
  gradcheck_layer(two, run_gru(two), input({3, 2, 2}, 53), {input({2, 2, 3}, 54)}, std::nullopt,
                  "GRU L=3, 2 layers, h_0");
  GRU<double> bf(2, 3, 2, true, true, gen);
  gradcheck_layer(bf, run_gru(bf), input({2, 3, 2}, 55), {input({2, 2, 3}, 56)}, std::vector<std::size_t>{1, 3},
                  "GRU batch_first L=3, 2 layers, lengths {1, 3}");
}

// ---- semantics ------------------------------------------------------------------------

TEST_CASE("recurrent: full lengths change nothing, and a padded sequence gives what it gives alone") {
  Generator gen(61);
  LSTM<double> lstm(3, 4, 2, true, false, gen);
  check_lengths_semantics("LSTM", run_lstm(lstm), 2, 62);
  GRU<double> gru(3, 4, 2, true, false, gen);
  check_lengths_semantics("GRU", run_gru(gru), 1, 65);
}

TEST_CASE("recurrent: parameters have PyTorch's names, order and shapes; bias=false has no bias keys") {
  Generator gen(71);
  LSTM<double> lstm(3, 4, 3, true, false, gen);
  check_params(lstm, 4, 3, 4, 3, true);
  check_members(lstm, 3, true);
  LSTM<double> lstm_nb(3, 4, 2, false, false, gen);
  check_params(lstm_nb, 4, 3, 4, 2, false);
  check_members(lstm_nb, 2, false);
  GRU<double> gru(3, 4, 3, true, true, gen);
  check_params(gru, 3, 3, 4, 3, true);
  check_members(gru, 3, true);
  GRU<double> gru_nb(3, 4, 2, false, false, gen);
  check_params(gru_nb, 3, 3, 4, 2, false);
  check_members(gru_nb, 2, false);

  // Cells: no layer suffix.
  LSTMCell<double> lstm_cell(3, 4, true, gen);
  check_params(lstm_cell, 4, 3, 4, 1, true, true);
  CHECK(lstm_cell.weight_ih.node_ptr() == lstm_cell.named_parameters()[0].second.node_ptr());
  LSTMCell<double> lstm_cell_nb(3, 4, false, gen);
  check_params(lstm_cell_nb, 4, 3, 4, 1, false, true);
  CHECK_FALSE(lstm_cell_nb.bias_ih.has_value());
  CHECK_FALSE(lstm_cell_nb.bias_hh.has_value());
  GRUCell<double> gru_cell(3, 4, true, gen);
  check_params(gru_cell, 3, 3, 4, 1, true, true);
  CHECK(gru_cell.weight_hh.node_ptr() == gru_cell.named_parameters()[1].second.node_ptr());
  GRUCell<double> gru_cell_nb(3, 4, false, gen);
  check_params(gru_cell_nb, 3, 3, 4, 1, false, true);
  CHECK_FALSE(gru_cell_nb.bias_ih.has_value());
  CHECK_FALSE(gru_cell_nb.bias_hh.has_value());
}

// ---- bad input ------------------------------------------------------------------------

TEST_CASE("recurrent: LSTM refuses bad shapes and lengths, naming the layer and the shapes") {
  Generator gen(81);
  LSTM<double> lstm(4, 6, 2, true, false, gen);
  LSTM<double> bf(4, 6, 2, true, true, gen);
  check_layer_errors("LSTM", run_lstm(lstm), run_lstm(bf), 2);
}

TEST_CASE("recurrent: GRU refuses bad shapes and lengths, naming the layer and the shapes") {
  Generator gen(82);
  GRU<double> gru(4, 6, 2, true, false, gen);
  GRU<double> bf(4, 6, 2, true, true, gen);
  check_layer_errors("GRU", run_gru(gru), run_gru(bf), 1);
}

TEST_CASE("recurrent: LSTMCell and GRUCell refuse bad shapes, naming the layer and the shapes") {
  Generator gen(83);
  LSTMCell<double> lstm(4, 6, true, gen);
  check_cell_errors("LSTMCell", run_lstm_cell(lstm), 2);
  GRUCell<double> gru(4, 6, true, gen);
  check_cell_errors("GRUCell", run_gru_cell(gru), 1);
}
