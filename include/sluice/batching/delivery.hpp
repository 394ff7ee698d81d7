// sluice/batching/delivery.hpp: how a list of finished ops reaches its consumers. Internal ops are
// delivered at once; handler ops go to the I/O executor in one post per list, and from there each
// is dispatched to its own executor, so a batch of n callbacks costs one trip, not n.
#pragma once

#include <boost/asio/post.hpp>

#include "sluice/batching/metrics.hpp"
#include "sluice/batching/ops.hpp"
#include "sluice/core/clock.hpp"

namespace sluice::batching::detail {

/// Where a completion list is delivered from. `deferred`: an initiating function, a cancellation
/// handler or stop() -- never call a handler here, post. `completing`: a lane, the timer or the
/// CPU pool -- a handler whose executor is not the I/O executor may be dispatched right here.
enum class Delivery { deferred, completing };

/// Records each op's completion in `metrics` and hands it to its consumer; empties `list`. Never
/// under the Batcher's lock: internal ops run their consumer inline.
template <class Op>
void deliver(OpList<Op>& list, Delivery mode, const IoExecutor& io, BatcherMetrics& metrics) {
  if (list.empty()) return;
  const TimePoint now = Clock::now();
  Op* chain_head = nullptr;
  Op* chain_tail = nullptr;
  for (Op* op = list.head; op != nullptr;) {
    Op* next = op->next;  // read first: deliver() may end the op's life
    metrics.record_completion(op->ec);
    metrics.record_latency(now - op->arrival);
    op->state.store(Op::done, std::memory_order_release);
    if (op->via_executor && !(mode == Delivery::completing && op->direct_ok)) {
      op->next = nullptr;
      if (chain_tail) chain_tail->next = op; else chain_head = op;
      chain_tail = op;
    } else {
      op->deliver();
    }
    op = next;
  }
  list = OpList<Op>{};
  if (chain_head) {
    asio::post(io, [chain_head] {
      for (Op* op = chain_head; op != nullptr;) {
        Op* next = op->next;
        op->deliver();
        op = next;
      }
    });
  }
}

}  // namespace sluice::batching::detail
