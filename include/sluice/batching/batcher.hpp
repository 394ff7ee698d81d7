// sluice/batching/batcher.hpp: sluice::Batcher, the Asio face of dynamic batching. Requests come in
// through async_submit (any Asio completion token), wait in the sans-io BatchFormer under one
// mutex, and run in batches on the Batcher's lane threads; a staged model's prepare/finish run on a
// CPU pool so they overlap other batches' runs. Every request completes exactly once: with its
// response, or with a sluice::errc. Completions reach the caller through the handler's associated
// executor (by default the executor the Batcher was built with): one post per batch, then
// dispatch, so a batch of n callbacks costs one trip through the executor, not n.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "sluice/batching/batch_former.hpp"
#include "sluice/batching/batcher_config.hpp"
#include "sluice/batching/metrics.hpp"
#include "sluice/batching/op_pool.hpp"
#include "sluice/control/fixed_batch.hpp"
#include "sluice/core/batch_controller.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice {

namespace asio = boost::asio;

namespace batching::detail {

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

/// The batch type of a staged model (a placeholder for direct ones).
template <class M, bool = StagedBatchModel<M>>
struct StagedBatchOf {
  using type = char;
};
template <class M>
struct StagedBatchOf<M, true> {
  using type = typename M::batch_type;
};

}  // namespace batching::detail

template <BatchModel Model, BatchController Controller = control::FixedBatch>
class Batcher {
 public:
  using model_type = Model;
  using controller_type = Controller;
  using request_type = typename Model::request_type;
  using response_type = typename Model::response_type;
  using executor_type = asio::any_io_executor;
  static constexpr bool is_staged = StagedBatchModel<Model> && !DirectBatchModel<Model>;

  /// Completions go through `ex` (which must be run by someone). The model must outlive the
  /// Batcher; with lanes > 1 its run() is called from several threads at once.
  Batcher(executor_type ex, Model& model, BatcherConfig config = {}, Controller controller = Controller{})
      : config_(std::move(config)),
        ex_(std::move(ex)),
        model_(&model),
        controller_(std::move(controller)),
        former_(make_former_config(config_, model), controller_),
        timer_(ex_),
        anchor_(std::make_shared<Anchor>()) {
    anchor_->self = this;
    start_threads();
  }

  Batcher(asio::io_context& ctx, Model& model, BatcherConfig config = {}, Controller controller = Controller{})
      : Batcher(ctx.get_executor(), model, std::move(config), std::move(controller)) {}

  /// A Batcher with its own one-thread io_context for completions and timers: for blocking
  /// submit() and callback users who run no io_context of their own.
  Batcher(Model& model, BatcherConfig config = {}, Controller controller = Controller{})
      : Batcher(OwnContext{std::make_unique<asio::io_context>()}, model, std::move(config), std::move(controller)) {}

  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  /// Waits for in-flight batches; queued requests are drained if stop(drain) was called, else
  /// completed with shutting_down.
  ~Batcher() {
    stop(Stop::cancel_if_running);
    wait_idle();
    {
      std::lock_guard a(anchor_->mutex);
      anchor_->self = nullptr;
    }
    {
      std::lock_guard lock(mutex_);
      exit_ = true;
      timer_.cancel();
    }
    lane_cv_.notify_all();
    for (auto& t : lanes_) t.join();
    if (cpu_pool_) cpu_pool_->join();
    if (own_ctx_) {
      own_guard_.reset();
      own_thread_.join();
    }
    pool_->detach();  // freed when the last op still travelling through an executor is gone
  }

  executor_type get_executor() const noexcept { return ex_; }
  const BatcherConfig& config() const noexcept { return config_; }
  const batching::BatcherMetrics& metrics() const noexcept { return metrics_; }
  std::string render_prometheus() const { return metrics_.render_prometheus(config_.model_name); }
  /// The largest batch the Batcher forms (the configured max, capped by memory_limit_bytes).
  std::size_t effective_max_batch_size() const noexcept { return effective_max_batch_; }

  /// Runs `f(controller)` under the Batcher's lock (controllers are not thread-safe themselves).
  template <class F>
  decltype(auto) with_controller(F&& f) {
    std::lock_guard lock(mutex_);
    return std::forward<F>(f)(controller_);
  }

