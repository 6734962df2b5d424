// Optimizers, gradient clipping and learning-rate schedules: against PyTorch 1.13
// (fixtures from tests/fixtures/make_optim_fixtures.py, float64), plus validation, state
// dicts, schedulers driving an optimizer, and a tiny model trained to convergence.
// Every fixture test prints its largest deviation from PyTorch (MESSAGE).
#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fixtures.hpp"
#include "xtgrad/optim.hpp"

using namespace xtgrad;
using xtgrad::testing::check_throws_with;
using xtgrad::testing::find_case;
using xtgrad::testing::json;
using xtgrad::testing::load_fixture;

namespace {

using D = Tensor<double>;

constexpr double kRelTol = 1e-6;   // the contract with PyTorch
constexpr double kAbsTol = 1e-12;  // for reference values that are (nearly) zero
constexpr double kPi = 3.14159265358979323846;

// ---- fixtures -------------------------------------------------------------------------
// Parameters are nested lists here, not {"shape", "data"}: flattened in row-major order.
void flatten(const json& v, std::vector<double>& flat, Shape& shape, std::size_t depth) {
  if (!v.is_array()) {
    flat.push_back(v.get<double>());
    return;
  }
  if (shape.size() == depth) shape.push_back(v.size());
  for (const auto& e : v) flatten(e, flat, shape, depth + 1);
}

// The fixture's initial parameters (nested lists) as leaves that require a gradient.
template <class T> std::vector<Tensor<T>> initial_params(const json& fixture) {
  std::vector<Tensor<T>> out;
  for (const auto& v : fixture.at("initial")) {
    std::vector<double> flat;
    Shape shape;
    flatten(v, flat, shape, 0);
    Array<T> a = Array<T>::from_shape(shape);
    std::copy(flat.begin(), flat.end(), a.begin());
    out.emplace_back(std::move(a), true);
  }
  return out;
}

// The fixtures' gradient rule at 0-based step k: sin(p * (k + 1)) + 0.1 * p.
template <class T> Array<T> rule_grad(const Tensor<T>& p, std::size_t k) {
  Array<T> g = Array<T>::from_shape(p.shape());
  const T* w = p.data().data();
  for (std::size_t j = 0; j < g.size(); ++j)
    g.data()[j] = std::sin(w[j] * static_cast<T>(k + 1)) + static_cast<T>(0.1) * w[j];
  return g;
}

// Gradients are set directly on the shared node, as backward() would leave them.
template <class T> void set_grad(Tensor<T>& p, Array<T> g) { p.set_grad(std::move(g)); }
template <class T> void drop_grad(Tensor<T>& p) {  // PyTorch's p.grad = None
  p.reset_grad();
}

// Largest deviation between our values and PyTorch's; checks each against the tolerance.
// Not fixtures.hpp's Deviation: optimizers are held per value to a relative tolerance plus
// an absolute one (float runs too), and both largest deviations are reported.
struct OptimDeviation {
  double rel = 0, abs = 0;
  std::size_t count = 0;
  double rel_tol = kRelTol;
  double abs_tol = kAbsTol;
  void add(double actual, double expected, const std::string& where) {
    const double err = std::abs(actual - expected);
    abs = std::max(abs, err);
    // Relative error only where it means something (not for values that cancel to ~0).
    if (std::abs(expected) >= 1e-6) rel = std::max(rel, err / std::abs(expected));
    ++count;
    CHECK_MESSAGE(err <= rel_tol * std::abs(expected) + abs_tol, where << ": " << actual << " vs PyTorch " << expected);
  }
  void report(const std::string& name) const {
    MESSAGE(name << ": largest deviation from PyTorch over " << count << " values: relative (|ref| >= 1e-6) " << rel
                 << ", absolute " << abs);
    CHECK(count > 0);
  }
};

std::shared_ptr<const LRSchedule> make_schedule(const json& s) {
  const std::string type = s.at("type");
  if (type == "step")
    return std::make_shared<StepLR>(s.at("step_size").get<std::size_t>(), s.at("gamma").get<double>());
  if (type == "cosine")
    return std::make_shared<CosineAnnealingLR>(s.at("t_max").get<std::size_t>(), s.at("eta_min").get<double>());
  if (type == "warmup")
    return std::make_shared<LinearWarmup>(s.at("warmup_steps").get<std::size_t>(), s.at("start_factor").get<double>(),
                                          s.at("after").is_null() ? nullptr : make_schedule(s.at("after")));
  if (type == "sequential") {
    std::vector<std::shared_ptr<const LRSchedule>> parts;
    for (const json& part : s.at("schedules")) parts.push_back(make_schedule(part));
    return std::make_shared<SequentialLR>(parts, s.at("milestones").get<std::vector<std::size_t>>());
  }
  throw std::runtime_error("unknown schedule type " + type);
}

template <class T>
std::unique_ptr<Optimizer<T>> make_optimizer(const json& spec, const std::vector<Tensor<T>>& params) {
  const json& o = spec.at("options");
  const std::string type = spec.at("type");
  if (type == "sgd")
    return std::make_unique<SGD<T>>(params, SGDOptions()
                                                .set_lr(o.at("lr"))
                                                .set_momentum(o.at("momentum"))
                                                .set_dampening(o.at("dampening"))
                                                .set_nesterov(o.at("nesterov"))
                                                .set_weight_decay(o.at("weight_decay")));
  if (type == "adam")
    return std::make_unique<Adam<T>>(params, AdamOptions()
                                                 .set_lr(o.at("lr"))
                                                 .set_betas(o.at("beta1"), o.at("beta2"))
                                                 .set_eps(o.at("eps"))
                                                 .set_weight_decay(o.at("weight_decay"))
                                                 .set_amsgrad(o.at("amsgrad")));
  if (type == "adamw")
    return std::make_unique<AdamW<T>>(params, AdamWOptions()
                                                  .set_lr(o.at("lr"))
                                                  .set_betas(o.at("beta1"), o.at("beta2"))
                                                  .set_eps(o.at("eps"))
                                                  .set_weight_decay(o.at("weight_decay"))
                                                  .set_amsgrad(o.at("amsgrad")));
  throw std::runtime_error("unknown optimizer type " + type);
}

// Runs one configuration of optimizers.json in T and compares every parameter after every
// step (and the lr, when a schedule drives it) with PyTorch's float64 values.
template <class T = double>
void check_optimizer_fixture(const std::string& name, double rel_tol = kRelTol, double abs_tol = kAbsTol) {
  const json fixture = load_fixture("optim", "optimizers.json");
  const json& spec = find_case(fixture, name, "configs");
  std::vector<Tensor<T>> params = initial_params<T>(fixture);
  std::unique_ptr<Optimizer<T>> opt = make_optimizer<T>(spec, params);
  std::unique_ptr<LRScheduler<T>> sched;
  if (spec.contains("schedule")) sched = std::make_unique<LRScheduler<T>>(*opt, make_schedule(spec.at("schedule")));
  std::set<std::pair<std::size_t, std::size_t>> no_grad;  // (param, step)
  for (const auto& e : spec.value("no_grad", json::array()))
    no_grad.insert({e.at(0).get<std::size_t>(), e.at(1).get<std::size_t>()});

  const std::size_t steps = fixture.at("steps");
  const json& after = spec.at("params_after");
  REQUIRE(after.size() == steps);
  OptimDeviation dev;
  dev.rel_tol = rel_tol;
  dev.abs_tol = abs_tol;
  for (std::size_t k = 0; k < steps; ++k) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (no_grad.count({i, k}))
        drop_grad(params[i]);
      else
        set_grad(params[i], rule_grad(params[i], k));
    }
    opt->step();
    if (sched) sched->step();
    for (std::size_t i = 0; i < params.size(); ++i) {
      const json& expected = after.at(k).at(i);
      REQUIRE(expected.size() == params[i].numel());
      for (std::size_t j = 0; j < expected.size(); ++j)
        dev.add(static_cast<double>(params[i].data().data()[j]), expected.at(j).get<double>(),
                "step " + std::to_string(k) + " param " + std::to_string(i) + " element " + std::to_string(j));
    }
    if (sched) dev.add(opt->lr(), spec.at("lr_after").at(k).get<double>(), "lr after step " + std::to_string(k));
  }
  CHECK(opt->steps() == steps);
  dev.report(std::string(sizeof(T) == 4 ? "float " : "") + name);
}

