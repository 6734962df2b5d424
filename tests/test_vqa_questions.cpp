// The VQA task's questions (examples/vqa/questions.*, docs/vqa-task.md): answers on
// hand-made pictures, every generated answer re-derived by a second, independent reading of
// the rules, the balancing counts, determinism and the parser's errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

#include "metrics.hpp"
#include "questions.hpp"

using namespace vqa;

namespace {

scenes::Object object(std::size_t colour, std::size_t shape, std::size_t row, std::size_t column) {
  scenes::Object o{};
  o.colour = colour;
  o.shape = shape;
  o.cell = row * 4 + column;
  return o;
}

scenes::Scene scene_of(std::vector<scenes::Object> objects) {
  scenes::Scene s;
  s.objects = std::move(objects);
  return s;
}

std::optional<std::size_t> ask(const scenes::Scene& s, const std::string& text) {
  return answer_of(s, parse_question(text));
}

std::optional<std::size_t> answer_named(const std::string& name) {
  for (std::size_t a = 0; a < kAnswerCount; ++a)
    if (name == kAnswers[a]) return a;
  FAIL("no answer " << name);
  return std::nullopt;
}

// A second reading of the rules, written from docs/vqa-task.md without the generator's
// code: the picture as a 4x4 grid of cells, every candidate answer collected, the question
// valid when there is exactly one.
struct Cell {
  bool used = false;
  std::size_t colour = 0, shape = 0;
};
using Grid = std::array<std::array<Cell, 4>, 4>;

std::optional<std::size_t> independent_answer(const scenes::Scene& s, const Question& q) {
  Grid g{};
  for (const auto& o : s.objects) g[o.cell / 4][o.cell % 4] = Cell{true, o.colour, o.shape};
  std::vector<std::pair<int, int>> named, named2;  // cells of objects with q's colour-shape (pair 1, pair 2)
  std::size_t of_colour = 0, of_shape = 0;
  std::pair<int, int> only_colour{-1, -1}, only_shape{-1, -1};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      const Cell& x = g[r][c];
      if (!x.used) continue;
      if (x.colour == q.colour && x.shape == q.shape) named.push_back({r, c});
      if (x.colour == q.colour2 && x.shape == q.shape2) named2.push_back({r, c});
      if (x.colour == q.colour) ++of_colour, only_colour = {r, c};
      if (x.shape == q.shape) ++of_shape, only_shape = {r, c};
    }
  const auto at = [&](std::pair<int, int> p) { return g[p.first][p.second]; };
  switch (q.type) {
    case QuestionType::colour_of_shape:
      if (of_shape != 1) return std::nullopt;
      return at(only_shape).colour;
    case QuestionType::shape_of_colour:
      if (of_colour != 1) return std::nullopt;
      return 6 + at(only_colour).shape;
    case QuestionType::position:
      if (named.size() != 1) return std::nullopt;
      return answer_named(std::string(named[0].first < 2 ? "top" : "bottom") +
                          (named[0].second < 2 ? " left" : " right"));
    case QuestionType::exists:
      return answer_named(named.empty() ? "no" : "yes");
    case QuestionType::count_colour:
      return answer_named(std::to_string(of_colour));
    case QuestionType::count_shape:
      return answer_named(std::to_string(of_shape));
    default:
      break;
  }
  if (named.size() != 1) return std::nullopt;
  const auto [r0, c0] = named[0];
  std::vector<std::pair<int, std::size_t>> others;  // (squared distance, index into answers)
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      if (!g[r][c].used || (r == r0 && c == c0)) continue;
      if (q.type == QuestionType::left_of && c < c0) others.push_back({0, 6 + g[r][c].shape});
      if (q.type == QuestionType::nearest)
        others.push_back({(r - r0) * (r - r0) + (c - c0) * (c - c0), g[r][c].colour});
    }
  if (q.type == QuestionType::left_of)
    return others.size() == 1 ? std::optional<std::size_t>(others[0].second) : std::nullopt;
  if (q.type == QuestionType::nearest) {
    std::sort(others.begin(), others.end());
    if (others.empty() || (others.size() > 1 && others[0].first == others[1].first)) return std::nullopt;
    return others[0].second;
  }
  if (named2.size() != 1 || named2[0] == named[0] || named2[0].first == r0) return std::nullopt;  // above
  return answer_named(r0 < named2[0].first ? "yes" : "no");
}

}  // namespace

