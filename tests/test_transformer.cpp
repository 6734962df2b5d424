// Transformer layers (transformer.hpp) against PyTorch 1.13: MultiheadAttention,
// TransformerEncoderLayer and TransformerDecoderLayer forward values, attention weights and
// every gradient (inputs and each parameter by PyTorch's name), from
// tests/fixtures/make_transformer_fixtures.py (float64, dropout 0). PyTorch's boolean masks
// (true = may NOT attend) are inverted into ours (true = may attend). Also gradchecks,
// step-by-step decoding with a key/value cache against the causal forward, is_causal
// against an explicit lower-triangular mask, PyTorch's initialisation, and the errors for
// bad shapes. Every fixture test prints its largest deviation from PyTorch (MESSAGE).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fixtures.hpp"
#include "xtgrad/transformer.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

using Named = std::vector<std::pair<std::string, D>>;

// Ours against ours by another route (a cache, an explicit mask), in rel_deviation.
constexpr double kSelfTol = 1e-12;

// ---- fixtures -------------------------------------------------------------------------
// A PyTorch boolean mask (true = may not attend), as PyTorch wrote it.
Mask pytorch_mask(const json& m) {
  const Shape shape = m.at("shape").get<Shape>();
  const std::vector<bool> blocked = m.at("data").get<std::vector<bool>>();
  Mask mask = Mask::from_shape(shape);
  REQUIRE_MESSAGE(mask.size() == blocked.size(), "fixture mask " << shape_str(shape) << " holds " << blocked.size());
  std::copy(blocked.begin(), blocked.end(), mask.begin());
  return mask;
}

// The case's mask passed as forward's argument `name`, in PyTorch's polarity, so through
// padding_mask(); none when PyTorch had none.
std::optional<AttendMask> fixture_mask(const json& fx, const std::string& name) {
  const json& masks = fx.at("masks");
  if (!masks.contains(name)) return std::nullopt;
  return padding_mask(pytorch_mask(masks.at(name)));
}

// How a case whose attention mask is PyTorch's causal one passes it to us: the inverted
// mask itself, or the layer's is_causal flag and no mask.
enum class CausalAs { mask, flag };

std::string suffix(CausalAs how) { return how == CausalAs::flag ? " (is_causal)" : " (inverted mask)"; }

// The causal mask of the case, or, when passed as the flag, none; checks that PyTorch's
// inverted causal mask is tril_mask.
std::optional<AttendMask> causal_mask(const json& fx, const std::string& name, CausalAs how, bool& is_causal) {
  std::optional<AttendMask> mask = fixture_mask(fx, name);
  is_causal = false;
  if (!fx.at("call").at("causal").get<bool>()) return mask;
  REQUIRE(mask.has_value());
  const std::size_t n = mask->allowed().shape()[0];
  CHECK_MESSAGE(mask->allowed() == tril_mask(n, n), name << " inverted is not tril_mask(" << n << ", " << n << ")");
  if (how == CausalAs::mask) return mask;
  is_causal = true;
  return std::nullopt;
}

std::vector<std::string> names_of(const Module<double>& m) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters()) out.push_back(p.first);
  return out;
}

// Loads PyTorch's state_dict by its keys (strict) and checks that our parameters have
// PyTorch's names in PyTorch's order, our state_dict PyTorch's keys, and that the values
// arrived.
void load_pytorch_weights(Module<double>& module, const json& fx) {
  StateDict<double> state;
  for (const auto& item : fx.at("state_dict").items()) state[item.key()] = fixture_array(item.value());
  const std::vector<std::string> expected = fx.at("parameter_names").get<std::vector<std::string>>();
  CHECK(names_of(module) == expected);
  std::vector<std::string> ours, theirs;
  for (const auto& kv : module.state_dict()) ours.push_back(kv.first);
  for (const auto& kv : state) theirs.push_back(kv.first);
  REQUIRE(ours == theirs);  // both sorted (std::map)
  module.load_state_dict(state);
  for (const auto& p : module.named_parameters())
    CHECK_MESSAGE(p.second.data() == state.at(p.first), p.first << " was not loaded");
}

std::map<std::string, D> load_inputs(const json& fx) {  // leaves that require a gradient
  std::map<std::string, D> in;
  for (const auto& item : fx.at("inputs").items()) in.emplace(item.key(), fixture_tensor(item.value(), true));
  return in;
}

// loss = sum(output * G), backpropagated; then the gradients of every input and parameter
// against PyTorch's, and the case's largest deviation printed.
void check_gradients(Deviation& dev, const D& output, const json& fx, const std::map<std::string, D>& in,
                     const Module<double>& module) {
  sum(output * fixture_tensor(fx.at("loss_weights").at("output"))).backward();
  compare_all_gradients(dev, fx, in, module);
}

std::size_t config_size(const json& fx, const char* key) { return fx.at("config").at(key).get<std::size_t>(); }
bool config_flag(const json& fx, const char* key) { return fx.at("config").at(key).get<bool>(); }
double config_double(const json& fx, const char* key) { return fx.at("config").at(key).get<double>(); }

Activation config_activation(const json& fx) {
  const std::string name = fx.at("config").at("activation").get<std::string>();
  REQUIRE_MESSAGE((name == "relu" || name == "gelu"), "activation " << name);
  return name == "relu" ? Activation::relu : Activation::gelu;
}

