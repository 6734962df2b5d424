// The gathering, sorting and comparing ops a PyTorch user reaches for: stack, split, chunk,
// gather, scatter_add, min, logsumexp, cumsum, bmm, sort / argsort, the comparisons and
// multinomial. Forward values and the gradients of sum_k sum(out_k * G_k) against PyTorch
// 1.13 (tests/fixtures/make_helpers_fixtures.py: helpers/ops.json, helpers/compare.json),
// gradchecks in double on two shapes each, frequencies for multinomial, and bad input.
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <xtensor/xview.hpp>

#include "fixtures.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

double number(const json& v) {  // NaN and infinities are strings in the fixtures
  if (!v.is_string()) return v.get<double>();
  const std::string s = v.get<std::string>();
  if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  return s == "inf" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
}

D tensor_of(const json& t, bool requires_grad = false) {
  std::vector<double> values;
  for (const auto& v : t.at("data")) values.push_back(number(v));
  return tensor<double>(values, t.at("shape").get<Shape>(), requires_grad);
}

Indices index_of(const json& t) {
  Indices index = Indices::from_shape(t.at("shape").get<Shape>());
  const auto data = t.at("data").get<std::vector<std::size_t>>();
  std::copy(data.begin(), data.end(), index.begin());
  return index;
}

// Values against the fixture, equal where PyTorch has NaN or an infinity.
void check_fixture(const D& ours, const json& expected, const std::string& what) {
  const D e = tensor_of(expected);
  REQUIRE_MESSAGE(ours.shape() == e.shape(), what << ": shape " << shape_str(ours.shape()));
  for (std::size_t i = 0; i < e.numel(); ++i) {
    const double a = ours.data().data()[i], b = e.data().data()[i];
    if (std::isfinite(b))
      CHECK_MESSAGE(rel_deviation(a, b) <= kPyTorchTol, what << ", element " << i << ": " << a << " vs " << b);
    else
      CHECK_MESSAGE((a == b || (std::isnan(a) && std::isnan(b))),
                    what << ", element " << i << ": " << a << " vs " << b);
  }
}

std::vector<D> run_op(const json& c, const std::map<std::string, D>& in) {
  const std::string op = c.at("op");
  const json& p = c.at("params");
  const auto axis = [&] { return p.at("axis").get<int>(); };
  const auto axes = [&] { return Axes(p.at("axes").get<std::vector<int>>()); };
  if (op == "stack") {
    std::vector<D> xs;
    for (const auto& [name, t] : in) xs.push_back(t);  // a, b, c in order
    return {stack(xs, axis())};
  }
  const D& x = in.begin()->second;  // the first input (a for bmm)
  if (op == "split") return split(x, p.at("size").get<std::size_t>(), axis());
  if (op == "split_sizes") return split(x, p.at("sizes").get<std::vector<std::size_t>>(), axis());
  if (op == "chunk") return chunk(x, p.at("chunks").get<std::size_t>(), axis());
  if (op == "gather") return {gather(x, axis(), index_of(c.at("index")))};
  if (op == "scatter_add") return {scatter_add(in.at("x"), axis(), index_of(c.at("index")), in.at("src"))};
  if (op == "min") return {min(x, axes(), p.at("keepdims").get<bool>())};
  if (op == "logsumexp") return {logsumexp(x, axes(), p.at("keepdims").get<bool>())};
  if (op == "cumsum") return {cumsum(x, axis())};
  if (op == "bmm") return {bmm(in.at("a"), in.at("b"))};
  if (op == "sort") {
    const Sorted<double> s = sort(x, axis(), p.at("descending").get<bool>());
    const Indices expected = index_of(p.at("indices"));
    CHECK_MESSAGE(s.indices == expected, c.at("name").get<std::string>() << ": indices");
    CHECK(argsort(x, axis(), p.at("descending").get<bool>()) == expected);
    return {s.values};
  }
  FAIL("unknown op " << op);
  return {};
}

