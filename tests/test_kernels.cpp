// The internal loops the ops share (autograd/src/kernels.hpp): the float exponential
// against std::exp in double, its special values, row softmax with masked rows and its
// backward, the float GELU against the double one, its Phi in the negative tail, and the
// order of the float kernels' row sums.
#include "helpers.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../autograd/src/kernels.hpp"

using namespace xtgrad;

TEST_CASE("kernels: float exp within 2 ulp of exp in double over [-87, 88]") {
  std::vector<float> x;
  for (double v = -87.0; v <= 88.0; v += 0.0013) x.push_back(float(v));
  for (float v : {0.0f, -0.0f, 1e-8f, -1e-8f, 0.5f, -0.5f, 1.0f, -1.0f}) x.push_back(v);
  std::vector<float> y = x;
  kernels::exp_in_place(y.data(), y.size());  // 134,623 values: the vector loop and a tail
  double worst_ulps = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double exact = std::exp(double(x[i]));
    const double ulp = std::nextafter(float(exact), std::numeric_limits<float>::infinity()) - float(exact);
    worst_ulps = std::max(worst_ulps, std::abs(double(y[i]) - exact) / ulp);
  }
  MESSAGE("float exp: largest error ", worst_ulps, " ulp over ", x.size(), " arguments");
  CHECK(worst_ulps <= 2.0);
  CHECK(y[x.size() - 8] == 1.0f);  // exp(0) is exactly 1
}

TEST_CASE("kernels: float exp of -inf, large negative, large positive and NaN") {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {-inf, -1000.0f, -88.0f, 89.0f, 1000.0f, inf, std::nanf(""), 88.3f, -87.3f};
  kernels::exp_in_place(x.data(), x.size());
  CHECK(x[0] == 0.0f);
  CHECK(x[1] == 0.0f);
  CHECK(x[2] == 0.0f);  // subnormal in float: flushed
  CHECK(x[3] == inf);
  CHECK(x[4] == inf);
  CHECK(x[5] == inf);
  CHECK(std::isnan(x[6]));
  CHECK(x[7] == doctest::Approx(std::exp(double(88.3f))).epsilon(1e-6));
  CHECK(x[8] == doctest::Approx(std::exp(double(-87.3f))).epsilon(1e-6));
}

TEST_CASE("kernels: softmax_rows: rows sum to 1, -inf entries get 0, an all -inf row gives zeros") {
  const float inf = std::numeric_limits<float>::infinity();
  // 3 rows of 5: plain, one masked entry, all masked
  std::vector<float> x = {1, 2, 3, 4, 5, 0, -inf, 0, 0, 1000, -inf, -inf, -inf, -inf, -inf};
  kernels::softmax_rows(x.data(), 3, 5);
  double total = 0, expected_total = 0;
  for (int j = 0; j < 5; ++j) total += x[j], expected_total += std::exp(double(j) - 4.0);
  CHECK(total == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(x[4] == doctest::Approx(1.0 / expected_total).epsilon(1e-6));
  CHECK(x[6] == 0.0f);
  CHECK(x[9] == 1.0f);  // exp(0 - 1000) = 0 for the others
  for (int j = 10; j < 15; ++j) CHECK(x[j] == 0.0f);
}

TEST_CASE("kernels: sum_of adds exactly for integers, and in its documented order for floats") {
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 64u, 1001u}) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = double(i + 1);
    CHECK(kernels::sum_of<double>(n, [&](std::size_t i) { return v[i]; }) == double(n * (n + 1) / 2));
  }
  // Values whose float sum depends on the order: lane j of eight takes terms j, j + 8, ...;
  // then the lanes in pairs ((0+1)+(2+3))+((4+5)+(6+7)); then the tail in turn.
  const std::size_t n = 1003;
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = 1.0f / float(i + 1) + (i % 3 == 0 ? 1000.0f : 0.0f);
  float lane[8] = {};
  for (std::size_t i = 0; i + 8 <= n; i += 8)
    for (std::size_t j = 0; j < 8; ++j) lane[j] += v[i + j];
  float expected = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  for (std::size_t i = n - n % 8; i < n; ++i) expected += v[i];
  float in_turn = 0;
  for (float x : v) in_turn += x;
  REQUIRE(in_turn != expected);  // the data can tell the orders apart
  CHECK(kernels::sum_of<float>(n, [&](std::size_t i) { return v[i]; }) == expected);
}

