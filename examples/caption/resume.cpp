#include "resume.hpp"

#include "flags.hpp"
#include "run_settings.hpp"

namespace caption {

namespace {

// The caption model's own shaping flag (the shared ones: common::check_run_flags).
void check_model_flags(const CLI::App& cmd, const TrainOptions& given, const TrainOptions& stored) {
  common::check_agrees(cmd, "--layers", std::to_string(given.model.layers), std::to_string(stored.model.layers));
}

}  // namespace

TrainOptions resumed_settings(const CLI::App& cmd, TrainOptions options) {
  return common::resumed_settings(cmd, std::move(options), stored_run, check_model_flags);
}

}  // namespace caption
