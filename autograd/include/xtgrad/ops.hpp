// Every differentiable op of xtgrad. Each is defined with its backward beside it in
// src/ops_*.cpp. Shapes follow NumPy/PyTorch broadcasting; axes may be negative
// (-1 = last). A shape error throws std::invalid_argument naming the op and the shapes.
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "xtgrad/random.hpp"
#include "xtgrad/tensor.hpp"

namespace xtgrad {

// A scalar argument that does not take part in template deduction, so that
// `x * 1.01` works for a Tensor<float>.
template <class T> struct non_deduced { using type = T; };
template <class T> using scalar_t = typename non_deduced<T>::type;

// The axes an op works over: none ({}: all of them), one axis without braces
// (sum(x, 1)), or a list of any integer type ({0, x.dim() - 1}). Negative counts from the
// end.
class Axes : public std::vector<int> {
 public:
  Axes() = default;
  Axes(std::initializer_list<Extent> axes);
  Axes(std::vector<int> axes) : vector(std::move(axes)) {}  // NOLINT(google-explicit-constructor)
  template <class I, std::enable_if_t<std::is_integral_v<I>, int> = 0>
  Axes(I axis) : vector{static_cast<int>(axis)} {}  // NOLINT(google-explicit-constructor)
};

// A shape as reshape and expand take it: braces of any integer type ({x.shape()[0], -1}),
// a Shape, or a std::vector<long>. -1 means "infer" (reshape) or "keep" (expand).
class Extents : public std::vector<long> {
 public:
  Extents(std::initializer_list<Extent> extents);
  Extents(const Shape& shape) : vector(shape.begin(), shape.end()) {}  // NOLINT(google-explicit-constructor)
  Extents(std::vector<long> extents) : vector(std::move(extents)) {}   // NOLINT(google-explicit-constructor)
};

// ---- elementwise, binary (broadcasting) -----------------------------------------------
template <class T> Tensor<T> add(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Tensor<T> sub(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Tensor<T> div(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Tensor<T> pow(const Tensor<T>& base, const Tensor<T>& exponent);
// with a scalar on either side
template <class T> Tensor<T> add(const Tensor<T>& a, scalar_t<T> s);
template <class T> Tensor<T> add(scalar_t<T> s, const Tensor<T>& a);
template <class T> Tensor<T> sub(const Tensor<T>& a, scalar_t<T> s);
template <class T> Tensor<T> sub(scalar_t<T> s, const Tensor<T>& a);
template <class T> Tensor<T> mul(const Tensor<T>& a, scalar_t<T> s);
template <class T> Tensor<T> mul(scalar_t<T> s, const Tensor<T>& a);
template <class T> Tensor<T> div(const Tensor<T>& a, scalar_t<T> s);
template <class T> Tensor<T> div(scalar_t<T> s, const Tensor<T>& a);
template <class T> Tensor<T> pow(const Tensor<T>& base, scalar_t<T> exponent);
template <class T> Tensor<T> pow(scalar_t<T> base, const Tensor<T>& exponent);

// ---- elementwise, unary ---------------------------------------------------------------
template <class T> Tensor<T> neg(const Tensor<T>& x);
template <class T> Tensor<T> exp(const Tensor<T>& x);
template <class T> Tensor<T> log(const Tensor<T>& x);
template <class T> Tensor<T> sqrt(const Tensor<T>& x);
template <class T> Tensor<T> abs(const Tensor<T>& x);  // gradient sign(x), 0 at 0
template <class T> Tensor<T> tanh(const Tensor<T>& x);
template <class T> Tensor<T> sigmoid(const Tensor<T>& x);
template <class T> Tensor<T> relu(const Tensor<T>& x);
enum class GeluApproximation { none, tanh };  // none = exact erf form (PyTorch's default)
template <class T> Tensor<T> gelu(const Tensor<T>& x, GeluApproximation approx = GeluApproximation::none);
// Gradient passes where min <= x <= max, as in PyTorch.
template <class T> Tensor<T> clamp(const Tensor<T>& x, scalar_t<T> min, scalar_t<T> max);

// ---- reductions: over the given axes, or all when axes is empty -----------------------
template <class T> Tensor<T> sum(const Tensor<T>& x, const Axes& axes = {}, bool keepdims = false);
template <class T> Tensor<T> mean(const Tensor<T>& x, const Axes& axes = {}, bool keepdims = false);
// The gradient goes to the first arg-max of each reduced slice.
template <class T> Tensor<T> max(const Tensor<T>& x, const Axes& axes = {}, bool keepdims = false);
// Unbiased (divides by n - 1) unless unbiased = false, as torch.var.
template <class T>
Tensor<T> var(const Tensor<T>& x, const Axes& axes = {}, bool keepdims = false, bool unbiased = true);

// ---- shape ----------------------------------------------------------------------------
// One entry of the new shape may be -1: inferred from the others.
template <class T> Tensor<T> reshape(const Tensor<T>& x, const Extents& shape);
template <class T> Tensor<T> transpose(const Tensor<T>& x, int axis0, int axis1);
template <class T> Tensor<T> permute(const Tensor<T>& x, const Axes& order);
template <class T> Tensor<T> unsqueeze(const Tensor<T>& x, int axis);
template <class T> Tensor<T> squeeze(const Tensor<T>& x, int axis);  // axis must have size 1
template <class T> Tensor<T> squeeze(const Tensor<T>& x);            // every size-1 axis
// Broadcast to shape (size-1 axes grow; new axes in front; -1 keeps a size).
template <class T> Tensor<T> expand(const Tensor<T>& x, const Extents& shape);
template <class T> Tensor<T> concat(const std::vector<Tensor<T>>& xs, int axis = 0);
// length elements of axis from start; slice is the same with [start, stop).
template <class T> Tensor<T> narrow(const Tensor<T>& x, int axis, std::size_t start, std::size_t length);
template <class T> Tensor<T> slice(const Tensor<T>& x, int axis, std::size_t start, std::size_t stop);
// out.shape = x.shape with axis replaced by indices.size(); an embedding lookup is
// index_select(weight (V,d), 0, ids) -> (n,d).
template <class T> Tensor<T> index_select(const Tensor<T>& x, int axis, const std::vector<std::size_t>& indices);

// ---- matmul, PyTorch semantics --------------------------------------------------------
// 1-D . 1-D -> scalar; (n,k) x (k,m) -> (n,m); 1-D operands get a size-1 axis added and
// removed; N-D operands are batches of matrices whose batch axes broadcast:
// a (..., n, k), b (..., k, m) -> (..., n, m). One BLAS gemm per batch matrix, with
// transpose flags in the backward (no materialised transposes).
template <class T> Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b);

// x (..., in), weight (out, in), bias (out) -> (..., out) = x weight^T + bias, as PyTorch's
// F.linear: one gemm with a transpose flag, weight stored as PyTorch stores it.
template <class T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight,
                 const std::optional<Tensor<scalar_t<T>>>& bias = std::nullopt);

// ---- fused multi-head attention -------------------------------------------------------
// softmax(scale Q K^T) V for every head at once, without copying heads apart: the width D
// of q, k and v is split into `heads` column blocks, scale = 1/sqrt(D/heads). Masks are
// boolean, TRUE = MAY ATTEND; a query row with nothing allowed gets zero weights, a zero
// output and a zero gradient. With gen and dropout_p > 0 the weights are dropped out.
// `weights` are the softmax weights for inspection: no gradient flows through them.
template <class T> struct FusedAttention {
  Tensor<T> output;
  std::shared_ptr<const Array<T>> weights;
};
// q (B,Lq,D), k, v (B,Lk,D), allowed (B,Lq,Lk) -> output (B,Lq,D), weights (B,H,Lq,Lk).
// causal: query i may attend keys 0..i + Lk - Lq only (a decoder's self-attention, with or
// without a cached prefix of keys), without an (Lq,Lk) mask.
template <class T>
FusedAttention<T> attention_heads(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, std::size_t heads,
                                  const std::optional<Mask>& allowed = std::nullopt, double dropout_p = 0.0,
                                  Generator* gen = nullptr, bool causal = false);
// Every query batch element against every key batch element, with the output projection
// (out_weight (E,D), out_bias (E)) folded into the values: a pair's output is
// sum_h P_h (V_h W_h^T) + out_bias, W_h the columns of out_weight that head h's output
// meets: concat_heads(attention) out_weight^T + out_bias, V_h W_h^T once per key element.
// Two ops, usable apart (MultiHeadCrossAttention::forward_all_pairs calls them in turn):
// v (B,L,D), out_weight (E,D) -> (H,B,L,E): head h's values times W_h^T
template <class T> Tensor<T> head_values_projected(const Tensor<T>& v, const Tensor<T>& out_weight, std::size_t heads);
// q (Bq,Lq,D), k (Bk,Lk,D), projected_values (H,Bk,Lk,E), key_allowed (Bk,Lk)
//   -> output (Bq,Bk,Lq,E), weights (H,Bq,Lq,Bk,Lk)
template <class T>
FusedAttention<T> attention_all_pairs_projected(const Tensor<T>& q, const Tensor<T>& k,
                                                const Tensor<T>& projected_values,
                                                const std::optional<Tensor<scalar_t<T>>>& out_bias = std::nullopt,
                                                const std::optional<Mask>& key_allowed = std::nullopt,
                                                double dropout_p = 0.0, Generator* gen = nullptr);
// Both in one call: q (Bq,Lq,D), k, v (Bk,Lk,D), key_allowed (Bk,Lk)
//   -> output (Bq,Bk,Lq,E), weights (H,Bq,Lq,Bk,Lk)
template <class T>
FusedAttention<T> attention_heads_all_pairs(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                            std::size_t heads, const Tensor<T>& out_weight,
                                            const std::optional<Tensor<scalar_t<T>>>& out_bias = std::nullopt,
                                            const std::optional<Mask>& key_allowed = std::nullopt,
                                            double dropout_p = 0.0, Generator* gen = nullptr);
// The above finished as a post-norm block scored by its mean position, residual (Bq,Lq,E):
// out[qb, kb] = mean_t layer_norm(residual[qb, t] + attention[qb, kb, t]) -> (Bq,Bk,E), each
// key element's block finished in cache (the (Bq,Bk,Lq,E) arrays never exist). Bit for bit
// the separate ops forward; the parameters' and residual's gradients sum in another order.
template <class T>
FusedAttention<T> attention_all_pairs_pooled(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& projected_values,
                                             const std::optional<Tensor<scalar_t<T>>>& out_bias,
                                             const Tensor<T>& residual,
                                             const std::optional<Tensor<scalar_t<T>>>& norm_weight,
                                             const std::optional<Tensor<scalar_t<T>>>& norm_bias, double eps = 1e-5,
                                             const std::optional<Mask>& key_allowed = std::nullopt,
                                             double dropout_p = 0.0, Generator* gen = nullptr);

// ---- neural-network functions ---------------------------------------------------------
// A row that is all -inf (fully masked): softmax gives zeros and a zero gradient, so that
// attention over nothing reads nothing; log_softmax gives NaN, as PyTorch does (the row
// has no log-probabilities), and so does cross_entropy's loss for such a row.
template <class T> Tensor<T> softmax(const Tensor<T>& x, int axis = -1);
template <class T> Tensor<T> log_softmax(const Tensor<T>& x, int axis = -1);
// Normalises over the trailing normalized_shape axes; weight and bias (that shape) are
// optional. Fused forward and backward.
template <class T>
Tensor<T> layer_norm(const Tensor<T>& x, const Shape& normalized_shape,
                     const std::optional<Tensor<scalar_t<T>>>& weight = std::nullopt,
                     const std::optional<Tensor<scalar_t<T>>>& bias = std::nullopt, double eps = 1e-5);
// F.cross_entropy with class indices: logits (N,C) with targets (N), or (N,C,d1,...) with
// targets (N,d1,...) in row-major order -> the mean over the counted targets of
//   -(1 - label_smoothing) log p[target] - label_smoothing / C sum_c log p[c].
// A target equal to ignore_index counts for nothing (no loss, no gradient); with every
// target ignored the mean is NaN, as in PyTorch.
template <class T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const std::vector<std::size_t>& targets,
                        std::optional<std::size_t> ignore_index = std::nullopt, double label_smoothing = 0.0);
// logits (N,C) with target distributions (N,C) -> mean over N of -sum_c target * log_softmax.
template <class T> Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<T>& target_probs);
template <class T> Tensor<T> mse_loss(const Tensor<T>& input, const Tensor<T>& target);  // mean
// logits and targets of one shape -> the mean binary cross-entropy of sigmoid(logits), as
// F.binary_cross_entropy_with_logits (stable for large |logits|); targets may be soft.
template <class T> Tensor<T> binary_cross_entropy_with_logits(const Tensor<T>& logits, const Tensor<T>& targets);
// Zeroes each element with probability p and scales the rest by 1/(1-p) when training;
// the identity otherwise.
template <class T> Tensor<T> dropout(const Tensor<T>& x, double p, bool training, Generator& gen);
// The one rule for a dropout probability, used by every op and layer that takes one:
// throws invalid_argument "<op>: <name> must be in [0, 1], got <p>" otherwise (p = 1
// drops everything, as in PyTorch).
void check_probability(const std::string& op, const std::string& name, double p);
// value where mask is true, x elsewhere (mask broadcasts to x). value may be -inf.
template <class T> Tensor<T> masked_fill(const Tensor<T>& x, const Mask& mask, scalar_t<T> value);
// a where mask is true, b elsewhere; all three broadcast together.
// (The tensors are taken by value, a pointer copy: argument-dependent lookup also finds
// xt::where through Mask, whose forwarding references would otherwise match non-const
// tensors better; a by-value Tensor<T> matches as well and is more specialised, so this
// one is chosen whatever the arguments' const-ness.)
namespace detail {
template <class T> Tensor<T> where(const Mask& mask, const Tensor<T>& a, const Tensor<T>& b);
}
template <class M, class T, std::enable_if_t<std::is_same_v<std::decay_t<M>, Mask>, int> = 0>
Tensor<T> where(M&& mask, Tensor<T> a, Tensor<T> b) {
  return detail::where(mask, a, b);
}

