// The calibrator: choice rules on synthetic measurements, the memory prediction that stops the sweep
// before a size that would not fit, batch_sizes.json (round trip, the standard example file, errors that name
// the key, the lookup programs use), the example's SVG chart and the test support's ModelRunner.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "calibrate/svg_chart.hpp"
#include "calibrate/synthetic_model.hpp"
#include "sluice/calibrate/batch_sizes_json.hpp"
#include "sluice/calibrate/calibrator.hpp"
#include "support/control_test_util.hpp"
#include "support/model_runner.hpp"

namespace sluice::calibrate {
namespace {
using control::test::ms;
using control::test::to_ms;

constexpr std::size_t MiB = 1 << 20;

SizeResult measured(std::size_t n, double p50_ms, std::size_t peak_mb = 100, bool ok = true) {
  SizeResult s;
  s.batch_size = n;
  s.success = ok;
  if (!ok) {
    s.error = "out of memory";
    return s;
  }
  s.runs = 30;
  s.mean = s.p50 = ms(p50_ms);
  s.p95 = ms(p50_ms * 1.05);
  s.p99 = ms(p50_ms * 1.08);
  s.throughput = 1000.0 * static_cast<double>(n) / p50_ms;
  s.peak_bytes = peak_mb * MiB;
  return s;
}

// HRNet on the A5000 (the fixture's p50s): throughput 15.8, 15.9, 17.2, 17.3, 17.5, 12.6 items/s.
std::vector<SizeResult> hrnet_like() {
  return {measured(1, 63.3), measured(2, 125.7), measured(4, 232.6), measured(8, 462.8), measured(12, 684.3),
          measured(16, 1271.0), measured(24, 0, 0, false)};
}

TEST(Calibrate, SweepLadder) {
  EXPECT_EQ(sweep_sizes(40), (std::vector<std::size_t>{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 40}));
  EXPECT_EQ(sweep_sizes(16), (std::vector<std::size_t>{1, 2, 3, 4, 6, 8, 12, 16}));
  EXPECT_EQ(sweep_sizes(1), (std::vector<std::size_t>{1}));
}

TEST(Calibrate, OptimalIsTheSmallestSizeWithinTheKneeOfTheBestThroughput) {
  const auto sizes = hrnet_like();
  // Best is 12 (17.54/s); 17.54 / 1.1 = 15.95: size 2 (15.91) misses it, size 4 (17.20) makes it.
  EXPECT_EQ(choose_optimal(sizes, Duration::zero(), 0.10, 16), 4u);
  EXPECT_EQ(choose_optimal(sizes, Duration::zero(), 0.0, 16), 12u);  // no knee: the raw maximum
  // A p95 budget of 500 ms leaves 1, 2, 4, 8 (p95 = 1.05 p50); best 8 (17.29/s), and 1 is within 10%.
  EXPECT_EQ(choose_optimal(sizes, ms(500), 0.10, 16), 1u);
  EXPECT_EQ(choose_optimal(sizes, ms(500), 0.0, 16), 8u);
  // Above the safe size nothing counts.
  EXPECT_EQ(choose_optimal(sizes, Duration::zero(), 0.0, 8), 8u);
  EXPECT_FALSE(choose_optimal(sizes, ms(10), 0.1, 16));  // nothing within 10 ms
  EXPECT_THROW(choose_optimal(sizes, ms(10), -0.1, 16), Error);
}

TEST(Calibrate, MaxSafeIsTheLargestSizeThatRanWithinTheLimitLessTheReserve) {
  std::vector<SizeResult> sizes = {measured(1, 10, 100), measured(2, 20, 200), measured(4, 40, 400),
                                   measured(8, 80, 800), measured(12, 120, 900), measured(16, 0, 0, false)};
  EXPECT_EQ(choose_max_safe(sizes, 1000 * MiB, 15.0), 8u);   // usable 850 MiB: 12 needs 900
  EXPECT_EQ(choose_max_safe(sizes, 1000 * MiB, 5.0), 12u);   // usable 950 MiB
  EXPECT_EQ(choose_max_safe(sizes, 0, 15.0), 12u);           // no limit: largest that ran
  EXPECT_FALSE(choose_max_safe(sizes, 50 * MiB, 15.0));
  EXPECT_THROW(choose_max_safe(sizes, 1000 * MiB, 100.0), Error);
}

TEST(Calibrate, PredictsPeakMemoryWithALine) {
  std::vector<SizeResult> sizes = {measured(1, 10, 60), measured(2, 20, 70), measured(4, 40, 90)};
  EXPECT_NEAR(*predict_peak_bytes(sizes, 8) / MiB, 130.0, 1e-6);  // 50 + 10 n
  EXPECT_NEAR(*predict_peak_bytes({measured(2, 20, 70)}, 4) / MiB, 140.0, 1e-6);  // one point: proportional
  EXPECT_FALSE(predict_peak_bytes({}, 4));
}

// A fake model: exact a + b*n device time, peak = fixed + per_item * n, and a device that crashes
// (throws) when a run needs more than it has. It records every prepare().
struct FakeModel {
  std::size_t fixed = 200 * MiB, per_item = 50 * MiB, device = 1000 * MiB;
  std::size_t fail_from = 0;  // > 0: sizes >= this fail
  std::size_t n = 0;
  std::vector<std::pair<std::size_t, std::uint64_t>> prepared;
  std::set<std::size_t> ran;
  void prepare(std::size_t batch, std::uint64_t seed) {
    n = batch;
    prepared.emplace_back(batch, seed);
  }
  RunReport run() {
    ran.insert(n);
    if (fail_from > 0 && n >= fail_from) throw Error(errc::model_failed, "boom");
    const std::size_t peak = fixed + per_item * n;
    if (peak > device) throw Error(errc::out_of_memory, "crashed: the sweep should have stopped earlier");
    return {peak, ms(10.0 + 5.0 * static_cast<double>(n))};
  }
};

TEST(Calibrate, SweepStopsBeforeTheMemoryLimitWithoutCrashing) {
  FakeModel m;
  CalibrationOptions o;
  o.memory_limit_bytes = 1000 * MiB;
  o.memory_reserve_percent = 15;  // usable 850 MiB: 200 + 50 n <= 850 up to n = 13
  o.timed_runs = 5;
  o.warmup_runs = 1;
  const auto r = calibrate(m, o);
  // Ladder 1 2 3 4 6 8 12 16: 16 is predicted at 1000 MiB > 850 and never tried.
  EXPECT_EQ(m.ran, (std::set<std::size_t>{1, 2, 3, 4, 6, 8, 12}));
  EXPECT_EQ(r.max_safe_batch_size, 12u);
  EXPECT_NE(r.stop_reason.find("predicted"), std::string::npos) << r.stop_reason;
  for (const auto& s : r.sizes) EXPECT_TRUE(s.success);
  // Exact device times: every quantile equals 10 + 5n; throughput n / (10 + 5n) ms.
  const auto* s4 = r.find(4);
  ASSERT_NE(s4, nullptr);
  EXPECT_NEAR(to_ms(s4->p99), 30.0, 1e-6);
  EXPECT_NEAR(s4->throughput, 4.0 / 0.030, 1e-6);
  EXPECT_EQ(s4->peak_bytes, 400 * MiB);
  EXPECT_EQ(s4->runs, 5u);
  // Every run saw a new seed (rotating inputs), and each size was warmed up and timed.
  std::set<std::uint64_t> seeds;
  for (const auto& [n, seed] : m.prepared) seeds.insert(seed);
  EXPECT_EQ(seeds.size(), m.prepared.size());
  EXPECT_EQ(m.prepared.size(), 7u * 6u);
  // Highest throughput is at 12 (12 / 70 ms); within 10% of it: 8 (8 / 50 ms = 160/s vs 171/s).
  EXPECT_EQ(r.optimal_batch_size, 8u);
}

TEST(Calibrate, SweepStopsAtTheFirstFailure) {
  FakeModel m;
  m.fail_from = 6;
  m.device = SIZE_MAX;
  CalibrationOptions o;
  o.timed_runs = 3;
  const auto r = calibrate(m, o);
  EXPECT_EQ(r.sizes.size(), 5u);
  EXPECT_FALSE(r.sizes.back().success);
  EXPECT_EQ(r.sizes.back().batch_size, 6u);
  EXPECT_EQ(r.max_safe_batch_size, 4u);
  EXPECT_NE(r.stop_reason.find("boom"), std::string::npos);
}

TEST(Calibrate, FailsClearlyWhenNothingFits) {
  FakeModel m;
  m.fixed = 2000 * MiB;
  m.device = SIZE_MAX;
  CalibrationOptions o;
  o.memory_limit_bytes = 1000 * MiB;
  o.timed_runs = 2;
  EXPECT_THROW(calibrate(m, o), Error);
  o.timed_runs = 1;
  EXPECT_THROW(calibrate(m, o), Error);  // bad options
}

TEST(Calibrate, SyntheticModelInputsAreRandomNonZeroAndRotate) {
  SyntheticModel m({.features = 16, .layers = 1, .fixed_work = 4});
  m.prepare(3, 1);
  const std::vector<float> a(m.inputs().begin(), m.inputs().end());
  m.prepare(3, 2);
  const std::vector<float> b(m.inputs().begin(), m.inputs().end());
  ASSERT_EQ(a.size(), 48u);
  EXPECT_NE(a, b);
  for (float x : a) EXPECT_GE(x, 0.1f);
  EXPECT_EQ(m.run().peak_bytes, m.bytes_for(3));
  SyntheticModel tiny({.features = 16, .layers = 1, .fixed_work = 4, .device_bytes = 1});
  tiny.prepare(1, 1);
  EXPECT_THROW(tiny.run(), Error);
}

CalibrationResult sample_result() {
  CalibrationResult r;
  r.model_name = "hrnet";
  r.sizes = hrnet_like();
  r.optimal_batch_size = 4;
  r.max_safe_batch_size = 16;
  r.memory_limit_bytes = 21504 * MiB;
  r.latency_budget = ms(800);
  return r;
}

TEST(BatchSizesJson, RoundTrip) {
  BatchSizesFile f;
  f.gpu_info = {"cpu", 24.0, "n/a"};
  f.extra["sluice_version"] = "0.1.0";
  add_calibration(f, sample_result());
  const BatchSizesFile g = from_json(nlohmann::json::parse(to_json(f).dump()));
  ASSERT_EQ(g.batch_configurations.count("hrnet"), 1u);
  const auto& c = g.batch_configurations.at("hrnet");
  EXPECT_EQ(c.optimal_batch_size, 4u);
  EXPECT_EQ(c.max_safe_batch_size, 16u);
  EXPECT_NEAR(c.expected_throughput, 4000.0 / 232.6, 1e-9);
  EXPECT_NEAR(c.memory_limit_mb, 21504.0, 1e-9);
  EXPECT_NEAR(*c.p95_latency_ms, 232.6 * 1.05, 1e-4);
  ASSERT_EQ(c.latency_table.size(), 6u);  // the failed size is not in the table
  EXPECT_EQ(c.latency_table[5].batch_size, 16u);
  EXPECT_NEAR(to_ms(c.latency_table[5].p99), 1271.0 * 1.08, 1e-4);
  const auto& tests = g.detailed_results.at("hrnet");
  ASSERT_EQ(tests.size(), 7u);
  EXPECT_FALSE(tests.back().success);
  EXPECT_EQ(*tests.back().error, "out of memory");
  EXPECT_FALSE(tests.back().peak_memory_mb);
  EXPECT_NEAR(tests[0].avg_inference_time_ms, 63.3, 1e-4);
  EXPECT_EQ(g.gpu_info.device_name, "cpu");
  EXPECT_EQ(g.extra.at("sluice_version"), "0.1.0");
  EXPECT_EQ(to_json(g), to_json(f));
  // The controller's starting table comes straight from it.
  EXPECT_EQ(latency_table_for(g, "hrnet").size(), 6u);
}

TEST(BatchSizesJson, ReadsTheSpecExample) {
  // A file with only the standard fields (no sluice extras), as other calibration tools write it.
  const auto f = load_batch_sizes(SLUICE_CONTROL_TEST_DIR "/data/batch_sizes_spec_example.json");
  const auto& c = f.batch_configurations.at("hrnet");
  EXPECT_EQ(c.optimal_batch_size, 12u);
  EXPECT_EQ(c.max_safe_batch_size, 16u);
  EXPECT_DOUBLE_EQ(c.expected_throughput, 17.79);
  EXPECT_DOUBLE_EQ(c.memory_limit_mb, 21504.0);
  EXPECT_DOUBLE_EQ(*c.p95_latency_ms, 700.5);
  EXPECT_EQ(f.gpu_info.device_name, "NVIDIA RTX A5000");
  EXPECT_DOUBLE_EQ(f.gpu_info.total_memory_gb, 23.6);
  const auto& t = f.detailed_results.at("hrnet").at(0);
  EXPECT_EQ(t.batch_size, 1u);
  EXPECT_DOUBLE_EQ(t.throughput_imgs_per_sec, 15.6);
  EXPECT_DOUBLE_EQ(t.avg_inference_time_ms, 63.9);
  EXPECT_TRUE(t.success);
  EXPECT_FALSE(t.error);
  EXPECT_TRUE(f.dynamic_batching.enabled);
  EXPECT_DOUBLE_EQ(f.dynamic_batching.max_queue_delay_ms, 5.0);
  EXPECT_DOUBLE_EQ(f.dynamic_batching.timeout_ms, 50.0);
  EXPECT_DOUBLE_EQ(f.memory_reserve_percent, 15.0);
  // No latency_table_ms in the original format: the table falls back to the average times.
  const auto table = latency_table_for(f, "hrnet");
  ASSERT_EQ(table.size(), 1u);
  EXPECT_NEAR(to_ms(table[0].p50), 63.9, 1e-6);
}

TEST(BatchSizesJson, RejectsBadFiles) {
  auto parse = [](const char* text) { return from_json(nlohmann::json::parse(text)); };
  EXPECT_THROW(parse("[]"), Error);
  EXPECT_THROW(parse("{}"), Error);  // no batch_configurations
  EXPECT_THROW(parse(R"({"batch_configurations": {"m": {"optimal_batch_size": 8, "max_safe_batch_size": 4}}})"), Error);
  EXPECT_THROW(parse(R"({"batch_configurations": {"m": {"optimal_batch_size": 0, "max_safe_batch_size": 4}}})"), Error);
  EXPECT_THROW(parse(R"({"batch_configurations": {"m": {"optimal_batch_size": "4", "max_safe_batch_size": 4}}})"), Error);
  EXPECT_THROW(parse(R"({"batch_configurations": {"m": {"optimal_batch_size": 1, "max_safe_batch_size": 4,
      "latency_table_ms": [{"batch_size": 2, "p50": 1, "p95": 2, "p99": 3}, {"batch_size": 1, "p50": 1, "p95": 2, "p99": 3}]}}})"),
               Error);
  EXPECT_THROW(load_batch_sizes("/nonexistent/batch_sizes.json"), Error);
  // Extra keys anywhere are fine.
  EXPECT_NO_THROW(parse(R"({"x": 1, "batch_configurations": {"m": {"optimal_batch_size": 1, "max_safe_batch_size": 1, "y": 2}}})"));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::invalid_argument));
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(BatchSizesJson, ErrorsNameTheSourceAndTheKey) {
  auto parse = [](const char* text) {
    return error_of([&] { from_json(nlohmann::json::parse(text), "batch sizes file cal/b.json"); });
  };
  std::string e = parse(R"({"batch_configurations": {"m": {"optimal_batch_size": 0, "max_safe_batch_size": 4}}})");
  EXPECT_NE(e.find("batch sizes file cal/b.json: batch_configurations.m.optimal_batch_size: expected an integer"),
            std::string::npos) << e;
  e = parse(R"({"batch_configurations": {"m": {"optimal_batch_size": 1, "max_safe_batch_size": 1,
      "latency_table_ms": [{"batch_size": 1, "p50": 1, "p95": 2, "p99": 3},
                           {"batch_size": 2, "p50": 1, "p95": 2}]}}})");
  EXPECT_NE(e.find("batch_configurations.m.latency_table_ms[1]: missing \"p99\""), std::string::npos) << e;
  e = parse(R"({"batch_configurations": {}, "detailed_results": {"m": {"all_test_results": [{"batch_size": 1}]}}})");
  EXPECT_NE(e.find("detailed_results.m.all_test_results[0]: missing \"success\""), std::string::npos) << e;
  e = parse(R"({"batch_configurations": {}, "memory_reserve_percent": "x"})");
  EXPECT_NE(e.find(": memory_reserve_percent: expected a number"), std::string::npos) << e;
  e = parse(R"({"batch_configurations": {"m": {"optimal_batch_size": 1, "max_safe_batch_size": 1,
      "latency_table_ms": [{"batch_size": 1, "p50": 3, "p95": 2, "p99": 3}]}}})");
  EXPECT_NE(e.find("batch_configurations.m.latency_table_ms: latency table: need 0 < p50 <= p95 <= p99"),
            std::string::npos) << e;
  EXPECT_NE(error_of([] { load_batch_sizes("/nonexistent/batch_sizes.json"); }).find("/nonexistent/batch_sizes.json"),
            std::string::npos);
}

