// xtgrad::distributed's collectives and the differentiable all_gather, on however many
// ranks mpiexec started (2 and 3 in ctest). Each rank checks its own results.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <xtensor/xview.hpp>

#include "distributed_test_helpers.hpp"
#include "xtgrad/distributed.hpp"
#include "xtgrad/nn.hpp"

using namespace xtgrad;
namespace dist = xtgrad::distributed;
using xtgrad::testing::first_row;
using xtgrad::testing::split_rows;

namespace {
using D = Tensor<double>;

// A value that depends on the rank, so that sums and gathers are checked per rank.
Array<double> rank_values(const Shape& shape, int r) {
  Array<double> a = Array<double>::from_shape(shape);
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = 0.5 * static_cast<double>(i) + 10.0 * r;
  return a;
}

template <class Fn> std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("distributed: broadcast, all_reduce and all_gather over arrays") {
  const int r = dist::rank(), n = dist::world_size();
  REQUIRE(n >= 2);
  Array<double> b = rank_values({2, 3}, r);
  dist::broadcast(b, 1);
  CHECK(b == rank_values({2, 3}, 1));

  Array<float> s = xt::cast<float>(rank_values({4}, r));
  dist::all_reduce(s);
  const double rank_sum = n * (n - 1) / 2.0;
  for (std::size_t i = 0; i < 4; ++i) CHECK(s(i) == doctest::Approx(n * 0.5 * i + 10.0 * rank_sum));
  Array<double> a = rank_values({4}, r);
  dist::all_reduce(a, dist::ReduceOp::avg);
  for (std::size_t i = 0; i < 4; ++i) CHECK(a(i) == doctest::Approx(0.5 * i + 10.0 * rank_sum / n).epsilon(1e-14));

  const auto rows = split_rows(12, static_cast<std::size_t>(n));
  const Array<double> gathered = dist::all_gather(rank_values({rows[r], 2}, r));
  REQUIRE(gathered.shape() == std::vector<std::size_t>{12, 2});
  std::size_t first = 0;
  for (int q = 0; q < n; ++q) {
    CHECK(Array<double>(xt::view(gathered, xt::range(first, first + rows[q]))) == rank_values({rows[q], 2}, q));
    first += rows[q];
  }
}

TEST_CASE("distributed: shapes that differ between ranks are refused on every rank") {
  const int r = dist::rank();
  Array<double> x = Array<double>::from_shape({r == 1 ? 3u : 2u, 2});
  x.fill(1.0);
  const std::string reduce_error = error_of([&] { dist::all_reduce(x); });
  CHECK(reduce_error.find("all_reduce: rank 1 has shape (3,2) but rank 0 has (2,2)") != std::string::npos);
  CHECK(error_of([&] { dist::broadcast(x); }).find("broadcast: rank 1 has shape (3,2)") != std::string::npos);
  Array<double> y = Array<double>::from_shape({2, r == 1 ? 4u : 2u});
  CHECK(error_of([&] { dist::all_gather(y); }).find("all_gather: rank 1 has shape (2,4)") != std::string::npos);
  CHECK(error_of([&] { dist::broadcast(y, 7); }).find("root 7 outside") != std::string::npos);
  // Uneven rows are fine for all_gather.
  CHECK(dist::all_gather(x).shape()[0] == 2 * static_cast<std::size_t>(dist::world_size()) + 1);
}

// A contrastive loss over the gathered batch (as CLIP's over all GPUs): every rank's
// embeddings z = tanh(x W) (n_r, 3) scored against everyone's, cross-entropy towards the
// row itself. The sum over ranks of the per-rank losses, and of their gradients in W, must
// be one process's over the whole batch.
TEST_CASE("distributed: all_gather's forward and backward match one process") {
  const int r = dist::rank(), n = dist::world_size();
  const std::size_t b = 12;
  const auto rows = split_rows(b, static_cast<std::size_t>(n));
  const std::size_t first = first_row(rows, r);
  Generator gen(7);  // the same data and weight on every rank
  const D x_all = randn<double>({b, 4}, gen);
  const Array<double> w_init = randn<double>({4, 3}, gen).data();
  std::vector<std::size_t> targets(b);
  std::iota(targets.begin(), targets.end(), 0);

  // One process: every row against every row.
  D w_ref(w_init, true);
  const D z_all = tanh(matmul(x_all, w_ref));
  D loss_ref = mul(cross_entropy(matmul(z_all, transpose(z_all, 0, 1)), targets), double(b));  // summed
  loss_ref.backward();

  // This rank: its own rows against the gathered batch.
  D w(w_init, true);
  const D z = tanh(matmul(slice(x_all, 0, first, first + rows[r]), w));
  const D gathered = dist::all_gather(z);
  CHECK(gathered.shape() == Shape{b, 3});
  CHECK(xt::allclose(gathered.data(), z_all.data(), 0, 1e-15));
  const std::vector<std::size_t> my_targets(targets.begin() + first, targets.begin() + first + rows[r]);
  D loss = mul(cross_entropy(matmul(z, transpose(gathered, 0, 1)), my_targets), double(rows[r]));
  loss.backward();

  Array<double> loss_sum = loss.data(), grad_sum = w.grad();
  dist::all_reduce(loss_sum);
  dist::all_reduce(grad_sum);
  CHECK(loss_sum() == doctest::Approx(loss_ref.item()).epsilon(1e-12));
  const double scale = xt::amax(xt::abs(w_ref.grad()))();
  CHECK(xt::amax(xt::abs(grad_sum - w_ref.grad()))() <= 1e-12 * scale);
}
