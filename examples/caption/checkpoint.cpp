// The caption task's checkpoint (declared in train.hpp): the model file with the run's
// settings in its metadata, read strictly for eval, generate and resume. The train state
// beside it is examples/common/train_state.hpp's.
#include <stdexcept>

#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "run_settings.hpp"
#include "train.hpp"

namespace caption {

void save_model(const std::string& dir, const CaptionModel<float>& model, std::size_t step, const TrainOptions& o) {
  common::write_run_model(dir, model, step, o, kModelFormat);
}

LoadedModel load_model(const std::string& checkpoint) {
  return common::read_run_model<CaptionModel<float>, Limits>(checkpoint, kModelFormat, "xtgrad-caption");
}

StoredRun stored_run(const std::string& dir, TrainOptions base) {
  return common::read_stored_run<Limits>(dir, std::move(base), load_model);
}

}  // namespace caption