void check_mha_fixture(const std::string& name, CausalAs how = CausalAs::mask) {
  const json fx = load_fixture("transformer", name + ".json");
  REQUIRE(fx.at("module").get<std::string>() == "MultiheadAttention");
  REQUIRE(config_double(fx, "dropout") == 0.0);
  Generator gen(7);
  MultiheadAttention<double> mha(config_size(fx, "embed_dim"), config_size(fx, "num_heads"), 0.0,
                                 config_flag(fx, "bias"), config_flag(fx, "batch_first"), gen);
  load_pytorch_weights(mha, fx);
  const std::map<std::string, D> in = load_inputs(fx);
  const json& call = fx.at("call");
  const bool self = call.at("self_attention").get<bool>();
  const D& q = in.at(self ? "x" : "query");
  const D& k = in.at(self ? "x" : "key");
  const D& v = in.at(self ? "x" : "value");
  bool is_causal = false;
  const std::optional<AttendMask> attn_mask = causal_mask(fx, "attn_mask", how, is_causal);
  const MultiheadAttentionOutput<double> out =
      mha.forward(q, k, v, fixture_mask(fx, "key_padding_mask"), call.at("need_weights").get<bool>(), attn_mask,
                  call.at("average_attn_weights").get<bool>(), is_causal);

  Deviation dev(name + suffix(how));
  dev.compare(out.output.data(), fx.at("outputs").at("output"), "output");
  REQUIRE_MESSAGE(out.weights.defined(), name << ": no weights with need_weights");
  dev.compare(out.weights.data(), fx.at("outputs").at("weights"), "weights");
  check_gradients(dev, out.output, fx, in, mha);
}

void check_encoder_fixture(const std::string& name, CausalAs how = CausalAs::mask) {
  const json fx = load_fixture("transformer", name + ".json");
  REQUIRE(fx.at("module").get<std::string>() == "TransformerEncoderLayer");
  REQUIRE(config_double(fx, "dropout") == 0.0);
  Generator gen(8);
  TransformerEncoderLayer<double> layer(config_size(fx, "d_model"), config_size(fx, "nhead"),
                                        config_size(fx, "dim_feedforward"), 0.0, config_activation(fx),
                                        config_double(fx, "layer_norm_eps"), config_flag(fx, "batch_first"),
                                        config_flag(fx, "norm_first"), gen);
  load_pytorch_weights(layer, fx);
  const std::map<std::string, D> in = load_inputs(fx);
  bool is_causal = false;
  const std::optional<AttendMask> src_mask = causal_mask(fx, "src_mask", how, is_causal);
  const D out = layer.forward(in.at("src"), src_mask, fixture_mask(fx, "src_key_padding_mask"), is_causal);

  Deviation dev(name + suffix(how));
  dev.compare(out.data(), fx.at("outputs").at("output"), "output");
  check_gradients(dev, out, fx, in, layer);
}

void check_decoder_fixture(const std::string& name, CausalAs how = CausalAs::mask) {
  const json fx = load_fixture("transformer", name + ".json");
  REQUIRE(fx.at("module").get<std::string>() == "TransformerDecoderLayer");
  REQUIRE(config_double(fx, "dropout") == 0.0);
  Generator gen(9);
  TransformerDecoderLayer<double> layer(config_size(fx, "d_model"), config_size(fx, "nhead"),
                                        config_size(fx, "dim_feedforward"), 0.0, config_activation(fx),
                                        config_double(fx, "layer_norm_eps"), config_flag(fx, "batch_first"),
                                        config_flag(fx, "norm_first"), gen);
  load_pytorch_weights(layer, fx);
  const std::map<std::string, D> in = load_inputs(fx);
  bool is_causal = false;
  const std::optional<AttendMask> tgt_mask = causal_mask(fx, "tgt_mask", how, is_causal);
  const D out =
      layer.forward(in.at("tgt"), in.at("memory"), tgt_mask, fixture_mask(fx, "memory_mask"),
                    fixture_mask(fx, "tgt_key_padding_mask"), fixture_mask(fx, "memory_key_padding_mask"), is_causal);

  Deviation dev(name + suffix(how));
  dev.compare(out.data(), fx.at("outputs").at("output"), "output");
  check_gradients(dev, out, fx, in, layer);
}

// ---- gradcheck ------------------------------------------------------------------------
// Full-Jacobian gradcheck with respect to every parameter of the layer and the inputs.
void gradcheck_layer(Module<double>& layer, const std::function<D()>& run, const std::vector<D>& inputs,
                     const std::string& what) {
  std::vector<D> wrt = layer.parameters();
  wrt.insert(wrt.end(), inputs.begin(), inputs.end());
  const GradcheckResult result = gradcheck_params(run, wrt);
  CHECK_MESSAGE(result.ok, what << ": " << result.message);
  CHECK(result.checked > 0);
  MESSAGE(what << ": gradcheck max abs error " << result.max_abs_error << " over " << result.checked << " entries");
}

// (rows, cols) true where column j < lengths[row]: ours, true = may attend.
Mask key_allowed(const std::vector<std::size_t>& lengths, std::size_t cols) {
  Mask m = xt::zeros<bool>({lengths.size(), cols});
  for (std::size_t b = 0; b < lengths.size(); ++b)
    for (std::size_t j = 0; j < lengths[b]; ++j) m(b, j) = true;
  return m;
}

// ---- ours against ours ----------------------------------------------------------------
// The largest |a - b| (absolute), and the largest rel_deviation (|a - b| / max(1, |b|)).
template <class T> double max_abs_diff(const Array<T>& a, const Array<T>& b) {
  REQUIRE_MESSAGE(shape_of(a) == shape_of(b), shape_str(shape_of(a)) << " vs " << shape_str(shape_of(b)));
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(double(a.data()[i]) - double(b.data()[i]));
    worst = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(worst, d);
  }
  return worst;
}
template <class T> double max_rel_diff(const Array<T>& a, const Array<T>& b) {
  REQUIRE_MESSAGE(shape_of(a) == shape_of(b), shape_str(shape_of(a)) << " vs " << shape_str(shape_of(b)));
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, rel_deviation(double(a.data()[i]), double(b.data()[i])));
  return worst;
}

// One run of a layer: its output (and attention weights, when it has any), and the
// gradients of sum(output * G) for each parameter and each input, from fresh gradients.
struct RunResult {
  Array<double> output, weights;
  std::vector<Array<double>> grads;
};
RunResult run_with_grads(Module<double>& m, const std::vector<D>& inputs, const std::function<std::pair<D, D>()>& run,
                         std::uint64_t g_seed) {
  std::vector<D> leaves = m.parameters();
  leaves.insert(leaves.end(), inputs.begin(), inputs.end());
  for (D& t : leaves) t.reset_grad();
  const std::pair<D, D> out = run();
  RunResult r;
  r.output = out.first.data();
  if (out.second.defined()) r.weights = out.second.data();
  Generator gen(g_seed);
  sum(out.first * randn<double>(out.first.shape(), gen)).backward();
  for (const D& t : leaves) r.grads.push_back(t.has_grad() ? t.grad() : Array<double>());
  return r;
}

