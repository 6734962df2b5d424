// Layers and the Module API: gradchecks in double of every layer (parameters and inputs),
// forward values by hand, masks, the all-pairs form, state_dict, summaries.
#include <cmath>
#include <limits>

#include <xtensor/xview.hpp>

#include "helpers.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// Gradient check of out = fn() with respect to the module's parameters and the extra
// inputs; returns the largest error. Reduces the output through a fixed random weighting
// so that every output element matters while the Jacobian stays one row (fast mode covers
// large layers).
double check_layer(Module<double>& module, const std::function<D()>& fn, std::vector<D> inputs,
                   GradcheckOptions options = {}) {
  std::vector<D> wrt = module.parameters();
  wrt.insert(wrt.end(), inputs.begin(), inputs.end());
  const GradcheckResult result = gradcheck_params(fn, wrt, options);
  CHECK_MESSAGE(result.ok, result.message);
  CHECK(result.checked > 0);
  MESSAGE(module.type_name() << " gradcheck max abs error " << result.max_abs_error);
  return result.max_abs_error;
}

Mask mask2(std::initializer_list<std::initializer_list<bool>> rows) {
  Mask m = xt::zeros<bool>({rows.size(), rows.begin()->size()});
  std::size_t i = 0;
  for (const auto& row : rows) {
    std::size_t j = 0;
    for (bool v : row) m(i, j++) = v;
    ++i;
  }
  return m;
}

bool all_finite(const Array<double>& a) {
  return std::all_of(a.begin(), a.end(), [](double v) { return std::isfinite(v); });
}

}  // namespace

// ---- Module API -----------------------------------------------------------------------
TEST_CASE("module: named_parameters uses dotted names in registration order") {
  Generator gen(1);
  MultiHeadCrossAttention<float> attn(8, 2, 6, 4, 8, true, 0.0, gen);
  std::vector<std::string> names;
  for (const auto& [name, p] : attn.named_parameters()) names.push_back(name);
  const std::vector<std::string> expected{"q_proj.weight", "q_proj.bias", "k_proj.weight",   "k_proj.bias",
                                          "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias"};
  CHECK(names == expected);
  CHECK(attn.parameter_count() == 8 * 8 + 8 + 8 * 6 + 8 + 8 * 4 + 8 + 8 * 8 + 8);
  CHECK(attn.children().size() == 4);
  for (const auto& p : attn.parameters()) CHECK(p.requires_grad());

  FeedForward<float> ff(4, 16, 0.0, gen);
  CHECK(ff.named_parameters()[0].first == "net.0.weight");
  CHECK(ff.named_parameters()[3].first == "net.3.bias");
}

TEST_CASE("module: bad names are refused") {
  Module<double> m("Custom");
  m.register_parameter("w", zeros<double>({2}));
  CHECK_THROWS_AS(m.register_parameter("", zeros<double>({2})), std::invalid_argument);
  CHECK_THROWS_AS(m.register_parameter("a.b", zeros<double>({2})), std::invalid_argument);
  CHECK_THROWS_AS(m.register_parameter("w", zeros<double>({2})), std::invalid_argument);
  CHECK_THROWS_AS(m.register_module("w", std::make_shared<ReLU<double>>()), std::invalid_argument);
  check_throws_with([&] { m.register_module("x.y", std::make_shared<ReLU<double>>()); }, {"Custom", "x.y", "'.'"});
}

TEST_CASE("module: train and eval reach every submodule, and dropout obeys") {
  Generator gen(2);
  FeedForward<double> ff(4, 8, 0.5, gen);
  const D x = input({3, 4}, 5);
  ff.eval();
  for (const auto& child : ff.net->children()) CHECK_FALSE(child->is_training());
  const Array<double> a = ff.forward(x).data(), b = ff.forward(x).data();
  CHECK(a == b);  // eval: dropout is the identity, the output deterministic
  ff.train();
  for (const auto& child : ff.net->children()) CHECK(child->is_training());
  CHECK(ff.forward(x).data() != ff.forward(x).data());  // training: fresh masks
}

TEST_CASE("module: zero_grad clears every parameter's gradient") {
  Generator gen(3);
  Linear<double> lin(3, 2, true, gen);
  sum(lin.forward(input({4, 3}, 1))).backward();
  CHECK(xt::any(xt::not_equal(lin.weight.grad(), 0.0)));
  lin.zero_grad();
  for (const auto& p : lin.parameters()) CHECK(xt::all(xt::equal(p.grad(), 0.0)));
}