// ---- images: convolution, pooling, batch norm (NCHW) ----------------------------------
// A (height, width) pair; one number n means (n, n), as PyTorch's int-or-tuple arguments.
struct Size2 {
  std::size_t h, w;
  Size2(std::size_t n) : h(n), w(n) {}  // NOLINT: implicit, as PyTorch's `stride=2`
  Size2(std::size_t h, std::size_t w) : h(h), w(w) {}
  std::string str() const { return "(" + std::to_string(h) + ", " + std::to_string(w) + ")"; }  // "(3, 3)"
};
// F.conv2d: x (N,Cin,H,W), weight (Cout,Cin/groups,kh,kw), bias (Cout) -> (N,Cout,Ho,Wo),
// Ho = (H + 2 padding.h - dilation.h (kh - 1) - 1) / stride.h + 1 (Wo alike). Zero padding.
template <class T>
Tensor<T> conv2d(const Tensor<T>& x, const Tensor<T>& weight,
                 const std::optional<Tensor<scalar_t<T>>>& bias = std::nullopt, Size2 stride = 1, Size2 padding = 0,
                 Size2 dilation = 1, std::size_t groups = 1);
// F.conv1d: x (N,Cin,L), weight (Cout,Cin/groups,k), bias (Cout) -> (N,Cout,Lo),
// Lo = (L + 2 padding - dilation (k - 1) - 1) / stride + 1: conv2d on a height-1 view.
template <class T>
Tensor<T> conv1d(const Tensor<T>& x, const Tensor<T>& weight,
                 const std::optional<Tensor<scalar_t<T>>>& bias = std::nullopt, std::size_t stride = 1,
                 std::size_t padding = 0, std::size_t dilation = 1, std::size_t groups = 1);
