// operator<< for tensors: PyTorch 1.13's repr (torch/_tensor_str.py) with its default print
// options: precision 4, threshold 1000, edgeitems 3, linewidth 80, sci_mode chosen from
// the values. The steps follow that file: a formatter chosen from the (summarised)
// values, nested brackets with wrapped rows, then the suffixes.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "detail.hpp"

namespace xtgrad {
namespace {

constexpr std::size_t kThreshold = 1000, kEdgeItems = 3, kLineWidth = 80;

// Python's "{:.<precision><kind>}".format(v): printf's, except that NaN has no sign.
std::string py_format(double v, int precision, char kind) {
  if (std::isnan(v)) return "nan";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, kind == 'e' ? "%.*e" : "%.*f", precision, v);
  return buffer;
}

// _Formatter: integer mode ("1.") when every nonzero finite value is an integer,
// scientific when their magnitudes span more than 1000x or pass 1e8 (or, out of integer
// mode, fall below 1e-4); width is the widest value, and every value is padded to it.
class Formatter {
 public:
  explicit Formatter(const std::vector<double>& values) {
    double lo = INFINITY, hi = 0;
    for (double v : values)
      if (std::isfinite(v) && v != 0) {
        lo = std::min(lo, std::abs(v));
        hi = std::max(hi, std::abs(v));
        int_mode_ = int_mode_ && v == std::ceil(v);
      }
    if (hi == 0) return;  // no nonzero finite value: "0.", "nan", "inf"
    sci_mode_ = hi / lo > 1000.0 || hi > 1.0e8 || (!int_mode_ && lo < 1.0e-4);
    for (double v : values)
      if (std::isfinite(v) && v != 0) width_ = std::max(width_, measure(v));
  }

  std::size_t width() const { return width_; }

  std::string format(double v) const {
    std::string s;
    if (sci_mode_) {
      s = py_format(v, 4, 'e');
    } else if (int_mode_) {
      s = py_format(v, 0, 'f');
      if (std::isfinite(v)) s += ".";
    } else {
      s = py_format(v, 4, 'f');
    }
    return std::string(width_ > s.size() ? width_ - s.size() : 0, ' ') + s;
  }

 private:
  std::size_t measure(double v) const {
    if (sci_mode_) return py_format(v, 4, 'e').size();
    if (int_mode_) return py_format(v, 0, 'f').size() + 1;
    return py_format(v, 4, 'f').size();
  }

  bool int_mode_ = true, sci_mode_ = false;
  std::size_t width_ = 1;
};

// Walks a row-major array (data, shape) the way the printer does: all of an axis, or only
// its first and last kEdgeItems entries when summarising. used(axis length) lists them,
// with kSkipped where PyTorch prints "...".
constexpr std::size_t kSkipped = SIZE_MAX;
std::vector<std::size_t> used(std::size_t n, bool summarize) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      out.push_back(kSkipped);
      i = n - kEdgeItems;
    }
    out.push_back(i);
  }
  return out;
}

// get_summarized_data: the values the formatter sees.
void collect(const double* data, const Shape& shape, std::size_t axis, bool summarize, std::vector<double>& out) {
  if (axis == shape.size()) return out.push_back(*data);
  const std::size_t stride = detail::product(shape, axis + 1);
  for (std::size_t i : used(shape[axis], summarize))
    if (i != kSkipped) collect(data + i * stride, shape, axis + 1, summarize, out);
}

struct Printer {
  const Shape& shape;
  bool summarize;
  Formatter formatter;

  // _vector_str: values wrapped to the line width, continuation lines indented.
  std::string vector_str(const double* data, std::size_t indent) const {
    const std::size_t per_line = std::max<std::size_t>(1, (kLineWidth - indent) / (formatter.width() + 2));
    std::vector<std::string> items;
    for (std::size_t i : used(shape.back(), summarize))
      items.push_back(i == kSkipped ? " ..." : formatter.format(data[i]));
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += i % per_line == 0 ? ",\n" + std::string(indent + 1, ' ') : ", ";
      out += items[i];
    }
    return out + "]";
  }

  // _tensor_str_with_formatter: slices of the first axis, separated by a comma, one
  // newline per remaining axis and the indent.
  std::string tensor_str(const double* data, std::size_t axis, std::size_t indent) const {
    const std::size_t dims = shape.size() - axis;
    if (dims == 0) return formatter.format(*data);
    if (dims == 1) return vector_str(data, indent);
    const std::size_t stride = detail::product(shape, axis + 1);
    const std::string separator = "," + std::string(dims - 1, '\n') + std::string(indent + 1, ' ');
    std::string out = "[";
    bool first = true;
    for (std::size_t i : used(shape[axis], summarize)) {
      out += (first ? "" : separator) + (i == kSkipped ? "..." : tensor_str(data + i * stride, axis + 1, indent + 1));
      first = false;
    }
    return out + "]";
  }
};

