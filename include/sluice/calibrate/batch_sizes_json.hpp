// sluice/calibrate/batch_sizes_json.hpp: batch_sizes.json (every field: docs/formats.md), read and
// written with sluice's extra keys beside the standard ones: per batch size the
// p50/p95/p99 and a "latency_table_ms" per model that the SloController starts from. Unknown
// top-level keys are kept on a round trip; unknown nested keys are ignored when reading.
// The one reader of the file: programs look a model up with find_model_batch_sizes (by name, then
// network, checked against the input size it was calibrated at) rather than parsing it themselves.
// Needs nlohmann_json (link nlohmann_json::nlohmann_json).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sluice/calibrate/calibration_result.hpp"
#include "sluice/control/latency_table.hpp"
#include "sluice/core/error.hpp"
#include "sluice/weights/regular_file.hpp"

namespace sluice::calibrate {

struct DeviceInfo {
  std::string device_name;
  double total_memory_gb = 0.0;
  std::string driver_version;
};

struct ModelBatchConfig {
  std::size_t optimal_batch_size = 1;
  std::size_t max_safe_batch_size = 1;
  double expected_throughput = 0.0;  ///< items/s at the optimal size
  double memory_limit_mb = 0.0;
  std::optional<double> p95_latency_ms;  ///< at the optimal size
  control::LatencyTable latency_table;   ///< sluice extra: "latency_table_ms"
};

struct TestResult {
  std::string model_name;
  std::size_t batch_size = 0;
  double throughput_imgs_per_sec = 0.0;
  double avg_inference_time_ms = 0.0;
  std::optional<double> peak_memory_mb;
  bool success = false;
  std::optional<std::string> error;
  std::optional<double> p50_ms, p95_ms, p99_ms;  ///< sluice extras
};

struct DynamicBatching {
  bool enabled = true;
  double max_queue_delay_ms = 5.0;
  double timeout_ms = 50.0;
  bool given = false;  ///< the file had "dynamic_batching" (else these are the format's defaults)
};

struct BatchSizesFile {
  std::string optimization_timestamp;
  DeviceInfo gpu_info;
  std::map<std::string, ModelBatchConfig> batch_configurations;
  std::map<std::string, std::vector<TestResult>> detailed_results;
  DynamicBatching dynamic_batching;
  double memory_reserve_percent = 15.0;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown top-level keys, kept verbatim
};

/// "2026-11-26T21:30:00Z"
inline std::string utc_timestamp() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace detail {
inline double to_ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
inline Duration from_ms(double ms) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}
// Thrown inside from_json and turned there into an Error that names the file.
struct Malformed : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] inline void bad(const std::string& what) { throw Malformed(what); }
/// "a.b" -- or "b" at the top level.
inline std::string key_path(const std::string& where, const std::string& key) {
  return where.empty() ? key : where + "." + key;
}
inline const nlohmann::json& member(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object()) bad((where.empty() ? std::string("top level") : where) + ": expected an object");
  if (!j.contains(key)) bad((where.empty() ? std::string("top level") : where) + ": missing \"" + key + "\"");
  return j.at(key);
}
inline double number(const nlohmann::json& j, const std::string& where) {
  if (!j.is_number() || !std::isfinite(j.get<double>())) bad(where + ": expected a number");
  return j.get<double>();
}
inline std::size_t positive_size(const nlohmann::json& j, const std::string& where) {
  if (!j.is_number_integer() || j.get<long long>() < 1) bad(where + ": expected an integer >= 1");
  return j.get<std::size_t>();
}
inline std::optional<double> opt_number(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object()) bad(where + ": expected an object");
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return number(j.at(key), key_path(where, key));
}
inline std::string opt_string(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object()) bad(where + ": expected an object");
  if (!j.contains(key) || j.at(key).is_null()) return {};
  if (!j.at(key).is_string()) bad(key_path(where, key) + ": expected a string");
  return j.at(key).get<std::string>();
}
}  // namespace detail

