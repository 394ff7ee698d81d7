// The Batcher with a fake model whose latency and failures the test controls: completion tokens,
// cancellation, deadlines, out-of-memory splitting, failures, stop, multi-item requests, staged
// models and lanes.
#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <optional>
#include <thread>

#include "support/fake_model.hpp"
#include "sluice/batching/batcher.hpp"
#include "sluice/control/fixed_batch.hpp"

namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using sluice::Batcher;
using sluice::BatcherConfig;
using sluice::errc;
using sluice::StopMode;
using sluice::control::FixedBatch;
using sluice::SubmitOptions;
using sluice_test::FakeModel;
using sluice_test::Req;

/// An io_context run by one background thread for the test's lifetime.
struct IoThread {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  ~IoThread() {
    guard.reset();
    thread.join();
  }
};

/// A completion captured by a callback.
struct Result {
  std::mutex mutex;
  std::condition_variable cv;
  int calls = 0;
  std::error_code ec;
  int value = -1;
  std::thread::id thread;

  auto handler() {
    return [this](std::error_code e, int v) {
      std::lock_guard lock(mutex);
      ++calls;
      ec = e;
      value = v;
      thread = std::this_thread::get_id();
      cv.notify_all();
    };
  }
  bool wait() {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, 20s, [&] { return calls > 0; });
  }
  bool done() {
    std::lock_guard lock(mutex);
    return calls > 0;
  }
};

BatcherConfig cfg(std::size_t max_batch, std::chrono::microseconds delay = 0us, std::size_t lanes = 1) {
  BatcherConfig c;
  c.max_batch_size = max_batch;
  c.max_queue_delay = delay;
  c.lanes = lanes;
  return c;
}

TEST(Batcher, CallbackCompletesOnTheExecutor) {
  IoThread io;
  FakeModel model;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(4));
  Result r;
  b.async_submit(Req{21}, SubmitOptions{}, r.handler());
  ASSERT_TRUE(r.wait());
  EXPECT_FALSE(r.ec);
  EXPECT_EQ(r.value, 42);
  EXPECT_EQ(r.thread, io.thread.get_id());
  EXPECT_EQ(r.calls, 1);
}

TEST(Batcher, UseFuture) {
  IoThread io;
  FakeModel model;
  Batcher<FakeModel, FixedBatch> b(io.io, model, cfg(4));
  auto f = b.async_submit(Req{5}, SubmitOptions{}, asio::use_future);
  auto [ec, v] = f.get();
  EXPECT_FALSE(ec);
  EXPECT_EQ(v, 10);
}

TEST(Batcher, UseAwaitableInACoroutine) {
  asio::io_context io;
  FakeModel model;
  Batcher<FakeModel, FixedBatch> b(io.get_executor(), model, cfg(4));
  int got = 0;
  std::error_code got_ec = errc::model_failed;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        // (GCC 12 rejects structured bindings of a co_await result.)
        auto one = co_await b.async_submit(Req{8}, SubmitOptions{}, asio::use_awaitable);
        got_ec = std::get<0>(one);
        got = std::get<1>(one);
        std::vector<Req> two{Req{1}, Req{2}};
        auto many = co_await b.async_submit_many(std::move(two), SubmitOptions{}, asio::use_awaitable);
        EXPECT_FALSE(std::get<0>(many));
        EXPECT_EQ(std::get<1>(many), (std::vector<int>{2, 4}));
      },
      asio::detached);
  io.run();  // returns once the coroutine is done: pending requests keep it alive until then
  EXPECT_FALSE(got_ec);
  EXPECT_EQ(got, 16);
}

TEST(Batcher, BlockingSubmitWithoutAnExecutor) {
  FakeModel model;
  Batcher<FakeModel, FixedBatch> b(model, cfg(4));
  EXPECT_EQ(b.submit(Req{4}), 8);
  Req bad{7};
  bad.fail = true;
  try {
    b.submit(bad);
    FAIL() << "no exception";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), errc::model_failed);
    EXPECT_NE(std::string(e.what()).find("bad input 7"), std::string::npos) << e.what();
  }
}

