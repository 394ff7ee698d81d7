// sluice/sluice.hpp: the umbrella header. The core only: no CUDA, Eigen or OpenCV header leaks
// into a translation unit unless it includes a backend or the vision headers itself.
#pragma once

#include "sluice/core/clock.hpp"
#include "sluice/core/concepts.hpp"
#include "sluice/core/error.hpp"