// The sliding pools' output size along an axis, as PyTorch 1.13:
//   Ho = (H + 2 padding - dilation (kernel - 1) - 1 [+ stride - 1 with ceil_mode]) / stride + 1,
// and with ceil_mode one less when the last window would start beyond the input and its
// left padding. Windows are clipped to the input; stride defaults to the kernel; padding
// is at most half the kernel. An output size below 1 throws.
// F.max_pool2d: (N,C,H,W) -> (N,C,Ho,Wo). Padding never wins a max; dilation spaces a
// window's taps. The gradient goes to the first maximum of a window. (A window whose taps
// all fall in the padding throws: PyTorch gives -inf with an index outside the input.)
template <class T>
Tensor<T> max_pool2d(const Tensor<T>& x, Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                     Size2 dilation = 1, bool ceil_mode = false);
// F.avg_pool2d: (N,C,H,W) -> (N,C,Ho,Wo), each window's sum divided by divisor_override
// when given (not 0), else by its size: with count_include_pad the window clipped to the
// padded input (padded zeros count; the overhang ceil_mode adds beyond it does not),
// without it the number of input values it covers.
template <class T>
Tensor<T> avg_pool2d(const Tensor<T>& x, Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                     bool ceil_mode = false, bool count_include_pad = true,
                     std::optional<long> divisor_override = std::nullopt);