void check_clip_fixture(const std::string& name) {
  const json fixture = load_fixture("optim", "clip_grad_norm.json");
  const json& spec = find_case(fixture, name, "configs");
  std::vector<D> params = initial_params<double>(fixture);
  std::set<std::size_t> no_grad;
  for (const auto& e : spec.value("no_grad", json::array())) no_grad.insert(e.get<std::size_t>());
  std::vector<Array<double>> before;
  for (std::size_t i = 0; i < params.size(); ++i) {
    before.push_back(rule_grad(params[i], 0));
    if (!no_grad.count(i)) set_grad(params[i], before.back());
  }
  const double norm_type = spec.at("norm_type").is_string() ? inf_norm : spec.at("norm_type").get<double>();
  const double max_norm = spec.at("max_norm");

  OptimDeviation dev;
  const double total = clip_grad_norm(params, max_norm, norm_type);
  dev.add(total, spec.at("total_norm").get<double>(), "total norm");
  for (std::size_t i = 0; i < params.size(); ++i) {
    const json& expected = spec.at("grads_after").at(i);
    if (expected.is_null()) {
      CHECK_FALSE(params[i].has_grad());  // a missing gradient stays missing
      continue;
    }
    REQUIRE(params[i].has_grad());
    REQUIRE(expected.size() == params[i].numel());
    for (std::size_t j = 0; j < expected.size(); ++j)
      dev.add(params[i].grad().data()[j], expected.at(j).get<double>(),
              "grad " + std::to_string(i) + " element " + std::to_string(j));
    // Below the threshold the gradients are left exactly as they were.
    if (max_norm / (total + 1e-6) >= 1.0)
      CHECK(params[i].grad() == before[i]);
    else
      CHECK_FALSE(params[i].grad() == before[i]);
  }
  dev.report("clip_grad_norm " + name);
}

