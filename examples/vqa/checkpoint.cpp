// The VQA task's checkpoint (declared in train.hpp): the model file with the run's settings
// in its metadata, read strictly for eval, ask and resume. The train state beside it is
// examples/common/train_state.hpp's; the settings' rules are examples/common/run_settings.hpp's.

#include "checkpoint_rules.hpp"
#include "flags.hpp"
#include "run_settings.hpp"
#include "train.hpp"

namespace vqa {

void save_model(const std::string& dir, const VqaModel<float>& model, std::size_t step, const TrainOptions& o) {
  common::write_run_model(dir, model, step, o, kModelFormat);
}

LoadedModel load_model(const std::string& checkpoint) {
  return common::read_run_model<VqaModel<float>, Limits>(checkpoint, kModelFormat, "xtgrad-vqa");
}

StoredRun stored_run(const std::string& dir, TrainOptions base) {
  return common::read_stored_run<Limits>(dir, std::move(base), load_model);
}

namespace {

// The VQA model's own shaping flags (the shared ones: common::check_run_flags).
void check_model_flags(const CLI::App& cmd, const TrainOptions& given, const TrainOptions& stored) {
  using common::check_agrees;
  using std::to_string;
  const ModelConfig &g = given.model, &s = stored.model;
  check_agrees(cmd, "--fusion-layers", to_string(g.fusion_layers), to_string(s.fusion_layers));
  check_agrees(cmd, "--text-layers", to_string(g.text_layers), to_string(s.text_layers));
  check_agrees(cmd, "--text-encoder", g.text_encoder, s.text_encoder);
  check_agrees(cmd, "--pool", g.pool, s.pool);
}

}  // namespace

TrainOptions resumed_settings(const CLI::App& cmd, TrainOptions options) {
  return common::resumed_settings(cmd, std::move(options), stored_run, check_model_flags);
}

}  // namespace vqa
