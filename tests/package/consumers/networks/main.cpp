// The installed headers are enough to run a network: the demo checkpoint on the CPU backend.
#include <sluice/backends/cpu/cpu_backend.hpp>
#include <sluice/models/registry.hpp>
#include <sluice/weights/safetensors.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("usage: sluice_consumer_networks CHECKPOINT\n");
    return 2;
  }
  sluice::cpu::CpuBackend cpu({.threads = 1});
  const auto checkpoint = sluice::weights::load_checkpoint(argv[1]);
  const auto net = sluice::models::load_network(cpu, checkpoint);
  const sluice::Shape in{2, 3, 64, 64};
  std::vector<float> x(static_cast<std::size_t>(in.numel()));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.01f * static_cast<float>(i));
  const auto y = sluice::models::run_forward(net, cpu, cpu.upload(x, in));
  const sluice::Shape out = cpu.shape_of(y);
  std::vector<float> logits(static_cast<std::size_t>(out.numel()));
  cpu.download(y, logits);
  bool finite = true;
  float lo = logits.front(), hi = logits.front();
  for (float v : logits) {
    finite = finite && std::isfinite(v);
    lo = std::fmin(lo, v);
    hi = std::fmax(hi, v);
  }
  if (out != sluice::Shape{2, 1, 64, 64} || !finite || !(hi > lo)) {
    std::printf("sluice consumer: output %s, finite %d, range [%g, %g]\n", out.to_string().c_str(), finite, lo, hi);
    return 1;
  }
  std::printf("sluice consumer: ok\n");
  return 0;
}