TEST(Batcher, CancellationSlotCancelsAQueuedRequestAtOnce) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1));
  Result first, second;
  b.async_submit(Req{1}, SubmitOptions{}, first.handler());
  ASSERT_TRUE(model.gate.wait_arrived(1));  // the first runs (held); the second will queue
  asio::cancellation_signal signal;
  b.async_submit(Req{2}, SubmitOptions{}, asio::bind_cancellation_slot(signal.slot(), second.handler()));
  EXPECT_EQ(b.queued(), 1u);
  // Cancellation is emitted where the completion runs: on the executor.
  asio::post(io.io, [&] { signal.emit(asio::cancellation_type::terminal); });
  ASSERT_TRUE(second.wait());
  EXPECT_EQ(second.ec, errc::cancelled);
  EXPECT_FALSE(first.done());  // completed while the running batch still runs
  EXPECT_EQ(b.queued(), 0u);
  model.gate.open();
  ASSERT_TRUE(first.wait());
  EXPECT_EQ(first.value, 2);
  b.wait_idle();
  asio::post(io.io, [&] { signal.emit(asio::cancellation_type::terminal); });  // late: no effect
  b.stop(StopMode::drain);
  b.wait_idle();
  std::promise<void> flushed;
  asio::post(io.io, [&] { flushed.set_value(); });
  flushed.get_future().wait();
  EXPECT_EQ(second.calls, 1);
  EXPECT_EQ(first.calls, 1);
  EXPECT_EQ(model.batches_copy().size(), 1u);  // the cancelled one never ran
  EXPECT_EQ(b.metrics().completions(errc::cancelled), 1u);
}

TEST(Batcher, CancellingARunningRequestCompletesItCancelledWhenItsBatchEnds) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1));
  Result r;
  asio::cancellation_signal signal;
  b.async_submit(Req{3}, SubmitOptions{}, asio::bind_cancellation_slot(signal.slot(), r.handler()));
  ASSERT_TRUE(model.gate.wait_arrived(1));
  std::promise<void> emitted;
  asio::post(io.io, [&] {
    signal.emit(asio::cancellation_type::terminal);
    emitted.set_value();
  });
  emitted.get_future().wait();
  EXPECT_FALSE(r.done());
  model.gate.open();
  ASSERT_TRUE(r.wait());
  EXPECT_EQ(r.ec, errc::cancelled);
  EXPECT_EQ(r.calls, 1);
}

TEST(Batcher, DeadlineExpiresWhileQueuedNotWhenTheRunningBatchEnds) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1));
  Result running, late;
  b.async_submit(Req{1}, SubmitOptions{}, running.handler());
  ASSERT_TRUE(model.gate.wait_arrived(1));
  SubmitOptions o;
  o.timeout = 20ms;
  const auto t = std::chrono::steady_clock::now();
  b.async_submit(Req{2}, o, late.handler());
  ASSERT_TRUE(late.wait());
  EXPECT_EQ(late.ec, errc::deadline_exceeded);
  EXPECT_GE(std::chrono::steady_clock::now() - t, 20ms);  // not before its deadline
  EXPECT_FALSE(running.done());                            // while the batch still runs
  model.gate.open();
  ASSERT_TRUE(running.wait());
  EXPECT_FALSE(running.ec);
  EXPECT_EQ(b.metrics().deadline_misses(), 1u);
}

TEST(Batcher, DeadlineAlreadyPassedCompletesAtOnce) {
  IoThread io;
  FakeModel model;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1));
  Result r;
  SubmitOptions o;
  o.deadline = std::chrono::steady_clock::now() - 1ms;
  b.async_submit(Req{2}, o, r.handler());
  ASSERT_TRUE(r.wait());
  EXPECT_EQ(r.ec, errc::deadline_exceeded);
  EXPECT_TRUE(model.batches_copy().empty());
}

TEST(Batcher, OutOfMemorySplitsDownToSingles) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  model.oom_above = 1;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(8));
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  futures.push_back(b.async_submit(Req{100}, SubmitOptions{}, asio::use_future));
  ASSERT_TRUE(model.gate.wait_arrived(1));
  for (int i = 0; i < 8; ++i) futures.push_back(b.async_submit(Req{i}, SubmitOptions{}, asio::use_future));
  model.gate.open();
  for (std::size_t i = 0; i < futures.size(); ++i) {
    auto [ec, v] = futures[i].get();
    EXPECT_FALSE(ec) << i << ": " << ec.message();
    EXPECT_EQ(v, i == 0 ? 200 : 2 * static_cast<int>(i - 1));
  }
  // The batch of 8 was tried as 8, 4+4, 2+2+2+2 and eight singles.
  std::map<std::size_t, int> sizes;
  for (auto& batch : model.batches_copy()) ++sizes[batch.size()];
  EXPECT_EQ(sizes[8], 1);
  EXPECT_EQ(sizes[4], 2);
  EXPECT_EQ(sizes[2], 4);
  EXPECT_EQ(sizes[1], 9);
  EXPECT_EQ(b.metrics().oom_splits(), 7u);
}