TEST_CASE("kernels: float gelu and its gradient match the double ones to float precision") {
  Array<double> xd = xt::linspace<double>(-9.0, 9.0, 2001);
  Array<float> xf = xt::cast<float>(xd);
  Tensor<double> td(Array<double>(xt::cast<double>(xf)), true);  // the same arguments in double
  Tensor<float> tf(xf, true);
  sum(gelu(td)).backward();
  const Tensor<float> yf = gelu(tf);
  sum(yf).backward();
  const Tensor<double> yd = gelu(Tensor<double>(td.data()));
  double worst_value = 0, worst_grad = 0;
  for (std::size_t i = 0; i < xf.size(); ++i) {
    worst_value =
        std::max(worst_value, std::abs(double(yf.data()(i)) - yd.data()(i)) / std::max(1.0, std::abs(yd.data()(i))));
    worst_grad = std::max(worst_grad, std::abs(double(tf.grad()(i)) - td.grad()(i)));
  }
  MESSAGE("float gelu vs double: value ", worst_value, " relative (absolute below 1), gradient ", worst_grad,
          " absolute");
  CHECK(worst_value < 1e-6);
  CHECK(worst_grad < 1e-6);
}

TEST_CASE("kernels: float Phi keeps its relative accuracy in the negative tail, where 1 + erf has none") {
  std::vector<float> x, y, cdf;
  for (double v = -13.0; v <= 6.0; v += 0.00371) x.push_back(float(v));  // 5,122 values: vector loop and tail
  y.resize(x.size());
  cdf.resize(x.size());
  kernels::gelu_forward(x.data(), y.data(), cdf.data(), x.size());
  double worst_core = 0, worst_tail = 0;  // relative errors over [-3, 6] and [-13, -3)
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double exact = 0.5 * std::erfc(-double(x[i]) / std::sqrt(2.0));
    double& worst = x[i] >= -3.0f ? worst_core : worst_tail;
    worst = std::max(worst, std::abs(double(cdf[i]) - exact) / exact);
    REQUIRE(y[i] == x[i] * cdf[i]);
  }
  MESSAGE("float Phi: largest relative error ", worst_core, " over [-3, 6], ", worst_tail, " over [-13, -3)");
  CHECK(worst_core < 1e-6);
  // Phi(-13) = 6e-39, where 1 + erf in float has been 0 since about -5.5. The error grows
  // as x^2 here: exp's argument, about -x^2 / 2, is rounded to float.
  CHECK(worst_tail < 3e-5);
}

TEST_CASE("kernels: softmax_backward_rows against the formula in double, rows apart by a stride") {
  const std::size_t rows = 5, len = 19, stride = 23;  // len not a multiple of 8: partial sums and a tail
  std::vector<float> p(rows * stride, 0.0f), ds(rows * stride, 7.0f);
  Generator gen(3);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < len; ++j)
      p[r * stride + j] = float(gen.uniform()), ds[r * stride + j] = float(gen.normal());
  const std::vector<float> dp = ds;
  kernels::softmax_backward_rows(p.data(), ds.data(), rows, len, stride, 0.25f);
  for (std::size_t r = 0; r < rows; ++r) {
    double dot = 0;
    for (std::size_t j = 0; j < len; ++j) dot += double(dp[r * stride + j]) * p[r * stride + j];
    for (std::size_t j = 0; j < len; ++j) {
      const std::size_t at = r * stride + j;
      CHECK(ds[at] == doctest::Approx(0.25 * p[at] * (dp[at] - dot)).epsilon(1e-5).scale(1e-6));
    }
    for (std::size_t j = len; j < stride && r + 1 < rows; ++j)
      CHECK(ds[r * stride + j] == 7.0f);  // between rows: untouched
  }
}

