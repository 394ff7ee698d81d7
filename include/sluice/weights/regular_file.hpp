// sluice/weights/regular_file.hpp: the whole text of a configuration file (model.json, batch_sizes.json,
// a server configuration), read only when it is a regular file: a FIFO or a device named by mistake
// gets a clear error instead of blocking the program (see MappedFile).
#pragma once

#include <filesystem>
#include <string>

#include "sluice/weights/safetensors_mapped_file.hpp"

namespace sluice::weights {

/// Throws sluice::Error(errc::invalid_argument, "<path>: ...") when `path` cannot be opened or is
/// not a regular file.
inline std::string read_regular_file(const std::filesystem::path& path) {
  const MappedFile file(path);
  const auto bytes = file.bytes();
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace sluice::weights
