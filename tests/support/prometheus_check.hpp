// A checker of the Prometheus text exposition format (version 0.0.4) for tests: what a scraper
// would reject or misread.
#pragma once

#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sluice::test {

/// The problems of a Prometheus text exposition (empty when it is well-formed): every line a
/// `# HELP name text`, a `# TYPE name type` or a sample `name{label="value",...} number`; one TYPE
/// per family, before its samples; a family's samples together; metric and label names as the
/// format allows; counters named *_total; histograms with ascending `le` buckets whose counts never
/// fall and whose +Inf bucket equals _count.
inline std::vector<std::string> exposition_problems(const std::string& text) {
  static const std::regex sample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? ([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))$)re");
  static const std::regex label(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)")re");
  static const std::regex type_line(R"re(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)re");
  static const std::regex help_line(R"re(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$)re");
  std::vector<std::string> problems;
  std::map<std::string, std::string> types;
  std::set<std::string> closed;  // families whose samples ended
  std::string current;
  struct Series { double last_le = -1; double last_count = -1; double inf = -1; double count = -1; };
  std::map<std::string, Series> hist;  // family + labels without le
  std::istringstream in(text);
  std::string line;
  auto family_of = [&](const std::string& name) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
        const std::string base = name.substr(0, name.size() - s.size());
        if (types.count(base) && types[base] == "histogram") return base;
      }
    }
    return name;
  };
  while (std::getline(in, line)) {
    std::smatch m;
    if (line.empty()) continue;
    if (std::regex_match(line, m, type_line)) {
      if (types.count(m[1])) problems.push_back("second TYPE for " + m[1].str());
      types[m[1]] = m[2];
      if (m[2] == "counter" && !m[1].str().ends_with("_total")) problems.push_back("counter without _total: " + m[1].str());
      continue;
    }
    if (std::regex_match(line, m, help_line)) continue;
    if (line[0] == '#') {
      problems.push_back("bad comment line: " + line);
      continue;
    }
    if (!std::regex_match(line, m, sample)) {
      problems.push_back("bad sample line: " + line);
      continue;
    }
    const std::string name = m[1], family = family_of(name);
    if (!types.count(family)) problems.push_back("sample before its TYPE: " + line);
    if (family != current) {
      if (closed.count(family)) problems.push_back("samples of " + family + " not together");
      if (!current.empty()) closed.insert(current);
      current = family;
    }
    if (types[family] != "histogram") continue;
    std::string labels_without_le, le;
    const std::string labels = m[3];
    for (std::sregex_iterator it(labels.begin(), labels.end(), label), end; it != end; ++it) {
      if ((*it)[1] == "le") le = (*it)[2];
      else labels_without_le += (*it)[0].str() + ",";
    }
    Series& s = hist[family + "{" + labels_without_le + "}"];
    const double value = std::strtod(m[4].str().c_str(), nullptr);
    if (name == family + "_bucket") {
      const double bound = le == "+Inf" ? 1e308 : std::strtod(le.c_str(), nullptr);
      if (le.empty()) problems.push_back("bucket without le: " + line);
      if (bound <= s.last_le) problems.push_back("le not ascending: " + line);
      if (value < s.last_count) problems.push_back("bucket count falls: " + line);
      s.last_le = bound;
      s.last_count = value;
      if (le == "+Inf") s.inf = value;
    } else if (name == family + "_count") {
      s.count = value;
    }
  }
  for (const auto& [series, s] : hist)
    if (s.inf < 0 || s.inf != s.count) problems.push_back("+Inf bucket differs from _count: " + series);
  return problems;
}

}  // namespace sluice::test
