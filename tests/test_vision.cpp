// Convolution, pooling and batch norm, ops and layers: against PyTorch 1.13 (fixtures from
// tests/fixtures/make_vision_fixtures.py, float64: forward values and the gradients of
// sum(out * G)), gradchecks over the stride / padding / dilation / groups edge cases, shape
// errors, and Module buffers. Every fixture test prints its largest deviation (MESSAGE).
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fixtures.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

using OptD = std::optional<D>;

// ---- fixtures -------------------------------------------------------------------------
// null (PyTorch's None) is no tensor.
OptD fixture_optional(const json& t, bool requires_grad = false) {
  if (t.is_null()) return std::nullopt;
  return fixture_tensor(t, requires_grad);
}

Size2 fixture_size2(const json& v) { return Size2(v.at(0).get<std::size_t>(), v.at(1).get<std::size_t>()); }

// null: the op's default (the kernel), left unset on our side too.
std::optional<Size2> fixture_stride(const json& v) {
  if (v.is_null()) return std::nullopt;
  return fixture_size2(v);
}

// loss = sum(out * G), G from the fixture, as the fixtures' gradients are taken.
void backward_with(const D& out, const json& g) { sum(out * fixture_tensor(g)).backward(); }

// ---- conv2d ---------------------------------------------------------------------------
// The op, then a Conv2d layer loaded with PyTorch's weight and bias, both against PyTorch.
void check_conv(const std::string& name) {
  const json fixture = load_fixture("vision", "conv2d.json");
  const json& c = find_case(fixture, name);
  const Size2 stride = fixture_size2(c.at("stride")), padding = fixture_size2(c.at("padding")),
              dilation = fixture_size2(c.at("dilation"));
  const std::size_t groups = c.at("groups").get<std::size_t>();
  Deviation dev("conv2d " + name);

  D x = fixture_tensor(c.at("x"), true), w = fixture_tensor(c.at("weight"), true);
  OptD b = fixture_optional(c.at("bias"), true);
  const D out = conv2d(x, w, b, stride, padding, dilation, groups);
  dev.compare(out.data(), c.at("out"), "conv2d output");
  backward_with(out, c.at("G"));
  dev.compare_grad(x, c.at("grad_x"), "conv2d grad x");
  dev.compare_grad(w, c.at("grad_weight"), "conv2d grad weight");
  dev.compare_grad(b, c.at("grad_bias"), "conv2d grad bias");

  const Shape ws = w.shape();
  Generator gen(0);
  Conv2d<double> layer(x.shape()[1], ws[0], Size2(ws[2], ws[3]), stride, padding, dilation, groups, b.has_value(), gen);
  StateDict<double> state{{"weight", w.data()}};
  if (b) state.emplace("bias", b->data());
  layer.load_state_dict(state);
  D x2 = fixture_tensor(c.at("x"), true);
  const D out2 = layer.forward(x2);
  dev.compare(out2.data(), c.at("out"), "Conv2d output");
  backward_with(out2, c.at("G"));
  dev.compare_grad(x2, c.at("grad_x"), "Conv2d grad x");
  dev.compare_grad(layer.weight, c.at("grad_weight"), "Conv2d grad weight");
  dev.compare_grad(layer.bias, c.at("grad_bias"), "Conv2d grad bias");
  dev.report();
}

// ---- pools ----------------------------------------------------------------------------
D run_pool_op(const json& c, const D& x) {
  const std::string op = c.at("op");
  if (op == "adaptive_avg_pool2d") return adaptive_avg_pool2d(x, fixture_size2(c.at("output_size")));
  const Size2 kernel = fixture_size2(c.at("kernel")), padding = fixture_size2(c.at("padding"));
  const std::optional<Size2> stride = fixture_stride(c.at("stride"));
  if (op == "max_pool2d") return max_pool2d(x, kernel, stride, padding);
  if (op == "avg_pool2d") return avg_pool2d(x, kernel, stride, padding);
  throw std::runtime_error("unknown pool " + op);
}

