// bench_models: images/s and peak memory of one network on the CPU backend, for several input
// sizes and batch sizes, on weights and inputs that bench/models/compare.py wrote (the same ones
// PyTorch runs on). Prints one JSON object per (size, batch) on stdout.
//
//   bench_models NETWORK WEIGHTS.safetensors INPUTS.safetensors [--threads T] [--reps R]
//                [--batches 1,2,4,8] [--sizes 256,512] [--max-reps-seconds S] [--warmup-max-seconds W]
//                [--batch-split auto|always|never]   (CpuOptions::batch_split; default auto)
//                [--precision fp32|bf16]             (CpuOptions::precision; default fp32)
//                [--profile | --profile-shapes]
// INPUTS holds input_<S> (B x 3 x S x S) and output_<S> (PyTorch's logits of its first image).
// --profile runs as many more forward passes as were timed with the backend's op profile on
// (CpuBackend::set_op_profiling) and prints, before each JSON row, a table of the operation kinds
// longest first: ms per forward pass, share of the profiled time, calls per pass, activation GB/s and,
// for convs and linear layers, GFLOP/s of a direct evaluation (a Winograd conv's effective rate);
// under each conv, its phases (im2col or padding or transforms, GEMMs) by the workers' time in them.
// --profile-shapes splits each kind by its input and output shapes (about one row per layer). A batch
// the backend splits into per-sample passes (see batch_split) adds up the threads' times.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"