// Two routes to the same result agree: outputs, weights and every gradient within kSelfTol.
void check_same(const RunResult& a, const RunResult& b, const std::string& what) {
  const double out = array_deviation(a.output, b.output, kSelfTol, what + " output").worst;
  CHECK_MESSAGE(out <= kSelfTol, what << ": outputs differ by " << out);
  CHECK(a.weights.size() == b.weights.size());
  if (a.weights.size() > 0 && a.weights.size() == b.weights.size()) {
    const double w = array_deviation(a.weights, b.weights, kSelfTol, what + " weights").worst;
    CHECK_MESSAGE(w <= kSelfTol, what << ": weights differ by " << w);
  }
  REQUIRE(a.grads.size() == b.grads.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.grads.size(); ++i) {
    CHECK_MESSAGE(a.grads[i].size() == b.grads[i].size(), what << ": gradient " << i << " is missing on one side");
    if (a.grads[i].size() != b.grads[i].size() || a.grads[i].size() == 0) continue;
    worst = std::max(worst, array_deviation(a.grads[i], b.grads[i], kSelfTol, what + " gradient").worst);
  }
  CHECK_MESSAGE(worst <= kSelfTol, what << ": gradients differ by " << worst);
  MESSAGE(what << ": largest deviation between the two routes " << std::max({out, worst}));
}

// ---- step-by-step decoding ------------------------------------------------------------
// forward_step over each position of tgt (B, T, E) in turn, from start_decoding(memory):
// the steps' outputs joined, (B, T, E). Checks the cache's step counts as it goes.
template <class T>
Tensor<T> decode_by_steps(TransformerDecoderLayer<T>& layer, const Tensor<T>& tgt, const Tensor<T>& memory) {
  const std::size_t batch = tgt.shape()[0], steps = tgt.shape()[1], width = tgt.shape()[2];
  DecoderLayerCache<T> cache = layer.start_decoding(memory);
  CHECK(cache.memory.steps() == memory.shape()[1]);
  CHECK(cache.self_attn.steps() == 0);
  std::vector<Tensor<T>> outs;
  for (std::size_t t = 0; t < steps; ++t) {
    const Tensor<T> y = layer.forward_step(narrow(tgt, 1, t, 1), cache);
    REQUIRE_MESSAGE(y.shape() == Shape({batch, 1, width}), "step " << t << " gives " << shape_str(y.shape()));
    CHECK(cache.self_attn.steps() == t + 1);
    CHECK(cache.memory.steps() == memory.shape()[1]);
    outs.push_back(y);
  }
  return concat(outs, 1);
}

// A batch-first tensor in the layer's layout.
template <class T> Tensor<T> layout(const Tensor<T>& batch_first_x, bool batch_first) {
  return batch_first ? batch_first_x : transpose(batch_first_x, 0, 1);
}

}  // namespace

// ---- against PyTorch: MultiheadAttention ----------------------------------------------

TEST_CASE("transformer: MultiheadAttention self-attention seq-first matches PyTorch, averaged weights") {
  check_mha_fixture("mha_self_seq_first");
}
TEST_CASE("transformer: MultiheadAttention with a key_padding_mask matches PyTorch") {
  check_mha_fixture("mha_self_key_padding");
}
TEST_CASE("transformer: MultiheadAttention with PyTorch's causal attn_mask matches, as a mask and as is_causal") {
  check_mha_fixture("mha_self_causal", CausalAs::mask);
  check_mha_fixture("mha_self_causal", CausalAs::flag);
}
TEST_CASE("transformer: MultiheadAttention cross-attention batch_first, S != L, per-head weights matches PyTorch") {
  check_mha_fixture("mha_cross_batch_first");
}

// ---- against PyTorch: encoder and decoder layers --------------------------------------

TEST_CASE("transformer: TransformerEncoderLayer post-norm relu seq-first with src_key_padding_mask matches PyTorch") {
  check_encoder_fixture("encoder_post_norm_relu_padding");
}
TEST_CASE("transformer: TransformerEncoderLayer pre-norm gelu batch_first causal matches PyTorch") {
  check_encoder_fixture("encoder_pre_norm_gelu_causal", CausalAs::mask);
  check_encoder_fixture("encoder_pre_norm_gelu_causal", CausalAs::flag);
}
TEST_CASE("transformer: TransformerDecoderLayer post-norm relu causal with memory_key_padding_mask matches PyTorch") {
  check_decoder_fixture("decoder_post_norm_relu_causal_memory_padding", CausalAs::mask);
  check_decoder_fixture("decoder_post_norm_relu_causal_memory_padding", CausalAs::flag);
}
TEST_CASE("transformer: TransformerDecoderLayer pre-norm gelu batch_first causal matches PyTorch") {
  check_decoder_fixture("decoder_pre_norm_gelu_causal", CausalAs::mask);
  check_decoder_fixture("decoder_pre_norm_gelu_causal", CausalAs::flag);
}

// ---- initialisation -------------------------------------------------------------------

