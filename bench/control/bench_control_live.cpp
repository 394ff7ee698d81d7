// bench_control_live: the tight-SLO controller comparison in real time. A generator thread submits
// requests to a real sluice::Batcher at a trace's arrival times (sleep_until on the steady clock),
// open loop: it never waits for answers. Each request's deadline is its scheduled arrival + the
// SLO; the Batcher's lane runs a network on the CPU backend; completion handlers record the
// end-to-end latency from the scheduled arrival (a generator running late cannot hide queueing).
// Traces: Poisson at shares of the oracle capacity and a co-tenant step (CPU-hog threads started at
// half time). Policies: SloController, FixedBatch tuned in simulation on a different trace of the
// same kind, FixedBatch with hindsight (the grid's best on this trace, in simulation on the measured
// table) and Aimd. Each policy runs `--runs` times, alternating; the table reports medians, ranges
// and the run-to-run noise (the range of the tuned FixedBatch's attainment).
// Usage: bench_control_live --network NAME --checkpoint FILE [--size HxW] [--seconds S] [--runs R]
//                           [--loads 50,70,90] [--hog-load PCT (0: none)] [--slo K] [--threads N]
//                           [--max-batch N] [--seed S] [--write-table PATH] [--log-batches CSV]
//                           [--log-requests CSV] [--log-drops CSV] [--calibrate-each-trace on]
// --log-batches writes every batch each policy ran (start time in the trace, size, run time): the
// lane's real latency under the co-tenant, for replay in the simulator. --log-requests writes every
// request's fate (arrival, end, outcome: on time, late, rejected at admission, shed before its
// deadline, expired at it): where a policy misses, request by request; --log-drops every
// SloController decision that shed or rejected, with what it saw. The SloController's rows
// end with how many lane-speed changes its model detected. --calibrate-each-trace on calibrates
// again before every trace (its SLO, capacity and fixed choices from that calibration): a shared
// machine's speed can drift by tens of per cent between the first trace and the last.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "cpu_lane.hpp"
#include "slo_grid.hpp"
#include "sluice/batching/batcher.hpp"
#include "sluice/weights/safetensors.hpp"

using namespace sluice;
using namespace sluice::bench;

namespace {

/// The Batcher's model: a request is its index in the trace; a batch of n runs the network on n
/// pre-generated inputs.
struct LiveModel {
  using request_type = std::uint32_t;
  using response_type = std::uint32_t;
  explicit LiveModel(CpuLane& l) : lane(l) {}
  CpuLane& lane;
  TimePoint origin{};
  std::atomic<std::size_t> batches{0};
  struct Ran {
    double start_s, run_ms;
    std::size_t size;
  };
  std::vector<Ran> log;  // written by the one lane thread only; read once every request completed
  void run(std::span<const std::uint32_t> in, std::span<std::uint32_t> out) {
    const double start_s = std::chrono::duration<double>(Clock::now() - origin).count();
    log.push_back({start_s, lane.timed(in.size()), in.size()});
    std::copy(in.begin(), in.end(), out.begin());
    ++batches;
  }
};

/// Where --log-batches writes every batch (trace, policy, run, start s, size, run ms).
std::FILE* batch_log = nullptr;
/// Where --log-requests writes every request (trace, policy, run, request, arrival s, end s, outcome).
std::FILE* request_log = nullptr;
/// Where --log-drops writes every SloController decision that shed or rejected (why it dropped).
std::FILE* drop_log = nullptr;

/// A CSV log at `path` with its header line written; null when no path was given.
std::FILE* open_log(const std::string& path, const char* header) {
  if (path.empty()) return nullptr;
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "%s\n", header);
  return f;
}

