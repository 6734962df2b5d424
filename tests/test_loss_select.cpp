// cross_entropy with ignore_index and label smoothing, on (N,C) and (N,C,d...) logits, and
// Embedding's padding_idx: against PyTorch 1.13 (fixtures from
// tests/fixtures/make_loss_fixtures.py, float64: the loss and the gradient of the logits;
// the embedding's output and the gradient of sum(out * G) for its weight), gradchecks and
// argument errors. argmax, topk and tril_mask by hand. Every fixture test prints its
// largest deviation (MESSAGE).
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "xtgrad/layers.hpp"

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

using Targets = std::vector<std::size_t>;

// One configuration of cross_entropy.json: the loss and the gradient of the logits.
void check_cross_entropy_fixture(const std::string& name) {
  const json fixture = load_fixture("loss", "cross_entropy.json");
  const json& spec = find_case(fixture, name, "configs");
  D logits = fixture_tensor(spec.at("logits"), true);
  const Targets targets = spec.at("targets").at("data").get<Targets>();
  std::optional<std::size_t> ignore_index;
  if (!spec.at("ignore_index").is_null()) ignore_index = spec.at("ignore_index").get<std::size_t>();
  const double label_smoothing = spec.at("label_smoothing").get<double>();

  D loss = cross_entropy(logits, targets, ignore_index, label_smoothing);
  REQUIRE(loss.shape() == Shape{});
  Deviation dev("cross_entropy " + name);
  dev.compare(loss.item(), spec.at("loss").get<double>(), "loss");
  loss.backward();
  dev.compare_grad(logits, spec.at("grad"), "grad");
  dev.report();
}

// One configuration of embedding.json: the weight is set from the fixture, the output and
// the weight's gradient of sum(out * G) compared; the padding row's gradient is exactly 0.
void check_embedding_fixture(const std::string& name) {
  const json fixture = load_fixture("loss", "embedding.json");
  const json& spec = find_case(fixture, name, "configs");
  const std::size_t num = fixture.at("num_embeddings").get<std::size_t>();
  const std::size_t dim = fixture.at("embedding_dim").get<std::size_t>();
  const std::size_t padding = fixture.at("padding_idx").get<std::size_t>();
  Generator gen(41);
  Embedding<double> emb(num, dim, padding, gen);
  REQUIRE(emb.padding_idx == std::optional<std::size_t>(padding));
  const D weight = fixture_tensor(spec.at("weight"));
  REQUIRE(weight.shape() == Shape{num, dim});
  emb.weight.mutable_data() = weight.data();

  const Targets ids = spec.at("ids").at("data").get<Targets>();
  const Shape ids_shape = spec.at("ids").at("shape").get<Shape>();
  REQUIRE(std::count(ids.begin(), ids.end(), padding) >= 2);
  const D out = emb.forward(ids, ids_shape);
  Deviation dev("Embedding padding_idx " + name);
  dev.compare(out.data(), spec.at("out"), "out");
  sum(out * fixture_tensor(spec.at("G"))).backward();
  dev.compare_grad(emb.weight, spec.at("grad_weight"), "grad_weight");
  for (std::size_t j = 0; j < dim; ++j) CHECK_MESSAGE(emb.weight.grad()(padding, j) == 0.0, "padding row column " << j);
  dev.report();
}

// cross_entropy of the first input with these targets, as a gradcheck function.
Fn ce_fn(const Targets& targets, std::optional<std::size_t> ignore_index, double label_smoothing) {
  return [=](const In& in) { return cross_entropy(in[0], targets, ignore_index, label_smoothing); };
}

// An array's elements in row-major order (a mask's as 0 and 1).
template <class E> std::vector<typename E::value_type> values_of(const E& a) {
  return std::vector<typename E::value_type>(a.begin(), a.end());
}
std::vector<int> values_of(const Mask& m) {
  std::vector<int> out;
  for (bool b : m) out.push_back(b ? 1 : 0);
  return out;
}

}  // namespace

// ---- cross_entropy against PyTorch ----------------------------------------------------

