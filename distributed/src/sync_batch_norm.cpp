// SyncBatchNorm and convert_sync_batchnorm (distributed.hpp): batch normalisation whose
// statistics cover every rank's rows, written with differentiable ops around one
// differentiable all-reduce, so that its backward is the ops' own.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mpi_detail.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad::distributed {

namespace {

// x (any shape, the same on every rank) -> the element-wise sum over ranks. Backward: each
// rank's loss read the sum, so x's gradient is dy summed over every rank.
template <class T> Tensor<T> summed_over_ranks(const Tensor<T>& x) {
  Array<T> total = x.data();
  all_reduce(total);
  return make_result<T>("all_reduce", std::move(total), {x},
                        [](const std::vector<NodePtr<T>>& inputs, const Array<T>&, const Array<T>& dy) {
                          Array<T> summed = dy;
                          all_reduce(summed);
                          add_grad(*inputs[0], std::move(summed));
                        });
}

// Every axis but the channels' (1) of an (N, C, *) input.
Axes reduced_axes(std::size_t dims) {
  std::vector<int> axes{0};
  for (std::size_t d = 2; d < dims; ++d) axes.push_back(int(d));
  return Axes(axes);
}

}  // namespace

template <class T>
SyncBatchNorm<T>::SyncBatchNorm(std::size_t num_features, double eps, std::optional<double> momentum, bool affine,
                                bool track_running_stats)
    : BatchNorm<T>("SyncBatchNorm", 2, std::numeric_limits<std::size_t>::max(), num_features, eps, momentum, affine,
                   track_running_stats) {}

// x (N,C,*) -> (N,C,*), normalised by the statistics of every rank's x.
template <class T> Tensor<T> SyncBatchNorm<T>::forward(const Tensor<T>& x) {
  const std::size_t c = this->num_features;
  if (x.dim() < 2 || x.shape()[1] != c)
    throw std::invalid_argument("SyncBatchNorm: input " + shape_str(x.shape()) +
                                " is not (N, C, *) with C = num_features = " + std::to_string(c));
  if (!this->is_training() && this->running_mean) return BatchNorm<T>::forward(x);  // local, as BatchNorm's eval
  Array<double> rows{double(x.numel() / c)};
  all_reduce(rows);
  const double count = rows(0);  // values per channel over every rank
  const Axes axes = reduced_axes(x.dim());
  const Tensor<T> mean = div(summed_over_ranks(sum(x, axes, true)), T(count));
  const Tensor<T> centered = x - mean;
  const Tensor<T> var = div(summed_over_ranks(sum(centered * centered, axes, true)), T(count));
  Tensor<T> y = centered / sqrt(add(var, T(this->eps)));
  std::vector<long> channels(x.dim(), 1);  // (1, C, 1, ...)
  channels[1] = long(c);
  if (this->weight) y = y * reshape(*this->weight, channels) + reshape(*this->bias, channels);
  if (this->is_training() && this->running_mean) {
    // As BatchNorm: momentum None is the mean of every batch so far; the running variance
    // is the unbiased one.
    NoGradGuard no_grad;
    Array<T>& tracked = this->num_batches_tracked->mutable_data();
    tracked() += T(1);
    const double factor = this->momentum ? *this->momentum : 1.0 / double(tracked());
    const T* batch_mean = mean.data().data();  // (1, C, 1, ...): C values in order
    const T* batch_var = var.data().data();
    const double unbiased = count > 1 ? count / (count - 1) : 1.0;
    Array<T>& rm = this->running_mean->mutable_data();
    Array<T>& rv = this->running_var->mutable_data();
    for (std::size_t k = 0; k < c; ++k) {
      rm(k) = T((1 - factor) * double(rm(k)) + factor * double(batch_mean[k]));
      rv(k) = T((1 - factor) * double(rv(k)) + factor * double(batch_var[k]) * unbiased);
    }
  }
  return y;
}

namespace {
template <class T> bool is_batch_norm(const Module<T>& m) {
  return m.type_name() == "BatchNorm1d" || m.type_name() == "BatchNorm2d";
}
}  // namespace

template <class T> std::size_t convert_sync_batchnorm(Module<T>& module) {
  struct Slot {
    Sequential<T>* sequential;
    std::size_t index;
  };
  std::vector<Slot> slots;  // every BatchNorm inside a Sequential
  std::vector<const Module<T>*> swappable;
  for (const auto& [name, m] : module.named_modules())
    if (auto* sequential = dynamic_cast<Sequential<T>*>(m))
      for (std::size_t i = 0; i < sequential->size(); ++i)
        if (is_batch_norm(*(*sequential)[i])) {
          slots.push_back({sequential, i});
          swappable.push_back((*sequential)[i].get());
        }
  // Any other BatchNorm is refused before anything changes.
  for (const auto& [name, m] : module.named_modules())
    if (is_batch_norm(*m) && std::find(swappable.begin(), swappable.end(), m) == swappable.end())
      throw std::invalid_argument("convert_sync_batchnorm: the " + m->type_name() + " '" + name +
                                  "' is not in a Sequential and cannot be swapped; build it as a SyncBatchNorm");
  for (const Slot& slot : slots) {
    const auto& bn = dynamic_cast<const BatchNorm<T>&>(*(*slot.sequential)[slot.index]);
    auto sync = std::make_shared<SyncBatchNorm<T>>(bn.num_features, bn.eps, bn.momentum, bn.weight.has_value(),
                                                   bn.running_mean.has_value());
    sync->load_state_dict(bn.state_dict());
    if (!bn.is_training()) sync->eval();
    slot.sequential->replace(slot.index, sync);
  }
  return slots.size();
}

template class SyncBatchNorm<float>;
template class SyncBatchNorm<double>;
template std::size_t convert_sync_batchnorm(Module<float>&);
template std::size_t convert_sync_batchnorm(Module<double>&);

}  // namespace xtgrad::distributed
