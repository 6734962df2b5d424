// `xtgrad-caption train --resume DIR`: the settings a resumed run takes from its checkpoint.
#pragma once

#include <CLI/CLI.hpp>

#include "train.hpp"

namespace caption {

// The settings of a resumed run: the checkpoint's (stored_run), with the per-invocation
// fields of `options` (--out defaults to the run directory). A flag of `cmd` given again
// must agree with the stored setting (common::UsageError naming the flag otherwise: exit
// 2); --eval-every and --threads given again replace the stored ones. UsageError too when
// the checkpoint is already at the last step (--steps, or --stop-at).
TrainOptions resumed_settings(const CLI::App& cmd, TrainOptions options);

}  // namespace caption
