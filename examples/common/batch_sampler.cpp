#include "batch_sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "flags.hpp"

namespace common {

BatchSampler::BatchSampler(std::size_t n, std::size_t batch, std::uint64_t seed)
    : n_(n), batch_(batch), gen_(seed), order_(n) {
  shuffle();
}

void BatchSampler::shuffle() {
  std::iota(order_.begin(), order_.end(), std::size_t(0));
  for (std::size_t i = n_; i > 1; --i) std::swap(order_[i - 1], order_[gen_.below(i)]);  // Fisher-Yates
  position_ = 0;
}

std::vector<std::size_t> BatchSampler::next() {
  if (position_ + batch_ > n_) shuffle();
  std::vector<std::size_t> batch(order_.begin() + long(position_), order_.begin() + long(position_ + batch_));
  position_ += batch_;
  return batch;
}

xtgrad::Metadata BatchSampler::state() const {
  return {{"sampler.generator", gen_.state()}, {"sampler.position", std::to_string(position_)}};
}

xtgrad::Array<float> BatchSampler::order() const {
  xtgrad::Array<float> out(xtgrad::Shape{n_});
  std::copy(order_.begin(), order_.end(), out.begin());  // indices < 2^24: exact in float
  return out;
}

void BatchSampler::restore(const xtgrad::Metadata& state, const xtgrad::Array<float>& order) {
  if (order.size() != n_)
    throw std::invalid_argument("sampler order has " + std::to_string(order.size()) + " entries for " +
                                std::to_string(n_) + " examples");
  std::vector<std::size_t> restored(n_), seen(n_, 0);
  for (std::size_t i = 0; i < n_; ++i) {
    const float v = order.data()[i];
    if (!(v >= 0 && v < float(n_)) || v != std::floor(v) || seen[std::size_t(v)]++)
      throw std::invalid_argument("sampler order is not a permutation");
    restored[i] = std::size_t(v);
  }
  const auto found = state.find("sampler.position"), generator = state.find("sampler.generator");
  if (found == state.end()) throw std::invalid_argument("missing 'sampler.position'");
  if (generator == state.end()) throw std::invalid_argument("missing 'sampler.generator'");
  const std::size_t position = parse_count(found->second, 0, n_);
  xtgrad::Generator gen = gen_;
  gen.set_state(generator->second);  // may throw: gen_ is not changed
  gen_ = gen;
  order_ = std::move(restored);
  position_ = position;
}

}  // namespace common
