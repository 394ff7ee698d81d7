// sluice/serve/server_limits.hpp: the connection layer's limits -- body and header sizes, spooling,
// connection caps, read/write timeouts and the shutdown's grace -- with their defaults
// (docs/http-api.md, "Limits and defaults") and the check that none makes every request fail.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice::serve {

struct ServerLimits {
  std::size_t max_body_bytes = 256ull * 1024 * 1024;  ///< larger bodies: 413
  /// Bodies larger than this, and chunked ones, are spooled to disk instead of held in memory.
  std::size_t spool_threshold_bytes = 8ull * 1024 * 1024;
  /// Spooled body bytes at once (disk, not the memory budget); past it: 503. 0: never spool.
  std::size_t max_spool_bytes = 2ull * 1024 * 1024 * 1024;
  std::string spool_dir;  ///< where spooled bodies go; empty: $TMPDIR, else /tmp
  std::size_t max_header_bytes = 16 * 1024;          ///< larger headers: 431
  /// Open connections. At the cap, the connection waiting longest for a header is closed to make
  /// room; when none is waiting (all are busy), the new one gets 503 and is closed.
  std::size_t max_connections = 256;
  /// Open connections per client address; at it, the same rule among that address's connections.
  std::size_t max_connections_per_peer = 64;
  Duration header_timeout = std::chrono::seconds(10);  ///< also the keep-alive idle timeout
  /// The header timeout while more than 3/4 of max_connections are open.
  Duration pressure_header_timeout = std::chrono::seconds(1);
  Duration body_timeout = std::chrono::seconds(60);
  Duration write_timeout = std::chrono::seconds(30);
  Duration drain_timeout = std::chrono::seconds(60);  ///< longest wait for running requests at shutdown
  /// At shutdown, how long a request already arriving (its header begun, its body being sent) may
  /// still take to arrive; idle connections close at once.
  Duration shutdown_grace = std::chrono::seconds(1);

  /// Throws sluice::Error(errc::invalid_argument) naming the first limit that makes every request fail.
  void validate() const {
    auto positive = [](bool ok, const char* what) {
      if (!ok) throw Error(errc::invalid_argument, std::string(what) + " must be positive");
    };
    positive(max_body_bytes > 0, "max_body_bytes");
    if (max_spool_bytes > 0 && max_spool_bytes < max_body_bytes && spool_threshold_bytes < max_body_bytes)
      throw Error(errc::invalid_argument, "max_spool_bytes must hold a body of max_body_bytes");
    positive(max_header_bytes > 0, "max_header_bytes");
    positive(max_connections > 0, "max_connections");
    positive(max_connections_per_peer > 0, "max_connections_per_peer");
    positive(header_timeout > Duration::zero(), "header_timeout");
    positive(pressure_header_timeout > Duration::zero(), "pressure_header_timeout");
    positive(body_timeout > Duration::zero(), "body_timeout");
    positive(write_timeout > Duration::zero(), "write_timeout");
  }
};

}  // namespace sluice::serve