// F.adaptive_avg_pool2d: (N,C,H,W) -> (N,C,Ho,Wo); output row i averages input rows
// floor(i H / Ho) to ceil((i + 1) H / Ho) - 1 (columns alike).
template <class T> Tensor<T> adaptive_avg_pool2d(const Tensor<T>& x, Size2 output_size);
// F.batch_norm: x (N,C) or (N,C,...) normalised per channel. training: by the batch's mean
// and biased variance, and running_mean / running_var (C), when given, move toward the
// batch mean and unbiased variance: r = (1 - momentum) r + momentum batch (in place, no
// gradient). Not training: by the running statistics. weight, bias (C) optional.
// (PyTorch's momentum = None, a cumulative average, belongs to the layers: BatchNorm1d/2d
// pass momentum = 1 / num_batches_tracked, as torch.nn's _BatchNorm does.)
template <class T>
Tensor<T> batch_norm(const Tensor<T>& x, const std::optional<Tensor<scalar_t<T>>>& running_mean,
                     const std::optional<Tensor<scalar_t<T>>>& running_var,
                     const std::optional<Tensor<scalar_t<T>>>& weight = std::nullopt,
                     const std::optional<Tensor<scalar_t<T>>>& bias = std::nullopt, bool training = false,
                     double momentum = 0.1, double eps = 1e-5);