TEST_CASE("module: summary shows the tree like PyTorch's repr") {
  Generator gen(4);
  CrossAttention<float> attn(4, 6, 5, 8, gen);
  const std::string expected =
      "CrossAttention(\n"
      "  (query_linear): Linear(in_features=4, out_features=8, bias=true)\n"
      "  (key_linear): Linear(in_features=6, out_features=8, bias=true)\n"
      "  (value_linear): Linear(in_features=5, out_features=8, bias=true)\n"
      "  (output_linear): Linear(in_features=8, out_features=8, bias=true)\n"
      ")";
  CHECK(attn.summary() == expected);
}

TEST_CASE("module: summary of multi-head attention shows the output projection it applies") {
  Generator gen(4);
  MultiHeadCrossAttention<float> attn(8, 2, 6, 4, 8, true, 0.0, gen);
  const std::string expected =
      "MultiHeadCrossAttention(query_dim=8, num_heads=2, key_dim=6, value_dim=4, out_dim=8, dropout=0.0\n"
      "  (q_proj): Linear(in_features=8, out_features=8, bias=true)\n"
      "  (k_proj): Linear(in_features=6, out_features=8, bias=true)\n"
      "  (v_proj): Linear(in_features=4, out_features=8, bias=true)\n"
      "  (out_proj): OutputProjection(in_features=8, out_features=8, bias=true, heads=2)\n"
      ")";
  CHECK(attn.summary() == expected);
}

TEST_CASE("module: state_dict round trip reproduces the outputs") {
  Generator gen_a(5), gen_b(6);
  MultiHeadCrossAttention<float> a(8, 2, 6, 4, 8, true, 0.0, gen_a), b(8, 2, 6, 4, 8, true, 0.0, gen_b);
  Generator data(7);
  const auto q = randn<float>({2, 3, 8}, data), k = randn<float>({2, 5, 6}, data), v = randn<float>({2, 5, 4}, data);
  CHECK(a.forward(q, k, v).output.data() != b.forward(q, k, v).output.data());
  b.load_state_dict(a.state_dict());
  CHECK(a.forward(q, k, v).output.data() == b.forward(q, k, v).output.data());
}

TEST_CASE("module: load_state_dict names every problem and loads nothing") {
  Generator gen(8);
  Linear<double> lin(3, 2, true, gen);
  const Array<double> weight_before = lin.weight.data();
  StateDict<double> state = lin.state_dict();
  state["weight"] = xt::ones<double>({2, 3}) * 7.0;  // a valid entry that must not be applied
  state["bias"] = xt::zeros<double>({3});            // wrong shape
  state["extra"] = xt::zeros<double>({1});           // unexpected
  check_throws_with([&] { lin.load_state_dict(state); },
                    {"nothing loaded", "'bias' has shape (3)", "expects (2)", "unexpected 'extra'"});
  CHECK(lin.weight.data() == weight_before);

  StateDict<double> partial{{"weight", xt::ones<double>({2, 3})}};
  check_throws_with([&] { lin.load_state_dict(partial); }, {"missing 'bias'"});
  CHECK(lin.weight.data() == weight_before);
  lin.load_state_dict(partial, /*strict=*/false);  // non-strict: loads what is there
  CHECK(lin.weight.data() == Array<double>(xt::ones<double>({2, 3})));
}

// ---- Linear, Embedding, LayerNorm, activations ----------------------------------------
TEST_CASE("linear: forward is x W^T + b, PyTorch's initialisation bound") {
  Generator gen(9);
  Linear<double> lin(3, 2, true, gen);
  lin.weight.mutable_data() = Array<double>{{1, 2, 3}, {4, 5, 6}};
  lin.bias->mutable_data() = Array<double>{0.5, -0.5};
  const D x({{1.0, 0.0, -1.0}, {2.0, 1.0, 0.0}});
  const Array<double> expected{{-1.5, -2.5}, {4.5, 12.5}};
  CHECK(lin.forward(x).data() == expected);

  Linear<float> wide(400, 50, true, gen);
  const float bound = 1.0f / 20.0f;
  CHECK(xt::amax(xt::abs(wide.weight.data()))() <= bound);
  CHECK(xt::amax(xt::abs(wide.weight.data()))() > 0.9f * bound);
  check_throws_with([&] { lin.forward(input({2, 4}, 1)); }, {"Linear", "(2,4)", "in_features = 3"});
}

