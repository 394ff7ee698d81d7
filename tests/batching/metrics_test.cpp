// Histogram buckets and the Prometheus rendering of the Batcher's metrics.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "sluice/batching/histogram.hpp"
#include "sluice/batching/metrics.hpp"

namespace {

using sluice::batching::BatcherMetrics;
using sluice::batching::Histogram;

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
}

}  // namespace