inline nlohmann::json to_json(const BatchSizesFile& f) {
  using detail::to_ms;
  nlohmann::json j = f.extra.is_object() ? f.extra : nlohmann::json::object();
  j["optimization_timestamp"] = f.optimization_timestamp;
  j["gpu_info"] = {{"device_name", f.gpu_info.device_name},
                   {"total_memory_gb", f.gpu_info.total_memory_gb},
                   {"driver_version", f.gpu_info.driver_version}};
  nlohmann::json configs = nlohmann::json::object();
  for (const auto& [name, c] : f.batch_configurations) {
    nlohmann::json m = {{"optimal_batch_size", c.optimal_batch_size},
                        {"max_safe_batch_size", c.max_safe_batch_size},
                        {"expected_throughput", c.expected_throughput},
                        {"memory_limit_mb", c.memory_limit_mb}};
    m["p95_latency_ms"] = c.p95_latency_ms ? nlohmann::json(*c.p95_latency_ms) : nlohmann::json(nullptr);
    nlohmann::json table = nlohmann::json::array();
    for (const auto& p : c.latency_table)
      table.push_back({{"batch_size", p.batch_size}, {"p50", to_ms(p.p50)}, {"p95", to_ms(p.p95)}, {"p99", to_ms(p.p99)}});
    m["latency_table_ms"] = table;
    configs[name] = m;
  }
  j["batch_configurations"] = configs;
  nlohmann::json detailed = nlohmann::json::object();
  for (const auto& [name, tests] : f.detailed_results) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& t : tests) {
      nlohmann::json r = {{"model_name", t.model_name},
                          {"batch_size", t.batch_size},
                          {"throughput_imgs_per_sec", t.throughput_imgs_per_sec},
                          {"avg_inference_time_ms", t.avg_inference_time_ms},
                          {"success", t.success}};
      r["peak_memory_mb"] = t.peak_memory_mb ? nlohmann::json(*t.peak_memory_mb) : nlohmann::json(nullptr);
      r["error"] = t.error ? nlohmann::json(*t.error) : nlohmann::json(nullptr);
      if (t.p50_ms) r["p50_latency_ms"] = *t.p50_ms;
      if (t.p95_ms) r["p95_latency_ms"] = *t.p95_ms;
      if (t.p99_ms) r["p99_latency_ms"] = *t.p99_ms;
      all.push_back(r);
    }
    detailed[name] = {{"all_test_results", all}};
  }
  j["detailed_results"] = detailed;
  j["dynamic_batching"] = {{"enabled", f.dynamic_batching.enabled},
                           {"max_queue_delay_ms", f.dynamic_batching.max_queue_delay_ms},
                           {"timeout_ms", f.dynamic_batching.timeout_ms}};
  j["memory_reserve_percent"] = f.memory_reserve_percent;
  return j;
}