TEST(Batcher, OutOfMemoryForASingleFailsOnlyThatRequest) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  model.use_bad_alloc = true;  // std::bad_alloc counts as out of memory too
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(4));
  auto first = b.async_submit(Req{9}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  for (int i = 0; i < 4; ++i) {
    Req r{i};
    r.oom = (i == 2);
    futures.push_back(b.async_submit(r, SubmitOptions{}, asio::use_future));
  }
  model.gate.open();
  EXPECT_EQ(std::get<1>(first.get()), 18);
  for (int i = 0; i < 4; ++i) {
    auto [ec, v] = futures[static_cast<std::size_t>(i)].get();
    if (i == 2) {
      EXPECT_EQ(ec, errc::out_of_memory);
    } else {
      EXPECT_FALSE(ec);
      EXPECT_EQ(v, 2 * i);
    }
  }
}

TEST(Batcher, ModelFailureFailsTheWholeBatchWithTheMessage) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(3));
  auto first = b.async_submit(Req{1}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  std::string messages[3];
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  for (int i = 0; i < 3; ++i) {
    Req r{10 + i};
    r.fail = (i == 1);
    SubmitOptions o;
    o.error_message = &messages[i];
    futures.push_back(b.async_submit(r, o, asio::use_future));
  }
  model.gate.open();
  EXPECT_FALSE(std::get<0>(first.get()));
  for (int i = 0; i < 3; ++i) {
    auto [ec, v] = futures[static_cast<std::size_t>(i)].get();
    EXPECT_EQ(ec, errc::model_failed);
    EXPECT_EQ(messages[i], "bad input 11");
  }
  EXPECT_EQ(b.metrics().last_failure_message(), "bad input 11");
  EXPECT_EQ(b.metrics().completions(errc::model_failed), 3u);
  EXPECT_NE(b.render_prometheus().find("sluice_model_failures_total{model=\"model\"} 1"), std::string::npos);
}

TEST(Batcher, StopDrainFinishesQueuedWorkAndRejectsNewWork) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(2, 1s));  // a long delay: drain must not wait it
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  for (int i = 0; i < 5; ++i) futures.push_back(b.async_submit(Req{i}, SubmitOptions{}, asio::use_future));
  ASSERT_TRUE(model.gate.wait_arrived(1));
  b.stop(StopMode::drain);
  auto after = b.async_submit(Req{9}, SubmitOptions{}, asio::use_future);
  EXPECT_EQ(std::get<0>(after.get()), errc::shutting_down);
  model.gate.open();
  for (int i = 0; i < 5; ++i) {
    auto [ec, v] = futures[static_cast<std::size_t>(i)].get();
    EXPECT_FALSE(ec);
    EXPECT_EQ(v, 2 * i);
  }
  b.wait_idle();
  EXPECT_TRUE(b.stopped());
  EXPECT_EQ(b.metrics().rejections(sluice::batching::Rejection::shutting_down), 1u);
}

TEST(Batcher, StopCancelCompletesQueuedWorkWithShuttingDown) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1));
  auto running = b.async_submit(Req{1}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  auto q1 = b.async_submit(Req{2}, SubmitOptions{}, asio::use_future);
  auto q2 = b.async_submit(Req{3}, SubmitOptions{}, asio::use_future);
  b.stop(StopMode::cancel);
  EXPECT_EQ(std::get<0>(q1.get()), errc::shutting_down);  // while the running one still runs
  EXPECT_EQ(std::get<0>(q2.get()), errc::shutting_down);
  EXPECT_EQ(running.wait_for(0s), std::future_status::timeout);
  model.gate.open();
  auto [ec, v] = running.get();
  EXPECT_FALSE(ec);
  EXPECT_EQ(v, 2);
  Result late;
  b.async_submit(Req{4}, SubmitOptions{}, late.handler());
  ASSERT_TRUE(late.wait());
  EXPECT_EQ(late.ec, errc::shutting_down);
}