std::shared_ptr<UnaryModule<double>> pool_layer(const json& c) {
  const std::string op = c.at("op");
  if (op == "adaptive_avg_pool2d")
    return std::make_shared<AdaptiveAvgPool2d<double>>(fixture_size2(c.at("output_size")));
  const Size2 kernel = fixture_size2(c.at("kernel")), padding = fixture_size2(c.at("padding"));
  const std::optional<Size2> stride = fixture_stride(c.at("stride"));
  if (op == "max_pool2d") return std::make_shared<MaxPool2d<double>>(kernel, stride, padding);
  if (op == "avg_pool2d") return std::make_shared<AvgPool2d<double>>(kernel, stride, padding);
  throw std::runtime_error("unknown pool " + op);
}

void check_pool(const std::string& name) {
  const json fixture = load_fixture("vision", "pool.json");
  const json& c = find_case(fixture, name);
  Deviation dev(name);
  D x = fixture_tensor(c.at("x"), true);
  const D out = run_pool_op(c, x);
  dev.compare(out.data(), c.at("out"), c.at("op").get<std::string>() + " output");
  backward_with(out, c.at("G"));
  dev.compare_grad(x, c.at("grad_x"), c.at("op").get<std::string>() + " grad x");

  const auto layer = pool_layer(c);
  D x2 = fixture_tensor(c.at("x"), true);
  const D out2 = layer->forward(x2);
  dev.compare(out2.data(), c.at("out"), layer->type_name() + " output");
  backward_with(out2, c.at("G"));
  dev.compare_grad(x2, c.at("grad_x"), layer->type_name() + " grad x");
  dev.report();
}

// ---- batch_norm -----------------------------------------------------------------------
// The functional op: each of the fixture's inputs in turn on the same running statistics
// (updated in place), then the last call's output and gradients.
void check_batch_norm_op(const json& c, Deviation& dev) {
  OptD running_mean = fixture_optional(c.at("running_mean")), running_var = fixture_optional(c.at("running_var"));
  OptD weight = fixture_optional(c.at("weight"), true), bias = fixture_optional(c.at("bias"), true);
  const bool training = c.at("training");
  const double momentum = c.at("momentum"), eps = c.at("eps");
  const json& xs = c.at("xs");
  D x, out;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    x = fixture_tensor(xs.at(k), true);
    out = batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps);
    const json& after = c.at("running_after").at(k);
    const std::string call = "batch_norm call " + std::to_string(k + 1);
    if (running_mean) dev.compare(running_mean->data(), after.at("mean"), call + " running_mean");
    if (running_var) dev.compare(running_var->data(), after.at("var"), call + " running_var");
    CHECK(bool(running_mean) == !after.at("mean").is_null());
  }
  dev.compare(out.data(), c.at("out"), "batch_norm output");
  backward_with(out, c.at("G"));
  dev.compare_grad(x, c.at("grad_x"), "batch_norm grad x");
  dev.compare_grad(weight, c.at("grad_weight"), "batch_norm grad weight");
  dev.compare_grad(bias, c.at("grad_bias"), "batch_norm grad bias");
}