TEST_CASE("gradcheck: linear layer on (2,3,4) input, with and without bias") {
  Generator gen(10);
  Linear<double> with_bias(4, 3, true, gen), no_bias(4, 3, false, gen);
  const D x = input({2, 3, 4}, 11);
  check_layer(with_bias, [&] { return with_bias.forward(x); }, {x});
  check_layer(no_bias, [&] { return no_bias.forward(x); }, {x});
  const D v = input({4}, 12);  // a single vector
  check_layer(with_bias, [&] { return with_bias.forward(v); }, {v});
}

TEST_CASE("embedding: rows of the table, shaped ids, out-of-range ids refused") {
  Generator gen(13);
  Embedding<double> emb(5, 3, gen);
  const D out = emb.forward({4, 0, 4}, {1, 3});
  CHECK(out.shape() == Shape{1, 3, 3});
  for (std::size_t j = 0; j < 3; ++j) CHECK(out.data()(0, 0, j) == emb.weight.data()(4, j));
  check_throws_with([&] { emb.forward({1, 5}); }, {"Embedding", "index 5", "5 embeddings"});
  // repeated ids accumulate gradient
  sum(emb.forward({2, 2, 1})).backward();
  CHECK(emb.weight.grad()(2, 0) == 2.0);
  CHECK(emb.weight.grad()(1, 0) == 1.0);
  CHECK(emb.weight.grad()(0, 0) == 0.0);
  emb.zero_grad();
  check_layer(emb, [&] { return emb.forward({3, 1, 3, 0}, {2, 2}); }, {});
}

TEST_CASE("gradcheck: LayerNorm module, FeedForward, activations") {
  Generator gen(14);
  LayerNorm<double> ln({5});
  Generator init(15);
  ln.weight->mutable_data() = randn<double>({5}, init).data();
  ln.bias->mutable_data() = randn<double>({5}, init).data();
  const D x = input({2, 3, 5}, 16);
  check_layer(ln, [&] { return ln.forward(x); }, {x});

  FeedForward<double> ff(4, 6, 0.0, gen);
  const D y = input({3, 4}, 17);
  check_layer(ff, [&] { return ff.forward(y); }, {y});

  Sequential<double> acts({std::make_shared<Tanh<double>>(), std::make_shared<Sigmoid<double>>(),
                           std::make_shared<GELU<double>>(GeluApproximation::tanh), std::make_shared<ReLU<double>>()});
  const D z = input_uniform({2, 4}, 0.2, 2.0, 18);
  check_layer(acts, [&] { return acts.forward(z); }, {z});
  CHECK(ReLU<double>().forward(D({-1.0, 2.0})).data() == Array<double>{0.0, 2.0});
}

TEST_CASE("dropout module: identity in eval, zeros about p of the values in training") {
  Generator gen(19);
  Dropout<float> drop(0.25, gen);
  const auto x = ones<float>({100, 100});
  drop.eval();
  CHECK(drop.forward(x).data() == x.data());
  drop.train();
  const Array<float> y = drop.forward(x).data();
  const double zero_fraction = double(xt::sum(xt::equal(y, 0.0f))()) / double(y.size());
  CHECK(zero_fraction == doctest::Approx(0.25).epsilon(0.1));
  CHECK(xt::amax(y)() == doctest::Approx(1.0 / 0.75));
  CHECK_THROWS_AS(Dropout<float>(1.5), std::invalid_argument);
}

// ---- CrossAttention (the seed's class) ------------------------------------------------
TEST_CASE("cross attention: the seed's shapes, weights are distributions") {
  Generator gen(20);
  CrossAttention<float> attn(128, 256, 256, 512, gen);
  const auto query = rand<float>({2, 4, 128}, gen), key = rand<float>({2, 6, 256}, gen),
             value = rand<float>({2, 6, 256}, gen);
  const auto result = attn.forward(query, key, value);
  CHECK(result.output.shape() == Shape{2, 4, 512});
  CHECK(result.weights.shape() == Shape{2, 4, 6});
  const Array<float> row_sums = xt::sum(result.weights.data(), {2});
  for (float s : row_sums) CHECK(s == doctest::Approx(1.0f).epsilon(1e-5));
  check_throws_with(
      [&] {
        attn.forward(query, key, rand<float>({2, 5, 256}, gen));
      },
      {"CrossAttention", "(2,6,256)", "(2,5,256)"});
  check_throws_with(
      [&] {
        attn.forward(rand<float>({2, 4, 100}, gen), key, value);
      },
      {"CrossAttention", "query", "(2,4,100)"});
}

