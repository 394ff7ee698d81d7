// group_metric_families: the /metrics text of a server with several models keeps one HELP and TYPE
// line per family and each family's samples together, losing and adding no sample.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "sluice/batching/metrics.hpp"
#include "sluice/serve/http_metrics.hpp"
#include "sluice/serve/prometheus_text.hpp"
#include "support/prometheus_check.hpp"

namespace {

using sluice::batching::BatcherLoad;
using sluice::batching::BatcherMetrics;
using sluice::serve::group_metric_families;
using sluice::test::exposition_problems;

std::vector<std::string> sorted_lines(const std::string& text, bool samples_only) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && !(samples_only && line[0] == '#')) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The server's own metrics, then two models' Batcher metrics, as Api::render_metrics appends them.
std::string two_models() {
  sluice::serve::HttpMetrics http;
  http.request_started();
  BatcherMetrics a, b;
  a.record_batch(2, std::chrono::milliseconds(3));
  b.record_queue_time(std::chrono::microseconds(40));
  std::string out;
  http.render(out);
  out += a.render_prometheus("a", BatcherLoad{.queued_requests = 1});
  out += b.render_prometheus("b", BatcherLoad{.queued_requests = 7, .running_requests = 2, .batches_in_flight = 1});
  return out;
}

TEST(PrometheusText, SeveralModelsRenderEachFamilyOnce) {
  const std::string raw = two_models();
  // As appended, the second model repeats every family's TYPE line: not valid exposition.
  EXPECT_EQ(count(raw, "# TYPE sluice_queue_depth gauge\n"), 2u);
  EXPECT_FALSE(exposition_problems(raw).empty());

  const std::string grouped = group_metric_families(raw);
  EXPECT_TRUE(exposition_problems(grouped).empty()) << ::testing::PrintToString(exposition_problems(grouped));
  EXPECT_EQ(count(grouped, "# TYPE sluice_queue_depth gauge\n"), 1u);
  EXPECT_EQ(count(grouped, "# HELP sluice_queue_time_seconds "), 1u);
  EXPECT_NE(grouped.find("# TYPE sluice_queue_depth gauge\nsluice_queue_depth{model=\"a\"} 1\n"
                         "sluice_queue_depth{model=\"b\"} 7\n"),
            std::string::npos);
  // No sample lost or added.
  EXPECT_EQ(sorted_lines(grouped, true), sorted_lines(raw, true));
  // Text already grouped stays as it is.
  EXPECT_EQ(group_metric_families(grouped), grouped);
}

TEST(PrometheusText, HistogramSamplesStayWithTheirFamily) {
  const std::string text =
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n"
      "# TYPE h_count_total counter\nh_count_total 3\n"
      "# TYPE h histogram\nh_bucket{m=\"b\",le=\"1\"} 0\nh_bucket{m=\"b\",le=\"+Inf\"} 2\nh_sum{m=\"b\"} 9\nh_count{m=\"b\"} 2\n";
  const std::string grouped = group_metric_families(text);
  EXPECT_EQ(grouped,
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n"
            "h_bucket{m=\"b\",le=\"1\"} 0\nh_bucket{m=\"b\",le=\"+Inf\"} 2\nh_sum{m=\"b\"} 9\nh_count{m=\"b\"} 2\n"
            "# TYPE h_count_total counter\nh_count_total 3\n");
  EXPECT_TRUE(exposition_problems(grouped).empty()) << ::testing::PrintToString(exposition_problems(grouped));
}

}  // namespace