TEST_CASE("loss: cross_entropy (N,C) matches PyTorch") { check_cross_entropy_fixture("nc_plain"); }
TEST_CASE("loss: cross_entropy (N,C) with ignore_index outside the classes matches PyTorch") {
  check_cross_entropy_fixture("nc_ignore_index");
}
TEST_CASE("loss: cross_entropy (N,C) with ignore_index a class in range matches PyTorch") {
  check_cross_entropy_fixture("nc_ignore_index_in_range");
}
TEST_CASE("loss: cross_entropy (N,C) with label_smoothing 0.1 and 1 matches PyTorch") {
  check_cross_entropy_fixture("nc_label_smoothing");
  check_cross_entropy_fixture("nc_label_smoothing_one");
  check_cross_entropy_fixture("nc_one_row_label_smoothing");
}
TEST_CASE("loss: cross_entropy (N,C) with ignore_index and label_smoothing matches PyTorch") {
  check_cross_entropy_fixture("nc_ignore_index_label_smoothing");
}
TEST_CASE("loss: cross_entropy (N,C,d) matches PyTorch, plain and with ignore_index and label_smoothing") {
  check_cross_entropy_fixture("ncd_plain");
  check_cross_entropy_fixture("ncd_ignore_index_label_smoothing");
}
TEST_CASE("loss: cross_entropy (N,C,d1,d2) with ignore_index and label_smoothing matches PyTorch") {
  check_cross_entropy_fixture("ncdd_ignore_index_label_smoothing");
}

// ---- binary_cross_entropy_with_logits -------------------------------------------------

TEST_CASE("loss: binary_cross_entropy_with_logits matches PyTorch, also for logits of +-80") {
  const json fixture = load_fixture("loss", "bce.json");
  for (const char* name : {"moderate", "large_logits"}) {
    const json& spec = find_case(fixture, name, "configs");
    D logits = fixture_tensor(spec.at("logits"), true), targets = fixture_tensor(spec.at("targets"), true);
    D loss = binary_cross_entropy_with_logits(logits, targets);
    Deviation dev(std::string("binary_cross_entropy_with_logits ") + name);
    dev.compare(loss.item(), spec.at("loss").get<double>(), "loss");
    loss.backward();
    dev.compare_grad(logits, spec.at("grad_logits"), "grad logits");
    dev.compare_grad(targets, spec.at("grad_targets"), "grad targets");
    dev.report();
  }
}

TEST_CASE("loss: gradcheck of binary_cross_entropy_with_logits; shapes must match") {
  const Fn bce = [](const In& in) { return binary_cross_entropy_with_logits(in[0], sigmoid(in[1])); };
  grad("binary_cross_entropy_with_logits", bce, {input({3, 4}, 621), input({3, 4}, 622)});
  check_throws_with(
      [] {
        binary_cross_entropy_with_logits(zeros<double>({2, 3}), zeros<double>({3, 2}));
      },
      {"binary_cross_entropy_with_logits", "(2,3)", "(3,2)"});
}

// ---- cross_entropy: gradchecks, NaN, errors, the plain call ---------------------------

TEST_CASE("loss: gradcheck of cross_entropy with ignore_index and label_smoothing, (N,C) and (N,C,d)") {
  // (N,C): ignore_index outside the classes, then a class in range
  grad("cross_entropy", ce_fn({2, 7, 0, 3, 7}, 7, 0.1), {input({5, 4}, 611)});
  grad("cross_entropy", ce_fn({1, 0, 2, 1}, 1, 0.3), {input({4, 3}, 612)});
  grad("cross_entropy", ce_fn({2, 0, 1}, std::nullopt, 1.0), {input({3, 4}, 613)});
  // (N,C,d) and (N,C,d1,d2): targets (N,d...) row-major; ignore_index C
  grad("cross_entropy", ce_fn({0, 3, 2, 1, 3, 3, 1, 0}, 3, 0.1), {input({2, 3, 4}, 614)});
  grad("cross_entropy", ce_fn({1, 4, 0, 2, 2, 4, 1, 3, 0, 4, 4, 2}, 4, 0.2), {input({2, 4, 2, 3}, 615)});
  // reached through another op, the loss scaled afterwards: the upstream gradient is used
  const Fn scaled = [](const In& in) {
    return mul(cross_entropy(transpose(in[0], 0, 1), Targets{2, 5, 0}, 5, 0.1), 3.5);
  };
  grad("cross_entropy", scaled, {input({4, 3}, 616)});
}