// ---- reading results, building masks (no gradient) ------------------------------------
using Indices = xt::xarray<std::size_t>;
// x's shape without axis: the first index of the largest value, as torch.argmax.
template <class T> Indices argmax(const Tensor<T>& x, int axis = -1);
// The k largest values of each last-axis row, largest first, and their indices: (..., k).
template <class T> struct TopK {
  Array<T> values;
  Indices indices;
};
template <class T> TopK<T> topk(const Tensor<T>& x, std::size_t k);
// (rows, cols), true where column j <= row i + diagonal, as torch.tril of ones: the causal
// attention mask of a length-L sequence is tril_mask(L, L) ("may attend" = true).
Mask tril_mask(std::size_t rows, std::size_t cols, long diagonal = 0);

// ---- attention masks, with their meaning in their type --------------------------------
// The attention LAYERS take masks where TRUE MEANS "MAY ATTEND". PyTorch's key_padding_mask
// and boolean attn_mask mean the opposite (true = ignore), and a fully masked row gives a
// zero output, not an error, so a mask of the wrong polarity would pass unnoticed. Hence
// the layers take an AttendMask, which a raw Mask does not convert to: say which
// convention yours follows.
//   attend_mask(m)   m true = may attend      e.g. attend_mask(tril_mask(L, L))
//   padding_mask(m)  m true = padding, ignore (PyTorch's polarity, inverted here)
class AttendMask {
 public:
  const Mask& allowed() const { return allowed_; }  // true = may attend