namespace {

std::vector<std::int64_t> parse_list(const std::string& s) {
  std::vector<std::int64_t> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t comma = s.find(',', pos);
    out.push_back(std::stoll(s.substr(pos, comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

double relative_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    num += (static_cast<double>(a[i]) - ref[i]) * (static_cast<double>(a[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// The profile of `passes` forward passes as a markdown table, ms and calls per pass.
void print_profile(const std::vector<sluice::cpu::OpTime>& profile, int passes, double median_s, bool shapes) {
  double total_ms = 0;
  for (const auto& t : profile) total_ms += t.ms;
  std::printf("\n| op |%s ms / pass | share | calls / pass | GB/s | GFLOP/s |\n|---|%s---|---|---|---|---|\n",
              shapes ? " shapes |" : "", shapes ? "---|" : "");
  for (const auto& t : profile) {
    const double seconds = t.ms * 1e-3;
    std::printf("| %s |%s%s %.2f | %.1f%% | %.4g | %.1f | ", t.op.c_str(), shapes ? " " : "",
                shapes ? (t.shape + " |").c_str() : "", t.ms / passes, 100.0 * t.ms / total_ms,
                static_cast<double>(t.calls) / passes, t.bytes / seconds * 1e-9);
    if (t.flops > 0) std::printf("%.1f |\n", t.flops / seconds * 1e-9);
    else std::printf("- |\n");
    for (const auto& part : t.parts)  // a conv's phases, in share of its time
      std::printf("| &nbsp; ↳ %s |%s %.2f | %.1f%% | | | |\n", part.name.c_str(), shapes ? " |" : "", part.ms / passes,
                  100.0 * part.ms / total_ms);
  }
  std::printf("\nops: %.2f ms per pass of a %.2f ms timed median (the rest: uploads, allocation, the profile)\n\n",
              total_ms / passes, median_s * 1e3);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s NETWORK WEIGHTS INPUTS [--threads T] [--reps R] [--batches 1,2,4,8] "
                         "[--sizes 256,512] [--max-reps-seconds S] [--warmup-max-seconds W] [--batch-split auto|always|never] "
                         "[--precision fp32|bf16] [--profile | --profile-shapes]\n",
                 argv[0]);
    return 2;
  }
  const std::string network = argv[1];
  std::size_t threads = 2;
  auto batch_split = sluice::cpu::BatchSplit::automatic;
  auto precision = sluice::cpu::Precision::fp32;
  int reps = 3;
  double max_seconds = 1e9;  // stop repeating once a configuration has used this long
  double warmup_max_seconds = 1e9;  // a warm-up run longer than this is also a timed run
  std::vector<std::int64_t> batches{1, 2, 4, 8}, sizes{256, 512};
  auto profiling = sluice::cpu::OpProfiling::off;
  for (int i = 4; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--profile" || flag == "--profile-shapes") {
      profiling = flag == "--profile" ? sluice::cpu::OpProfiling::by_kind : sluice::cpu::OpProfiling::by_shape;
      --i;  // no value
      continue;
    }
    if (i + 1 >= argc) throw std::runtime_error("flag " + flag + " needs a value");
    const std::string value = argv[i + 1];
    if (flag == "--threads") threads = std::stoul(value);
    else if (flag == "--reps") reps = std::stoi(value);
    else if (flag == "--batches") batches = parse_list(value);
    else if (flag == "--sizes") sizes = parse_list(value);
    else if (flag == "--max-reps-seconds") max_seconds = std::stod(value);
    else if (flag == "--warmup-max-seconds") warmup_max_seconds = std::stod(value);
    else if (flag == "--batch-split") batch_split = sluice::cpu::parse_batch_split(value);
    else if (flag == "--precision") precision = sluice::cpu::parse_precision(value);
    else throw std::runtime_error("unknown flag " + flag);
  }

  sluice::cpu::CpuOptions options;
  options.threads = threads;
  options.batch_split = batch_split;
  options.precision = precision;
  sluice::cpu::CpuBackend cpu(options);
  if (!cpu.precision_note().empty()) std::fprintf(stderr, "bench_models: %s\n", cpu.precision_note().c_str());
  if (cpu.precision() == sluice::cpu::Precision::bf16)
    std::fprintf(stderr, "bench_models: GEMMs on %s%s%s\n", cpu.gemm_kernel(), cpu.bf16_kernel_note().empty() ? "" : ": ",
                 cpu.bf16_kernel_note().c_str());
  const sluice::weights::TensorDict weights = sluice::weights::load_checkpoint(argv[2]);
  const auto inputs = sluice::weights::read_safetensors(argv[3]).tensors;
  const auto net = sluice::models::load_network(network, cpu, weights);
  const std::size_t weight_bytes = cpu.memory().weight_bytes;

  for (const std::int64_t size : sizes) {
    const auto& all = inputs.at("input_" + std::to_string(size));
    const auto& expected = inputs.at("output_" + std::to_string(size));
    for (const std::int64_t batch : batches) {
      if (batch > all.shape[0]) {
        std::fprintf(stderr, "bench_models: batch %lld at %lld skipped: INPUTS holds %lld image(s) of that size\n",
                     static_cast<long long>(batch), static_cast<long long>(size), static_cast<long long>(all.shape[0]));
        continue;
      }
      const sluice::Shape shape{batch, 3, size, size};
      const std::vector<float> pixels(all.data.begin(), all.data.begin() + shape.numel());
      double error = -1;
      std::vector<double> seconds;
      std::size_t peak = 0;
      // Run 0 warms up (arena buckets, caches) and checks the output; when it took longer than
      // warmup_max_seconds, first-touch costs are noise in it and it is the first timed run.
      // Automatic batch split times both ways on a shape's first batches; those untimed runs come
      // first, so that the timed ones run the way it kept (and the peak covers both ways).
      const bool may_split = cpu.may_split(batch);
      const bool tunes = may_split && batch_split == sluice::cpu::BatchSplit::automatic;
      for (int r = 0; r <= reps; ++r) {
        const auto x = cpu.upload(pixels, shape);
        cpu.reset_peak();
        const auto t0 = std::chrono::steady_clock::now();
        auto y = sluice::models::run_forward(net, cpu, x);
        cpu.synchronize();
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        peak = std::max(peak, cpu.memory().peak_bytes);
        if (r == 0) {
          for (int t = 0; tunes && !cpu.split_choice(shape) && t < 2 * sluice::cpu::SplitTuner::trials_per_way; ++t) {
            cpu.reset_peak();
            (void)sluice::models::run_forward(net, cpu, cpu.upload(pixels, shape));
            peak = std::max(peak, cpu.memory().peak_bytes);
          }
          const auto out = cpu.to_vector(y);
          error = relative_l2({out.begin(), out.begin() + size * size}, expected.data);
          if (dt > warmup_max_seconds) seconds.push_back(dt);
          if (dt > warmup_max_seconds && dt > max_seconds) break;
        } else {
          seconds.push_back(dt);
          double total = 0;
          for (double s : seconds) total += s;
          if (total > max_seconds) break;
        }
      }
      std::sort(seconds.begin(), seconds.end());
      const double median = seconds[seconds.size() / 2];
      if (profiling != sluice::cpu::OpProfiling::off) {
        const int passes = static_cast<int>(seconds.size());
        cpu.set_op_profiling(profiling);
        for (int r = 0; r < passes; ++r) (void)sluice::models::run_forward(net, cpu, cpu.upload(pixels, shape));
        cpu.set_op_profiling(false);
        std::printf("\n%s %lldx%lld batch %lld %s, %d profiled passes:\n", network.c_str(),
                    static_cast<long long>(size), static_cast<long long>(size), static_cast<long long>(batch),
                    sluice::cpu::to_string(cpu.precision()), passes);
        print_profile(cpu.take_op_profile(), passes, median, profiling == sluice::cpu::OpProfiling::by_shape);
      }
      const auto choice = cpu.split_choice(shape);
      const char* way = !may_split ? "whole" : !tunes ? "split" : !choice ? "tuning" : *choice ? "split" : "whole";
      std::printf("{\"network\": \"%s\", \"size\": %lld, \"batch\": %lld, \"runs\": %zu, \"median_s\": %.4f, "
                  "\"images_per_s\": %.4f, \"peak_bytes\": %zu, \"weight_bytes\": %zu, \"rel_l2_vs_torch\": %.3g, "
                  "\"batch_split\": \"%s\", \"precision\": \"%s\", \"gemm_kernel\": \"%s\"}\n",
                  network.c_str(), static_cast<long long>(size), static_cast<long long>(batch), seconds.size(),
                  median, static_cast<double>(batch) / median, peak, weight_bytes, error, way,
                  sluice::cpu::to_string(cpu.precision()), cpu.gemm_kernel());
      std::fflush(stdout);
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_models: %s\n", e.what());
  return 1;
}
