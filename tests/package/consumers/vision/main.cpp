// The installed headers are enough to segment images: the demo model (model.json + checkpoint) on
// the CPU backend, through the Segmenter's stages, on the sample images given.
#include <sluice/backends/cpu/cpu_backend.hpp>
#include <sluice/models/registry.hpp>
#include <sluice/vision/model_description.hpp>
#include <sluice/vision/segmenter.hpp>
#include <sluice/weights/safetensors.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::printf("usage: sluice_consumer_vision MODEL_JSON IMAGE...\n");
    return 2;
  }
  using Cpu = sluice::cpu::CpuBackend;
  const auto desc = sluice::vision::load_model_description(argv[1]);
  Cpu cpu({.threads = 1});
  auto net = sluice::models::load_network<Cpu>(desc.network, cpu, sluice::weights::load_checkpoint(desc.weights));
  sluice::vision::Segmenter<decltype(net), Cpu> segmenter(std::move(net), {&cpu},
                                                          {.model_name = desc.network, .preprocess = desc.preprocess});
  std::vector<sluice::vision::SegmentRequest> requests;
  for (int i = 2; i < argc; ++i) requests.push_back({.name = argv[i], .path = argv[i]});
  auto batch = segmenter.prepare(requests);
  segmenter.run(batch);
  std::vector<sluice::vision::SegmentResponse> responses(requests.size());
  segmenter.finish(batch, responses);

  std::size_t polygons = 0;
  for (const auto& r : responses) {
    if (!r.ok() || r.segmentation.polygons.empty()) {
      std::printf("sluice consumer: %s: %s (%zu polygons)\n", r.name.c_str(), r.message.c_str(),
                  r.segmentation.polygons.size());
      return 1;
    }
    polygons += r.segmentation.polygons.size();
  }
  std::printf("sluice consumer: ok (%zu images, %zu polygons)\n", responses.size(), polygons);
  return 0;
}
