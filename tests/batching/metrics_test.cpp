// Histogram buckets, the Prometheus rendering of the Batcher's metrics, the load gauges (queue
// depth, batches and requests in flight) of a live Batcher, and that the text is well-formed
// Prometheus exposition (version 0.0.4).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include <boost/asio/use_future.hpp>

#include "sluice/batching/batcher.hpp"
#include "sluice/batching/histogram.hpp"
#include "sluice/batching/metrics.hpp"
#include "sluice/control/fixed_batch.hpp"
#include "support/prometheus_check.hpp"

namespace {

using sluice::batching::BatcherLoad;
using sluice::batching::BatcherMetrics;
using sluice::batching::Histogram;
using namespace std::chrono_literals;
using sluice::test::exposition_problems;

/// A model whose run() blocks until released: batches stay in flight as long as a test needs.
struct GatedModel {
  using request_type = int;
  using response_type = int;
  std::mutex mutex;
  std::condition_variable cv;
  std::size_t running = 0;
  bool open = false;
  void run(std::span<const int> in, std::span<int> out) {
    std::unique_lock lock(mutex);
    ++running;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = in[i] + 1;
  }
  bool wait_running(std::size_t n) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, 20s, [&] { return running >= n; });
  }
  void release() {
    std::lock_guard lock(mutex);
    open = true;
    cv.notify_all();
  }
};

/// The value of the sample `name{model="m"}` in `text`, or -1 when absent.
double sample_value(const std::string& text, const std::string& name) {
  const std::string key = name + "{model=\"m\"} ";
  const auto at = text.find("\n" + key);
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + 1 + key.size(), nullptr);
}

TEST(Histogram, BucketsArePowersOfTwo) {
  using H = Histogram<8>;
  EXPECT_EQ(H::bucket_of(0), 0u);
  EXPECT_EQ(H::bucket_of(1), 0u);
  EXPECT_EQ(H::bucket_of(2), 1u);
  EXPECT_EQ(H::bucket_of(3), 2u);
  EXPECT_EQ(H::bucket_of(4), 2u);
  EXPECT_EQ(H::bucket_of(5), 3u);
  EXPECT_EQ(H::bucket_of(128), 7u);
  EXPECT_EQ(H::bucket_of(129), 8u);  // overflow
  EXPECT_EQ(H::bucket_of(~0ull), 8u);
  // Every value lies at or under its bucket's bound and above the previous one.
  for (std::uint64_t v = 1; v < 300; ++v) {
    const std::size_t b = H::bucket_of(v);
    if (b < 8) {
      EXPECT_LE(v, H::upper_bound(b));
    }
    if (b > 0) {
      EXPECT_GT(v, H::upper_bound(b - 1));
    }
  }
}

TEST(Histogram, CountsSumAndQuantiles) {
  Histogram<16> h;
  for (std::uint64_t v = 1; v <= 100; ++v) h.record(v);
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.sum(), 5050u);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= 16; ++i) total += h.bucket(i);
  EXPECT_EQ(total, 100u);
  // Median 50 lies in the bucket (32, 64]; p99 = 99 in (64, 128].
  EXPECT_EQ(h.quantile_upper_bound(0.5), 64u);
  EXPECT_EQ(h.quantile_upper_bound(0.99), 128u);
}