TEST_CASE("transformer: parameters start as PyTorch starts them") {
  Generator gen(11);
  const std::size_t e = 8;
  MultiheadAttention<double> mha(e, 2, 0.0, true, false, gen);
  REQUIRE(mha.in_proj_bias.has_value());
  CHECK(mha.in_proj_weight.shape() == Shape{3 * e, e});
  const double xavier = std::sqrt(6.0 / double(e + 3 * e));
  const Array<double>& w = mha.in_proj_weight.data();
  const double lo = *std::min_element(w.begin(), w.end()), hi = *std::max_element(w.begin(), w.end());
  CHECK_MESSAGE(lo >= -xavier, "in_proj_weight starts below -" << xavier << ": " << lo);
  CHECK_MESSAGE(hi <= xavier, "in_proj_weight starts above " << xavier << ": " << hi);
  CHECK(lo < hi);
  CHECK(xt::all(xt::equal(mha.in_proj_bias->data(), 0.0)));
  REQUIRE(mha.out_proj->bias.has_value());
  CHECK(xt::all(xt::equal(mha.out_proj->bias->data(), 0.0)));
  CHECK(mha.out_proj->weight.shape() == Shape{e, e});
  CHECK(mha.in_proj_weight.node_ptr() == mha.named_parameters().at(0).second.node_ptr());

  MultiheadAttention<double> no_bias(e, 2, 0.0, false, false, gen);
  CHECK_FALSE(no_bias.in_proj_bias.has_value());
  CHECK(names_of(no_bias) == std::vector<std::string>{"in_proj_weight", "out_proj.weight"});

  TransformerDecoderLayer<double> dec(e, 2, 16, 0.1, Activation::relu, 1e-5, false, false, gen);
  for (const auto& norm : {dec.norm1, dec.norm2, dec.norm3}) {
    REQUIRE(norm->weight.has_value());
    REQUIRE(norm->bias.has_value());
    CHECK(xt::all(xt::equal(norm->weight->data(), 1.0)));
    CHECK(xt::all(xt::equal(norm->bias->data(), 0.0)));
  }
  CHECK(dec.linear1->weight.shape() == Shape{16, e});
  CHECK(dec.linear2->weight.shape() == Shape{e, 16});
}

// ---- gradcheck ------------------------------------------------------------------------

TEST_CASE("transformer: gradcheck MultiheadAttention with is_causal, self and cross (S > L), with padding") {
  Generator gen(21);
  MultiheadAttention<double> self(4, 2, 0.0, true, false, gen);
  const D x = input({3, 2, 4}, 22);
  gradcheck_layer(
      self, [&] { return self.forward(x, x, x, std::nullopt, false, std::nullopt, true, true).output; }, {x},
      "MultiheadAttention seq-first is_causal");
  const AttendMask padding = attend_mask(key_allowed({3, 2}, 3));
  gradcheck_layer(
      self, [&] { return self.forward(x, x, x, padding, false, std::nullopt, true, true).output; }, {x},
      "MultiheadAttention seq-first is_causal with a key_padding_mask");

  MultiheadAttention<double> cross(4, 2, 0.0, true, true, gen);
  const D q = input({2, 2, 4}, 23), k = input({2, 4, 4}, 24), v = input({2, 4, 4}, 25);
  gradcheck_layer(
      cross, [&] { return cross.forward(q, k, v, std::nullopt, false, std::nullopt, true, true).output; }, {q, k, v},
      "MultiheadAttention batch_first cross, L 2, S 4, is_causal");
}

TEST_CASE("transformer: gradcheck TransformerEncoderLayer post-norm relu and pre-norm gelu") {
  Generator gen(31);
  TransformerEncoderLayer<double> post(4, 2, 6, 0.0, Activation::relu, 1e-5, false, false, gen);
  const D src = input({3, 2, 4}, 32);
  const AttendMask padding = attend_mask(key_allowed({3, 2}, 3));
  gradcheck_layer(
      post, [&] { return post.forward(src, std::nullopt, padding); }, {src},
      "TransformerEncoderLayer post-norm relu, src_key_padding_mask");
  TransformerEncoderLayer<double> pre(4, 2, 6, 0.0, Activation::gelu, 1e-5, true, true, gen);
  const D src_bf = input({2, 3, 4}, 33);
  gradcheck_layer(
      pre, [&] { return pre.forward(src_bf, std::nullopt, std::nullopt, true); }, {src_bf},
      "TransformerEncoderLayer pre-norm gelu batch_first is_causal");
}

TEST_CASE("transformer: gradcheck TransformerDecoderLayer post-norm relu and pre-norm gelu") {
  Generator gen(41);
  TransformerDecoderLayer<double> post(4, 2, 6, 0.0, Activation::relu, 1e-5, false, false, gen);
  const D tgt = input({3, 2, 4}, 42), memory = input({2, 2, 4}, 43);
  const AttendMask memory_padding = attend_mask(key_allowed({2, 1}, 2));
  gradcheck_layer(
      post, [&] { return post.forward(tgt, memory, std::nullopt, std::nullopt, std::nullopt, memory_padding, true); },
      {tgt, memory}, "TransformerDecoderLayer post-norm relu, tgt_is_causal, memory_key_padding_mask");
  TransformerDecoderLayer<double> pre(4, 2, 6, 0.0, Activation::gelu, 1e-5, true, true, gen);
  const D tgt_bf = input({2, 3, 4}, 44), memory_bf = input({2, 2, 4}, 45);
  gradcheck_layer(
      pre, [&] { return pre.forward(tgt_bf, memory_bf, std::nullopt, std::nullopt, std::nullopt, std::nullopt, true); },
      {tgt_bf, memory_bf}, "TransformerDecoderLayer pre-norm gelu batch_first, tgt_is_causal");
}

// ---- step-by-step decoding ------------------------------------------------------------