TEST(Batcher, FullQueueRejectsAtOnce) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  auto c = cfg(1);
  c.max_queue_size = 2;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, c);
  auto running = b.async_submit(Req{0}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  auto a = b.async_submit(Req{1}, SubmitOptions{}, asio::use_future);
  auto a2 = b.async_submit(Req{2}, SubmitOptions{}, asio::use_future);
  auto rejected = b.async_submit(Req{3}, SubmitOptions{}, asio::use_future);
  EXPECT_EQ(std::get<0>(rejected.get()), errc::queue_full);  // before anything else finished
  EXPECT_EQ(running.wait_for(0s), std::future_status::timeout);
  model.gate.open();
  EXPECT_FALSE(std::get<0>(a.get()));
  EXPECT_FALSE(std::get<0>(a2.get()));
  EXPECT_EQ(b.metrics().rejections(sluice::batching::Rejection::queue_full), 1u);
}

TEST(Batcher, InvalidPriorityAndConfiguration) {
  IoThread io;
  FakeModel model;
  auto c = cfg(4);
  c.priority_levels = 2;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, c);
  SubmitOptions o;
  o.priority = 2;
  auto f = b.async_submit(Req{1}, o, asio::use_future);
  EXPECT_EQ(std::get<0>(f.get()), errc::invalid_argument);
  EXPECT_THROW((Batcher<FakeModel, FixedBatch>(io.io.get_executor(), model, cfg(0))), sluice::Error);
  auto zero_lanes = cfg(4);
  zero_lanes.lanes = 0;
  EXPECT_THROW((Batcher<FakeModel, FixedBatch>(io.io.get_executor(), model, zero_lanes)), sluice::Error);
}

TEST(Batcher, HigherPriorityRunsFirst) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  auto c = cfg(1);
  c.priority_levels = 3;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, c);
  auto first = b.async_submit(Req{0}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  for (int i = 1; i <= 3; ++i) {
    SubmitOptions o;
    o.priority = static_cast<std::size_t>(i - 1);  // 1 low .. 3 high
    futures.push_back(b.async_submit(Req{i}, o, asio::use_future));
  }
  model.gate.open();
  for (auto& f : futures) EXPECT_FALSE(std::get<0>(f.get()));
  first.get();
  auto batches = model.batches_copy();
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches[1], std::vector<int>{3});
  EXPECT_EQ(batches[2], std::vector<int>{2});
  EXPECT_EQ(batches[3], std::vector<int>{1});
}

TEST(Batcher, BatchKeysAreNeverMixed) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(8));
  auto first = b.async_submit(Req{0, 5}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  for (int i = 0; i < 12; ++i) futures.push_back(b.async_submit(Req{i, static_cast<std::uint64_t>(i % 3)}, SubmitOptions{}, asio::use_future));
  model.gate.open();
  for (auto& f : futures) EXPECT_FALSE(std::get<0>(f.get()));
  first.get();
  std::lock_guard lock(model.mutex);
  ASSERT_EQ(model.batch_keys.size(), 4u);  // the first, then one batch per key
  for (auto& keys : model.batch_keys)
    for (auto k : keys) EXPECT_EQ(k, keys.front());
}

TEST(Batcher, SubmitManyIsSplitAcrossBatchesAndReassembledInOrder) {
  IoThread io;
  FakeModel model;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(3));
  std::vector<Req> reqs;
  for (int i = 0; i < 10; ++i) reqs.push_back(Req{i});
  auto f = b.async_submit_many(reqs, SubmitOptions{}, asio::use_future);
  auto [ec, out] = f.get();
  EXPECT_FALSE(ec);
  ASSERT_EQ(out.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], 2 * i);
  for (auto& batch : model.batches_copy()) EXPECT_LE(batch.size(), 3u);
  EXPECT_GE(model.batches_copy().size(), 4u);
  // Empty, and one failing item: the first error, the other responses kept.
  auto [ec0, none] = b.async_submit_many({}, SubmitOptions{}, asio::use_future).get();
  EXPECT_FALSE(ec0);
  EXPECT_TRUE(none.empty());
}

TEST(Batcher, SubmitManyReportsTheFirstFailedItem) {
  IoThread io;
  FakeModel model;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1));
  std::vector<Req> reqs{Req{1}, Req{2}, Req{3}};
  reqs[1].oom = true;
  auto [ec, out] = b.async_submit_many(reqs, SubmitOptions{}, asio::use_future).get();
  EXPECT_EQ(ec, errc::out_of_memory);
  EXPECT_EQ(out, (std::vector<int>{2, 0, 6}));
}