void check_schedule_fixture(const std::string& name) {
  const json fixture = load_fixture("optim", "lr_schedules.json");
  const json& spec = find_case(fixture, name, "configs");
  const auto schedule = make_schedule(spec.at("schedule"));
  const double base_lr = spec.at("base_lr");
  const json& expected = spec.at("lr");
  REQUIRE(expected.size() == spec.at("steps").get<std::size_t>() + 1);

  OptimDeviation dev;
  for (std::size_t s = 0; s < expected.size(); ++s)
    dev.add(schedule->lr(s, base_lr), expected.at(s).get<double>(), "lr at step " + std::to_string(s));
  dev.report("schedule " + name);

  // The same numbers through an LRScheduler driving an optimizer.
  D p = zeros<double>({1}, true);
  SGD<double> opt({p}, SGDOptions().set_lr(base_lr));
  LRScheduler<double> sched(opt, schedule);
  CHECK(opt.lr() == schedule->lr(0, base_lr));
  for (std::size_t s = 1; s < expected.size(); ++s) {
    sched.step();
    CHECK(sched.steps() == s);
    CHECK(opt.lr() == schedule->lr(s, base_lr));
    CHECK(sched.lr() == opt.lr());
  }
}

template <class T> bool same_state(const StateDict<T>& a, const StateDict<T>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [key, value] : a) {
    auto it = b.find(key);
    if (it == b.end() || !(it->second == value)) return false;
  }
  return true;
}

template <class T> std::vector<Tensor<T>> clone_params(const std::vector<Tensor<T>>& params) {
  std::vector<Tensor<T>> out;
  for (const auto& p : params) out.emplace_back(Array<T>(p.data()), true);
  return out;
}

// Steps k in [from, to) with the rule gradient; parameter 2 has none at step 1.
template <class T>
void run_rule_steps(Optimizer<T>& opt, std::vector<Tensor<T>>& params, std::size_t from, std::size_t to) {
  for (std::size_t k = from; k < to; ++k) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (i == 2 && k == 1)
        drop_grad(params[i]);
      else
        set_grad(params[i], rule_grad(params[i], k));
    }
    opt.step();
  }
}

// 3 steps, save, a new optimizer (other lr) on copies of the parameters loads the state,
// 2 more steps on both: identical bits. Without the load the copy diverges.
template <class Opt, class T, class Options> void check_resume(Options options) {
  const json fixture = load_fixture("optim", "optimizers.json");
  std::vector<Tensor<T>> a = initial_params<T>(fixture);
  Opt first(a, options);
  run_rule_steps<T>(first, a, 0, 2);
  first.set_lr(first.lr() * 0.37);  // an lr that float cannot represent
  run_rule_steps<T>(first, a, 2, 3);
  const StateDict<T> saved = first.state_dict();
  CHECK(decode_state_scalar(saved.at("2.step")) == 2.0);  // skipped once
  CHECK(decode_state_scalar(saved.at("0.step")) == 3.0);

  std::vector<Tensor<T>> b = clone_params(a);
  std::vector<Tensor<T>> c = clone_params(a);
  Options other = options;
  other.set_lr(0.5);
  Opt resumed(b, other);
  Opt fresh(c, options);
  resumed.load_state_dict(saved);
  CHECK(resumed.lr() == first.lr());
  CHECK(resumed.steps() == 3);
  CHECK(same_state(resumed.state_dict(), saved));

  run_rule_steps<T>(first, a, 3, 5);
  run_rule_steps<T>(resumed, b, 3, 5);
  run_rule_steps<T>(fresh, c, 3, 5);
  bool any_differs_from_fresh = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK_MESSAGE(a[i].data() == b[i].data(), "parameter " << i << " differs after resuming");
    any_differs_from_fresh |= !(a[i].data() == c[i].data());
  }
  CHECK(same_state(first.state_dict(), resumed.state_dict()));
  CHECK(any_differs_from_fresh);  // the state did matter
}

