// layer_norm, and add_layer_norm: the layer norm of x + residual without storing the sum
// (a post-norm residual block's norm(x + sublayer(x)), or any residual that broadcasts
// over x's leading axes). Both normalise rows of the trailing normalized_shape with
// kernels::layer_norm_rows, which saves each row's mean and 1/std for the backward. The
// sum is formed a few rows at a time in a scratch block, so add_layer_norm gives the bits
// of layer_norm(x + residual) and reads x and the residual once, where the two ops read
// and write the full-size sum three more times (forward, then backward).
#include <algorithm>
#include <vector>

#include "detail.hpp"
#include "kernels.hpp"
#include "parallel.hpp"
#include "xtgrad/ops.hpp"

namespace xtgrad {
namespace {

using detail::product;
using detail::shape_of;

// Rows summed into scratch at a time: 64 rows of d <= 128 floats stay in L1.
constexpr std::size_t kChunkRows = 64;

// What a row needs besides x: its residual row, if there is one. row_offset[r] is where
// the residual row that x's row r adds begins.
template <class T> struct ResidualRows {
  const T* data = nullptr;
  std::vector<std::size_t> row_offset;

  // rows [begin, begin + count) of x + residual, in scratch; or x's own rows
  const T* rows(const T* x, std::size_t begin, std::size_t count, std::size_t d, std::vector<T>& scratch) const {
    if (!data) return x + begin * d;
    for (std::size_t r = 0; r < count; ++r) {
      const T* xr = x + (begin + r) * d;
      const T* rr = data + row_offset[begin + r];
      T* sr = scratch.data() + r * d;
      for (std::size_t i = 0; i < d; ++i) sr[i] = xr[i] + rr[i];
    }
    return scratch.data();
  }
};

// x's shape (leading axes L, then the k normalised ones), residual's (a suffix of L
// broadcast, then the same k) -> the residual row offset of each row of x, row-major over L
std::vector<std::size_t> residual_row_offsets(const Shape& x, const Shape& residual, std::size_t k) {
  const std::size_t lead = x.size() - k, d = product(x, lead), skipped = x.size() - residual.size();
  std::vector<std::size_t> stride(lead, 0);  // residual rows per step along x's leading axis a
  for (std::size_t a = lead, rows = 1; a-- > skipped;) {
    if (residual[a - skipped] != 1) stride[a] = rows;
    rows *= residual[a - skipped];
  }
  std::vector<std::size_t> offsets(product(x, 0, lead)), index(lead, 0);
  std::size_t row = 0;
  for (std::size_t& offset : offsets) {
    offset = row * d;
    for (std::size_t a = lead; a-- > 0;) {  // the next index, last axis fastest
      row += stride[a];
      if (++index[a] < x[a]) break;
      row -= stride[a] * x[a];
      index[a] = 0;
    }
  }
  return offsets;
}

// layer_norm's backward: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
// dxhat = dy * w; the weight and bias gradients are sums over the rows (one banded sum
// of 2d values: the weight's d, then the bias's d). The residual's gradient is dx, summed
// over the rows that share a residual row (in row order, as add's backward sums it).
// Inputs: x, then the residual, the weight and the bias when given.
template <class T> struct LayerNormSaved {
  std::size_t d;
  bool has_residual, has_weight, has_bias;
  std::vector<T> means, rstds;
  ResidualRows<T> residual;
};

template <class T>
void layer_norm_backward(const std::vector<NodePtr<T>>& in, const Array<T>& g, const LayerNormSaved<T>& s) {
  const std::size_t n_rows = s.means.size(), d = s.d;
  const T* x = in[0]->data().data();
  std::size_t next = 1;
  Node<T>* residual_node = s.has_residual ? in[next++].get() : nullptr;
  const T* w = s.has_weight ? in[next]->data().data() : nullptr;
  Node<T>* weight_node = s.has_weight ? in[next++].get() : nullptr;
  Node<T>* bias_node = s.has_bias ? in[next].get() : nullptr;
  const bool need_x = in[0]->requires_grad(), need_r = residual_node && residual_node->requires_grad();
  const bool need_w = weight_node && weight_node->requires_grad(), need_b = bias_node && bias_node->requires_grad();
  Array<T> gx = need_x || need_r ? Array<T>(in[0]->data().shape()) : Array<T>();  // the sum's gradient
  std::vector<T> sums(2 * d, T(0));
  detail::banded_sum(n_rows, 2 * d, sums.data(), [&](std::size_t begin, std::size_t end, T* band_sums) {
    std::vector<T> scratch(s.has_residual ? kChunkRows * d : 0);
    for (std::size_t b = begin; b < end; b += kChunkRows) {
      const std::size_t count = std::min(kChunkRows, end - b);
      kernels::layer_norm_rows_backward(s.residual.rows(x, b, count, d, scratch), g.data() + b * d, w,
                                        s.means.data() + b, s.rstds.data() + b, gx.size() ? gx.data() + b * d : nullptr,
                                        need_w ? band_sums : nullptr, need_b ? band_sums + d : nullptr, count, d);
    }
  });
  if (need_r) {
    Array<T> gr = xt::zeros<T>(shape_of(residual_node->data()));
    for (std::size_t r = 0; r < n_rows; ++r) {
      T* to = gr.data() + s.residual.row_offset[r];
      const T* from = gx.data() + r * d;
      for (std::size_t i = 0; i < d; ++i) to[i] += from[i];
    }
    add_grad(*residual_node, std::move(gr));
  }
  if (need_x) add_grad(*in[0], std::move(gx));
  const auto add_sum = [&](Node<T>* node, const T* sum) {
    Array<T> grad(shape_of(node->data()));
    std::copy(sum, sum + d, grad.data());
    add_grad(*node, std::move(grad));
  };
  if (need_w) add_sum(weight_node, sums.data());
  if (need_b) add_sum(bias_node, sums.data() + d);
}

// x (..., D1..Dk) [+ residual] normalised over the trailing normalized_shape (D1..Dk);
// weight and bias (D1..Dk). The one forward of layer_norm and add_layer_norm.
template <class T>
Tensor<T> normalize(const char* op, const Tensor<T>& x, const Tensor<T>* residual, const Shape& normalized_shape,
                    const std::optional<Tensor<scalar_t<T>>>& weight, const std::optional<Tensor<scalar_t<T>>>& bias,
                    double eps) {
  const Shape shape = x.shape();
  const std::size_t k = normalized_shape.size();
  if (k == 0 || k > shape.size() || !std::equal(normalized_shape.begin(), normalized_shape.end(), shape.end() - k))
    detail::fail(op, "normalized shape " + shape_str(normalized_shape) +
                         " does not match the trailing dimensions of input " + shape_str(shape));
  for (const auto* p : {&weight, &bias})
    if (p->has_value() && (*p)->shape() != normalized_shape)
      detail::fail(op, std::string(p == &weight ? "weight" : "bias") + " has shape " + shape_str((*p)->shape()) +
                           ", expected " + shape_str(normalized_shape));
  LayerNormSaved<T> s{product(normalized_shape), residual != nullptr, weight.has_value(), bias.has_value(), {}, {}, {}};
  const std::size_t d = s.d, n_rows = x.numel() / std::max<std::size_t>(d, 1);
  if (residual) {
    const Shape rs = residual->shape();
    bool broadcasts = rs.size() >= k && rs.size() <= shape.size() &&
                      std::equal(normalized_shape.begin(), normalized_shape.end(), rs.end() - k);
    for (std::size_t a = 0; broadcasts && a < rs.size(); ++a)  // aligned with x's last axes
      broadcasts = rs[a] == 1 || rs[a] == shape[shape.size() - rs.size() + a];
    if (!broadcasts)
      detail::fail(op, "residual " + shape_str(rs) + " does not broadcast to input " + shape_str(shape) +
                           " over its leading dimensions");
    s.residual = {residual->data().data(), residual_row_offsets(shape, rs, k)};
  }
  const T* w = weight ? weight->data().data() : nullptr;
  const T* bb = bias ? bias->data().data() : nullptr;
  s.means.resize(n_rows);
  s.rstds.resize(n_rows);
  Array<T> out(x.data().shape());
  parallel::for_ranges(n_rows, 256, [&](std::size_t begin, std::size_t end) {
    std::vector<T> scratch(residual ? kChunkRows * d : 0);
    for (std::size_t b = begin; b < end; b += kChunkRows) {
      const std::size_t count = std::min(kChunkRows, end - b);
      kernels::layer_norm_rows(s.residual.rows(x.data().data(), b, count, d, scratch), out.data() + b * d, w, bb,
                               s.means.data() + b, s.rstds.data() + b, count, d, T(eps));
    }
  });
  std::vector<Tensor<T>> inputs{x};
  for (const Tensor<T>* t : {residual, weight ? &*weight : nullptr, bias ? &*bias : nullptr})
    if (t) inputs.push_back(*t);
  return make_result<T>(op, std::move(out), inputs,
                        [s = std::move(s)](const std::vector<NodePtr<T>>& in, const Array<T>&, const Array<T>& g) {
                          layer_norm_backward(in, g, s);
                        });
}

}  // namespace

template <class T>
Tensor<T> layer_norm(const Tensor<T>& x, const Shape& normalized_shape,
                     const std::optional<Tensor<scalar_t<T>>>& weight, const std::optional<Tensor<scalar_t<T>>>& bias,
                     double eps) {
  detail::check_defined("layer_norm", x, normalized_shape, weight, bias);
  return normalize<T>("layer_norm", x, nullptr, normalized_shape, weight, bias, eps);
}

template <class T>
Tensor<T> add_layer_norm(const Tensor<T>& x, const Tensor<T>& residual, const Shape& normalized_shape,
                         const std::optional<Tensor<scalar_t<T>>>& weight,
                         const std::optional<Tensor<scalar_t<T>>>& bias, double eps) {
  detail::check_defined("add_layer_norm", x, residual, normalized_shape, weight, bias);
  return normalize<T>("add_layer_norm", x, &residual, normalized_shape, weight, bias, eps);
}

#define INSTANTIATE(T)                                                                                            \
  template Tensor<T> layer_norm(const Tensor<T>&, const Shape&, const std::optional<Tensor<scalar_t<T>>>&,        \
                                const std::optional<Tensor<scalar_t<T>>>&, double);                               \
  template Tensor<T> add_layer_norm(const Tensor<T>&, const Tensor<T>&, const Shape&,                             \
                                    const std::optional<Tensor<scalar_t<T>>>&, const std::optional<Tensor<scalar_t<T>>>&, \
                                    double);
XTGRAD_INSTANTIATE(INSTANTIATE)

}  // namespace xtgrad
