// bench/gpu/bench_gpu.cpp: throughput of the four networks on the CUDA backend, per network, input
// size, precision and batch size -- model only (input already on the device), as the PyTorch peer
// (peer_torch.py) measures it. Weights and input come from files the peer script exports, so both
// run the same numbers; each batch's first sample is checked against PyTorch's fp32 output.
//
// Forwards go through models::run_forward, so with --graphs=on (the default) the timed passes are
// replays of a CUDA graph captured per batch size; --graphs=off launches every kernel.
//
// One JSON object per line on --out (and a short progress line on stderr):
//   {"impl":"sluice","network","size","precision","batch","status":"ok"|"oom"|"skipped"|"error",
//    "images_per_s","p50_ms","mean_ms","iterations","peak_bytes","reserved_bytes","rel_l2",
//    "graphs","workspace_mib","tag", "profile":[{"op","ms","calls","bytes"}, ...] (with --profile)}
// --profile adds one more forward per row, op by op, with the device time of each kind of operation.
// Work stops at --deadline-s (what is left is reported as "skipped"), so a fixed time budget holds.
//
// Run: bench_gpu --data=DIR --out=FILE [--networks=hrnet,...] [--sizes=1024,512] [--batches=1,2,4,8,16]
//        [--precisions=fp16,bf16,tf32,fp32] [--deadline-s=240] [--min-time-s=0.5] [--search=exhaustive]
//        [--workspace-mib=1024]   (cuDNN workspace limit per convolution: CudaOptions::workspace_limit_bytes)
//        [--graphs=on|off] [--profile] [--tag=NAME]   (tag: copied into every row, to tell runs apart)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/backends/cuda/cuda_backend.hpp"
#include "sluice/models/network.hpp"
#include "sluice/models/registry.hpp"
#include "sluice/weights/safetensors.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using sluice::Shape;
using sluice::cuda::CudaBackend;
using sluice::cuda::Precision;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

struct Args {
  std::filesystem::path data;
  std::string out = "sluice_gpu.jsonl";
  std::vector<std::string> networks{"hrnet", "resunet_small", "advanced_resunet", "cbam_resunet"};
  std::vector<std::int64_t> sizes{1024, 512};
  std::vector<std::int64_t> batches{1, 2, 4, 8, 16};
  std::vector<Precision> precisions{Precision::fp16, Precision::bf16, Precision::tf32, Precision::fp32};
  double deadline_s = 240, min_time_s = 0.5;
  int min_iterations = 3, max_iterations = 20;
  sluice::cuda::ConvAlgoSearch search = sluice::cuda::ConvAlgoSearch::exhaustive;
  std::size_t workspace_bytes = sluice::cuda::CudaOptions{}.workspace_limit_bytes;
  bool graphs = true, profile = false;
  std::string tag;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--profile") {
      a.profile = true;
      continue;
    }
    const auto eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos)
      throw sluice::Error(sluice::errc::invalid_argument, "arguments are --key=value, got '" + arg + "'");
    const std::string key = arg.substr(2, eq - 2), value = arg.substr(eq + 1);
    if (key == "data") a.data = value;
    else if (key == "out") a.out = value;
    else if (key == "networks") a.networks = split(value);
    else if (key == "sizes" || key == "batches") {
      std::vector<std::int64_t> v;
      for (const auto& s : split(value)) v.push_back(std::stoll(s));
      (key == "sizes" ? a.sizes : a.batches) = v;
    } else if (key == "precisions") {
      a.precisions.clear();
      for (const auto& s : split(value)) a.precisions.push_back(sluice::cuda::parse_precision(s));
    } else if (key == "deadline-s") a.deadline_s = std::stod(value);
    else if (key == "min-time-s") a.min_time_s = std::stod(value);
    else if (key == "min-iterations") a.min_iterations = std::stoi(value);
    else if (key == "max-iterations") a.max_iterations = std::stoi(value);
    else if (key == "search")
      a.search = value == "heuristic" ? sluice::cuda::ConvAlgoSearch::heuristic : sluice::cuda::ConvAlgoSearch::exhaustive;
    else if (key == "workspace-mib")
      a.workspace_bytes = static_cast<std::size_t>(std::stoull(value)) << 20;
    else if (key == "graphs" && (value == "on" || value == "off"))
      a.graphs = value == "on";
    else if (key == "tag")
      a.tag = value;
    else
      throw sluice::Error(sluice::errc::invalid_argument, "unknown option --" + key);
  }
  if (a.data.empty()) throw sluice::Error(sluice::errc::invalid_argument, "--data=DIR is required");
  return a;
}