TEST_CASE("kernels: max_of skips NaN and is -inf for nothing") {
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> v = {nan, 1, 2, -inf, 9, 3, nan, 4, 5, 0, 8.5f, nan};
  CHECK(kernels::max_of<float>(v.size(), [&](std::size_t i) { return v[i]; }) == 9.0f);
  CHECK(kernels::max_of<float>(0, [&](std::size_t i) { return v[i]; }) == -inf);
  CHECK(kernels::max_of<float>(1, [&](std::size_t i) { return v[i]; }) == -inf);  // only NaN
}

TEST_CASE("kernels: transpose moves every element, full tiles and ragged edges, with row strides") {
  for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{1, 1}, {16, 16}, {37, 21}, {64, 16}, {5, 40}}) {
    const std::size_t lda = cols + 3, ldb = rows + 2;
    std::vector<float> a(rows * lda), b(cols * ldb, -1.0f);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(i);
    kernels::transpose(rows, cols, a.data(), lda, b.data(), ldb);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) REQUIRE(b[c * ldb + r] == a[r * lda + c]);
    for (std::size_t c = 0; c < cols; ++c)
      for (std::size_t r = rows; r < ldb; ++r) REQUIRE(b[c * ldb + r] == -1.0f);  // the padding is untouched
  }
}

// The float kernels add their rows with eight-lane vectors; these must give sum_of's bits
// (training runs are compared bit for bit across builds and instruction sets).
TEST_CASE("kernels: float softmax, layer norm and their backwards add rows in sum_of's order, bit for bit") {
  Generator gen(5);
  const auto sum = [](const float* x, std::size_t n) {
    return kernels::sum_of<float>(n, [x](std::size_t i) { return x[i]; });
  };
  for (std::size_t len : {3u, 8u, 16u, 19u, 64u}) {
    const std::size_t rows = 19;  // layer norm: two blocks of eight rows and three alone
    std::vector<float> x(rows * len), dp(rows * len);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(4.0 * gen.normal()), dp[i] = float(gen.normal());
    std::vector<float> p = x;
    kernels::softmax_rows(p.data(), rows, len);
    std::vector<float> ds = dp;
    kernels::softmax_backward_rows(p.data(), ds.data(), rows, len, len, 0.5f);
    std::vector<float> mean(rows), rstd(rows), y(x.size()), gx(x.size());
    kernels::layer_norm_rows(x.data(), y.data(), nullptr, nullptr, mean.data(), rstd.data(), rows, len, 1e-5f);
    kernels::layer_norm_rows_backward(x.data(), dp.data(), nullptr, mean.data(), rstd.data(), gx.data(), nullptr,
                                      nullptr, rows, len);
    for (std::size_t r = 0; r < rows; ++r) {
      const float* xr = x.data() + r * len;
      std::vector<float> e(xr, xr + len);
      const float peak = kernels::max_of<float>(len, [xr](std::size_t j) { return xr[j]; });
      for (float& v : e) v -= peak;
      kernels::exp_in_place(e.data(), len);
      const float inv = 1.0f / sum(e.data(), len);
      std::vector<float> dot_terms(len);
      for (std::size_t j = 0; j < len; ++j) dot_terms[j] = dp[r * len + j] * (e[j] * inv);
      const float dot = sum(dot_terms.data(), len);
      const float m = sum(xr, len) / float(len);
      std::vector<float> squares(len);
      for (std::size_t j = 0; j < len; ++j) squares[j] = (xr[j] - m) * (xr[j] - m);
      for (std::size_t j = 0; j < len; ++j) {
        const float pj = e[j] * inv;
        REQUIRE(p[r * len + j] == pj);
        REQUIRE(ds[r * len + j] == 0.5f * pj * (dp[r * len + j] - dot));
      }
      REQUIRE(mean[r] == m);
      REQUIRE(rstd[r] == 1.0f / std::sqrt(sum(squares.data(), len) / float(len) + 1e-5f));
      // layer norm's backward (no weight: dxhat = g) adds g and g * xhat
      std::vector<float> xhat(len), g_xhat(len);
      for (std::size_t j = 0; j < len; ++j) xhat[j] = (xr[j] - m) * rstd[r], g_xhat[j] = dp[r * len + j] * xhat[j];
      const float mean_g = sum(dp.data() + r * len, len) / float(len);
      const float mean_g_xhat = sum(g_xhat.data(), len) / float(len);
      for (std::size_t j = 0; j < len; ++j)
        REQUIRE(gx[r * len + j] == rstd[r] * (dp[r * len + j] - mean_g - xhat[j] * mean_g_xhat));
    }
  }
}

