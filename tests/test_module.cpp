// The Module API a PyTorch user reaches for: weight tying, named_modules / apply /
// requires_grad_, ModuleDict, the call operator, float reprs, torch.nn.init and
// convert_state_dict.
#include <array>
#include <cstdint>
#include <limits>

#include "helpers.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// A language model's head whose output weight is the token embedding (weight tying):
// logits = h E^T, E registered here as "weight" and in the embedding.
class TiedHead : public Module<double>, public Callable<TiedHead> {
 public:
  explicit TiedHead(const Embedding<double>& embedding) : Module<double>("TiedHead") {
    weight = register_parameter("weight", embedding.weight);
  }
  Tensor<double> forward(const Tensor<double>& h) { return linear(h, weight); }  // (n, dim) -> (n, vocab)
  Tensor<double> weight;
};

class TiedLM : public Module<double>, public Callable<TiedLM> {
 public:
  explicit TiedLM(Generator& gen) : Module<double>("TiedLM") {
    embedding = register_module("embedding", std::make_shared<Embedding<double>>(6, 4, gen));
    mix = register_module("mix", std::make_shared<Linear<double>>(4, 4, true, gen));
    decoder = register_module("decoder", std::make_shared<TiedHead>(*embedding));
  }
  Tensor<double> forward(const std::vector<std::size_t>& ids) { return (*decoder)(tanh((*mix)((*embedding)(ids)))); }
  std::shared_ptr<Embedding<double>> embedding;
  std::shared_ptr<Linear<double>> mix;
  std::shared_ptr<TiedHead> decoder;
};

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor<double>>>& named) {
  std::vector<std::string> out;
  for (const auto& entry : named) out.push_back(entry.first);
  return out;
}

}  // namespace

// ---- weight tying (issue 15, trap 6) --------------------------------------------------
TEST_CASE("module: a tied weight is one parameter, Adam trains it, and both names stay equal") {
  Generator gen(11);
  TiedLM model(gen);
  CHECK(names_of(model.named_parameters()) ==
        std::vector<std::string>{"embedding.weight", "mix.weight", "mix.bias"});  // first name wins
  CHECK(model.parameters().size() == 3);
  CHECK(model.parameter_count() == 6 * 4 + 4 * 4 + 4);
  const StateDict<double> state = model.state_dict();
  CHECK(state.size() == 4);  // both names, as PyTorch's state_dict
  CHECK(state.at("decoder.weight") == state.at("embedding.weight"));

  Adam<double> adam(model.parameters(), AdamOptions().set_lr(0.05));  // refused before: "appears more than once"
  const std::vector<std::size_t> ids{0, 1, 2, 3, 4, 5}, targets{1, 2, 3, 4, 5, 0};
  const Array<double> before = model.embedding->weight.data();
  double first_loss = 0, loss_value = 0;
  for (int step = 0; step < 5; ++step) {
    adam.zero_grad();
    Tensor<double> loss = cross_entropy(model(ids), targets);
    loss.backward();
    loss_value = loss.item();
    if (step == 0) first_loss = loss_value;
    adam.step();
  }
  CHECK(loss_value < first_loss);
  CHECK(model.embedding->weight.data() != before);
  const StateDict<double> after = model.state_dict();
  CHECK(after.at("decoder.weight") == after.at("embedding.weight"));
  CHECK(model.decoder->weight.node_ptr() == model.embedding->weight.node_ptr());
}

TEST_CASE("module: load_state_dict takes a tied tensor under either name, and refuses two that differ") {
  Generator gen(12), other_gen(13);
  TiedLM model(gen), source(other_gen);
  StateDict<double> state = source.state_dict();
  const Array<double> expected = state.at("embedding.weight");

  SUBCASE("both names") { model.load_state_dict(state); }
  SUBCASE("only the first") {
    state.erase("decoder.weight");
    model.load_state_dict(state);
  }
  SUBCASE("only the second") {
    state.erase("embedding.weight");
    model.load_state_dict(state);
  }
  CHECK(model.embedding->weight.data() == expected);
  CHECK(model.decoder->weight.data() == expected);
}

