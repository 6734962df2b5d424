// The VQA task's questions (docs/vqa-task.md): the nine question types, their words and
// answers, the uniqueness rule (answer_of), the balanced generator of (picture, question,
// answer) triples and the parser of a typed question.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "scenes.hpp"

namespace vqa {

enum class QuestionType : std::size_t {
  colour_of_shape,
  shape_of_colour,
  position,
  exists,
  count_colour,
  count_shape,
  left_of,
  nearest,
  above
};
constexpr std::size_t kTypes = 9, kGroups = 3;
extern const std::array<const char*, kTypes> kTypeNames;    // "colour_of_shape", ...
extern const std::array<const char*, kGroups> kGroupNames;  // "non_relational", "counting", "relational"
std::size_t group_of(QuestionType type);

// Question words: <pad> 0, then the words of docs/vqa-task.md in its order.
constexpr std::size_t kPad = 0, kFirstColourWord = 18, kFirstShapeWord = 24, kFirstPluralWord = 28;
constexpr std::size_t kWordCount = 32, kMaxQuestionWords = 10;
extern const std::array<const char*, kWordCount> kWords;

// Answers: colours 0-5, shapes 6-9, quadrants 10-13, yes 14, no 15, counts 0-3 16-19.
constexpr std::size_t kFirstShapeAnswer = 6, kFirstQuadrant = 10, kYes = 14, kNo = 15, kFirstCount = 16;
constexpr std::size_t kAnswerCount = 20;
extern const std::array<const char*, kAnswerCount> kAnswers;
// The answers a type can have, in the order the balancing rule cycles through them.
std::vector<std::size_t> answers_of(QuestionType type);

// A question: its type and the colours and shapes it names. colour_of_shape uses shape;
// shape_of_colour and count_colour colour; count_shape shape; position, exists, left_of
// and nearest colour and shape; above both pairs.
struct Question {
  QuestionType type = QuestionType::exists;
  std::size_t colour = 0, shape = 0, colour2 = 0, shape2 = 0;
  bool operator==(const Question& o) const;
};

// The question's word ids (no padding) and its text.
std::vector<std::size_t> question_words(const Question& q);
std::string question_text(const Question& q);

// The one right answer of q about the scene, or nothing when q is not valid for it (a
// reference that does not refer, no unique left or nearest object, a tie of rows).
std::optional<std::size_t> answer_of(const scenes::Scene& scene, const Question& q);

// Every question of a type, in the enumeration order of docs/vqa-task.md.
std::vector<Question> questions_of(QuestionType type);

struct Example {
  scenes::Scene scene;
  Question question;
  std::size_t answer = 0;
};

// The split of `count` triples from `seed`, balanced per type (docs/vqa-task.md, "Splits").
std::vector<Example> make_split(std::size_t count, std::uint64_t seed);

// "what colour is the square?" -> the question; std::invalid_argument naming the unknown
// word or the form that was expected, and listing the vocabulary.
Question parse_question(const std::string& text);

// The vocabulary as one line, for messages: "what colour is ...".
std::string vocabulary_text();

}  // namespace vqa