void check_op_case(const json& c) {
  const std::string name = c.at("name");
  const bool with_grads = c.contains("grads");
  std::map<std::string, D> in;
  const json& inputs = c.at("inputs");
  for (auto it = inputs.begin(); it != inputs.end(); ++it) in.emplace(it.key(), tensor_of(it.value(), with_grads));
  const std::vector<D> outs = run_op(c, in);
  REQUIRE_MESSAGE(outs.size() == c.at("outs").size(), name << ": " << outs.size() << " outputs");
  for (std::size_t k = 0; k < outs.size(); ++k)
    check_fixture(outs[k], c.at("outs")[k], name + ", output " + std::to_string(k));
  if (!with_grads) return;
  D loss = sum(outs[0] * tensor_of(c.at("G")[0]));
  for (std::size_t k = 1; k < outs.size(); ++k) loss = loss + sum(outs[k] * tensor_of(c.at("G")[k]));
  loss.backward();
  for (const auto& [key, t] : in) check_fixture(D(t.grad()), c.at("grads").at(key), name + ", grad " + key);
}

// The number of times each category appears in samples, over the total.
std::vector<double> frequencies(const Indices& samples, std::size_t categories) {
  std::vector<double> f(categories, 0.0);
  for (std::size_t s : samples) f.at(s) += 1.0 / double(samples.size());
  return f;
}

}  // namespace

TEST_CASE("helpers: stack, split, chunk, gather, scatter_add, min, logsumexp, cumsum, bmm, sort match PyTorch") {
  const json fixture = load_fixture("helpers", "ops.json");
  std::map<std::string, int> seen;
  for (const auto& c : fixture.at("cases")) {
    check_op_case(c);
    ++seen[c.at("op").get<std::string>()];
  }
  CHECK(seen.size() == 11);
}

TEST_CASE("helpers: gradcheck of each differentiable helper on two shapes") {
  const Indices idx2 = {{1, 0, 1}, {2, 2, 0}}, idx3 = {{{0, 1}}, {{1, 1}}};
  grad("stack", [](const In& in) { return stack(in, 0) * 2.0; }, {input({3}, 1), input({3}, 2)});
  grad("stack", [](const In& in) { return stack(in, -1); }, {input({2, 3}, 3), input({2, 3}, 4), input({2, 3}, 5)});
  // pieces weighted 1, 2, 3 and joined again, so that each piece's gradient is its own
  const auto weighted = [](const std::vector<D>& pieces, int axis) {
    std::vector<D> scaled;
    for (std::size_t i = 0; i < pieces.size(); ++i) scaled.push_back(pieces[i] * double(i + 1));
    return concat(scaled, axis);
  };
  grad("split", [&](const In& in) { return weighted(split(in[0], 2, 0), 0); }, {input({5}, 6)});
  grad("split", [&](const In& in) { return weighted(split(in[0], {1, 3}, 1), 1); }, {input({2, 4, 2}, 7)});
  grad("chunk", [&](const In& in) { return weighted(chunk(in[0], 3, 0), 0); }, {input({7, 2}, 8)});
  grad("chunk", [&](const In& in) { return weighted(chunk(in[0], 2, -1), -1); }, {input({2, 5}, 9)});
  grad("gather", [&](const In& in) { return gather(in[0], 0, idx2); }, {input({3, 3}, 10)});
  grad("gather", [&](const In& in) { return gather(in[0], 2, idx3); }, {input({2, 3, 2}, 11)});
  grad("scatter_add", [&](const In& in) { return scatter_add(in[0], 0, idx2, in[1]); },
       {input({3, 4}, 12), input({2, 3}, 13)});
  grad("scatter_add", [&](const In& in) { return scatter_add(in[0], 2, idx3, in[1]); },
       {input({2, 2, 2}, 14), input({2, 2, 3}, 15)});  // src larger than index: the rest gets 0
  grad("min", [](const In& in) { return min(in[0], {1}); }, {input({3, 4}, 16)});
  grad("min", [](const In& in) { return min(in[0], {0, 2}, true); }, {input({2, 3, 4}, 17)});
  grad("min", [](const In& in) { return min(in[0]); }, {input({5}, 18)});
  grad("logsumexp", [](const In& in) { return logsumexp(in[0], {-1}); }, {input({3, 4}, 19)});
  grad("logsumexp", [](const In& in) { return logsumexp(in[0] * 20.0, {0, 2}, true); }, {input({2, 3, 2}, 20)});
  grad("cumsum", [](const In& in) { return cumsum(in[0], 0); }, {input({4}, 21)});
  grad("cumsum", [](const In& in) { return cumsum(in[0], 1) * in[0]; }, {input({2, 3, 2}, 22)});
  grad("bmm", [](const In& in) { return bmm(in[0], in[1]); }, {input({2, 3, 4}, 23), input({2, 4, 2}, 24)});
  grad("bmm", [](const In& in) { return bmm(in[0], in[1]); }, {input({1, 1, 3}, 25), input({1, 3, 1}, 26)});
  grad("sort", [](const In& in) { return sort(in[0]).values * iota({5}); }, {input({5}, 27)});
  grad("sort", [](const In& in) { return sort(in[0], 0, true).values * iota({3, 2}); }, {input({3, 2}, 28)});
}

