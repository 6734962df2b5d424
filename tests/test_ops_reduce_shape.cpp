// Reductions (sum, mean, max, var) and shape ops (reshape, transpose, permute, unsqueeze,
// squeeze, expand, concat, narrow, slice, index_select): gradients against central
// differences, forward values by hand, and the errors they raise.
#include "helpers.hpp"

#include <cmath>

using namespace xtgrad;
using namespace xtgrad::testing;

namespace {

// The reduction variants every reduction is checked with: (axes, keepdims).
struct Variant {
  Axes axes;
  bool keepdims;
};
const std::vector<Variant> kVariants = {{{1}, false},    {{1}, true}, {{-1}, false}, {{-3, -1}, true},
                                        {{0, 2}, false}, {{}, false}, {{}, true}};

}  // namespace

// ---- reductions -----------------------------------------------------------------------

TEST_CASE("gradcheck: sum over axes (incl. negative), over all, keepdims true/false") {
  for (const auto& v : kVariants) {
    CAPTURE(v.keepdims);
    grad("sum", [v](const In& in) { return sum(in[0], v.axes, v.keepdims); }, {input({2, 3, 4}, 201)});
  }
  grad("sum", [](const In& in) { return sum(in[0], {1}); }, {input({3, 1, 2}, 202)});  // size-1 axis
  grad("sum", [](const In& in) { return sum(in[0], {0}); }, {input({1, 4}, 203)});
  grad("sum", [](const In& in) { return sum(in[0]); }, {input({}, 204)});  // 0-d
  grad("sum", [](const In& in) { return sum(permute(in[0], {2, 0, 1}), {-1}, true); }, {input({2, 3, 2}, 205)});
}

TEST_CASE("gradcheck: mean over axes (incl. negative), over all, keepdims true/false") {
  for (const auto& v : kVariants)
    grad("mean", [v](const In& in) { return mean(in[0], v.axes, v.keepdims); }, {input({2, 3, 4}, 211)});
  grad("mean", [](const In& in) { return mean(in[0], {-2}); }, {input({3, 1, 2}, 212)});
  grad("mean", [](const In& in) { return mean(transpose(in[0], 0, 1), {0}); }, {input({3, 2}, 213)});
}

TEST_CASE("gradcheck: max with distinct values over axes, all, keepdims true/false") {
  for (const auto& v : kVariants)
    grad("max", [v](const In& in) { return max(in[0], v.axes, v.keepdims); }, {input({2, 3, 4}, 221)});
  grad("max", [](const In& in) { return max(in[0], {0}); }, {input({1, 4}, 222)});
  grad("max", [](const In& in) { return max(permute(in[0], {1, 2, 0}), {0, -1}); }, {input({2, 3, 2}, 223)});
}

TEST_CASE("gradcheck: var unbiased and biased over axes, all, keepdims true/false") {
  for (const bool unbiased : {true, false})
    for (const auto& v : kVariants)
      grad("var", [v, unbiased](const In& in) { return var(in[0], v.axes, v.keepdims, unbiased); },
           {input({2, 3, 4}, 231)});
  grad("var", [](const In& in) { return var(in[0], {2}); }, {input({3, 1, 2}, 232)});
  grad("var", [](const In& in) { return var(transpose(in[0], 0, 1), {-1}, true, false); }, {input({3, 2}, 233)});
}

TEST_CASE("forward: sum and mean values and shapes") {
  const D x = iota({2, 3});  // [[1,2,3],[4,5,6]]
  check_values(sum(x, {0}), {3}, {5, 7, 9});
  check_values(sum(x, {-1}), {2}, {6, 15});
  check_values(sum(x, {1}, true), {2, 1}, {6, 15});
  check_values(sum(x), {}, {21});
  check_values(sum(x, {}, true), {1, 1}, {21});
  check_values(sum(x, {0, 1}), {}, {21});
  check_values(mean(x, {0}), {3}, {2.5, 3.5, 4.5});
  check_values(mean(x, {-1}, true), {2, 1}, {2, 5});
  check_values(mean(x), {}, {3.5});
  const D y = iota({2, 3, 4});
  // sum over axes 0 and 2: sum_i sum_k (12 i + 4 j + k + 1)
  check_values(sum(y, {0, -1}), {3},
               {(1 + 2 + 3 + 4) + (13 + 14 + 15 + 16), (5 + 6 + 7 + 8) + (17 + 18 + 19 + 20),
                (9 + 10 + 11 + 12) + (21 + 22 + 23 + 24)});
  check_values(mean(y, {0, 2}, true), {1, 3, 1}, {8.5, 12.5, 16.5});
  // gradient of mean: 1/count everywhere
  D z = iota({2, 3}, true);
  mean(z, {1}).backward(xt::ones<double>({2}));
  check_array(z.grad(), {2, 3}, std::vector<double>(6, 1.0 / 3));
}

