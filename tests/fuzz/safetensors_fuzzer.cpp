// libFuzzer target for the safetensors parser: any byte string must either parse, or be refused
// with sluice::Error -- never crash, read out of bounds, overflow or throw anything else. A parsed
// image must survive a write/read round trip unchanged (the writer is checked as well).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "sluice/weights/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::weights;
  SafetensorsOptions options;
  options.max_header_bytes = 1 << 20;  // keeps each input cheap; the limit check itself is tested
  SafetensorsData parsed;
  try {
    parsed = parse_safetensors(std::span(reinterpret_cast<const std::byte*>(data), size), "fuzz", options);
  } catch (const sluice::Error&) {
    return 0;  // refused cleanly
  }
  const auto image = serialize_safetensors(parsed.tensors, parsed.metadata, DType::F32);
  const SafetensorsData again = parse_safetensors(image, "fuzz round trip");
  if (again.metadata != parsed.metadata || again.tensors.size() != parsed.tensors.size()) std::abort();
  for (const auto& [name, t] : parsed.tensors) {
    const auto it = again.tensors.find(name);
    if (it == again.tensors.end() || it->second.shape != t.shape || it->second.data.size() != t.data.size())
      std::abort();
    if (!t.data.empty() && std::memcmp(it->second.data.data(), t.data.data(), t.data.size() * sizeof(float)) != 0)
      std::abort();  // bitwise, so NaN payloads count too
  }
  return 0;
}