TEST(BatchSizesJson, FindsAModelByNameThenByNetworkAtItsInputSize) {
  BatchSizesFile f;
  add_calibration(f, sample_result());  // "hrnet"
  auto other = sample_result();
  other.model_name = "fast";
  other.optimal_batch_size = 2;
  add_calibration(f, other);
  f.extra["input_size"] = {128, 96};

  const auto by_network = find_model_batch_sizes(f, {.model = "api-name", .network = "hrnet"});
  ASSERT_TRUE(by_network);
  EXPECT_EQ(by_network->key, "hrnet");
  EXPECT_EQ(by_network->optimal_batch_size, 4u);
  EXPECT_EQ(by_network->max_safe_batch_size, 16u);
  EXPECT_EQ(by_network->latency_table.size(), 6u);  // its six sizes that ran
  EXPECT_FALSE(by_network->max_queue_delay_ms);  // the file written here has no dynamic_batching
  const auto by_name = find_model_batch_sizes(f, {.model = "fast", .network = "hrnet"});
  ASSERT_TRUE(by_name);
  EXPECT_EQ(by_name->key, "fast");
  EXPECT_EQ(by_name->optimal_batch_size, 2u);
  EXPECT_FALSE(find_model_batch_sizes(f, {.model = "x", .network = "y"}));

  // The calibration's input size must be the model's.
  auto at = [](int h, int w) {
    return BatchSizesQuery{.model = "", .network = "hrnet", .input_height = h, .input_width = w};
  };
  EXPECT_TRUE(find_model_batch_sizes(f, at(128, 96)));
  const std::string e = error_of([&] { find_model_batch_sizes(f, at(96, 128), "b.json"); });
  EXPECT_NE(e.find("b.json: input_size: calibrated at 128x96, but 'hrnet' runs at 96x128"), std::string::npos) << e;
  f.extra["input_size"] = "big";
  EXPECT_NE(error_of([&] { find_model_batch_sizes(f, at(1, 1)); }).find("input_size: expected [height, width]"),
            std::string::npos);

  // A file in the original format: its dynamic_batching, and a table from the detailed results.
  const auto spec = load_batch_sizes(SLUICE_CONTROL_TEST_DIR "/data/batch_sizes_spec_example.json");
  const auto h = find_model_batch_sizes(spec, at(1024, 1024));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->optimal_batch_size, 12u);
  ASSERT_TRUE(h->max_queue_delay_ms);
  EXPECT_DOUBLE_EQ(*h->max_queue_delay_ms, 5.0);
  ASSERT_EQ(h->latency_table.size(), 1u);
}

