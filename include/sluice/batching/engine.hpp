// sluice/batching/engine.hpp: the scheduling engine behind sluice::Batcher. One mutex guards the
// sans-io BatchFormer; the pump turns its answers into lane work (through the pipeline the
// model's concept selects, pipeline_for.hpp), completions and timer waits; lane threads run the
// batches. It deals in type-erased ops only: completion tokens and handlers are the Batcher's.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sluice/batching/batch_former.hpp"
#include "sluice/batching/batcher_config.hpp"
#include "sluice/batching/cancellation.hpp"
#include "sluice/batching/delivery.hpp"
#include "sluice/batching/former_limits.hpp"
#include "sluice/batching/metrics.hpp"
#include "sluice/batching/ops.hpp"
#include "sluice/batching/pipeline_for.hpp"
#include "sluice/core/batch_controller.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice::batching::detail {

template <BatchModel Model, BatchController Controller>
class Engine {
 public:
  using request_type = typename Model::request_type;
  using response_type = typename Model::response_type;
  using Op = OpBase<request_type, response_type>;
  using Anchor = detail::Anchor<Engine>;
  enum class Stop { drain, cancel, cancel_if_running };

  /// Starts the lanes (and a staged model's CPU pool). Completions and timers go through `ex`.
  Engine(IoExecutor ex, Model& model, BatcherConfig config, Controller controller)
      : config_(std::move(config)),
        ex_(std::move(ex)),
        model_(&model),
        controller_(std::move(controller)),
        former_(former_limits(config_, model, Pipeline::slots(config_)), controller_),
        effective_max_batch_(former_.config().max_batch_size),
        timer_(ex_),
        anchor_(std::make_shared<Anchor>()),
        pipeline_(model, metrics_, config_) {
    anchor_->self = this;
    lanes_.reserve(config_.lanes);
    for (std::size_t i = 0; i < config_.lanes; ++i) lanes_.emplace_back([this, i] { lane_main(i); });
  }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine() { shutdown(); }

  /// Waits for in-flight batches (queued requests drain after stop(drain), else complete with
  /// shutting_down), then ends the lanes and the CPU pool. Later calls do nothing.
  void shutdown() {
    if (lanes_joined_) return;
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
    pipeline_.join();
    lanes_joined_ = true;
  }

  const IoExecutor& executor() const noexcept { return ex_; }
  const BatcherConfig& config() const noexcept { return config_; }
  const BatcherMetrics& metrics() const noexcept { return metrics_; }
  std::size_t effective_max_batch_size() const noexcept { return effective_max_batch_; }
  /// Cancellation handlers reach cancel_ops() through this.
  const std::shared_ptr<Anchor>& anchor() const noexcept { return anchor_; }

  template <class F>
  decltype(auto) with_controller(F&& f) {
    std::lock_guard lock(mutex_);
    return std::forward<F>(f)(controller_);
  }