TEST(Batcher, SubmitManyTooLargeForTheQueueIsRejected) {
  IoThread io;
  FakeModel model;
  auto c = cfg(2);
  c.max_queue_size = 4;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, c);
  std::vector<Req> reqs(5);
  auto [ec, out] = b.async_submit_many(reqs, SubmitOptions{}, asio::use_future).get();
  EXPECT_EQ(ec, errc::queue_full);
  EXPECT_EQ(out.size(), 5u);
  EXPECT_TRUE(model.batches_copy().empty());
}

TEST(Batcher, SubmitManyCancelledThroughItsSlot) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1));
  auto running = b.async_submit(Req{0}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  asio::cancellation_signal signal;
  std::promise<std::tuple<std::error_code, std::vector<int>>> result;
  b.async_submit_many({Req{1}, Req{2}, Req{3}}, SubmitOptions{},
                      asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, std::vector<int> v) {
                        result.set_value({ec, std::move(v)});
                      }));
  asio::post(io.io, [&] { signal.emit(asio::cancellation_type::terminal); });
  auto [ec, out] = result.get_future().get();
  EXPECT_EQ(ec, errc::cancelled);
  EXPECT_EQ(out.size(), 3u);
  model.gate.open();
  running.get();
}

TEST(Batcher, StagedPrepareAndFinishOverlapOtherRuns) {
  IoThread io;
  sluice_test::StagedModel model;
  auto c = cfg(1);
  c.cpu_threads = 2;
  Batcher<sluice_test::StagedModel, FixedBatch> b(io.io.get_executor(), model, c);
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  futures.push_back(b.async_submit(0, SubmitOptions{}, asio::use_future));
  // Once the first batch is inside run(), the next batch's prepare runs on the CPU pool; run()
  // holds until it has seen that (or gives up after a bounded wait, and the check below fails).
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (model.running.load() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(100us);
  for (int i = 1; i < 6; ++i) futures.push_back(b.async_submit(i, SubmitOptions{}, asio::use_future));
  for (int i = 0; i < 6; ++i) {
    auto [ec, v] = futures[static_cast<std::size_t>(i)].get();
    EXPECT_FALSE(ec);
    EXPECT_EQ(v, 1000 + i);
  }
  EXPECT_TRUE(model.prepare_during_run.load());
  b.wait_idle();
  EXPECT_EQ(model.finishes.load(), model.prepares.load());
}

TEST(Batcher, StagedModelWithoutCpuPool) {
  sluice_test::StagedModel model;
  model.prepare_during_run = true;  // nothing to wait for
  auto c = cfg(4);
  c.cpu_threads = 0;
  Batcher<sluice_test::StagedModel, FixedBatch> b(model, c);
  EXPECT_EQ(b.submit(5), 1005);
}

TEST(Batcher, LanesRunBatchesConcurrently) {
  IoThread io;
  FakeModel model;
  model.wait_for_concurrency = 3;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1, 0us, 3));
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  for (int i = 0; i < 3; ++i) futures.push_back(b.async_submit(Req{i}, SubmitOptions{}, asio::use_future));
  for (auto& f : futures) EXPECT_FALSE(std::get<0>(f.get()));
  EXPECT_EQ(model.max_concurrent.load(), 3);
}

struct MemoryModel : FakeModel {
  std::size_t memory_for(std::size_t n) const { return 100 * n; }
};