TEST(BatchSizesJson, TableFromDetailedResultsUsesTheirQuantiles) {
  const auto f = from_json(nlohmann::json::parse(R"({"batch_configurations": {"m": {"optimal_batch_size": 1,
      "max_safe_batch_size": 4}}, "detailed_results": {"m": {"all_test_results": [
      {"batch_size": 4, "avg_inference_time_ms": 40, "p50_latency_ms": 38, "p95_latency_ms": 45, "p99_latency_ms": 50,
       "success": true},
      {"batch_size": 1, "avg_inference_time_ms": 10, "success": true},
      {"batch_size": 2, "avg_inference_time_ms": 20, "p50_latency_ms": 19, "p95_latency_ms": 18, "success": true},
      {"batch_size": 8, "success": false, "error": "out of memory"}]}}})"));
  const auto t = latency_table_for(f, "m");
  ASSERT_EQ(t.size(), 3u);  // ascending; the failed size left out
  EXPECT_EQ(t[0].batch_size, 1u);
  EXPECT_NEAR(to_ms(t[0].p99), 10.0, 1e-6);  // the average for all three
  EXPECT_NEAR(to_ms(t[1].p50), 19.0, 1e-6);
  EXPECT_NEAR(to_ms(t[1].p99), 19.0, 1e-6);  // quantiles never fall below the median
  EXPECT_NEAR(to_ms(t[2].p50), 38.0, 1e-6);
  EXPECT_NEAR(to_ms(t[2].p95), 45.0, 1e-6);
  EXPECT_NEAR(to_ms(t[2].p99), 50.0, 1e-6);
  EXPECT_NO_THROW(control::validate(t));
}