TEST_CASE("vqa questions: answers on hand-made pictures, invalid questions refused") {
  // red circle (0,0), blue square (0,3), red cross (2,1)
  const scenes::Scene s = scene_of({object(0, 0, 0, 0), object(2, 1, 0, 3), object(0, 3, 2, 1)});
  CHECK(ask(s, "what colour is the square") == answer_named("blue"));
  CHECK(ask(s, "what colour is the triangle") == std::nullopt);  // none
  CHECK(ask(s, "what shape is the blue object") == answer_named("square"));
  CHECK(ask(s, "what shape is the red object") == std::nullopt);  // two red objects
  CHECK(ask(s, "where is the red cross") == answer_named("bottom left"));
  CHECK(ask(s, "where is the blue square") == answer_named("top right"));
  CHECK(ask(s, "is there a red cross") == answer_named("yes"));
  CHECK(ask(s, "is there a red square") == answer_named("no"));
  CHECK(ask(s, "how many red objects") == answer_named("2"));
  CHECK(ask(s, "how many green objects") == answer_named("0"));
  CHECK(ask(s, "how many crosses") == answer_named("1"));
  // Left of: strictly smaller column, any row.
  CHECK(ask(s, "what shape is left of the red cross") == answer_named("circle"));
  CHECK(ask(s, "what shape is left of the red circle") == std::nullopt);   // nothing left of column 0
  CHECK(ask(s, "what shape is left of the blue square") == std::nullopt);  // two objects left of it
  // Nearest: squared cell distances from the red cross: red circle 4 + 1 = 5, blue square 4 + 4 = 8.
  CHECK(ask(s, "what colour is the object nearest to the red cross") == answer_named("red"));
  // From the red circle: the red cross at 5, the blue square at 9.
  CHECK(ask(s, "what colour is the object nearest to the red circle") == answer_named("red"));
  CHECK(ask(s, "is the red circle above the red cross") == answer_named("yes"));
  CHECK(ask(s, "is the red cross above the blue square") == answer_named("no"));
  CHECK(ask(s, "is the red circle above the blue square") == std::nullopt);  // the same row
  CHECK(ask(s, "is the red circle above the red circle") == std::nullopt);   // the same object
  CHECK(ask(s, "is the red circle above the green cross") == std::nullopt);  // no green cross

  // A tie for nearest: green triangle (1,1) is at distance 1 from both (0,1) and (1,0).
  const scenes::Scene tie = scene_of({object(1, 2, 1, 1), object(3, 0, 0, 1), object(4, 0, 1, 0)});
  CHECK(ask(tie, "what colour is the object nearest to the green triangle") == std::nullopt);
  CHECK(ask(tie, "what colour is the object nearest to the yellow circle") == answer_named("green"));  // 1 vs 2
  CHECK(ask(tie, "what shape is left of the green triangle") == answer_named("circle"));               // only (1,0)
  CHECK(ask(tie, "how many circles") == answer_named("2"));
  CHECK(ask(tie, "what colour is the circle") == std::nullopt);  // two circles
  // One object: nothing is nearest to it.
  CHECK(ask(scene_of({object(5, 3, 3, 3)}), "what colour is the object nearest to the cyan cross") == std::nullopt);
}

TEST_CASE("vqa questions: every generated answer re-derived independently, and unique") {
  const std::vector<Example> split = make_split(1800, 0);
  REQUIRE(split.size() == 1800);
  std::size_t checked = 0;
  for (const Example& e : split) {
    CAPTURE(question_text(e.question));
    CHECK(independent_answer(e.scene, e.question) == e.answer);
    CHECK(answer_of(e.scene, e.question) == e.answer);
    CHECK(std::size_t(e.question.type) < kTypes);
    checked += e.question.type == QuestionType::nearest;
  }
  CHECK(checked == 200);
  // The two readings agree on every question of every type on many pictures, invalid ones too.
  std::size_t valid = 0, invalid = 0;
  for (std::size_t j = 0; j < 300; ++j) {
    const scenes::Scene s = scenes::generate_scene(3, j);
    for (std::size_t t = 0; t < kTypes; ++t)
      for (const Question& q : questions_of(QuestionType(t))) {
        const auto a = answer_of(s, q);
        CHECK(a == independent_answer(s, q));
        (a ? valid : invalid) += 1;
      }
  }
  CHECK(valid > 10000);
  CHECK(invalid > 10000);
}

TEST_CASE("vqa questions: each split balances the answers within each type") {
  // 9 types x 12 (a multiple of 2, 4 and 6 answers) x 5: every count exact.
  const std::vector<Example> split = make_split(9 * 12 * 5, 4);
  std::map<std::pair<std::size_t, std::size_t>, std::size_t> counts;
  std::array<std::size_t, kTypes> per_type{};
  for (const Example& e : split) {
    ++per_type[std::size_t(e.question.type)];
    ++counts[{std::size_t(e.question.type), e.answer}];
  }
  for (std::size_t t = 0; t < kTypes; ++t) {
    CAPTURE(kTypeNames[t]);
    CHECK(per_type[t] == 60);
    const std::vector<std::size_t> answers = answers_of(QuestionType(t));
    for (std::size_t a : answers) CHECK(counts[{t, a}] == 60 / answers.size());
  }
  // An odd size: the types' counts differ by at most one.
  const std::vector<Example> odd = make_split(100, 4);
  std::array<std::size_t, kTypes> odd_types{};
  for (const Example& e : odd) ++odd_types[std::size_t(e.question.type)];
  CHECK(*std::max_element(odd_types.begin(), odd_types.end()) - *std::min_element(odd_types.begin(), odd_types.end()) <=
        1);
}

