// sluice/serve/http_metrics.hpp: the server's own Prometheus metrics -- requests by route, method
// and status, request latency histograms by route, open and refused connections -- rendered in the
// Prometheus text exposition format (version 0.0.4). Thread-safe; label sets are bounded because
// routes are the router's fixed names, never raw paths.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace sluice::serve {

class HttpMetrics {
 public:
  static constexpr std::array<double, 14> kBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                   0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};

  void record(const std::string& route, const std::string& method, unsigned status, double seconds) {
    std::lock_guard lock(mutex_);
    ++requests_[{route, method, status}];
    Histogram& h = latency_[route];
    for (std::size_t i = 0; i < kBuckets.size(); ++i)
      if (seconds <= kBuckets[i]) ++h.buckets[i];
    ++h.count;
    h.sum += seconds;
  }
  void record_images(const std::string& model, std::uint64_t n) {
    std::lock_guard lock(mutex_);
    images_[model] += n;
  }

  void connection_opened() { ++open_connections_; ++accepted_; }
  void connection_closed() { --open_connections_; }
  void connection_refused() { ++refused_; }
  std::int64_t open_connections() const { return open_connections_.load(); }

  /// Appends the metrics to `out`.
  void render(std::string& out) const {
    std::lock_guard lock(mutex_);
    out += "# HELP sluice_http_requests_total HTTP requests answered, by route, method and status.\n";
    out += "# TYPE sluice_http_requests_total counter\n";
    for (const auto& [key, n] : requests_) {
      const auto& [route, method, status] = key;
      out += "sluice_http_requests_total{route=\"" + route + "\",method=\"" + method + "\",status=\"" +
             std::to_string(status) + "\"} " + std::to_string(n) + "\n";
    }
    out += "# HELP sluice_http_request_duration_seconds Time from a request's header read to its response written.\n";
    out += "# TYPE sluice_http_request_duration_seconds histogram\n";
    for (const auto& [route, h] : latency_) {
      for (std::size_t i = 0; i < kBuckets.size(); ++i)
        out += "sluice_http_request_duration_seconds_bucket{route=\"" + route + "\",le=\"" + number(kBuckets[i]) +
               "\"} " + std::to_string(h.buckets[i]) + "\n";
      out += "sluice_http_request_duration_seconds_bucket{route=\"" + route + "\",le=\"+Inf\"} " +
             std::to_string(h.count) + "\n";
      out += "sluice_http_request_duration_seconds_sum{route=\"" + route + "\"} " + number(h.sum) + "\n";
      out += "sluice_http_request_duration_seconds_count{route=\"" + route + "\"} " + std::to_string(h.count) + "\n";
    }
    out += "# HELP sluice_http_images_total Images submitted for segmentation, by model.\n";
    out += "# TYPE sluice_http_images_total counter\n";
    for (const auto& [model, n] : images_)
      out += "sluice_http_images_total{model=\"" + label(model) + "\"} " + std::to_string(n) + "\n";
    out += "# HELP sluice_http_open_connections Connections open now.\n# TYPE sluice_http_open_connections gauge\n";
    out += "sluice_http_open_connections " + std::to_string(open_connections_.load()) + "\n";
    out += "# HELP sluice_http_connections_total Connections accepted.\n# TYPE sluice_http_connections_total counter\n";
    out += "sluice_http_connections_total " + std::to_string(accepted_.load()) + "\n";
    out += "# HELP sluice_http_connections_refused_total Connections refused at the connection cap.\n";
    out += "# TYPE sluice_http_connections_refused_total counter\n";
    out += "sluice_http_connections_refused_total " + std::to_string(refused_.load()) + "\n";
  }

 private:
  struct Histogram {
    std::array<std::uint64_t, kBuckets.size()> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
  };
  /// Escapes a label value (backslash, quote, newline) as the text format requires.
  static std::string label(const std::string& v) {
    std::string out;
    for (char c : v) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out;
  }
  static std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
  }

  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, unsigned>, std::uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, std::uint64_t> images_;
  std::atomic<std::int64_t> open_connections_{0};
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> refused_{0};
};

}  // namespace sluice::serve
