// sluice/serve/prometheus_text.hpp: regroups a Prometheus text exposition so that every metric
// family appears once -- its HELP and TYPE lines, then all its samples. The server renders its
// metrics part by part (HTTP, then each model's Batcher), so with two models the family
// sluice_queue_depth would otherwise appear twice, with two TYPE lines: the text format (0.0.4)
// requires one TYPE line per family and a family's samples together, and OpenMetrics parsers
// reject the repeat.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::serve {

/// `text` with each family's lines brought together, families in order of first appearance; the
/// first HELP and TYPE line of a family is kept, repeats are dropped. Histogram and summary
/// samples (_bucket, _sum, _count) join the family their TYPE line declared.
inline std::string group_metric_families(std::string_view text) {
  struct Family {
    std::string help, type;
    std::vector<std::string_view> samples;
  };
  std::vector<std::string> order;
  std::map<std::string, Family, std::less<>> families;
  std::map<std::string, std::string, std::less<>> kinds;  // family -> its TYPE ("histogram", ...)

  auto family_for = [&](const std::string& name) -> Family& {
    auto it = families.find(name);
    if (it == families.end()) {
      order.push_back(name);
      it = families.emplace(name, Family{}).first;
    }
    return it->second;
  };
  // The family a sample belongs to: its name, or the histogram/summary whose _bucket/_sum/_count it is.
  auto family_of_sample = [&](std::string_view name) {
    for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix) {
        const std::string base(name.substr(0, name.size() - suffix.size()));
        const auto k = kinds.find(base);
        if (k != kinds.end() && (k->second == "histogram" || k->second == "summary")) return base;
      }
    }
    return std::string(name);
  };

  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const std::string_view rest = line.substr(7);
      const std::string name(rest.substr(0, rest.find(' ')));
      Family& f = family_for(name);
      std::string& slot = line[2] == 'H' ? f.help : f.type;
      if (slot.empty()) slot.assign(line);
      if (line[2] == 'T' && rest.size() > name.size() + 1) kinds.emplace(name, std::string(rest.substr(name.size() + 1)));
      continue;
    }
    if (line.front() == '#') continue;  // another comment: not part of any family
    const std::size_t name_end = line.find_first_of("{ ");
    family_for(family_of_sample(line.substr(0, name_end))).samples.push_back(line);
  }

  std::string out;
  out.reserve(text.size());
  for (const std::string& name : order) {
    const Family& f = families.at(name);
    if (!f.help.empty()) out.append(f.help).append("\n");
    if (!f.type.empty()) out.append(f.type).append("\n");
    for (std::string_view s : f.samples) out.append(s).append("\n");
  }
  return out;
}

}  // namespace sluice::serve
