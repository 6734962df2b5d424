// What a caption or VQA training run works with (train_loop.hpp's Run): the data, the
// model, AdamW with the warm-up + cosine schedule, and the batch order, all at `step` (the
// resumed checkpoint's, or 0), set up by make_data, make_model and start_training in that
// order. The example derives from it and adds train_step(step) (its rows: next_rows(), its
// step: step_on), evaluate() and save_model(options).
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "batch_sampler.hpp"
#include "data_parallel_step.hpp"
#include "flags.hpp"
#include "train_state.hpp"
#include "training.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/random.hpp"

namespace common {

// The order a run takes its training examples in: each epoch a fresh permutation of the
// train_size examples, from a generator seeded apart from the model's initialisation
// (which is Generator(seed)).
template <class Options> BatchSampler run_sampler(const Options& o) {
  return BatchSampler(o.train_size, o.batch, o.seed ^ 0x5eedcafeULL);
}

template <class Model, class Example> struct AdamWRun {
  std::vector<Example> train_data, test;
  std::shared_ptr<Model> model;
  std::unique_ptr<DataParallelStep> data_parallel;  // under mpirun: SyncBatchNorm and DDP
  std::unique_ptr<xtgrad::AdamW<float>> optimizer;
  std::unique_ptr<xtgrad::LRScheduler<float>> scheduler;
  std::unique_ptr<BatchSampler> sampler;
  std::size_t step = 0;

  TrainingState state() { return {*optimizer, *sampler, scheduler.get()}; }
  double lr() const { return scheduler->lr(); }

  // The splits: make_split(count, seed) gives `count` examples (the test split's seed is
  // the run's + 1); `noun` names them on `log` and in an out-of-memory message.
  template <class Options, class MakeSplit>
  void make_data(const Options& o, MakeSplit make_split, const std::string& noun, std::ostream& log) {
    log << "generating " << o.train_size << " training and " << o.test_size << " test " << noun << " (seed " << o.seed
        << ")\n";
    const Doing doing("generating " + std::to_string(o.train_size) + " training " + noun);
    train_data = make_split(o.train_size, o.seed);
    test = make_split(o.test_size, o.seed + 1);
  }

  // The model: a fresh one from Generator(seed), or on --resume the checkpoint's
  // (load_model(dir) as the example's, which gives .model and .step) at its step.
  template <class Options, class LoadModel> void make_model(const Options& o, LoadModel load_model) {
    if (o.resume_dir.empty()) {
      xtgrad::Generator init(o.seed);
      model = std::make_unique<Model>(o.model, init);
      return;
    }
    auto loaded = load_model(o.resume_dir);
    model = std::move(loaded.model);
    step = loaded.step;
  }

  // Once the model is set (fresh, or the resumed checkpoint's at `step`): the data-parallel
  // step (parallel: this process's ranks, null alone), AdamW, the schedule and the sampler,
  // with their stored state on --resume; then a line on `log` saying what runs (`what`: the
  // model's variant).
  template <class Options>
  void start_training(const Options& o, const char* program, const std::string& what, std::ostream& log,
                      const DistributedRun* parallel) {
    data_parallel = std::make_unique<DataParallelStep>(parallel, model);
    optimizer = std::make_unique<xtgrad::AdamW<float>>(
        model->parameters(), xtgrad::AdamWOptions().set_lr(o.lr).set_weight_decay(o.weight_decay));
    scheduler = std::make_unique<xtgrad::LRScheduler<float>>(*optimizer, warmup_cosine(o.steps, o.warmup_steps()));
    sampler = std::make_unique<BatchSampler>(run_sampler(o));
    if (!o.resume_dir.empty()) load_train_state(o.resume_dir, {program, o.run_id, step}, state());
    log << model->parameter_count() << " parameters (" << what << "); steps " << step + 1 << " to "
        << (o.stop_at ? o.stop_at : o.steps) << " of " << o.steps << ", batch " << o.batch << ", AdamW lr " << o.lr
        << " (warm-up " << o.warmup_steps() << ", cosine)";
    if (o.world_size > 1) log << " on " << o.world_size << " ranks, each a share of the batch";
    log << "\n";
  }

  // The examples (indices into train_data) of the next global batch that this rank trains on.
  std::vector<std::size_t> next_rows() { return data_parallel->share(sampler->next()); }

  // One step from this rank's loss, the mean over its `terms` loss terms
  // (DataParallelStep::step): the global batch's loss.
  double step_on(xtgrad::Tensor<float>& loss, double terms, std::size_t at) {
    return data_parallel->step(loss, terms, *optimizer, *scheduler, at);
  }
};

}  // namespace common
