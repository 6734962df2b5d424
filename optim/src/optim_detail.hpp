// Helpers shared by the optimizer sources; not installed.
#pragma once

#include <string>

namespace xtgrad::optim_detail {

// A hyperparameter in an error message: "-1", "0.5", "1e-08".
std::string fmt(double v);

// "Invalid learning rate: -1" unless lr >= 0.
void check_lr(double lr);

}  // namespace xtgrad::optim_detail
