// sluice/vision/model_description.hpp: model.json, the small file that travels with a checkpoint
// and says how to feed it: which network, which weights file, the input size and the normalisation.
//
//   {"network": "cbam_resunet", "weights": "cbam_resunet.safetensors",
//    "input_size": {"height": 128, "width": 128},
//    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "threshold": 0.5}
//
// Only "network" is required; the rest default to 1024 x 1024, ImageNet mean/std, threshold 0.5
// (every field: docs/formats.md).
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "sluice/core/error.hpp"
#include "sluice/weights/regular_file.hpp"
#include "sluice/vision/preprocess.hpp"

namespace sluice::vision {

struct ModelDescription {
  std::string network;                 ///< a name load_network() knows
  std::filesystem::path weights;       ///< resolved against the description's folder; may be empty
  PreprocessOptions preprocess;        ///< input size, mean, std
  double threshold = 0.5;              ///< the default threshold for this model
};

/// Parses a description; relative weight paths are resolved against `base_dir`.
inline ModelDescription parse_model_description(const nlohmann::json& j, const std::filesystem::path& base_dir = {}) {
  auto bad = [](const std::string& what) { return Error(errc::invalid_argument, "model description: " + what); };
  if (!j.is_object()) throw bad("not a JSON object");
  ModelDescription d;
  try {
    if (!j.contains("network") || !j["network"].is_string()) throw bad("\"network\" (a string) is required");
    d.network = j["network"].get<std::string>();
    if (j.contains("weights")) {
      const std::filesystem::path w = j["weights"].get<std::string>();
      d.weights = w.is_absolute() || base_dir.empty() ? w : base_dir / w;
    }
    if (j.contains("input_size")) {
      d.preprocess.input_height = j["input_size"].at("height").get<int>();
      d.preprocess.input_width = j["input_size"].at("width").get<int>();
    }
    auto triple = [&](const char* key, std::array<float, 3>& out) {
      if (!j.contains(key)) return;
      const auto& a = j[key];
      if (!a.is_array() || a.size() != 3) throw bad(std::string("\"") + key + "\" must be 3 numbers");
      for (std::size_t i = 0; i < 3; ++i) out[i] = a[i].get<float>();
    };
    triple("mean", d.preprocess.mean);
    triple("std", d.preprocess.std);
    if (j.contains("threshold")) d.threshold = j["threshold"].get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw bad(e.what());
  }
  d.preprocess.validate();
  return d;
}

/// Reads model.json from a file.
inline ModelDescription load_model_description(const std::filesystem::path& path) {
  const std::string text = weights::read_regular_file(path);  // its error names the path
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(errc::invalid_argument, "model description '" + path.string() + "': " + e.what());
  }
  return parse_model_description(j, path.parent_path());
}

}  // namespace sluice::vision