TEST_CASE("loss: cross_entropy with every target ignored is NaN with a zero gradient, as PyTorch") {
  D logits = input({3, 4}, 621);
  D loss = cross_entropy(logits, Targets{9, 9, 9}, 9);
  CHECK(std::isnan(loss.item()));
  loss.backward();
  REQUIRE(logits.has_grad());
  for (double g : logits.grad()) CHECK(g == 0.0);

  D smoothed_logits = input({3, 4}, 622);
  D smoothed = cross_entropy(smoothed_logits, Targets{9, 9, 9}, 9, 0.1);
  CHECK(std::isnan(smoothed.item()));
  smoothed.backward();
  for (double g : smoothed_logits.grad()) CHECK(g == 0.0);

  // (N,C,d), ignore_index a class in range
  CHECK(std::isnan(cross_entropy(input({1, 3, 2}, 623), Targets{0, 0}, 0, 0.1).item()));
  // float too
  CHECK(std::isnan(cross_entropy(input<float>({2, 3}, 624), Targets{5, 5}, 5).item()));
  // one counted target is enough for a number
  CHECK(std::isfinite(cross_entropy(input({3, 4}, 625), Targets{9, 2, 9}, 9, 0.1).item()));
}

TEST_CASE("loss: cross_entropy refuses a target out of range that is not ignore_index") {
  const D logits = input({3, 4}, 631);
  check_throws_with([&] { cross_entropy(logits, Targets{0, 4, 1}); }, {"cross_entropy", "class 4"});
  check_throws_with([&] { cross_entropy(logits, Targets{0, 9, 5}, 9); }, {"cross_entropy", "class 5"});
  check_throws_with([&] { cross_entropy(logits, Targets{0, 9, 4}, 9, 0.1); }, {"cross_entropy", "class 4"});
  // ignore_index in range does not make another target valid
  check_throws_with([&] { cross_entropy(logits, Targets{1, 1, 7}, 1); }, {"cross_entropy", "class 7"});
  // (N,C,d): the same rule on every position
  check_throws_with([&] { cross_entropy(input({1, 3, 2}, 632), Targets{3, 2}); }, {"cross_entropy", "class 3"});
  check_throws_with([&] { cross_entropy(input({1, 3, 2}, 633), Targets{2, 4}, 3); }, {"cross_entropy", "class 4"});
  // a target equal to ignore_index may be any value, even far outside the classes
  CHECK(std::isfinite(cross_entropy(logits, Targets{0, 1000, 3}, 1000).item()));
  // the number of targets must match the positions
  check_throws_with([&] { cross_entropy(logits, Targets{0, 1}); }, {"cross_entropy", "(3,4)"});
  check_throws_with([&] { cross_entropy(input({2, 3, 2}, 634), Targets{0, 1}); }, {"cross_entropy", "(2,3,2)"});
}

TEST_CASE("loss: cross_entropy refuses label_smoothing outside [0, 1]") {
  const D logits = input({3, 4}, 641);
  const D cube = input({1, 3, 2}, 642);
  const Targets targets{0, 1, 2};
  const std::vector<std::string> says{"cross_entropy", "label_smoothing"};
  for (const double bad : {-0.1, 1.5, 2.0, -std::numeric_limits<double>::infinity(), std::nan("")}) {
    CAPTURE(bad);
    check_throws_with([&] { cross_entropy(logits, targets, std::nullopt, bad); }, says);
    check_throws_with([&] { cross_entropy(logits, targets, 9, bad); }, says);
    check_throws_with([&] { cross_entropy(cube, Targets{0, 1}, std::nullopt, bad); }, says);
  }
  // both ends are allowed
  CHECK(std::isfinite(cross_entropy(logits, targets, std::nullopt, 0.0).item()));
  CHECK(std::isfinite(cross_entropy(logits, targets, std::nullopt, 1.0).item()));
}