TEST_CASE("transformer: TransformerDecoderLayer forward_step over each position equals the causal forward") {
  struct Variant {
    const char* what;
    bool batch_first, norm_first;
    Activation activation;
  };
  const Variant variants[] = {{"batch_first post-norm relu", true, false, Activation::relu},
                              {"batch_first pre-norm gelu", true, true, Activation::gelu},
                              {"seq-first post-norm gelu (steps batch first)", false, false, Activation::gelu}};
  std::uint64_t seed = 51;
  for (const Variant& variant : variants) {
    const std::string what = variant.what;
    CAPTURE(what);
    // double: within 1e-12, absolute. Dropout 0.1, off in eval mode.
    Generator gen(seed);
    TransformerDecoderLayer<double> layer(8, 2, 16, 0.1, variant.activation, 1e-5, variant.batch_first,
                                          variant.norm_first, gen);
    layer.eval();
    const D tgt = input({2, 5, 8}, seed + 1), memory = input({2, 4, 8}, seed + 2);  // batch first
    const D full = layout(layer.forward(layout(tgt, variant.batch_first), layout(memory, variant.batch_first),
                                        std::nullopt, std::nullopt, std::nullopt, std::nullopt, true),
                          variant.batch_first);
    const D steps = decode_by_steps(layer, tgt, memory);
    const double diff = max_abs_diff(steps.data(), full.data());
    CHECK_MESSAGE(diff <= 1e-12, what << ": steps differ from the causal forward by " << diff);
    MESSAGE("double " << what << ": largest |step - forward| " << diff);

    // float: within 1e-5, relative (|a - b| / max(1, |b|)), without a graph.
    Generator gen_f(seed);
    TransformerDecoderLayer<float> layer_f(8, 2, 16, 0.1, variant.activation, 1e-5, variant.batch_first,
                                           variant.norm_first, gen_f);
    layer_f.eval();
    NoGradGuard no_grad;
    const Tensor<float> tgt_f = input<float>({2, 5, 8}, seed + 1), memory_f = input<float>({2, 4, 8}, seed + 2);
    const Tensor<float> full_f =
        layout(layer_f.forward(layout(tgt_f, variant.batch_first), layout(memory_f, variant.batch_first), std::nullopt,
                               std::nullopt, std::nullopt, std::nullopt, true),
               variant.batch_first);
    const Tensor<float> steps_f = decode_by_steps(layer_f, tgt_f, memory_f);
    const double diff_f = max_rel_diff(steps_f.data(), full_f.data());
    CHECK_MESSAGE(diff_f <= 1e-5, what << ": float steps differ from the causal forward by " << diff_f);
    MESSAGE("float " << what << ": largest relative |step - forward| " << diff_f);
    seed += 10;
  }
}

TEST_CASE("transformer: MultiheadAttention forward_step equals forward with is_causal; memory steps equal forward") {
  for (const bool batch_first : {true, false}) {
    CAPTURE(batch_first);
    Generator gen(61);
    MultiheadAttention<double> attn(8, 2, 0.0, true, batch_first, gen);
    attn.eval();
    const D x = input({2, 5, 8}, 62), memory = input({2, 3, 8}, 63);  // batch first
    const D xl = layout(x, batch_first), ml = layout(memory, batch_first);
    const D full = layout(attn.forward(xl, xl, xl, std::nullopt, false, std::nullopt, true, true).output, batch_first);
    const D cross = layout(attn.forward(xl, ml, ml, std::nullopt, false).output, batch_first);

    AttentionCache<double> cache;
    CHECK(cache.steps() == 0);
    const AttentionCache<double> projected = attn.project_memory(memory);
    CHECK(projected.steps() == 3);
    REQUIRE(projected.keys.shape() == Shape{2, 3, 8});
    REQUIRE(projected.values.shape() == Shape{2, 3, 8});
    std::vector<D> self_steps, memory_steps;
    for (std::size_t t = 0; t < 5; ++t) {
      const D x_t = narrow(x, 1, t, 1);
      self_steps.push_back(attn.forward_step(x_t, cache));
      REQUIRE(self_steps.back().shape() == Shape{2, 1, 8});
      CHECK(cache.steps() == t + 1);
      REQUIRE(cache.keys.shape() == Shape{2, t + 1, 8});
      memory_steps.push_back(attn.forward_step_memory(x_t, projected));
      REQUIRE(memory_steps.back().shape() == Shape{2, 1, 8});
    }
    CHECK(projected.steps() == 3);
    const double diff = max_abs_diff(concat(self_steps, 1).data(), full.data());
    CHECK_MESSAGE(diff <= 1e-12, "forward_step differs from the causal forward by " << diff);
    const double diff_memory = max_abs_diff(concat(memory_steps, 1).data(), cross.data());
    CHECK_MESSAGE(diff_memory <= 1e-12, "forward_step_memory differs from forward over the memory by " << diff_memory);
    MESSAGE("batch_first " << batch_first << ": largest |step - forward| " << diff << ", over a memory "
                           << diff_memory);
  }
}

namespace {
// Weights (B, 1, S) of one decoding step against row t of forward's (B, L, S): the
// largest difference; each row of the step's weights must sum to 1.
double step_weights_deviation(const D& step, const D& full, std::size_t t) {
  REQUIRE_MESSAGE(step.defined(), "no weights kept at step " << t);
  const std::size_t batch = full.shape()[0], keys = full.shape()[2];
  REQUIRE_MESSAGE(step.shape() == Shape({batch, 1, keys}), "step " << t << " weights " << shape_str(step.shape()));
  for (std::size_t b = 0; b < batch; ++b) {
    double sum = 0;
    for (std::size_t s = 0; s < keys; ++s) sum += step.data()(b, 0, s);
    CHECK_MESSAGE(std::abs(sum - 1.0) <= 1e-12, "step " << t << " row " << b << " sums to " << sum);
  }
  return max_abs_diff(step.data(), narrow(full, 1, t, 1).data());
}
}  // namespace

