// examples/common/thread_limit.hpp: the most threads of one kind (lanes, backend threads, stage or
// decode threads) the example programs accept from their options and config. Each starts threads
// (a lane is a thread and a backend): a typo of many digits would spend minutes creating them
// instead of an error.
#pragma once

#include <cstddef>

namespace sluice::examples {

inline constexpr std::size_t kMaxThreads = 1024;

}  // namespace sluice::examples
