#include "sample.hpp"

#include <sstream>

#include "page.hpp"

namespace vqa {

std::vector<std::string> sample_lines(const Example& example) {
  constexpr std::size_t kMaxLine = 22;  // characters: keeps a column near the picture's width
  std::vector<std::string> lines(1);
  std::istringstream words(question_text(example.question) + "?");
  for (std::string word; words >> word;) {
    if (!lines.back().empty() && lines.back().size() + 1 + word.size() > kMaxLine) lines.emplace_back();
    lines.back() += (lines.back().empty() ? "" : " ") + word;
  }
  lines.push_back(std::string("answer: ") + kAnswers[example.answer]);
  return lines;
}

draw::Canvas render_sample(const std::vector<Example>& examples, const std::string& title) {
  std::vector<draw::Tile> tiles;
  for (const Example& example : examples) tiles.push_back({draw::picture_of(example.scene), sample_lines(example), {}});
  return draw::render_tiles(title, tiles);
}

}  // namespace vqa