// Linear regression y = x w + b with Adam; returns the final loss.
float train_regression(std::size_t steps) {
  Generator gen(0);
  Tensor<float> x = randn<float>({64, 3}, gen);                          // x (64,3)
  Tensor<float> y = matmul(x, Tensor<float>({2.f, -1.f, 0.5f})) + 0.5f;  // y (64)
  Tensor<float> w = zeros<float>({3}, true);                             // w (3)
  Tensor<float> b = zeros<float>({1}, true);                             // b (1)
  Adam<float> opt({w, b}, AdamOptions().set_lr(0.1));
  LRScheduler<float> sched(opt, std::make_shared<CosineAnnealingLR>(steps));
  float last = 0;
  for (std::size_t step = 0; step < steps; ++step) {
    Tensor<float> loss = mse_loss(matmul(x, w) + b, y);  // (64,3) x (3) -> (64)
    opt.zero_grad();
    loss.backward();
    opt.step();
    sched.step();
    last = loss.item();
  }
  CHECK(w.data()(0) == doctest::Approx(2.0).epsilon(1e-3));
  CHECK(w.data()(1) == doctest::Approx(-1.0).epsilon(1e-3));
  CHECK(w.data()(2) == doctest::Approx(0.5).epsilon(1e-3));
  CHECK(b.data()(0) == doctest::Approx(0.5).epsilon(1e-3));
  return last;
}

}  // namespace

// ---- against PyTorch: optimizers ------------------------------------------------------

TEST_CASE("optim: SGD plain matches PyTorch") { check_optimizer_fixture("sgd_plain"); }
TEST_CASE("optim: SGD momentum with dampening matches PyTorch") { check_optimizer_fixture("sgd_momentum_dampening"); }
TEST_CASE("optim: SGD nesterov with weight decay matches PyTorch") {
  check_optimizer_fixture("sgd_nesterov_weight_decay");
}
TEST_CASE("optim: SGD momentum starts each buffer at its parameter's first gradient (PyTorch)") {
  check_optimizer_fixture("sgd_momentum_missing_grad");
}
TEST_CASE("optim: Adam matches PyTorch") { check_optimizer_fixture("adam"); }
TEST_CASE("optim: Adam with weight decay matches PyTorch") { check_optimizer_fixture("adam_weight_decay"); }
TEST_CASE("optim: Adam amsgrad matches PyTorch") { check_optimizer_fixture("adam_amsgrad"); }
TEST_CASE("optim: Adam skips parameters without a gradient, as PyTorch") {
  check_optimizer_fixture("adam_skip_missing_grad");
}
TEST_CASE("optim: AdamW matches PyTorch") { check_optimizer_fixture("adamw"); }
TEST_CASE("optim: AdamW driven by a LinearWarmup scheduler matches PyTorch LinearLR") {
  check_optimizer_fixture("adamw_linear_warmup");
}
TEST_CASE("optim: float SGD and Adam track the float64 PyTorch reference to float precision") {
  // float rounding (6e-8 relative per operation) over 5 steps, on parameters of size ~1:
  // 1e-5 relative plus 1e-6 absolute (elements that cancel to ~1e-8 have no relative
  // precision left in float).
  check_optimizer_fixture<float>("sgd_nesterov_weight_decay", 1e-5, 1e-6);
  check_optimizer_fixture<float>("adam_amsgrad", 1e-5, 1e-6);
  check_optimizer_fixture<float>("adamw", 1e-5, 1e-6);
}

// ---- against PyTorch: clip_grad_norm --------------------------------------------------

TEST_CASE("optim: clip_grad_norm 2-norm matches PyTorch") { check_clip_fixture("norm2_clipped"); }
TEST_CASE("optim: clip_grad_norm inf-norm matches PyTorch") { check_clip_fixture("norm_inf_clipped"); }
TEST_CASE("optim: clip_grad_norm 1.5-norm ignores a missing gradient, as PyTorch") {
  check_clip_fixture("norm1.5_clipped_missing_grad");
}
TEST_CASE("optim: clip_grad_norm below max_norm leaves gradients unchanged, as PyTorch") {
  check_clip_fixture("norm2_not_clipped");
}

// ---- against PyTorch: schedules -------------------------------------------------------

TEST_CASE("optim: StepLR matches PyTorch") { check_schedule_fixture("step_lr"); }
TEST_CASE("optim: CosineAnnealingLR matches PyTorch, past t_max too") {
  check_schedule_fixture("cosine_eta_min");
  check_schedule_fixture("cosine");
}
TEST_CASE("optim: LinearWarmup matches PyTorch LinearLR") { check_schedule_fixture("linear_warmup"); }
TEST_CASE("optim: warm-up then cosine through SequentialLR matches PyTorch SequentialLR") {
  check_schedule_fixture("warmup_then_cosine");
  const auto warm = std::make_shared<LinearWarmup>(4, 0.1);
  const auto cosine = std::make_shared<CosineAnnealingLR>(10);
  const SequentialLR seq({warm, cosine}, {4});
  CHECK(seq.lr(4, 1.0) == 1.0);  // the cosine starts at the base lr after the warm-up
  check_throws_with([&] { SequentialLR({warm, cosine}, {}); }, {"SequentialLR", "2 schedules", "0 milestones"});
  check_throws_with([&] { SequentialLR({warm, cosine, warm}, {4, 4}); }, {"SequentialLR", "increasing"});
}
TEST_CASE("optim: LinearWarmup onto a cosine matches PyTorch ChainedScheduler and the formula") {
  check_schedule_fixture("warmup_cosine_chained");
  check_schedule_fixture("warmup_cosine_formula");
}