TEST_CASE("forward: max values, gradient goes to the first arg-max when there are ties") {
  const D x = make({2, 3}, {1, 5, 3, 4, 2, 6});
  check_values(max(x, {0}), {3}, {4, 5, 6});
  check_values(max(x, {-1}), {2}, {5, 6});
  check_values(max(x, {1}, true), {2, 1}, {5, 6});
  check_values(max(x), {}, {6});
  check_values(max(make({3}, {-3, -1, -2})), {}, {-1});
  D t = make({3}, {3, 1, 3}, true);
  max(t).backward();
  check_array(t.grad(), {3}, {1, 0, 0});
  D u = make({2, 3}, {2, 7, 7, 5, 5, 1}, true);
  max(u, {1}).backward(Array<double>{10.0, 20.0});
  check_array(u.grad(), {2, 3}, {0, 10, 0, 20, 0, 0});
  // over axis 0 of a (2,2,2): ties and non-ties in one reduction
  D w = make({2, 2, 2}, {1, 4, 2, 0, 1, 3, 2, 9}, true);
  D m = max(w, {0});
  check_values(m, {2, 2}, {1, 4, 2, 9});
  m.backward(xt::ones<double>({2, 2}));
  check_array(w.grad(), {2, 2, 2}, {1, 1, 1, 0, 0, 0, 0, 1});
}

TEST_CASE("forward: var of {1,2,3,4} = 1.6666666666666667 unbiased, 1.25 biased, over axes") {
  const D x = make({4}, {1, 2, 3, 4});
  check_values(var(x), {}, {1.6666666666666667});
  check_values(var(x, {}, false, false), {}, {1.25});
  check_values(var(x, {0}, true), {1}, {1.6666666666666667});
  const D y = make({2, 4}, {1, 2, 3, 4, 2, 4, 6, 8});
  check_values(var(y, {-1}), {2}, {1.6666666666666667, 6.666666666666667});
  check_values(var(y, {1}, true, false), {2, 1}, {1.25, 5.0});
  check_values(var(y, {0}), {4}, {0.5, 2.0, 4.5, 8.0});
  check_values(var(y, {0}, false, false), {4}, {0.25, 1.0, 2.25, 4.0});
  // d var / dx_i = 2 (x_i - mean) / (n - 1)
  D z = make({4}, {1, 2, 3, 4}, true);
  var(z).backward();
  check_array(z.grad(), {4}, {-1.0, -1.0 / 3, 1.0 / 3, 1.0});
}

TEST_CASE("errors: reductions reject a bad axis and a repeated axis") {
  const D x = iota({2, 3});
  check_throws_with([&] { sum(x, {2}); }, {"sum: axis 2 out of range for 2 dimensions"});
  check_throws_with([&] { mean(x, {-3}); }, {"mean: axis -3 out of range for 2 dimensions"});
  check_throws_with([&] { max(x, {5}); }, {"max: axis 5 out of range for 2 dimensions"});
  check_throws_with([&] { var(x, {0, 7}); }, {"var: axis 7 out of range for 2 dimensions"});
  check_throws_with([&] { sum(x, {1, -1}); }, {"sum: an axis is repeated in the reduction of (2,3)"});
  check_throws_with([&] { max(x, {0, 0}); }, {"max: an axis is repeated", "(2,3)"});
}

// ---- reshape, transpose, permute, unsqueeze, squeeze ------------------------------------

