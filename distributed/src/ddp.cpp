// DistributedDataParallel: gradient buckets all-reduced from post-accumulate-grad hooks
// while backward runs (distributed.hpp).
#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mpi_detail.hpp"

namespace xtgrad::distributed {

using detail::check;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

template <class T> struct DistributedDataParallel<T>::Reducer {
  struct Bucket {
    std::vector<std::size_t> params;   // indices into Reducer::params, in reverse registration order
    std::vector<std::size_t> offsets;  // where each one's gradient sits in buffer
    Array<T> buffer;                   // (total) the flat gradients, all-reduced in place
    std::size_t pending = 0;           // parameters whose gradient is not final yet this pass
    MPI_Request request = MPI_REQUEST_NULL;
  };
  std::vector<std::pair<std::string, Tensor<T>>> params;
  std::vector<std::size_t> bucket_of, slot_of;  // param i is buckets[bucket_of[i]].params[slot_of[i]]
  std::vector<bool> ready;                      // param i's gradient is in its bucket this pass
  std::vector<Bucket> buckets;
  std::size_t next_bucket = 0;  // buckets start in order: this one is the next to start
  bool in_pass = false;
  bool finishing = false;  // inside finish(): buckets start there, not in backward
  bool sync = true;        // false inside no_sync(): gradients stay on this rank
  GradientSyncTiming timing;

  Reducer(std::vector<std::pair<std::string, Tensor<T>>> named, double cap_mb);
  void gradient_ready(std::size_t i, const Tensor<T>* param);
  void start_ready_buckets();
  void poll();
  void finish();
};

// Buckets in reverse registration order; a bucket closes once it holds cap_mb or more.
template <class T>
DistributedDataParallel<T>::Reducer::Reducer(std::vector<std::pair<std::string, Tensor<T>>> named, double cap_mb)
    : params(std::move(named)), bucket_of(params.size()), slot_of(params.size()), ready(params.size(), false) {
  const double cap_bytes = cap_mb * 1024 * 1024;
  std::size_t size = 0;
  for (std::size_t k = params.size(); k-- > 0;) {
    if (buckets.empty() || static_cast<double>(size * sizeof(T)) >= cap_bytes) {
      buckets.emplace_back();
      size = 0;
    }
    Bucket& b = buckets.back();
    bucket_of[k] = buckets.size() - 1;
    slot_of[k] = b.params.size();
    b.params.push_back(k);
    b.offsets.push_back(size);
    size += params[k].second.numel();
  }
  for (auto& b : buckets) {
    b.buffer = Array<T>::from_shape({b.offsets.back() + params[b.params.back()].second.numel()});
    b.pending = b.params.size();
  }
}

// Copies param i's gradient (zeros when it has none) into its bucket; starts every bucket
// that is complete and next in line.
template <class T> void DistributedDataParallel<T>::Reducer::gradient_ready(std::size_t i, const Tensor<T>* param) {
  if (ready[i])
    throw std::logic_error("DistributedDataParallel: parameter '" + params[i].first +
                           "' got a second gradient before finish_gradient_synchronization(); call it after every "
                           "backward()");
  if (!in_pass) {
    in_pass = true;
    timing = GradientSyncTiming{};
    timing.first_gradient = now();
    timing.buckets = buckets.size();
  }
  ready[i] = true;
  Bucket& b = buckets[bucket_of[i]];
  T* slot = b.buffer.data() + b.offsets[slot_of[i]];
  const Tensor<T>& p = param ? *param : params[i].second;
  if (p.has_grad())
    std::copy(p.grad().begin(), p.grad().end(), slot);
  else
    std::fill(slot, slot + p.numel(), T(0));
  if (--b.pending == 0) start_ready_buckets();
}

template <class T> void DistributedDataParallel<T>::Reducer::start_ready_buckets() {
  while (next_bucket < buckets.size() && buckets[next_bucket].pending == 0) {
    Bucket& b = buckets[next_bucket++];
    check(MPI_Iallreduce(MPI_IN_PLACE, b.buffer.data(), detail::count(b.buffer.size(), "DistributedDataParallel"),
                         detail::datatype<T>(), MPI_SUM, MPI_COMM_WORLD, &b.request),
          "MPI_Iallreduce");
    timing.last_bucket_start = now();
    if (!finishing) ++timing.buckets_started_in_backward;
  }
}

// MPI progresses a non-blocking collective only inside MPI calls: test the started ones.
template <class T> void DistributedDataParallel<T>::Reducer::poll() {
  for (std::size_t k = 0; k < next_bucket; ++k) {
    if (buckets[k].request == MPI_REQUEST_NULL) continue;
    int done = 0;
    check(MPI_Test(&buckets[k].request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) ++timing.buckets_done_before_wait;
  }
}

template <class T> void DistributedDataParallel<T>::Reducer::finish() {
  if (!sync) return;  // inside no_sync(): nothing was started, nothing to wait for
  if (!in_pass) {
    timing = GradientSyncTiming{};
    timing.first_gradient = now();
    timing.buckets = buckets.size();
  }
  finishing = true;
  for (std::size_t i = 0; i < params.size(); ++i)
    if (!ready[i]) gradient_ready(i, nullptr);  // not reached by this pass: what it holds
  finishing = false;
  timing.wait_begin = now();
  for (auto& b : buckets) check(MPI_Wait(&b.request, MPI_STATUS_IGNORE), "MPI_Wait");
  const T scale = T(1) / static_cast<T>(world_size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Bucket& b = buckets[bucket_of[i]];
    Tensor<T>& p = params[i].second;
    const T* slot = b.buffer.data() + b.offsets[slot_of[i]];
    if (!p.has_grad()) p.set_grad(Array<T>::from_shape(p.data().shape()));
    std::transform(slot, slot + p.numel(), p.mutable_grad().begin(), [scale](T g) { return g * scale; });
    ready[i] = false;
  }
  for (auto& b : buckets) b.pending = b.params.size();
  next_bucket = 0;
  in_pass = false;
  timing.wait_end = now();
}

namespace {
// Every rank gets rank 0's values; names and shapes must agree.
template <class T> void broadcast_named(const std::vector<std::pair<std::string, Tensor<T>>>& named) {
  for (auto [name, tensor] : named) {
    try {
      NoGradGuard no_grad;
      broadcast(tensor, 0);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("DistributedDataParallel: '" + name + "' differs between ranks: " + e.what());
    }
  }
}
}  // namespace

template <class T>
DistributedDataParallel<T>::DistributedDataParallel(std::shared_ptr<Module<T>> module,
                                                    const DistributedDataParallelOptions& options)
    : Module<T>("DistributedDataParallel"), module_(std::move(module)), options_(options) {
  if (!module_) throw std::invalid_argument("DistributedDataParallel: null module");
  if (!(options.bucket_cap_mb > 0))
    throw std::invalid_argument("DistributedDataParallel: bucket_cap_mb must be positive, got " +
                                float_repr(options.bucket_cap_mb));
  this->register_module("module", module_);
  const auto named = this->named_parameters();
  broadcast_named(named);
  broadcast_named(this->named_buffers());
  reducer_ = std::make_shared<Reducer>(named, options.bucket_cap_mb);
  std::weak_ptr<Reducer> weak = reducer_;
  for (std::size_t i = 0; i < named.size(); ++i) {
    Tensor<T> p = named[i].second;  // a handle: registering a hook does not change the value
    p.register_post_accumulate_grad_hook([weak, i](Tensor<T>& leaf) {
      auto reducer = weak.lock();  // a destroyed wrapper leaves an inert hook
      if (reducer && reducer->sync) {
        reducer->gradient_ready(i, &leaf);
        reducer->poll();
      }
    });
  }
}

template <class T> DistributedDataParallel<T>::~DistributedDataParallel() {
  // Requests still in flight reference the buffers: wait for them before freeing.
  if (reducer_)
    for (auto& b : reducer_->buckets)
      if (b.request != MPI_REQUEST_NULL) MPI_Wait(&b.request, MPI_STATUS_IGNORE);
}

template <class T> Tensor<T> DistributedDataParallel<T>::forward(const Tensor<T>& x) {
  auto* unary = dynamic_cast<UnaryModule<T>*>(module_.get());
  if (!unary)
    throw std::logic_error("DistributedDataParallel::forward: the wrapped " + module_->type_name() +
                           " is not a UnaryModule; call module()'s own forward");
  if (options_.broadcast_buffers && this->is_training()) broadcast_named(this->named_buffers());
  return unary->forward(x);
}

template <class T> void DistributedDataParallel<T>::finish_gradient_synchronization() { reducer_->finish(); }

template <class T>
DistributedDataParallel<T>::NoSync::NoSync(std::shared_ptr<Reducer> reducer)
    : reducer_(std::move(reducer)), previous_(reducer_->sync) {
  reducer_->sync = false;
}

template <class T> DistributedDataParallel<T>::NoSync::~NoSync() { reducer_->sync = previous_; }

template <class T> typename DistributedDataParallel<T>::NoSync DistributedDataParallel<T>::no_sync() {
  return NoSync(reducer_);
}

template <class T> std::vector<std::vector<std::string>> DistributedDataParallel<T>::bucket_parameter_names() const {
  std::vector<std::vector<std::string>> names;
  for (const auto& b : reducer_->buckets) {
    names.emplace_back();
    for (std::size_t i : b.params) names.back().push_back(reducer_->params[i].first);
  }
  return names;
}

template <class T> const GradientSyncTiming& DistributedDataParallel<T>::last_sync_timing() const {
  return reducer_->timing;
}

template class DistributedDataParallel<float>;
template class DistributedDataParallel<double>;

}  // namespace xtgrad::distributed
