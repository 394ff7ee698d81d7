// examples/calibrate/svg_chart.hpp: a self-contained SVG chart of a calibration -- throughput (left
// axis) and p95 latency (right axis) against batch size, the latency budget, the chosen optimal and
// max-safe sizes marked, failed sizes crossed out. No dependencies; write the string to a file.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "sluice/calibrate/calibration_result.hpp"
#include "sluice/core/error.hpp"

namespace sluice::calibrate {

namespace detail {
inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}
/// A "nice" axis maximum (1, 2, 2.5 or 5 times a power of ten) at or above v.
inline double nice_max(double v) {
  if (v <= 0) return 1.0;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= v) return m * p;
  return 10.0 * p;
}
}  // namespace detail

inline std::string svg_chart(const CalibrationResult& r) {
  using detail::fmt;
  const double W = 760, H = 440, L = 80, R = 80, T = 60, B = 60;
  const double pw = W - L - R, ph = H - T - B;
  std::size_t max_n = 1;
  double max_tp = 0, max_p95 = 0;
  for (const auto& s : r.sizes) {
    max_n = std::max(max_n, s.batch_size);
    if (!s.success) continue;
    max_tp = std::max(max_tp, s.throughput);
    max_p95 = std::max(max_p95, std::chrono::duration<double, std::milli>(s.p95).count());
  }
  const double budget_ms = std::chrono::duration<double, std::milli>(r.latency_budget).count();
  if (budget_ms > 0) max_p95 = std::max(max_p95, budget_ms);
  const double tp_axis = detail::nice_max(max_tp * 1.05), ms_axis = detail::nice_max(max_p95 * 1.05);
  const double x_axis = static_cast<double>(max_n) + 1.0;
  auto X = [&](double n) { return L + pw * n / x_axis; };
  auto Ytp = [&](double v) { return T + ph * (1.0 - v / tp_axis); };
  auto Yms = [&](double v) { return T + ph * (1.0 - v / ms_axis); };

  std::string s;
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fmt("%.0f", W) + "\" height=\"" + fmt("%.0f", H) +
       "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + fmt("%.0f", W / 2) + "\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">" +
       detail::xml_escape(r.model_name) + ": throughput and p95 latency by batch size</text>\n";
  // Grid and axes.
  for (int i = 0; i <= 5; ++i) {
    const double y = T + ph * i / 5.0;
    s += "<line x1=\"" + fmt("%.1f", L) + "\" y1=\"" + fmt("%.1f", y) + "\" x2=\"" + fmt("%.1f", L + pw) + "\" y2=\"" +
         fmt("%.1f", y) + "\" stroke=\"#ddd\"/>\n";
    s += "<text x=\"" + fmt("%.1f", L - 6) + "\" y=\"" + fmt("%.1f", y + 4) + "\" text-anchor=\"end\" fill=\"#1f77b4\">" +
         fmt("%.3g", tp_axis * (5 - i) / 5.0) + "</text>\n";
    s += "<text x=\"" + fmt("%.1f", L + pw + 6) + "\" y=\"" + fmt("%.1f", y + 4) + "\" fill=\"#d62728\">" +
         fmt("%.4g", ms_axis * (5 - i) / 5.0) + "</text>\n";
  }
  s += "<rect x=\"" + fmt("%.1f", L) + "\" y=\"" + fmt("%.1f", T) + "\" width=\"" + fmt("%.1f", pw) + "\" height=\"" +
       fmt("%.1f", ph) + "\" fill=\"none\" stroke=\"black\"/>\n";
  for (const auto& z : r.sizes)
    s += "<text x=\"" + fmt("%.1f", X(static_cast<double>(z.batch_size))) + "\" y=\"" + fmt("%.1f", T + ph + 16) +
         "\" text-anchor=\"middle\">" + std::to_string(z.batch_size) + "</text>\n";
  s += "<text x=\"" + fmt("%.1f", L + pw / 2) + "\" y=\"" + fmt("%.1f", H - 14) +
       "\" text-anchor=\"middle\">batch size</text>\n";
  s += "<text transform=\"translate(20," + fmt("%.1f", T + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\" fill=\"#1f77b4\">throughput (items/s)</text>\n";
  s += "<text transform=\"translate(" + fmt("%.1f", W - 18) + "," + fmt("%.1f", T + ph / 2) +
       ") rotate(90)\" text-anchor=\"middle\" fill=\"#d62728\">p95 latency (ms)</text>\n";
  // The budget and the chosen sizes.
  if (budget_ms > 0)
    s += "<line x1=\"" + fmt("%.1f", L) + "\" y1=\"" + fmt("%.1f", Yms(budget_ms)) + "\" x2=\"" + fmt("%.1f", L + pw) +
         "\" y2=\"" + fmt("%.1f", Yms(budget_ms)) + "\" stroke=\"#d62728\" stroke-dasharray=\"2,4\"/>\n";
  auto marker = [&](std::size_t n, const char* color, const std::string& label, double dy) {
    const double x = X(static_cast<double>(n));
    s += "<line x1=\"" + fmt("%.1f", x) + "\" y1=\"" + fmt("%.1f", T) + "\" x2=\"" + fmt("%.1f", x) + "\" y2=\"" +
         fmt("%.1f", T + ph) + "\" stroke=\"" + color + "\" stroke-width=\"2\" stroke-dasharray=\"6,4\"/>\n";
    const bool right = x > L + 0.75 * pw;  // keep the label inside the plot
    s += "<text x=\"" + fmt("%.1f", right ? x - 4 : x + 4) + "\" y=\"" + fmt("%.1f", T + 14 + dy) + "\" fill=\"" +
         color + "\"" + (right ? " text-anchor=\"end\"" : "") + ">" + label + "</text>\n";
  };
  marker(r.optimal_batch_size, "#2ca02c", "optimal " + std::to_string(r.optimal_batch_size), 0);
  marker(r.max_safe_batch_size, "#9467bd", "max safe " + std::to_string(r.max_safe_batch_size), 16);
  // The two series.
  std::string tp_pts, ms_pts;
  for (const auto& z : r.sizes) {
    if (!z.success) continue;
    const double x = X(static_cast<double>(z.batch_size));
    const double p95 = std::chrono::duration<double, std::milli>(z.p95).count();
    tp_pts += fmt("%.1f", x) + "," + fmt("%.1f", Ytp(z.throughput)) + " ";
    ms_pts += fmt("%.1f", x) + "," + fmt("%.1f", Yms(p95)) + " ";
    s += "<circle cx=\"" + fmt("%.1f", x) + "\" cy=\"" + fmt("%.1f", Ytp(z.throughput)) +
         "\" r=\"4\" fill=\"#1f77b4\"/>\n";
    s += "<rect x=\"" + fmt("%.1f", x - 4) + "\" y=\"" + fmt("%.1f", Yms(p95) - 4) +
         "\" width=\"8\" height=\"8\" fill=\"#d62728\"/>\n";
  }
  s += "<polyline points=\"" + tp_pts + "\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n";
  s += "<polyline points=\"" + ms_pts + "\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/>\n";
  for (const auto& z : r.sizes) {
    if (z.success) continue;
    const double x = X(static_cast<double>(z.batch_size)), y = T + ph - 10;
    s += "<path d=\"M" + fmt("%.1f", x - 6) + "," + fmt("%.1f", y - 6) + " l12,12 m0,-12 l-12,12\" stroke=\"black\" "
         "stroke-width=\"2\"/>\n<text x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.1f", y - 10) +
         "\" text-anchor=\"middle\">failed</text>\n";
  }
  // Legend, above the plot where it hides no point.
  s += "<circle cx=\"" + fmt("%.1f", L + 6) + "\" cy=\"" + fmt("%.1f", T - 14) + "\" r=\"4\" fill=\"#1f77b4\"/>"
       "<text x=\"" + fmt("%.1f", L + 14) + "\" y=\"" + fmt("%.1f", T - 10) + "\">throughput</text>\n";
  s += "<rect x=\"" + fmt("%.1f", L + 102) + "\" y=\"" + fmt("%.1f", T - 18) + "\" width=\"8\" height=\"8\" "
       "fill=\"#d62728\"/><text x=\"" + fmt("%.1f", L + 116) + "\" y=\"" + fmt("%.1f", T - 10) +
       "\">p95 latency</text>\n";
  if (budget_ms > 0)
    s += "<line x1=\"" + fmt("%.1f", L + 216) + "\" y1=\"" + fmt("%.1f", T - 14) + "\" x2=\"" + fmt("%.1f", L + 240) +
         "\" y2=\"" + fmt("%.1f", T - 14) + "\" stroke=\"#d62728\" stroke-dasharray=\"2,4\"/><text x=\"" +
         fmt("%.1f", L + 246) + "\" y=\"" + fmt("%.1f", T - 10) + "\">p95 budget " + fmt("%.0f", budget_ms) +
         " ms</text>\n";
  s += "</svg>\n";
  return s;
}

inline void write_svg_chart(const std::string& path, const CalibrationResult& r) {
  std::ofstream out(path);
  if (!out) throw Error(errc::invalid_argument, "svg chart: cannot write " + path);
  out << svg_chart(r);
}

}  // namespace sluice::calibrate
