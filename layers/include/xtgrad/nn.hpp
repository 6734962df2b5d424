// Everything for building and training models: the engine, the Module API and layers,
// cross-attention, the convolutional layers and the optimizers.
#pragma once

#include "xtgrad/attention.hpp"
#include "xtgrad/init.hpp"
#include "xtgrad/layers.hpp"
#include "xtgrad/module.hpp"
#include "xtgrad/optim.hpp"
#include "xtgrad/options.hpp"
#include "xtgrad/recurrent.hpp"
#include "xtgrad/transformer.hpp"
#include "xtgrad/vision.hpp"
#include "xtgrad/xtgrad.hpp"