  /// Submits one request. Completion signature: void(std::error_code, response_type). Honours the
  /// token's cancellation slot (any cancellation type): a queued request completes with
  /// cancelled at once; a running one completes with cancelled when its batch ends.
  template <class Token>
  auto async_submit(request_type request, SubmitOptions options, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, response_type)>(
        [this](auto handler, request_type req, SubmitOptions opts) {
          using H = std::decay_t<decltype(handler)>;
          static_assert(alignof(HandlerOp<H>) <= 16, "a completion handler aligned beyond 16 bytes is not supported");
          auto* op = new (pool_) HandlerOp<H>(std::move(handler), ex_, std::move(req), opts.error_message);
          auto slot = asio::get_associated_cancellation_slot(op->handler);
          if (slot.is_connected()) {
            op->slot = slot;
            slot.template emplace<CancelOne>(anchor_, op);
          }
          enqueue_one(op, opts);
        },
        token, std::move(request), std::move(options));
  }

  template <class Token>
  auto async_submit(request_type request, Token&& token) {
    return async_submit(std::move(request), SubmitOptions{}, std::forward<Token>(token));
  }

  /// Submits a request of several items. They may run in different batches; the responses come
  /// back in order. Completion: void(std::error_code, std::vector<response_type>). Admission is all
  /// or nothing (a queue without room for every item rejects all with queue_full). When items
  /// fail, the error is that of the first failed item (by index) and its slot holds a
  /// default-constructed response; the other responses are still there.
  template <class Token>
  auto async_submit_many(std::vector<request_type> requests, SubmitOptions options, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::vector<response_type>)>(
        [this](auto handler, std::vector<request_type> reqs, SubmitOptions opts) {
          using H = std::decay_t<decltype(handler)>;
          auto* many = new ManyOp<H>(this, std::move(handler), ex_, std::move(reqs), opts.error_message);
          auto slot = asio::get_associated_cancellation_slot(many->handler);
          if (slot.is_connected()) {
            many->slot = slot;
            slot.template emplace<CancelMany>(anchor_, many);
          }
          enqueue_many(*many, opts);
        },
        token, std::move(requests), std::move(options));
  }

  /// Blocking convenience: returns the response or throws sluice::Error (model_failed carries the
  /// model's message). Works without anyone running the executor, except that deadlines expire
  /// through its timer.
  response_type submit(request_type request, SubmitOptions options = {}) {
    SyncOp op(std::move(request));
    enqueue_one(&op, options);
    op.wait();
    if (op.ec) {
      throw Error(op.ec, op.message ? *op.message : op.ec.message());
    }
    return std::move(op.response);
  }

  /// Stops accepting work (later submissions complete with shutting_down). drain: queued requests
  /// still run, in batches formed without waiting for company; cancel: they complete with
  /// shutting_down now. Returns at once; wait_idle() waits for the rest.
  void stop(StopMode mode = StopMode::drain) { stop(mode == StopMode::drain ? Stop::drain : Stop::cancel); }

  /// Blocks until nothing is queued and no batch is in flight.
  void wait_idle() {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [&] { return former_.empty() && in_flight_ == 0; });
  }

  bool stopped() const {
    std::lock_guard lock(mutex_);
    return stopped_;
  }
  /// Requests queued now (not counting running batches).
  std::size_t queued() const {
    std::lock_guard lock(mutex_);
    return former_.size();
  }

 private:
  using Op = batching::detail::OpBase<request_type, response_type>;
  using OpList = batching::detail::OpList<Op>;
  using Former = batching::BatchFormer<Op*, Controller>;
  enum class Stop { drain, cancel, cancel_if_running };

  // ---- op kinds -------------------------------------------------------------------------------
  template <class Handler>
  struct HandlerOp final : Op {
    using HandlerExecutor = asio::associated_executor_t<Handler, executor_type>;
    /// A handler without an executor of its own completes on the I/O executor: then one work
    /// guard serves both, and no comparison is needed.
    static constexpr bool kMayHaveOwnExecutor =
        !std::is_same_v<HandlerExecutor, executor_type> || requires { typename Handler::executor_type; };
    using IoWork =
        std::decay_t<decltype(asio::prefer(std::declval<executor_type>(), asio::execution::outstanding_work.tracked))>;
    // decay: prefer() hands back a reference when the executor ignores the property.
    using HandlerWork =
        std::decay_t<decltype(asio::prefer(std::declval<HandlerExecutor>(), asio::execution::outstanding_work.tracked))>;

    HandlerOp(Handler h, const executor_type& io, request_type r, std::string* msg_out)
        : Op(std::move(r), true),
          handler(std::move(h)),
          handler_work(asio::prefer(asio::get_associated_executor(handler, io),
                                    asio::execution::outstanding_work.tracked)),
          message_out(msg_out) {
      if constexpr (kMayHaveOwnExecutor) {
        if constexpr (std::is_same_v<HandlerExecutor, executor_type>) {
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
      response_type response = std::move(this->response);
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
    static void* operator new(std::size_t n, batching::OpPool* pool) { return batching::OpPool::allocate(pool, n); }
    static void operator delete(void* p, batching::OpPool*) noexcept { batching::OpPool::release(p); }
    static void operator delete(void* p) noexcept { batching::OpPool::release(p); }

    Handler handler;
    HandlerWork handler_work;
    std::optional<IoWork> io_work;  ///< only when the handler's executor is another one
    asio::cancellation_slot slot;
    std::string* message_out;
  };

  struct SyncOp final : Op {
    explicit SyncOp(request_type r) : Op(std::move(r), false) {}
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
  struct ItemOp final : Op {
    ItemOp(request_type r, ManyBase* p) : Op(std::move(r), false), parent(p) {}
    void deliver() override { parent->item_done(); }
    ManyBase* parent;
  };

  template <class Handler>
  struct ManyOp final : ManyBase {
    using HandlerExecutor = asio::associated_executor_t<Handler, executor_type>;
    ManyOp(Batcher* b, Handler h, const executor_type& io, std::vector<request_type> reqs, std::string* msg_out)
        : handler(std::move(h)),
          io_ex(io),
          io_work(asio::prefer(io, asio::execution::outstanding_work.tracked)),
          handler_work(asio::prefer(asio::get_associated_executor(handler, io),
                                    asio::execution::outstanding_work.tracked)),
          message_out(msg_out),
          remaining(reqs.size()) {
      (void)b;
      items.reserve(reqs.size());
      for (auto& r : reqs) items.push_back(std::make_unique<ItemOp>(std::move(r), this));
    }

    void item_done() override {
      if (remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
      // Every item is in: complete once, through the I/O executor (never inside the initiation).
      asio::post(io_ex, [this] { finish(); });
    }

    void finish() {
      if (slot.is_connected()) slot.clear();
      std::error_code ec;
      std::vector<response_type> responses;
      responses.reserve(items.size());
      for (auto& item : items) {
        if (item->ec && !ec) {
          ec = item->ec;
          if (message_out && item->message) *message_out = *item->message;
        }
        responses.push_back(item->ec ? response_type{} : std::move(item->response));
      }
      auto h = std::move(handler);
      auto ex = std::move(handler_work);
      delete this;
      asio::dispatch(ex, [h = std::move(h), ec, responses = std::move(responses)]() mutable {
        std::move(h)(ec, std::move(responses));
      });
    }

    Handler handler;
    executor_type io_ex;
    // decay: prefer() hands back a reference when the executor ignores the property.
    std::decay_t<decltype(asio::prefer(std::declval<executor_type>(), asio::execution::outstanding_work.tracked))>
        io_work;
    std::decay_t<decltype(asio::prefer(std::declval<HandlerExecutor>(), asio::execution::outstanding_work.tracked))>
        handler_work;
    asio::cancellation_slot slot;
    std::string* message_out;
    std::vector<std::unique_ptr<ItemOp>> items;
    std::atomic<std::size_t> remaining;
  };

  /// Cancellation handlers reach the Batcher through this anchor, so that one emitted after the
  /// Batcher is gone does nothing.
  struct Anchor {
    std::mutex mutex;
    Batcher* self = nullptr;
  };
  struct CancelOne {
    std::shared_ptr<Anchor> anchor;
    Op* op;
    CancelOne(std::shared_ptr<Anchor> a, Op* o) : anchor(std::move(a)), op(o) {}
    void operator()(asio::cancellation_type type) {
      if (type == asio::cancellation_type::none) return;
      std::lock_guard a(anchor->mutex);
      if (anchor->self) anchor->self->cancel_ops(std::span<Op* const>(&op, 1));
    }
  };
  struct CancelMany {
    // Type-erases the ManyOp type for the slot; ManyBase::items is not visible, so keep a list.
    std::shared_ptr<Anchor> anchor;
    std::vector<Op*> ops;
    template <class Many>
    CancelMany(std::shared_ptr<Anchor> a, Many* m) : anchor(std::move(a)) {
      ops.reserve(m->items.size());
      for (auto& item : m->items) ops.push_back(item.get());
    }
    void operator()(asio::cancellation_type type) {
      if (type == asio::cancellation_type::none) return;
      std::lock_guard a(anchor->mutex);
      if (anchor->self) anchor->self->cancel_ops(ops);
    }
  };

  /// A formed batch on its way through prepare -> run -> finish.
  struct Job {
    std::vector<Op*> ops;
    std::vector<request_type> requests;
    std::vector<response_type> responses;
    std::vector<BatchRecord> records;
    std::size_t lane = 0;
    std::exception_ptr stage_error;  ///< staged: what prepare threw
    bool finished = false;           ///< staged: results are final (no finish stage pending)
    std::optional<typename batching::detail::StagedBatchOf<Model>::type> staged;
  };

  struct OwnContext {
    std::unique_ptr<asio::io_context> ctx;
  };
  Batcher(OwnContext own, Model& model, BatcherConfig config, Controller controller)
      : own_ctx_(std::move(own.ctx)),
        own_guard_(std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
            own_ctx_->get_executor())),
        own_thread_([ctx = own_ctx_.get()] { ctx->run(); }),
        config_(std::move(config)),
        ex_(own_ctx_->get_executor()),
        model_(&model),
        controller_(std::move(controller)),
        former_(make_former_config(config_, model), controller_),
        timer_(ex_),
        anchor_(std::make_shared<Anchor>()) {
    anchor_->self = this;
    start_threads();
  }

  // ---- configuration ---------------------------------------------------------------------------
  static std::size_t memory_cap(const BatcherConfig& c, const Model& model) {
    std::size_t cap = c.max_batch_size;
    if constexpr (MemoryAwareBatchModel<Model>) {
      if (c.memory_limit_bytes) {
        std::size_t fit = 1;  // a batch of one always gets its try (and its out_of_memory)
        for (std::size_t n = 1; n <= c.max_batch_size; ++n) {
          if (static_cast<std::size_t>(model.memory_for(n)) > *c.memory_limit_bytes) break;
          fit = n;
        }
        cap = std::min(cap, fit);
      }
    }
    return cap;
  }

  batching::FormerConfig make_former_config(const BatcherConfig& c, const Model& model) {
    batching::FormerConfig f;
    f.max_batch_size = c.max_batch_size;
    f.preferred_batch_sizes = c.preferred_batch_sizes;
    f.max_queue_delay = c.max_queue_delay;
    f.max_queue_size = c.max_queue_size;
    f.priority_levels = c.priority_levels;
    f.slots = c.lanes;
    f.validate();  // the user's configuration, before any cap changes it
    if (c.lanes > 1024) throw Error(errc::invalid_argument, "lanes must be <= 1024");
    effective_max_batch_ = memory_cap(c, model);
    f.max_batch_size = effective_max_batch_;
    std::erase_if(f.preferred_batch_sizes, [&](std::size_t s) { return s > effective_max_batch_; });
    // A staged model keeps one batch preparing per lane while another runs.
    if constexpr (is_staged) f.slots = c.cpu_threads > 0 ? 2 * c.lanes : c.lanes;
    return f;
  }

  void start_threads() {
    if constexpr (is_staged) {
      if (config_.cpu_threads > 0) cpu_pool_.emplace(config_.cpu_threads);
    }
    lanes_.reserve(config_.lanes);
    for (std::size_t i = 0; i < config_.lanes; ++i) lanes_.emplace_back([this, i] { lane_main(i); });
  }

  // ---- submission ------------------------------------------------------------------------------
  static TimePoint deadline_of(const SubmitOptions& o, TimePoint now) {
    TimePoint d = o.deadline;
    if (o.timeout) {
      const TimePoint t = (*o.timeout >= kNever - now) ? kNever : now + *o.timeout;
      d = std::min(d, t);
    }
    return d;
  }

  /// Queues `op` in the former, or completes it at once with the former's refusal. True if queued.
  bool push_locked(Op* op, std::uint64_t key, const SubmitOptions& opts, TimePoint deadline, TimePoint now,
                   OpList& done) {
    Op* payload = op;
    const auto a = former_.push(payload, key, opts.priority, deadline, now);
    if (!a) {
      reject_locked(op, a, done);
      return false;
    }
    op->id = a.id;
    return true;
  }

  void reject_locked(Op* op, const typename Former::Admission& a, OpList& done) {
    op->ec = a.ec;
    if (a.ec == errc::queue_full) {
      metrics_.record_rejection(a.by_controller ? batching::Rejection::admission : batching::Rejection::queue_full);
    } else if (a.ec == errc::invalid_argument) {
      metrics_.record_rejection(batching::Rejection::invalid_argument);
    }
    done.push(op);
  }

  void enqueue_one(Op* op, const SubmitOptions& opts) {
    const std::uint64_t key = batch_key_of(*model_, op->request);
    const TimePoint now = Clock::now();
    op->arrival = now;
    const TimePoint deadline = deadline_of(opts, now);
    OpList done;
    std::size_t ready = 0;
    {
      std::lock_guard lock(mutex_);
      if (stopped_) {
        op->ec = make_error_code(errc::shutting_down);
        metrics_.record_rejection(batching::Rejection::shutting_down);
        done.push(op);
      } else if (push_locked(op, key, opts, deadline, now, done)) {
        ready = pump_locked(now, done);
      }
    }
    wake_lanes(ready);
    deliver(done);
  }

  template <class Many>
  void enqueue_many(Many& many, const SubmitOptions& opts) {
    if (many.items.empty()) {
      many.remaining.store(1);
      many.item_done();
      return;
    }
    const TimePoint now = Clock::now();
    const TimePoint deadline = deadline_of(opts, now);
    std::vector<std::uint64_t> keys;
    keys.reserve(many.items.size());
    for (auto& item : many.items) keys.push_back(batch_key_of(*model_, item->request));
    OpList done;
    std::size_t ready = 0;
    {
      std::lock_guard lock(mutex_);
      if (stopped_ || !former_.has_room(many.items.size())) {
        const auto reason = stopped_ ? errc::shutting_down : errc::queue_full;
        for (auto& item : many.items) {
          item->arrival = now;
          item->ec = make_error_code(reason);
          metrics_.record_rejection(stopped_ ? batching::Rejection::shutting_down : batching::Rejection::queue_full);
          done.push(item.get());
        }
      } else {
        for (std::size_t i = 0; i < many.items.size(); ++i) {
          Op* op = many.items[i].get();
          op->arrival = now;
          push_locked(op, keys[i], opts, deadline, now, done);
        }
        ready = pump_locked(now, done);
      }
    }
    wake_lanes(ready);
    deliver(done);
  }

  void cancel_ops(std::span<Op* const> ops) {
    OpList done;
    std::size_t ready = 0;
    {
      std::lock_guard lock(mutex_);
      for (Op* op : ops) {
        if (auto item = former_.cancel(op->id)) {
          op->ec = make_error_code(errc::cancelled);
          done.push(op);
        } else if (op->state.load(std::memory_order_acquire) == Op::running) {
          op->cancel_requested.store(true, std::memory_order_release);
        }
      }
      if (!done.empty()) ready = pump_locked(Clock::now(), done);  // a smaller queue may change the decision
    }
    wake_lanes(ready);
    deliver(done);
  }

  void stop(Stop mode) {
    OpList done;
    std::size_t ready = 0;
    {
      std::lock_guard lock(mutex_);
      if (mode == Stop::cancel_if_running) {
        if (stopped_) return;  // an earlier stop(drain) keeps draining
        mode = Stop::cancel;
      }
      stopped_ = true;
      if (mode == Stop::cancel) {
        drained_.clear();
        former_.drain_all(drained_);
        for (auto& item : drained_) {
          item.payload->ec = make_error_code(errc::shutting_down);
          done.push(item.payload);
        }
        drained_.clear();
      } else {
        former_.set_flush(true);
        ready = pump_locked(Clock::now(), done);
      }
      if (former_.empty() && in_flight_ == 0) idle_cv_.notify_all();
    }
    wake_lanes(ready);
    deliver(done);
  }

  // ---- the state machine's answers -> lane work, completions and timer waits --------------------
  /// Expires, sheds and forms batches as the former says; re-arms the timer. Under mutex_.
  /// Returns how many batches it queued for the lanes: the caller wakes them after unlocking
  /// (waking under the lock would make the woken lane block on it at once).
  [[nodiscard]] std::size_t pump_locked(TimePoint now, OpList& done) {
    std::size_t ready = 0;
    drained_.clear();
    former_.expire(now, drained_);
    while (former_.next_batch(now, batch_, drained_)) {
      Job* job = take_job();
      job->ops.reserve(batch_.items.size());
      for (auto& item : batch_.items) {
        Op* op = item.payload;
        op->state.store(Op::running, std::memory_order_relaxed);
        metrics_.record_queue_time(now - item.arrival);
        job->ops.push_back(op);
      }
      ++in_flight_;
      if constexpr (is_staged) {
        if (cpu_pool_) {
          asio::post(*cpu_pool_, [this, job] { prepare_stage(job); });
          continue;
        }
      }
      ready_.push_back(job);
      ready_size_.store(ready_.size(), std::memory_order_release);
      ++ready;
    }
    for (auto& item : drained_) {  // expired at their deadline, or shed by the controller
      item.payload->ec = make_error_code(errc::deadline_exceeded);
      done.push(item.payload);
    }
    drained_.clear();
    arm_timer_locked(former_.next_wakeup());
    return ready;
  }

  void wake_lanes(std::size_t n) {
    if (n == 1) {
      lane_cv_.notify_one();
    } else if (n > 1) {
      lane_cv_.notify_all();
    }
  }

  void arm_timer_locked(TimePoint t) {
    if (t == kNever || t >= timer_at_ || exit_) return;
    timer_at_ = t;
    const std::uint64_t gen = ++timer_gen_;
    timer_.expires_at(t);
    timer_.async_wait([anchor = anchor_, gen](const boost::system::error_code& ec) {
      if (ec == asio::error::operation_aborted) return;
      std::lock_guard a(anchor->mutex);
      if (anchor->self) anchor->self->on_timer(gen);
    });
  }

  void on_timer(std::uint64_t gen) {
    OpList done;
    std::size_t ready = 0;
    {
      std::lock_guard lock(mutex_);
      if (gen == timer_gen_) timer_at_ = kNever;
      ready = pump_locked(Clock::now(), done);
      if (former_.empty() && in_flight_ == 0) idle_cv_.notify_all();
    }
    wake_lanes(ready);
    deliver(done, Delivery::completing);
  }

  Job* take_job() {
    if (free_jobs_.empty()) {
      jobs_.push_back(std::make_unique<Job>());
      return jobs_.back().get();
    }
    Job* j = free_jobs_.back();
    free_jobs_.pop_back();
    return j;
  }

  /// How a completion list may reach handlers. `deferred`: from an initiating function, a
  /// cancellation handler or stop() -- never call a handler here, post. `completing`: from a lane,
  /// the timer or the CPU pool -- a handler whose executor is not the I/O executor may be
  /// dispatched right here.
  enum class Delivery { deferred, completing };

  /// Hands results to their consumers: internal ops at once; handler ops in one post per call to
  /// the I/O executor, from where each is dispatched to its own executor. Never under mutex_.
  void deliver(OpList& list, Delivery mode = Delivery::deferred) {
    if (list.empty()) return;
    const TimePoint now = Clock::now();
    Op* chain_head = nullptr;
    Op* chain_tail = nullptr;
    for (Op* op = list.head; op != nullptr;) {
      Op* next = op->next;  // read first: deliver() may end the op's life
      metrics_.record_completion(op->ec);
      metrics_.record_latency(now - op->arrival);
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
    list = OpList{};
    if (chain_head) {
      asio::post(ex_, [chain_head] {
        for (Op* op = chain_head; op != nullptr;) {
          Op* next = op->next;
          op->deliver();
          op = next;
        }
      });
    }
  }

  // ---- lanes -----------------------------------------------------------------------------------
  void lane_main(std::size_t lane) {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (ready_.empty() && !exit_ && config_.lane_spin > Duration::zero()) {
        // Spin a little before sleeping: at light load the next batch usually comes soon, and
        // a futex wake-up costs more than the whole batching path.
        lock.unlock();
        const TimePoint until = Clock::now() + config_.lane_spin;
        while (ready_size_.load(std::memory_order_acquire) == 0 && Clock::now() < until) {
        }
        lock.lock();
      }
      lane_cv_.wait(lock, [&] { return !ready_.empty() || exit_; });
      if (ready_.empty()) return;
      Job* job = ready_.front();
      ready_.pop_front();
      ready_size_.store(ready_.size(), std::memory_order_release);
      lock.unlock();
      job->lane = lane;
      if constexpr (is_staged) {
        run_stage(*job);
      } else {
        job->requests.clear();
        for (Op* op : job->ops) job->requests.push_back(std::move(op->request));
        job->responses.clear();
        job->responses.resize(job->ops.size());
        run_direct_range(*job, 0, job->ops.size());
        job->finished = true;
      }
      if (job->finished) {  // free the batch's data before taking the lock, not under it
        job->requests.clear();
        job->responses.clear();
      }
      OpList done;
      lock.lock();
      for (const BatchRecord& r : job->records) controller_.observe(r);
      job->records.clear();
      former_.release_slot();
      if (job->finished) {
        retire_locked(job, done);
      } else if constexpr (is_staged) {
        asio::post(*cpu_pool_, [this, job] { finish_stage(job); });
      }
      // This lane takes one of the batches it formed itself; others wake for the rest.
      const std::size_t ready = pump_locked(Clock::now(), done);
      const bool idle = former_.empty() && in_flight_ == 0;
      lock.unlock();
      if (ready > 1) wake_lanes(ready - 1);
      deliver(done, Delivery::completing);
      if (idle) idle_cv_.notify_all();
      lock.lock();
    }
  }

  /// A job's results are final: its ops join `done`, the job goes back to the pool. Under mutex_.
  void retire_locked(Job* job, OpList& done) {
    for (Op* op : job->ops) {
      if (op->cancel_requested.load(std::memory_order_acquire)) {
        op->ec = make_error_code(errc::cancelled);
        op->response = response_type{};
      }
      done.push(op);
    }
    job->ops.clear();
    job->requests.clear();
    job->responses.clear();
    job->stage_error = nullptr;
    job->finished = false;
    if constexpr (is_staged) job->staged.reset();
    free_jobs_.push_back(job);
    --in_flight_;
  }

  enum class Failure { out_of_memory, other };
  static Failure classify(const std::exception_ptr& e, std::string& message) {
    try {
      std::rethrow_exception(e);
    } catch (const Error& err) {
      message = err.what();
      return err.code() == errc::out_of_memory ? Failure::out_of_memory : Failure::other;
    } catch (const std::bad_alloc& err) {
      message = err.what();
      return Failure::out_of_memory;
    } catch (const std::exception& err) {
      message = err.what();
      return Failure::other;
    } catch (...) {
      message = "unknown exception";
      return Failure::other;
    }
  }

  void record_batch(Job& job, std::size_t size, TimePoint start, TimePoint end, bool ok, bool oom) {
    job.records.push_back(BatchRecord{size, job.lane, start, end, ok, oom});
    metrics_.record_batch(size, end - start);
  }

  /// Ops [b, e) failed with `e`: out of memory splits in halves and retries (via `retry`), down to
  /// single requests; anything else fails them all with model_failed and the message.
  template <class Retry>
  void handle_failure(Job& job, std::size_t b, std::size_t e, const std::exception_ptr& error, Retry&& retry) {
    std::string message;
    if (classify(error, message) == Failure::out_of_memory) {
      if (e - b == 1) {
        job.ops[b]->ec = make_error_code(errc::out_of_memory);
        job.ops[b]->message = std::make_shared<const std::string>(std::move(message));
        return;
      }
      metrics_.record_oom_split();
      const std::size_t mid = b + (e - b) / 2;
      retry(b, mid);
      retry(mid, e);
      return;
    }
    metrics_.record_model_failure(message);
    auto shared = std::make_shared<const std::string>(std::move(message));
    for (std::size_t i = b; i < e; ++i) {
      job.ops[i]->ec = make_error_code(errc::model_failed);
      job.ops[i]->message = shared;
    }
  }

  void run_direct_range(Job& job, std::size_t b, std::size_t e) {
    if constexpr (DirectBatchModel<Model>) {
      const RunContext ctx{job.lane};
      const TimePoint start = Clock::now();
      std::exception_ptr error;
      try {
        run_direct(*model_, std::span<const request_type>(job.requests.data() + b, e - b),
                   std::span<response_type>(job.responses.data() + b, e - b), ctx);
      } catch (...) {
        error = std::current_exception();
      }
      const TimePoint end = Clock::now();
      if (!error) {
        record_batch(job, e - b, start, end, true, false);
        for (std::size_t i = b; i < e; ++i) {
          job.ops[i]->response = std::move(job.responses[i]);
          job.ops[i]->ec = {};
        }
        return;
      }
      std::string ignored;
      record_batch(job, e - b, start, end, false, classify(error, ignored) == Failure::out_of_memory);
      handle_failure(job, b, e, error, [&](std::size_t x, std::size_t y) { run_direct_range(job, x, y); });
    } else {
      (void)job, (void)b, (void)e;
    }
  }

  // ---- staged models ---------------------------------------------------------------------------
  /// prepare -> run -> finish of ops [b, e), all on this thread (the fallback after a failure).
  void staged_sync(Job& job, std::size_t b, std::size_t e) {
    if constexpr (is_staged) {
      const RunContext ctx{job.lane};
      std::exception_ptr error;
      TimePoint start{}, end{};
      bool ran = false;
      std::vector<response_type> out(e - b);
      try {
        auto batch = model_->prepare(std::span<const request_type>(job.requests.data() + b, e - b));
        start = Clock::now();
        try {
          run_staged(*model_, batch, ctx);
        } catch (...) {
          end = Clock::now();
          throw;
        }
        end = Clock::now();
        ran = true;
        model_->finish(batch, std::span<response_type>(out));
      } catch (...) {
        error = std::current_exception();
      }
      if (!error) {
        record_batch(job, e - b, start, end, true, false);
        for (std::size_t i = b; i < e; ++i) {
          job.ops[i]->response = std::move(out[i - b]);
          job.ops[i]->ec = {};
        }
        return;
      }
      std::string ignored;
      const bool oom = classify(error, ignored) == Failure::out_of_memory;
      if (!ran && start != TimePoint{}) record_batch(job, e - b, start, end, false, oom);
      handle_failure(job, b, e, error, [&](std::size_t x, std::size_t y) { staged_sync(job, x, y); });
    } else {
      (void)job, (void)b, (void)e;
    }
  }

  /// On the CPU pool: move the requests in and prepare the whole batch, then queue it for a lane.
  void prepare_stage(Job* job) {
    if constexpr (is_staged) {
      job->requests.clear();
      for (Op* op : job->ops) job->requests.push_back(std::move(op->request));
      try {
        job->staged.emplace(model_->prepare(std::span<const request_type>(job->requests)));
      } catch (...) {
        job->stage_error = std::current_exception();
      }
      {
        std::lock_guard lock(mutex_);
        ready_.push_back(job);
        ready_size_.store(ready_.size(), std::memory_order_release);
      }
      lane_cv_.notify_one();
    } else {
      (void)job;
    }
  }

  /// On a lane: the device stage. Without a CPU pool, prepare and finish run here too.
  void run_stage(Job& job) {
    if constexpr (is_staged) {
      const std::size_t n = job.ops.size();
      if (!cpu_pool_) {
        job.requests.clear();
        for (Op* op : job.ops) job.requests.push_back(std::move(op->request));
        staged_sync(job, 0, n);
        job.finished = true;
        return;
      }
      if (job.stage_error) {
        auto error = job.stage_error;
        handle_failure(job, 0, n, error, [&](std::size_t x, std::size_t y) { staged_sync(job, x, y); });
        job.finished = true;
        return;
      }
      const TimePoint start = Clock::now();
      std::exception_ptr error;
      try {
        run_staged(*model_, *job.staged, RunContext{job.lane});
      } catch (...) {
        error = std::current_exception();
      }
      const TimePoint end = Clock::now();
      if (error) {
        std::string ignored;
        record_batch(job, n, start, end, false, classify(error, ignored) == Failure::out_of_memory);
        job.staged.reset();
        handle_failure(job, 0, n, error, [&](std::size_t x, std::size_t y) { staged_sync(job, x, y); });
        job.finished = true;
        return;
      }
      record_batch(job, n, start, end, true, false);
    } else {
      (void)job;
    }
  }

  /// On the CPU pool: postprocess into responses, then complete the batch.
  void finish_stage(Job* job) {
    if constexpr (is_staged) {
      const std::size_t n = job->ops.size();
      job->responses.clear();
      job->responses.resize(n);
      std::exception_ptr error;
      try {
        model_->finish(*job->staged, std::span<response_type>(job->responses));
      } catch (...) {
        error = std::current_exception();
      }
      if (!error) {
        for (std::size_t i = 0; i < n; ++i) {
          job->ops[i]->response = std::move(job->responses[i]);
          job->ops[i]->ec = {};
        }
      } else {
        job->staged.reset();
        handle_failure(*job, 0, n, error, [&](std::size_t x, std::size_t y) { staged_sync(*job, x, y); });
      }
      job->staged.reset();  // free the batch's data before taking the lock, not under it
      job->requests.clear();
      job->responses.clear();
      OpList done;
      bool idle = false;
      std::size_t ready = 0;
      {
        std::lock_guard lock(mutex_);
        for (const BatchRecord& r : job->records) controller_.observe(r);
        job->records.clear();
        retire_locked(job, done);
        ready = pump_locked(Clock::now(), done);
        idle = former_.empty() && in_flight_ == 0;
      }
      wake_lanes(ready);
      deliver(done, Delivery::completing);
      if (idle) idle_cv_.notify_all();
    } else {
      (void)job;
    }
  }

  // ---- members (order matters: the own context outlives everything that posts to it) ----------
  std::unique_ptr<asio::io_context> own_ctx_;
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> own_guard_;
  std::thread own_thread_;

  BatcherConfig config_;
  executor_type ex_;
  Model* model_;
  std::size_t effective_max_batch_ = 1;
  Controller controller_;
  Former former_;
  asio::steady_timer timer_;
  std::shared_ptr<Anchor> anchor_;
  batching::OpPool* pool_ = batching::OpPool::create();
  batching::BatcherMetrics metrics_;

  mutable std::mutex mutex_;
  std::condition_variable lane_cv_;
  std::condition_variable idle_cv_;
  std::deque<Job*> ready_;
  std::atomic<std::size_t> ready_size_{0};  ///< ready_.size(), for spinning lanes
  std::vector<std::unique_ptr<Job>> jobs_;
  std::vector<Job*> free_jobs_;
  typename Former::Batch batch_;
  std::vector<typename Former::Item> drained_;
  std::size_t in_flight_ = 0;
  bool stopped_ = false;
  bool exit_ = false;
  TimePoint timer_at_ = kNever;
  std::uint64_t timer_gen_ = 0;

  std::optional<asio::thread_pool> cpu_pool_;
  std::vector<std::thread> lanes_;
};

}  // namespace sluice
