// Positive and negative examples of the three concepts: a type missing a member is rejected.
#include <gtest/gtest.h>

#include <span>
#include <string>
#include <vector>

#include "sluice/control/fixed_batch.hpp"
#include "sluice/core/concepts.hpp"

namespace {

struct Direct {
  using request_type = int;
  using response_type = std::string;
  void run(std::span<const int> in, std::span<std::string> out) {
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = std::to_string(in[i]);
  }
};
struct DirectWithLane {
  using request_type = int;
  using response_type = int;
  void run(std::span<const int>, std::span<int>, const sluice::RunContext&) {}
};
struct Staged {
  using request_type = int;
  using response_type = int;
  using batch_type = std::vector<int>;
  batch_type prepare(std::span<const int> in) { return {in.begin(), in.end()}; }
  void run(batch_type& b) {
    for (int& x : b) x *= 2;
  }
  void finish(batch_type& b, std::span<int> out) { std::copy(b.begin(), b.end(), out.begin()); }
};
struct Keyed : Direct {
  std::uint64_t batch_key(const int& r) const { return static_cast<std::uint64_t>(r % 2); }
};
struct NoResponseType {
  using request_type = int;
  void run(std::span<const int>, std::span<int>) {}
};
struct NoRun {
  using request_type = int;
  using response_type = int;
};
struct StagedWithoutFinish {
  using request_type = int;
  using response_type = int;
  using batch_type = std::vector<int>;
  batch_type prepare(std::span<const int>) { return {}; }
  void run(batch_type&) {}
};

static_assert(sluice::BatchModel<Direct>);
static_assert(sluice::BatchModel<DirectWithLane>);
static_assert(sluice::BatchModel<Staged>);
static_assert(sluice::StagedBatchModel<Staged> && !sluice::DirectBatchModel<Staged>);
static_assert(sluice::KeyedBatchModel<Keyed> && !sluice::KeyedBatchModel<Direct>);
static_assert(!sluice::BatchModel<NoResponseType>);
static_assert(!sluice::BatchModel<NoRun>);
static_assert(!sluice::BatchModel<StagedWithoutFinish>);
static_assert(!sluice::BatchModel<int>);

struct Controller {
  sluice::Decision decide(const sluice::QueueState&, sluice::TimePoint) { return {}; }
  void observe(const sluice::BatchRecord&) {}
};
struct ControllerWithoutObserve {
  sluice::Decision decide(const sluice::QueueState&, sluice::TimePoint) { return {}; }
};
struct ControllerReturningInt {
  int decide(const sluice::QueueState&, sluice::TimePoint) { return 0; }
  void observe(const sluice::BatchRecord&) {}
};
static_assert(sluice::BatchController<Controller>);
static_assert(sluice::BatchController<sluice::control::FixedBatch>);
static_assert(!sluice::BatchController<ControllerWithoutObserve>);
static_assert(!sluice::BatchController<ControllerReturningInt>);

struct FakeBackend {
  struct tensor_type {
    sluice::Shape shape;
    std::vector<float> data;
  };
  tensor_type upload(std::span<const float> src, const sluice::Shape& s) { return {s, {src.begin(), src.end()}}; }
  void download(const tensor_type& t, std::span<float> dst) { std::copy(t.data.begin(), t.data.end(), dst.begin()); }
  sluice::Shape shape_of(const tensor_type& t) const { return t.shape; }
  void synchronize() {}
  sluice::MemoryStats memory() const { return {}; }
  void reset_peak() {}
};
struct BackendWithoutMemory : FakeBackend {
  void memory() const = delete;
};
static_assert(sluice::BackendBase<FakeBackend>);
static_assert(!sluice::BackendBase<BackendWithoutMemory>);
static_assert(!sluice::BackendBase<int>);

TEST(Concepts, BatchKeyDefaultsToZeroAndUsesTheModelsHook) {
  EXPECT_EQ(sluice::batch_key_of(Direct{}, 7), 0u);
  EXPECT_EQ(sluice::batch_key_of(Keyed{}, 7), 1u);
  EXPECT_EQ(sluice::batch_key_of(Keyed{}, 8), 0u);
}

TEST(Concepts, RunHelpersCallTheRightOverload) {
  Direct direct;
  std::vector<int> in{1, 2};
  std::vector<std::string> out(2);
  sluice::run_direct(direct, std::span<const int>(in), std::span<std::string>(out), {});
  EXPECT_EQ(out[1], "2");
  Staged staged;
  auto batch = staged.prepare(in);
  sluice::run_staged(staged, batch, {});
  EXPECT_EQ(batch, (std::vector<int>{2, 4}));
}

TEST(FixedBatch, DispatchesFullPreferredAndDueBatches) {
  using namespace std::chrono_literals;
  sluice::control::FixedBatch c;
  const std::size_t preferred[] = {4};
  sluice::QueueState q;
  q.max_batch_size = 8;
  q.max_queue_delay = 5ms;
  q.preferred_batch_sizes = preferred;
  const sluice::TimePoint t0{};
  q.oldest_arrival = t0;
  q.queued = 2;
  auto d = c.decide(q, t0 + 1ms);
  EXPECT_EQ(d.dispatch, 0u);
  EXPECT_EQ(d.wait_until, t0 + 5ms);
  EXPECT_EQ(c.decide(q, t0 + 5ms).dispatch, 2u);
  q.queued = 5;
  EXPECT_EQ(c.decide(q, t0 + 1ms).dispatch, 4u);
  q.queued = 9;
  EXPECT_EQ(c.decide(q, t0).dispatch, 8u);
  q.queued = 0;
  EXPECT_EQ(c.decide(q, t0).wait_until, sluice::kNever);
}

}  // namespace