TEST_CASE("gradcheck: reshape (incl. -1), unsqueeze, squeeze (one axis and all)") {
  // a fixed weight after each shape op, so that every output element has its own gradient
  const D w24 = input({24}, 241).detach();
  const auto weighted = [w24](const D& y) { return mul(reshape(y, {-1}), narrow(w24, 0, 0, y.numel())); };
  grad("reshape", [weighted](const In& in) { return weighted(reshape(in[0], {6, 4})); }, {input({2, 3, 4}, 242)});
  grad("reshape", [weighted](const In& in) { return weighted(reshape(in[0], {4, -1})); }, {input({2, 3, 4}, 243)});
  grad("reshape", [](const In& in) { return reshape(in[0], {-1}); }, {input({3, 2}, 244)});
  grad("reshape", [](const In& in) { return reshape(in[0], {1, -1, 2}); }, {input({2, 3}, 245)});
  grad("reshape",
       [weighted](const In& in) {
         return weighted(reshape(transpose(in[0], 0, 1), {2, 3}));
       },
       {input({2, 3}, 246)});
  grad("unsqueeze", [weighted](const In& in) { return weighted(unsqueeze(in[0], 0)); }, {input({2, 3}, 247)});
  grad("unsqueeze", [](const In& in) { return unsqueeze(in[0], -1); }, {input({2, 3}, 248)});
  grad("unsqueeze", [](const In& in) { return unsqueeze(in[0], 1); }, {input({2, 3}, 249)});
  grad("squeeze", [weighted](const In& in) { return weighted(squeeze(in[0], 1)); }, {input({2, 1, 3}, 250)});
  grad("squeeze", [](const In& in) { return squeeze(in[0], -1); }, {input({3, 1}, 251)});
  grad("squeeze", [weighted](const In& in) { return weighted(squeeze(in[0])); }, {input({1, 2, 1, 3}, 252)});
}

TEST_CASE("forward: reshape with -1 infers the size, unsqueeze and squeeze shapes") {
  const D x = iota({2, 3});
  check_values(reshape(x, {-1}), {6}, {1, 2, 3, 4, 5, 6});
  check_values(reshape(x, {3, -1}), {3, 2}, {1, 2, 3, 4, 5, 6});
  check_values(reshape(x, {1, -1, 3}), {1, 2, 3}, {1, 2, 3, 4, 5, 6});
  check_values(reshape(x, {6, 1}), {6, 1}, {1, 2, 3, 4, 5, 6});
  check_values(reshape(make({1}, {5}), {}), {}, {5});
  check_values(unsqueeze(x, 0), {1, 2, 3}, {1, 2, 3, 4, 5, 6});
  check_values(unsqueeze(x, -1), {2, 3, 1}, {1, 2, 3, 4, 5, 6});
  check_values(unsqueeze(x, 1), {2, 1, 3}, {1, 2, 3, 4, 5, 6});
  const D y = iota({1, 2, 1, 3, 1});
  check_values(squeeze(y), {2, 3}, {1, 2, 3, 4, 5, 6});
  check_values(squeeze(y, 2), {1, 2, 3, 1}, {1, 2, 3, 4, 5, 6});
  check_values(squeeze(y, -1), {1, 2, 1, 3}, {1, 2, 3, 4, 5, 6});
  check_values(squeeze(make({1, 1}, {7})), {}, {7});
}

TEST_CASE("errors: reshape of the wrong size, squeeze of a non-1 axis, bad axes") {
  const D x = iota({2, 3});
  check_throws_with([&] { reshape(x, {4, 2}); }, {"reshape: cannot reshape (2,3) into (4,2)"});
  check_throws_with([&] { reshape(x, {4, -1}); }, {"reshape: cannot reshape (2,3) into (4,-1)"});
  check_throws_with([&] { reshape(x, {7}); }, {"reshape: cannot reshape (2,3) into (7)"});
  check_throws_with([&] { reshape(x, {-1, -1}); }, {"reshape: only one dimension can be -1"});
  check_throws_with([&] { reshape(x, {-2, 3}); }, {"reshape", "-2"});
  check_throws_with([&] { squeeze(x, 0); }, {"squeeze: axis 0 of (2,3) has size 2, not 1"});
  check_throws_with([&] { squeeze(x, 2); }, {"squeeze: axis 2 out of range for 2 dimensions"});
  check_throws_with([&] { unsqueeze(x, 3); }, {"unsqueeze: axis 3 out of range for 3 dimensions"});
  check_throws_with([&] { unsqueeze(x, -4); }, {"unsqueeze: axis -4 out of range for 3 dimensions"});
}