  void wait_idle() {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [&] { return former_.empty() && in_flight_ == 0; });
  }
  bool stopped() const {
    std::lock_guard lock(mutex_);
    return stopped_;
  }
  std::size_t queued() const {
    std::lock_guard lock(mutex_);
    return former_.size();
  }
  BatcherLoad load() const {
    std::lock_guard lock(mutex_);
    return {.queued_requests = former_.size(), .running_requests = running_requests_, .batches_in_flight = in_flight_};
  }

  /// Queues one op, or completes it at once (shutting down, queue full, bad priority, expired).
  void enqueue_one(Op* op, const SubmitOptions& opts) {
    const std::uint64_t key = batch_key_of(*model_, op->request);
    const TimePoint now = Clock::now();
    op->arrival = now;
    const TimePoint deadline = opts.deadline_at(now);
    locked_step([&](OpList& done) -> std::size_t {
      if (stopped_) {
        op->ec = make_error_code(errc::shutting_down);
        metrics_.record_rejection(Rejection::shutting_down);
        done.push(op);
        return 0;
      }
      return push_locked(op, key, opts.priority, deadline, now, done) ? pump_locked(now, done) : 0;
    });
  }

  /// Queues every item of a ManyOp, or none: a queue without room for all rejects all.
  template <class Many>
  void enqueue_many(Many& many, const SubmitOptions& opts) {
    if (many.items.empty()) {
      many.remaining.store(1);
      many.item_done();
      return;
    }
    const TimePoint now = Clock::now();
    const TimePoint deadline = opts.deadline_at(now);
    std::vector<std::uint64_t> keys;
    keys.reserve(many.items.size());
    for (auto& item : many.items) keys.push_back(batch_key_of(*model_, item->request));
    locked_step([&](OpList& done) -> std::size_t {
      if (stopped_ || !former_.has_room(many.items.size())) {
        const auto reason = stopped_ ? errc::shutting_down : errc::queue_full;
        for (auto& item : many.items) {
          item->arrival = now;
          item->ec = make_error_code(reason);
          metrics_.record_rejection(stopped_ ? Rejection::shutting_down : Rejection::queue_full);
          done.push(item.get());
        }
        return 0;
      }
      for (std::size_t i = 0; i < many.items.size(); ++i) {
        Op* op = many.items[i].get();
        op->arrival = now;
        push_locked(op, keys[i], opts.priority, deadline, now, done);
      }
      return pump_locked(now, done);
    });
  }

  /// A queued op completes with cancelled now; a running one when its batch ends.
  void cancel_ops(std::span<Op* const> ops) {
    locked_step([&](OpList& done) -> std::size_t {
      for (Op* op : ops) {
        if (former_.cancel(op->id)) {
          op->ec = make_error_code(errc::cancelled);
          done.push(op);
        } else if (op->state.load(std::memory_order_acquire) == Op::running) {
          op->cancel_requested.store(true, std::memory_order_release);
        }
      }
      // A smaller queue may change the decision.
      return done.empty() ? 0 : pump_locked(Clock::now(), done);
    });
  }

  /// Stops accepting work: drain runs what is queued, cancel completes it with shutting_down.
  void stop(Stop mode) {
    locked_step([&](OpList& done) -> std::size_t {
      if (mode == Stop::cancel_if_running) {
        if (stopped_) return 0;  // an earlier stop(drain) keeps draining
        mode = Stop::cancel;
      }
      stopped_ = true;
      std::size_t ready = 0;
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
      return ready;
    });
  }

 private:
  using OpList = detail::OpList<Op>;
  using Former = BatchFormer<Op*, Controller>;
  using Pipeline = typename PipelineFor<Model>::type;
  using Job = typename Pipeline::Job;

  /// Queues `op` in the former, or completes it at once with the former's refusal. True if queued.
  bool push_locked(Op* op, std::uint64_t key, std::size_t priority, TimePoint deadline, TimePoint now,
                   OpList& done) {
    const auto a = former_.push(op, key, priority, deadline, now);
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
      metrics_.record_rejection(a.by_controller ? Rejection::admission : Rejection::queue_full);
    } else if (a.ec == errc::invalid_argument) {
      metrics_.record_rejection(Rejection::invalid_argument);
    }
    done.push(op);
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
      job->key = batch_.key;
      job->ops.reserve(batch_.items.size());
      for (auto& item : batch_.items) {
        Op* op = item.payload;
        op->state.store(Op::running, std::memory_order_relaxed);
        metrics_.record_queue_time(now - item.arrival);
        job->ops.push_back(op);
      }
      ++in_flight_;
      running_requests_ += job->ops.size();
      if (pipeline_.prepare_later(job, [this](Job* j) { on_prepared(j); })) continue;
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
    locked_step(
        [&](OpList& done) {
          if (gen == timer_gen_) timer_at_ = kNever;
          const std::size_t ready = pump_locked(Clock::now(), done);
          if (former_.empty() && in_flight_ == 0) idle_cv_.notify_all();
          return ready;
        },
        Delivery::completing);
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

  /// Hands results to their consumers (delivery.hpp). Never under mutex_.
  void deliver(OpList& list, Delivery mode = Delivery::deferred) {
    detail::deliver(list, mode, ex_, metrics_);
  }

  /// One step of the state machine: `step(done)` runs under mutex_ and returns how many batches it
  /// queued for the lanes; they are woken, and `done` delivered, after unlocking.
  template <class Step>
  void locked_step(Step&& step, Delivery mode = Delivery::deferred) {
    OpList done;
    std::size_t ready = 0;
    {
      std::lock_guard lock(mutex_);
      ready = step(done);
    }
    wake_lanes(ready);
    deliver(done, mode);
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
      pipeline_.run(*job);
      OpList done;
      lock.lock();
      for (const BatchRecord& r : job->records) controller_.observe(r);
      job->records.clear();
      former_.release_slot();
      // Records are read above, under the lock, before a finish stage may add to them.
      if (!pipeline_.finish_later(job, [this](Job* j) { on_finished(j); })) retire_locked(job, done);
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
    running_requests_ -= job->ops.size();
    job->clear();
    free_jobs_.push_back(job);
    --in_flight_;
  }

  /// From the pipeline, once it has prepared `job` off the lanes: queue it for a lane.
  void on_prepared(Job* job) {
    {
      std::lock_guard lock(mutex_);
      ready_.push_back(job);
      ready_size_.store(ready_.size(), std::memory_order_release);
    }
    lane_cv_.notify_one();
  }

  /// From the pipeline, once `job` has finished off the lanes: complete it.
  void on_finished(Job* job) {
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
  }

  // ---- members ---------------------------------------------------------------------------------
  BatcherConfig config_;
  IoExecutor ex_;
  Model* model_;
  Controller controller_;
  Former former_;
  std::size_t effective_max_batch_;
  asio::steady_timer timer_;
  std::shared_ptr<Anchor> anchor_;
  BatcherMetrics metrics_;

  mutable std::mutex mutex_;
  std::condition_variable lane_cv_;
  std::condition_variable idle_cv_;
  std::deque<Job*> ready_;
  std::atomic<std::size_t> ready_size_{0};  ///< ready_.size(), for spinning lanes
  std::vector<std::unique_ptr<Job>> jobs_;
  std::vector<Job*> free_jobs_;
  typename Former::Batch batch_;
  std::vector<typename Former::Item> drained_;
  std::size_t in_flight_ = 0;         ///< batches formed and not yet retired
  std::size_t running_requests_ = 0;  ///< the requests in those batches
  bool stopped_ = false;
  bool exit_ = false;
  TimePoint timer_at_ = kNever;
  std::uint64_t timer_gen_ = 0;

  Pipeline pipeline_;  ///< after former_: a bad configuration throws before any pool thread starts
  std::vector<std::thread> lanes_;
  bool lanes_joined_ = false;
};

}  // namespace sluice::batching::detail