// The same case through BatchNorm1d or BatchNorm2d, its state loaded from the fixture.
// PyTorch's layer without running statistics normalises by the batch in eval mode too, so
// such a case is run in both modes.
template <class Layer> void check_batch_norm_layer(const json& c, Deviation& dev, bool eval_too = false) {
  const json& xs = c.at("xs");
  const std::size_t channels = xs.at(0).at("shape").at(1).get<std::size_t>();
  const bool affine = !c.at("weight").is_null(), tracked = !c.at("running_mean").is_null();
  const bool training = c.at("training");
  for (const bool train_mode : eval_too ? std::vector<bool>{true, false} : std::vector<bool>{training}) {
    Layer layer(channels, c.at("eps").get<double>(), c.at("momentum").get<double>(), affine, tracked);
    StateDict<double> state;
    if (affine) {
      state.emplace("weight", fixture_array(c.at("weight")));
      state.emplace("bias", fixture_array(c.at("bias")));
    }
    if (tracked) {
      state.emplace("running_mean", fixture_array(c.at("running_mean")));
      state.emplace("running_var", fixture_array(c.at("running_var")));
      state.emplace("num_batches_tracked", scalar_array(0));
    }
    layer.load_state_dict(state);
    layer.train(train_mode);
    const std::string what = layer.type_name() + (train_mode ? " (train)" : " (eval)");
    D x, out;
    for (std::size_t k = 0; k < xs.size(); ++k) {
      x = fixture_tensor(xs.at(k), true);
      out = layer.forward(x);
      const json& after = c.at("running_after").at(k);
      const std::string call = what + " call " + std::to_string(k + 1);
      if (tracked) {
        dev.compare(layer.running_mean->data(), after.at("mean"), call + " running_mean");
        dev.compare(layer.running_var->data(), after.at("var"), call + " running_var");
      }
    }
    if (tracked) CHECK(layer.num_batches_tracked->data()() == (train_mode ? double(xs.size()) : 0.0));
    dev.compare(out.data(), c.at("out"), what + " output");
    backward_with(out, c.at("G"));
    dev.compare_grad(x, c.at("grad_x"), what + " grad x");
    dev.compare_grad(layer.weight, c.at("grad_weight"), what + " grad weight");
    dev.compare_grad(layer.bias, c.at("grad_bias"), what + " grad bias");
  }
}

template <class Layer> void check_batch_norm(const std::string& name, bool eval_too = false) {
  const json fixture = load_fixture("vision", "batch_norm.json");
  const json& c = find_case(fixture, name);
  Deviation dev("batch_norm " + name);
  check_batch_norm_op(c, dev);
  check_batch_norm_layer<Layer>(c, dev, eval_too);
  dev.report();
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, D>>& named) {
  std::vector<std::string> out;
  for (const auto& entry : named) out.push_back(entry.first);
  return out;
}

}  // namespace

// ---- against PyTorch: conv2d and Conv2d -----------------------------------------------
TEST_CASE("vision: conv2d plain 3x3 matches PyTorch") { check_conv("plain_3x3"); }
TEST_CASE("vision: conv2d stride 2 padding 1 matches PyTorch") { check_conv("stride2_padding1"); }
TEST_CASE("vision: conv2d dilation 2 matches PyTorch") { check_conv("dilation2"); }
TEST_CASE("vision: conv2d groups 2 (Cin 4, Cout 6) matches PyTorch") { check_conv("groups2"); }
TEST_CASE("vision: conv2d without bias matches PyTorch") { check_conv("no_bias"); }
TEST_CASE("vision: conv2d 2x3 kernel, stride (2,1), padding (1,0) matches PyTorch") {
  check_conv("rect_kernel_2x3_stride_2_1_padding_1_0");
}
TEST_CASE("vision: conv2d 1x1 kernel matches PyTorch") { check_conv("kernel_1x1"); }
TEST_CASE("vision: conv2d padding 2 on a 2x3 input matches PyTorch") { check_conv("padding2_small_input"); }

// ---- against PyTorch: pools and their layers ------------------------------------------
TEST_CASE("vision: max_pool2d kernel 2 matches PyTorch") { check_pool("max_kernel2"); }
TEST_CASE("vision: max_pool2d kernel 3 stride 2 padding 1 matches PyTorch") {
  check_pool("max_kernel3_stride2_padding1");
}
TEST_CASE("vision: max_pool2d kernel (2,3) stride (1,2) matches PyTorch") { check_pool("max_kernel_2x3_stride_1x2"); }
TEST_CASE("vision: avg_pool2d kernel 2 matches PyTorch") { check_pool("avg_kernel2"); }
TEST_CASE("vision: avg_pool2d kernel 3 stride 2 padding 1 (padding counted) matches PyTorch") {
  check_pool("avg_kernel3_stride2_padding1");
}
TEST_CASE("vision: adaptive_avg_pool2d 4x4 to 1x1 matches PyTorch") { check_pool("adaptive_4x4_to_1x1"); }
TEST_CASE("vision: adaptive_avg_pool2d 4x4 to 2x2 matches PyTorch") { check_pool("adaptive_4x4_to_2x2"); }
TEST_CASE("vision: adaptive_avg_pool2d 5x7 to 3x3 (overlapping windows) matches PyTorch") {
  check_pool("adaptive_5x7_to_3x3");
}
TEST_CASE("vision: adaptive_avg_pool2d 3x3 to 5x4 (more outputs than inputs) matches PyTorch") {
  check_pool("adaptive_3x3_to_5x4");
}