 private:
  explicit AttendMask(Mask allowed) : allowed_(std::move(allowed)) {}
  friend AttendMask attend_mask(Mask allowed);
  friend AttendMask padding_mask(const Mask& ignored);
  Mask allowed_;
};
AttendMask attend_mask(Mask allowed);
AttendMask padding_mask(const Mask& ignored);

// ---- gathering, sorting, comparing ----------------------------------------------------
// torch.stack: xs[i] all of one shape s -> s with a new axis of size xs.size() at axis.
template <class T> Tensor<T> stack(const std::vector<Tensor<T>>& xs, int axis = 0);
// torch.split: x (..., n, ...) -> pieces of split_size along axis, the last one smaller when
// split_size does not divide n; or pieces of the given sizes (they must add up to n). Each
// piece is a narrow of x, so gradients flow back into x.
template <class T> std::vector<Tensor<T>> split(const Tensor<T>& x, std::size_t split_size, int axis = 0);
template <class T>
std::vector<Tensor<T>> split(const Tensor<T>& x, const std::vector<std::size_t>& split_sizes, int axis = 0);
// torch.chunk: split by ceil(n / chunks), so possibly fewer than chunks pieces.
template <class T> std::vector<Tensor<T>> chunk(const Tensor<T>& x, std::size_t chunks, int axis = 0);
// torch.gather: out (index's shape), out[i][j] = x[index[i][j]][j] for axis 0 (alike for
// any axis); index has x's number of axes and sizes at most x's outside axis.
template <class T> Tensor<T> gather(const Tensor<T>& x, int axis, const Indices& index);
// torch.scatter_add: a copy of x with out[index[i][j]][j] += src[i][j] for axis 0; index's
// sizes at most src's, and at most x's outside axis. Differentiable in x and src.
template <class T> Tensor<T> scatter_add(const Tensor<T>& x, int axis, const Indices& index, const Tensor<T>& src);
// The smallest value over the axes (all when none), as torch.amin; the gradient goes to
// the first arg-min of each reduced slice, as max's does (torch.amin shares it among ties).
template <class T> Tensor<T> min(const Tensor<T>& x, const Axes& axes = {}, bool keepdims = false);
// torch.logsumexp: log(sum(exp(x))) over the axes (all when none), shifted by the maximum
// so that nothing overflows; a slice of all -inf gives -inf (and a NaN gradient, as PyTorch).
template <class T> Tensor<T> logsumexp(const Tensor<T>& x, const Axes& axes = {}, bool keepdims = false);
// torch.cumsum: out[i] = x[0] + ... + x[i] along axis (summed in double, as PyTorch on CPU).
template <class T> Tensor<T> cumsum(const Tensor<T>& x, int axis);
// torch.bmm: a (B,n,k), b (B,k,m) -> (B,n,m), no broadcasting (matmul does that).
template <class T> Tensor<T> bmm(const Tensor<T>& a, const Tensor<T>& b);
// Elementwise comparisons, broadcasting as the arithmetic does; no gradient. NaN compares
// false except under ne, as in IEEE arithmetic and PyTorch.
template <class T> Mask eq(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Mask ne(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Mask lt(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Mask le(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Mask gt(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Mask ge(const Tensor<T>& a, const Tensor<T>& b);
template <class T> Mask eq(const Tensor<T>& a, scalar_t<T> s);
template <class T> Mask ne(const Tensor<T>& a, scalar_t<T> s);
template <class T> Mask lt(const Tensor<T>& a, scalar_t<T> s);
template <class T> Mask le(const Tensor<T>& a, scalar_t<T> s);
template <class T> Mask gt(const Tensor<T>& a, scalar_t<T> s);
template <class T> Mask ge(const Tensor<T>& a, scalar_t<T> s);
// torch.sort along axis: values (differentiable: a gather of x) and their indices into x.
// Ties keep their order (stable, both directions); NaN counts as the largest value.
template <class T> struct Sorted {
  Tensor<T> values;
  Indices indices;
};
template <class T> Sorted<T> sort(const Tensor<T>& x, int axis = -1, bool descending = false);
template <class T> Indices argsort(const Tensor<T>& x, int axis = -1, bool descending = false);
// torch.multinomial: probs (C) or (N,C), nonnegative weights (a row need not sum to 1)
// -> num_samples category indices per row, (num_samples) or (N,num_samples), drawn from
// gen. Without replacement a row needs at least num_samples nonzero weights.
template <class T>
Indices multinomial(const Tensor<T>& probs, std::size_t num_samples, bool replacement, Generator& gen);

// ---- operators ------------------------------------------------------------------------
template <class T> Tensor<T> operator+(const Tensor<T>& a, const Tensor<T>& b) { return add(a, b); }
template <class T> Tensor<T> operator-(const Tensor<T>& a, const Tensor<T>& b) { return sub(a, b); }
template <class T> Tensor<T> operator*(const Tensor<T>& a, const Tensor<T>& b) { return mul(a, b); }
template <class T> Tensor<T> operator/(const Tensor<T>& a, const Tensor<T>& b) { return div(a, b); }
template <class T> Tensor<T> operator-(const Tensor<T>& a) { return neg(a); }
template <class T> Tensor<T> operator+(const Tensor<T>& a, scalar_t<T> s) { return add(a, s); }
template <class T> Tensor<T> operator+(scalar_t<T> s, const Tensor<T>& a) { return add(s, a); }
template <class T> Tensor<T> operator-(const Tensor<T>& a, scalar_t<T> s) { return sub(a, s); }
template <class T> Tensor<T> operator-(scalar_t<T> s, const Tensor<T>& a) { return sub(s, a); }
template <class T> Tensor<T> operator*(const Tensor<T>& a, scalar_t<T> s) { return mul(a, s); }
template <class T> Tensor<T> operator*(scalar_t<T> s, const Tensor<T>& a) { return mul(s, a); }
template <class T> Tensor<T> operator/(const Tensor<T>& a, scalar_t<T> s) { return div(a, s); }
template <class T> Tensor<T> operator/(scalar_t<T> s, const Tensor<T>& a) { return div(s, a); }

// ---- threads --------------------------------------------------------------------------
// The threads xtgrad's ops use: large products are split into bands, attention over heads
// and key blocks, row-wise ops over rows. OpenBLAS runs each call on one thread (set
// before main). Until this is called, ops run on the calling thread.
// n must be from 1 to max_num_threads(), else std::invalid_argument. When the threads
// cannot be started (a memory or process limit), std::system_error: the ones already
// started are stopped and the thread count stays as it was. Asking for the count already
// set keeps the threads running.
void set_num_threads(int n);
int num_threads();
// The most threads set_num_threads accepts: 4 x std::thread::hardware_concurrency() (the
// machine's logical cores; 4 when that is unknown). More only take turns on the cores.
int max_num_threads();

// ---- memory ---------------------------------------------------------------------------
// A training step frees and reallocates the same large buffers every step. glibc's malloc
// serves blocks above 128 KiB by mmap and returns freed heap tops to the kernel, so each
// step pays page faults and kernel zeroing for all of them (20% of the toy task's step
// here). This asks glibc to serve blocks up to largest_reused_bytes from the heap and keep
// freed memory for reuse. Process-wide, so the program decides: xtgrad-align and
// xtgrad-bench call it at start. Returns false where malloc is not glibc's (no effect).
bool reuse_freed_memory(std::size_t largest_reused_bytes = std::size_t(16) << 20);

}  // namespace xtgrad
