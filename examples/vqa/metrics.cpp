#include "metrics.hpp"

#include <cstdio>
#include <stdexcept>

namespace vqa {

namespace {
double ratio(std::size_t a, std::size_t b) { return b ? double(a) / double(b) : 0.0; }
}  // namespace

double Metrics::accuracy(QuestionType type) const {
  return ratio(correct[std::size_t(type)], total[std::size_t(type)]);
}

double Metrics::group_accuracy(std::size_t group) const {
  std::size_t right = 0, all = 0;
  for (std::size_t t = 0; t < kTypes; ++t)
    if (group_of(QuestionType(t)) == group) right += correct[t], all += total[t];
  return ratio(right, all);
}

std::size_t Metrics::count() const {
  std::size_t all = 0;
  for (std::size_t n : total) all += n;
  return all;
}

double Metrics::overall() const {
  std::size_t right = 0;
  for (std::size_t n : correct) right += n;
  return ratio(right, count());
}

Metrics score_answers(const std::vector<Example>& split, const std::vector<std::size_t>& predicted) {
  if (split.size() != predicted.size())
    throw std::invalid_argument("score_answers: " + std::to_string(predicted.size()) + " answers for " +
                                std::to_string(split.size()) + " questions");
  Metrics m;
  for (std::size_t i = 0; i < split.size(); ++i) {
    const std::size_t t = std::size_t(split[i].question.type);
    ++m.total[t];
    m.correct[t] += predicted[i] == split[i].answer;
  }
  return m;
}

std::string metrics_json(const Metrics& m) {
  char text[128];
  std::snprintf(text, sizeof text, "\"accuracy\": %.4f", m.overall());
  std::string out = text;
  for (std::size_t g = 0; g < kGroups; ++g) {
    std::snprintf(text, sizeof text, ", \"%s\": %.4f", kGroupNames[g], m.group_accuracy(g));
    out += text;
  }
  out += ", \"types\": {";
  for (std::size_t t = 0; t < kTypes; ++t) {
    std::snprintf(text, sizeof text, "%s\"%s\": %.4f", t ? ", " : "", kTypeNames[t], m.accuracy(QuestionType(t)));
    out += text;
  }
  return out + "}";
}

std::string metrics_table(const Metrics& m) {
  char line[128];
  std::string out = "type              questions  accuracy\n";
  for (std::size_t t = 0; t < kTypes; ++t) {
    std::snprintf(line, sizeof line, "%-16s %10zu  %8.4f\n", kTypeNames[t], m.total[t], m.accuracy(QuestionType(t)));
    out += line;
  }
  for (std::size_t g = 0; g < kGroups; ++g) {
    std::size_t n = 0;
    for (std::size_t t = 0; t < kTypes; ++t) n += group_of(QuestionType(t)) == g ? m.total[t] : 0;
    std::snprintf(line, sizeof line, "%-16s %10zu  %8.4f\n", kGroupNames[g], n, m.group_accuracy(g));
    out += line;
  }
  std::snprintf(line, sizeof line, "%-16s %10zu  %8.4f\n", "overall", m.count(), m.overall());
  return out + line;
}

}  // namespace vqa
