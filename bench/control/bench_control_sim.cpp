// bench_control_sim: the tight-SLO controller comparison on simulated lanes (measured latency tables
// with noise). For every model of every fixture and every SLO S = K x the batch-1 latency it finds the
// oracle capacity, replays the traces of slo_grid.hpp at shares of it against every competitor and
// checks the goals (see docs/performance.md, "Batch-size control").
// Usage: bench_control_sim [--fixture PATH]... [--requests N] [--seed S] [--slo K[,K...]] [--model NAME]
//                          [--traces PREFIX[,PREFIX...]] [--why]
// --traces runs only the traces whose names start with a prefix (e.g. "latency step,size mix");
// --why adds, for the latency step and the size mix, where each policy missed (miss_breakdown.hpp).
// --cotenant CSV (a bench_control_live --log-batches file) adds a trace "co-tenant 70%": Poisson 70%
// whose second half runs each batch slowed by a ratio drawn from the lane's measured batches under
// the CPU hog (run time / the fixture's p50 of that size), its variance included, and a trace
// "co-tenant spells 70%": the same ratios replayed in the order and at the times they were measured
// (the runs' co-tenant halves end to end, cycled), so the co-tenant's spells of slow runs are kept.
// Meant for the fixture that run wrote with --write-table. --cotenant-scale F multiplies those ratios (F = 2: a
// co-tenant twice as heavy, the lane slower than the offered load).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "miss_breakdown.hpp"
#include "slo_grid.hpp"

using namespace sluice;
using namespace sluice::bench;

namespace {

std::vector<LatencyCurve> load_curves(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  const nlohmann::json fixture = nlohmann::json::parse(in);
  std::vector<LatencyCurve> out;
  for (const auto& [model, m] : fixture.at("models").items()) {
    if (!m.contains("p50_ms_by_batch") || !m.at("p50_ms_by_batch").is_object()) continue;
    LatencyCurve c;
    c.name = model;
    std::size_t first_failure = SIZE_MAX;
    for (const auto& [k, v] : m.at("p50_ms_by_batch").items()) {
      const std::size_t n = std::stoul(k);
      if (v.is_null()) first_failure = std::min(first_failure, n);
      else c.p50_ms[n] = v.get<double>();
    }
    // The largest measured size below the first failure: sizes in between were never shown to fit.
    for (const auto& [n, ms] : c.p50_ms)
      if (n < first_failure) c.max_safe = std::max(c.max_safe, n);
    if (!c.p50_ms.empty()) out.push_back(c);
  }
  return out;
}

/// The co-tenant's share of every "cpu hog" run in `csv` (the batches after its half time), run by
/// run: each batch's start, its run time, and that run time / the curve's p50 at its size.
struct CotenantBatch {
  double start_s, run_s, ratio;
};
struct CotenantLog {
  std::vector<std::vector<CotenantBatch>> runs;  // in run order
};

CotenantLog read_cotenant_log(const std::string& csv, const LatencyCurve& curve) {
  std::ifstream in(csv);
  if (!in) throw std::runtime_error("cannot open " + csv);
  struct Row {
    double start_s, run_ms;
    std::size_t size;
  };
  std::map<std::string, std::vector<Row>> runs;  // by trace,policy,run
  std::string line;
  std::getline(in, line);  // header: trace,policy,run,start_s,size,run_ms
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    if (f.size() != 6 || f[0].find("hog") == std::string::npos) continue;
    runs[f[0] + "," + f[1] + "," + f[2]].push_back({std::stod(f[3]), std::stod(f[5]), std::stoul(f[4])});
  }
  CotenantLog log;
  for (const auto& [name, rows] : runs) {
    double last = 0.0;
    for (const Row& r : rows) last = std::max(last, r.start_s);
    std::vector<CotenantBatch> half;
    for (const Row& r : rows)
      if (r.start_s >= last / 2 && r.size <= curve.max_safe)
        half.push_back({r.start_s, r.run_ms / 1e3, r.run_ms / curve.at(r.size)});
    if (!half.empty()) log.runs.push_back(std::move(half));
  }
  if (log.runs.empty()) throw std::runtime_error(csv + ": no batches of a cpu hog trace");
  return log;
}

/// Every ratio of the log, for independent draws.
std::vector<double> cotenant_ratios(const CotenantLog& log) {
  std::vector<double> out;
  for (const auto& run : log.runs)
    for (const CotenantBatch& b : run) out.push_back(b.ratio);
  return out;
}