/// The SloController, writing each decision that drops (a shed, a rejection at admission) with what
/// it saw: the queue's deadlines, the lane, its model's batch-1 p5 / median / p99.
struct LoggedSloController {
  control::SloController inner;
  std::string label;
  TimePoint origin{};
  Decision decide(const QueueState& q, TimePoint now) {
    const Decision d = inner.decide(q, now);
    if (d.shed_deadline_before > TimePoint::min()) write("shed", q, now, d.shed_deadline_before);
    return d;
  }
  bool admit(const QueueState& q, TimePoint deadline, TimePoint now) {
    const bool ok = inner.admit(q, deadline, now);
    if (!ok) write("reject", q, now, deadline);
    return ok;
  }
  void observe(const BatchRecord& r) { inner.observe(r); }
  void write(const char* what, const QueueState& q, TimePoint now, TimePoint cut) const {
    if (!drop_log) return;
    const auto rel = [&](TimePoint t) { return std::chrono::duration<double, std::milli>(t - now).count(); };
    const auto m = [&](double quantile) {
      const auto e = inner.model(q.key) ? inner.model(q.key)->estimate_q(1, quantile) : std::nullopt;
      return e ? std::chrono::duration<double, std::milli>(*e).count() : -1.0;
    };
    std::fprintf(drop_log, "%s,%.4f,%s,%.2f,%zu,%zu,%zu,%.2f,%.2f,%.2f,", label.c_str(),
                 std::chrono::duration<double>(now - origin).count(), what, rel(cut), q.queued, q.total_queued,
                 q.busy_lanes, m(0.05), m(0.5), m(0.99));
    for (const TimePoint dl : q.deadlines) std::fprintf(drop_log, " %.2f", rel(dl));
    std::fprintf(drop_log, "\n");
  }
};

struct LiveSpec {
  std::string name;
  double load = 0.0;
  bool hog = false;
};

/// One real-time replay of `trace` through a Batcher driven by `controller`.
template <class Controller>
SimResult run_live(CpuLane& lane, std::size_t max_batch, const Trace& trace, Controller controller, double slo_ms,
                   bool hog_at_half, const std::string& label, std::size_t* changes = nullptr) {
  using namespace std::chrono;
  // Declared before the Batcher: its handlers write here until the Batcher is gone.
  const std::size_t n = trace.arrivals_s.size();
  const Duration slo = duration_cast<Duration>(duration<double, std::milli>(slo_ms));
  std::vector<double> latency_ms(n, -1.0);  // -1: not served (dropped, shed or expired)
  std::vector<double> end_s(n, 0.0);
  std::vector<int> error(n, 0);
  std::atomic<std::size_t> completed{0};
  LiveModel model{lane};
  BatcherConfig config;
  config.max_batch_size = max_batch;
  config.max_queue_size = std::size_t{1} << 20;
  config.max_queue_delay = Duration::zero();  // FixedBatch brings its own; the others decide alone
  config.model_name = "live";
  Batcher<LiveModel, Controller> batcher(model, config, std::move(controller));

  CpuHog hog;
  const unsigned hog_threads = std::max(1u, std::thread::hardware_concurrency());
  const TimePoint origin = Clock::now() + milliseconds(50);
  model.origin = origin;
  if constexpr (std::is_same_v<Controller, LoggedSloController>)
    batcher.with_controller([&](LoggedSloController& c) { c.label = label, c.origin = origin; });
  auto at = [&](double s) { return origin + duration_cast<Duration>(duration<double>(s)); };
  bool hog_started = !hog_at_half;
  for (std::size_t i = 0; i < n; ++i) {
    const double s = trace.arrivals_s[i];
    if (!hog_started && s >= trace.duration_s / 2) {
      std::this_thread::sleep_until(at(trace.duration_s / 2));
      hog.start(hog_threads);
      hog_started = true;
    }
    const TimePoint arrival = at(s);
    std::this_thread::sleep_until(arrival);
    SubmitOptions so;
    so.deadline = arrival + slo;
    batcher.async_submit(static_cast<std::uint32_t>(i), so, [&, i, arrival](std::error_code ec, std::uint32_t) {
      const TimePoint end = Clock::now();
      if (!ec) latency_ms[i] = duration<double, std::milli>(end - arrival).count();
      end_s[i] = duration<double>(end - origin).count();
      error[i] = ec.value();
      completed.fetch_add(1, std::memory_order_release);
    });
  }
  // Every request completes (served, shed or expired at its deadline); should one not, the Batcher
  // is stopped well after the last deadline and the rest complete as shutting_down (misses).
  const TimePoint give_up = at(trace.duration_s) + 10 * slo + seconds(10);
  while (completed.load(std::memory_order_acquire) < n) {
    if (Clock::now() > give_up && !batcher.stopped()) batcher.stop(StopMode::cancel);
    std::this_thread::sleep_for(milliseconds(2));
  }
  hog.stop();
  if constexpr (std::is_same_v<Controller, LoggedSloController>)
    if (changes)
      *changes = batcher.with_controller([](LoggedSloController& c) { return c.inner.model().changes_detected(); });
  if (batch_log)
    for (const auto& b : model.log)
      std::fprintf(batch_log, "%s,%.4f,%zu,%.3f\n", label.c_str(), b.start_s, b.size, b.run_ms);

  if (request_log)
    for (std::size_t i = 0; i < n; ++i) {
      const double deadline_s = trace.arrivals_s[i] + slo_ms / 1e3;
      const char* outcome = latency_ms[i] >= 0 ? (latency_ms[i] <= slo_ms ? "on_time" : "late")
                            : error[i] == static_cast<int>(errc::queue_full) ? "rejected"
                            : end_s[i] < deadline_s - 1e-4                   ? "shed"
                                                                              : "expired";
      std::fprintf(request_log, "%s,%zu,%.5f,%.5f,%s\n", label.c_str(), i, trace.arrivals_s[i], end_s[i], outcome);
    }

  SimResult r;
  r.requests = n;
  r.duration_s = trace.duration_s;
  r.batches = model.batches.load();
  std::vector<double> served;
  for (double ms : latency_ms) {
    if (ms < 0) ++r.dropped;
    else if (ms <= slo_ms) ++r.on_time, served.push_back(ms);
    else ++r.late, served.push_back(ms);
  }
  std::sort(served.begin(), served.end());
  if (!served.empty()) {
    r.p50_ms = served[served.size() / 2];
    r.p99_ms = served[std::min(served.size() - 1, served.size() * 99 / 100)];
  }
  return r;
}

