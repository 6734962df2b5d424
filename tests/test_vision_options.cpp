// conv1d and Conv1d, the pool options (max_pool2d's dilation and ceil_mode; avg_pool2d's
// ceil_mode, count_include_pad and divisor_override) and BatchNorm with momentum None:
// against PyTorch 1.13 (fixtures from tests/fixtures/make_vision_fixtures.py, float64:
// forward values and the gradients of sum(out * G)), gradchecks in double, and bad input.
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

using OptD = std::optional<D>;

OptD fixture_optional(const json& t, bool requires_grad = false) {
  if (t.is_null()) return std::nullopt;  // PyTorch's None
  return fixture_tensor(t, requires_grad);
}

Size2 fixture_size2(const json& v) { return Size2(v.at(0).get<std::size_t>(), v.at(1).get<std::size_t>()); }

// loss = sum(out * G), G from the fixture, as the fixtures' gradients are taken.
void backward_with(const D& out, const json& g) { sum(out * fixture_tensor(g)).backward(); }

// ---- conv1d: the op, then a Conv1d loaded with PyTorch's weight and bias ----------------
void check_conv1d(const std::string& name) {
  const json fixture = load_fixture("vision", "conv1d.json");
  const json& c = find_case(fixture, name);
  const auto stride = c.at("stride").get<std::size_t>(), padding = c.at("padding").get<std::size_t>(),
             dilation = c.at("dilation").get<std::size_t>(), groups = c.at("groups").get<std::size_t>();
  Deviation dev("conv1d " + name);

  D x = fixture_tensor(c.at("x"), true), w = fixture_tensor(c.at("weight"), true);
  OptD b = fixture_optional(c.at("bias"), true);
  const D out = conv1d(x, w, b, stride, padding, dilation, groups);
  dev.compare(out.data(), c.at("out"), "conv1d output");
  backward_with(out, c.at("G"));
  dev.compare_grad(x, c.at("grad_x"), "conv1d grad x");
  dev.compare_grad(w, c.at("grad_weight"), "conv1d grad weight");
  dev.compare_grad(b, c.at("grad_bias"), "conv1d grad bias");

  const Shape ws = w.shape();
  Generator gen(0);
  Conv1d<double> layer(x.shape()[1], ws[0], ws[2], stride, padding, dilation, groups, b.has_value(), gen);
  StateDict<double> state{{"weight", w.data()}};
  if (b) state.emplace("bias", b->data());
  layer.load_state_dict(state);
  D x2 = fixture_tensor(c.at("x"), true);
  const D out2 = layer.forward(x2);
  dev.compare(out2.data(), c.at("out"), "Conv1d output");
  backward_with(out2, c.at("G"));
  dev.compare_grad(x2, c.at("grad_x"), "Conv1d grad x");
  dev.compare_grad(layer.weight, c.at("grad_weight"), "Conv1d grad weight");
  dev.compare_grad(layer.bias, c.at("grad_bias"), "Conv1d grad bias");
  dev.report();
}

// ---- pools with options: the op, then its layer -----------------------------------------
struct PoolCase {
  std::string op;
  Size2 kernel = 1, padding = 0, dilation = 1;
  std::optional<Size2> stride;  // null in the fixture: the default (the kernel), unset here too
  bool ceil_mode = false, count_include_pad = true;
  std::optional<long> divisor_override;
};

PoolCase pool_case(const json& c) {
  PoolCase p;
  p.op = c.at("op").get<std::string>();
  p.kernel = fixture_size2(c.at("kernel"));
  p.padding = fixture_size2(c.at("padding"));
  if (!c.at("stride").is_null()) p.stride = fixture_size2(c.at("stride"));
  p.ceil_mode = c.at("ceil_mode");
  if (p.op == "max_pool2d") p.dilation = fixture_size2(c.at("dilation"));
  if (p.op == "avg_pool2d") {
    p.count_include_pad = c.at("count_include_pad");
    if (!c.at("divisor_override").is_null()) p.divisor_override = c.at("divisor_override").get<long>();
  }
  return p;
}