// ---- validation -----------------------------------------------------------------------

TEST_CASE("optim: constructors validate options with PyTorch's messages") {
  D p = zeros<double>({2}, true);
  const std::vector<D> ps{p};
  check_throws_with([&] { SGD<double> o(ps, SGDOptions().set_lr(-1)); }, {"Invalid learning rate: -1"});
  check_throws_with([&] { SGD<double> o(ps, SGDOptions().set_momentum(-0.5)); }, {"Invalid momentum value: -0.5"});
  check_throws_with([&] { SGD<double> o(ps, SGDOptions().set_weight_decay(-0.1)); },
                    {"Invalid weight_decay value: -0.1"});
  check_throws_with([&] { SGD<double> o(ps, SGDOptions().set_nesterov(true)); },
                    {"Nesterov momentum requires a momentum and zero dampening"});
  check_throws_with([&] { SGD<double> o(ps, SGDOptions().set_nesterov(true).set_momentum(0.9).set_dampening(0.1)); },
                    {"Nesterov momentum requires a momentum and zero dampening"});
  check_throws_with([&] { Adam<double> o(ps, AdamOptions().set_lr(-1)); }, {"Invalid learning rate: -1"});
  check_throws_with([&] { Adam<double> o(ps, AdamOptions().set_lr(std::nan(""))); }, {"Invalid learning rate: nan"});
  check_throws_with([&] { Adam<double> o(ps, AdamOptions().set_eps(-1e-8)); }, {"Invalid epsilon value: -1e-08"});
  check_throws_with([&] { Adam<double> o(ps, AdamOptions().set_beta1(1.0)); },
                    {"Invalid beta parameter at index 0: 1"});
  check_throws_with([&] { Adam<double> o(ps, AdamOptions().set_beta2(-0.1)); },
                    {"Invalid beta parameter at index 1: -0.1"});
  check_throws_with([&] { Adam<double> o(ps, AdamOptions().set_weight_decay(-1)); },
                    {"Invalid weight_decay value: -1"});
  check_throws_with([&] { AdamW<double> o(ps, AdamWOptions().set_lr(-0.5)); }, {"Invalid learning rate: -0.5"});
  check_throws_with([&] { AdamW<double> o(ps, AdamWOptions().set_betas(0.9, 1.5)); },
                    {"Invalid beta parameter at index 1: 1.5"});
  // The parameter list.
  check_throws_with([&] { SGD<double> o({}, SGDOptions()); }, {"SGD", "empty parameter list"});
  check_throws_with([&] { Adam<double> o({}); }, {"Adam", "empty parameter list"});
  check_throws_with([&] { AdamW<double> o({p, p}); }, {"AdamW", "parameter 1", "more than once"});
  check_throws_with([&] { Adam<double> o({p * 2.0}); }, {"parameter 0", "not a leaf"});
  check_throws_with([&] { SGD<double> o({p, D()}); }, {"parameter 1", "undefined"});
  // set_lr refuses a negative lr and keeps the old one.
  SGD<double> sgd(ps, SGDOptions().set_lr(0.1));
  check_throws_with([&] { sgd.set_lr(-0.2); }, {"Invalid learning rate: -0.2"});
  CHECK(sgd.lr() == 0.1);
  // Defaults, as PyTorch's.
  CHECK(AdamOptions().lr == 1e-3);
  CHECK(AdamOptions().weight_decay == 0.0);
  CHECK(AdamWOptions().weight_decay == 0.01);
  CHECK(AdamWOptions().set_lr(0.1).weight_decay == 0.01);
  CHECK(AdamOptions().beta2 == 0.999);
  CHECK(SGDOptions().momentum == 0.0);
}

TEST_CASE("optim: LR schedules and LRScheduler validate their arguments") {
  check_throws_with([] { StepLR s(0, 0.1); }, {"StepLR", "step_size"});
  check_throws_with([] { StepLR s(3, -0.1); }, {"StepLR", "gamma"});
  check_throws_with([] { CosineAnnealingLR s(0); }, {"CosineAnnealingLR", "t_max"});
  check_throws_with([] { CosineAnnealingLR s(5, -1.0); }, {"CosineAnnealingLR", "eta_min"});
  check_throws_with([] { LinearWarmup s(0, 0.5); }, {"LinearWarmup", "warmup_steps"});
  check_throws_with([] { LinearWarmup s(3, 0.0); }, {"LinearWarmup", "start_factor"});
  check_throws_with([] { LinearWarmup s(3, 1.5); }, {"LinearWarmup", "start_factor"});
  D p = zeros<double>({1}, true);
  SGD<double> opt({p}, SGDOptions().set_lr(0.1));
  check_throws_with([&] { LRScheduler<double> s(opt, nullptr); }, {"LRScheduler", "null"});
  CHECK(opt.lr() == 0.1);
}

