// ask --png (examples/vqa/main.cpp): a picture for a person to look at, drawn on a
// draw::Canvas (examples/draw) as caption's generate --png is: the picture enlarged, the
// question, the answer with its probability and the right answer, the question's
// cross-attention over the 4x4 grid as one large heat map (pooled over its words as the
// model pools them) and a small map per word.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "canvas.hpp"
#include "model.hpp"

namespace vqa {

using CellWeights = std::array<float, scenes::kCells>;

// What ask --png shows.
struct AnsweredQuestion {
  scenes::Scene scene;
  std::string picture_name;              // e.g. "scene 0 of seed 7"
  std::vector<std::string> words;        // the question's words
  std::string answer;                    // the model's
  float probability = 0;                 // of the answer
  std::optional<std::string> truth;      // the right answer, when the picture has a unique one
  CellWeights pooled{};                  // the question's map, pooled as the model pools its words
  std::vector<CellWeights> word_maps;    // one per word
  std::string pooled_as, averaged_over;  // what the maps are, for the legend
};

// layer_weights: cross_attention's (1,L,16) per fusion layer, for one question of `words`
// words -> word i's map (row i averaged over the layers), and pooled: the mean of the word
// maps (pool "mean") or the last word's (pool "last"), as VqaModel pools the fused words.
// Throws std::invalid_argument on other shapes.
void fill_maps(const std::vector<xtgrad::Array<float>>& layer_weights, std::size_t words, const std::string& pool,
               AnsweredQuestion& shown);

// The model's answer and maps for the question about the scene (eval mode, no gradient).
AnsweredQuestion answer_with_attention(VqaModel<float>& model, const scenes::Scene& scene, const Question& question,
                                       const std::string& picture_name);

// The maps of render_ask: the pooled map is the picture at kPooledScale with the weights
// blended over it at kMapAlpha (draw_heatmap's colours: relative to its largest weight), the
// largest cell outlined in white; the word maps likewise at kWordScale, kWordsPerRow a row.
constexpr std::size_t kPooledScale = 8, kWordScale = 3, kWordsPerRow = 5;
constexpr float kMapAlpha = 0.7f;
struct Corner {
  long x, y;
};
Corner pooled_map_corner();
Corner word_map_corner(std::size_t word);

// The question as the title, the answer and the right answer under it, the picture at 8x on
// the left, the pooled map right of it, the word maps under them, a legend. Throws
// std::invalid_argument when word maps and words differ in number.
draw::Canvas render_ask(const AnsweredQuestion& shown);

}  // namespace vqa