TEST(SvgChart, DrawsBothSeriesAndMarksTheChosenSizes) {
  auto r = sample_result();
  r.model_name = "a<b & c";
  const std::string svg = svg_chart(r);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("a&lt;b &amp; c"), std::string::npos);
  EXPECT_NE(svg.find("optimal 4"), std::string::npos);
  EXPECT_NE(svg.find("max safe 16"), std::string::npos);
  EXPECT_NE(svg.find("p95 budget 800 ms"), std::string::npos);
  EXPECT_NE(svg.find("failed"), std::string::npos);
  auto count = [&](const std::string& what) {
    std::size_t k = 0;
    for (auto p = svg.find(what); p != std::string::npos; p = svg.find(what, p + 1)) ++k;
    return k;
  };
  EXPECT_EQ(count("<polyline"), 2u);
  EXPECT_EQ(count("<circle"), 6u + 1u);  // one per successful size, one in the legend
}

TEST(ModelRunner, ChunksAtTheOptimalSizeCappedAtTheSafeSizeAndKeepsOrder) {
  std::vector<std::size_t> chunks;
  auto fn = [&](std::span<const int> xs) {
    chunks.push_back(xs.size());
    std::vector<int> out;
    for (int x : xs) out.push_back(2 * x);
    return out;
  };
  ModelRunner<int, decltype(fn)> runner(fn, 4, 6);
  std::vector<int> in(23);
  for (int i = 0; i < 23; ++i) in[i] = i;
  auto out = runner.predict_batch(in);
  ASSERT_EQ(out.size(), 23u);
  for (int i = 0; i < 23; ++i) EXPECT_EQ(out[i], 2 * i);
  EXPECT_EQ(chunks, (std::vector<std::size_t>{4, 4, 4, 4, 4, 3}));
  chunks.clear();
  out = runner.predict_batch(in, 10);  // capped at 6
  EXPECT_EQ(chunks, (std::vector<std::size_t>{6, 6, 6, 5}));
  EXPECT_EQ(runner.predict(21), 42);
  EXPECT_EQ(runner.get_optimal_batch_size(), 4u);
  EXPECT_EQ(runner.get_max_safe_batch_size(), 6u);
  EXPECT_THROW(runner.predict_batch(in, 0), Error);
  EXPECT_TRUE(runner.predict_batch(std::span<const int>{}).empty());
}