TEST_CASE("gradcheck: transpose and permute (incl. negative axes)") {
  const D w = input({24}, 261).detach();
  const auto weighted = [w](const D& y) { return mul(reshape(y, {-1}), narrow(w, 0, 0, y.numel())); };
  grad("transpose", [weighted](const In& in) { return weighted(transpose(in[0], 0, 2)); }, {input({2, 3, 4}, 262)});
  grad("transpose", [weighted](const In& in) { return weighted(transpose(in[0], -1, -2)); }, {input({2, 3, 4}, 263)});
  grad("transpose", [](const In& in) { return transpose(in[0], 0, 1); }, {input({1, 3}, 264)});
  grad("permute", [weighted](const In& in) { return weighted(permute(in[0], {2, 0, 1})); }, {input({2, 3, 4}, 265)});
  grad("permute", [weighted](const In& in) { return weighted(permute(in[0], {-1, 0, -2})); }, {input({2, 3, 4}, 266)});
  grad("permute", [](const In& in) { return permute(permute(in[0], {1, 2, 0}), {2, 0, 1}); }, {input({2, 1, 3}, 267)});
}

TEST_CASE("forward: transpose and permute values, errors name the op and shape") {
  const D x = iota({2, 3});
  check_values(transpose(x, 0, 1), {3, 2}, {1, 4, 2, 5, 3, 6});
  check_values(transpose(x, -1, 0), {3, 2}, {1, 4, 2, 5, 3, 6});
  check_values(transpose(x, 1, 1), {2, 3}, {1, 2, 3, 4, 5, 6});
  const D y = iota({2, 3, 4});
  const D p = permute(y, {2, 0, 1});  // p[k][i][j] = y[i][j][k] = 12 i + 4 j + k + 1
  REQUIRE(p.shape() == Shape{4, 2, 3});
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 4; ++k) CHECK(p.data()(k, i, j) == double(12 * i + 4 * j + k + 1));
  check_values(permute(y, {0, 1, 2}), {2, 3, 4}, std::vector<double>(y.data().begin(), y.data().end()));
  check_throws_with([&] { permute(y, {1, 0}); }, {"permute: order has 2 axes for shape (2,3,4)"});
  check_throws_with([&] { permute(y, {0, 1, 1}); }, {"permute: axis repeated"});
  check_throws_with([&] { permute(y, {0, 1, -2}); }, {"permute: axis repeated"});
  check_throws_with([&] { permute(y, {0, 1, 3}); }, {"permute: axis 3 out of range for 3 dimensions"});
  check_throws_with([&] { transpose(x, 0, 2); }, {"transpose: axis 2 out of range for 2 dimensions"});
}

// ---- expand -----------------------------------------------------------------------------

TEST_CASE("gradcheck: expand of size-1 axes, new leading axes and -1") {
  const D w = input({24}, 271).detach();
  const auto weighted = [w](const D& y) { return mul(reshape(y, {-1}), narrow(w, 0, 0, y.numel())); };
  grad("expand", [weighted](const In& in) { return weighted(expand(in[0], {3, 4})); }, {input({3, 1}, 272)});
  grad("expand", [weighted](const In& in) { return weighted(expand(in[0], {2, 2, 3})); }, {input({1, 3}, 273)});
  grad("expand", [weighted](const In& in) { return weighted(expand(in[0], {2, 3})); }, {input({3}, 274)});
  grad("expand", [weighted](const In& in) { return weighted(expand(in[0], {-1, 3})); }, {input({2, 1}, 275)});
  grad("expand", [weighted](const In& in) { return weighted(expand(in[0], {2, -1, 4})); }, {input({3, 1}, 276)});
  grad("expand", [](const In& in) { return expand(in[0], {2, 3}); }, {input({2, 3}, 277)});  // no-op
  grad("expand",
       [weighted](const In& in) {
         return weighted(expand(transpose(in[0], 0, 1), {2, 3, 2}));
       },
       {input({2, 1}, 278)});
}