TEST_CASE("helpers: scatter_add by hand: repeated indices add up, and src beyond index gets no gradient") {
  D x = zeros<double>({3}, true), src = tensor<double>({1, 2, 3, 4}, {4}, true);
  const D out = scatter_add(x, 0, Indices{2, 0, 2}, src);  // src[3] is not read
  check_values(out, {3}, {2, 0, 4});
  sum(out * tensor<double>({10, 20, 30}, {3})).backward();
  check_array(src.grad(), {4}, {30, 10, 30, 0});
  check_array(x.grad(), {3}, {10, 20, 30});
}

TEST_CASE("helpers: split and chunk follow torch's size rules") {
  const D x = iota({7, 2});
  const auto sizes = [](const std::vector<D>& pieces) {
    std::vector<std::size_t> s;
    for (const auto& p : pieces) s.push_back(p.shape()[0]);
    return s;
  };
  CHECK(sizes(split(x, 3)) == std::vector<std::size_t>{3, 3, 1});
  CHECK(sizes(split(x, 7)) == std::vector<std::size_t>{7});
  CHECK(sizes(split(x, 10)) == std::vector<std::size_t>{7});
  CHECK(sizes(chunk(x, 3)) == std::vector<std::size_t>{3, 3, 1});
  CHECK(sizes(chunk(x, 7)) == std::vector<std::size_t>(7, 1));
  CHECK(sizes(chunk(iota({6}), 4)) == std::vector<std::size_t>{2, 2, 2});  // ceil(6 / 4) = 2: three pieces
  CHECK(sizes(chunk(zeros<double>({0, 2}), 3)) == std::vector<std::size_t>{0, 0, 0});
  CHECK(sizes(split(zeros<double>({0, 2}), 2)) == std::vector<std::size_t>{0});
  check_values(split(x, 3)[2], {1, 2}, {13, 14});
}

TEST_CASE("helpers: comparisons of two tensors (broadcast) and of a tensor and a number match PyTorch") {
  const json fixture = load_fixture("helpers", "compare.json");
  using Cmp = Mask (*)(const D&, const D&);
  using CmpScalar = Mask (*)(const D&, double);
  const std::map<std::string, std::pair<Cmp, CmpScalar>> ops = {
      {"eq", {eq<double>, eq<double>}}, {"ne", {ne<double>, ne<double>}}, {"lt", {lt<double>, lt<double>}},
      {"le", {le<double>, le<double>}}, {"gt", {gt<double>, gt<double>}}, {"ge", {ge<double>, ge<double>}}};
  for (const auto& c : fixture.at("cases")) {
    const auto& [two, one] = ops.at(c.at("op").get<std::string>());
    const D a = tensor_of(c.at("a"));
    const Mask ours = c.contains("b") ? two(a, tensor_of(c.at("b"))) : one(a, c.at("scalar").get<double>());
    const Indices expected = index_of(c.at("out"));
    REQUIRE(shape_of(ours) == shape_of(expected));
    for (std::size_t i = 0; i < ours.size(); ++i)
      CHECK_MESSAGE(ours.data()[i] == (expected.data()[i] == 1), c.at("name").get<std::string>() << ", element " << i);
  }
  const Tensor<float> f = tensor<float>({1, 2, 3}, {3});
  CHECK(gt(f, 1.5) == Mask{false, true, true});  // a double literal for a float tensor
  CHECK(where(le(f, 2.0), f, -f).data() == Array<float>{1, 2, -3});
}