// ---- behaviour ------------------------------------------------------------------------

TEST_CASE("optim: step() skips parameters without a gradient and leaves their state alone") {
  D a = Tensor<double>({1.0, -2.0}, true);
  D b = Tensor<double>({{0.5, 0.25}}, true);
  Adam<double> adam({a, b}, AdamOptions().set_lr(0.1).set_weight_decay(0.1));
  set_grad(a, Array<double>({0.3, -0.4}));
  adam.step();
  CHECK(b.data() == Array<double>({{0.5, 0.25}}));
  CHECK_FALSE(a.data() == Array<double>({1.0, -2.0}));
  const StateDict<double> state = adam.state_dict();
  CHECK(decode_state_scalar(state.at("0.step")) == 1.0);
  CHECK(decode_state_scalar(state.at("1.step")) == 0.0);
  CHECK(state.at("1.exp_avg") == Array<double>({{0.0, 0.0}}));
  CHECK(decode_state_scalar(state.at("step")) == 1.0);

  // SGD with weight decay: no gradient, no decay either (PyTorch skips the parameter).
  D c = Tensor<double>({3.0}, true);
  SGD<double> sgd({c}, SGDOptions().set_lr(0.1).set_weight_decay(0.5).set_momentum(0.9));
  sgd.step();
  CHECK(c.data()(0) == 3.0);
  CHECK(decode_state_scalar(sgd.state_dict().at("0.step")) == 0.0);
}

TEST_CASE("optim: zero_grad zeroes existing gradients and creates none") {
  D a = Tensor<double>({1.0, 2.0}, true);
  D b = Tensor<double>({3.0}, true);
  SGD<double> sgd({a, b});
  sum(a * a).backward();
  CHECK(a.grad() == Array<double>({2.0, 4.0}));
  sgd.zero_grad();
  CHECK(a.has_grad());
  CHECK(a.grad() == Array<double>({0.0, 0.0}));
  CHECK_FALSE(b.has_grad());
  CHECK(&sgd.params()[0].data() == &a.data());  // the optimizer shares the model's nodes
}

TEST_CASE("optim: state_dict round trip resumes bit-exactly (double)") {
  check_resume<SGD<double>, double>(
      SGDOptions().set_lr(0.1).set_momentum(0.8).set_nesterov(true).set_weight_decay(0.05));
  check_resume<Adam<double>, double>(AdamOptions().set_lr(0.05).set_amsgrad(true).set_weight_decay(0.1));
  check_resume<AdamW<double>, double>(AdamWOptions().set_lr(0.05));
}

TEST_CASE("optim: state_dict round trip resumes bit-exactly in float, the double lr included") {
  check_resume<SGD<float>, float>(SGDOptions().set_lr(0.1).set_momentum(0.9).set_dampening(0.2));
  check_resume<Adam<float>, float>(AdamOptions().set_lr(0.05).set_amsgrad(true));
  check_resume<AdamW<float>, float>(AdamWOptions().set_lr(0.05).set_weight_decay(0.1));
  // The scalar encoding itself: exact in float for an lr and a large step count.
  for (double v : {1e-3, 0.1 * 0.37, 3e-4 / 7.0, 123456789.0, 0.0})
    CHECK(decode_state_scalar(encode_state_scalar<float>(v)) == v);
}

