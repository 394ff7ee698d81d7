// sluice/core/concepts.hpp: the three concepts of sluice in one include.
#pragma once

#include "sluice/core/backend.hpp"
#include "sluice/core/batch_controller.hpp"
#include "sluice/core/batch_model.hpp"
