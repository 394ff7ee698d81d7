// sluice/batching/former_limits.hpp: the rules a Batcher's BatchFormer works by, from the user's
// BatcherConfig and the model: the configured limits, validated, with the largest batch capped by
// what fits the model's memory limit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "sluice/batching/batch_former.hpp"
#include "sluice/batching/batcher_config.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/error.hpp"

namespace sluice::batching {

/// The largest batch size up to c.max_batch_size whose memory_for() fits c.memory_limit_bytes (a
/// batch of one always gets its try, and its out_of_memory); c.max_batch_size without a limit.
template <BatchModel Model>
std::size_t memory_cap(const BatcherConfig& c, const Model& model) {
  std::size_t cap = c.max_batch_size;
  if constexpr (MemoryAwareBatchModel<Model>) {
    if (c.memory_limit_bytes) {
      std::size_t fit = 1;
      for (std::size_t n = 1; n <= c.max_batch_size; ++n) {
        if (static_cast<std::size_t>(model.memory_for(n)) > *c.memory_limit_bytes) break;
        fit = n;
      }
      cap = std::min(cap, fit);
    }
  }
  return cap;
}

/// The former's rules for `model` with `slots` batches in flight at once. Throws
/// sluice::Error(invalid_argument) for a bad configuration.
template <BatchModel Model>
FormerConfig former_limits(const BatcherConfig& c, const Model& model, std::size_t slots) {
  FormerConfig f;
  f.max_batch_size = c.max_batch_size;
  f.preferred_batch_sizes = c.preferred_batch_sizes;
  f.max_queue_delay = c.max_queue_delay;
  f.max_queue_size = c.max_queue_size;
  f.priority_levels = c.priority_levels;
  f.slots = c.lanes;
  f.validate();  // the user's configuration, before any cap changes it
  if (c.lanes > 1024) throw Error(errc::invalid_argument, "lanes must be <= 1024");
  f.max_batch_size = memory_cap(c, model);
  std::erase_if(f.preferred_batch_sizes, [&](std::size_t s) { return s > f.max_batch_size; });
  f.slots = slots;
  return f;
}

}  // namespace sluice::batching