TEST_CASE("module: load_state_dict names both keys of a tie that differ, and a tie with neither") {
  Generator gen(14);
  TiedLM model(gen);
  const Array<double> before = model.embedding->weight.data();
  StateDict<double> state = model.state_dict();
  state.at("decoder.weight")(0, 0) += 1.0;
  check_throws_with([&] { model.load_state_dict(state); },
                    {"TiedLM.load_state_dict", "'decoder.weight'", "'embedding.weight'", "different values"});
  CHECK(model.embedding->weight.data() == before);  // nothing loaded

  state.erase("decoder.weight");
  state.erase("embedding.weight");
  check_throws_with([&] { model.load_state_dict(state); },
                    {"missing 'embedding.weight' (or its tied name 'decoder.weight')"});
  state.at("mix.bias").fill(3.0);
  model.load_state_dict(state, false);  // not strict: the tie may be absent
  CHECK(model.mix->bias->data() == state.at("mix.bias"));
  CHECK(model.embedding->weight.data() == before);
}

// ---- float reprs (issue 15, trap 7) ---------------------------------------------------
TEST_CASE("module: float_repr prints a double as Python's repr") {
  CHECK(float_repr(0.0) == "0.0");
  CHECK(float_repr(-0.0) == "-0.0");
  CHECK(float_repr(0.1) == "0.1");
  CHECK(float_repr(0.5) == "0.5");
  CHECK(float_repr(1e-5) == "1e-05");
  CHECK(float_repr(0.0001) == "0.0001");
  CHECK(float_repr(1.5e-7) == "1.5e-07");
  CHECK(float_repr(-2.5) == "-2.5");
  CHECK(float_repr(100.0) == "100.0");
  CHECK(float_repr(123.456) == "123.456");
  CHECK(float_repr(1.0 / 3.0) == "0.3333333333333333");
  CHECK(float_repr(double(0.1f)) == "0.10000000149011612");
  CHECK(float_repr(1e15) == "1000000000000000.0");
  CHECK(float_repr(1e16) == "1e+16");
  CHECK(float_repr(1.7976931348623157e308) == "1.7976931348623157e+308");
  CHECK(float_repr(5e-324) == "5e-324");
  CHECK(float_repr(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(float_repr(-std::numeric_limits<double>::infinity()) == "-inf");
  CHECK(float_repr(std::nan("")) == "nan");
}

TEST_CASE("module: summaries print probabilities and epsilons as PyTorch does") {
  CHECK(Dropout<float>(0.1).summary() == "Dropout(p=0.1)");
  CHECK(Dropout<float>(0.0).summary() == "Dropout(p=0.0)");
  CHECK(LayerNorm<float>(Shape{4}).extra_repr() == "(4), eps=1e-05, elementwise_affine=true");
  CHECK(BatchNorm1d<float>(3).extra_repr() == "3, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true");
  CHECK(BatchNorm2d<float>(3, 0.001, 0.01).extra_repr() ==
        "3, eps=0.001, momentum=0.01, affine=true, track_running_stats=true");
  CHECK(MultiheadAttention<float>(8, 2, 0.1).extra_repr() == "embed_dim=8, num_heads=2, dropout=0.1");
  CHECK(MultiHeadCrossAttention<float>(8, 2, 6, 4, 8).extra_repr() ==
        "query_dim=8, num_heads=2, key_dim=6, value_dim=4, out_dim=8, dropout=0.0");
}

// ---- named_modules, apply, requires_grad_ ---------------------------------------------
TEST_CASE("module: named_modules lists self, then every submodule depth first, shared ones once") {
  Generator gen(21);
  FeedForward<float> ff(4, 8, 0.1, gen);
  std::vector<std::string> names;
  for (const auto& [name, module] : ff.named_modules()) names.push_back(name + ":" + module->type_name());
  CHECK(names == std::vector<std::string>{":FeedForward", "net:Sequential", "net.0:Linear", "net.1:GELU",
                                          "net.2:Dropout", "net.3:Linear"});
  CHECK(ff.modules().size() == 6);
  CHECK(ff.modules()[0] == &ff);

  ModuleList<float> list;  // one module under two names: listed under the first
  auto shared = list.push_back(std::make_shared<ReLU<float>>());
  list.push_back(shared);
  REQUIRE(list.named_modules().size() == 2);
  CHECK(list.named_modules()[1].first == "0");
}

TEST_CASE("module: apply visits the children before their parent, and can initialise by type") {
  Generator gen(22);
  FeedForward<float> ff(4, 8, 0.0, gen);
  std::vector<std::string> order;
  ff.apply([&](Module<float>& m) { order.push_back(m.type_name()); });
  CHECK(order == std::vector<std::string>{"Linear", "GELU", "Dropout", "Linear", "Sequential", "FeedForward"});

  ff.apply([](Module<float>& m) {
    if (auto* lin = dynamic_cast<Linear<float>*>(&m)) {
      init::ones_(lin->weight);
      init::zeros_(*lin->bias);
    }
  });
  for (const auto& [name, p] : ff.named_parameters()) {
    const float expected = name.find("weight") != std::string::npos ? 1.0f : 0.0f;
    CHECK_MESSAGE(xt::all(xt::equal(p.data(), expected)), name);
  }
}

TEST_CASE("module: requires_grad_(false) freezes parameters, and an optimizer holding them skips them") {
  Generator gen(23);
  Sequential<double> net;
  auto first = std::make_shared<Linear<double>>(3, 4, true, gen);
  auto second = std::make_shared<Linear<double>>(4, 2, true, gen);
  net.push_back(first).push_back(std::make_shared<Tanh<double>>()).push_back(second);
  Adam<double> adam(net.parameters(), AdamOptions().set_lr(0.1));
  const D x = input({5, 3}, 1);
  const auto train_step = [&] {
    adam.zero_grad();
    sum(net(x)).backward();
    adam.step();
  };
  train_step();  // both layers now hold gradients
  CHECK(&first->requires_grad_(false) == first.get());
  for (const auto& p : first->parameters()) {
    CHECK_FALSE(p.requires_grad());
    CHECK_FALSE(p.has_grad());  // the stale gradient is gone with the freeze
  }
  const Array<double> frozen = first->weight.data(), trained = second->weight.data();
  train_step();
  train_step();
  CHECK(first->weight.data() == frozen);  // skipped: no gradient, and Adam's moments stay put
  CHECK(second->weight.data() != trained);

  net.requires_grad_(true);
  train_step();
  CHECK(first->weight.data() != frozen);
}

// ---- containers -----------------------------------------------------------------------
TEST_CASE("module: ModuleDict keeps insertion order and names entries dict.key.weight") {
  Generator gen(24);
  auto heads = std::make_shared<ModuleDict<float>>(std::vector<std::pair<std::string, std::shared_ptr<Module<float>>>>{
      {"zeta", std::make_shared<Linear<float>>(4, 2, false, gen)},
      {"alpha", std::make_shared<Linear<float>>(4, 3, true, gen)}});
  heads->insert("mid", std::make_shared<ReLU<float>>());
  CHECK(heads->keys() == std::vector<std::string>{"zeta", "alpha", "mid"});  // insertion order, not sorted
  CHECK(heads->size() == 3);
  CHECK(heads->contains("alpha"));
  CHECK_FALSE(heads->contains("beta"));
  CHECK((*heads)["mid"]->type_name() == "ReLU");
  CHECK(heads->at<Linear<float>>("alpha")->out_features == 3);
  check_throws_with([&] { (*heads)["beta"]; }, {"ModuleDict", "'beta'"});
  check_throws_with([&] { heads->at<Linear<float>>("mid"); }, {"'mid'", "ReLU"});
  check_throws_with([&] { heads->insert("mid", std::make_shared<ReLU<float>>()); }, {"'mid'", "already"});

  Module<float> model("Model");
  model.register_module("dict", heads);
  std::vector<std::string> keys;
  for (const auto& entry : model.state_dict()) keys.push_back(entry.first);
  CHECK(keys == std::vector<std::string>{"dict.alpha.bias", "dict.alpha.weight", "dict.zeta.weight"});
  CHECK(heads->summary() ==
        "ModuleDict(\n"
        "  (zeta): Linear(in_features=4, out_features=2, bias=false)\n"
        "  (alpha): Linear(in_features=4, out_features=3, bias=true)\n"
        "  (mid): ReLU()\n"
        ")");

  ModuleList<float> list;
  list.push_back(std::make_shared<Tanh<float>>());
  CHECK(list[0]->type_name() == "Tanh");
  CHECK_THROWS_AS(list[1], std::invalid_argument);
}

// ---- the call operator ----------------------------------------------------------------
TEST_CASE("module: every layer is callable with the arguments its forward takes") {
  Generator gen(31);
  const auto x = randn<double>({2, 3, 8}, gen);  // (B, L, E)
  const auto same = [](const Tensor<double>& a, const Tensor<double>& b) { return a.data() == b.data(); };

  Linear<double> lin(8, 4, true, gen);
  CHECK(same(lin(x), lin.forward(x)));
  Embedding<double> emb(10, 8, gen);
  const std::vector<std::size_t> ids{1, 2, 3, 4, 5, 6};
  CHECK(same(emb(ids), emb.forward(ids)));
  CHECK(emb(ids, Shape{2, 3}).shape() == Shape{2, 3, 8});

  LSTM<double> lstm(8, 5, 1, true, true, gen);
  const LSTMOutput<double> out = lstm(x);
  CHECK(same(lstm(x, out.state).output, lstm.forward(x, out.state).output));
  GRU<double> gru(8, 5, 2, true, true, gen);
  CHECK(same(gru(x).h_n, gru.forward(x).h_n));
  LSTMCell<double> cell(8, 5, true, gen);
  const auto x0 = randn<double>({2, 8}, gen);
  CHECK(same(cell(x0, cell(x0)).h, cell.forward(x0, cell.forward(x0)).h));
  GRUCell<double> gru_cell(8, 5, true, gen);
  CHECK(same(gru_cell(x0), gru_cell.forward(x0)));

  const auto memory = randn<double>({2, 4, 8}, gen);
  MultiheadAttention<double> mha(8, 2, 0.0, true, true, gen);
  CHECK(same(mha(x, memory, memory).output, mha.forward(x, memory, memory).output));
  MultiHeadCrossAttention<double> cross(8, 2, 8, 8, 8, true, 0.0, gen);
  CHECK(same(cross(x, memory, memory).output, cross.forward(x, memory, memory).output));
  CrossAttention<double> seed_attn(8, 8, 8, 6, gen);
  CHECK(same(seed_attn(x, memory, memory).output, seed_attn.forward(x, memory, memory).output));

  TransformerEncoderLayer<double> enc(8, 2, 16, 0.0, Activation::relu, 1e-5, true, false, gen);
  CHECK(same(enc(x), enc.forward(x)));
  CHECK(same(enc(x, std::nullopt, std::nullopt, true), enc.forward(x, std::nullopt, std::nullopt, true)));
  TransformerDecoderLayer<double> dec(8, 2, 16, 0.0, Activation::relu, 1e-5, true, false, gen);
  CHECK(same(dec(x, memory), dec.forward(x, memory)));
  TransformerEncoder<double> encoder(2, 8, 2, 16, 0.0, Activation::relu, 1e-5, true, false, true, gen);
  CHECK(same(encoder(x, std::nullopt, std::nullopt, true), encoder.forward(x, std::nullopt, std::nullopt, true)));
  CHECK(same(encoder(x), encoder.forward(x)));
  TransformerDecoder<double> decoder(2, 8, 2, 16, 0.0, Activation::relu, 1e-5, true, false, true, gen);
  CHECK(same(decoder(x, memory), decoder.forward(x, memory)));

  UnaryModule<double>& as_unary = enc;  // through the base: its operator()(x)
  CHECK(same(as_unary(x), enc.forward(x)));
}

// ---- convert_state_dict ---------------------------------------------------------------
TEST_CASE("module: convert_state_dict moves a float-trained model to double for a gradient check") {
  Generator gen(41);
  FeedForward<float> model_f(4, 8, 0.0, gen);
  Adam<float> adam(model_f.parameters());
  const auto x_f = randn<float>({3, 4}, gen);
  for (int step = 0; step < 3; ++step) {
    adam.zero_grad();
    sum(mul(model_f(x_f), model_f(x_f))).backward();
    adam.step();
  }
  FeedForward<double> model_d(4, 8, 0.0, gen);  // other weights until loaded
  model_d.load_state_dict(convert_state_dict<double>(model_f.state_dict()));
  for (const auto& [name, value] : model_d.state_dict()) {
    const Array<float> original = model_f.state_dict().at(name);
    CHECK_MESSAGE(std::equal(value.begin(), value.end(), original.begin(), original.end(),
                             [](double d, float f) { return d == double(f); }),
                  name);  // exact: float -> double
  }

  Array<double> x_values(x_f.data().shape());
  std::copy(x_f.data().begin(), x_f.data().end(), x_values.begin());
  const D x(x_values, true);
  const Array<double> y_d = model_d(x).data();
  const Array<float> y_f = model_f(x_f).data();
  for (std::size_t i = 0; i < y_d.size(); ++i) CHECK(y_d.data()[i] == doctest::Approx(y_f.data()[i]).epsilon(1e-5));
  std::vector<D> wrt = model_d.parameters();
  wrt.push_back(x);
  const GradcheckResult result = gradcheck_params([&] { return model_d(x); }, wrt);
  CHECK_MESSAGE(result.ok, result.message);

  FeedForward<float> back(4, 8, 0.0, gen);  // and back: double -> float is exact for these values
  back.load_state_dict(convert_state_dict<float>(model_d.state_dict()));
  CHECK(back.state_dict() == model_f.state_dict());
}

// ---- torch.nn.init --------------------------------------------------------------------
TEST_CASE("init: calculate_gain and the fans are PyTorch's") {
  CHECK(init::calculate_gain(init::Nonlinearity::linear) == 1.0);
  CHECK(init::calculate_gain(init::Nonlinearity::conv2d) == 1.0);
  CHECK(init::calculate_gain(init::Nonlinearity::sigmoid) == 1.0);
  CHECK(init::calculate_gain(init::Nonlinearity::tanh) == doctest::Approx(5.0 / 3.0).epsilon(1e-15));
  CHECK(init::calculate_gain(init::Nonlinearity::relu) == doctest::Approx(1.4142135623730951).epsilon(1e-15));
  CHECK(init::calculate_gain(init::Nonlinearity::leaky_relu) == doctest::Approx(1.4141428569978354).epsilon(1e-15));
  CHECK(init::calculate_gain(init::Nonlinearity::leaky_relu, 0.2) ==
        doctest::Approx(1.3867504905630728).epsilon(1e-15));
  CHECK(init::calculate_gain(init::Nonlinearity::selu) == 0.75);

  using Fans = std::pair<std::size_t, std::size_t>;
  CHECK(init::calculate_fan_in_and_fan_out(Shape{5, 3}) == Fans{3, 5});          // Linear (out, in)
  CHECK(init::calculate_fan_in_and_fan_out(Shape{6, 2, 3, 4}) == Fans{24, 72});  // Conv2d (out, in, kh, kw)
  CHECK(init::calculate_fan_in_and_fan_out(Shape{7, 4, 5}) == Fans{20, 35});     // Conv1d
  check_throws_with([] { init::calculate_fan_in_and_fan_out(Shape{4}); }, {"(4)", "fewer than 2 dimensions"});
}

TEST_CASE("init: the random fills have the bounds and moments PyTorch's formulas give") {
  Generator gen(51);
  // (400, 250): fan_in 250, fan_out 400; 100000 values.
  const auto moments = [](const Tensor<float>& t) {
    double s = 0, ss = 0, lo = 1e30, hi = -1e30;
    for (float v : t.data()) s += v, ss += double(v) * v, lo = std::min(lo, double(v)), hi = std::max(hi, double(v));
    const double n = double(t.numel()), mean = s / n;
    return std::array<double, 4>{mean, std::sqrt(ss / n - mean * mean), lo, hi};
  };
  const auto check = [&](const Tensor<float>& t, double mean, double sd, double bound) {
    const auto m = moments(t);
    CHECK(std::abs(m[0] - mean) < 0.02 * sd);  // about 6 standard errors
    CHECK(m[1] == doctest::Approx(sd).epsilon(0.01));
    if (bound > 0) {  // inside the bound (as rounded to float), and reaching near it
      CHECK(m[2] >= -bound * (1 + 1e-7));
      CHECK(m[3] <= bound * (1 + 1e-7));
      CHECK(std::min(-m[2], m[3]) > 0.99 * bound);
    }
  };
  auto t = zeros<float>({400, 250});
  CHECK(&init::uniform_(t, -2.0, 3.0, gen) == &t);
  check(t, 0.5, 5.0 / std::sqrt(12.0), 0);
  init::normal_(t, 1.0, 0.5, gen);
  check(t, 1.0, 0.5, 0);
  const double xavier_bound = std::sqrt(6.0 / 650.0);
  init::xavier_uniform_(t, 1.0, gen);
  check(t, 0.0, xavier_bound / std::sqrt(3.0), xavier_bound);
  init::xavier_normal_(t, 2.0, gen);
  check(t, 0.0, 2.0 * std::sqrt(2.0 / 650.0), 0);
  const double relu_fan_out_bound = std::sqrt(2.0) * std::sqrt(3.0 / 400.0);
  init::kaiming_uniform_(t, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu, gen);
  check(t, 0.0, relu_fan_out_bound / std::sqrt(3.0), relu_fan_out_bound);
  init::kaiming_normal_(t, 0.0, init::FanMode::fan_in, init::Nonlinearity::relu, gen);
  check(t, 0.0, std::sqrt(2.0 / 250.0), 0);
  init::kaiming_uniform_(t, std::sqrt(5.0), init::FanMode::fan_in, init::Nonlinearity::leaky_relu, gen);
  check(t, 0.0, 1.0 / std::sqrt(250.0 * 3.0), 1.0 / std::sqrt(250.0));  // Linear's: bound 1/sqrt(fan_in)
  init::trunc_normal_(t, 0.0, 1.0, -2.0, 2.0, gen);
  check(t, 0.0, 0.8796256610342398, 0);  // the std of N(0, 1) cut to [-2, 2]
  const auto m = moments(t);
  CHECK((m[2] >= -2.0 && m[3] <= 2.0));
}

TEST_CASE("init: the constant fills, eye_, and the errors") {
  auto t = zeros<double>({2, 3});
  init::constant_(t, 0.25);
  CHECK(xt::all(xt::equal(t.data(), 0.25)));
  init::ones_(t);
  CHECK(xt::all(xt::equal(t.data(), 1.0)));
  init::zeros_(t);
  CHECK(xt::all(xt::equal(t.data(), 0.0)));
  init::eye_(t);
  check_values(t, {2, 3}, {1, 0, 0, 0, 1, 0});
  auto v = zeros<double>({3});
  check_throws_with([&] { init::eye_(v); }, {"init.eye_", "2-D", "(3)"});
  check_throws_with([&] { init::xavier_uniform_(v); }, {"fewer than 2 dimensions"});
  check_throws_with([&] { init::uniform_(v, 1.0, 0.0); }, {"init.uniform_", "a = 1.0", "b = 0.0"});
  check_throws_with([&] { init::normal_(v, 0.0, -1.0); }, {"init.normal_", "std = -1.0"});
  check_throws_with([&] { init::trunc_normal_(v, 0.0, 1.0, 40.0, 41.0); }, {"init.trunc_normal_", "[40.0, 41.0]"});
  Tensor<double> undefined;
  check_throws_with([&] { init::zeros_(undefined); }, {"init.zeros_", "undefined"});
  auto empty = zeros<double>({0, 3});
  init::kaiming_normal_(empty);  // PyTorch: a no-op on a tensor without elements
  CHECK(empty.numel() == 0);
}

TEST_CASE("init: Linear and Conv2d draw as kaiming_uniform_(a = sqrt(5)) does in float") {
  Generator a(61), b(61);
  Linear<float> lin(7, 3, true, a);
  auto w = zeros<float>({3, 7});
  init::kaiming_uniform_(w, std::sqrt(5.0), init::FanMode::fan_in, init::Nonlinearity::leaky_relu, b);
  CHECK(lin.weight.data() == w.data());
  Generator c(62), d(62);
  Conv2d<float> conv(4, 6, Size2(3, 2), 1, 0, 1, 2, false, c);
  auto k = zeros<float>({6, 2, 3, 2});
  init::kaiming_uniform_(k, std::sqrt(5.0), init::FanMode::fan_in, init::Nonlinearity::leaky_relu, d);
  CHECK(conv.weight.data() == k.data());
}

// ---- the init refactor keeps every layer's seeded weights -----------------------------
namespace {

// FNV-1a over every state-dict entry's name and bytes: a fingerprint of seeded weights.
template <class T> std::uint64_t fingerprint(const Module<T>& m) {
  std::uint64_t h = 1469598103934665603ull;
  const auto mix = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& [name, value] : m.state_dict()) {
    mix(name.data(), name.size());
    mix(value.data(), value.size() * sizeof(T));
  }
  return h;
}

template <class T> std::vector<std::uint64_t> layer_fingerprints() {
  Generator gen(42);
  std::vector<std::uint64_t> out;
  out.push_back(fingerprint(Linear<T>(5, 3, true, gen)));
  out.push_back(fingerprint(Embedding<T>(7, 4, std::optional<std::size_t>(2), gen)));
  out.push_back(fingerprint(Conv2d<T>(4, 6, Size2(3, 2), 1, 0, 1, 2, true, gen)));
  out.push_back(fingerprint(LSTM<T>(3, 5, 2, true, false, gen)));
  out.push_back(fingerprint(GRUCell<T>(3, 4, true, gen)));
  out.push_back(fingerprint(MultiheadAttention<T>(8, 2, 0.0, true, false, gen)));
  out.push_back(fingerprint(MultiHeadCrossAttention<T>(8, 2, 8, 8, 8, true, 0.0, gen)));  // q, k, v as one matrix
  out.push_back(fingerprint(MultiHeadCrossAttention<T>(6, 2, 5, 4, 8, true, 0.0, gen)));
  out.push_back(fingerprint(TransformerDecoderLayer<T>(8, 2, 16, 0.1, Activation::relu, 1e-5, false, false, gen)));
  out.push_back(fingerprint(CrossAttention<T>(4, 6, 5, 8, gen)));
  out.push_back(fingerprint(FeedForward<T>(4, 8, 0.1, gen)));
  return out;
}

}  // namespace

// The fingerprints were taken with the layers' own rand / randn calls, before they used
// init.hpp: the same seed still gives the same bits, in float and in double.
TEST_CASE("init: every layer's seeded weights are bit for bit as before the init refactor") {
  const std::vector<std::uint64_t> float_before{9505110321273179431ull, 812651926100269585ull,  3296010509091694814ull,
                                                6622548821842358195ull, 1866769241940068049ull, 13883769149888240662ull,
                                                1374706483608819537ull, 2690691572672809337ull, 11139018110971518517ull,
                                                8510207556293647267ull, 9799310276499245459ull};
  const std::vector<std::uint64_t> double_before{
      3329670457751935479ull,  17837851061524918881ull, 16577551561238861212ull, 1814841807654127704ull,
      15004352317070202513ull, 13787795922631478758ull, 1492856028335519914ull,  5220571964240457868ull,
      9737463167391247910ull,  14336187058088270699ull, 3758221909862010280ull};
  CHECK(layer_fingerprints<float>() == float_before);
  CHECK(layer_fingerprints<double>() == double_before);
}