TEST_CASE("cross attention: forward equals softmax(QK^T / sqrt(d)) V by hand") {
  Generator gen(21);
  CrossAttention<double> attn(3, 2, 2, 4, gen);
  const D q = input({1, 2, 3}, 22), k = input({1, 3, 2}, 23), v = input({1, 3, 2}, 24);
  const auto result = attn.forward(q, k, v);
  NoGradGuard no_grad;
  const D Q = attn.query_linear->forward(q), K = attn.key_linear->forward(k), V = attn.value_linear->forward(v);
  for (std::size_t i = 0; i < 2; ++i) {
    double scores[3], total = 0;
    for (std::size_t j = 0; j < 3; ++j) {
      double dot = 0;
      for (std::size_t c = 0; c < 4; ++c) dot += Q.data()(0, i, c) * K.data()(0, j, c);
      scores[j] = std::exp(dot / 2.0);  // sqrt(dim_output = 4)
      total += scores[j];
    }
    for (std::size_t j = 0; j < 3; ++j) CHECK(result.weights.data()(0, i, j) == doctest::Approx(scores[j] / total));
  }
  const D context = matmul(result.weights, V);
  CHECK(xt::allclose(result.output.data(), attn.output_linear->forward(context).data()));
}

TEST_CASE("gradcheck: cross attention, small widths, full Jacobian") {
  Generator gen(25);
  CrossAttention<double> attn(5, 3, 4, 6, gen);
  const D q = input({2, 4, 5}, 26), k = input({2, 6, 3}, 27), v = input({2, 6, 4}, 28);
  check_layer(attn, [&] { return attn.forward(q, k, v).output; }, {q, k, v});
  check_layer(attn, [&] { return attn.forward(q, k, v).weights; }, {q, k});
}

TEST_CASE("gradcheck: cross attention at the seed's full shapes, fast mode") {
  Generator gen(29);
  CrossAttention<double> attn(128, 256, 256, 512, gen);
  const D q = input({2, 4, 128}, 30), k = input({2, 6, 256}, 31), v = input({2, 6, 256}, 32);
  check_layer(
      attn, [&] { return attn.forward(q, k, v).output; }, {q, k, v},
      GradcheckOptions().set_fast_mode(true).set_seed(3));
}

// ---- MultiHeadCrossAttention ----------------------------------------------------------
TEST_CASE("mha: shapes, per-head and averaged weights, heads must divide out_dim") {
  Generator gen(33);
  MultiHeadCrossAttention<float> attn(6, 2, 5, 3, 8, true, 0.0, gen);
  const auto q = randn<float>({2, 4, 6}, gen), k = randn<float>({2, 7, 5}, gen), v = randn<float>({2, 7, 3}, gen);
  const auto averaged = attn.forward(q, k, v);
  CHECK(averaged.output.shape() == Shape{2, 4, 8});
  CHECK(averaged.weights.shape() == Shape{2, 4, 7});
  const auto per_head = attn.forward(q, k, v, std::nullopt, std::nullopt, false);
  CHECK(per_head.weights.shape() == Shape{2, 2, 4, 7});
  const Array<float> mean_heads = xt::mean(per_head.weights.data(), {1});
  CHECK(xt::allclose(mean_heads, averaged.weights.data()));
  check_throws_with([&] { MultiHeadCrossAttention<float>(6, 3, 5, 3, 8); }, {"num_heads = 3", "out_dim = 8"});
}

TEST_CASE("gradcheck: mha with query, key and value widths all different") {
  Generator gen(34);
  MultiHeadCrossAttention<double> attn(5, 2, 3, 7, 4, true, 0.0, gen);
  const D q = input({2, 3, 5}, 35), k = input({2, 4, 3}, 36), v = input({2, 4, 7}, 37);
  check_layer(attn, [&] { return attn.forward(q, k, v).output; }, {q, k, v});
}

TEST_CASE("gradcheck: mha with a key padding mask") {
  Generator gen(38);
  MultiHeadCrossAttention<double> attn(4, 2, 3, 5, 4, true, 0.0, gen);
  const D q = input({2, 3, 4}, 39), k = input({2, 4, 3}, 40), v = input({2, 4, 5}, 41);
  const AttendMask padding = attend_mask(mask2({{true, true, false, true}, {true, false, false, false}}));
  const auto result = attn.forward(q, k, v, padding);
  CHECK(result.weights.data()(0, 0, 2) == 0.0);  // masked keys get no weight
  CHECK(result.weights.data()(1, 2, 1) == 0.0);
  CHECK(result.weights.data()(1, 2, 0) == doctest::Approx(1.0));
  check_layer(attn, [&] { return attn.forward(q, k, v, padding).output; }, {q, k, v});
}