namespace detail {
inline BatchSizesFile parse(const nlohmann::json& j) {
  if (!j.is_object()) bad("top level must be an object");
  BatchSizesFile f;
  static const char* known[] = {"optimization_timestamp", "gpu_info", "batch_configurations",
                                "detailed_results", "dynamic_batching", "memory_reserve_percent"};
  for (const auto& [k, v] : j.items())
    if (std::find(std::begin(known), std::end(known), k) == std::end(known)) f.extra[k] = v;
  f.optimization_timestamp = opt_string(j, "optimization_timestamp", "");
  if (j.contains("gpu_info") && !j.at("gpu_info").is_null()) {
    const auto& g = j.at("gpu_info");
    if (!g.is_object()) bad("gpu_info: expected an object");
    f.gpu_info.device_name = opt_string(g, "device_name", "gpu_info");
    f.gpu_info.total_memory_gb = opt_number(g, "total_memory_gb", "gpu_info").value_or(0.0);
    f.gpu_info.driver_version = opt_string(g, "driver_version", "gpu_info");
  }
  const auto& configs = member(j, "batch_configurations", "");
  if (!configs.is_object()) bad("batch_configurations: expected an object");
  for (const auto& [name, c] : configs.items()) {
    const std::string where = "batch_configurations." + name;
    ModelBatchConfig m;
    m.optimal_batch_size = positive_size(member(c, "optimal_batch_size", where), where + ".optimal_batch_size");
    m.max_safe_batch_size = positive_size(member(c, "max_safe_batch_size", where), where + ".max_safe_batch_size");
    if (m.optimal_batch_size > m.max_safe_batch_size) bad(where + ": optimal_batch_size > max_safe_batch_size");
    m.expected_throughput = opt_number(c, "expected_throughput", where).value_or(0.0);
    m.memory_limit_mb = opt_number(c, "memory_limit_mb", where).value_or(0.0);
    m.p95_latency_ms = opt_number(c, "p95_latency_ms", where);
    if (c.contains("latency_table_ms")) {
      const auto& t = c.at("latency_table_ms");
      if (!t.is_array()) bad(where + ".latency_table_ms: expected an array");
      for (std::size_t i = 0; i < t.size(); ++i) {
        const auto& p = t[i];
        const std::string pw = where + ".latency_table_ms[" + std::to_string(i) + "]";
        m.latency_table.push_back({positive_size(member(p, "batch_size", pw), pw + ".batch_size"),
                                   from_ms(number(member(p, "p50", pw), pw + ".p50")),
                                   from_ms(number(member(p, "p95", pw), pw + ".p95")),
                                   from_ms(number(member(p, "p99", pw), pw + ".p99"))});
      }
      try {
        control::validate(m.latency_table);
      } catch (const Error& e) {
        // what() ends in the code's message, which the Error thrown for the file adds again.
        std::string why = e.what();
        const std::string tail = ": " + e.code().message();
        if (why.ends_with(tail)) why.resize(why.size() - tail.size());
        bad(where + ".latency_table_ms: " + why);
      }
    }
    f.batch_configurations[name] = std::move(m);
  }
  if (j.contains("detailed_results") && !j.at("detailed_results").is_null()) {
    const auto& d = j.at("detailed_results");
    if (!d.is_object()) bad("detailed_results: expected an object");
    for (const auto& [name, entry] : d.items()) {
      const std::string where = "detailed_results." + name;
      const auto& all = member(entry, "all_test_results", where);
      if (!all.is_array()) bad(where + ".all_test_results: expected an array");
      auto& out = f.detailed_results[name];
      for (std::size_t i = 0; i < all.size(); ++i) {
        const auto& r = all[i];
        const std::string rw = where + ".all_test_results[" + std::to_string(i) + "]";
        TestResult t;
        t.model_name = opt_string(r, "model_name", rw);
        t.batch_size = positive_size(member(r, "batch_size", rw), rw + ".batch_size");
        t.throughput_imgs_per_sec = opt_number(r, "throughput_imgs_per_sec", rw).value_or(0.0);
        t.avg_inference_time_ms = opt_number(r, "avg_inference_time_ms", rw).value_or(0.0);
        t.peak_memory_mb = opt_number(r, "peak_memory_mb", rw);
        const auto& ok = member(r, "success", rw);
        if (!ok.is_boolean()) bad(rw + ".success: expected true or false");
        t.success = ok.get<bool>();
        if (r.contains("error") && !r.at("error").is_null()) t.error = opt_string(r, "error", rw);
        t.p50_ms = opt_number(r, "p50_latency_ms", rw);
        t.p95_ms = opt_number(r, "p95_latency_ms", rw);
        t.p99_ms = opt_number(r, "p99_latency_ms", rw);
        out.push_back(std::move(t));
      }
    }
  }
  if (j.contains("dynamic_batching") && !j.at("dynamic_batching").is_null()) {
    const auto& b = j.at("dynamic_batching");
    if (!b.is_object()) bad("dynamic_batching: expected an object");
    f.dynamic_batching.given = true;
    if (b.contains("enabled")) {
      if (!b.at("enabled").is_boolean()) bad("dynamic_batching.enabled: expected true or false");
      f.dynamic_batching.enabled = b.at("enabled").get<bool>();
    }
    f.dynamic_batching.max_queue_delay_ms = opt_number(b, "max_queue_delay_ms", "dynamic_batching").value_or(5.0);
    f.dynamic_batching.timeout_ms = opt_number(b, "timeout_ms", "dynamic_batching").value_or(50.0);
  }
  f.memory_reserve_percent = opt_number(j, "memory_reserve_percent", "").value_or(15.0);
  return f;
}
}  // namespace detail

