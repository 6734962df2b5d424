#include "questions.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>
#include <stdexcept>

#include "xtgrad/random.hpp"

namespace vqa {

const std::array<const char*, kTypes> kTypeNames = {"colour_of_shape", "shape_of_colour", "position",
                                                    "exists",          "count_colour",    "count_shape",
                                                    "left_of",         "nearest",         "above"};
const std::array<const char*, kGroups> kGroupNames = {"non_relational", "counting", "relational"};

const std::array<const char*, kWordCount> kWords = {
    "<pad>",  "what",   "colour",   "is",    "the",     "shape",   "object",    "where",
    "there",  "a",      "how",      "many",  "objects", "left",    "of",        "nearest",
    "to",     "above",  "red",      "green", "blue",    "yellow",  "magenta",   "cyan",
    "circle", "square", "triangle", "cross", "circles", "squares", "triangles", "crosses"};

const std::array<const char*, kAnswerCount> kAnswers = {
    "red",      "green",     "blue",        "yellow",       "magenta", "cyan", "circle", "square", "triangle", "cross",
    "top left", "top right", "bottom left", "bottom right", "yes",     "no",   "0",      "1",      "2",        "3"};

namespace {

// Each type's form: words, and the slots <colour>, <shape>, <shapes> (docs/vqa-task.md).
const std::array<const char*, kTypes> kForms = {"what colour is the <shape>",
                                                "what shape is the <colour> object",
                                                "where is the <colour> <shape>",
                                                "is there a <colour> <shape>",
                                                "how many <colour> objects",
                                                "how many <shapes>",
                                                "what shape is left of the <colour> <shape>",
                                                "what colour is the object nearest to the <colour> <shape>",
                                                "is the <colour> <shape> above the <colour> <shape>"};

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

std::size_t row_of(const scenes::Object& o) { return o.cell / scenes::kGrid; }
std::size_t column_of(const scenes::Object& o) { return o.cell % scenes::kGrid; }

// The one object with this colour (if given) and shape (if given), or null.
const scenes::Object* referent(const scenes::Scene& scene, std::optional<std::size_t> colour,
                               std::optional<std::size_t> shape) {
  const scenes::Object* found = nullptr;
  std::size_t count = 0;
  for (const scenes::Object& o : scene.objects) {
    if ((colour && o.colour != *colour) || (shape && o.shape != *shape)) continue;
    found = &o;
    ++count;
  }
  return count == 1 ? found : nullptr;
}

std::size_t count_of(const scenes::Scene& scene, std::optional<std::size_t> colour, std::optional<std::size_t> shape) {
  return std::size_t(std::count_if(scene.objects.begin(), scene.objects.end(), [&](const scenes::Object& o) {
    return (!colour || o.colour == *colour) && (!shape || o.shape == *shape);
  }));
}

// The one object other than r with the property, or null when none or several have it.
template <class Predicate>
const scenes::Object* only_other(const scenes::Scene& scene, const scenes::Object& r, Predicate property) {
  const scenes::Object* found = nullptr;
  std::size_t count = 0;
  for (const scenes::Object& o : scene.objects)
    if (&o != &r && property(o)) {
      found = &o;
      ++count;
    }
  return count == 1 ? found : nullptr;
}

std::optional<std::size_t> relational_answer(const scenes::Scene& scene, const Question& q) {
  const scenes::Object* r = referent(scene, q.colour, q.shape);
  if (!r) return std::nullopt;
  if (q.type == QuestionType::left_of) {
    const auto* left = only_other(scene, *r, [&](const scenes::Object& o) { return column_of(o) < column_of(*r); });
    return left ? std::optional<std::size_t>(kFirstShapeAnswer + left->shape) : std::nullopt;
  }
  if (q.type == QuestionType::nearest) {
    const auto distance = [&](const scenes::Object& o) {
      const long dr = long(row_of(o)) - long(row_of(*r)), dc = long(column_of(o)) - long(column_of(*r));
      return dr * dr + dc * dc;
    };
    long best = -1;
    for (const scenes::Object& o : scene.objects)
      if (&o != r && (best < 0 || distance(o) < best)) best = distance(o);
    const auto* nearest = only_other(scene, *r, [&](const scenes::Object& o) { return distance(o) == best; });
    return nearest ? std::optional<std::size_t>(nearest->colour) : std::nullopt;
  }
  const scenes::Object* other = referent(scene, q.colour2, q.shape2);  // above
  if (!other || other == r || row_of(*r) == row_of(*other)) return std::nullopt;
  return row_of(*r) < row_of(*other) ? kYes : kNo;
}

}  // namespace

std::size_t group_of(QuestionType type) {
  const std::size_t t = std::size_t(type);
  return t < 4 ? 0 : t < 6 ? 1 : 2;
}

std::vector<std::size_t> answers_of(QuestionType type) {
  const auto range = [](std::size_t first, std::size_t count) {
    std::vector<std::size_t> out(count);
    for (std::size_t i = 0; i < count; ++i) out[i] = first + i;
    return out;
  };
  switch (type) {
    case QuestionType::colour_of_shape:
    case QuestionType::nearest:
      return range(0, scenes::kColours);
    case QuestionType::shape_of_colour:
    case QuestionType::left_of:
      return range(kFirstShapeAnswer, scenes::kShapes);
    case QuestionType::position:
      return range(kFirstQuadrant, 4);
    case QuestionType::exists:
    case QuestionType::above:
      return {kYes, kNo};
    default:  // the counts
      return range(kFirstCount, 4);
  }
}

bool Question::operator==(const Question& o) const {
  return type == o.type && colour == o.colour && shape == o.shape && colour2 == o.colour2 && shape2 == o.shape2;
}

std::vector<std::size_t> question_words(const Question& q) {
  std::vector<std::size_t> ids;
  std::size_t pairs = 0;  // colour-shape slots filled so far (the second is above's)
  for (const std::string& w : split_words(kForms[std::size_t(q.type)])) {
    if (w == "<colour>") {
      ids.push_back(kFirstColourWord + (pairs == 0 ? q.colour : q.colour2));
    } else if (w == "<shape>") {
      ids.push_back(kFirstShapeWord + (pairs == 0 ? q.shape : q.shape2));
      ++pairs;
    } else if (w == "<shapes>") {
      ids.push_back(kFirstPluralWord + q.shape);
    } else {
      ids.push_back(std::size_t(std::find(kWords.begin(), kWords.end(), w) - kWords.begin()));
    }
  }
  return ids;
}

std::string question_text(const Question& q) {
  std::string out;
  for (std::size_t id : question_words(q)) out += (out.empty() ? "" : " ") + std::string(kWords[id]);
  return out;
}

std::optional<std::size_t> answer_of(const scenes::Scene& scene, const Question& q) {
  switch (q.type) {
    case QuestionType::colour_of_shape: {
      const scenes::Object* o = referent(scene, std::nullopt, q.shape);
      return o ? std::optional<std::size_t>(o->colour) : std::nullopt;
    }
    case QuestionType::shape_of_colour: {
      const scenes::Object* o = referent(scene, q.colour, std::nullopt);
      return o ? std::optional<std::size_t>(kFirstShapeAnswer + o->shape) : std::nullopt;
    }
    case QuestionType::position: {
      const scenes::Object* o = referent(scene, q.colour, q.shape);
      if (!o) return std::nullopt;
      return kFirstQuadrant + 2 * std::size_t(row_of(*o) >= 2) + std::size_t(column_of(*o) >= 2);
    }
    case QuestionType::exists:
      return count_of(scene, q.colour, q.shape) > 0 ? kYes : kNo;
    case QuestionType::count_colour:
      return kFirstCount + count_of(scene, q.colour, std::nullopt);
    case QuestionType::count_shape:
      return kFirstCount + count_of(scene, std::nullopt, q.shape);
    default:
      return relational_answer(scene, q);
  }
}

std::vector<Question> questions_of(QuestionType type) {
  std::vector<Question> out;
  const auto add = [&](std::size_t c, std::size_t s, std::size_t c2, std::size_t s2) {
    out.push_back(Question{type, c, s, c2, s2});
  };
  if (type == QuestionType::colour_of_shape || type == QuestionType::count_shape) {
    for (std::size_t s = 0; s < scenes::kShapes; ++s) add(0, s, 0, 0);
  } else if (type == QuestionType::shape_of_colour || type == QuestionType::count_colour) {
    for (std::size_t c = 0; c < scenes::kColours; ++c) add(c, 0, 0, 0);
  } else {
    for (std::size_t c = 0; c < scenes::kColours; ++c)
      for (std::size_t s = 0; s < scenes::kShapes; ++s) {
        if (type != QuestionType::above) {
          add(c, s, 0, 0);
          continue;
        }
        for (std::size_t c2 = 0; c2 < scenes::kColours; ++c2)
          for (std::size_t s2 = 0; s2 < scenes::kShapes; ++s2) add(c, s, c2, s2);
      }
  }
  return out;
}

std::vector<Example> make_split(std::size_t count, std::uint64_t seed) {
  std::array<std::vector<Question>, kTypes> all;
  std::array<std::vector<std::size_t>, kTypes> targets;
  std::array<std::array<std::size_t, scenes::kColours>, kTypes> cursor{};  // per (type, answer rank)
  for (std::size_t t = 0; t < kTypes; ++t) {
    all[t] = questions_of(QuestionType(t));
    targets[t] = answers_of(QuestionType(t));
  }
  xtgrad::Generator pick(seed ^ 0x5641515f51554553ULL);
  std::vector<Example> out;
  out.reserve(count);
  std::vector<const Question*> valid;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t t = i % kTypes, rank = (i / kTypes) % targets[t].size(), answer = targets[t][rank];
    for (std::size_t& j = cursor[t][rank];; ++j) {
      const scenes::Scene scene = scenes::generate_scene(seed, j);
      valid.clear();
      for (const Question& q : all[t])
        if (answer_of(scene, q) == answer) valid.push_back(&q);
      if (valid.empty()) continue;
      out.push_back(Example{scene, *valid[pick.below(valid.size())], answer});
      ++j;
      break;
    }
  }
  return out;
}

