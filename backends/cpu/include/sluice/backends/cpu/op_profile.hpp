// sluice/backends/cpu/op_profile.hpp: sluice::cpu::OpProfiler, the per-operation profile of one
// CpuBackend: wall time, calls, activation bytes and (where the arithmetic is known) FLOPs of its
// operations, summed per operation kind and, on request, per kind and input shape; for convs, also
// how their time splits between phases (im2col or transforms, GEMMs: phase_times.hpp).
// Off, an operation pays one test of a bool: no clock is read and nothing is recorded.
//
//   cpu.set_op_profiling(true);
//   network.forward(cpu, x);
//   for (const sluice::cpu::OpTime& t : cpu.take_op_profile()) print(t.op, t.ms, t.flops / (t.ms * 1e6));
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sluice/backends/cpu/phase_times.hpp"
#include "sluice/backends/cpu/tensor.hpp"
#include "sluice/core/shape.hpp"

namespace sluice::cpu {

/// A phase of an operation: its share of the operation's wall time, by the workers' time in it.
struct OpPart {
  std::string name;  ///< "im2col", "GEMM + bias", "input transform", ...
  double ms = 0;
};

/// Wall time of one kind of operation, summed over its calls between two take_op_profile()s.
struct OpTime {
  /// "conv2d/winograd", "conv2d/im2col", "instance_norm", "add", "concat", ...: a conv is named by
  /// the kernel that ran it (winograd, im2col, padded: in place on padded planes, 1x1, depthwise).
  std::string op;
  std::string shape;  ///< by-shape profiles only: the first input's N x C x H x W, then the output's
  double ms = 0;
  std::int64_t calls = 0;
  double bytes = 0;  ///< activation bytes the calls read and wrote, at least: bytes / ms is a bandwidth
  double flops = 0;  ///< multiply-adds x 2 of a direct evaluation (conv, transposed conv, linear); else 0
  std::vector<OpPart> parts;  ///< convs: ms split between their phases (summing to ms); else empty
};

/// Names of a kernel's PhaseTimes phases; null: no such phase.
using PhaseNames = std::array<const char*, PhaseTimes::kMaxPhases>;

/// How finely a profile splits the calls.
enum class OpProfiling { off, by_kind, by_shape };

class OpProfiler {
 public:
  using Clock = std::chrono::steady_clock;

  void set(OpProfiling mode) { mode_ = mode; }
  OpProfiling mode() const { return mode_; }
  bool on() const { return mode_ != OpProfiling::off; }

  /// The start of an operation: the clock when on, nothing otherwise.
  Clock::time_point start() const { return on() ? Clock::now() : Clock::time_point{}; }

  /// The end of operation `op` that began at `t0`, read `in_floats` floats of activations and wrote
  /// `y` (whose float count is added). Returns y, so that an operation ends in `return done(...)`.
  /// `phases`, when given, is how the workers' time split between the phases `names`.
  CpuTensor done(Clock::time_point t0, const char* op, CpuTensor y, const Shape& in, double in_floats,
                 double flops = 0, const PhaseTimes* phases = nullptr, const PhaseNames& names = {}) {
    if (on()) record(t0, op, y.shape(), in, in_floats + static_cast<double>(y.shape().numel()), flops, phases, names);
    return y;
  }

  /// Adds `other`'s entries into this profile (a split batch's per-thread profiles) and empties it.
  void absorb(OpProfiler& other) {
    for (OpTime& t : other.entries_) {
      OpTime& mine = entry(t.op, t.shape);
      mine.ms += t.ms;
      mine.calls += t.calls;
      mine.bytes += t.bytes;
      mine.flops += t.flops;
      for (const OpPart& part : t.parts) add_part(mine, part.name, part.ms);
    }
    other.clear();
  }

  /// The entries, longest first (ties by name), and an empty profile.
  std::vector<OpTime> take() {
    std::vector<OpTime> out = std::move(entries_);
    clear();
    std::ranges::sort(out, [](const OpTime& a, const OpTime& b) {
      return a.ms != b.ms ? a.ms > b.ms : std::tie(a.op, a.shape) < std::tie(b.op, b.shape);
    });
    return out;
  }

 private:
  void record(Clock::time_point t0, const char* op, const Shape& out, const Shape& in, double floats, double flops,
              const PhaseTimes* phases, const PhaseNames& names) {
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    OpTime& t = entry(op, mode_ == OpProfiling::by_shape ? in.to_string() + " -> " + out.to_string() : std::string());
    t.ms += ms;
    t.calls += 1;
    t.bytes += floats * static_cast<double>(sizeof(float));
    t.flops += flops;
    if (phases == nullptr) return;
    double total = 0;
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] != nullptr) total += static_cast<double>(phases->ns[i].load(std::memory_order_relaxed));
    for (std::size_t i = 0; i < names.size() && total > 0; ++i)
      if (names[i] != nullptr)
        add_part(t, names[i], ms * static_cast<double>(phases->ns[i].load(std::memory_order_relaxed)) / total);
  }

  static void add_part(OpTime& t, const std::string& name, double ms) {
    const auto it = std::ranges::find(t.parts, name, &OpPart::name);
    if (it == t.parts.end()) t.parts.push_back({name, ms});
    else it->ms += ms;
  }

  OpTime& entry(const std::string& op, const std::string& shape) {
    std::string key = op + '\0' + shape;
    const auto [it, fresh] = index_.try_emplace(std::move(key), entries_.size());
    if (fresh) {
      entries_.emplace_back();
      entries_.back().op = op;
      entries_.back().shape = shape;
    }
    return entries_[it->second];
  }

  void clear() {
    entries_.clear();
    index_.clear();
  }

  OpProfiling mode_ = OpProfiling::off;
  std::vector<OpTime> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace sluice::cpu