TEST_CASE("loss: cross_entropy(logits, targets) is still the mean of -log_softmax at the targets, float and double") {
  const Targets targets{3, 0, 4, 3};
  // float
  Tensor<float> logits = input<float>({4, 5}, 651);
  Tensor<float> loss = cross_entropy(logits, targets);
  REQUIRE(loss.shape() == Shape{});
  const Array<float> logp = log_softmax(logits.detach()).data();
  double by_hand = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) by_hand -= double(logp(i, targets[i]));
  by_hand /= double(targets.size());
  CHECK(double(loss.item()) == doctest::Approx(by_hand).epsilon(1e-6));
  // the defaults spelled out are the same call
  CHECK(cross_entropy(logits, targets, std::nullopt, 0.0).item() == loss.item());
  // and its gradient is (softmax - one-hot) / N
  loss.backward();
  const Array<float> p = softmax(logits.detach()).data();
  for (std::size_t i = 0; i < targets.size(); ++i)
    for (std::size_t j = 0; j < 5; ++j) {
      const double expected = (double(p(i, j)) - (j == targets[i] ? 1.0 : 0.0)) / double(targets.size());
      CHECK_MESSAGE(double(logits.grad()(i, j)) == doctest::Approx(expected).epsilon(1e-6), i << "," << j);
    }

  // double, to 1e-12
  const D logits_d = input({4, 5}, 652);
  const Array<double> logp_d = log_softmax(logits_d.detach()).data();
  double by_hand_d = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) by_hand_d -= logp_d(i, targets[i]);
  by_hand_d /= double(targets.size());
  CHECK(cross_entropy(logits_d, targets).item() == doctest::Approx(by_hand_d).epsilon(1e-12));
}

// ---- Embedding with padding_idx -------------------------------------------------------

TEST_CASE("loss: Embedding padding_idx matches PyTorch: the padding row reads its values and gets no gradient") {
  check_embedding_fixture("padding_row_zeros");
  check_embedding_fixture("padding_row_set");
}

TEST_CASE("loss: Embedding padding_idx row starts as zeros; padding_idx out of range is refused") {
  Generator gen(43);
  Embedding<double> emb(10, 4, 2, gen);
  CHECK(emb.extra_repr() == "10, 4, padding_idx=2");
  for (std::size_t i = 0; i < 10; ++i) {
    bool all_zero = true;
    for (std::size_t j = 0; j < 4; ++j) all_zero = all_zero && emb.weight.data()(i, j) == 0.0;
    CHECK_MESSAGE(all_zero == (i == 2), "row " << i);
  }
  // the first and the last row, and float
  Embedding<float> first(6, 3, 0, gen), last(6, 3, 5, gen);
  for (std::size_t j = 0; j < 3; ++j) {
    CHECK(first.weight.data()(0, j) == 0.0f);
    CHECK(last.weight.data()(5, j) == 0.0f);
  }
  // without padding_idx nothing is zeroed
  Embedding<double> plain(10, 4, std::nullopt, gen);
  CHECK_FALSE(plain.padding_idx.has_value());
  CHECK(plain.extra_repr() == "10, 4");

  check_throws_with([&] { Embedding<double> e(10, 4, 10, gen); }, {"Embedding", "padding_idx", "10"});
  check_throws_with([&] { Embedding<float> e(3, 2, 7, gen); }, {"Embedding", "padding_idx", "7"});
}