/// Parses and validates; throws Error(invalid_argument) "SOURCE: KEY: problem", KEY the offending
/// field ("batch_configurations.hrnet.optimal_batch_size").
inline BatchSizesFile from_json(const nlohmann::json& j, const std::string& source = "batch_sizes.json") {
  try {
    return detail::parse(j);
  } catch (const detail::Malformed& e) {
    throw Error(errc::invalid_argument, source + ": " + e.what());
  }
}

inline BatchSizesFile load_batch_sizes(const std::string& path) {
  const std::string text = weights::read_regular_file(path);  // its error names the path
  const std::string source = "batch sizes file " + path;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(errc::invalid_argument, source + ": " + e.what());
  }
  return from_json(j, source);
}

inline void save_batch_sizes(const std::string& path, const BatchSizesFile& f) {
  std::ofstream out(path);
  if (!out) throw Error(errc::invalid_argument, "batch_sizes.json: cannot write " + path);
  out << to_json(f).dump(2) << '\n';
  if (!out) throw Error(errc::invalid_argument, "batch_sizes.json: write failed: " + path);
}

/// Puts one calibration into the file (its configuration, detailed results and latency table).
inline void add_calibration(BatchSizesFile& f, const CalibrationResult& r) {
  using detail::to_ms;
  ModelBatchConfig c;
  c.optimal_batch_size = r.optimal_batch_size;
  c.max_safe_batch_size = r.max_safe_batch_size;
  c.memory_limit_mb = static_cast<double>(r.memory_limit_bytes) / 1048576.0;
  if (const auto* s = r.find(r.optimal_batch_size)) {
    c.expected_throughput = s->throughput;
    c.p95_latency_ms = to_ms(s->p95);
  }
  c.latency_table = r.latency_table();
  f.batch_configurations[r.model_name] = c;
  auto& tests = f.detailed_results[r.model_name];
  tests.clear();
  for (const auto& s : r.sizes) {
    TestResult t;
    t.model_name = r.model_name;
    t.batch_size = s.batch_size;
    t.success = s.success;
    if (s.success) {
      t.throughput_imgs_per_sec = s.throughput;
      t.avg_inference_time_ms = to_ms(s.mean);
      t.peak_memory_mb = static_cast<double>(s.peak_bytes) / 1048576.0;
      t.p50_ms = to_ms(s.p50);
      t.p95_ms = to_ms(s.p95);
      t.p99_ms = to_ms(s.p99);
    } else {
      t.error = s.error;
    }
    tests.push_back(t);
  }
  f.memory_reserve_percent = r.memory_reserve_percent;
  if (f.optimization_timestamp.empty()) f.optimization_timestamp = utc_timestamp();
}

