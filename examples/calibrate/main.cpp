// sluice_calibrate: sweeps batch sizes of a model and writes batch_sizes.json (docs/formats.md: the
// standard fields plus per-size p50/p95/p99 and the latency table the SloController starts from) and an SVG
// chart. The model is a network of the CPU backend (any of the four, from a safetensors checkpoint;
// examples/calibrate/make_random_checkpoint.py writes a reduced-width one with random weights) or,
// with --synthetic, a small synthetic CPU model.
//
//   sluice_calibrate --network hrnet --checkpoint hrnet.safetensors --size 128x128 --out-dir out
//   sluice_calibrate --synthetic --out-dir out
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/calibrate/batch_sizes_json.hpp"
#include "sluice/calibrate/calibrator.hpp"
#include "svg_chart.hpp"
#include "synthetic_model.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"

using namespace sluice;

namespace {

/// A CPU-backend network as a CalibrationModel: fresh random inputs per run, the arena's true peak.
class CpuNetworkModel {
 public:
  CpuNetworkModel(cpu::CpuBackend& backend, models::AnyNetwork<cpu::CpuBackend> net, std::int64_t h, std::int64_t w)
      : backend_(backend), net_(std::move(net)), h_(h), w_(w) {}

  void prepare(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> mag(0.05f, 1.0f);
    std::bernoulli_distribution sign(0.5);
    host_.resize(n * static_cast<std::size_t>(net_.in_channels() * h_ * w_));
    for (auto& x : host_) x = sign(rng) ? mag(rng) : -mag(rng);  // never zero
    n_ = n;
  }

  calibrate::RunReport run() {
    backend_.reset_peak();
    {
      auto x = backend_.upload(host_, Shape{static_cast<std::int64_t>(n_), net_.in_channels(), h_, w_});
      auto y = models::run_forward(net_, backend_, x);
      backend_.synchronize();
    }
    return {backend_.memory().peak_bytes, std::nullopt};
  }

 private:
  cpu::CpuBackend& backend_;
  models::AnyNetwork<cpu::CpuBackend> net_;
  std::int64_t h_, w_;
  std::vector<float> host_;
  std::size_t n_ = 0;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s (--network NAME --checkpoint FILE [--size HxW] | --synthetic) [--out-dir DIR]\n"
               "          [--max-batch N] [--warmup N] [--runs N] [--budget-ms MS] [--knee F]\n"
               "          [--memory-limit-mb MB] [--reserve-percent P] [--threads N]\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) try {
  std::string network, checkpoint, out_dir = ".";
  bool synthetic = false;
  std::int64_t h = 128, w = 128;
  std::size_t threads = 0;
  calibrate::CalibrationOptions o;
  o.max_batch_size = 64;
  o.memory_limit_bytes = std::size_t{2048} << 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--network") network = next();
    else if (a == "--checkpoint") checkpoint = next();
    else if (a == "--synthetic") synthetic = true;
    else if (a == "--out-dir") out_dir = next();
    else if (a == "--size") {
      const std::string s = next();
      if (std::sscanf(s.c_str(), "%ldx%ld", &h, &w) != 2 || h < 1 || w < 1) usage(argv[0]);
    } else if (a == "--max-batch") o.max_batch_size = std::stoul(next());
    else if (a == "--warmup") o.warmup_runs = std::stoul(next());
    else if (a == "--runs") o.timed_runs = std::stoul(next());
    else if (a == "--budget-ms") o.latency_budget = std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(std::stod(next())));
    else if (a == "--knee") o.knee = std::stod(next());
    else if (a == "--memory-limit-mb") o.memory_limit_bytes = std::stoull(next()) << 20;
    else if (a == "--reserve-percent") o.memory_reserve_percent = std::stod(next());
    else if (a == "--threads") threads = std::stoul(next());
    else usage(argv[0]);
  }
  if (synthetic == !network.empty() || (!synthetic && checkpoint.empty())) usage(argv[0]);

  calibrate::CalibrationResult result;
  calibrate::BatchSizesFile file;
  file.gpu_info = {"CPU (sluice::cpu, Eigen)", 0.0, "n/a"};
  if (synthetic) {
    o.model_name = "synthetic";
    calibrate::SyntheticModel model({.features = 256, .layers = 4, .fixed_work = 96});
    result = calibrate::calibrate(model, o);
    file.extra["model_note"] = "synthetic CPU model (examples/calibrate/synthetic_model.hpp), not a network";
  } else {
    o.model_name = network;
    cpu::CpuBackend backend({.threads = threads, .memory_limit_bytes = o.memory_limit_bytes});
    const auto tensors = weights::load_checkpoint(checkpoint);
    CpuNetworkModel model(backend, models::load_network(network, backend, tensors), h, w);
    result = calibrate::calibrate(model, o);
    file.extra["input_size"] = {h, w};
    file.extra["checkpoint"] = std::filesystem::path(checkpoint).filename().string();
  }
  calibrate::add_calibration(file, result);
  std::filesystem::create_directories(out_dir);
  const std::string json_path = out_dir + "/batch_sizes.json", svg_path = out_dir + "/" + o.model_name + "_batch_sizes.svg";
  calibrate::save_batch_sizes(json_path, file);
  calibrate::write_svg_chart(svg_path, result);

  std::printf("%-6s %8s %9s %9s %9s %12s %10s\n", "batch", "ok", "p50 ms", "p95 ms", "p99 ms", "items/s", "peak MiB");
  for (const auto& s : result.sizes) {
    auto ms = [](Duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    if (s.success)
      std::printf("%-6zu %8s %9.2f %9.2f %9.2f %12.2f %10.1f\n", s.batch_size, "yes", ms(s.p50), ms(s.p95), ms(s.p99),
                  s.throughput, static_cast<double>(s.peak_bytes) / 1048576.0);
    else
      std::printf("%-6zu %8s %s\n", s.batch_size, "FAILED", s.error.c_str());
  }
  std::printf("stopped: %s\noptimal_batch_size %zu, max_safe_batch_size %zu\nwrote %s and %s\n",
              result.stop_reason.c_str(), result.optimal_batch_size, result.max_safe_batch_size, json_path.c_str(),
              svg_path.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "sluice_calibrate: %s\n", e.what());
  return 1;
}