TEST_CASE("helpers: multinomial draws with replacement in proportion to unnormalised weights") {
  Generator gen(2024);
  const D probs = tensor<double>({1, 2, 3, 4, 0}, {5});
  const Indices samples = multinomial(probs, 20000, true, gen);
  REQUIRE(shape_of(samples) == Shape{20000});
  const std::vector<double> f = frequencies(samples, 5);
  for (std::size_t c = 0; c < 4; ++c) CHECK_MESSAGE(std::abs(f[c] - double(c + 1) / 10) < 0.015, "category " << c);
  CHECK(f[4] == 0.0);  // a zero weight is never drawn
  // (N,C): rows drawn independently, each from its own weights
  const Indices rows = multinomial(tensor<float>({0, 1, 1, 5, 0, 5}, {2, 3}), 10000, true, gen);
  REQUIRE(shape_of(rows) == Shape{2, 10000});
  const Indices first = xt::view(rows, 0), second = xt::view(rows, 1);
  CHECK(frequencies(first, 3)[0] == 0.0);
  CHECK(std::abs(frequencies(first, 3)[1] - 0.5) < 0.02);
  CHECK(frequencies(second, 3)[1] == 0.0);
  CHECK(std::abs(frequencies(second, 3)[0] - 0.5) < 0.02);
  Generator again(2024);
  CHECK(multinomial(probs, 20000, true, again) == samples);  // the seed decides
}

TEST_CASE("helpers: multinomial without replacement: distinct draws, each from what is left") {
  // 20,000 rows of weights (0.2, 0.3, 0.5), two draws each. The first is category i with
  // probability p_i; the second j with sum over i != j of p_i p_j / (1 - p_i).
  const std::vector<double> p = {0.2, 0.3, 0.5};
  std::vector<double> weights;
  for (int r = 0; r < 20000; ++r) weights.insert(weights.end(), p.begin(), p.end());
  Generator gen(5);
  const Indices draws = multinomial(tensor<double>(weights, {20000, 3}), 2, false, gen);
  std::vector<double> first(3, 0.0), second(3, 0.0);
  for (std::size_t r = 0; r < 20000; ++r) {
    CHECK(draws(r, 0) != draws(r, 1));
    first[draws(r, 0)] += 1.0 / 20000;
    second[draws(r, 1)] += 1.0 / 20000;
  }
  for (std::size_t j = 0; j < 3; ++j) {
    double expected = 0;
    for (std::size_t i = 0; i < 3; ++i)
      if (i != j) expected += p[i] * p[j] / (1 - p[i]);
    CHECK(std::abs(first[j] - p[j]) < 0.015);
    CHECK(std::abs(second[j] - expected) < 0.015);
  }
  // All categories with a nonzero weight: a permutation of them.
  const Indices all = multinomial(tensor<double>({0, 3, 1, 2}, {4}), 3, false, gen);
  std::vector<std::size_t> sorted(all.begin(), all.end());
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<std::size_t>{1, 2, 3});
}

TEST_CASE("helpers: min and logsumexp by hand: first arg-min takes the gradient; infinite rows as PyTorch") {
  D x = tensor<double>({3, 1, 1, 2}, {2, 2}, true);
  const D m = min(x, {1});
  check_values(m, {2}, {1, 1});
  sum(m).backward();
  check_array(x.grad(), {2, 2}, {0, 1, 1, 0});
  const double inf = std::numeric_limits<double>::infinity();
  check_values(logsumexp(tensor<double>({-inf, -inf, inf, 1, 800, 800}, {3, 2}), {1}), {3},
               {-inf, inf, 800 + std::log(2.0)});
  check_values(logsumexp(tensor<float>({1, 2, 3, 4}, {2, 2})), {},
               {std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(4.0))}, 1e-6);
  check_values(cumsum(tensor<float>({1, 2, 3, 4}, {2, 2}), 1), {2, 2}, {1, 3, 3, 7});
}

