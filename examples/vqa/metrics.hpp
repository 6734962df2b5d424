// The VQA task's metrics (docs/vqa-task.md, "Metrics"): accuracy per question type, per
// group of types and overall, from the predicted answers of a split.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "questions.hpp"

namespace vqa {

struct Metrics {
  std::array<std::size_t, kTypes> correct{}, total{};
  double accuracy(QuestionType type) const;
  double group_accuracy(std::size_t group) const;  // the group's triples pooled
  double overall() const;
  std::size_t count() const;
};

// predicted[i]: the answer given to split[i]. std::invalid_argument on a size mismatch.
Metrics score_answers(const std::vector<Example>& split, const std::vector<std::size_t>& predicted);

// "accuracy": ..., "non_relational": ..., "counting": ..., "relational": ..., "types": {...}:
// one JSON object's fields, without braces.
std::string metrics_json(const Metrics& m);

// The per-type table eval prints: one row per type, then the groups and the overall.
std::string metrics_table(const Metrics& m);

}  // namespace vqa