double relative_l2(const float* a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  if (CudaBackend::device_count() == 0) {
    std::cerr << "bench_gpu: no CUDA device (" << CudaBackend::unavailable_reason() << ")\n";
    return 2;
  }
  const auto start = Clock::now();
  std::ofstream out(args.out);
  auto emit = [&](nlohmann::json j) {
    j["impl"] = "sluice";
    out << j.dump() << "\n";
    out.flush();
    std::cerr << j.dump() << "\n";
  };

  for (const auto& name : args.networks) {
    const auto weights_path = args.data / (name + ".safetensors");
    if (!std::filesystem::exists(weights_path)) {
      emit({{"network", name}, {"status", "error"}, {"error", "no " + weights_path.string()}});
      continue;
    }
    const sluice::weights::TensorDict weights = sluice::weights::load_checkpoint(weights_path);
    for (const std::int64_t size : args.sizes) {
      const auto io = sluice::weights::read_safetensors(args.data / ("input_" + std::to_string(size) + ".safetensors"));
      const auto& image = io.tensors.at("input").data;  // (1, 3, size, size)
      const auto ref_it = io.tensors.find("output_" + name);
      for (const Precision precision : args.precisions) {
        nlohmann::json base{{"network", name},
                            {"size", size},
                            {"precision", sluice::cuda::to_string(precision)},
                            {"graphs", args.graphs},
                            {"workspace_mib", args.workspace_bytes >> 20},
                            {"tag", args.tag}};
        if (seconds_since(start) > args.deadline_s) {
          for (auto b : args.batches) {
            nlohmann::json j = base;
            j["batch"] = b;
            j["status"] = "skipped";
            emit(j);
          }
          continue;
        }
        sluice::cuda::CudaOptions options;
        options.precision = precision;
        options.algo_search = args.search;
        options.workspace_limit_bytes = args.workspace_bytes;
        options.graphs = args.graphs;
        CudaBackend lane(options);
        const auto net = sluice::models::load_network(name, lane, weights);
        bool failed_smaller = false;
        for (const std::int64_t batch : args.batches) {
          nlohmann::json j = base;
          j["batch"] = batch;
          if (failed_smaller || seconds_since(start) > args.deadline_s) {
            j["status"] = failed_smaller ? "oom" : "skipped";
            emit(j);
            continue;
          }
          try {
            std::vector<float> host;
            host.reserve(image.size() * static_cast<std::size_t>(batch));
            for (std::int64_t k = 0; k < batch; ++k) host.insert(host.end(), image.begin(), image.end());
            const Shape shape{batch, 3, size, size};
            const auto x = lane.upload(host, shape);
            const auto forward = [&] { return sluice::models::run_forward(net, lane, x); };
            (void)forward();  // warm-up: plans every convolution of this batch size (and, graphs on, runs eagerly)
            {  // graphs on: captures and replays; then the accuracy check of what the timed passes run
              const auto y = forward();
              std::vector<float> result(static_cast<std::size_t>(lane.shape_of(y).numel()));
              lane.download(y, result);
              if (ref_it != io.tensors.end()) {
                const std::size_t plane = ref_it->second.data.size();
                j["rel_l2"] = relative_l2(result.data(), ref_it->second.data);
                j["rel_l2_last"] = relative_l2(result.data() + (batch - 1) * static_cast<std::int64_t>(plane),
                                               ref_it->second.data);
              }
            }
            lane.reset_peak();
            std::vector<double> ms;
            double total = 0;
            while (static_cast<int>(ms.size()) < args.max_iterations &&
                   (static_cast<int>(ms.size()) < args.min_iterations || total < args.min_time_s)) {
              const auto t0 = Clock::now();
              {
                const auto y = forward();
                lane.synchronize();
              }
              const double s = seconds_since(t0);
              ms.push_back(s * 1e3);
              total += s;
            }
            std::vector<double> sorted = ms;
            std::sort(sorted.begin(), sorted.end());
            const double p50 = sorted[sorted.size() / 2];
            j["status"] = "ok";
            j["p50_ms"] = p50;
            j["mean_ms"] = total * 1e3 / static_cast<double>(ms.size());
            j["images_per_s"] = static_cast<double>(batch) / (p50 / 1e3);
            j["iterations"] = ms.size();
            j["peak_bytes"] = lane.memory().peak_bytes;
            j["weight_bytes"] = lane.memory().weight_bytes;
            j["reserved_bytes"] = lane.reserved_bytes();
            j["device"] = lane.device_name();
            if (args.profile) {
              lane.set_op_profiling(true);
              (void)forward();
              nlohmann::json ops = nlohmann::json::array();
              for (const auto& t : lane.take_op_profile()) ops.push_back({{"op", t.op}, {"ms", t.ms}, {"calls", t.calls}, {"bytes", t.bytes}});
              lane.set_op_profiling(false);
              j["profile"] = ops;
            }
          } catch (const sluice::Error& e) {
            const bool oom = e.code() == sluice::errc::out_of_memory;
            j["status"] = oom ? "oom" : "error";
            j["error"] = e.what();
            failed_smaller = true;  // larger batches of this configuration would fail too
            try {
              lane.release_cached();
            } catch (const sluice::Error&) {  // the device may be unusable after a failure: go on reporting
            }
          }
          emit(j);
        }
      }
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_gpu: " << e.what() << "\n";
  return 1;
}
