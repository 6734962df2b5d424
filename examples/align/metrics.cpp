#include "metrics.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace align {

std::size_t top1_hits(const xtgrad::Array<float>& scores, const std::vector<Example>& data, std::size_t first) {
  return top1_hits(scores, data, first, first);
}

std::size_t top1_hits(const xtgrad::Array<float>& scores, const std::vector<Example>& data, std::size_t first_image,
                      std::size_t first_caption) {
  const std::size_t m = scores.shape()[0], n = scores.shape()[1];
  std::size_t hits = 0;
  for (std::size_t i = 0; i < m; ++i) {
    const float* row = scores.data() + i * n;
    const std::size_t top = std::size_t(std::max_element(row, row + n) - row);
    hits += matches(data[first_caption + i].caption, data[first_image + top]);
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
  const MetricCounts counts = count_hits(model, data);
  return {double(counts.hits) / double(data.size()), double(counts.grounded) / double(data.size())};
}

MetricCounts count_hits(AlignModel<float>& model, const std::vector<Example>& data, std::size_t rank,
                        std::size_t ranks) {
  if (data.empty() || data.size() % kBlock != 0)
    throw std::invalid_argument("evaluate: the test split must be a positive multiple of 100 pairs, got " +
                                std::to_string(data.size()));
  xtgrad::NoGradGuard no_grad;
  MetricCounts counts;
  std::vector<std::size_t> images(kBlock), captions(kEvalCaptions), own_images(kEvalCaptions);
  for (std::size_t start = rank * kBlock; start < data.size(); start += ranks * kBlock) {
    std::iota(images.begin(), images.end(), start);
    // rendered, embedded and projected once per block, for its 4 chunks of captions
    const ImageKeys<float> block = model.image_keys(patch_batch<float>(data, images));  // (100,16,d)
    for (std::size_t chunk = 0; chunk < kBlock; chunk += kEvalCaptions) {
      std::iota(captions.begin(), captions.end(), start + chunk);
      std::iota(own_images.begin(), own_images.end(), chunk);  // caption i of the chunk is image chunk + i's
      // grounding reads each caption's attention on its own image only
      const ModelOutput<float> out = model.score_images_selected(block, caption_batch(data, captions), own_images);
      counts.hits += top1_hits(out.scores.data(), data, start, start + chunk);
      if (out.attention.defined())  // (25,4,16)
        for (std::size_t i = 0; i < kEvalCaptions; ++i)
          counts.grounded +=
              grounding_hit(out.attention.data().data() + i * kCaptionLength * kPatches, data[start + chunk + i]);
    }
  }
  return counts;
}

}  // namespace align