// ---- against PyTorch: batch_norm and BatchNorm1d / BatchNorm2d ------------------------
TEST_CASE("vision: batch_norm training, three calls moving the running statistics, matches PyTorch") {
  check_batch_norm<BatchNorm2d<double>>("train_nchw_three_calls");
}
TEST_CASE("vision: batch_norm eval by running statistics matches PyTorch") {
  check_batch_norm<BatchNorm2d<double>>("eval_nchw");
}
TEST_CASE("vision: batch_norm training on (N,C) matches PyTorch") { check_batch_norm<BatchNorm1d<double>>("train_nc"); }
TEST_CASE("vision: batch_norm training on (N,C,L) matches PyTorch") {
  check_batch_norm<BatchNorm1d<double>>("train_ncl");
}
TEST_CASE("vision: batch_norm without weight, bias or running statistics matches PyTorch") {
  check_batch_norm<BatchNorm2d<double>>("train_no_affine_no_running", /*eval_too=*/true);
}
TEST_CASE("vision: batch_norm eval without weight and bias matches PyTorch") {
  check_batch_norm<BatchNorm1d<double>>("eval_no_affine");
}

// ---- against PyTorch: a small CNN -----------------------------------------------------
TEST_CASE("vision: a small CNN loads PyTorch's state_dict and matches it in train and eval mode") {
  const json f = load_fixture("vision", "module.json");
  Generator gen(0);
  Sequential<double> model(
      {std::make_shared<Conv2d<double>>(3, 4, 3, 1, 1, 1, 1, true, gen), std::make_shared<BatchNorm2d<double>>(4),
       std::make_shared<ReLU<double>>(), std::make_shared<MaxPool2d<double>>(2),
       std::make_shared<Conv2d<double>>(4, 6, 3, 2, 1, 1, 2, true, gen), std::make_shared<AdaptiveAvgPool2d<double>>(1),
       std::make_shared<Flatten<double>>(), std::make_shared<Linear<double>>(6, 3, true, gen)});

  // The names are PyTorch's, in its order, and the state dict has exactly its keys.
  CHECK(names_of(model.named_parameters()) == f.at("parameter_names").get<std::vector<std::string>>());
  CHECK(names_of(model.named_buffers()) == f.at("buffer_names").get<std::vector<std::string>>());
  const json& torch_state = f.at("state_dict");
  StateDict<double> state;
  for (auto it = torch_state.begin(); it != torch_state.end(); ++it) state.emplace(it.key(), fixture_array(it.value()));
  std::vector<std::string> ours, theirs;
  for (const auto& entry : model.state_dict()) ours.push_back(entry.first);
  for (const auto& entry : state) theirs.push_back(entry.first);
  CHECK(ours == theirs);  // both sorted (std::map)

  model.load_state_dict(state);
  // (entry.first, not a structured binding: CHECK_MESSAGE's lambda cannot capture one in C++17)
  for (const auto& entry : model.state_dict())
    CHECK_MESSAGE(entry.second == state.at(entry.first), entry.first << " did not load");

  Deviation dev("small CNN");
  model.train();
  D x = fixture_tensor(f.at("x"), true);
  const D out = model.forward(x);
  dev.compare(out.data(), f.at("out"), "train output");
  backward_with(out, f.at("G"));
  dev.compare_grad(x, f.at("grad_x"), "grad x");
  for (const auto& [name, p] : model.named_parameters()) dev.compare_grad(p, f.at("grads").at(name), "grad " + name);
  for (const auto& [name, b] : model.named_buffers())
    dev.compare(b.data(), f.at("buffers_after").at(name), name + " after the training forward");

  // Eval: by the running statistics just updated; they stay as they are.
  model.eval();
  const D out_eval = model.forward(fixture_tensor(f.at("x_eval")));
  dev.compare(out_eval.data(), f.at("out_eval"), "eval output");
  for (const auto& [name, b] : model.named_buffers())
    dev.compare(b.data(), f.at("buffers_after").at(name), name + " after the eval forward");
  dev.report();
}