/// The table a SloController starts from: the model's latency_table_ms, or, for a file without one,
/// its successful detailed results -- their p50/p95/p99_latency_ms where given, else the average time
/// (files from other tools carry only that). Empty if the model is unknown.
inline control::LatencyTable latency_table_for(const BatchSizesFile& f, const std::string& model) {
  if (auto it = f.batch_configurations.find(model); it != f.batch_configurations.end() && !it->second.latency_table.empty())
    return it->second.latency_table;
  std::map<std::size_t, control::LatencyPoint> by_size;  // ascending, the last result of a size wins
  if (auto it = f.detailed_results.find(model); it != f.detailed_results.end()) {
    for (const auto& r : it->second) {
      const std::optional<double> avg =
          r.avg_inference_time_ms > 0 ? std::optional<double>(r.avg_inference_time_ms) : std::nullopt;
      const std::optional<double> p50 = r.p50_ms ? r.p50_ms : avg;
      if (!r.success || !p50 || !(*p50 > 0)) continue;
      // Quantiles never fall: validate() refuses a table where they do.
      const double p95 = std::max(*p50, r.p95_ms.value_or(*p50));
      const double p99 = std::max(p95, r.p99_ms.value_or(p95));
      by_size[r.batch_size] = {r.batch_size, detail::from_ms(*p50), detail::from_ms(p95), detail::from_ms(p99)};
    }
  }
  control::LatencyTable t;
  for (const auto& [n, p] : by_size) t.push_back(p);
  return t;
}

/// Which model a program looks up, and the input size it runs at.
struct BatchSizesQuery {
  std::string model;    ///< looked up first (a server's name for the model)
  std::string network;  ///< then this (the calibrator names an entry after the network)
  int input_height = 0, input_width = 0;  ///< 0: not checked
};

/// What batch_sizes.json says about one model.
struct ModelBatchSizes {
  std::string key;  ///< the entry of batch_configurations that matched
  std::size_t optimal_batch_size = 1;
  std::size_t max_safe_batch_size = 1;
  control::LatencyTable latency_table;        ///< latency_table_for(file, key); may be empty
  std::optional<double> max_queue_delay_ms;   ///< dynamic_batching's, when the file has that object
};

/// The file's entry for q.model, else for q.network; nullopt if it has neither. The calibrator
/// records the input size it measured at ("input_size": [height, width]): a table and safe size
/// measured at another size would be wrong, so a mismatch is an Error(invalid_argument) naming
/// `source` and the key.
inline std::optional<ModelBatchSizes> find_model_batch_sizes(const BatchSizesFile& f, const BatchSizesQuery& q,
                                                             const std::string& source = "batch_sizes.json") {
  std::string key;
  for (const std::string* k : {&q.model, &q.network})
    if (!k->empty() && f.batch_configurations.contains(*k)) {
      key = *k;
      break;
    }
  if (key.empty()) return std::nullopt;
  if (q.input_height > 0 && q.input_width > 0 && f.extra.contains("input_size")) {
    const auto& s = f.extra.at("input_size");
    const bool pair = s.is_array() && s.size() == 2 && s[0].is_number_integer() && s[1].is_number_integer();
    if (!pair) throw Error(errc::invalid_argument, source + ": input_size: expected [height, width]");
    const int h = s[0].get<int>(), w = s[1].get<int>();
    if (h != q.input_height || w != q.input_width)
      throw Error(errc::invalid_argument,
                  source + ": input_size: calibrated at " + std::to_string(h) + "x" + std::to_string(w) + ", but '" +
                      key + "' runs at " + std::to_string(q.input_height) + "x" + std::to_string(q.input_width) +
                      " (calibrate at that size)");
  }
  const ModelBatchConfig& c = f.batch_configurations.at(key);
  ModelBatchSizes m;
  m.key = key;
  m.optimal_batch_size = c.optimal_batch_size;
  m.max_safe_batch_size = c.max_safe_batch_size;
  m.latency_table = latency_table_for(f, key);
  if (f.dynamic_batching.given) m.max_queue_delay_ms = f.dynamic_batching.max_queue_delay_ms;
  return m;
}

/// find_model_batch_sizes on the file at `path`; every error names the path.
inline std::optional<ModelBatchSizes> load_model_batch_sizes(const std::string& path, const BatchSizesQuery& q) {
  return find_model_batch_sizes(load_batch_sizes(path), q, "batch sizes file " + path);
}

}  // namespace sluice::calibrate