TEST(ModelRunner, SplitsOnOutOfMemoryAndNeverDropsAnItem) {
  auto fn = [](std::span<const int> xs) {
    if (xs.size() > 3) throw Error(errc::out_of_memory, "too big");
    return std::vector<int>(xs.begin(), xs.end());
  };
  ModelRunner<int, decltype(fn)> runner(fn, 8, 8);
  std::vector<int> in(17);
  for (int i = 0; i < 17; ++i) in[i] = i;
  const auto out = runner.predict_batch(in);
  EXPECT_EQ(out, in);
  EXPECT_LE(runner.get_max_safe_batch_size(), 7u);
  EXPECT_LE(runner.get_optimal_batch_size(), runner.get_max_safe_batch_size());
}

TEST(ModelRunner, AModelThatLosesItemsIsAnError) {
  auto fn = [](std::span<const int> xs) { return std::vector<int>(xs.begin(), xs.end() - 1); };
  ModelRunner<int, decltype(fn)> runner(fn, 4, 4);
  std::vector<int> in(4, 1);
  try {
    runner.predict_batch(in);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::model_failed));
  }
  auto ok = [](std::span<const int> xs) { return std::vector<int>(xs.begin(), xs.end()); };
  EXPECT_THROW((ModelRunner<int, decltype(ok)>(ok, 5, 4)), Error);
  EXPECT_THROW((ModelRunner<int, decltype(ok)>(ok, 0, 4)), Error);
}

}  // namespace
}  // namespace sluice::calibrate
