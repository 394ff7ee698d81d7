// sluice/backends/cpu/plane_tasks.hpp: per-plane work handed to the thread pool in tasks of several
// small planes. A task per plane costs a claim on the pool's shared task counter, a cache line the
// threads pass back and forth (about 0.1 us each time): more than the work of an 8 x 8 plane, and
// HRNet's low-resolution branches have hundreds of them per op.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "sluice/backends/cpu/thread_pool.hpp"

namespace sluice::cpu::kernels {

/// Values a task of small planes covers at least (while there are enough tasks to balance).
inline constexpr std::int64_t kPlaneTaskValues = 4096;

/// Planes per task: enough for kPlaneTaskValues values, but at most as many as leave four tasks
/// per thread, and at least one.
inline std::int64_t planes_per_task(std::int64_t planes, std::int64_t plane, std::size_t threads) {
  const std::int64_t by_size = kPlaneTaskValues / std::max<std::int64_t>(plane, 1);
  const std::int64_t tasks_wanted = 4 * static_cast<std::int64_t>(threads);
  const std::int64_t by_balance = (planes + tasks_wanted - 1) / tasks_wanted;
  return std::max<std::int64_t>(1, std::min(by_size, by_balance));
}

/// Runs fn(plane_index, worker) for every plane index in [0, planes), on the pool, several small
/// planes to a task (planes_per_task); each plane is still handled alone, so results never depend
/// on the grouping.
template <class F>
void for_each_plane(ThreadPool& pool, std::int64_t planes, std::int64_t plane, F&& fn) {
  const std::int64_t group = planes_per_task(planes, plane, pool.size());
  const std::int64_t tasks = (planes + group - 1) / group;
  pool.parallel_for(static_cast<std::size_t>(tasks), [&](std::size_t task, std::size_t worker) {
    const std::int64_t first = static_cast<std::int64_t>(task) * group, last = std::min(planes, first + group);
    for (std::int64_t p = first; p < last; ++p) fn(p, worker);
  });
}

}  // namespace sluice::cpu::kernels