D run_pool(const PoolCase& p, const D& x) {
  if (p.op == "max_pool2d") return max_pool2d(x, p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode);
  return avg_pool2d(x, p.kernel, p.stride, p.padding, p.ceil_mode, p.count_include_pad, p.divisor_override);
}

std::shared_ptr<UnaryModule<double>> pool_layer(const PoolCase& p) {
  if (p.op == "max_pool2d")
    return std::make_shared<MaxPool2d<double>>(p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode);
  return std::make_shared<AvgPool2d<double>>(p.kernel, p.stride, p.padding, p.ceil_mode, p.count_include_pad,
                                             p.divisor_override);
}

void check_pool(const std::string& name) {
  const json fixture = load_fixture("vision", "pool_options.json");
  const json& c = find_case(fixture, name);
  const PoolCase p = pool_case(c);
  Deviation dev(name);
  D x = fixture_tensor(c.at("x"), true);
  const D out = run_pool(p, x);
  dev.compare(out.data(), c.at("out"), p.op + " output");
  backward_with(out, c.at("G"));
  dev.compare_grad(x, c.at("grad_x"), p.op + " grad x");

  const auto layer = pool_layer(p);
  D x2 = fixture_tensor(c.at("x"), true);
  const D out2 = layer->forward(x2);
  dev.compare(out2.data(), c.at("out"), layer->type_name() + " output");
  backward_with(out2, c.at("G"));
  dev.compare_grad(x2, c.at("grad_x"), layer->type_name() + " grad x");
  dev.report();
}

// ---- BatchNorm with momentum None ---------------------------------------------------------
// PyTorch's state loaded, three training steps (the running statistics and the batch count
// after each), the last step's output and gradients, then an eval forward by the statistics.
template <class Layer> void check_momentum_none(const std::string& name) {
  const json fixture = load_fixture("vision", "batch_norm_momentum_none.json");
  const json& c = find_case(fixture, name);
  Deviation dev("momentum None " + name);
  const json& xs = c.at("xs");
  Layer layer(xs.at(0).at("shape").at(1).get<std::size_t>(), 1e-5, std::nullopt);
  CHECK(layer.type_name() == c.at("layer").get<std::string>());
  StateDict<double> state;
  const json& torch_state = c.at("state_dict");
  for (auto it = torch_state.begin(); it != torch_state.end(); ++it) state.emplace(it.key(), fixture_array(it.value()));
  layer.load_state_dict(state);
  layer.train();
  D x, out;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    x = fixture_tensor(xs.at(k), true);
    out = layer.forward(x);
    const json& after = c.at("running_after").at(k);
    const std::string step = "step " + std::to_string(k + 1);
    dev.compare(layer.running_mean->data(), after.at("mean"), step + " running_mean");
    dev.compare(layer.running_var->data(), after.at("var"), step + " running_var");
    CHECK(layer.num_batches_tracked->data()() == after.at("num_batches_tracked").get<double>());
  }
  dev.compare(out.data(), c.at("out"), "train output");
  backward_with(out, c.at("G"));
  dev.compare_grad(x, c.at("grad_x"), "grad x");
  dev.compare_grad(layer.weight, c.at("grad_weight"), "grad weight");
  dev.compare_grad(layer.bias, c.at("grad_bias"), "grad bias");
  layer.eval();
  dev.compare(layer.forward(fixture_tensor(c.at("x_eval"))).data(), c.at("out_eval"), "eval output");
  dev.report();
}

}  // namespace

// ---- against PyTorch: conv1d and Conv1d -------------------------------------------------
TEST_CASE("vision options: conv1d kernel 3 matches PyTorch") { check_conv1d("plain_k3"); }
TEST_CASE("vision options: conv1d stride 2 padding 1 matches PyTorch") { check_conv1d("stride2_padding1"); }
TEST_CASE("vision options: conv1d dilation 2 padding 2 matches PyTorch") { check_conv1d("dilation2_padding2"); }
TEST_CASE("vision options: conv1d groups 2 (Cin 4, Cout 6) matches PyTorch") { check_conv1d("groups2"); }
TEST_CASE("vision options: conv1d stride 3, padding 2, dilation 2, groups 2, no bias matches PyTorch") {
  check_conv1d("all_options_no_bias");
}
TEST_CASE("vision options: conv1d kernel covering the padded input matches PyTorch") {
  check_conv1d("kernel_covers_padded_input");
}
TEST_CASE("vision options: conv1d with padding wider than its output matches PyTorch") {
  check_conv1d("padding_wider_than_output");
}