TEST_CASE("gradcheck: mha with an attention mask, 2-D and batched") {
  Generator gen(42);
  MultiHeadCrossAttention<double> attn(4, 2, 3, 3, 4, false, 0.0, gen);
  const D q = input({2, 3, 4}, 43), k = input({2, 4, 3}, 44), v = input({2, 4, 3}, 45);
  const Mask causal_like = mask2({{true, false, false, false}, {true, true, false, false}, {true, true, true, true}});
  const auto result = attn.forward(q, k, v, std::nullopt, attend_mask(causal_like));
  CHECK(result.weights.data()(1, 0, 1) == 0.0);
  CHECK(result.weights.data()(1, 0, 0) == doctest::Approx(1.0));
  check_layer(attn, [&] { return attn.forward(q, k, v, std::nullopt, attend_mask(causal_like)).output; }, {q, k, v});

  Mask batched = xt::ones<bool>({2, 3, 4});
  batched(0, 1, 3) = false;
  batched(1, 2, 0) = false;
  check_layer(attn, [&] { return attn.forward(q, k, v, std::nullopt, attend_mask(batched)).output; }, {q, k, v});
  check_throws_with(
      [&] {
        attn.forward(q, k, v, std::nullopt, attend_mask(xt::ones<bool>({3, 5})));
      },
      {"attn_mask", "(3,5)"});
}

TEST_CASE("mha: a query with nothing to attend to gives zeros and no NaN anywhere") {
  // PyTorch's MultiheadAttention leaks NaN into every gradient here (its issue 41508).
  Generator gen(46);
  MultiHeadCrossAttention<double> attn(4, 2, 3, 3, 4, true, 0.0, gen);
  const D q = input({2, 3, 4}, 47), k = input({2, 4, 3}, 48), v = input({2, 4, 3}, 49);
  Mask allowed = xt::ones<bool>({2, 3, 4});
  for (std::size_t j = 0; j < 4; ++j) allowed(0, 1, j) = false;  // query 1 of batch 0 sees nothing
  const auto result = attn.forward(q, k, v, std::nullopt, attend_mask(allowed), false);
  for (std::size_t h = 0; h < 2; ++h)
    for (std::size_t j = 0; j < 4; ++j) CHECK(result.weights.data()(0, h, 1, j) == 0.0);
  for (std::size_t c = 0; c < 4; ++c) CHECK(result.output.data()(0, 1, c) == 0.0);
  CHECK(all_finite(result.output.data()));

  // The dead row passes zero gradient; every other row's gradient stays exact.
  D q_leaf(Array<double>(q.data()), true);
  sum(attn.forward(q_leaf, k, v, std::nullopt, attend_mask(allowed)).output).backward();
  CHECK(all_finite(q_leaf.grad()));
  for (std::size_t c = 0; c < 4; ++c) CHECK(q_leaf.grad()(0, 1, c) == 0.0);
  for (const auto& p : attn.parameters()) CHECK(all_finite(p.grad()));
  attn.zero_grad();
  check_layer(attn, [&] { return attn.forward(q, k, v, std::nullopt, attend_mask(allowed)).output; }, {q, k, v});

  // A batch element whose keys are all padding: every query of it is dead.
  const AttendMask padding = attend_mask(mask2({{true, true, true, true}, {false, false, false, false}}));
  const auto padded = attn.forward(q, k, v, padding);
  CHECK(all_finite(padded.output.data()));
  CHECK(xt::all(xt::equal(xt::view(padded.output.data(), 1), 0.0)));
  check_layer(attn, [&] { return attn.forward(q, k, v, padding).output; }, {q, k, v});
}

TEST_CASE("mha: dropout on the weights only while training") {
  Generator gen(50);
  MultiHeadCrossAttention<double> attn(4, 2, 3, 3, 4, true, 0.5, gen);
  const D q = input({2, 3, 4}, 51), k = input({2, 4, 3}, 52), v = input({2, 4, 3}, 53);
  attn.eval();
  CHECK(attn.forward(q, k, v).output.data() == attn.forward(q, k, v).output.data());
  attn.train();
  CHECK(attn.forward(q, k, v).output.data() != attn.forward(q, k, v).output.data());
}