// ---- gradchecks (double, full Jacobian) -----------------------------------------------
TEST_CASE("vision: gradcheck conv2d over stride, padding, dilation, groups and bias") {
  grad("conv2d", [](const In& in) { return conv2d(in[0], in[1], OptD(in[2])); },
       {input({2, 3, 5, 5}, 901), input({4, 3, 3, 3}, 902), input({4}, 903)});
  // Every option at once, each different along H and W: output (1,6,2,4).
  grad("conv2d",
       [](const In& in) { return conv2d(in[0], in[1], OptD(in[2]), Size2(2, 3), Size2(1, 2), Size2(2, 1), 2); },
       {input({1, 4, 6, 7}, 904), input({6, 2, 3, 2}, 905), input({6}, 906)});
  // Depthwise (groups = channels), no bias, padding 2 = kernel - 1: corner windows see one pixel.
  grad("conv2d", [](const In& in) { return conv2d(in[0], in[1], OptD(), 2, 2, 1, 3); },
       {input({1, 3, 4, 4}, 907), input({3, 1, 3, 3}, 908)});
  // The kernel exactly covers the padded input: a 1x1 output.
  grad("conv2d", [](const In& in) { return conv2d(in[0], in[1], OptD(in[2]), 1, 1); },
       {input({1, 2, 3, 3}, 909), input({2, 2, 5, 5}, 910), input({2}, 911)});
  // Stride larger than the kernel: rows and columns no window sees get a zero gradient.
  grad("conv2d", [](const In& in) { return conv2d(in[0], in[1], OptD(in[2]), 3); },
       {input({1, 1, 7, 7}, 912), input({2, 1, 2, 2}, 913), input({2}, 914)});
  // Dilation 3 with padding 2: taps land in the padding on both sides.
  grad("conv2d", [](const In& in) { return conv2d(in[0], in[1], OptD(), 1, 2, 3); },
       {input({2, 2, 6, 6}, 915), input({2, 2, 3, 3}, 916)});
  // The input needs no gradient (a first layer's): only weight and bias get one.
  grad("conv2d", [](const In& in) { return conv2d(in[0], in[1], OptD(in[2]), 1, 1); },
       {input({2, 2, 4, 4}, 917).set_requires_grad(false), input({3, 2, 3, 3}, 918), input({3}, 919)});
}

TEST_CASE("vision: gradcheck max_pool2d, avg_pool2d and adaptive_avg_pool2d") {
  // Random normal inputs: no two values of a window within the finite difference's step.
  grad("max_pool2d", [](const In& in) { return max_pool2d(in[0], 2); }, {input({2, 2, 5, 5}, 921)});
  grad("max_pool2d", [](const In& in) { return max_pool2d(in[0], Size2(3, 2), Size2(2, 1), Size2(1, 1)); },
       {input({1, 3, 6, 7}, 922)});
  // Overlapping windows (stride 1): one input can be the maximum of several.
  grad("max_pool2d", [](const In& in) { return max_pool2d(in[0], 3, Size2(1), 1); }, {input({1, 2, 4, 5}, 923)});

  grad("avg_pool2d", [](const In& in) { return avg_pool2d(in[0], 3, Size2(2), 1); }, {input({2, 2, 5, 6}, 924)});
  grad("avg_pool2d", [](const In& in) { return avg_pool2d(in[0], Size2(2, 3), Size2(1, 2), Size2(1, 0)); },
       {input({1, 2, 4, 7}, 925)});
  grad("avg_pool2d", [](const In& in) { return avg_pool2d(in[0], 2); }, {input({1, 1, 5, 5}, 926)});

  grad("adaptive_avg_pool2d", [](const In& in) { return adaptive_avg_pool2d(in[0], Size2(3, 3)); },
       {input({1, 2, 5, 7}, 927)});
  grad("adaptive_avg_pool2d", [](const In& in) { return adaptive_avg_pool2d(in[0], 1); }, {input({2, 3, 4, 4}, 928)});
  // Rows upsampled (5 from 3), columns downsampled (2 from 6).
  grad("adaptive_avg_pool2d", [](const In& in) { return adaptive_avg_pool2d(in[0], Size2(5, 2)); },
       {input({1, 1, 3, 6}, 929)});
}

