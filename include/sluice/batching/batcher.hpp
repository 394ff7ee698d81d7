// sluice/batching/batcher.hpp: sluice::Batcher, the Asio face of dynamic batching. Requests come in
// through async_submit (any Asio completion token), wait in the BatchFormer, and run in batches
// on the Batcher's lane threads (engine.hpp), directly or in stages as the model's concept says.
// Every request completes exactly once: with its response, or with a sluice::errc. Completions
// reach the caller through the handler's associated executor (by default the executor the Batcher
// was built with): one post per batch, then dispatch (delivery.hpp).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>

#include "sluice/batching/batcher_config.hpp"
#include "sluice/batching/cancellation.hpp"
#include "sluice/batching/engine.hpp"
#include "sluice/batching/io_thread.hpp"
#include "sluice/batching/metrics.hpp"
#include "sluice/batching/op_pool.hpp"
#include "sluice/batching/ops.hpp"
#include "sluice/core/batch_controller.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/error.hpp"

namespace sluice {

namespace asio = boost::asio;

/// `Controller` decides when a batch goes and how big (core/batch_controller.hpp); sluice's
/// policies live in sluice/control/ (control::FixedBatch is the Triton-like baseline).
template <BatchModel Model, BatchController Controller>
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
  Batcher(executor_type ex, Model& model, BatcherConfig config = {},
          Controller controller = Controller{})
      : Batcher(nullptr, std::move(ex), model, std::move(config), std::move(controller)) {}

  Batcher(asio::io_context& ctx, Model& model, BatcherConfig config = {},
          Controller controller = Controller{})
      : Batcher(ctx.get_executor(), model, std::move(config), std::move(controller)) {}

  /// A Batcher with its own one-thread io_context for completions and timers: for blocking
  /// submit() and callback users who run no io_context of their own.
  Batcher(Model& model, BatcherConfig config = {}, Controller controller = Controller{})
      : Batcher(std::make_unique<batching::IoThread>(), executor_type{}, model, std::move(config),
                std::move(controller)) {}

  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  /// Waits for in-flight batches; queued requests are drained if stop(drain) was called, else
  /// completed with shutting_down.
  ~Batcher() {
    engine_.shutdown();
    if (own_io_) own_io_->join();
    pool_->detach();  // freed when the last op still travelling through an executor is gone
  }

  executor_type get_executor() const noexcept { return engine_.executor(); }
  const BatcherConfig& config() const noexcept { return engine_.config(); }
  const batching::BatcherMetrics& metrics() const noexcept { return engine_.metrics(); }
  /// The metrics and the load gauges, in the Prometheus text format.
  std::string render_prometheus() const { return metrics().render_prometheus(config().model_name, load()); }
  /// The largest batch the Batcher forms (the configured max, capped by memory_limit_bytes).
  std::size_t effective_max_batch_size() const noexcept { return engine_.effective_max_batch_size(); }

  /// Runs `f(controller)` under the Batcher's lock (controllers are not thread-safe themselves).
  template <class F>
  decltype(auto) with_controller(F&& f) {
    return engine_.with_controller(std::forward<F>(f));
  }

  /// Submits one request. Completion signature: void(std::error_code, response_type). Honours the
  /// token's cancellation slot (any cancellation type): a queued request completes with
  /// cancelled at once; a running one completes with cancelled when its batch ends.
  template <class Token>
  auto async_submit(request_type request, SubmitOptions options, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, response_type)>(
        [this](auto handler, request_type req, SubmitOptions opts) {
          using H = std::decay_t<decltype(handler)>;
          static_assert(alignof(HandlerOp<H>) <= 16,
                        "a completion handler aligned beyond 16 bytes is not supported");
          auto* op = new (pool_)
              HandlerOp<H>(std::move(handler), engine_.executor(), std::move(req), opts.error_message);
          batching::detail::bind_cancellation<CancelOne>(op, engine_.anchor());
          engine_.enqueue_one(op, opts);
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
          auto* many =
              new ManyOp<H>(std::move(handler), engine_.executor(), std::move(reqs), opts.error_message);
          batching::detail::bind_cancellation<CancelMany>(many, engine_.anchor());
          engine_.enqueue_many(*many, opts);
        },
        token, std::move(requests), std::move(options));
  }

  /// Blocking convenience: returns the response or throws sluice::Error (model_failed carries the
  /// model's message). Works without anyone running the executor, except that deadlines expire
  /// through its timer.
  response_type submit(request_type request, SubmitOptions options = {}) {
    batching::detail::SyncOp<request_type, response_type> op(std::move(request));
    engine_.enqueue_one(&op, options);
    op.wait();
    if (op.ec) {
      throw Error(op.ec, op.message ? *op.message : op.ec.message());
    }
    return std::move(op.response);
  }

  /// Stops accepting work (later submissions complete with shutting_down). drain: queued requests
  /// still run, in batches formed without waiting for company; cancel: they complete with
  /// shutting_down now. Returns at once; wait_idle() waits for the rest.
  void stop(StopMode mode = StopMode::drain) {
    engine_.stop(mode == StopMode::drain ? Engine::Stop::drain : Engine::Stop::cancel);
  }

  /// Blocks until nothing is queued and no batch is in flight.
  void wait_idle() { engine_.wait_idle(); }

  bool stopped() const { return engine_.stopped(); }
  /// Requests queued now (not counting running batches).
  std::size_t queued() const { return engine_.queued(); }
  /// Queued and running requests and batches in flight, read together.
  batching::BatcherLoad load() const { return engine_.load(); }

 private:
  using Engine = batching::detail::Engine<Model, Controller>;
  using Op = typename Engine::Op;
  using CancelOne = batching::detail::CancelOne<Engine, Op>;
  using CancelMany = batching::detail::CancelMany<Engine, Op>;
  template <class Handler>
  using HandlerOp = batching::detail::HandlerOp<request_type, response_type, Handler>;
  template <class Handler>
  using ManyOp = batching::detail::ManyOp<request_type, response_type, Handler>;

  /// `own_io`, when given, runs the executor; else `ex` does.
  Batcher(std::unique_ptr<batching::IoThread> own_io, executor_type ex, Model& model, BatcherConfig config,
          Controller controller)
      : own_io_(std::move(own_io)),
        engine_(own_io_ ? executor_type(own_io_->get_executor()) : std::move(ex), model, std::move(config),
                std::move(controller)) {}

  // Order matters: the own context outlives everything that posts to it.
  std::unique_ptr<batching::IoThread> own_io_;
  Engine engine_;
  batching::OpPool* pool_ = batching::OpPool::create();
};

}  // namespace sluice