TEST_CASE("transformer: cached decoding keeps the cross-attention weights when asked, equal to forward's") {
  const D x = input({2, 5, 8}, 71), memory = input({2, 3, 8}, 72);  // batch first
  SUBCASE("MultiheadAttention.forward_step_memory") {
    Generator gen(73);
    MultiheadAttention<double> attn(8, 2, 0.0, true, true, gen);
    attn.eval();
    const D full = attn.forward(x, memory, memory, std::nullopt, true).weights;  // (B, L, S) averaged over heads
    const AttentionCache<double> projected = attn.project_memory(memory);
    double worst = 0;
    for (std::size_t t = 0; t < 5; ++t) {
      D weights;
      const D with = attn.forward_step_memory(narrow(x, 1, t, 1), projected, &weights);
      const D without = attn.forward_step_memory(narrow(x, 1, t, 1), projected);
      CHECK(max_abs_diff(with.data(), without.data()) == 0.0);  // asking changes nothing else
      worst = std::max(worst, step_weights_deviation(weights, full, t));
    }
    CHECK_MESSAGE(worst <= kSelfTol, "step weights differ from forward's by " << worst);
  }
  SUBCASE("TransformerDecoderLayer: the query of each step is the causal forward's") {
    for (const bool norm_first : {true, false}) {
      CAPTURE(norm_first);
      Generator gen(74);
      TransformerDecoderLayer<double> layer(8, 2, 16, 0.0, Activation::gelu, 1e-5, true, norm_first, gen);
      layer.eval();
      // The cross-attention's queries over the whole target, by hand as forward makes them.
      const auto self_block = [&](const D& h) {
        return layer.self_attn->forward(h, h, h, std::nullopt, false, std::nullopt, true, true).output;
      };
      const D queries = norm_first ? layer.norm2->forward(x + self_block(layer.norm1->forward(x)))
                                   : layer.norm1->forward(x + self_block(x));
      const D full = layer.multihead_attn->forward(queries, memory, memory, std::nullopt, true).weights;
      DecoderLayerCache<double> cache = layer.start_decoding(memory, true), plain = layer.start_decoding(memory);
      CHECK(cache.need_weights);
      CHECK_FALSE(plain.need_weights);
      double worst = 0;
      for (std::size_t t = 0; t < 5; ++t) {
        const D y = layer.forward_step(narrow(x, 1, t, 1), cache),
                y_plain = layer.forward_step(narrow(x, 1, t, 1), plain);
        CHECK(max_abs_diff(y.data(), y_plain.data()) == 0.0);
        CHECK_FALSE(plain.memory_weights.defined());  // not asked: nothing kept
        worst = std::max(worst, step_weights_deviation(cache.memory_weights, full, t));
      }
      CHECK_MESSAGE(worst <= kSelfTol, "step weights differ from forward's by " << worst);
      MESSAGE("norm_first " << norm_first << ": largest |step weights - forward weights| " << worst);
      // The whole causal forward keeps the same weights when asked, and gives the same output.
      const D plain_out = layer.forward(x, memory, std::nullopt, std::nullopt, std::nullopt, std::nullopt, true);
      CHECK_FALSE(layer.memory_weights.defined());
      layer.keep_memory_weights = true;
      const D kept_out = layer.forward(x, memory, std::nullopt, std::nullopt, std::nullopt, std::nullopt, true);
      CHECK(max_abs_diff(kept_out.data(), plain_out.data()) == 0.0);
      REQUIRE(layer.memory_weights.shape() == full.shape());
      CHECK(max_abs_diff(layer.memory_weights.data(), full.data()) <= kSelfTol);
    }
  }
  SUBCASE("TransformerDecoder: every layer's cache keeps its own") {
    Generator gen(75);
    TransformerDecoder<double> decoder(2, 8, 2, 16, 0.0, Activation::gelu, 1e-5, true, true, true, gen);
    decoder.eval();
    std::vector<DecoderLayerCache<double>> caches = decoder.start_decoding(memory, true);
    decoder.forward_step(narrow(x, 1, 0, 1), caches);
    for (const auto& cache : caches) REQUIRE(cache.memory_weights.shape() == Shape({2, 1, 3}));
    // Layer 0 sees the step's input itself: its weights are those of the layer alone.
    DecoderLayerCache<double> alone = decoder.layers[0]->start_decoding(memory, true);
    decoder.layers[0]->forward_step(narrow(x, 1, 0, 1), alone);
    CHECK(max_abs_diff(caches[0].memory_weights.data(), alone.memory_weights.data()) == 0.0);
    CHECK(max_abs_diff(caches[0].memory_weights.data(), caches[1].memory_weights.data()) > 1e-3);
  }
}

// ---- is_causal ------------------------------------------------------------------------

TEST_CASE("transformer: is_causal equals an explicit tril_mask, values, weights and gradients") {
  Generator gen(71);
  {
    MultiheadAttention<double> attn(8, 2, 0.0, true, false, gen);
    const D x = input({4, 2, 8}, 72);
    const AttendMask padding = attend_mask(key_allowed({4, 3}, 4));
    const auto run = [&](bool flag) {
      return run_with_grads(
          attn, {x},
          [&] {
            const auto out = flag ? attn.forward(x, x, x, padding, true, std::nullopt, false, true)
                                  : attn.forward(x, x, x, padding, true, attend_mask(tril_mask(4, 4)), false, false);
            return std::make_pair(out.output, out.weights);
          },
          73);
    };
    check_same(run(true), run(false), "MultiheadAttention self, with padding, per-head weights");
  }
  {
    // S > L: query i attends to keys 0..i + S - L, tril_mask(L, S, S - L).
    MultiheadAttention<double> attn(8, 2, 0.0, true, true, gen);
    const D q = input({2, 3, 8}, 74), kv = input({2, 5, 8}, 75);
    const auto run = [&](bool flag) {
      return run_with_grads(
          attn, {q, kv},
          [&] {
            const auto out =
                flag ? attn.forward(q, kv, kv, std::nullopt, true, std::nullopt, true, true)
                     : attn.forward(q, kv, kv, std::nullopt, true, attend_mask(tril_mask(3, 5, 2)), true, false);
            return std::make_pair(out.output, out.weights);
          },
          76);
    };
    check_same(run(true), run(false), "MultiheadAttention batch_first L 3, S 5");
  }
  {
    TransformerEncoderLayer<double> layer(8, 2, 16, 0.0, Activation::gelu, 1e-5, true, true, gen);
    const D src = input({2, 4, 8}, 77);
    const auto run = [&](bool flag) {
      return run_with_grads(
          layer, {src},
          [&] {
            return std::make_pair(flag ? layer.forward(src, std::nullopt, std::nullopt, true)
                                       : layer.forward(src, attend_mask(tril_mask(4, 4)), std::nullopt, false),
                                  D());
          },
          78);
    };
    check_same(run(true), run(false), "TransformerEncoderLayer");
  }
  {
    TransformerDecoderLayer<double> layer(8, 2, 16, 0.0, Activation::relu, 1e-5, false, false, gen);
    const D tgt = input({5, 2, 8}, 79), memory = input({3, 2, 8}, 80);
    const AttendMask memory_padding = attend_mask(key_allowed({3, 2}, 3));
    const auto run = [&](bool flag) {
      return run_with_grads(
          layer, {tgt, memory},
          [&] {
            return std::make_pair(
                flag ? layer.forward(tgt, memory, std::nullopt, std::nullopt, std::nullopt, memory_padding, true)
                     : layer.forward(tgt, memory, attend_mask(tril_mask(5, 5)), std::nullopt, std::nullopt,
                                     memory_padding, false),
                D());
          },
          81);
    };
    check_same(run(true), run(false), "TransformerDecoderLayer");
  }
}