TEST_CASE("optim: load_state_dict refuses bad state and changes nothing") {
  D a = Tensor<double>({{0.5, -1.0}, {2.0, 0.1}}, true);
  D b = Tensor<double>({0.3, -0.7, 1.2}, true);
  std::vector<D> params{a, b};
  Adam<double> adam(params, AdamOptions().set_lr(0.05).set_amsgrad(true));
  run_rule_steps<double>(adam, params, 0, 2);
  const StateDict<double> good = adam.state_dict();
  const Array<double> a_before = a.data(), b_before = b.data();

  // Each bad state also carries valid-looking changes to keys validated earlier: none may
  // be applied.
  auto expect_refused = [&](StateDict<double> bad, const std::vector<std::string>& fragments) {
    if (bad.count("lr")) bad["lr"] = encode_state_scalar<double>(0.123);
    if (bad.count("0.exp_avg")) bad["0.exp_avg"] = Array<double>(xt::ones<double>({2, 2}));
    check_throws_with([&] { adam.load_state_dict(bad); }, fragments);
    CHECK(same_state(adam.state_dict(), good));
    CHECK(adam.lr() == 0.05);
    CHECK(adam.steps() == 2);
    CHECK(a.data() == a_before);
    CHECK(b.data() == b_before);
  };

  StateDict<double> missing = good;
  missing.erase("1.exp_avg_sq");
  expect_refused(missing, {"missing key '1.exp_avg_sq'"});

  StateDict<double> wrong_shape = good;
  wrong_shape["1.max_exp_avg_sq"] = Array<double>(xt::zeros<double>({3, 1}));
  expect_refused(wrong_shape, {"'1.max_exp_avg_sq'", "(3,1)", "(3)"});

  StateDict<double> more_params = good;  // state of a 3-parameter optimizer
  more_params["2.step"] = encode_state_scalar<double>(2);
  more_params["2.exp_avg"] = Array<double>(xt::zeros<double>({4}));
  expect_refused(more_params, {"parameter 2", "2 parameters"});

  StateDict<double> fewer_params;  // state of a 1-parameter optimizer
  for (const auto& [key, value] : good)
    if (key.rfind("1.", 0) != 0) fewer_params[key] = value;
  expect_refused(fewer_params, {"missing key '1.step'", "the state has 1 parameters"});

  StateDict<double> from_sgd = good;
  from_sgd["0.momentum_buffer"] = Array<double>(xt::zeros<double>({2, 2}));
  expect_refused(from_sgd, {"unexpected key '0.momentum_buffer'"});

  StateDict<double> not_amsgrad = good;  // plain Adam's state lacks the max
  not_amsgrad.erase("0.max_exp_avg_sq");
  not_amsgrad.erase("1.max_exp_avg_sq");
  expect_refused(not_amsgrad, {"missing key '0.max_exp_avg_sq'"});

  StateDict<double> negative_lr = good;
  negative_lr["lr"] = encode_state_scalar<double>(-1.0);
  check_throws_with([&] { adam.load_state_dict(negative_lr); }, {"'lr'", "Invalid learning rate"});
  CHECK(same_state(adam.state_dict(), good));

  StateDict<double> fractional_step = good;
  fractional_step["1.step"] = encode_state_scalar<double>(1.5);
  expect_refused(fractional_step, {"'1.step'", "non-negative integer"});

  StateDict<double> scalar_shape = good;
  scalar_shape["step"] = Array<double>({2.0});
  expect_refused(scalar_shape, {"'step'", "shape (1)", "(3)"});

  // And the good state still loads (into a fresh optimizer).
  std::vector<D> copies = clone_params(params);
  Adam<double> other(copies, AdamOptions().set_amsgrad(true));
  other.load_state_dict(good);
  CHECK(same_state(other.state_dict(), good));
}

TEST_CASE("optim: LRScheduler sets the optimizer's lr and resumes from steps or state_dict") {
  D p = Tensor<double>({1.0, 2.0}, true);
  Adam<double> opt({p}, AdamOptions().set_lr(0.1));
  auto schedule = std::make_shared<LinearWarmup>(4, 0.25, std::make_shared<CosineAnnealingLR>(20, 0.01));
  LRScheduler<double> sched(opt, schedule);
  // Created: the warm-up applies at once, before the first optimizer step.
  CHECK(sched.base_lr() == 0.1);
  CHECK(opt.lr() == doctest::Approx(0.25 * (0.01 + 0.09 * (1 + std::cos(0.0)) / 2)));
  for (std::size_t s = 1; s <= 6; ++s) {
    set_grad(p, Array<double>({0.5, -0.5}));
    opt.step();
    sched.step();  // after opt.step(): the lr of the next step
    CHECK(opt.lr() == schedule->lr(s, 0.1));
  }
  const double factor_at_2 = 0.25 + 0.75 * 2 / 4;
  CHECK(schedule->lr(2, 0.1) == doctest::Approx(factor_at_2 * (0.01 + 0.09 * (1 + std::cos(kPi * 2 / 20)) / 2)));
  CHECK(schedule->lr(4, 0.1) == doctest::Approx(0.01 + 0.09 * (1 + std::cos(kPi * 4 / 20)) / 2));

  // Resume: a new optimizer and scheduler, then the saved states.
  const StateDict<double> opt_state = opt.state_dict();
  const StateDict<double> sched_state = sched.state_dict();
  D q = Tensor<double>(Array<double>(p.data()), true);
  Adam<double> opt2({q}, AdamOptions().set_lr(0.1));
  LRScheduler<double> sched2(opt2, schedule);
  CHECK(opt2.lr() != opt.lr());
  opt2.load_state_dict(opt_state);
  sched2.load_state_dict(sched_state);
  CHECK(sched2.steps() == 6);
  CHECK(opt2.lr() == opt.lr());
  sched.step();
  sched2.step();
  CHECK(opt2.lr() == opt.lr());

  // set_steps jumps (and sets the lr); bad scheduler state changes nothing.
  sched2.set_steps(15);
  CHECK(opt2.lr() == schedule->lr(15, 0.1));
  StateDict<double> bad = sched_state;
  bad.erase("base_lr");
  check_throws_with([&] { sched2.load_state_dict(bad); }, {"missing key 'base_lr'"});
  bad = sched_state;
  bad["step"] = encode_state_scalar<double>(-3);
  check_throws_with([&] { sched2.load_state_dict(bad); }, {"'step'"});
  bad = sched_state;
  bad["extra"] = encode_state_scalar<double>(1);
  check_throws_with([&] { sched2.load_state_dict(bad); }, {"unexpected key 'extra'"});
  CHECK(sched2.steps() == 15);
  CHECK(opt2.lr() == schedule->lr(15, 0.1));

  // StepLR through SGD, and an explicit base lr.
  D r = Tensor<double>({1.0}, true);
  SGD<double> sgd({r}, SGDOptions().set_lr(0.7));
  LRScheduler<double> step_sched(sgd, std::make_shared<StepLR>(2, 0.5), 0.2);
  CHECK(sgd.lr() == 0.2);
  step_sched.step();
  CHECK(sgd.lr() == 0.2);
  step_sched.step();
  CHECK(sgd.lr() == 0.1);
}

