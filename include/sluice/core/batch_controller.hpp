// sluice/core/batch_controller.hpp: the BatchController concept -- the policy that decides, from the
// queue and the clock, whether to dispatch a batch now (and how big) or to wait -- and the plain
// values it exchanges with the Batcher's state machine. No Asio, no threads: controllers are
// driven by the state machine on one strand, and by simulations on a virtual clock.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "sluice/core/clock.hpp"

namespace sluice {

/// What a controller sees when asked to decide. All bounds come from the Batcher's configuration.
struct QueueState {
  std::size_t queued = 0;            ///< items that may join the next batch (same batch key as the head)
  std::size_t total_queued = 0;      ///< items queued under every key
  std::size_t max_batch_size = 1;    ///< hard cap: configuration and memory-safe size
  std::span<const std::size_t> preferred_batch_sizes;  ///< ascending; may be empty
  Duration max_queue_delay{};        ///< the configured longest wait of the oldest item
  TimePoint oldest_arrival = kNever; ///< arrival of the head item
  TimePoint earliest_deadline = kNever;  ///< over the `deadlines` below
  /// Deadlines of the first min(queued, max_batch_size) items, in dispatch order (kNever = none).
  std::span<const TimePoint> deadlines;
  std::size_t idle_lanes = 1;        ///< lanes that could start a batch now
  std::size_t busy_lanes = 0;        ///< lanes running a batch
  /// The batch key of the head (the key the next batch is formed under): a controller that models
  /// latency per key (e.g. per input size) reads it; others ignore it.
  std::uint64_t key = 0;
};

/// A controller's answer.
struct Decision {
  /// > 0: form a batch of this many items now (clamped to [1, min(queued, max_batch_size)]).
  std::size_t dispatch = 0;
  /// When dispatch == 0: ask again at this time at the latest (an arrival also asks again).
  TimePoint wait_until = kNever;
  /// Drop queued items whose deadline is earlier than this, completing them with deadline_exceeded
  /// now: they cannot be served in time, and serving them would make others late too.
  TimePoint shed_deadline_before = TimePoint::min();

  static Decision now(std::size_t n) { return Decision{n, kNever, TimePoint::min()}; }
  static Decision wait(TimePoint until) { return Decision{0, until, TimePoint::min()}; }
};

/// What the Batcher reports after each batch.
struct BatchRecord {
  std::size_t batch_size = 0;
  std::size_t lane = 0;
  TimePoint started{};   ///< the model's run began (after prepare)
  TimePoint finished{};  ///< the model's run ended (before finish)
  bool ok = true;
  bool out_of_memory = false;
  std::uint64_t key = 0;  ///< the batch key the batch was formed under
  Duration run_time() const { return finished - started; }
};

/// The policy of batch formation. Called on one strand: no locking needed inside.
template <class C>
concept BatchController = requires(C& c, const QueueState& q, TimePoint now, const BatchRecord& r) {
  { c.decide(q, now) } -> std::same_as<Decision>;
  c.observe(r);
};

/// Optional: early admission control. `admit` returning false rejects a new request at once with
/// queue_full (e.g. its deadline cannot be met even if it were served next).
template <class C>
concept AdmittingController =
    BatchController<C> && requires(C& c, const QueueState& q, TimePoint deadline, TimePoint now) {
      { c.admit(q, deadline, now) } -> std::convertible_to<bool>;
    };

}  // namespace sluice