// The float softmax and its backward take rows of 16 sixteen at a time (kernels_softmax.cpp);
// a row at a time in the order of max_of and sum_of, they must give the same bits (NaN
// where it gives NaN). Rows: random, with -inf entries, all -inf, with NaN, huge, maxima of
// +0 and -0; counts around the block of 16; backward rows a stride apart.
TEST_CASE("kernels: float softmax and its backward on rows of 16 give the row-at-a-time bits") {
  const float inf = std::numeric_limits<float>::infinity();
  const auto bits = [](float v) {  // every NaN alike: which NaN an operation passes on is the compiler's choice
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return v != v ? 0x7fc00000u : u;
  };
  const auto row_softmax = [](float* x) {  // the reference, one row of 16
    const float peak = kernels::max_of<float>(16, [x](std::size_t j) { return x[j]; });
    if (peak != -std::numeric_limits<float>::infinity())
      for (int j = 0; j < 16; ++j) x[j] -= peak;
    kernels::exp_in_place(x, 16);
    const float total = kernels::sum_of<float>(16, [x](std::size_t j) { return x[j]; });
    const float inv = total == 0.0f ? 0.0f : 1.0f / total;
    for (int j = 0; j < 16; ++j) x[j] *= inv;
  };
  Generator gen(11);
  for (std::size_t rows : {1u, 15u, 16u, 17u, 33u, 64u}) {
    std::vector<float> x(rows * 16);
    for (float& v : x) v = gen.uniform() < 0.2 ? -inf : float(4.0 * gen.normal());
    const auto row = [&](std::size_t r) { return x.data() + (r % rows) * 16; };
    std::fill_n(row(3), 16, -inf);                                                        // all masked
    row(4)[5] = std::nanf(""), row(4)[9] = -std::nanf("");                                // NaN
    row(5)[2] = 3e38f, row(5)[7] = -3e38f, row(5)[11] = 1e30f;                            // huge
    row(6)[0] = inf;                                                                      // exp(inf - inf)
    for (int j = 0; j < 16; ++j) row(7)[j] = j % 3 ? -float(j) : (j % 2 ? 0.0f : -0.0f);  // max +-0
    for (int j = 0; j < 16; ++j) row(8)[j] = j == 12 ? 0.0f : -inf;                       // one live entry
    std::vector<float> p = x, expected = x;
    kernels::softmax_rows(p.data(), rows, 16);
    for (std::size_t r = 0; r < rows; ++r) row_softmax(expected.data() + r * 16);
    for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(bits(p[i]) == bits(expected[i]));
    if (rows > 3) REQUIRE(p[3 * 16] == 0.0f);  // the all-masked row gives zeros

    for (std::size_t stride : {16u, 40u}) {  // backward: p's rows in a wider buffer
      std::vector<float> pw(rows * stride, 7.0f), ds(rows * stride, 5.0f);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < 16; ++j) {
          pw[r * stride + j] = p[r * 16 + j];
          ds[r * stride + j] = r == 9 && j == 1 ? 1e30f : float(gen.normal());
        }
      std::vector<float> want = ds;
      kernels::softmax_backward_rows(pw.data(), ds.data(), rows, 16, stride, 0.3f);
      for (std::size_t r = 0; r < rows; ++r) {
        const float *pr = pw.data() + r * stride, *dr = want.data() + r * stride;
        const float dot = kernels::sum_of<float>(16, [pr, dr](std::size_t j) { return dr[j] * pr[j]; });
        for (std::size_t j = 0; j < 16; ++j) want[r * stride + j] = 0.3f * pr[j] * (dr[j] - dot);
      }
      for (std::size_t i = 0; i < ds.size(); ++i) REQUIRE(bits(ds[i]) == bits(want[i]));  // gaps untouched
    }
  }
}