TEST(Batcher, MemoryLimitCapsTheBatchSize) {
  IoThread io;
  MemoryModel model;
  model.gate.close();
  auto c = cfg(16);
  c.memory_limit_bytes = 350;
  Batcher<MemoryModel, FixedBatch> b(io.io.get_executor(), model, c);
  EXPECT_EQ(b.effective_max_batch_size(), 3u);
  auto first = b.async_submit(Req{0}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  for (int i = 0; i < 7; ++i) futures.push_back(b.async_submit(Req{i}, SubmitOptions{}, asio::use_future));
  model.gate.open();
  for (auto& f : futures) EXPECT_FALSE(std::get<0>(f.get()));
  for (auto& batch : model.batches_copy()) EXPECT_LE(batch.size(), 3u);
}

/// Counts what the Batcher reports to its controller.
struct CountingController {
  sluice::control::FixedBatch inner;
  std::vector<sluice::BatchRecord> records;
  sluice::Decision decide(const sluice::QueueState& q, sluice::TimePoint now) { return inner.decide(q, now); }
  void observe(const sluice::BatchRecord& r) { records.push_back(r); }
};

TEST(Batcher, ControllerObservesEveryBatch) {
  IoThread io;
  FakeModel model;
  model.oom_above = 1;
  model.gate.close();
  Batcher<FakeModel, CountingController> b(io.io.get_executor(), model, cfg(4));
  auto f0 = b.async_submit(Req{0}, SubmitOptions{}, asio::use_future);
  ASSERT_TRUE(model.gate.wait_arrived(1));
  auto f1 = b.async_submit(Req{1}, SubmitOptions{}, asio::use_future);
  auto f2 = b.async_submit(Req{2}, SubmitOptions{}, asio::use_future);
  model.gate.open();
  f0.get();
  f1.get();
  f2.get();
  b.wait_idle();
  b.with_controller([](CountingController& c) {
    ASSERT_EQ(c.records.size(), 4u);  // 1, then 2 (out of memory), then 1 and 1
    EXPECT_TRUE(c.records[0].ok);
    EXPECT_EQ(c.records[1].batch_size, 2u);
    EXPECT_FALSE(c.records[1].ok);
    EXPECT_TRUE(c.records[1].out_of_memory);
    EXPECT_TRUE(c.records[2].ok);
    EXPECT_TRUE(c.records[3].ok);
    for (auto& r : c.records) EXPECT_LE(r.started, r.finished);
  });
  EXPECT_EQ(b.metrics().batch_size().count(), 4u);
}

/// Records the batch keys a controller is shown.
struct KeyController {
  sluice::control::FixedBatch inner;
  std::vector<std::uint64_t> decided, observed;
  sluice::Decision decide(const sluice::QueueState& q, sluice::TimePoint now) {
    decided.push_back(q.key);
    return inner.decide(q, now);
  }
  void observe(const sluice::BatchRecord& r) { observed.push_back(r.key); }
};

TEST(Batcher, ControllerSeesTheBatchKeyOfEachDecisionAndRecord) {
  IoThread io;
  FakeModel model;
  Batcher<FakeModel, KeyController> b(io.io.get_executor(), model, cfg(4));
  for (std::uint64_t key : {5u, 9u}) {
    auto f = b.async_submit(Req{0, key}, SubmitOptions{}, asio::use_future);
    EXPECT_FALSE(std::get<0>(f.get()));
    b.wait_idle();
  }
  b.with_controller([](KeyController& c) {
    EXPECT_EQ(c.observed, (std::vector<std::uint64_t>{5, 9}));
    ASSERT_FALSE(c.decided.empty());
    EXPECT_EQ(c.decided.front(), 5u);
    EXPECT_EQ(c.decided.back(), 9u);
  });
}

TEST(Batcher, DelayGathersABatch) {
  IoThread io;
  FakeModel model;
  Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(4, 200ms));
  std::vector<std::future<std::tuple<std::error_code, int>>> futures;
  for (int i = 0; i < 3; ++i) futures.push_back(b.async_submit(Req{i}, SubmitOptions{}, asio::use_future));
  for (auto& f : futures) EXPECT_FALSE(std::get<0>(f.get()));
  // Three requests, well within the delay: one batch of three (the timer fired it).
  auto batches = model.batches_copy();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].size(), 3u);
}

TEST(Batcher, DestructionCompletesQueuedRequests) {
  IoThread io;
  FakeModel model;
  model.gate.close();
  std::optional<std::future<std::tuple<std::error_code, int>>> running, queued;
  std::optional<std::thread> opener;
  {
    Batcher<FakeModel, FixedBatch> b(io.io.get_executor(), model, cfg(1));
    running = b.async_submit(Req{1}, SubmitOptions{}, asio::use_future);
    ASSERT_TRUE(model.gate.wait_arrived(1));
    queued = b.async_submit(Req{2}, SubmitOptions{}, asio::use_future);
    opener.emplace([&] {
      std::this_thread::sleep_for(10ms);
      model.gate.open();
    });
  }  // waits for the running batch, cancels the queued request
  opener->join();
  EXPECT_FALSE(std::get<0>(running->get()));
  EXPECT_EQ(std::get<0>(queued->get()), errc::shutting_down);
}

}  // namespace