std::string vocabulary_text() {
  std::string out;
  for (std::size_t i = 1; i < kWordCount; ++i) out += (i > 1 ? " " : "") + std::string(kWords[i]);
  return out;
}

namespace {

// The form's slots filled from words, or nothing when the words are not of this form.
std::optional<Question> match_form(QuestionType type, const std::vector<std::size_t>& ids) {
  const std::vector<std::size_t> form = question_words(Question{type, 0, 0, 0, 0});
  if (form.size() != ids.size()) return std::nullopt;
  const auto in = [](std::size_t id, std::size_t first, std::size_t n) { return id >= first && id < first + n; };
  Question q{type, 0, 0, 0, 0};
  std::size_t pairs = 0;
  for (std::size_t k = 0; k < ids.size(); ++k) {
    if (form[k] == kFirstColourWord && in(ids[k], kFirstColourWord, scenes::kColours)) {
      (pairs == 0 ? q.colour : q.colour2) = ids[k] - kFirstColourWord;
    } else if (form[k] == kFirstShapeWord && in(ids[k], kFirstShapeWord, scenes::kShapes)) {
      (pairs++ == 0 ? q.shape : q.shape2) = ids[k] - kFirstShapeWord;
    } else if (form[k] == kFirstPluralWord && in(ids[k], kFirstPluralWord, scenes::kShapes)) {
      q.shape = ids[k] - kFirstPluralWord;
    } else if (form[k] != ids[k] || in(form[k], kFirstColourWord, kWordCount - kFirstColourWord)) {
      return std::nullopt;
    }
  }
  return q;
}

}  // namespace

Question parse_question(const std::string& text) {
  std::string lowered;
  for (const char c : text) lowered += char(std::tolower(static_cast<unsigned char>(c)));
  while (!lowered.empty() && (lowered.back() == '?' || std::isspace(static_cast<unsigned char>(lowered.back()))))
    lowered.pop_back();
  std::vector<std::size_t> ids;
  for (const std::string& w : split_words(lowered)) {
    const auto found = std::find(kWords.begin() + 1, kWords.end(), w);
    if (found == kWords.end())
      throw std::invalid_argument("unknown word \"" + w + "\" in the question \"" + text +
                                  "\"; the words are: " + vocabulary_text());
    ids.push_back(std::size_t(found - kWords.begin()));
  }
  for (std::size_t t = 0; t < kTypes; ++t)
    if (const auto q = match_form(QuestionType(t), ids)) return *q;
  std::string forms;
  for (const char* f : kForms) forms += std::string("\n  ") + f;
  throw std::invalid_argument("\"" + text + "\" is not a question of the grammar (docs/vqa-task.md); the forms are:" +
                              forms + "\nthe words are: " + vocabulary_text());
}

}  // namespace vqa
