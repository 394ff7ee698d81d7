// examples/serve/serve_config.hpp: the configuration of sluice_serve -- from an optional JSON file,
// then command-line flags on top -- and the reader of the models' description files (model.json).
// batch_sizes.json has its own reader (sluice/calibrate/batch_sizes_json.hpp, applied in
// batching_setup.hpp). Every bad value is a sluice::Error(errc::invalid_argument) naming it.
// Precedence: flags, then the environment (SLUICE_ADDRESS, SLUICE_PORT, SLUICE_GRPC_PORT), then the
// file, then defaults.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include "sluice/backends/cpu/batch_split.hpp"
#include "sluice/core/error.hpp"
#include "sluice/models/names.hpp"
#include "sluice/weights/regular_file.hpp"
#include "sluice/serve/api.hpp"
#include "sluice/serve/server.hpp"
#include "thread_limit.hpp"

namespace sluice::serve_app {

struct ModelConfig {
  std::string name;            ///< the API's model name (default: the service's name of the network)
  std::string network;         ///< sluice's name of the network (any spelling of models/registry.hpp is read)
  std::string weights;         ///< safetensors file
  std::string backend;          ///< cpu or cuda; empty: the server's --backend
  std::optional<int> device;    ///< CUDA device; default: the server's --device
  std::string precision;        ///< fp32, bf16 (CPU, CUDA), tf32, fp16 (CUDA); empty: the server's --precision
  int input_height = 0, input_width = 0;  ///< 0: from model.json, else 1024
  std::optional<std::array<float, 3>> mean, std;
};

struct ServeConfig {
  std::string address = "127.0.0.1";
  unsigned short port = 8000;
  std::vector<ModelConfig> models;
  std::string default_model;
  std::string batch_sizes;         ///< optional batch_sizes.json
  std::string controller = "slo";  ///< slo or fixed
  double slo_ms = 10000;           ///< the SloController's latency objective (not a deadline)
  double deadline_ms = 300000;     ///< each image's deadline, 504 past it (0: none); the backend waits 300 s
  std::size_t max_batch_size = 16;
  double max_queue_delay_ms = 5;
  std::size_t max_queue_size = 256;
  std::size_t lanes = 1;
  std::size_t cpu_threads = 1;      ///< the Batcher's prepare/finish pool
  std::size_t backend_threads = 0;  ///< threads of each lane's CPU backend (0: cores / lanes)
  cpu::BatchSplit batch_split = cpu::BatchSplit::automatic;  ///< CPU: CpuOptions::batch_split
  std::string backend = "cpu";      ///< models' backend unless they name one: cpu or cuda
  int device = 0;                   ///< models' CUDA device unless they name one
  std::string precision = "fp32";   ///< models' precision unless they name one
  std::size_t io_threads = 2;       ///< threads running the io_context
  std::size_t warmup_runs = 2;      ///< warm-up runs per batch size before serving (0: none)
  std::size_t decode_threads = 1;   ///< threads decoding uploads before they are queued (shared by the models)
  /// The most one image's decode may allocate: 1 GiB takes an 8-bit RGB PNG or TIFF at the pixel
  /// limit (200 Mpx x 3 bytes = 600 MB; a large JPEG decodes reduced, far below) and refuses a
  /// 16-bit RGBA one of 45 Mpx or more (24 bytes a pixel with its float copy), which a 1 KB
  /// compressed file can declare.
  std::size_t max_decode_bytes = std::size_t{1} << 30;
  serve::ServerLimits server;
  serve::ApiLimits api;
  /// The Open Inference Protocol's gRPC endpoint, on `address` too (0: off; builds with the gRPC
  /// transport only, docs/grpc.md).
  unsigned short grpc_port = 0;
  std::optional<std::size_t> grpc_max_message_bytes;  ///< none: the HTTP body limit, max_body_bytes
  std::size_t grpc_max_in_flight = 256;                ///< ModelInfer calls in flight; past it RESOURCE_EXHAUSTED
};

namespace detail {

inline std::string read_text(const std::filesystem::path& path) { return weights::read_regular_file(path); }

inline nlohmann::json read_json(const std::filesystem::path& path) {
  try {
    return nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(errc::invalid_argument, path.string() + ": " + e.what());
  }
}

inline std::array<float, 3> triple(const nlohmann::json& j, const std::string& what) {
  if (!j.is_array() || j.size() != 3) throw Error(errc::invalid_argument, what + " must be 3 numbers");
  return {j[0].get<float>(), j[1].get<float>(), j[2].get<float>()};
}

inline void read_input_size(const nlohmann::json& j, ModelConfig& m) {
  if (j.is_object()) {
    m.input_height = j.at("height").get<int>();
    m.input_width = j.at("width").get<int>();
  } else if (j.is_array() && j.size() == 2) {
    m.input_height = j[0].get<int>();
    m.input_width = j[1].get<int>();
  } else if (j.is_number_integer()) {
    m.input_height = m.input_width = j.get<int>();
  } else {
    throw Error(errc::invalid_argument, "input_size must be {height, width}, [h, w] or a number");
  }
}

/// A model described by a model.json (network, weights relative to it, input size, mean, std).
inline void read_model_json(const std::filesystem::path& path, ModelConfig& m) {
  const auto j = read_json(path);
  if (m.network.empty()) m.network = j.at("network").get<std::string>();
  if (m.weights.empty()) {
    const std::filesystem::path w = j.at("weights").get<std::string>();
    m.weights = (w.is_absolute() ? w : path.parent_path() / w).string();
  }
  if (m.input_height == 0 && j.contains("input_size")) read_input_size(j["input_size"], m);
  if (!m.mean && j.contains("mean")) m.mean = triple(j["mean"], "mean");
  if (!m.std && j.contains("std")) m.std = triple(j["std"], "std");
}

/// Makes the network sluice's name, names an unnamed model by the service's name of its network,
/// and refuses weights that are not a regular file (a FIFO would block the load after listening).
inline void finish_model(ModelConfig& m) {
  if (!m.network.empty()) m.network = models::network_name(m.network);
  if (m.name.empty() && !m.network.empty()) m.name = std::string(models::find_network(m.network)->service_name);
  std::error_code ec;
  if (!m.weights.empty() && !std::filesystem::is_regular_file(m.weights, ec))
    throw Error(errc::invalid_argument, "model '" + m.name + "': weights '" + m.weights + "' is not a regular file");
}

inline ModelConfig model_from_json(const nlohmann::json& j) {
  ModelConfig m;
  m.name = j.value("name", "");
  m.network = j.value("network", "");
  m.weights = j.value("weights", "");
  m.backend = j.value("backend", "");
  if (j.contains("device")) m.device = j["device"].get<int>();
  m.precision = j.value("precision", "");
  if (j.contains("input_size")) read_input_size(j["input_size"], m);
  if (j.contains("mean")) m.mean = triple(j["mean"], "mean");
  if (j.contains("std")) m.std = triple(j["std"], "std");
  if (j.contains("model_json")) read_model_json(j["model_json"].get<std::string>(), m);
  finish_model(m);
  return m;
}

/// A port number from a JSON value or an environment variable's text.
inline unsigned short port_number(const nlohmann::json& v, const std::string& what) {
  if (v.is_string()) {
    const std::string t = v.get<std::string>();
    if (t.empty() || t.size() > 5 || !std::all_of(t.begin(), t.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
        std::stoul(t) > 65535)
      throw Error(errc::invalid_argument, what + " must be a port number 0 .. 65535, got '" + t + "'");
    return static_cast<unsigned short>(std::stoul(t));
  }
  if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > 65535)
    throw Error(errc::invalid_argument, what + " must be a port number 0 .. 65535");
  return static_cast<unsigned short>(v.get<long long>());
}

inline std::chrono::milliseconds ms(double v, const std::string& what) {
  if (!(v >= 0) || v > 1e9) throw Error(errc::invalid_argument, what + " must be >= 0 ms");
  return std::chrono::milliseconds(static_cast<long long>(v));
}

/// Applies one setting by its name (shared by the JSON file and the flags).
inline void apply(ServeConfig& c, const std::string& key, const nlohmann::json& v) {
  auto size = [&] {
    if (!v.is_number_integer() || v.get<long long>() < 0)
      throw Error(errc::invalid_argument, key + " must be a non-negative integer");
    return v.get<std::size_t>();
  };
  auto number = [&] {
    if (!v.is_number()) throw Error(errc::invalid_argument, key + " must be a number");
    return v.get<double>();
  };
  auto threads = [&] {  // a count of threads, or of lanes (a thread and a backend each)
    const std::size_t n = size();
    if (n > examples::kMaxThreads)
      throw Error(errc::invalid_argument, key + " must be at most " + std::to_string(examples::kMaxThreads));
    return n;
  };
  if (key == "address") {
    c.address = v.get<std::string>();
    boost::system::error_code ec;
    (void)boost::asio::ip::make_address(c.address, ec);
    if (ec) throw Error(errc::invalid_argument, "address '" + c.address + "' is not an IPv4 or IPv6 address");
  }
  else if (key == "port") {
    const std::size_t p = size();
    if (p > 65535) throw Error(errc::invalid_argument, "port must be 0 .. 65535");
    c.port = static_cast<unsigned short>(p);
  }
  else if (key == "grpc_port") c.grpc_port = port_number(v, key);
  else if (key == "grpc_max_message_mib") {
    const std::size_t mib = size();
    if (mib == 0 || mib > 2047) throw Error(errc::invalid_argument, "grpc_max_message_mib must be 1 .. 2047 (gRPC's limit is 2 GiB)");
    c.grpc_max_message_bytes = mib << 20;
  }
  else if (key == "grpc_max_in_flight") {
    c.grpc_max_in_flight = size();
    if (c.grpc_max_in_flight == 0) throw Error(errc::invalid_argument, "grpc_max_in_flight must be positive");
  }
  else if (key == "default_model") c.default_model = v.get<std::string>();
  else if (key == "batch_sizes") c.batch_sizes = v.get<std::string>();
  else if (key == "controller") {
    c.controller = v.get<std::string>();
    if (c.controller != "slo" && c.controller != "fixed")
      throw Error(errc::invalid_argument, "controller must be slo or fixed");
  }
  else if (key == "slo_ms") {
    c.slo_ms = number();
    if (!(c.slo_ms > 0)) throw Error(errc::invalid_argument, "slo_ms must be positive (the controller's objective)");
  }
  else if (key == "deadline_ms") {
    c.deadline_ms = number();
    if (!(c.deadline_ms >= 0) || c.deadline_ms > 1e10)
      throw Error(errc::invalid_argument, "deadline_ms must be >= 0 (0: no deadline)");
  }
  else if (key == "max_batch_size") c.max_batch_size = size();
  else if (key == "max_queue_delay_ms") c.max_queue_delay_ms = number();
  else if (key == "max_queue_size") c.max_queue_size = size();
  else if (key == "lanes") c.lanes = threads();
  else if (key == "cpu_threads") c.cpu_threads = threads();
  else if (key == "backend_threads") c.backend_threads = threads();
  else if (key == "batch_split") c.batch_split = cpu::parse_batch_split(v.get<std::string>());
  else if (key == "backend") c.backend = v.get<std::string>();
  else if (key == "device") c.device = static_cast<int>(size());
  else if (key == "precision") c.precision = v.get<std::string>();
  else if (key == "io_threads") c.io_threads = threads();
  else if (key == "decode_threads") {
    c.decode_threads = threads();
    if (c.decode_threads == 0) throw Error(errc::invalid_argument, "decode_threads must be positive");
  }
  else if (key == "max_connections_per_peer") c.server.max_connections_per_peer = size();
  else if (key == "pressure_header_timeout_ms") c.server.pressure_header_timeout = ms(number(), key);
  else if (key == "memory_budget_mib") c.api.memory_budget_bytes = size() << 20;
  else if (key == "max_decode_mib") {
    c.max_decode_bytes = size() << 20;
    if (c.max_decode_bytes == 0) throw Error(errc::invalid_argument, "max_decode_mib must be positive");
  }

  else if (key == "warmup_runs") c.warmup_runs = size();
  else if (key == "max_body_bytes") c.server.max_body_bytes = size();
  else if (key == "spool_dir") c.server.spool_dir = v.get<std::string>();
  else if (key == "max_spool_mib") c.server.max_spool_bytes = size() << 20;
  else if (key == "spool_threshold_mib") c.server.spool_threshold_bytes = size() << 20;
  else if (key == "max_header_bytes") c.server.max_header_bytes = size();
  else if (key == "max_connections") c.server.max_connections = size();
  else if (key == "header_timeout_ms") c.server.header_timeout = ms(number(), key);
  else if (key == "body_timeout_ms") c.server.body_timeout = ms(number(), key);
  else if (key == "write_timeout_ms") c.server.write_timeout = ms(number(), key);
  else if (key == "drain_timeout_ms") c.server.drain_timeout = ms(number(), key);
  else if (key == "shutdown_grace_ms") c.server.shutdown_grace = ms(number(), key);
  else if (key == "max_pixels") c.api.max_pixels = size();
  else if (key == "max_files") c.api.max_files = size();
  else if (key == "retry_after_s") c.api.retry_after_s = static_cast<unsigned>(size());
  else throw Error(errc::invalid_argument, "unknown setting '" + key + "'");
}

}  // namespace detail

/// Reads a JSON configuration file: the settings above as keys (limits may also sit in a "limits"
/// object), and "models": [{name, network, weights, backend, device, precision, input_size, mean, std} or
/// {name, model_json}].
inline void load_config_file(ServeConfig& c, const std::filesystem::path& path) {
  const auto j = detail::read_json(path);
  if (!j.is_object()) throw Error(errc::invalid_argument, path.string() + ": expected a JSON object");
  try {
    for (const auto& [k, v] : j.items()) {
      if (k == "models") {
        for (const auto& m : v) c.models.push_back(detail::model_from_json(m));
      } else if (k == "limits") {
        for (const auto& [lk, lv] : v.items()) detail::apply(c, lk, lv);
      } else {
        detail::apply(c, k, v);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(errc::invalid_argument, path.string() + ": " + e.what());
  }
}

/// A --model flag: `[name=]path/to/model.json`.
inline ModelConfig model_from_flag(std::string_view flag) {
  ModelConfig m;
  std::string path(flag);
  if (const auto eq = flag.find('='); eq != std::string_view::npos) {
    m.name = std::string(flag.substr(0, eq));
    path = std::string(flag.substr(eq + 1));
  }
  detail::read_model_json(path, m);
  detail::finish_model(m);
  return m;
}

/// SLUICE_ADDRESS, SLUICE_PORT and SLUICE_GRPC_PORT from `env` (std::getenv in the program), over the file's values
/// and under the flags'. A bad value is an Error naming the variable.
template <class Getenv>
void apply_environment(ServeConfig& c, Getenv&& env) {
  if (const char* a = env("SLUICE_ADDRESS"); a && *a) {
    try {
      detail::apply(c, "address", std::string(a));
    } catch (const Error& e) {
      throw Error(errc::invalid_argument, "SLUICE_ADDRESS: " + serve::message_of(e));
    }
  }
  if (const char* p = env("SLUICE_PORT"); p && *p) {
    const std::string v(p);
    if (v.size() > 5 || !std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
        std::stoul(v) > 65535)
      throw Error(errc::invalid_argument, "SLUICE_PORT must be a port number 0 .. 65535, got '" + v + "'");
    c.port = static_cast<unsigned short>(std::stoul(v));
  }
  if (const char* p = env("SLUICE_GRPC_PORT"); p && *p) c.grpc_port = detail::port_number(std::string(p), "SLUICE_GRPC_PORT");
}

}  // namespace sluice::serve_app
