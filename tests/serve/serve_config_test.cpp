// sluice_serve's configuration (examples/serve/serve_config.hpp): the listen address and port from
// the environment, the deadline apart from the controller's objective, and the service's network
// names in a configuration file.
#include "serve/serve_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sluice::serve_app {
namespace {

auto env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(ServeConfig, AddressAndPortFromTheEnvironment) {
  ServeConfig c;
  apply_environment(c, env_of({}));
  EXPECT_EQ(c.address, "127.0.0.1");  // a laptop's default stays
  EXPECT_EQ(c.port, 8000);
  apply_environment(c, env_of({{"SLUICE_ADDRESS", "0.0.0.0"}, {"SLUICE_PORT", "9001"}}));
  EXPECT_EQ(c.address, "0.0.0.0");
  EXPECT_EQ(c.port, 9001);
  apply_environment(c, env_of({{"SLUICE_ADDRESS", "::"}, {"SLUICE_PORT", "0"}}));
  EXPECT_EQ(c.address, "::");
  EXPECT_EQ(c.port, 0);
}

TEST(ServeConfig, BadEnvironmentValuesNameTheVariable) {
  for (const auto& [var, value] : std::map<std::string, std::string>{
           {"SLUICE_PORT", "65536"}, {"SLUICE_PORT", "80a"}, {"SLUICE_PORT", "-1"}, {"SLUICE_PORT", "99999999999"}}) {
    ServeConfig c;
    try {
      apply_environment(c, env_of({{var, value}}));
      ADD_FAILURE() << var << "=" << value << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(var), std::string::npos) << e.what();
    }
  }
  for (const char* bad : {"localhost:80", "not-an-address", "999.1.1.1"}) {
    ServeConfig c;
    try {
      apply_environment(c, env_of({{"SLUICE_ADDRESS", bad}}));
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("SLUICE_ADDRESS"), std::string::npos) << e.what();
    }
  }
}

TEST(ServeConfig, TheGrpcEndpointFromFileEnvironmentAndFlags) {
  ServeConfig c;
  EXPECT_EQ(c.grpc_port, 0);  // off unless asked for
  EXPECT_FALSE(c.grpc_max_message_bytes);
  detail::apply(c, "grpc_port", 8001);  // the file's or a flag's value
  EXPECT_EQ(c.grpc_port, 8001);
  apply_environment(c, env_of({{"SLUICE_GRPC_PORT", "9002"}}));
  EXPECT_EQ(c.grpc_port, 9002);
  detail::apply(c, "grpc_max_message_mib", 16);
  EXPECT_EQ(c.grpc_max_message_bytes, std::size_t{16} << 20);
  detail::apply(c, "grpc_max_in_flight", 8);
  EXPECT_EQ(c.grpc_max_in_flight, 8u);
  for (const auto& [key, bad] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"grpc_port", 65536}, {"grpc_port", -1}, {"grpc_port", "80a"}, {"grpc_port", 1.5},
           {"grpc_max_message_mib", 0}, {"grpc_max_message_mib", 4096}, {"grpc_max_in_flight", 0}}) {
    ServeConfig d;
    EXPECT_THROW(detail::apply(d, key, bad), Error) << key << "=" << bad.dump();
  }
  for (const char* bad : {"65536", "80a", "-1", "99999999999"}) {
    ServeConfig d;
    try {
      apply_environment(d, env_of({{"SLUICE_GRPC_PORT", bad}}));
      ADD_FAILURE() << "SLUICE_GRPC_PORT=" << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("SLUICE_GRPC_PORT"), std::string::npos) << e.what();
    }
  }
}

TEST(ServeConfig, TheDeadlineIsApartFromTheObjective) {
  ServeConfig c;
  EXPECT_DOUBLE_EQ(c.deadline_ms, 300000);  // the backend's own timeout
  detail::apply(c, "slo_ms", 150);
  EXPECT_DOUBLE_EQ(c.slo_ms, 150);
  EXPECT_DOUBLE_EQ(c.deadline_ms, 300000);  // slo_ms no longer sets it
  detail::apply(c, "deadline_ms", 0);      // none
  EXPECT_DOUBLE_EQ(c.deadline_ms, 0);
  EXPECT_THROW(detail::apply(c, "deadline_ms", -1), Error);
  EXPECT_THROW(detail::apply(c, "slo_ms", 0), Error);
}

TEST(ServeConfig, ThreadCountsPastAnyMachinesAreRefused) {
  // Each starts threads (a lane: a thread and a backend): 1024 is taken, 100000 is an error that
  // names the setting, before anything starts.
  for (const std::string key : {"lanes", "cpu_threads", "backend_threads", "io_threads", "decode_threads"}) {
    ServeConfig c;
    detail::apply(c, key, 1024);
    try {
      detail::apply(c, key, 100000);
      ADD_FAILURE() << key << " took 100000";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key + " must be at most 1024"), std::string::npos) << e.what();
    }
  }
  ServeConfig c;
  detail::apply(c, "lanes", 3);
  EXPECT_EQ(c.lanes, 3u);
  detail::apply(c, "io_threads", 1024);
  EXPECT_EQ(c.io_threads, 1024u);
}

TEST(ServeConfig, TheServicesNetworkNamesAreReadAndUnknownOnesListTheKnown) {
  const auto dir = std::filesystem::temp_directory_path() / ("sluice_serve_config_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto weights = (dir / "w.safetensors").string();
  std::ofstream(weights) << "x";
  ModelConfig m = detail::model_from_json({{"network", "resunet_advanced"}, {"weights", weights}});
  EXPECT_EQ(m.network, "advanced_resunet");
  EXPECT_EQ(m.name, "resunet_advanced");  // unnamed: the service's name
  m = detail::model_from_json({{"name", "x"}, {"network", "advanced_resunet"}, {"weights", weights}});
  EXPECT_EQ(m.network, "advanced_resunet");
  EXPECT_EQ(m.name, "x");
  try {
    (void)detail::model_from_json({{"network", "unet_spherohq"}, {"weights", weights}});
    ADD_FAILURE() << "unknown network accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resunet_advanced"), std::string::npos) << e.what();
  }
  // Weights that are not a regular file are refused while reading the configuration.
  EXPECT_THROW((void)detail::model_from_json({{"network", "hrnet"}, {"weights", dir.string()}}), Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::serve_app
