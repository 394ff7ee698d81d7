// bench/control/miss_breakdown.hpp: why a policy misses on a trace (bench_control_sim --why). For
// every policy it counts the misses by kind (late, shed, rejected at admission, expired in the
// queue) and by part of the trace: before and after a latency step (the first tenth after it
// separately: adaptation), or per batch key on a size mix. Against the SloController it counts the
// requests one of the two met and the other missed, by how the loser missed them: a request the
// controller dropped that a competitor served in time was dropped needlessly; one it served late
// that a competitor met was planned with a wrong latency.
#pragma once

#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "slo_grid.hpp"

namespace sluice::bench {

/// The part of the trace request i falls in: 0 before a latency step, 1 in the first tenth after
/// it, 2 after that; on a size mix its batch key; else 0.
inline std::size_t part_of(const Trace& t, std::size_t i) {
  if (!t.key_cost.empty()) return t.key_of(i);
  if (t.name.starts_with("latency step")) {
    const double s = t.arrivals_s[i], half = t.duration_s / 2;
    return s < half ? 0 : s < half + 0.1 * half ? 1 : 2;
  }
  return 0;
}

inline std::vector<std::string> part_names(const Trace& t) {
  if (!t.key_cost.empty()) {
    std::vector<std::string> v;
    for (std::size_t k = 0; k < t.key_cost.size(); ++k) {
      char b[48];
      std::snprintf(b, sizeof b, "key %zu (x%.1f)", k, t.key_cost[k]);
      v.push_back(b);
    }
    return v;
  }
  if (t.name.starts_with("latency step")) return {"before step", "step +0-10%", "step +10-100%"};
  return {"all"};
}

inline void print_miss_breakdown(const TraceRows& t) {
  const auto parts = part_names(t.trace);
  constexpr std::size_t kKinds = 5;
  std::printf("\n#### why: %s\n\n| policy | part | late | shed | rejected | expired | missed |\n|---|---|---|---|---|---|---|\n",
              t.spec.name.c_str());
  for (const PolicyRow& row : t.rows) {
    std::vector<std::array<std::size_t, kKinds>> n(parts.size(), std::array<std::size_t, kKinds>{});
    for (std::size_t i = 0; i < row.r.outcome.size(); ++i)
      ++n[part_of(t.trace, i)][static_cast<std::size_t>(row.r.outcome[i])];
    for (std::size_t p = 0; p < parts.size(); ++p)
      std::printf("| %s | %s | %zu | %zu | %zu | %zu | %zu |\n", row.policy.c_str(), parts[p].c_str(), n[p][1], n[p][3],
                  n[p][2], n[p][4], n[p][1] + n[p][2] + n[p][3] + n[p][4]);
  }
  // Request by request against the SloController (the last row).
  const auto& slo = t.rows.back().r.outcome;
  std::printf("\n| vs slo controller | slo missed, other met: by slo's miss (late/shed/rej/exp) | other missed, slo met: by other's miss |\n|---|---|---|\n");
  for (std::size_t r = 0; r + 1 < t.rows.size(); ++r) {
    const auto& other = t.rows[r].r.outcome;
    std::array<std::size_t, kKinds> slo_lost{}, slo_won{};
    for (std::size_t i = 0; i < slo.size() && i < other.size(); ++i) {
      if (slo[i] != Outcome::on_time && other[i] == Outcome::on_time) ++slo_lost[static_cast<std::size_t>(slo[i])];
      if (slo[i] == Outcome::on_time && other[i] != Outcome::on_time) ++slo_won[static_cast<std::size_t>(other[i])];
    }
    std::printf("| %s | %zu/%zu/%zu/%zu | %zu/%zu/%zu/%zu |\n", t.rows[r].policy.c_str(), slo_lost[1], slo_lost[3],
                slo_lost[2], slo_lost[4], slo_won[1], slo_won[3], slo_won[2], slo_won[4]);
  }
}

}  // namespace sluice::bench