TEST_CASE("loss: Embedding padding_idx gradient row stays zero after backward, other rows accumulate") {
  Generator gen(44);
  Embedding<double> emb(5, 3, 1, gen);
  // ids with the padding index three times, 1-D and shaped
  const D out = emb.forward({1, 3, 1, 0, 1});
  REQUIRE(out.shape() == Shape{5, 3});
  for (std::size_t j = 0; j < 3; ++j) CHECK(out.data()(0, j) == 0.0);  // the padding row's values: zeros
  sum(out).backward();
  sum(emb.forward({1, 3, 4, 1}, {2, 2})).backward();  // accumulates
  for (std::size_t j = 0; j < 3; ++j) {
    CHECK(emb.weight.grad()(1, j) == 0.0);
    CHECK(emb.weight.grad()(3, j) == 2.0);
    CHECK(emb.weight.grad()(0, j) == 1.0);
    CHECK(emb.weight.grad()(4, j) == 1.0);
    CHECK(emb.weight.grad()(2, j) == 0.0);
  }
  // a padding row holding values: the forward reads them, the gradient stays zero
  emb.zero_grad();
  emb.weight.mutable_data()(1, 0) = 0.5;
  emb.weight.mutable_data()(1, 2) = -2.0;
  const D read = emb.forward({1, 2});
  CHECK(read.data()(0, 0) == 0.5);
  CHECK(read.data()(0, 2) == -2.0);
  sum(read * read).backward();
  for (std::size_t j = 0; j < 3; ++j) CHECK(emb.weight.grad()(1, j) == 0.0);
  for (std::size_t j = 0; j < 3; ++j) CHECK(emb.weight.grad()(2, j) == 2.0 * emb.weight.data()(2, j));
}

// ---- argmax ---------------------------------------------------------------------------

TEST_CASE("select: argmax along the last and a middle axis, first index on ties, the axis dropped") {
  // (2,3,4)
  // n = 0: rows {1,5,5,2}, {0,-1,3,3}, {7,5,1,7}; n = 1: {-3,-2,-1,-4}, {4,1,4,9}, {2,8,0,8}
  const D x = make({2, 3, 4}, {1, 5, 5, 2, 0, -1, 3, 3, 7, 5, 1, 7, -3, -2, -1, -4, 4, 1, 4, 9, 2, 8, 0, 8});
  const Indices last = argmax(x);  // axis -1
  CHECK(shape_of(last) == Shape{2, 3});
  CHECK(values_of(last) == std::vector<std::size_t>{1, 2, 0, 2, 3, 1});
  CHECK(values_of(argmax(x, 2)) == values_of(last));

  const Indices middle = argmax(x, 1);
  CHECK(shape_of(middle) == Shape{2, 4});
  CHECK(values_of(middle) == std::vector<std::size_t>{2, 0, 0, 2, 1, 2, 1, 1});
  CHECK(values_of(argmax(x, -2)) == values_of(middle));

  const Indices first = argmax(x, 0);
  CHECK(shape_of(first) == Shape{3, 4});
  CHECK(values_of(first) == std::vector<std::size_t>{0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1});

  // 1-D gives a 0-d result; ties give the first index; float
  const Indices scalar = argmax(make({5}, {3, 9, 1, 9, 2}));
  CHECK(scalar.dimension() == 0);
  CHECK(scalar() == std::size_t{1});
  CHECK(values_of(argmax(make<float>({2, 3}, {2, 2, 2, -1, 0, -1}))) == std::vector<std::size_t>{0, 1});
  // NaN counts as the largest, as torch.argmax
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(argmax(make({4}, {1, nan, 5, nan}))() == std::size_t{1});
  // an input that requires a gradient is read the same way
  const D g = input({3, 4}, 661);
  CHECK(shape_of(argmax(g, 0)) == Shape{4});

  check_throws_with([&] { argmax(x, 3); }, {"argmax"});
  check_throws_with([&] { argmax(x, -4); }, {"argmax"});
  check_throws_with([&] { argmax(make({}, {1.0})); }, {"argmax"});
  check_throws_with([&] { argmax(make({2, 0}, {}), 1); }, {"argmax"});
}

// ---- topk -----------------------------------------------------------------------------

