// sluice_serve's batching of one model (examples/serve/batching_setup.hpp): what a batch_sizes.json
// does to the Batcher's settings and to the SloController it starts with.
#include "serve/batching_setup.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "sluice/control/slo_controller.hpp"

namespace sluice::serve_app {
namespace {

double to_ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

/// A batch_sizes.json in a fresh temporary folder, removed with the object.
class TempBatchSizes {
 public:
  explicit TempBatchSizes(const std::string& text)
      : dir_(std::filesystem::temp_directory_path() /
             ("sluice_batching_setup_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++))) {
    std::filesystem::create_directories(dir_);
    std::ofstream(path()) << text;
  }
  ~TempBatchSizes() { std::filesystem::remove_all(dir_); }
  std::string path() const { return (dir_ / "batch_sizes.json").string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
};

// As sluice_calibrate writes it for the demo network at 128x128: the latency table and, apart from
// it, the detailed results -- whose averages (100 ms and more) are not the table's p50s.
const char* kCalibrated = R"({
  "input_size": [128, 128],
  "batch_configurations": {"cbam_resunet": {"optimal_batch_size": 2, "max_safe_batch_size": 4,
    "latency_table_ms": [{"batch_size": 1, "p50": 10, "p95": 11, "p99": 12},
                         {"batch_size": 2, "p50": 15, "p95": 16, "p99": 17},
                         {"batch_size": 4, "p50": 25, "p95": 26, "p99": 27}]}},
  "detailed_results": {"cbam_resunet": {"all_test_results": [
    {"batch_size": 1, "avg_inference_time_ms": 100, "success": true},
    {"batch_size": 2, "avg_inference_time_ms": 150, "success": true},
    {"batch_size": 4, "avg_inference_time_ms": 250, "success": true}]}},
  "dynamic_batching": {"enabled": true, "max_queue_delay_ms": 7, "timeout_ms": 50}
})";

ModelConfig demo() {
  ModelConfig m;
  m.name = "demo";
  m.network = "cbam_resunet";
  return m;
}

std::string error_of(const ModelConfig& m, const ServeConfig& c, int h = 128, int w = 128) {
  try {
    batching_setup(m, c, 1, h, w);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ServeBatchingSetup, TheSloControllerStartsFromTheFilesLatencyTable) {
  const TempBatchSizes file(kCalibrated);
  ServeConfig c;
  c.batch_sizes = file.path();
  c.max_batch_size = 16;
  const BatchingSetup s = batching_setup(demo(), c, 2, 128, 128);
  EXPECT_EQ(s.calibration, "cbam_resunet");  // found by network: the model's name is not in the file
  EXPECT_EQ(s.batcher.max_batch_size, 4u);   // the file's max safe size caps the server's 16
  EXPECT_EQ(s.batcher.lanes, 2u);
  EXPECT_NEAR(to_ms(s.batcher.max_queue_delay), 7.0, 1e-9);
  ASSERT_TRUE(s.slo.calibration);
  ASSERT_EQ(s.slo.calibration->size(), 3u);
  const auto& t = *s.slo.calibration;
  EXPECT_EQ(t[1].batch_size, 2u);
  EXPECT_NEAR(to_ms(t[1].p50), 15.0, 1e-6);
  EXPECT_NEAR(to_ms(t[1].p95), 16.0, 1e-6);
  EXPECT_NEAR(to_ms(t[1].p99), 17.0, 1e-6);

  // The controller built from it knows every size's latency before the first batch runs.
  const control::SloController ctl(s.slo);
  EXPECT_EQ(ctl.memory_cap(), 4u);
  EXPECT_FALSE(ctl.model().empty());
  for (const auto& [n, p99] : {std::pair<std::size_t, double>{1, 12}, {2, 17}, {4, 27}}) {
    const auto est = ctl.model().estimate(n);
    ASSERT_TRUE(est) << "batch " << n;
    EXPECT_NEAR(to_ms(*est), p99, 0.5) << "batch " << n;
  }
}

TEST(ServeBatchingSetup, WithoutAFileOrAnEntryTheDefaultsStay) {
  ServeConfig c;
  c.max_batch_size = 8;
  c.max_queue_delay_ms = 3;
  BatchingSetup s = batching_setup(demo(), c, 1, 128, 128);
  EXPECT_FALSE(s.calibration);
  EXPECT_FALSE(s.slo.calibration);
  EXPECT_EQ(s.batcher.max_batch_size, 8u);
  EXPECT_EQ(s.slo.max_batch_size, 8u);
  EXPECT_NEAR(to_ms(s.batcher.max_queue_delay), 3.0, 1e-9);

  const TempBatchSizes file(kCalibrated);
  c.batch_sizes = file.path();
  ModelConfig other = demo();
  other.network = "hrnet";
  s = batching_setup(other, c, 1, 128, 128);
  EXPECT_FALSE(s.calibration);
  EXPECT_FALSE(s.slo.calibration);
  EXPECT_EQ(s.batcher.max_batch_size, 8u);
}

TEST(ServeBatchingSetup, RefusesAMalformedFileNamingItAndTheKey) {
  ServeConfig c;
  const TempBatchSizes bad_size(
      R"({"batch_configurations": {"cbam_resunet": {"optimal_batch_size": 0, "max_safe_batch_size": 4}}})");
  c.batch_sizes = bad_size.path();
  std::string e = error_of(demo(), c);
  EXPECT_NE(e.find(bad_size.path()), std::string::npos) << e;
  EXPECT_NE(e.find("batch_configurations.cbam_resunet.optimal_batch_size"), std::string::npos) << e;

  const TempBatchSizes bad_table(R"({"batch_configurations": {"cbam_resunet": {"optimal_batch_size": 1,
      "max_safe_batch_size": 4, "latency_table_ms": [{"batch_size": 1, "p50": 5, "p95": "six", "p99": 7}]}}})");
  c.batch_sizes = bad_table.path();
  e = error_of(demo(), c);
  EXPECT_NE(e.find(bad_table.path()), std::string::npos) << e;
  EXPECT_NE(e.find("batch_configurations.cbam_resunet.latency_table_ms[0].p95"), std::string::npos) << e;

  const TempBatchSizes not_json("{\"batch_configurations\": ");
  c.batch_sizes = not_json.path();
  e = error_of(demo(), c);
  EXPECT_NE(e.find(not_json.path()), std::string::npos) << e;

  c.batch_sizes = "/nonexistent/batch_sizes.json";
  EXPECT_NE(error_of(demo(), c).find("/nonexistent/batch_sizes.json"), std::string::npos);
}

TEST(ServeBatchingSetup, RefusesATableMeasuredAtAnotherInputSize) {
  const TempBatchSizes file(kCalibrated);
  ServeConfig c;
  c.batch_sizes = file.path();
  const std::string e = error_of(demo(), c, 1024, 1024);
  EXPECT_NE(e.find(file.path()), std::string::npos) << e;
  EXPECT_NE(e.find("input_size"), std::string::npos) << e;
  EXPECT_NE(e.find("128x128"), std::string::npos) << e;
  EXPECT_NE(e.find("1024x1024"), std::string::npos) << e;
}

}  // namespace
}  // namespace sluice::serve_app
