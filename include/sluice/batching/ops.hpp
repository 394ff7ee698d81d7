// sluice/batching/ops.hpp: the Batcher's per-request operation states. One op per queued request,
// of three kinds: a handler op (async_submit: its result goes to an Asio completion handler), a
// sync op (blocking submit: a thread waits on it), and the item ops of async_submit_many, which
// count down to one completion of the whole request. Ops are linked into completion lists
// without allocating.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "sluice/batching/batch_former.hpp"
#include "sluice/batching/op_pool.hpp"
#include "sluice/core/clock.hpp"

namespace sluice::batching::detail {

namespace asio = boost::asio;
using IoExecutor = asio::any_io_executor;

/// The type-erased state of one queued request. Handler ops (async_submit) are delivered through
/// an executor; internal ops (blocking submit, the items of async_submit_many) are delivered
/// where they complete.
template <class Request, class Response>
struct OpBase {
  enum State : std::uint8_t { queued, running, done };

  OpBase(Request r, bool via_executor) : request(std::move(r)), via_executor(via_executor) {}
  OpBase(const OpBase&) = delete;
  OpBase& operator=(const OpBase&) = delete;
  virtual ~OpBase() = default;
  /// Hands the result to its consumer. The op may be gone when this returns.
  virtual void deliver() = 0;

  Request request;
  Response response{};
  std::error_code ec;
  std::shared_ptr<const std::string> message;  ///< the model's failure text, with model_failed
  TimePoint arrival{};
  ItemId id = 0;
  std::atomic<std::uint8_t> state{queued};
  std::atomic<bool> cancel_requested{false};
  OpBase* next = nullptr;  ///< link in a completion list
  const bool via_executor;
  /// A handler op whose handler runs on an executor other than the I/O executor (e.g. a
  /// use_future promise, or a handler bound to another executor): outside the initiating call it
  /// is dispatched straight there, skipping the hop through the I/O executor.
  bool direct_ok = false;
};

/// An intrusive singly linked list of completed ops.
template <class Op>
struct OpList {
  Op* head = nullptr;
  Op* tail = nullptr;
  void push(Op* op) {
    op->next = nullptr;
    if (tail) tail->next = op; else head = op;
    tail = op;
  }
  bool empty() const { return head == nullptr; }
};

// decay: prefer() hands back a reference when the executor ignores the property.
template <class Executor>
using TrackedWork =
    std::decay_t<decltype(asio::prefer(std::declval<Executor>(), asio::execution::outstanding_work.tracked))>;

/// async_submit's op: completes a handler through its associated executor.
template <class Request, class Response, class Handler>
struct HandlerOp final : OpBase<Request, Response> {
  using HandlerExecutor = asio::associated_executor_t<Handler, IoExecutor>;
  /// A handler without an executor of its own completes on the I/O executor: then one work
  /// guard serves both, and no comparison is needed.
  static constexpr bool kMayHaveOwnExecutor =
      !std::is_same_v<HandlerExecutor, IoExecutor> || requires { typename Handler::executor_type; };

  HandlerOp(Handler h, const IoExecutor& io, Request r, std::string* msg_out)
      : OpBase<Request, Response>(std::move(r), true),
        handler(std::move(h)),
        handler_work(asio::prefer(asio::get_associated_executor(handler, io),
                                  asio::execution::outstanding_work.tracked)),
        message_out(msg_out) {
    if constexpr (kMayHaveOwnExecutor) {
      if constexpr (std::is_same_v<HandlerExecutor, IoExecutor>) {
        this->direct_ok = !(asio::get_associated_executor(handler, io) == io);
      } else {
        this->direct_ok = true;
      }
      if (this->direct_ok) io_work.emplace(asio::prefer(io, asio::execution::outstanding_work.tracked));
    }
  }