// ---- against PyTorch: pool options and their layers -------------------------------------
TEST_CASE("vision options: max_pool2d dilation 2 matches PyTorch") { check_pool("max_dilation2"); }
TEST_CASE("vision options: max_pool2d dilation (2,3), kernel (3,2), padding 1 matches PyTorch") {
  check_pool("max_dilation_2x3_padding1");
}
TEST_CASE("vision options: max_pool2d ceil_mode matches PyTorch") { check_pool("max_ceil_mode"); }
TEST_CASE("vision options: max_pool2d ceil_mode kernel 3 stride 2 padding 1 matches PyTorch") {
  check_pool("max_ceil_mode_kernel3_stride2_padding1");
}
TEST_CASE("vision options: max_pool2d ceil_mode drops a window starting in the right padding, as PyTorch") {
  check_pool("max_ceil_mode_drops_last");
}
TEST_CASE("vision options: max_pool2d ceil_mode with dilation matches PyTorch") {
  check_pool("max_ceil_mode_dilation2");
}
TEST_CASE("vision options: max_pool2d ceil_mode with a kernel larger than the input matches PyTorch") {
  check_pool("max_ceil_mode_kernel_over_input");
}
TEST_CASE("vision options: avg_pool2d ceil_mode matches PyTorch") { check_pool("avg_ceil_mode"); }
TEST_CASE("vision options: avg_pool2d ceil_mode with padding counts the padding, not the overhang, as PyTorch") {
  check_pool("avg_ceil_mode_kernel3_stride2_padding1");
}
TEST_CASE("vision options: avg_pool2d ceil_mode drops a window starting in the right padding, as PyTorch") {
  check_pool("avg_ceil_mode_drops_last");
}
TEST_CASE("vision options: avg_pool2d count_include_pad=false matches PyTorch") {
  check_pool("avg_no_count_include_pad");
}
TEST_CASE("vision options: avg_pool2d ceil_mode with count_include_pad=false matches PyTorch") {
  check_pool("avg_ceil_mode_no_count_include_pad");
}
TEST_CASE("vision options: avg_pool2d divisor_override matches PyTorch") { check_pool("avg_divisor_override"); }
TEST_CASE("vision options: avg_pool2d divisor_override with ceil_mode matches PyTorch") {
  check_pool("avg_divisor_override_ceil_mode");
}

// ---- against PyTorch: BatchNorm momentum None ---------------------------------------------
TEST_CASE("vision options: BatchNorm2d momentum None over 3 steps matches PyTorch's cumulative average") {
  check_momentum_none<BatchNorm2d<double>>("batchnorm2d_fresh");
}
TEST_CASE("vision options: BatchNorm2d momentum None counts on from a loaded num_batches_tracked, as PyTorch") {
  check_momentum_none<BatchNorm2d<double>>("batchnorm2d_loaded_count2");
}
TEST_CASE("vision options: BatchNorm1d momentum None over 3 steps matches PyTorch") {
  check_momentum_none<BatchNorm1d<double>>("batchnorm1d_fresh");
}

