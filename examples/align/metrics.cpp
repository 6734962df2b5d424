#include "metrics.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace align {

std::size_t top1_hits(const xtgrad::Array<float>& scores, const std::vector<Example>& data, std::size_t first) {
  const std::size_t n = scores.shape()[0];
  std::size_t hits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float* row = scores.data() + i * n;
    const std::size_t top = std::size_t(std::max_element(row, row + n) - row);
    hits += matches(data[first + i].caption, data[first + top]);
  }
  return hits;
}

std::array<float, kPatches> object_attention(const float* attention) {
  std::array<float, kPatches> mean{};
  for (std::size_t p = 0; p < kPatches; ++p) mean[p] = 0.5f * (attention[p] + attention[kPatches + p]);
  return mean;
}

bool grounding_hit(const float* attention, const Example& example) {
  const auto mean = object_attention(attention);
  const std::size_t top = std::size_t(std::max_element(mean.begin(), mean.end()) - mean.begin());
  return top == example.objects[example.described].cell;
}

Metrics evaluate(AlignModel<float>& model, const std::vector<Example>& data) {
  if (data.empty() || data.size() % kBlock != 0)
    throw std::invalid_argument("evaluate: the test split must be a positive multiple of 100 pairs, got " +
                                std::to_string(data.size()));
  xtgrad::NoGradGuard no_grad;
  std::size_t hits = 0, grounded = 0;
  std::vector<std::size_t> indices(kBlock);
  for (std::size_t start = 0; start < data.size(); start += kBlock) {
    std::iota(indices.begin(), indices.end(), start);
    const ModelOutput<float> out = model.forward(patch_batch<float>(data, indices), caption_batch(data, indices));
    hits += top1_hits(out.scores.data(), data, start);
    if (out.attention.defined())  // (n,n,4,16): the diagonal is each caption on its own image
      for (std::size_t i = 0; i < kBlock; ++i)
        grounded += grounding_hit(out.attention.data().data() + (i * kBlock + i) * kCaptionLength * kPatches,
                                  data[start + i]);
  }
  return {double(hits) / double(data.size()), double(grounded) / double(data.size())};
}

}  // namespace align
