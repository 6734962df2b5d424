#include "sampler.hpp"

#include <stdexcept>

namespace align {

BatchPrefetcher::BatchPrefetcher(const std::vector<Example>& data, const BatchSampler& sampler)
    : data_(data), ahead_(sampler) {
  start();
}

void BatchPrefetcher::start() {
  pending_ = std::async(std::launch::async, [this, indices = ahead_.next()]() mutable {
    return make_batch<float>(data_, std::move(indices));
  });
}

Batch<float> BatchPrefetcher::next(BatchSampler& run_sampler) {
  Batch<float> batch = pending_.get();
  if (run_sampler.next() != batch.indices)
    throw std::logic_error("BatchPrefetcher: the prefetched batch is not the run sampler's next one");
  start();
  return batch;
}

}  // namespace align