// Float layer norm on rows whose length is a multiple of 8 runs eight rows at a time
// forward and in one fused pass a row backward (kernels_layer_norm.cpp); with a weight and
// a bias, and the weight and bias gradients adding on, both must give the bits of the
// formula row by row with sum_of's order.
TEST_CASE("kernels: float layer norm with weight and bias, forward and backward, bit for bit") {
  Generator gen(12);
  for (std::size_t d : {8u, 24u, 64u, 20u}) {
    const std::size_t rows = 13;  // forward: a block of eight rows and five alone
    std::vector<float> x(rows * d), g(rows * d), w(d), bias(d), mean(rows), rstd(rows), y(rows * d);
    for (float& v : x) v = float(3.0 * gen.normal() + 1.0);
    for (float& v : g) v = float(gen.normal());
    for (float& v : w) v = float(gen.normal());
    for (float& v : bias) v = float(gen.normal());
    kernels::layer_norm_rows(x.data(), y.data(), w.data(), bias.data(), mean.data(), rstd.data(), rows, d, 1e-5f);
    for (std::size_t r = 0; r < rows; ++r) {  // the forward, row by row in sum_of's order
      const float* xr = x.data() + r * d;
      const float m = kernels::sum_of<float>(d, [&](std::size_t i) { return xr[i]; }) / float(d);
      const float v = kernels::sum_of<float>(d, [&](std::size_t i) { return (xr[i] - m) * (xr[i] - m); });
      const float s = 1.0f / std::sqrt(v / float(d) + 1e-5f);
      REQUIRE((mean[r] == m && rstd[r] == s));
      for (std::size_t i = 0; i < d; ++i) {
        float want = (xr[i] - m) * s;
        want *= w[i];
        want += bias[i];
        REQUIRE(y[r * d + i] == want);
      }
    }
    std::vector<float> gx(rows * d), gw(d, 0.5f), gb(d, -0.25f);
    std::vector<float> want_gx(rows * d), want_gw = gw, want_gb = gb;
    kernels::layer_norm_rows_backward(x.data(), g.data(), w.data(), mean.data(), rstd.data(), gx.data(), gw.data(),
                                      gb.data(), rows, d);
    for (std::size_t r = 0; r < rows; ++r) {
      const float *xr = x.data() + r * d, *gr = g.data() + r * d;
      std::vector<float> xhat(d), dxhat(d), products(d);
      for (std::size_t i = 0; i < d; ++i) {
        xhat[i] = (xr[i] - mean[r]) * rstd[r], dxhat[i] = gr[i] * w[i], products[i] = dxhat[i] * xhat[i];
        want_gw[i] += gr[i] * xhat[i], want_gb[i] += gr[i];
      }
      const float a = kernels::sum_of<float>(d, [&](std::size_t i) { return dxhat[i]; }) / float(d);
      const float b = kernels::sum_of<float>(d, [&](std::size_t i) { return products[i]; }) / float(d);
      for (std::size_t i = 0; i < d; ++i) want_gx[r * d + i] = rstd[r] * (dxhat[i] - a - xhat[i] * b);
    }
    for (std::size_t i = 0; i < gx.size(); ++i) REQUIRE(gx[i] == want_gx[i]);
    for (std::size_t i = 0; i < d; ++i) REQUIRE((gw[i] == want_gw[i] && gb[i] == want_gb[i]));
    std::vector<float> gw2(d, 0.5f);  // no input gradient: the weight's still adds up
    kernels::layer_norm_rows_backward(x.data(), g.data(), w.data(), mean.data(), rstd.data(), nullptr, gw2.data(),
                                      nullptr, rows, d);
    for (std::size_t i = 0; i < d; ++i) REQUIRE(gw2[i] == want_gw[i]);
  }
}
