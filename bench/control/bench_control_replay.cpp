// bench_control_replay: the latency model offline, on a real lane's batches. Reads the batch log of
// bench_control_live (--log-batches CSV: trace, policy, run, start s, size, run ms), feeds each
// run's batches in order to a fresh LatencyModel (cold: no calibration; it trusts a size from its
// third run) and reports, per trace:
//   * the log residuals of batch-1 runs against the model's median just before them (their
//     quantiles and skew: a real CPU lane's noise is one-sided, a few runs far slower, none far
//     faster);
//   * how many lane-speed changes the change detector called per run;
//   * how often the next batch-1 run fell above the model's p99 and below its p5.
// With --requests (bench_control_live --log-requests CSV) it also lists, for the SloController's
// dropped requests, the time they still had when dropped against the model's batch-1 median then.
// Usage: bench_control_replay --batches CSV [--requests CSV --slo-ms MS] [--trace NAME] [--policy NAME]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "sluice/control/latency_model.hpp"

using namespace sluice;

namespace {

struct Batch {
  double start_s = 0, run_ms = 0;
  std::size_t size = 0;
};
struct Request {
  std::size_t index = 0;
  double arrival_s = 0, end_s = 0;
  std::string outcome;
};
using RunKey = std::tuple<std::string, std::string, int>;  // trace, policy, run

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  for (std::string f; std::getline(ss, f, ',');) out.push_back(f);
  return out;
}

/// Calls fn(fields) for each row of the CSV file at `path` after its header line.
template <class F>
void for_each_row(const std::string& path, F&& fn) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) fn(split(line));
}

double quantile(std::vector<double> v, double q) { return control::quantile_of(v, q); }

Duration ms(double v) { return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(v)); }
double to_ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

int main(int argc, char** argv) try {
  std::string batches_path, requests_path, only_trace, policy = "slo controller";
  double slo_ms = 0;
  control::LatencyModel::Options model_options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--batches") batches_path = v;
    else if (a == "--requests") requests_path = v;
    else if (a == "--trace") only_trace = v;
    else if (a == "--policy") policy = v;
    else if (a == "--slo-ms") slo_ms = std::stod(v);
    else if (a == "--max-sustain") model_options.change.max_sustain = std::stoul(v);
    else if (a == "--min-run") model_options.change.min_run = std::stoul(v);
    else if (a == "--detect-changes") model_options.detect_changes = v != "0";
    else throw std::runtime_error("unknown option " + a);
  }
  if (batches_path.empty()) throw std::runtime_error("usage: bench_control_replay --batches CSV [--requests CSV] ...");
  std::map<RunKey, std::vector<Batch>> runs;
  for_each_row(batches_path, [&](const std::vector<std::string>& f) {
    if (f.size() < 6 || f[1] != policy || (!only_trace.empty() && f[0] != only_trace)) return;
    runs[{f[0], f[1], std::stoi(f[2])}].push_back({std::stod(f[3]), std::stod(f[5]), std::stoul(f[4])});
  });
  std::map<RunKey, std::vector<Request>> dropped;
  if (!requests_path.empty()) {
    for_each_row(requests_path, [&](const std::vector<std::string>& f) {
      if (f.size() < 7 || f[1] != policy || (!only_trace.empty() && f[0] != only_trace)) return;
      if (f[6] == "shed" || f[6] == "rejected" || f[6] == "expired")
        dropped[{f[0], f[1], std::stoi(f[2])}].push_back({std::stoul(f[3]), std::stod(f[4]), std::stod(f[5]), f[6]});
    });
  }

  struct PerTrace {
    std::vector<double> residuals, changes, first_after_half;
    std::size_t scored = 0, above_p99 = 0, below_p5 = 0, below_p1 = 0;
  };
  std::map<std::string, PerTrace> traces;
  for (const auto& [key, batches] : runs) {
    const auto& [trace, pol, run] = key;
    PerTrace& pt = traces[trace];
    control::LatencyModel model(model_options);
    const double half_s = batches.empty() ? 0.0 : batches.back().start_s / 2;
    std::size_t since_half = 0;
    bool found_after_half = false;
    // The model's view before each batch, for the drops that happened between batches.
    struct View {
      double at_s, p5_ms, p50_ms, p99_ms;
    };
    std::vector<View> views;
    for (const Batch& b : batches) {
      if (b.size == 1) {
        const auto med = model.typical(1), hi = model.estimate(1), lo = model.estimate_q(1, 0.05),
                   lowest = model.estimate_q(1, 0.01);
        if (med && hi && lo && lowest) {
          pt.residuals.push_back(std::log(b.run_ms / to_ms(*med)));
          ++pt.scored;
          pt.above_p99 += b.run_ms > to_ms(*hi);
          pt.below_p5 += b.run_ms < to_ms(*lo);
          pt.below_p1 += b.run_ms < to_ms(*lowest);
        }
      }
      const std::size_t changes_before = model.changes_detected();
      model.observe(b.size, ms(b.run_ms));
      if (b.start_s >= half_s && !found_after_half) {
        ++since_half;
        if (model.changes_detected() > changes_before) found_after_half = true;
      }
      const auto med = model.typical(1), hi = model.estimate(1), lo = model.estimate_q(1, 0.05);
      if (med && hi && lo) views.push_back({b.start_s + b.run_ms / 1e3, to_ms(*lo), to_ms(*med), to_ms(*hi)});
    }
    pt.changes.push_back(static_cast<double>(model.changes_detected()));
    pt.first_after_half.push_back(found_after_half ? static_cast<double>(since_half) : -1.0);
    const auto d = dropped.find(key);
    if (d == dropped.end() || slo_ms <= 0) continue;
    std::printf("%s run %d: %zu dropped (%zu changes)\n", trace.c_str(), run, d->second.size(), model.changes_detected());
    for (const Request& r : d->second) {
      const auto v = std::upper_bound(views.begin(), views.end(), r.end_s,
                                      [](double t, const View& x) { return t < x.at_s; });
      const double left = r.arrival_s * 1e3 + slo_ms - r.end_s * 1e3;
      if (v == views.begin()) continue;
      const View& m = *(v - 1);
      std::printf("  request %5zu %-8s at %.3f s: %.2f ms left; model then p5 %.2f, p50 %.2f, p99 %.2f ms\n", r.index,
                  r.outcome.c_str(), r.end_s, left, m.p5_ms, m.p50_ms, m.p99_ms);
    }
  }
  std::printf("\n| trace | batch-1 runs scored | log residual p1 / p5 / p50 / p95 / p99 | > p99 | < p5 | < p1 | changes per run | first change after half time, batches |\n"
              "|---|---|---|---|---|---|---|---|\n");
  for (auto& [trace, pt] : traces) {
    const auto share = [&](std::size_t k) {
      return pt.scored ? 100.0 * static_cast<double>(k) / static_cast<double>(pt.scored) : 0.0;
    };
    std::printf("| %s | %zu | %+.3f / %+.3f / %+.3f / %+.3f / %+.3f | %.1f%% | %.1f%% | %.1f%% |", trace.c_str(), pt.scored,
                quantile(pt.residuals, 0.01), quantile(pt.residuals, 0.05), quantile(pt.residuals, 0.5),
                quantile(pt.residuals, 0.95), quantile(pt.residuals, 0.99), share(pt.above_p99), share(pt.below_p5),
                share(pt.below_p1));
    for (double c : pt.changes) std::printf(" %.0f", c);
    std::printf(" |");
    for (double c : pt.first_after_half) std::printf(" %.0f", c);
    std::printf(" |\n");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_control_replay: %s\n", e.what());
  return 1;
}
