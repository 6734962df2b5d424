// The whole of xtgrad's engine in one include.
#pragma once

#include "xtgrad/backend.hpp"
#include "xtgrad/gradcheck.hpp"
#include "xtgrad/ops.hpp"
#include "xtgrad/random.hpp"
#include "xtgrad/tensor.hpp"