// PyTorch's autograd class name for our op: CamelCase + "Backward0", but for the ops that
// PyTorch names after the kernel it runs (a reshape is a view, narrow a slice, ...).
std::string grad_fn_name(const std::string& op) {
  static const std::map<std::string, std::string> renamed = {
      {"reshape", "ReshapeAliasBackward0"},
      {"narrow", "SliceBackward0"},
      {"concat", "CatBackward0"},
      {"matmul", "MmBackward0"},
      {"linear", "AddmmBackward0"},
      {"conv1d", "ConvolutionBackward0"},
      {"conv2d", "ConvolutionBackward0"},
      {"max_pool2d", "MaxPool2DWithIndicesBackward0"},
      {"avg_pool2d", "AvgPool2DBackward0"},
      {"adaptive_avg_pool2d", "AdaptiveAvgPool2DBackward0"},
      {"layer_norm", "NativeLayerNormBackward0"},
      {"batch_norm", "NativeBatchNormBackward0"},
      {"cross_entropy", "NllLossBackward0"},
      {"gelu_tanh", "GeluBackward0"},
      {"clamp", "ClampBackward1"},
      {"dropout", "MulBackward0"},
      {"max", "AmaxBackward0"},  // ours reduce over axes, as torch.amax / amin
      {"min", "AminBackward0"},
  };
  if (auto it = renamed.find(op); it != renamed.end()) return it->second;
  std::string name;
  bool upper = true;
  for (char c : op) {
    if (c == '_') {
      upper = true;
      continue;
    }
    name += upper ? char(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return name + "Backward0";
}

// _add_suffixes: ", suffix" on the last line while it fits in the line width, else on a
// new line at the indent.
std::string add_suffixes(std::string text, const std::vector<std::string>& suffixes, std::size_t indent) {
  const std::size_t newline = text.rfind('\n');
  // (Python's len(s) - s.rfind("\n") + 1, with rfind -1 when there is no newline.)
  std::size_t last_line = newline == std::string::npos ? text.size() + 2 : text.size() - newline + 1;
  for (const auto& suffix : suffixes) {
    if (last_line + suffix.size() + 2 > kLineWidth) {
      text += ",\n" + std::string(indent, ' ') + suffix;
      last_line = indent + suffix.size();
    } else {
      text += ", " + suffix;
      last_line += suffix.size() + 2;
    }
  }
  return text + ")";
}

std::string size_str(const Shape& shape) {  // Python's str(tuple(shape))
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

template <class T> std::ostream& operator<<(std::ostream& out, const Tensor<T>& x) {
  if (!x.defined()) return out << "tensor(undefined)";
  const std::string prefix = "tensor(";
  const Shape shape = x.shape();
  const std::vector<double> values(x.data().begin(), x.data().end());
  std::vector<std::string> suffixes;
  std::string body = "[]";
  if (values.empty()) {
    if (shape.size() != 1) suffixes.push_back("size=" + size_str(shape));
  } else {
    const bool summarize = values.size() > kThreshold;
    std::vector<double> shown;
    collect(values.data(), shape, 0, summarize, shown);
    body = Printer{shape, summarize, Formatter(shown)}.tensor_str(values.data(), 0, prefix.size());
  }
  if (std::is_same_v<T, double>) suffixes.push_back("dtype=torch.float64");  // float32 is the default
  if (!x.is_leaf())
    suffixes.push_back("grad_fn=<" + grad_fn_name(x.op_name()) + ">");
  else if (x.requires_grad())
    suffixes.push_back("requires_grad=True");
  return out << add_suffixes(prefix + body, suffixes, prefix.size());
}

template std::ostream& operator<<(std::ostream&, const Tensor<float>&);
template std::ostream& operator<<(std::ostream&, const Tensor<double>&);

}  // namespace xtgrad
