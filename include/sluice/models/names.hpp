// sluice/models/names.hpp: the one table of the networks' names -- sluice's, the spheroid
// segmentation service's (what its Node backend sends as `model`: resunet_advanced for
// advanced_resunet) and other accepted spellings -- for load_network() and the server alike.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/core/error.hpp"

namespace sluice::models {

/// One network's names: sluice's, the service's (what its Node backend sends as `model`), and any
/// other spelling accepted for it.
struct NetworkNames {
  std::string_view name;
  std::string_view service_name;
  std::array<std::string_view, 2> aliases;  ///< empty entries unused
};

/// The one alias table: used by load_network() and by the server to resolve a request's model.
inline constexpr std::array<NetworkNames, 4> kNetworkAliases = {{
    {"hrnet", "hrnet", {"", ""}},
    {"resunet_small", "resunet_small", {"", ""}},
    {"advanced_resunet", "resunet_advanced", {"", ""}},
    {"cbam_resunet", "cbam_resunet", {"", ""}},
}};

/// The table entry of `name` (sluice's name, the service's name or an alias), if any.
inline std::optional<NetworkNames> find_network(std::string_view name) {
  for (const auto& n : kNetworkAliases) {
    if (name == n.name || name == n.service_name) return n;
    for (auto a : n.aliases)
      if (!a.empty() && name == a) return n;
  }
  return std::nullopt;
}

/// Every spelling of one network: sluice's name first, then the service's, then the aliases.
inline std::vector<std::string> spellings(const NetworkNames& n) {
  std::vector<std::string> out{std::string(n.name)};
  if (n.service_name != n.name) out.emplace_back(n.service_name);
  for (auto a : n.aliases)
    if (!a.empty()) out.emplace_back(a);
  return out;
}

/// "hrnet, resunet_small, advanced_resunet (resunet_advanced), cbam_resunet" for errors.
inline std::string known_network_names() {
  std::string known;
  for (const auto& n : kNetworkAliases) {
    const auto all = spellings(n);
    known += (known.empty() ? "" : ", ") + all.front();
    std::string others;
    for (std::size_t i = 1; i < all.size(); ++i) others += (others.empty() ? "" : ", ") + all[i];
    if (!others.empty()) known += " (" + others + ")";
  }
  return known;
}

/// sluice's name of the network `name` names; throws sluice::Error(invalid_argument) listing the
/// known names when it names none.
inline std::string network_name(std::string_view name) {
  if (const auto n = find_network(name)) return std::string(n->name);
  throw Error(errc::invalid_argument, "unknown network '" + std::string(name) + "' (known: " + known_network_names() + ")");
}

}  // namespace sluice::models