/// The runs' co-tenant halves end to end as one timeline of (offset s, ratio) steps: each batch's
/// ratio holds from its start until the next batch's (through the lane's idle gaps). Returns the
/// period (the total length) in `period_s`.
std::vector<std::pair<double, double>> cotenant_timeline(const CotenantLog& log, double& period_s) {
  std::vector<std::pair<double, double>> out;
  double offset = 0.0;
  for (const auto& run : log.runs) {
    const double first = run.front().start_s;
    for (const CotenantBatch& b : run) out.emplace_back(offset + (b.start_s - first), b.ratio);
    offset += (run.back().start_s - first) + run.back().run_s;  // to the end of the run's last batch
  }
  period_s = offset;
  return out;
}

void print_row(const std::string& trace, const PolicyRow& row) {
  std::printf("| %-17s | %-28s | %8.3f%% | %7.2f | %7.0f | %7.0f | %5.2f | %6zu | %6zu | %6zu |\n", trace.c_str(),
              row.policy.c_str(), 100.0 * row.r.attainment(), row.r.goodput(), row.r.p50_ms, row.r.p99_ms,
              row.r.mean_batch(), row.r.late, row.r.dropped, row.r.rejected);
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<std::string> fixtures;
  double requests = 20000;
  std::uint64_t seed = 1;
  std::vector<double> multiples = {2, 3, 5, 10};
  std::string only;
  std::vector<std::string> trace_prefixes;
  bool why = false;
  std::string cotenant_csv;
  double cotenant_scale = 1.0;
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string k; std::getline(ss, k, ',');) out.push_back(k);
    return out;
  };
  for (int i = 1; i < argc; i += 2) {
    if (!std::strcmp(argv[i], "--why")) {
      why = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", argv[0], argv[i]);
      return 2;
    }
    if (!std::strcmp(argv[i], "--fixture")) fixtures.push_back(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--traces")) trace_prefixes = split(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--cotenant")) cotenant_csv = argv[i + 1];
    else if (!std::strcmp(argv[i], "--cotenant-scale")) cotenant_scale = std::stod(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--requests")) requests = std::stod(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seed")) seed = std::stoull(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--model")) only = argv[i + 1];
    else if (!std::strcmp(argv[i], "--slo")) {
      multiples.clear();
      for (const std::string& k : split(argv[i + 1])) multiples.push_back(std::stod(k));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--fixture PATH]... [--requests N] [--seed S] [--slo K[,K...]] [--model NAME] "
                   "[--traces PREFIX[,PREFIX...]] [--why] [--cotenant CSV [--cotenant-scale F]]\n",
                   argv[0]);
      return 2;
    }
  }
  if (fixtures.empty()) fixtures = {SLUICE_BENCH_DATA_DIR "/rtx-a5000-1024.json", SLUICE_BENCH_DATA_DIR "/cpu-resunet-small.json"};
  std::vector<TraceSpec> specs;
  for (TraceSpec& s : trace_specs()) {
    bool keep = trace_prefixes.empty();
    for (const std::string& p : trace_prefixes) keep = keep || s.name.starts_with(p);
    if (keep) specs.push_back(std::move(s));
  }
  std::vector<std::string> summary;
  bool all_goals = true;

  for (const auto& path : fixtures) {
    std::ifstream probe(path);
    if (!probe) {
      std::printf("(skipping %s: not found)\n", path.c_str());
      continue;
    }
    for (const LatencyCurve& curve : load_curves(path)) {
      if (!only.empty() && only != curve.name) continue;
      std::vector<TraceSpec> curve_specs = specs;
      bool want_cotenant = trace_prefixes.empty();
      for (const std::string& p : trace_prefixes) want_cotenant = want_cotenant || std::string("co-tenant").starts_with(p);
      if (!cotenant_csv.empty() && want_cotenant) {
        const CotenantLog log = read_cotenant_log(cotenant_csv, curve);
        std::vector<double> ratios = cotenant_ratios(log);
        for (double& r : ratios) r *= cotenant_scale;
        double period_s = 0.0;
        std::vector<std::pair<double, double>> timeline = cotenant_timeline(log, period_s);
        for (auto& step : timeline) step.second *= cotenant_scale;
        std::vector<double> sorted = ratios;
        std::printf("\n(co-tenant: %zu batches, run time / p50: median %.2f, p90 %.2f, p99 %.2f)\n", ratios.size(),
                    control::quantile_of(sorted, 0.5), control::quantile_of(sorted, 0.9), control::quantile_of(sorted, 0.99));
        curve_specs.push_back({"co-tenant 70%", false, 0.7, [ratios](double r, double duration_s, std::uint64_t s) {
                                 Trace t = poisson_trace("co-tenant 70%", r, duration_s, s);
                                 t.cotenant_ratios = ratios;
                                 t.cotenant_from_s = duration_s / 2;
                                 return t;
                               }, trace_specs().size()});
        curve_specs.push_back({"co-tenant spells 70%", false, 0.7,
                               [timeline, period_s](double r, double duration_s, std::uint64_t s) {
                                 Trace t = poisson_trace("co-tenant spells 70%", r, duration_s, s);
                                 t.cotenant_timeline = timeline;
                                 t.cotenant_period_s = period_s;
                                 t.cotenant_from_s = duration_s / 2;
                                 return t;
                               }, trace_specs().size() + 1});
      }
      for (double k : multiples) {
        double cap = 0;
        const auto grid = run_slo_grid(curve, k, requests, seed, cap, curve_specs);
        const double slo_ms = k * curve.at(1);
        std::printf("\n### %s, SLO %.0f ms (%gx batch-1 latency): oracle capacity %.2f req/s (%.0f%% of the raw "
                    "%.2f), %.0f requests per trace\n\n",
                    curve.name.c_str(), slo_ms, k, cap, 100 * cap / curve.capacity(), curve.capacity(), requests);
        std::printf("| trace             | policy                       | attained  | goodput | p50 ms  | p99 ms  | batch | late   | dropped | at adm |\n");
        std::printf("|-------------------|------------------------------|-----------|---------|---------|---------|-------|--------|--------|--------|\n");
        const double target = k >= 3 ? 0.999 : 0.99;
        double worst_poisson = 1.0;
        int goodput_ok = 0, goodput_n = 0, beat_ok = 0, beat_n = 0;
        std::string misses;
        for (const TraceRows& t : grid) {
          for (const PolicyRow& row : t.rows) print_row(t.spec.name, row);
          const SimResult& slo = t.slo();
          if (t.spec.poisson && t.spec.load <= 0.9 + 1e-9) {
            worst_poisson = std::min(worst_poisson, slo.attainment());
            if (slo.attainment() < target) misses += " attainment@" + t.spec.name + ";";
          }
          ++goodput_n;
          if (slo.goodput() >= t.hindsight().goodput()) ++goodput_ok;
          else misses += " goodput@" + t.spec.name + ";";
          if (t.spec.name.starts_with("latency step") || t.spec.name.starts_with("size mix")) {
            ++beat_n;
            const bool beats = t.slo_beats_all_online();
            beat_ok += beats;
            if (!beats) misses += " beat-all@" + t.spec.name + ";";
          }
        }
        if (why)
          for (const TraceRows& t : grid)
            if (t.spec.name.starts_with("latency step") || t.spec.name.starts_with("size mix")) print_miss_breakdown(t);
        const bool ok = misses.empty();
        all_goals = all_goals && ok;
        char line[512];
        std::snprintf(line, sizeof line, "| %-13s | %4gx | %7.0f | %7.2f | %8.3f%% (>= %.1f%%) | %d/%d | %d/%d | %s |",
                      curve.name.c_str(), k, slo_ms, cap, 100 * worst_poisson, 100 * target, goodput_ok, goodput_n,
                      beat_ok, beat_n, ok ? "yes" : misses.c_str());
        summary.push_back(line);
        std::fflush(stdout);
      }
    }
  }
  std::printf("\n### Summary: SloController against the goals\n\n");
  std::printf("| model         | SLO   | SLO ms  | oracle  | worst attainment, Poisson <= 90%% | goodput >= hindsight | beats all on step+mix | all met |\n");
  std::printf("|---------------|-------|---------|---------|----------------------|-------|-------|------|\n");
  for (const auto& s : summary) std::printf("%s\n", s.c_str());
  std::printf("\nall goals met: %s\n", all_goals ? "yes" : "NO");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_control_sim: %s\n", e.what());
  return 1;
}