TEST(BatcherMetrics, RendersPrometheusText) {
  BatcherMetrics m;
  m.record_batch(3, std::chrono::microseconds(5));
  m.record_queue_time(std::chrono::nanoseconds(1000));
  m.record_latency(std::chrono::nanoseconds(3000));
  m.record_completion({});
  m.record_completion(sluice::errc::deadline_exceeded);
  m.record_completion(sluice::errc::deadline_exceeded);
  m.record_rejection(sluice::batching::Rejection::queue_full);
  m.record_model_failure("boom");
  const std::string text = m.render_prometheus("seg\"net");
  EXPECT_NE(text.find("# TYPE sluice_batch_size histogram"), std::string::npos);
  EXPECT_NE(text.find("sluice_batch_size_bucket{model=\"seg\\\"net\",le=\"4\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("sluice_batch_size_bucket{model=\"seg\\\"net\",le=\"2\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("sluice_batch_size_count{model=\"seg\\\"net\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("sluice_deadline_misses_total{model=\"seg\\\"net\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("sluice_rejections_total{model=\"seg\\\"net\",reason=\"queue_full\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("sluice_completions_total{model=\"seg\\\"net\",result=\"ok\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("sluice_model_failures_total{model=\"seg\\\"net\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("sluice_queue_time_seconds_sum{model=\"seg\\\"net\"} 1e-06\n"), std::string::npos);
  EXPECT_NE(text.find("le=\"+Inf\""), std::string::npos);
  EXPECT_EQ(m.last_failure_message(), "boom");
  EXPECT_EQ(m.deadline_misses(), 2u);
  EXPECT_EQ(text.find("sluice_queue_depth"), std::string::npos);  // no load given, no gauges
  EXPECT_TRUE(exposition_problems(text).empty()) << ::testing::PrintToString(exposition_problems(text));
}

TEST(BatcherMetrics, RendersLoadGauges) {
  BatcherMetrics m;
  const std::string text = m.render_prometheus("m", BatcherLoad{.queued_requests = 5, .running_requests = 3,
                                                                .batches_in_flight = 2});
  EXPECT_NE(text.find("# TYPE sluice_queue_depth gauge\nsluice_queue_depth{model=\"m\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE sluice_batches_in_flight gauge\nsluice_batches_in_flight{model=\"m\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE sluice_requests_in_flight gauge\nsluice_requests_in_flight{model=\"m\"} 8\n"),
            std::string::npos);
  EXPECT_TRUE(exposition_problems(text).empty()) << ::testing::PrintToString(exposition_problems(text));
}

// The checker itself rejects what Prometheus would: it is what makes the checks above mean something.
TEST(PrometheusExposition, CheckerRejectsMalformedText) {
  EXPECT_TRUE(exposition_problems("# TYPE a_total counter\na_total{x=\"1\"} 3\n").empty());
  EXPECT_FALSE(exposition_problems("# TYPE a counter\na 3\n").empty());                       // counter w/o _total
  EXPECT_FALSE(exposition_problems("a_total 3\n").empty());                                    // no TYPE
  EXPECT_FALSE(exposition_problems("# TYPE a gauge\n# TYPE a gauge\na 1\n").empty());         // two TYPEs
  EXPECT_FALSE(exposition_problems("# TYPE a gauge\na{x=1} 1\n").empty());                     // unquoted label
  EXPECT_FALSE(exposition_problems("# TYPE a gauge\na 1 2 3\n").empty());                      // bad sample
  EXPECT_FALSE(exposition_problems("# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n").empty());  // split family
  const std::string hist = "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n"
                           "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n";
  EXPECT_FALSE(exposition_problems(hist).empty());  // a cumulative bucket that falls
  EXPECT_FALSE(exposition_problems("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n").empty());
}

// A live Batcher's gauges: batches of at most 2 on one lane, a model that holds its batch. The first
// request runs alone (nothing to wait for), 4 more queue behind it; released, everything drains.
TEST(BatcherMetrics, LoadGaugesFollowALiveBatcher) {
  GatedModel model;
  sluice::BatcherConfig config;
  config.max_batch_size = 2;
  config.max_queue_delay = 0ms;
  config.model_name = "m";
  sluice::Batcher<GatedModel, sluice::control::FixedBatch> batcher(model, config);
  std::vector<std::future<std::tuple<std::error_code, int>>> answers;
  answers.push_back(batcher.async_submit(0, boost::asio::use_future));
  ASSERT_TRUE(model.wait_running(1));
  for (int i = 1; i < 5; ++i) answers.push_back(batcher.async_submit(i, boost::asio::use_future));
  const BatcherLoad held = batcher.load();
  EXPECT_EQ(held.batches_in_flight, 1u);
  EXPECT_EQ(held.running_requests, 1u);
  EXPECT_EQ(held.queued_requests, 4u);
  const std::string text = batcher.render_prometheus();
  EXPECT_EQ(sample_value(text, "sluice_queue_depth"), 4);
  EXPECT_EQ(sample_value(text, "sluice_batches_in_flight"), 1);
  EXPECT_EQ(sample_value(text, "sluice_requests_in_flight"), 5);
  EXPECT_TRUE(exposition_problems(text).empty()) << ::testing::PrintToString(exposition_problems(text));

  model.release();
  for (int i = 0; i < 5; ++i) {
    auto [ec, answer] = answers[static_cast<std::size_t>(i)].get();
    EXPECT_FALSE(ec);
    EXPECT_EQ(answer, i + 1);
  }
  batcher.wait_idle();
  const std::string after = batcher.render_prometheus();
  EXPECT_EQ(sample_value(after, "sluice_queue_depth"), 0);
  EXPECT_EQ(sample_value(after, "sluice_batches_in_flight"), 0);
  EXPECT_EQ(sample_value(after, "sluice_requests_in_flight"), 0);
  EXPECT_EQ(sample_value(after, "sluice_batch_size_count"), 3);  // batches of 1, 2, 2
}

}  // namespace
