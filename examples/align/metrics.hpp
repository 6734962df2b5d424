// The test metrics of docs/align-task.md.
//   P@1: test pairs in blocks of 100; each caption ranks its block's images by score; a hit
//        when the top image matches the caption.
//   Grounding: on each caption's own image, the attention averaged over heads and over the
//        colour and shape tokens; a hit when its argmax is the described object's cell.
#pragma once

#include <array>

#include "model.hpp"

namespace align {

constexpr std::size_t kBlock = 100;
// Evaluation scores a block's captions against its images 25 at a time: 25 x 100 pairs,
// whose largest tensors (2.5 MB) still fit in cache. Measured on an AMD EPYC (user CPU
// seconds of `xtgrad-align eval`, 5 alternating runs): 10 at a time 0.57 s, 25 0.49 s,
// 100 0.47 s; with the whole block at once (10 MB a tensor) each evaluation also raised
// the resident size by 28 MB.
constexpr std::size_t kEvalCaptions = 25;

struct Metrics {
  double p_at_1 = 0;
  double grounding = 0;  // 0 for a model without attention
};

// scores (n,n) of caption i against image j of the block data[first, first + n) ->
// captions whose top image matches them
std::size_t top1_hits(const xtgrad::Array<float>& scores, const std::vector<Example>& data, std::size_t first = 0);
// scores (m,n) of the captions of data[first_caption, first_caption + m) against the
// images data[first_image, first_image + n) -> captions whose top image matches them
std::size_t top1_hits(const xtgrad::Array<float>& scores, const std::vector<Example>& data, std::size_t first_image,
                      std::size_t first_caption);
// attention (4,16) of a caption over its own image's patches (already averaged over heads)
bool grounding_hit(const float* attention, const Example& example);
// The colour and shape tokens' mean attention over the 16 patches.
std::array<float, kPatches> object_attention(const float* attention);

// Both metrics over data (data.size() a multiple of kBlock), without recording a graph.
Metrics evaluate(AlignModel<float>& model, const std::vector<Example>& data);

// The hits of the blocks b = rank, rank + ranks, ... of data: the share of an evaluation
// split across the ranks of a data-parallel run (the counts summed over ranks are
// evaluate()'s, since every block is scored alone).
struct MetricCounts {
  std::size_t hits = 0, grounded = 0;
};
MetricCounts count_hits(AlignModel<float>& model, const std::vector<Example>& data, std::size_t rank = 0,
                        std::size_t ranks = 1);

}  // namespace align
