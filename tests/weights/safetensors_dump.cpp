// safetensors_dump: prints a safetensors file as JSON (metadata, and each tensor's shape and values
// as hexadecimal floats, exact), read with sluice's reader. Used by the converter test
// (tests/io/convert_checkpoint_test.py), which compares it with what PyTorch saved.
#include <cstdio>
#include <exception>
#include <string>

#include <nlohmann/json.hpp>

#include "sluice/weights/safetensors.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: safetensors_dump FILE\n");
    return 2;
  }
  try {
    const auto data = sluice::weights::read_safetensors(argv[1]);
    nlohmann::json out;
    out["metadata"] = data.metadata;
    out["tensors"] = nlohmann::json::object();
    for (const auto& [name, t] : data.tensors) {
      nlohmann::json values = nlohmann::json::array();
      char buf[64];
      for (float v : t.data) {
        std::snprintf(buf, sizeof buf, "%a", static_cast<double>(v));
        values.push_back(buf);
      }
      out["tensors"][name] = {{"shape", t.shape}, {"values", values}};
    }
    std::printf("%s\n", out.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
