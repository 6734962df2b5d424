// `xtgrad-vqa sample`: a page of training triples, each picture with its question and the
// right answer under it (draw::render_tiles, as the other examples' sample pages).
#pragma once

#include <string>
#include <vector>

#include "canvas.hpp"
#include "questions.hpp"

namespace vqa {

// The question wrapped into lines of a few words, then "answer: <answer>".
std::vector<std::string> sample_lines(const Example& example);

// The examples' pictures in rows of four under the title, each with its sample_lines.
draw::Canvas render_sample(const std::vector<Example>& examples, const std::string& title);

}  // namespace vqa