TEST_CASE("select: topk gives values largest first with their indices, ties in index order") {
  const D x = make({2, 5}, {3, 9, 1, 9, 4, 0, -2, 0, 5, 0});
  const TopK<double> top3 = topk(x, 3);
  CHECK(shape_of(top3.values) == Shape{2, 3});
  CHECK(shape_of(top3.indices) == Shape{2, 3});
  CHECK(values_of(top3.values) == std::vector<double>{9, 9, 4, 5, 0, 0});
  CHECK(values_of(top3.indices) == std::vector<std::size_t>{1, 3, 4, 3, 0, 2});

  // k = n: the whole row sorted, stably
  const TopK<double> all = topk(x, 5);
  CHECK(values_of(all.values) == std::vector<double>{9, 9, 4, 3, 1, 5, 0, 0, 0, -2});
  CHECK(values_of(all.indices) == std::vector<std::size_t>{1, 3, 4, 0, 2, 3, 0, 2, 4, 1});

  // k = 0: empty (..., 0)
  const TopK<double> none = topk(x, 0);
  CHECK(shape_of(none.values) == Shape{2, 0});
  CHECK(shape_of(none.indices) == Shape{2, 0});
  CHECK(none.values.size() == 0);

  // 1-D, 3-D and float
  const TopK<double> row = topk(make({4}, {0.5, -1, 2, 0.5}), 2);
  CHECK(shape_of(row.values) == Shape{2});
  CHECK(values_of(row.values) == std::vector<double>{2, 0.5});
  CHECK(values_of(row.indices) == std::vector<std::size_t>{2, 0});
  const TopK<float> cube = topk(make<float>({2, 1, 3}, {1, 3, 2, 6, 5, 4}), 2);
  CHECK(shape_of(cube.indices) == Shape{2, 1, 2});
  CHECK(values_of(cube.values) == std::vector<float>{3, 2, 6, 5});
  CHECK(values_of(cube.indices) == std::vector<std::size_t>{1, 2, 0, 1});
  // the first of topk is argmax
  const D r = input({3, 6}, 671);
  const TopK<double> best = topk(r, 1);
  const Indices arg = argmax(r);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(best.indices(i, 0) == arg(i));
    CHECK(best.values(i, 0) == r.data()(i, arg(i)));
  }

  check_throws_with([&] { topk(x, 6); }, {"topk", "k = 6"});
  check_throws_with([&] { topk(make({}, {1.0}), 1); }, {"topk"});
}

// ---- tril_mask ------------------------------------------------------------------------

TEST_CASE("select: tril_mask is torch.tril of ones, diagonal 0, -1, +1, non-square") {
  const Mask causal = tril_mask(3, 3);
  CHECK(shape_of(causal) == Shape{3, 3});
  CHECK(values_of(causal) == std::vector<int>{1, 0, 0, 1, 1, 0, 1, 1, 1});
  CHECK(values_of(tril_mask(3, 3, -1)) == std::vector<int>{0, 0, 0, 1, 0, 0, 1, 1, 0});
  CHECK(values_of(tril_mask(3, 3, 1)) == std::vector<int>{1, 1, 0, 1, 1, 1, 1, 1, 1});
  // non-square
  const Mask wide = tril_mask(2, 4);
  CHECK(shape_of(wide) == Shape{2, 4});
  CHECK(values_of(wide) == std::vector<int>{1, 0, 0, 0, 1, 1, 0, 0});
  const Mask tall = tril_mask(4, 2);
  CHECK(shape_of(tall) == Shape{4, 2});
  CHECK(values_of(tall) == std::vector<int>{1, 0, 1, 1, 1, 1, 1, 1});
  CHECK(values_of(tril_mask(2, 4, 2)) == std::vector<int>{1, 1, 1, 0, 1, 1, 1, 1});
  CHECK(values_of(tril_mask(4, 2, -2)) == std::vector<int>{0, 0, 0, 0, 1, 0, 1, 1});
  // beyond the matrix: all false, all true
  CHECK(values_of(tril_mask(2, 3, -5)) == std::vector<int>{0, 0, 0, 0, 0, 0});
  CHECK(values_of(tril_mask(2, 3, 5)) == std::vector<int>{1, 1, 1, 1, 1, 1});
  // empty
  CHECK(shape_of(tril_mask(0, 3)) == Shape{0, 3});
}