// ---- bad input ------------------------------------------------------------------------

TEST_CASE("transformer: MultiheadAttention refuses bad shapes, naming the layer and the shape") {
  check_throws_with([] { MultiheadAttention<double>(10, 3); }, {"MultiheadAttention", "10", "3"});
  Generator gen(91);
  MultiheadAttention<double> attn(8, 2, 0.0, true, false, gen);  // seq-first: (L, B, E)
  const D x = zeros<double>({4, 2, 8}), kv = zeros<double>({5, 2, 8});
  CHECK_NOTHROW(
      attn.forward(x, kv, kv, attend_mask(xt::ones<bool>({2, 5})), true, attend_mask(xt::ones<bool>({4, 5}))));
  CHECK_NOTHROW(attn.forward(x, kv, kv, std::nullopt, true, attend_mask(xt::ones<bool>({2, 4, 5}))));

  const D narrow_q = zeros<double>({4, 2, 6});
  check_throws_with([&] { attn.forward(narrow_q, kv, kv); }, {"MultiheadAttention", "(4,2,6)"});
  const D narrow_kv = zeros<double>({5, 2, 6});
  check_throws_with([&] { attn.forward(x, narrow_kv, kv); }, {"MultiheadAttention", "(5,2,6)"});
  check_throws_with([&] { attn.forward(x, kv, narrow_kv); }, {"MultiheadAttention", "(5,2,6)"});
  const D other_batch = zeros<double>({5, 3, 8}), longer = zeros<double>({6, 2, 8});
  check_throws_with([&] { attn.forward(x, other_batch, other_batch); }, {"MultiheadAttention", "(5,3,8)"});
  check_throws_with([&] { attn.forward(x, kv, longer); }, {"MultiheadAttention", "(6,2,8)"});
  check_throws_with([&] { attn.forward(zeros<double>({4, 8}), kv, kv); }, {"MultiheadAttention", "(4,8)"});

  for (const Shape& bad : {Shape{2, 4}, Shape{3, 5}, Shape{5, 2}, Shape{2, 5, 1}}) {
    const AttendMask m = attend_mask(xt::ones<bool>(bad));
    check_throws_with([&] { attn.forward(x, kv, kv, m); }, {"MultiheadAttention", shape_str(bad)});
  }
  for (const Shape& bad : {Shape{4, 4}, Shape{5, 5}, Shape{5, 4}, Shape{3, 4, 5}, Shape{5}}) {
    const AttendMask m = attend_mask(xt::ones<bool>(bad));
    check_throws_with([&] { attn.forward(x, kv, kv, std::nullopt, true, m); }, {"MultiheadAttention", shape_str(bad)});
  }

  // Steps are batch first: (B, 1, E), and the cache's batch.
  AttentionCache<double> cache;
  check_throws_with([&] { attn.forward_step(zeros<double>({2, 1, 6}), cache); }, {"MultiheadAttention", "(2,1,6)"});
  check_throws_with([&] { attn.forward_step(zeros<double>({2, 2, 8}), cache); }, {"MultiheadAttention", "(2,2,8)"});
  CHECK_NOTHROW(attn.forward_step(zeros<double>({2, 1, 8}), cache));
  check_throws_with([&] { attn.forward_step(zeros<double>({3, 1, 8}), cache); }, {"MultiheadAttention", "(3,1,8)"});
  CHECK_MESSAGE(cache.steps() == 1, "a refused step changed the cache: " << cache.steps() << " steps");
  check_throws_with([&] { attn.project_memory(zeros<double>({2, 3, 6})); }, {"MultiheadAttention", "(2,3,6)"});
  const AttentionCache<double> memory = attn.project_memory(zeros<double>({2, 3, 8}));
  const D batch_3 = zeros<double>({3, 1, 8});
  check_throws_with([&] { attn.forward_step_memory(batch_3, memory); }, {"MultiheadAttention", "(3,1,8)"});
}

TEST_CASE("transformer: TransformerEncoderLayer refuses bad shapes, naming the layer and the shape") {
  check_throws_with([] { TransformerEncoderLayer<double>(10, 3, 16); }, {"TransformerEncoderLayer", "10", "3"});
  check_throws_with([] { TransformerEncoderLayer<double>(8, 2, 16, 1.5); }, {"dropout"});
  Generator gen(92);
  for (const bool norm_first : {false, true}) {
    CAPTURE(norm_first);
    TransformerEncoderLayer<double> layer(8, 2, 16, 0.0, Activation::relu, 1e-5, false, norm_first, gen);
    const D src = zeros<double>({5, 2, 8});  // (S, B, E)
    CHECK_NOTHROW(layer.forward(src, attend_mask(xt::ones<bool>({5, 5})), attend_mask(xt::ones<bool>({2, 5}))));
    check_throws_with([&] { layer.forward(zeros<double>({5, 2, 6})); }, {"TransformerEncoderLayer", "(5,2,6)"});
    for (const Shape& bad : {Shape{5, 4}, Shape{4, 4}, Shape{3, 5, 5}}) {
      const AttendMask m = attend_mask(xt::ones<bool>(bad));
      check_throws_with([&] { layer.forward(src, m, std::nullopt); }, {"TransformerEncoderLayer", shape_str(bad)});
    }
    for (const Shape& bad : {Shape{2, 4}, Shape{5, 2}, Shape{3, 5}}) {
      const AttendMask m = attend_mask(xt::ones<bool>(bad));
      check_throws_with([&] { layer.forward(src, std::nullopt, m); }, {"TransformerEncoderLayer", shape_str(bad)});
    }
  }
}