TEST_CASE("vision: gradcheck batch_norm in training and eval mode") {
  // Training: the output depends on x, weight and bias only. The running statistics move
  // on every evaluation but are never read, so they do not disturb the finite differences.
  const D running_mean = zeros<double>({3}), running_var = ones<double>({3});
  grad("batch_norm train",
       [running_mean, running_var](const In& in) {
         return batch_norm(in[0], OptD(running_mean), OptD(running_var), OptD(in[1]), OptD(in[2]), true);
       },
       {input({2, 3, 2, 2}, 931), input({3}, 932), input({3}, 933)});
  // (N,C) without weight, bias or running statistics.
  grad("batch_norm train", [](const In& in) { return batch_norm(in[0], OptD(), OptD(), OptD(), OptD(), true); },
       {input({4, 3}, 934)});
  // (N,C,L) with one sample: the statistics come from L alone; another eps.
  grad("batch_norm train",
       [](const In& in) { return batch_norm(in[0], OptD(), OptD(), OptD(in[1]), OptD(in[2]), true, 0.1, 0.1); },
       {input({1, 2, 4}, 935), input({2}, 936), input({2}, 937)});

  // Eval: an affine map per channel by the given statistics.
  const D mean = make({3}, {0.1, -0.2, 0.3}), var = make({3}, {0.5, 1.2, 2.0});
  grad("batch_norm eval",
       [mean, var](const In& in) {
         return batch_norm(in[0], OptD(mean), OptD(var), OptD(in[1]), OptD(in[2]), false, 0.1, 1e-3);
       },
       {input({2, 3, 4}, 938), input({3}, 939), input({3}, 940)});
  grad("batch_norm eval", [mean, var](const In& in) { return batch_norm(in[0], OptD(mean), OptD(var)); },
       {input({2, 3, 2, 2}, 941)});
  CHECK(mean.data() == Array<double>{0.1, -0.2, 0.3});  // eval never moves the statistics
}

TEST_CASE("vision: gradcheck of Conv2d, BatchNorm2d, AvgPool2d and Flatten layers through their parameters") {
  Generator gen(950);
  Sequential<double> net({std::make_shared<Conv2d<double>>(2, 4, Size2(3, 2), 2, 1, 1, 2, true, gen),
                          std::make_shared<BatchNorm2d<double>>(4), std::make_shared<AvgPool2d<double>>(2),
                          std::make_shared<Flatten<double>>()});
  // BatchNorm's weight and bias start at 1 and 0: move them so that they are tested as
  // general values.
  for (auto& [name, p] : net.named_parameters())
    if (name.rfind("1.", 0) == 0) p.mutable_data() = randn<double>(p.shape(), gen).data();
  const D x = input({2, 2, 8, 7}, 951);  // -> (2,4,4,4) -> (2,4,2,2) -> (2,16)
  std::vector<D> wrt = net.parameters();
  wrt.push_back(x);
  const GradcheckResult result = gradcheck_params([&] { return net.forward(x); }, wrt);
  CHECK_MESSAGE(result.ok, result.message);
  CHECK(result.checked > 0);
  MESSAGE("conv net gradcheck max abs error " << result.max_abs_error);
}