// ---- layers: names, initialisation, extra_repr ------------------------------------------
TEST_CASE("vision options: Conv1d has PyTorch's parameter names, shapes, init bound and extra_repr") {
  Generator gen(1001);
  Conv1d<double> conv(4, 6, 3, 2, 1, 2, 2, true, gen);
  const auto named = conv.named_parameters();
  REQUIRE(named.size() == 2);
  CHECK(named[0].first == "weight");
  CHECK(named[1].first == "bias");
  CHECK(conv.weight.shape() == Shape{6, 2, 3});
  CHECK(conv.bias->shape() == Shape{6});
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 4/2 x 3 = 6
  const double bound = 1.0 / std::sqrt(6.0);
  for (const D& p : conv.parameters())
    for (double v : p.data()) CHECK((v >= -bound && v <= bound));
  // PyTorch: "Conv1d(4, 6, kernel_size=(3,), stride=(2,), padding=(1,), dilation=(2,), groups=2)"
  CHECK(conv.extra_repr() == "4, 6, kernel_size=(3,), stride=(2,), padding=(1,), dilation=(2,), groups=2");
  CHECK(Conv1d<double>(4, 6, 3, 1, 0, 1, 1, false, gen).extra_repr() ==
        "4, 6, kernel_size=(3,), stride=(1,), bias=false");
}

TEST_CASE("vision options: the pools' and BatchNorm's extra_repr print the new options as PyTorch") {
  // PyTorch: MaxPool2d(kernel_size=(2, 3), stride=1, padding=1, dilation=2, ceil_mode=True)
  CHECK(MaxPool2d<double>(Size2(2, 3), Size2(1), 1, 2, true).extra_repr() ==
        "kernel_size=(2, 3), stride=(1, 1), padding=(1, 1), dilation=(2, 2), ceil_mode=true");
  CHECK(MaxPool2d<double>(2).extra_repr() ==
        "kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=false");
  // PyTorch's AvgPool2d prints kernel_size, stride and padding only, whatever the options.
  CHECK(AvgPool2d<double>(3, Size2(2), 1, true, false, 5).extra_repr() ==
        "kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)");
  const std::string bn = BatchNorm2d<double>(3, 1e-5, std::nullopt).extra_repr();
  CHECK_MESSAGE(bn.find("momentum=None") != std::string::npos, bn);
}

// ---- gradchecks (double, full Jacobian) -------------------------------------------------
TEST_CASE("vision options: gradcheck conv1d over stride, padding, dilation, groups and bias") {
  grad("conv1d", [](const In& in) { return conv1d(in[0], in[1], OptD(in[2])); },
       {input({2, 3, 6}, 1011), input({4, 3, 3}, 1012), input({4}, 1013)});
  grad("conv1d", [](const In& in) { return conv1d(in[0], in[1], OptD(in[2]), 2, 1, 2, 2); },
       {input({2, 4, 9}, 1014), input({6, 2, 3}, 1015), input({6}, 1016)});
  // Depthwise, no bias, stride 3 > kernel 2: inputs no window sees get a zero gradient.
  grad("conv1d", [](const In& in) { return conv1d(in[0], in[1], OptD(), 3, 0, 1, 3); },
       {input({1, 3, 8}, 1017), input({3, 1, 2}, 1018)});
  // The kernel covers the padded input: one output.
  grad("conv1d", [](const In& in) { return conv1d(in[0], in[1], OptD(in[2]), 1, 2); },
       {input({1, 2, 3}, 1019), input({2, 2, 7}, 1020), input({2}, 1021)});
  // conv2d alike: padding 2 is wider than the one output column (and row).
  grad("conv2d", [](const In& in) { return conv2d(in[0], in[1], OptD(in[2]), 1, 2); },
       {input({1, 1, 2, 3}, 1024), input({2, 1, 5, 7}, 1025), input({2}, 1026)});
  // Through the layer's parameters and its input.
  Generator gen(1022);
  Conv1d<double> conv(2, 3, 3, 1, 1, 2, 1, true, gen);
  const D x = input({2, 2, 7}, 1023);
  std::vector<D> wrt = conv.parameters();
  wrt.push_back(x);
  const GradcheckResult result = gradcheck_params([&] { return conv.forward(x); }, wrt);
  CHECK_MESSAGE(result.ok, result.message);
  CHECK(result.checked > 0);
}