TEST_CASE("helpers: bad input throws invalid_argument naming the op and the shapes") {
  const D x = iota({3, 4});
  check_throws_with([&] { stack<double>({x, iota({4, 3})}); }, {"stack", "(3,4)", "(4,3)"});
  check_throws_with([&] { stack<double>({}); }, {"stack", "no tensors"});
  check_throws_with([&] { stack<double>({x}, 3); }, {"stack", "axis 3"});
  check_throws_with([&] { split(x, {1, 1}, 1); }, {"split", "(1,1)", "(3,4)"});
  check_throws_with([&] { split(x, 0); }, {"split", "split_size 0", "(3,4)"});
  check_throws_with([&] { chunk(x, 0); }, {"chunk", "positive", "(3,4)"});
  check_throws_with([&] { gather(x, 1, Indices{0, 1}); }, {"gather", "(2)", "(3,4)"});
  check_throws_with([&] { gather(x, 1, Indices{{0, 4}}); }, {"gather", "index 4 is out of bounds", "(3,4)"});
  check_throws_with(
      [&] {
        gather(x, 1, Indices(xt::zeros<std::size_t>({4, 1})));
      },
      {"gather", "(4,1)", "(3,4)", "outside axis 1"});
  check_throws_with(
      [&] {
        scatter_add(x, 0, Indices{{0, 1, 2}}, iota({1, 2}));
      },
      {"scatter_add", "(1,3)", "src (1,2)"});
  check_throws_with([&] { min(zeros<double>({2, 0}), {1}); }, {"min", "empty", "(2,0)"});
  check_throws_with([&] { logsumexp(x, {1, -1}); }, {"logsumexp", "repeated", "(3,4)"});
  check_throws_with([&] { cumsum(x, 2); }, {"cumsum", "axis 2"});
  check_throws_with([&] { bmm(iota({2, 3, 4}), iota({3, 4, 5})); }, {"bmm", "(2,3,4)", "(3,4,5)"});
  check_throws_with([&] { bmm(iota({3, 4}), iota({4, 5})); }, {"bmm", "(3,4)", "(4,5)"});
  check_throws_with([&] { eq(x, iota({3})); }, {"eq", "(3,4)", "(3)"});
  check_throws_with([&] { sort(tensor<double>({1}, {})); }, {"sort", "scalar"});
  check_throws_with([&] { argsort(x, 2); }, {"argsort", "axis 2"});
  Generator gen(0);
  check_throws_with([&] { multinomial(iota({2, 2, 2}), 1, true, gen); }, {"multinomial", "(2,2,2)"});
  check_throws_with(
      [&] {
        multinomial(tensor<double>({1, -1}, {2}), 1, true, gen);
      },
      {"multinomial", "negative", "(2)"});
  check_throws_with(
      [&] {
        multinomial(tensor<double>({0, 0}, {2}), 1, true, gen);
      },
      {"multinomial", "no nonzero", "(2)"});
  check_throws_with(
      [&] {
        multinomial(tensor<double>({1, 0, 2}, {3}), 3, false, gen);
      },
      {"multinomial", "2 nonzero weights", "(3)", "num_samples 3"});
  check_throws_with([&] { multinomial(x, 0, true, gen); }, {"multinomial", "positive", "(3,4)"});
}

TEST_CASE("helpers: the float instantiations agree with double") {
  const Tensor<float> xf = tensor<float>({0.5f, -1.0f, 2.0f, 0.25f, 3.0f, -2.0f}, {2, 3});
  const D xd = xf.to<double>();
  const auto close = [](const Tensor<float>& f, const D& d) {
    REQUIRE(f.shape() == d.shape());
    for (std::size_t i = 0; i < d.numel(); ++i)
      CHECK(f.data().data()[i] == doctest::Approx(d.data().data()[i]).epsilon(1e-6));
  };
  close(stack<float>({xf, xf}, 1), stack<double>({xd, xd}, 1));
  close(chunk(xf, 2, 1)[1], chunk(xd, 2, 1)[1]);
  close(gather(xf, 1, Indices{{2, 0}, {1, 1}}), gather(xd, 1, Indices{{2, 0}, {1, 1}}));
  close(scatter_add(xf, 0, Indices{{1, 0, 1}}, xf), scatter_add(xd, 0, Indices{{1, 0, 1}}, xd));
  close(min(xf, {0}), min(xd, {0}));
  close(logsumexp(xf, {1}), logsumexp(xd, {1}));
  close(cumsum(xf, 1), cumsum(xd, 1));
  close(bmm(reshape(xf, {1, 2, 3}), reshape(xf, {1, 3, 2})), bmm(reshape(xd, {1, 2, 3}), reshape(xd, {1, 3, 2})));
  close(sort(xf, 1, true).values, sort(xd, 1, true).values);
  CHECK(argsort(xf) == argsort(xd));
}
