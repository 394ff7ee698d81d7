// The image pipeline's CPU cost per image, stage by stage, on the bundled samples (PNG, 210-290 px
// a side, five grey and one colour) at the demo model's 128 x 128 input: what prepare and finish
// take from the cores the network runs on. Each benchmark cycles through all six images.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "sluice/vision/decode.hpp"
#include "sluice/vision/postprocess.hpp"
#include "sluice/vision/preprocess.hpp"

namespace {

namespace sv = sluice::vision;

struct Samples {
  std::vector<std::vector<std::uint8_t>> bytes;
  std::vector<sv::DecodedImage> decoded;
  Samples() {
    std::vector<std::filesystem::path> paths;
    for (const auto& e : std::filesystem::directory_iterator(SLUICE_SAMPLES_DIR))
      if (e.path().extension() == ".png") paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
    for (const auto& p : paths) {
      bytes.push_back(sv::read_file_bytes(p));
      decoded.push_back(sv::decode_image(bytes.back()));
    }
  }
};

const Samples& samples() {
  static const Samples s;
  return s;
}

sv::PreprocessOptions demo_input() {
  sv::PreprocessOptions o;
  o.input_height = o.input_width = 128;
  return o;
}

void Decode(benchmark::State& state) {
  const auto& s = samples();
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(sv::decode_image(s.bytes[i++ % s.bytes.size()]));
  state.SetItemsProcessed(state.iterations());
}

void ResizeToInput(benchmark::State& state) {
  const auto& s = samples();
  const auto o = demo_input();
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(sv::resize_to_input(s.decoded[i++ % s.decoded.size()], o));
  state.SetItemsProcessed(state.iterations());
}

void Preprocess(benchmark::State& state) {  // resize + normalise into the batch slot
  const auto& s = samples();
  const auto o = demo_input();
  std::vector<float> slot(o.slot_floats());
  std::size_t i = 0;
  for (auto _ : state) {
    sv::preprocess_into(s.decoded[i++ % s.decoded.size()], o, slot);
    benchmark::DoNotOptimize(slot.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void Postprocess(benchmark::State& state) {  // logits -> probability at the image's size -> polygons
  const auto& s = samples();
  // Smooth blobs as logits: a few round objects, as the demo model's outputs look.
  std::vector<float> logits(128 * 128);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> at(16.0f, 112.0f);
  std::vector<std::pair<float, float>> centres(5);
  for (auto& c : centres) c = {at(rng), at(rng)};
  for (int y = 0; y < 128; ++y)
    for (int x = 0; x < 128; ++x) {
      float best = 1e9f;
      for (auto [cx, cy] : centres) best = std::min(best, std::hypot(x - cx, y - cy));
      logits[static_cast<std::size_t>(y) * 128 + x] = (12.0f - best) / 3.0f;
    }
  std::size_t i = 0;
  for (auto _ : state) {
    const cv::Size original = s.decoded[i++ % s.decoded.size()].size();
    benchmark::DoNotOptimize(sv::postprocess(logits, cv::Size(128, 128), original, {}));
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(Decode)->Unit(benchmark::kMicrosecond);
BENCHMARK(ResizeToInput)->Unit(benchmark::kMicrosecond);
BENCHMARK(Preprocess)->Unit(benchmark::kMicrosecond);
BENCHMARK(Postprocess)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