// ---- all pairs ------------------------------------------------------------------------
TEST_CASE("all pairs: pair (i, j) equals forward(query i, key j, value j)") {
  Generator gen(54);
  MultiHeadCrossAttention<double> attn(5, 2, 3, 4, 6, true, 0.0, gen);
  const D queries = input({3, 2, 5}, 55), keys = input({4, 5, 3}, 56), values = input({4, 5, 4}, 57);
  const auto pairs = attn.forward_all_pairs(queries, keys, values);
  CHECK(pairs.output.shape() == Shape{3, 4, 2, 6});
  CHECK(pairs.weights.shape() == Shape{3, 4, 2, 5});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) {
      const auto single = attn.forward(narrow(queries, 0, i, 1), narrow(keys, 0, j, 1), narrow(values, 0, j, 1));
      CHECK(xt::allclose(xt::view(pairs.output.data(), i, j), xt::view(single.output.data(), 0)));
      CHECK(xt::allclose(xt::view(pairs.weights.data(), i, j), xt::view(single.weights.data(), 0)));
    }
  const auto per_head = attn.forward_all_pairs(queries, keys, values, std::nullopt, false);
  CHECK(per_head.weights.shape() == Shape{3, 4, 2, 2, 5});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) {
      const auto single = attn.forward(narrow(queries, 0, i, 1), narrow(keys, 0, j, 1), narrow(values, 0, j, 1),
                                       std::nullopt, std::nullopt, false);  // weights (1,H,Lq,Lk)
      CHECK(xt::allclose(xt::view(per_head.weights.data(), i, j), xt::view(single.weights.data(), 0)));
    }
}

TEST_CASE("gradcheck: all pairs, with a key padding mask that kills one image") {
  Generator gen(58);
  MultiHeadCrossAttention<double> attn(4, 2, 3, 3, 4, true, 0.0, gen);
  const D queries = input({2, 2, 4}, 59), keys = input({3, 3, 3}, 60), values = input({3, 3, 3}, 61);
  check_layer(attn, [&] { return attn.forward_all_pairs(queries, keys, values).output; }, {queries, keys, values});
  const AttendMask padding = attend_mask(mask2({{true, false, true}, {false, false, false}, {true, true, true}}));
  const auto masked = attn.forward_all_pairs(queries, keys, values, padding);
  CHECK(xt::all(xt::equal(xt::view(masked.output.data(), xt::all(), 1), 0.0)));
  CHECK(all_finite(masked.output.data()));
  check_layer(attn, [&] { return attn.forward_all_pairs(queries, keys, values, padding).output; },
              {queries, keys, values});
}

// ---- training -------------------------------------------------------------------------
TEST_CASE("training: an MLP learns to tell a disc from the ring around it") {
  // Points in [-2, 2]^2; class 1 inside radius 1.2. Not linearly separable.
  Generator gen(62);
  const std::size_t n = 256;
  Array<float> points = xt::zeros<float>({n, std::size_t(2)});
  std::vector<std::size_t> labels(n);
  for (std::size_t i = 0; i < n; ++i) {
    points(i, 0) = float(gen.uniform(-2, 2));
    points(i, 1) = float(gen.uniform(-2, 2));
    labels[i] = points(i, 0) * points(i, 0) + points(i, 1) * points(i, 1) < 1.44f ? 1 : 0;
  }
  const Tensor<float> x(points);
  Sequential<float> mlp({std::make_shared<Linear<float>>(2, 32, true, gen), std::make_shared<GELU<float>>(),
                         std::make_shared<Linear<float>>(32, 2, true, gen)});
  Adam<float> opt(mlp.parameters(), AdamOptions().set_lr(0.02));
  float loss_value = 0;
  for (int step = 0; step < 400; ++step) {
    opt.zero_grad();
    Tensor<float> loss = cross_entropy(mlp.forward(x), labels);
    loss.backward();
    opt.step();
    loss_value = loss.item();
  }
  NoGradGuard no_grad;
  const Array<float> logits = mlp.forward(x).data();
  std::size_t correct = 0;
  for (std::size_t i = 0; i < n; ++i) correct += (logits(i, 1) > logits(i, 0)) == (labels[i] == 1);
  MESSAGE("disc vs ring: loss " << loss_value << ", accuracy " << double(correct) / n);
  CHECK(loss_value < 0.1f);
  CHECK(double(correct) / n >= 0.97);
}