TEST_CASE("forward: expand values and summed gradient, errors name both shapes") {
  D x = make({2, 1}, {1, 2}, true);
  const D y = expand(x, {2, 3});
  check_values(y, {2, 3}, {1, 1, 1, 2, 2, 2});
  check_values(expand(make({3}, {1, 2, 3}), {2, -1}), {2, 3}, {1, 2, 3, 1, 2, 3});
  check_values(expand(make({1}, {4}), {2, 2}), {2, 2}, {4, 4, 4, 4});
  sum(mul(y, make({2, 3}, {1, 2, 3, 4, 5, 6}))).backward();
  check_array(x.grad(), {2, 1}, {6, 15});
  const D z = iota({2, 3});
  check_throws_with([&] { expand(z, {5, 3}); }, {"expand: cannot expand (2,3) to (5,3)"});
  check_throws_with([&] { expand(z, {2, 4}); }, {"expand: cannot expand (2,3) to (2,4)"});
  check_throws_with([&] { expand(z, {3}); }, {"expand: cannot expand (2,3) to (3)"});
  check_throws_with([&] { expand(z, {-1, 2, 3}); }, {"expand", "-1", "(-1,2,3)"});
}

// ---- concat -----------------------------------------------------------------------------

TEST_CASE("gradcheck: concat of 2 and 3 inputs along axes 0, 1, -1") {
  grad("concat",
       [](const In& in) {
         return concat<double>({in[0], in[1]}, 0);
       },
       {input({2, 3}, 281), input({1, 3}, 282)});
  grad("concat",
       [](const In& in) {
         return concat<double>({in[0], in[1]}, 1);
       },
       {input({2, 3}, 283), input({2, 1}, 284)});
  grad("concat",
       [](const In& in) {
         return concat<double>({in[0], in[1], in[2]}, 1);
       },
       {input({2, 1, 2}, 285), input({2, 3, 2}, 286), input({2, 2, 2}, 287)});
  grad("concat",
       [](const In& in) {
         return concat<double>({in[0], in[1], in[2]}, -1);
       },
       {input({2, 2}, 288), input({2, 3}, 289), input({2, 1}, 290)});
  grad("concat",
       [](const In& in) {
         return concat<double>({in[0], in[1], in[2]}, 0);
       },
       {input({1, 2, 2}, 291), input({2, 2, 2}, 292), input({1, 2, 2}, 293)});
  // a transposed input, and the same tensor twice (its gradient is the sum of both parts)
  grad("concat",
       [](const In& in) {
         return concat<double>({transpose(in[0], 0, 1), in[1]}, 0);
       },
       {input({3, 2}, 294), input({1, 3}, 295)});
  grad("concat",
       [](const In& in) {
         return mul(concat<double>({in[0], in[0]}, 1), in[1]);
       },
       {input({2, 2}, 296), input({2, 4}, 297)});
}

TEST_CASE("forward: concat values along axes 0 and 1, errors name both shapes") {
  const D a = make({2, 2}, {1, 2, 3, 4});
  const D b = make({1, 2}, {5, 6});
  const D c = make({2, 1}, {7, 8});
  check_values(concat<double>({a, b}, 0), {3, 2}, {1, 2, 3, 4, 5, 6});
  check_values(concat<double>({b, a, b}, 0), {4, 2}, {5, 6, 1, 2, 3, 4, 5, 6});
  check_values(concat<double>({a, c}, 1), {2, 3}, {1, 2, 7, 3, 4, 8});
  check_values(concat<double>({c, a, c}, -1), {2, 4}, {7, 1, 2, 7, 8, 3, 4, 8});
  check_values(concat<double>({make({2}, {1, 2}), make({3}, {3, 4, 5})}), {5}, {1, 2, 3, 4, 5});
  check_throws_with([&] { concat<double>({a, b}, 1); }, {"concat: shapes (2,2) and (1,2) differ outside axis 1"});
  check_throws_with([&] { concat<double>({a, c}, 0); }, {"concat: shapes (2,2) and (2,1) differ outside axis 0"});
  check_throws_with([&] { concat<double>({a, make({2}, {1, 2})}, 0); }, {"concat", "(2,2)", "(2)"});
  check_throws_with([&] { concat<double>({a, b}, 2); }, {"concat: axis 2 out of range for 2 dimensions"});
  check_throws_with([&] { concat<double>({}, 0); }, {"concat: no tensors"});
}

// ---- narrow, slice, index_select ---------------------------------------------------------