TEST_CASE("vision options: gradcheck max_pool2d with dilation and ceil_mode") {
  grad("max_pool2d dilation", [](const In& in) { return max_pool2d(in[0], 3, Size2(1), 0, 2); },
       {input({1, 2, 7, 7}, 1031)});
  grad("max_pool2d dilation", [](const In& in) { return max_pool2d(in[0], Size2(3, 2), Size2(2, 1), 1, Size2(2, 3)); },
       {input({2, 1, 8, 9}, 1032)});
  grad("max_pool2d ceil_mode", [](const In& in) { return max_pool2d(in[0], 2, std::nullopt, 0, 1, true); },
       {input({1, 2, 5, 7}, 1033)});
  grad("max_pool2d ceil_mode", [](const In& in) { return max_pool2d(in[0], 3, Size2(2), 1, 1, true); },
       {input({1, 2, 6, 6}, 1034)});
  grad("max_pool2d ceil_mode dilation", [](const In& in) { return max_pool2d(in[0], 2, Size2(3), 0, 2, true); },
       {input({1, 1, 7, 8}, 1035)});
}

TEST_CASE("vision options: gradcheck avg_pool2d with ceil_mode, count_include_pad and divisor_override") {
  grad("avg_pool2d ceil_mode", [](const In& in) { return avg_pool2d(in[0], 2, std::nullopt, 0, true); },
       {input({1, 2, 5, 7}, 1041)});
  grad("avg_pool2d ceil_mode", [](const In& in) { return avg_pool2d(in[0], 3, Size2(2), 1, true); },
       {input({1, 2, 6, 7}, 1042)});
  grad("avg_pool2d count_include_pad",
       [](const In& in) { return avg_pool2d(in[0], Size2(3, 2), Size2(2, 1), Size2(1, 1), false, false); },
       {input({2, 1, 5, 6}, 1043)});
  grad("avg_pool2d count_include_pad", [](const In& in) { return avg_pool2d(in[0], 3, Size2(2), 1, true, false); },
       {input({1, 2, 6, 7}, 1044)});
  grad("avg_pool2d divisor_override", [](const In& in) { return avg_pool2d(in[0], 3, Size2(2), 1, false, true, 4); },
       {input({1, 2, 5, 6}, 1045)});
  grad("avg_pool2d divisor_override",
       [](const In& in) { return avg_pool2d(in[0], 2, std::nullopt, 0, true, false, -3); },
       {input({1, 1, 5, 5}, 1046)});
}

// ---- float: both scalars are instantiated, and float follows double ---------------------
TEST_CASE("vision options: conv1d and the pool options in float agree with double") {
  const auto to_float = [](const D& d) { return Tensor<float>(Array<float>(xt::cast<float>(d.data()))); };
  const D x = input({2, 4, 9}, 1051), w = input({6, 2, 3}, 1052);
  const Tensor<float> xf = to_float(x), wf = to_float(w);
  const auto close = [](const Tensor<float>& f, const D& d) {
    REQUIRE(f.shape() == d.shape());
    for (std::size_t i = 0; i < d.numel(); ++i)
      CHECK(double(f.data().data()[i]) == doctest::Approx(d.data().data()[i]).epsilon(1e-5));
  };
  close(conv1d(xf, wf, std::nullopt, 2, 1, 2, 2), conv1d(x, w, OptD(), 2, 1, 2, 2));
  const D img = input({1, 2, 6, 7}, 1053);
  const Tensor<float> imgf = to_float(img);
  close(max_pool2d(imgf, 3, Size2(2), 1, 2, true), max_pool2d(img, 3, Size2(2), 1, 2, true));
  close(avg_pool2d(imgf, 3, Size2(2), 1, true, false, 5), avg_pool2d(img, 3, Size2(2), 1, true, false, 5));
}