std::vector<int> parse_loads(const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  LaneArgs args;
  args.runs = 5;
  double seconds = 4;
  std::vector<int> loads = {50, 70, 90};
  int hog_load = 70;
  std::string log_batches, log_requests, log_drops;
  bool calibrate_each_trace = false;
  if (!args.parse(argc, argv, [&](const std::string& a, const std::string& v) {
        if (a == "--seconds") seconds = std::stod(v);
        else if (a == "--loads") loads = parse_loads(v);
        else if (a == "--hog-load") hog_load = std::stoi(v);
        else if (a == "--log-batches") log_batches = v;
        else if (a == "--log-requests") log_requests = v;
        else if (a == "--log-drops") log_drops = v;
        else if (a == "--calibrate-each-trace") calibrate_each_trace = v == "1" || v == "on";
        else return false;
        return true;
      }) || !(seconds > 0)) {
    std::fprintf(stderr, "usage: %s --network NAME --checkpoint FILE [--size HxW] [--seconds S] [--runs R] "
                 "[--loads 50,70,90] [--hog-load PCT] [--slo K] ...\n", argv[0]);
    return 2;
  }
  batch_log = open_log(log_batches, "trace,policy,run,start_s,size,run_ms");
  request_log = open_log(log_requests, "trace,policy,run,request,arrival_s,end_s,outcome");
  drop_log = open_log(log_drops, "trace,policy,run,at_s,what,cut_ms,queued,total_queued,busy_lanes,p5_ms,p50_ms,"
                                 "p99_ms,deadlines_ms");
  cpu::CpuBackend backend({.threads = args.threads});
  const auto weights = weights::load_checkpoint(args.checkpoint);
  CpuLane lane(backend, models::load_network(args.network, backend, weights), args.h, args.w, args.max_batch);
  const auto calibrate = [&] {
    return calibrate_lane(lane, args.network, args.max_batch, args.slo_multiple, args.seed, args.device(), args.size(),
                          args.write_table);
  };
  const auto print_calibration = [&](const CalibratedLane& c, const char* what) {
    std::printf("### %s %s on the CPU backend (%zu thread%s), real time through sluice::Batcher%s: batch-1 p50 %.1f ms, "
                "SLO %.0f ms (%gx), oracle capacity %.1f req/s (raw %.1f at batch %zu), %.1f s per trace, %zu runs\n\n",
                args.network.c_str(), args.size().c_str(), args.threads, args.threads == 1 ? "" : "s", what,
                c.curve.at(1), c.sim.slo_ms, args.slo_multiple, c.capacity, c.curve.capacity(), c.curve.best_size(),
                seconds, args.runs);
  };
  CalibratedLane cl = calibrate();
  print_calibration(cl, "");

  std::vector<LiveSpec> specs;
  for (int pct : loads) specs.push_back({"poisson " + std::to_string(pct) + "%", pct / 100.0, false});
  if (hog_load > 0) specs.push_back({"cpu hog " + std::to_string(hog_load) + "%", hog_load / 100.0, true});
  const std::vector<std::string> policies = {"fixed tuned", "fixed hindsight", "aimd", "slo controller"};
  RunResults results;
  std::map<std::string, std::string> configs;  // the fixed choices, per trace

  for (std::size_t ti = 0; ti < specs.size(); ++ti) {
    const LiveSpec& spec = specs[ti];
    if (calibrate_each_trace && ti > 0) {
      cl = calibrate();
      print_calibration(cl, (", recalibrated for " + spec.name).c_str());
    }
    const SimOptions& sim = cl.sim;
    const std::size_t max_batch = cl.curve.max_safe;
    const double rate = spec.load * cl.capacity;
    const Trace trace = poisson_trace(spec.name, rate, seconds, args.seed + 100 + ti);
    const Trace other = poisson_trace(spec.name, rate, seconds, args.seed + 1000 + ti);
    // Both fixed choices come from the simulator on the measured table: tuned on the other trace
    // (an operator's offline tuning), hindsight on this very trace.
    const FixedConfig tuned = best_fixed(cl.curve, other, sim).config;
    const FixedConfig hind = best_fixed(cl.curve, trace, sim).config;
    configs[spec.name] = "tuned " + tuned.name() + ", hindsight " + hind.name();
    for (std::size_t run = 0; run < args.runs; ++run)
      for (std::size_t k = 0; k < policies.size(); ++k) {
        const std::string& policy = policies[(k + run) % policies.size()];  // alternate the order
        SimResult r;
        std::size_t changes = 0;
        const std::string label = spec.name + "," + policy + "," + std::to_string(run + 1);
        if (policy == "fixed tuned" || policy == "fixed hindsight") {
          r = run_live(lane, max_batch, trace, make_fixed(policy == "fixed tuned" ? tuned : hind), sim.slo_ms, spec.hog,
                       label);
        } else if (policy == "aimd") {
          control::Aimd::Options ao;
          ao.latency_target = std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(sim.slo_ms / 2));
          r = run_live(lane, max_batch, trace, control::Aimd(ao), sim.slo_ms, spec.hog, label);
        } else {
          control::SloController::Options so;
          so.max_batch_size = max_batch;
          so.calibration = cl.table;
          r = run_live(lane, max_batch, trace, LoggedSloController{control::SloController(so), {}, {}}, sim.slo_ms,
                       spec.hog, label, &changes);
        }
        results[{spec.name, policy}].push_back(r);
        std::printf("run %zu | %-12s | %-15s | %7.2f%% | %7.2f req/s | late %4zu | dropped %4zu | mean batch %.2f | p99 %.0f ms%s\n",
                    run + 1, spec.name.c_str(), policy.c_str(), 100 * r.attainment(), r.goodput(), r.late, r.dropped,
                    r.mean_batch(), r.p99_ms,
                    policy == "slo controller" ? (" | changes " + std::to_string(changes)).c_str() : "");
        std::fflush(stdout);
      }
  }

  std::vector<std::string> names;
  for (const LiveSpec& spec : specs) names.push_back(spec.name);
  print_run_table(results, names, policies);
  // The run-to-run noise: how far the same policy on the same trace moves between runs.
  std::printf("\n| trace | fixed choices | noise: tuned FixedBatch attainment range | SLO median - hindsight median |\n"
              "|---|---|---|---|\n");
  for (const LiveSpec& spec : specs) {
    std::vector<double> tuned, hind, slo;
    for (const auto& r : results[{spec.name, "fixed tuned"}]) tuned.push_back(100 * r.attainment());
    for (const auto& r : results[{spec.name, "fixed hindsight"}]) hind.push_back(100 * r.attainment());
    for (const auto& r : results[{spec.name, "slo controller"}]) slo.push_back(100 * r.attainment());
    const double noise = *std::max_element(tuned.begin(), tuned.end()) - *std::min_element(tuned.begin(), tuned.end());
    std::printf("| %s | %s | %.2f points | %+.2f points |\n", spec.name.c_str(), configs[spec.name].c_str(), noise,
                median(slo) - median(hind));
  }
  if (batch_log) std::fclose(batch_log);
  if (request_log) std::fclose(request_log);
  if (drop_log) std::fclose(drop_log);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_control_live: %s\n", e.what());
  return 1;
}