TEST_CASE("gradcheck: narrow and slice along several axes") {
  grad("narrow", [](const In& in) { return narrow(in[0], 0, 1, 2); }, {input({4, 3}, 301)});
  grad("narrow", [](const In& in) { return narrow(in[0], -1, 1, 3); }, {input({2, 3, 4}, 302)});
  grad("narrow", [](const In& in) { return narrow(in[0], 1, 0, 1); }, {input({2, 3, 2}, 303)});
  grad("slice", [](const In& in) { return slice(in[0], 1, 1, 3); }, {input({2, 3, 2}, 304)});
  grad("slice", [](const In& in) { return slice(in[0], 0, 0, 2); }, {input({2, 3}, 305)});
  grad("slice", [](const In& in) { return slice(permute(in[0], {2, 0, 1}), -1, 2, 3); }, {input({2, 3, 4}, 306)});
}

TEST_CASE("forward: narrow and slice values and gradients, out-of-range errors") {
  D x = iota({3, 4}, true);
  const D n = narrow(x, 1, 1, 2);
  check_values(n, {3, 2}, {2, 3, 6, 7, 10, 11});
  check_values(narrow(x, 0, 2, 1), {1, 4}, {9, 10, 11, 12});
  check_values(slice(x, -1, 3, 4), {3, 1}, {4, 8, 12});
  check_values(slice(x, 0, 0, 2), {2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  check_values(slice(x, 1, 2, 2), {3, 0}, {});
  sum(mul(n, make({3, 2}, {1, 2, 3, 4, 5, 6}))).backward();
  check_array(x.grad(), {3, 4}, {0, 1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0});
  check_throws_with([&] { narrow(x, 1, 2, 3); }, {"narrow: range [2, 5) out of bounds for axis 1 of (3,4)"});
  check_throws_with([&] { narrow(x, 0, 4, 0); }, {"narrow", "(3,4)"});
  check_throws_with([&] { slice(x, 0, 1, 5); }, {"narrow: range [1, 5) out of bounds for axis 0 of (3,4)"});
  check_throws_with([&] { slice(x, 0, 2, 1); }, {"slice: stop 1 is before start 2"});
  check_throws_with([&] { narrow(x, 2, 0, 1); }, {"narrow: axis 2 out of range for 2 dimensions"});
}

TEST_CASE("gradcheck: index_select along several axes, with repeated indices") {
  grad("index_select", [](const In& in) { return index_select(in[0], 0, {2, 0, 2}); }, {input({3, 4}, 311)});
  grad("index_select", [](const In& in) { return index_select(in[0], 1, {1, 1, 0, 2}); }, {input({2, 3, 2}, 312)});
  grad("index_select", [](const In& in) { return index_select(in[0], -1, {3, 0}); }, {input({2, 4}, 313)});
  grad("index_select", [](const In& in) { return index_select(in[0], 0, {0, 0, 0}); }, {input({1, 3}, 314)});
  grad("index_select",
       [](const In& in) {
         return index_select(transpose(in[0], 0, 1), 0, {1, 0, 1});
       },
       {input({3, 2}, 315)});
  // the same row chosen twice under different weights: the scatter-add must keep both
  grad("index_select",
       [](const In& in) {
         return mul(index_select(in[0], 0, {1, 1, 0}), in[1]);
       },
       {input({2, 3}, 316), input({3, 3}, 317)});
}

TEST_CASE("forward: index_select as an embedding lookup, repeated indices scatter-add, errors") {
  D weight = make({4, 2}, {0, 1, 10, 11, 20, 21, 30, 31}, true);
  const D e = index_select(weight, 0, {3, 0, 3, 2});
  check_values(e, {4, 2}, {30, 31, 0, 1, 30, 31, 20, 21});
  sum(mul(e, make({4, 2}, {1, 2, 3, 4, 5, 6, 7, 8}))).backward();
  check_array(weight.grad(), {4, 2}, {3, 4, 0, 0, 7, 8, 1 + 5, 2 + 6});
  const D x = iota({2, 3});
  check_values(index_select(x, 1, {2, 2, 0}), {2, 3}, {3, 3, 1, 6, 6, 4});
  check_values(index_select(x, 1, {}), {2, 0}, {});
  check_throws_with([&] { index_select(x, 0, {0, 2}); }, {"index_select: index 2 out of range for axis 0 of size 2"});
  check_throws_with([&] { index_select(x, -1, {3}); }, {"index_select: index 3 out of range for axis 1 of size 3"});
  check_throws_with([&] { index_select(x, 2, {0}); }, {"index_select: axis 2 out of range for 2 dimensions"});
}