// ---- bad input ----------------------------------------------------------------------------
TEST_CASE("vision options: conv1d and Conv1d refuse bad input naming the op and the shapes") {
  const D x = iota({1, 3, 5});
  check_throws_with([&] { conv1d(x, iota({4, 2, 3})); }, {"conv1d", "(1,3,5)", "(4,2,3)"});
  check_throws_with([&] { conv1d(iota({1, 3, 5, 5}), iota({4, 3, 3})); }, {"conv1d", "(1,3,5,5)"});
  check_throws_with([&] { conv1d(x, iota({4, 3, 3, 3})); }, {"conv1d", "(4,3,3,3)"});
  check_throws_with(
      [&] {
        conv1d(iota({1, 4, 5}), iota({6, 2, 3}), OptD(), 1, 0, 1, 3);
      },
      {"conv1d", "groups", "(1,4,5)", "(6,2,3)"});
  // The kernel is larger than the padded input: 7 > 5 + 2 x 0; dilated, 5 > 3 + 2 x 0.
  check_throws_with([&] { conv1d(x, iota({2, 3, 7})); }, {"conv1d", "(1,3,5)", "kernel 7", "padding 0"});
  check_throws_with(
      [&] {
        conv1d(iota({1, 3, 3}), iota({2, 3, 3}), OptD(), 1, 0, 2);
      },
      {"conv1d", "(1,3,3)", "dilation 2"});
  check_throws_with([&] { conv1d(x, iota({2, 3, 3}), OptD(), 1, 0, 0); }, {"conv1d", "dilation 0", "(2,3,3)"});
  check_throws_with([&] { conv1d(x, iota({2, 3, 3}), OptD(), 0); }, {"conv1d", "stride 0"});
  check_throws_with([&] { conv1d(x, iota({2, 3, 3}), OptD(iota({3}))); }, {"conv1d", "bias", "(3)", "(2,3,3)"});

  Generator gen(1061);
  Conv1d<double> conv(3, 4, 3, 1, 0, 1, 1, true, gen);
  check_throws_with([&] { conv.forward(iota({1, 2, 5})); }, {"Conv1d", "(1,2,5)"});
  check_throws_with([&] { conv.forward(iota({1, 3, 5, 5})); }, {"Conv1d", "(1,3,5,5)"});
  check_throws_with([&] { Conv1d<double>(4, 6, 3, 1, 0, 1, 4, true, gen); }, {"Conv1d", "groups"});
  check_throws_with([&] { Conv1d<double>(4, 6, 0, 1, 0, 1, 1, true, gen); }, {"Conv1d", "kernel_size"});
}

TEST_CASE("vision options: the pools refuse bad options naming the op and the shapes") {
  const D x = iota({1, 1, 5, 5});
  check_throws_with([&] { max_pool2d(x, 2, std::nullopt, 0, 0); }, {"max_pool2d", "dilation (0, 0)", "(1,1,5,5)"});
  check_throws_with([&] { max_pool2d(x, 2, std::nullopt, 0, Size2(1, 0)); }, {"max_pool2d", "dilation (1, 0)"});
  // With dilation 3 the kernel spans 3 x (3 - 1) + 1 = 7 rows, more than 5 + 2 x 0.
  check_throws_with([&] { max_pool2d(x, 3, std::nullopt, 0, 3); }, {"max_pool2d", "larger", "(1,1,5,5)"});
  // Without ceil_mode a kernel over the input throws; with it PyTorch keeps one window.
  check_throws_with([&] { max_pool2d(iota({1, 1, 2, 2}), 3, Size2(2)); }, {"max_pool2d", "(1,1,2,2)"});
  CHECK(max_pool2d(iota({1, 1, 2, 2}), 3, Size2(2), 0, 1, true).shape() == Shape{1, 1, 1, 1});
  check_throws_with([&] { avg_pool2d(iota({1, 1, 2, 2}), 3, Size2(2)); }, {"avg_pool2d", "(1,1,2,2)"});
  // Taps -1 and 3 of a 3-wide input: only padding (PyTorch returns -inf with a bad index).
  check_throws_with([&] { max_pool2d(iota({1, 1, 3, 3}), 2, Size2(1), 1, 4); }, {"max_pool2d", "padding", "(1,1,3,3)"});
  check_throws_with([&] { avg_pool2d(x, 2, std::nullopt, 0, false, true, 0); },
                    {"avg_pool2d", "divisor_override", "(1,1,5,5)"});
  check_throws_with([&] { avg_pool2d(x, 2, std::nullopt, 2, true); }, {"avg_pool2d", "padding", "kernel"});
  check_throws_with([&] { MaxPool2d<double>(2, std::nullopt, 0, 0).forward(x); }, {"max_pool2d", "dilation"});
}