TEST_CASE("optim: clip_grad_norm with non-finite gradients, no gradients and bad arguments") {
  D a = Tensor<double>({1.0, 2.0}, true);
  D b = Tensor<double>({3.0}, true);
  const std::vector<D> ps{a, b};
  CHECK(clip_grad_norm(ps, 1.0) == 0.0);  // no gradient at all: 0, nothing to scale

  // 2-norm of (3, 4, 12) is 13: scaled by 1 / (13 + 1e-6).
  set_grad(a, Array<double>({3.0, 4.0}));
  set_grad(b, Array<double>({12.0}));
  CHECK(clip_grad_norm(ps, 1.0) == 13.0);
  CHECK(a.grad()(1) == doctest::Approx(4.0 / (13.0 + 1e-6)).epsilon(1e-15));
  CHECK(b.grad()(0) == doctest::Approx(12.0 / (13.0 + 1e-6)).epsilon(1e-15));

  // A NaN gradient: an error when asked for, else PyTorch's NaN factor.
  set_grad(a, Array<double>({3.0, 4.0}));
  set_grad(b, Array<double>({std::nan("")}));
  try {
    clip_grad_norm(ps, 1.0, 2.0, /*error_if_nonfinite=*/true);
    FAIL("expected std::runtime_error");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK_MESSAGE(what.find("clip_grad_norm: the total norm of order 2") != std::string::npos, what);
    CHECK_MESSAGE(what.find("is non-finite (nan)") != std::string::npos, what);
    CHECK_MESSAGE(what.find("error_if_nonfinite = false") != std::string::npos, what);
  }
  CHECK(a.grad()(0) == 3.0);  // the error leaves the gradients alone
  CHECK(std::isnan(clip_grad_norm(ps, 1.0, inf_norm)));
  CHECK(std::isnan(a.grad()(0)));

  // An infinite gradient under the inf-norm: the factor is 0 (inf * 0 = NaN), as PyTorch.
  set_grad(a, Array<double>({3.0, -std::numeric_limits<double>::infinity()}));
  set_grad(b, Array<double>({1.0}));
  bool threw = false;
  try {
    clip_grad_norm(ps, 1.0, inf_norm, true);
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("non-finite (inf)") != std::string::npos;
  }
  CHECK(threw);
  CHECK(std::isinf(clip_grad_norm(ps, 1.0, inf_norm)));
  CHECK(a.grad()(0) == 0.0);
  CHECK(b.grad()(0) == 0.0);
  CHECK(std::isnan(a.grad()(1)));

  // Bad arguments.
  set_grad(a, Array<double>({3.0, 4.0}));
  check_throws_with([&] { clip_grad_norm(ps, 1.0, 0.0); }, {"clip_grad_norm", "norm_type", "0"});
  check_throws_with([&] { clip_grad_norm(ps, 1.0, -2.0); }, {"norm_type"});
  check_throws_with([&] { clip_grad_norm(ps, -1.0); }, {"clip_grad_norm", "max_norm", "-1"});
  CHECK(a.grad()(0) == 3.0);

  // float: the same norm, accumulated in double.
  Tensor<float> f = Tensor<float>({3.f, 4.f}, true);
  set_grad(f, Array<float>({3.f, 4.f}));
  CHECK(clip_grad_norm(std::vector<Tensor<float>>{f}, 1.0) == 5.0);
  CHECK(f.grad()(0) == doctest::Approx(0.6).epsilon(1e-6));
}

TEST_CASE("optim: Adam with a cosine schedule fits a linear regression (float) below 1e-8 loss") {
  const float loss = train_regression(300);
  MESSAGE("linear regression, Adam lr 0.1 + cosine, 300 steps: final loss " << loss);
  CHECK(loss < 1e-8f);
}