  void deliver() override {
    if (slot.is_connected()) slot.clear();
    if (message_out && this->message) *message_out = *this->message;
    auto h = std::move(handler);
    auto ex = std::move(handler_work);
    const std::error_code ec = this->ec;
    Response response = std::move(this->response);
    delete this;
    if constexpr (!kMayHaveOwnExecutor) {
      // Only ever called from a function posted to the I/O executor, which is this handler's
      // executor: dispatch would run it inline, so run it inline without the type-erased trip.
      std::move(h)(ec, std::move(response));
    } else {
      asio::dispatch(ex, [h = std::move(h), ec, response = std::move(response)]() mutable {
        std::move(h)(ec, std::move(response));
      });
    }
  }

  // Pooled memory: allocated by the submitting thread, freed by the completing one.
  static void* operator new(std::size_t n, OpPool* pool) { return OpPool::allocate(pool, n); }
  static void operator delete(void* p, OpPool*) noexcept { OpPool::release(p); }
  static void operator delete(void* p) noexcept { OpPool::release(p); }

  Handler handler;
  TrackedWork<HandlerExecutor> handler_work;
  std::optional<TrackedWork<IoExecutor>> io_work;  ///< only when the handler's executor is another one
  asio::cancellation_slot slot;
  std::string* message_out;
};

/// Blocking submit's op: lives on the waiting thread's stack.
template <class Request, class Response>
struct SyncOp final : OpBase<Request, Response> {
  explicit SyncOp(Request r) : OpBase<Request, Response>(std::move(r), false) {}
  void deliver() override {
    std::lock_guard lock(mutex);
    done = true;
    cv.notify_one();  // under the lock: the waiter cannot return (and end this op) before
  }
  void wait() {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return done; });
  }
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
};

/// The shared part of async_submit_many: counts its items down and completes once.
struct ManyBase {
  virtual ~ManyBase() = default;
  virtual void item_done() = 0;
};

template <class Request, class Response>
struct ItemOp final : OpBase<Request, Response> {
  ItemOp(Request r, ManyBase* p) : OpBase<Request, Response>(std::move(r), false), parent(p) {}
  void deliver() override { parent->item_done(); }
  ManyBase* parent;
};

/// async_submit_many's state: one item op per request, one completion with every response.
template <class Request, class Response, class Handler>
struct ManyOp final : ManyBase {
  using HandlerExecutor = asio::associated_executor_t<Handler, IoExecutor>;
  using Item = ItemOp<Request, Response>;

  ManyOp(Handler h, const IoExecutor& io, std::vector<Request> reqs, std::string* msg_out)
      : handler(std::move(h)),
        io_ex(io),
        io_work(asio::prefer(io, asio::execution::outstanding_work.tracked)),
        handler_work(asio::prefer(asio::get_associated_executor(handler, io),
                                  asio::execution::outstanding_work.tracked)),
        message_out(msg_out),
        remaining(reqs.size()) {
    items.reserve(reqs.size());
    for (auto& r : reqs) items.push_back(std::make_unique<Item>(std::move(r), this));
  }

  void item_done() override {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    // Every item is in: complete once, through the I/O executor (never inside the initiation).
    asio::post(io_ex, [this] { finish(); });
  }

  void finish() {
    if (slot.is_connected()) slot.clear();
    std::error_code ec;
    std::vector<Response> responses;
    responses.reserve(items.size());
    for (auto& item : items) {
      if (item->ec && !ec) {
        ec = item->ec;
        if (message_out && item->message) *message_out = *item->message;
      }
      responses.push_back(item->ec ? Response{} : std::move(item->response));
    }
    auto h = std::move(handler);
    auto ex = std::move(handler_work);
    delete this;
    asio::dispatch(ex, [h = std::move(h), ec, responses = std::move(responses)]() mutable {
      std::move(h)(ec, std::move(responses));
    });
  }

  Handler handler;
  IoExecutor io_ex;
  TrackedWork<IoExecutor> io_work;
  TrackedWork<HandlerExecutor> handler_work;
  asio::cancellation_slot slot;
  std::string* message_out;
  std::vector<std::unique_ptr<Item>> items;
  std::atomic<std::size_t> remaining;
};

}  // namespace sluice::batching::detail