TEST_CASE("transformer: TransformerDecoderLayer refuses bad shapes, naming the layer and the shape") {
  check_throws_with([] { TransformerDecoderLayer<double>(10, 3, 16); }, {"TransformerDecoderLayer", "10", "3"});
  Generator gen(93);
  for (const bool norm_first : {false, true}) {
    CAPTURE(norm_first);
    TransformerDecoderLayer<double> layer(8, 2, 16, 0.0, Activation::relu, 1e-5, false, norm_first, gen);
    const D tgt = zeros<double>({4, 2, 8}), memory = zeros<double>({5, 2, 8});  // (T, B, E), (S, B, E)
    CHECK_NOTHROW(layer.forward(tgt, memory, attend_mask(xt::ones<bool>({4, 4})), attend_mask(xt::ones<bool>({4, 5})),
                                attend_mask(xt::ones<bool>({2, 4})), attend_mask(xt::ones<bool>({2, 5}))));
    check_throws_with([&] { layer.forward(zeros<double>({4, 2, 6}), memory); }, {"TransformerDecoderLayer", "(4,2,6)"});
    check_throws_with([&] { layer.forward(tgt, zeros<double>({5, 2, 6})); }, {"TransformerDecoderLayer", "(5,2,6)"});
    check_throws_with([&] { layer.forward(tgt, zeros<double>({5, 3, 8})); }, {"TransformerDecoderLayer", "(5,3,8)"});
    const auto bad_mask = [&](int which, const Shape& bad) {
      std::vector<std::optional<AttendMask>> m(4);
      m[which] = attend_mask(xt::ones<bool>(bad));
      check_throws_with([&] { layer.forward(tgt, memory, m[0], m[1], m[2], m[3]); },
                        {"TransformerDecoderLayer", shape_str(bad)});
    };
    bad_mask(0, {4, 5});  // tgt_mask
    bad_mask(0, {5, 5});
    bad_mask(1, {4, 4});  // memory_mask
    bad_mask(1, {5, 4});
    bad_mask(2, {2, 5});  // tgt_key_padding_mask
    bad_mask(2, {4, 2});
    bad_mask(3, {2, 4});  // memory_key_padding_mask
    bad_mask(3, {3, 5});

    layer.eval();
    check_throws_with([&] { layer.start_decoding(zeros<double>({2, 5, 6})); }, {"TransformerDecoderLayer", "(2,5,6)"});
    DecoderLayerCache<double> cache = layer.start_decoding(zeros<double>({2, 5, 8}));  // (B, S, E)
    const D narrow_step = zeros<double>({2, 1, 6}), batch_3 = zeros<double>({3, 1, 8});
    check_throws_with([&] { layer.forward_step(narrow_step, cache); }, {"TransformerDecoderLayer", "(2,1,6)"});
    check_throws_with([&] { layer.forward_step(batch_3, cache); }, {"TransformerDecoderLayer", "(3,1,8)"});
    // A refused step leaves the cache as it was.
    CHECK_MESSAGE(cache.self_attn.steps() == 0, "refused steps left " << cache.self_attn.steps() << " step(s)");
    CHECK_NOTHROW(layer.forward_step(zeros<double>({2, 1, 8}), cache));
  }
}

// ---- stacks ---------------------------------------------------------------------------

TEST_CASE("transformer: TransformerEncoder and TransformerDecoder stack their layers under PyTorch's names") {
  Generator gen(91);
  TransformerEncoder<double> encoder(2, 8, 2, 16, 0.0, Activation::relu, 1e-5, true, false, true, gen);
  TransformerDecoder<double> decoder(2, 8, 2, 16, 0.0, Activation::gelu, 1e-5, true, true, true, gen);
  const StateDict<double> enc_state = encoder.state_dict(), dec_state = decoder.state_dict();
  for (const char* key : {"layers.0.self_attn.in_proj_weight", "layers.1.linear2.bias", "norm.weight", "norm.bias"})
    CHECK_MESSAGE(enc_state.count(key) == 1, key);
  for (const char* key : {"layers.1.multihead_attn.out_proj.weight", "layers.0.norm3.bias", "norm.weight"})
    CHECK_MESSAGE(dec_state.count(key) == 1, key);
  CHECK(enc_state.size() == 2 * 12 + 2);  // per layer: in_proj w,b, out_proj w,b, linear1/2 w,b, norm1/2 w,b
  CHECK(dec_state.size() == 2 * 18 + 2);

  // the stack is its layers in turn, then the final norm: the same values exactly
  const D src = input({2, 5, 8}, 92), memory = input({2, 4, 8}, 93);
  const D by_hand = encoder.norm->forward(encoder.layers[1]->forward(encoder.layers[0]->forward(src)));
  CHECK(max_abs_diff(encoder.forward(src).data(), by_hand.data()) == 0.0);
  gradcheck_layer(
      encoder, [&] { return encoder.forward(src, std::nullopt, std::nullopt, true); }, {src},
      "TransformerEncoder, 2 layers, causal");

  // decoding the stack step by step equals its causal forward
  decoder.eval();
  const D full = decoder.forward(src, memory, std::nullopt, std::nullopt, std::nullopt, std::nullopt, true);
  std::vector<DecoderLayerCache<double>> caches = decoder.start_decoding(memory);
  std::vector<D> steps;
  for (std::size_t t = 0; t < 5; ++t) steps.push_back(decoder.forward_step(narrow(src, 1, t, 1), caches));
  const double diff = max_abs_diff(concat(steps, 1).data(), full.data());
  CHECK_MESSAGE(diff <= 1e-12, "stack steps differ from the causal forward by " << diff);
  std::vector<DecoderLayerCache<double>> too_few(1);
  check_throws_with([&] { decoder.forward_step(narrow(src, 1, 0, 1), too_few); }, {"TransformerDecoder", "1", "2"});
}