// ---- bad input ------------------------------------------------------------------------
TEST_CASE("vision: bad shapes throw invalid_argument naming the op and the shapes") {
  const D x = iota({1, 3, 5, 5});
  // The weight expects 2 input channels (groups 1), the input has 3.
  check_throws_with([&] { conv2d(x, iota({4, 2, 3, 3})); }, {"conv2d", "(1,3,5,5)", "(4,2,3,3)"});
  // groups must divide the input channels (4 by 3) and the output channels (6 by 4).
  check_throws_with(
      [&] {
        conv2d(iota({1, 4, 5, 5}), iota({6, 2, 3, 3}), OptD(), 1, 0, 1, 3);
      },
      {"conv2d", "groups", "(1,4,5,5)", "(6,2,3,3)"});
  check_throws_with(
      [&] {
        conv2d(iota({1, 4, 5, 5}), iota({6, 1, 3, 3}), OptD(), 1, 0, 1, 4);
      },
      {"conv2d", "groups", "(1,4,5,5)", "(6,1,3,3)"});
  check_throws_with([&] { conv2d(x, iota({3, 3, 3, 3}), OptD(), 1, 0, 1, 0); }, {"conv2d", "groups"});
  // The kernel is larger than the padded input: 5 > 2 + 2 x 1; dilated, 7 > 5.
  check_throws_with(
      [&] {
        conv2d(iota({1, 1, 2, 2}), iota({1, 1, 5, 5}), OptD(), 1, 1);
      },
      {"conv2d", "(1,1,2,2)", "kernel"});
  check_throws_with([&] { conv2d(x, iota({1, 3, 3, 3}), OptD(), 1, 0, 3); }, {"conv2d", "(1,3,5,5)", "dilation"});
  // Not an image batch; a bias of the wrong size.
  check_throws_with([&] { conv2d(iota({3, 5, 5}), iota({4, 3, 3, 3})); }, {"conv2d", "(3,5,5)"});
  check_throws_with([&] { conv2d(x, iota({4, 3, 3, 3}), OptD(iota({3}))); }, {"conv2d", "(3)"});

  // Padding more than half the kernel (PyTorch refuses it too), along W only in the second.
  check_throws_with([&] { max_pool2d(x, 2, std::nullopt, 2); }, {"max_pool2d", "padding", "kernel"});
  check_throws_with([&] { max_pool2d(x, Size2(3, 2), std::nullopt, Size2(1, 2)); }, {"max_pool2d", "padding"});
  check_throws_with([&] { avg_pool2d(x, 2, std::nullopt, 2); }, {"avg_pool2d", "padding"});
  check_throws_with([&] { max_pool2d(iota({1, 1, 2, 2}), 3); }, {"max_pool2d", "(1,1,2,2)"});
  check_throws_with([&] { avg_pool2d(iota({3, 5, 5}), 2); }, {"avg_pool2d", "(3,5,5)"});
  check_throws_with([&] { adaptive_avg_pool2d(iota({5, 5}), 2); }, {"adaptive_avg_pool2d", "(5,5)"});

  // A running mean for 2 channels, an input of 3; nothing is updated.
  const D y = iota({4, 3});
  D running_mean = zeros<double>({3}), running_var = ones<double>({3});
  check_throws_with([&] { batch_norm(y, OptD(zeros<double>({2})), OptD(running_var), OptD(), OptD(), true); },
                    {"batch_norm", "running_mean", "(2)", "(4,3)"});
  check_throws_with(
      [&] { batch_norm(y, OptD(running_mean), OptD(running_var), OptD(ones<double>({4})), OptD(), true); },
      {"batch_norm", "weight", "(4)", "(4,3)"});
  CHECK(running_var.data() == Array<double>{1.0, 1.0, 1.0});
  check_throws_with([&] { batch_norm(iota({3}), OptD(running_mean), OptD(running_var)); }, {"batch_norm", "(3)"});
  // As PyTorch: eval mode needs running statistics; training needs two values per channel.
  check_throws_with([&] { batch_norm(y, OptD(), OptD()); }, {"batch_norm", "running"});
  check_throws_with([&] { batch_norm(iota({1, 3}), OptD(), OptD(), OptD(), OptD(), true); }, {"batch_norm", "(1,3)"});
}

