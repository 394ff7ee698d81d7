// sluice/batching/oom_split.hpp: what the Batcher does when a batch runs out of memory. It tries
// the two halves, each on its own, and halves again whichever runs out too, down to single
// requests; a single request out of memory fails alone. A pure function of the tries' outcomes:
// no model, no threads, so tests drive it with scripted outcomes.
#pragma once

#include <cstddef>
#include <utility>

namespace sluice::batching {

/// Items [begin, end) of a batch.
struct ItemRange {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t size() const { return end - begin; }
  friend bool operator==(const ItemRange&, const ItemRange&) = default;
};

/// The two halves an out-of-memory range is retried as; of an odd size, the first is the smaller.
inline std::pair<ItemRange, ItemRange> halves(ItemRange r) {
  const std::size_t mid = r.begin + r.size() / 2;
  return {ItemRange{r.begin, mid}, ItemRange{mid, r.end}};
}

/// The outcome of one try of a range.
enum class TryOutcome { ok, out_of_memory, failed };

/// Follows up a try of `r` that ended with `outcome`. Out of memory: a range of two or more is
/// reported to `on_split(r)`, then its halves are tried with `try_range(half) -> TryOutcome`, in
/// order, each followed up the same way before the next; a single request goes to
/// `on_exhausted(r)`. Any other outcome is final (the try itself recorded it).
template <class Try, class OnSplit, class OnExhausted>
void follow_up_oom(ItemRange r, TryOutcome outcome, Try&& try_range, OnSplit&& on_split,
                   OnExhausted&& on_exhausted) {
  if (outcome != TryOutcome::out_of_memory || r.size() == 0) return;
  if (r.size() == 1) {
    on_exhausted(r);
    return;
  }
  on_split(r);
  const auto [first, second] = halves(r);
  follow_up_oom(first, try_range(first), try_range, on_split, on_exhausted);
  follow_up_oom(second, try_range(second), try_range, on_split, on_exhausted);
}

}  // namespace sluice::batching
