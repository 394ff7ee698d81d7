// sluice/batching/cancellation.hpp: how an Asio cancellation reaches the Batcher. Slot handlers
// and timer waits hold a shared Anchor rather than the Batcher itself, so that one that fires after
// the Batcher is gone does nothing.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/cancellation_type.hpp>

namespace sluice::batching::detail {

/// Points at its owner while the owner lives; the owner clears `self` under `mutex` when it goes.
template <class Owner>
struct Anchor {
  std::mutex mutex;
  Owner* self = nullptr;
};

/// The cancellation handler of async_submit: cancels one op (Owner::cancel_ops).
template <class Owner, class Op>
struct CancelOne {
  std::shared_ptr<Anchor<Owner>> anchor;
  Op* op;
  CancelOne(std::shared_ptr<Anchor<Owner>> a, Op* o) : anchor(std::move(a)), op(o) {}
  void operator()(boost::asio::cancellation_type type) {
    if (type == boost::asio::cancellation_type::none) return;
    std::lock_guard a(anchor->mutex);
    if (anchor->self) anchor->self->cancel_ops(std::span<Op* const>(&op, 1));
  }
};

/// The cancellation handler of async_submit_many: cancels all of its items.
template <class Owner, class Op>
struct CancelMany {
  // Type-erases the ManyOp type for the slot: keep a list of its items.
  std::shared_ptr<Anchor<Owner>> anchor;
  std::vector<Op*> ops;
  template <class Many>
  CancelMany(std::shared_ptr<Anchor<Owner>> a, Many* m) : anchor(std::move(a)) {
    ops.reserve(m->items.size());
    for (auto& item : m->items) ops.push_back(item.get());
  }
  void operator()(boost::asio::cancellation_type type) {
    if (type == boost::asio::cancellation_type::none) return;
    std::lock_guard a(anchor->mutex);
    if (anchor->self) anchor->self->cancel_ops(std::span<Op* const>(ops));
  }
};

/// Connects the cancellation slot of `op`'s handler, when it has one, to a `Cancel` for `op`.
template <class Cancel, class Owner, class HandlerOp>
void bind_cancellation(HandlerOp* op, const std::shared_ptr<Anchor<Owner>>& anchor) {
  auto slot = boost::asio::get_associated_cancellation_slot(op->handler);
  if (slot.is_connected()) {
    op->slot = slot;
    slot.template emplace<Cancel>(anchor, op);
  }
}

}  // namespace sluice::batching::detail