TEST_CASE("vision: layers refuse inputs of the wrong rank or channel count") {
  Generator gen(960);
  Conv2d<double> conv(3, 4, 3, 1, 0, 1, 1, true, gen);
  check_throws_with([&] { conv.forward(iota({1, 2, 5, 5})); }, {"(1,2,5,5)"});
  check_throws_with([&] { Conv2d<double>(4, 6, 3, 1, 0, 1, 4, true, gen); }, {"Conv2d", "groups"});  // 4 into 6
  BatchNorm2d<double> bn2(3);
  check_throws_with([&] { bn2.forward(iota({4, 3})); }, {"BatchNorm2d", "(4,3)"});
  check_throws_with([&] { bn2.forward(iota({2, 4, 2, 2})); }, {"BatchNorm2d", "(2,4,2,2)"});
  BatchNorm1d<double> bn1(3);
  check_throws_with([&] { bn1.forward(iota({2, 3, 2, 2})); }, {"BatchNorm1d", "(2,3,2,2)"});
  check_throws_with([&] { Flatten<double>(2, 5).forward(iota({2, 3})); }, {"Flatten", "(2,3)"});
}

// ---- Module buffers -------------------------------------------------------------------
TEST_CASE("vision: register_buffer tensors are in state_dict but not in parameters") {
  Module<double> m("Custom");
  const D w = m.register_parameter("w", zeros<double>({2}));
  D stat = m.register_buffer("stat", full<double>({3}, 1.5));
  CHECK(w.requires_grad());
  CHECK_FALSE(stat.requires_grad());
  CHECK(m.parameters().size() == 1);
  CHECK(names_of(m.named_parameters()) == std::vector<std::string>{"w"});
  CHECK(names_of(m.named_buffers()) == std::vector<std::string>{"stat"});
  CHECK(m.parameter_count() == 2);  // buffers are not parameters

  StateDict<double> state = m.state_dict();
  CHECK(state.size() == 2);
  REQUIRE(state.count("stat") == 1);
  CHECK(state.at("stat") == stat.data());
  // The handle is the module's own tensor: a change through it is in the next state dict.
  stat.mutable_data()(0) = 7.0;
  CHECK(m.state_dict().at("stat")(0) == 7.0);
  // load_state_dict fills buffers, and a strict load wants them.
  state["stat"] = Array<double>{4.0, 5.0, 6.0};
  m.load_state_dict(state);
  CHECK(stat.data() == Array<double>{4.0, 5.0, 6.0});
  check_throws_with([&] { m.load_state_dict(StateDict<double>{{"w", Array<double>{1.0, 2.0}}}); }, {"missing 'stat'"});
  CHECK(stat.data() == Array<double>{4.0, 5.0, 6.0});
  // One namespace for parameters, buffers and submodules.
  CHECK_THROWS_AS(m.register_buffer("w", zeros<double>({1})), std::invalid_argument);
  CHECK_THROWS_AS(m.register_parameter("stat", zeros<double>({1})), std::invalid_argument);
  CHECK_THROWS_AS(m.register_buffer("a.b", zeros<double>({1})), std::invalid_argument);

  // Nested: dotted names, as PyTorch's; the optimizer's list (parameters()) has no buffers.
  Generator gen(970);
  Sequential<double> seq({std::make_shared<Linear<double>>(2, 2, true, gen), std::make_shared<BatchNorm1d<double>>(2)});
  CHECK(names_of(seq.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"});
  CHECK(names_of(seq.named_buffers()) ==
        std::vector<std::string>{"1.running_mean", "1.running_var", "1.num_batches_tracked"});
  CHECK(seq.parameters().size() == 4);
  CHECK(seq.state_dict().size() == 7);
  for (const auto& entry : seq.named_buffers()) CHECK_MESSAGE(!entry.second.requires_grad(), entry.first);
  CHECK(seq.state_dict().at("1.num_batches_tracked").dimension() == 0);
}