TEST_CASE("vqa questions: a split is the same from the same seed, another from another") {
  const auto a = make_split(400, 7), b = make_split(400, 7), c = make_split(400, 8);
  std::size_t same = 0, differs = 0;
  for (std::size_t i = 0; i < 400; ++i) {
    same +=
        a[i].question == b[i].question && a[i].answer == b[i].answer && a[i].scene.noise_seed == b[i].scene.noise_seed;
    differs += !(a[i].question == c[i].question) || a[i].scene.noise_seed != c[i].scene.noise_seed;
  }
  CHECK(same == 400);
  CHECK(differs > 350);
  // The pictures are the scene library's: a triple's picture is a scene of its seed.
  bool found = false;
  for (std::size_t j = 0; j < 50 && !found; ++j)
    found = scenes::generate_scene(7, j).noise_seed == a[0].scene.noise_seed;
  CHECK(found);
}

TEST_CASE("vqa questions: the parser reads every question back, refuses unknown words and other forms") {
  for (std::size_t t = 0; t < kTypes; ++t)
    for (const Question& q : questions_of(QuestionType(t))) {
      CHECK(parse_question(question_text(q)) == q);
      CHECK(question_words(q).size() <= kMaxQuestionWords);
    }
  CHECK(parse_question("  Where is the RED circle? ") == parse_question("where is the red circle"));
  CHECK(parse_question("how many circles ?").type == QuestionType::count_shape);
  CHECK(question_text(parse_question("is the blue square above the red cross")) ==
        "is the blue square above the red cross");
  const Question above = parse_question("is the blue square above the red cross");
  CHECK(above.colour == 2);
  CHECK(above.shape == 1);
  CHECK(above.colour2 == 0);
  CHECK(above.shape2 == 3);
  CHECK_THROWS_WITH_AS(parse_question("what colour is the hexagon"), doctest::Contains("unknown word \"hexagon\""),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_question("what colour is the hexagon"), doctest::Contains("the words are: what colour"),
                       std::invalid_argument);
  for (const char* bad :
       {"", "what colour is the red", "how many circle", "is there a circle red", "what shape is the red circle",
        "where is the red circle above the blue square", "is the red circle above the blue"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(parse_question(bad), doctest::Contains("is not a question of the grammar"),
                         std::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(parse_question("how many objects"), doctest::Contains("how many <colour> objects"),
                       std::invalid_argument);
}

TEST_CASE("vqa metrics: accuracy per type, per group and overall by hand") {
  // Two questions of each of three types: colour_of_shape (non-relational), count_shape
  // (counting) and above (relational).
  std::vector<Example> split(6);
  const QuestionType types[] = {QuestionType::colour_of_shape, QuestionType::count_shape, QuestionType::above};
  for (std::size_t i = 0; i < 6; ++i) {
    split[i].question.type = types[i / 2];
    split[i].answer = i;
  }
  // Right: both colour_of_shape, one count_shape, no above.
  const Metrics m = score_answers(split, {0, 1, 2, 9, 9, 9});
  CHECK(m.count() == 6);
  CHECK(m.accuracy(QuestionType::colour_of_shape) == 1.0);
  CHECK(m.accuracy(QuestionType::count_shape) == 0.5);
  CHECK(m.accuracy(QuestionType::above) == 0.0);
  CHECK(m.accuracy(QuestionType::position) == 0.0);  // none asked
  CHECK(m.group_accuracy(0) == 1.0);
  CHECK(m.group_accuracy(1) == 0.5);
  CHECK(m.group_accuracy(2) == 0.0);
  CHECK(m.overall() == doctest::Approx(0.5));
  const std::string json = metrics_json(m);
  CHECK(json.find("\"accuracy\": 0.5000, \"non_relational\": 1.0000, \"counting\": 0.5000, \"relational\": 0.0000") ==
        0);
  CHECK(json.find("\"count_shape\": 0.5000") != std::string::npos);
  CHECK(metrics_table(m).find("overall                   6    0.5000") != std::string::npos);
  CHECK_THROWS_AS(score_answers(split, {0}), std::invalid_argument);
}
