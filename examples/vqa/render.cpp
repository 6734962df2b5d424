#include "render.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "page.hpp"

namespace vqa {

namespace {

using draw::Canvas;
using draw::kInk;
using draw::kLine;
using draw::kMargin;
using draw::kMuted;
using draw::text_width;

constexpr long kPicture = long(scenes::kImageSize * kPooledScale);  // the picture and the pooled map
constexpr long kWordMap = long(scenes::kImageSize * kWordScale), kWordPitchX = kWordMap + 32;
constexpr long kWordPitchY = kWordMap + 8 + 2 * kLine + 10;  // the map, its word and its weight
constexpr long kYAnswer = kMargin + 48, kYBody = kYAnswer + kLine + 24;
constexpr long kXPooled = kMargin + kPicture + 32, kYWords = kYBody + kPicture + 8 + 2 * kLine + 16;

std::string fixed(float value, const char* format = "%.2f") {
  char buf[32];
  std::snprintf(buf, sizeof buf, format, double(value));
  return buf;
}

// The picture at `at` with the weights over it, the largest cell outlined, and the lines
// centred under it.
void draw_map(Canvas& canvas, const std::vector<float>& image, const CellWeights& weights, Corner at, std::size_t scale,
              const std::vector<std::string>& lines) {
  canvas.draw_image(image, at.x, at.y, scale);
  canvas.draw_heatmap(weights, at.x, at.y, scale, kMapAlpha);
  const std::size_t peak = std::size_t(std::max_element(weights.begin(), weights.end()) - weights.begin());
  const long cell = long(scenes::kCellSize * scale), side = long(scenes::kImageSize * scale);
  canvas.stroke_rect(at.x + long(peak % scenes::kGrid) * cell, at.y + long(peak / scenes::kGrid) * cell, cell, cell, 2,
                     draw::kWhite);
  for (std::size_t l = 0; l < lines.size(); ++l)
    canvas.draw_text(lines[l], at.x + (side - long(text_width(lines[l], 2))) / 2, at.y + side + 8 + long(l) * kLine,
                     l == 0 ? kInk : kMuted, 2);
}

std::string largest(const CellWeights& weights) { return fixed(*std::max_element(weights.begin(), weights.end())); }

}  // namespace

void fill_maps(const std::vector<xtgrad::Array<float>>& layer_weights, std::size_t words, const std::string& pool,
               AnsweredQuestion& shown) {
  shown.word_maps.assign(words, CellWeights{});
  for (const auto& w : layer_weights) {  // (1,L,16)
    if (w.dimension() != 3 || w.shape()[0] != 1 || w.shape()[1] < words || w.shape()[2] != scenes::kCells)
      throw std::invalid_argument("fill_maps: weights of a wrong shape for a question of " + std::to_string(words) +
                                  " words");
    for (std::size_t i = 0; i < words; ++i)
      for (std::size_t c = 0; c < scenes::kCells; ++c)
        shown.word_maps[i][c] += w(0, i, c) / float(layer_weights.size());
  }
  shown.pooled = CellWeights{};
  if (pool == "last") {
    shown.pooled = shown.word_maps.back();
    return;
  }
  for (const CellWeights& m : shown.word_maps)
    for (std::size_t c = 0; c < scenes::kCells; ++c) shown.pooled[c] += m[c] / float(words);
}

AnsweredQuestion answer_with_attention(VqaModel<float>& model, const scenes::Scene& scene, const Question& question,
                                       const std::string& picture_name) {
  const xtgrad::NoGradGuard no_grad;
  model.eval();
  const std::vector<std::size_t> words = question_words(question);
  const auto images = vision::image_batch<float>({scene});
  const QuestionBatch batch = question_batch({words});
  const auto probs = xtgrad::softmax(model.forward(images, batch), -1).data();  // (1,20)
  const std::size_t best = std::size_t(std::max_element(probs.begin(), probs.end()) - probs.begin());
  AnsweredQuestion shown;
  shown.scene = scene;
  shown.picture_name = picture_name;
  for (std::size_t w : words) shown.words.push_back(kWords[w]);
  shown.answer = kAnswers[best];
  shown.probability = probs(0, best);
  if (const auto truth = answer_of(scene, question)) shown.truth = kAnswers[*truth];
  std::vector<xtgrad::Array<float>> layer_weights;
  for (const auto& w : model.cross_attention(images, batch)) layer_weights.push_back(w.data());
  fill_maps(layer_weights, words.size(), model.config.pool, shown);
  shown.pooled_as = model.config.pool == "last" ? "the last word's map, as the model pools the words"
                                                : "the mean of the word maps, as the model pools the words";
  shown.averaged_over = "the " + std::to_string(model.config.heads) + " heads and the " +
                        std::to_string(model.config.fusion_layers) + " fusion layers";
  return shown;
}

Corner pooled_map_corner() { return {kXPooled, kYBody}; }

Corner word_map_corner(std::size_t word) {
  return {kMargin + long(word % kWordsPerRow) * kWordPitchX, kYWords + long(word / kWordsPerRow) * kWordPitchY};
}

Canvas render_ask(const AnsweredQuestion& s) {
  if (s.word_maps.size() != s.words.size())
    throw std::invalid_argument("render_ask: " + std::to_string(s.word_maps.size()) + " heat maps for " +
                                std::to_string(s.words.size()) + " words");
  std::string title;
  for (const std::string& w : s.words) title += (title.empty() ? "" : " ") + w;
  title += "?";
  const std::string answer = "answer: " + s.answer + " (probability " + fixed(s.probability, "%.3f") + ")";
  const std::string truth = s.truth ? "  right answer: " + *s.truth : "  no unique right answer";
  const std::vector<std::string> legend = {
      "heat maps: the question's cross-attention over the 4x4 grid, averaged over " + s.averaged_over,
      "large: " + s.pooled_as + "; small: each word's (its largest weight under it)",
      "colours relative to the map's largest weight, its cell outlined"};
  const std::size_t rows = std::max<std::size_t>(1, (s.words.size() + kWordsPerRow - 1) / kWordsPerRow);
  const long y_legend = kYWords + long(rows) * kWordPitchY + 4;
  long width = std::max(kXPooled + kPicture, kMargin + long(kWordsPerRow) * kWordPitchX - 32);
  width = std::max({width, kMargin + long(text_width(title, 3)), kMargin + long(text_width(answer + truth, 2))});
  for (const std::string& line : legend) width = std::max(width, kMargin + long(text_width(line, 2)));

  Canvas canvas(std::size_t(width + kMargin), std::size_t(y_legend + long(legend.size()) * kLine + kMargin - 12),
                draw::kPaper);
  canvas.draw_text(title, kMargin, kMargin, kInk, 3);
  canvas.draw_text(answer, kMargin, kYAnswer, kInk, 2);
  const draw::Rgb verdict = !s.truth ? kMuted : *s.truth == s.answer ? draw::kGood : draw::kBad;
  canvas.draw_text(truth, kMargin + long(text_width(answer, 2)), kYAnswer, verdict, 2);
  std::vector<float> image(scenes::kImageValues);
  scenes::render_image(s.scene, image.data());
  canvas.draw_image(image, kMargin, kYBody, kPooledScale);
  canvas.draw_text(s.picture_name, kMargin, kYBody + kPicture + 8, kMuted, 2);
  draw_map(canvas, image, s.pooled, pooled_map_corner(), kPooledScale,
           {"the question", "largest " + largest(s.pooled)});
  for (std::size_t i = 0; i < s.words.size(); ++i)
    draw_map(canvas, image, s.word_maps[i], word_map_corner(i), kWordScale, {s.words[i], largest(s.word_maps[i])});
  for (std::size_t l = 0; l < legend.size(); ++l)
    canvas.draw_text(legend[l], kMargin, y_legend + long(l) * kLine, kMuted, 2);
  return canvas;
}

}  // namespace vqa
