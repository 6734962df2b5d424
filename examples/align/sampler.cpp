#include "sampler.hpp"

#include <stdexcept>

namespace align {

BatchPrefetcher::BatchPrefetcher(const std::vector<Example>& data, const BatchSampler& sampler,
                                 const common::Ranks& ranks, bool ahead)
    : data_(data), ahead_(sampler), ranks_(ranks), launch_(ahead ? std::launch::async : std::launch::deferred) {
  start();
}

void BatchPrefetcher::start() {
  pending_ = std::async(launch_, [this, global = ahead_.next()]() mutable {
    const common::Share share = common::share_of_batch(global.size(), ranks_);
    std::vector<std::size_t> mine(global.begin() + long(share.first), global.begin() + long(share.first + share.count));
    return RankBatch{std::move(global), make_batch<float>(data_, std::move(mine))};
  });
}

RankBatch BatchPrefetcher::next(BatchSampler& run_sampler) {
  RankBatch batch = pending_.get();
  if (run_sampler.next() != batch.global)
    throw std::logic_error("BatchPrefetcher: the prefetched batch is not the run sampler's next one");
  start();
  return batch;
}

}  // namespace align
