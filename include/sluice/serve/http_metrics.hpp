// sluice/serve/http_metrics.hpp: the server's own Prometheus metrics -- requests by route, method
// and status, request latency histograms by route, requests dropped without an answer, images by
// outcome, open, refused and evicted connections -- rendered in the Prometheus text exposition
// format (version 0.0.4), with the requests in flight now. Thread-safe. Every label takes only known values (routes are the router's
// fixed names, methods the standard ones, anything else "other"), so no client can grow the number
// of series. Every started request ends in exactly one of sluice_http_requests_total (answered) and
// sluice_http_requests_dropped_total (not answered), so the two add up to
// sluice_http_requests_started_total once the server is quiet.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace sluice::serve {

class HttpMetrics {
 public:
  static constexpr std::array<double, 14> kBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                   0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};

  /// The method as a label: one of the standard methods, else "other".
  static std::string method_label(std::string_view method) {
    for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
      if (method == known) return std::string(known);
    return "other";
  }

  /// A request whose header was read (or whose malformed start was answered 400).
  void request_started() { ++started_; }
  /// A started request answered with `status` (the route is one of the router's names).
  void record(const std::string& route, std::string_view method, unsigned status, double seconds) {
    std::lock_guard lock(mutex_);
    ++requests_[{route, method_label(method), status}];
    Histogram& h = latency_[route];
    for (std::size_t i = 0; i < kBuckets.size(); ++i)
      if (seconds <= kBuckets[i]) ++h.buckets[i];
    ++h.count;
    h.sum += seconds;
  }
  /// A started request that ended without an answer; `reason` is one of a few fixed words
  /// (body_timeout, client_closed, write_failed, shutdown, evicted).
  void request_dropped(const char* reason) {
    std::lock_guard lock(mutex_);
    ++dropped_[reason];
  }
  /// One image's outcome: "ok" or the API's error code (a fixed vocabulary).
  void record_image(const std::string& model, const std::string& outcome) {
    std::lock_guard lock(mutex_);
    ++images_[{model, outcome}];
  }

  void connection_opened() { ++open_connections_; ++accepted_; }
  void connection_closed() { --open_connections_; }
  /// `reason`: "connection_cap" or "per_peer".
  void connection_refused(const char* reason) {
    std::lock_guard lock(mutex_);
    ++refused_[reason];
  }
  void connection_evicted() { ++evicted_; }
  std::int64_t open_connections() const { return open_connections_.load(); }
  std::uint64_t requests_started() const { return started_.load(); }

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
    out += "# HELP sluice_http_requests_started_total Requests whose header was read.\n";
    out += "# TYPE sluice_http_requests_started_total counter\n";
    out += "sluice_http_requests_started_total " + std::to_string(started_.load()) + "\n";
    out += "# HELP sluice_http_requests_dropped_total Started requests that ended without an answer, by reason.\n";
    out += "# TYPE sluice_http_requests_dropped_total counter\n";
    for (const auto& [reason, n] : dropped_)
      out += "sluice_http_requests_dropped_total{reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
    // Started minus ended: read after the ended counts (under the lock), so it never goes negative.
    std::uint64_t ended = 0;
    for (const auto& entry : requests_) ended += entry.second;
    for (const auto& entry : dropped_) ended += entry.second;
    out += "# HELP sluice_http_requests_in_flight Requests started and not yet answered or dropped.\n";
    out += "# TYPE sluice_http_requests_in_flight gauge\n";
    out += "sluice_http_requests_in_flight " + std::to_string(started_.load() - ended) + "\n";
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
    out += "# HELP sluice_http_images_total Images answered, by model and outcome (ok or the error code).\n";
    out += "# TYPE sluice_http_images_total counter\n";
    for (const auto& [key, n] : images_)
      out += "sluice_http_images_total{model=\"" + label(key.first) + "\",outcome=\"" + key.second + "\"} " +
             std::to_string(n) + "\n";
    out += "# HELP sluice_http_open_connections Connections open now.\n# TYPE sluice_http_open_connections gauge\n";
    out += "sluice_http_open_connections " + std::to_string(open_connections_.load()) + "\n";
    out += "# HELP sluice_http_connections_total Connections accepted.\n# TYPE sluice_http_connections_total counter\n";
    out += "sluice_http_connections_total " + std::to_string(accepted_.load()) + "\n";
    out += "# HELP sluice_http_connections_refused_total Connections refused, at the connection cap or the per-peer cap.\n";
    out += "# TYPE sluice_http_connections_refused_total counter\n";
    for (const auto& [reason, n] : refused_)
      out += "sluice_http_connections_refused_total{reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
    out += "# HELP sluice_http_connections_evicted_total Connections waiting for a header closed to make room.\n";
    out += "# TYPE sluice_http_connections_evicted_total counter\n";
    out += "sluice_http_connections_evicted_total " + std::to_string(evicted_.load()) + "\n";
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
  std::map<std::pair<std::string, std::string>, std::uint64_t> images_;
  std::map<std::string, std::uint64_t> dropped_, refused_;
  std::atomic<std::int64_t> open_connections_{0};
  std::atomic<std::uint64_t> accepted_{0}, started_{0}, evicted_{0};
};

}  // namespace sluice::serve
