// sluice/weights/safetensors.hpp: reading and writing checkpoints in the safetensors format, the form in
// which sluice loads PyTorch weights (tools/convert_checkpoint.py makes one from a .pth).
//
// Format: an 8-byte little-endian u64 N, N bytes of JSON header
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<value>", ...}}            (metadata optional)
// then the data buffer; offsets are relative to the start of the buffer. The reader trusts nothing:
// every length, offset, dtype and shape is checked before a byte of tensor data is touched, and a
// bad file gives sluice::Error(errc::invalid_argument, "<file>: <what exactly>").
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/core/error.hpp"
#include "sluice/weights/finite_weights.hpp"
#include "sluice/weights/host_tensor.hpp"
#include "sluice/weights/safetensors_float.hpp"
#include "sluice/weights/safetensors_mapped_file.hpp"

namespace sluice::weights {

static_assert(std::endian::native == std::endian::little,
              "the safetensors reader assumes a little-endian host, as the format's data is");

/// The element types of the safetensors format. Only the floating ones convert to float on load;
/// the others are recognised so that a header that names them still validates.
enum class DType : std::uint8_t { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 };

namespace detail {
struct DTypeEntry {
  DType dtype;
  std::string_view name;
  std::size_t size;
};
inline constexpr DTypeEntry dtype_table[] = {
    {DType::BOOL, "BOOL", 1},       {DType::U8, "U8", 1},           {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},         {DType::U16, "U16", 2},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},       {DType::I32, "I32", 4},         {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},         {DType::F64, "F64", 8},         {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},         {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};
}  // namespace detail

inline std::string_view dtype_name(DType d) {
  for (const auto& e : detail::dtype_table)
    if (e.dtype == d) return e.name;
  return "?";
}
inline std::size_t dtype_size(DType d) {
  for (const auto& e : detail::dtype_table)
    if (e.dtype == d) return e.size;
  return 0;
}
inline std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& e : detail::dtype_table)
    if (e.name == name) return e.dtype;
  return std::nullopt;
}

/// Free-form string metadata of a file (the "__metadata__" entry).
using Metadata = std::map<std::string, std::string, std::less<>>;

/// One validated header entry. Offsets are relative to the data buffer.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;
};

/// A validated header: entries sorted by offset, covering the data buffer exactly.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;
  Metadata metadata;
  std::uint64_t data_start = 0;  ///< offset of the data buffer in the file (8 + N)
  std::uint64_t data_size = 0;   ///< length of the data buffer
};

/// Tensors converted to float, and the metadata.
struct SafetensorsData {
  TensorDict tensors;
  Metadata metadata;
};

struct SafetensorsOptions {
  /// Largest accepted JSON header, in bytes (the reference implementation also uses 100 MB): a
  /// corrupt length field must not make the reader allocate or scan gigabytes.
  std::uint64_t max_header_bytes = 100'000'000;
};

namespace detail {

[[noreturn]] inline void st_fail(std::string_view source, const std::string& what) {
  throw Error(errc::invalid_argument, std::string(source) + ": " + what);
}

inline std::string range_string(std::uint64_t b, std::uint64_t e) {
  return "[" + std::to_string(b) + ", " + std::to_string(e) + ")";
}

// A header is at most three levels deep (root object, tensor object, shape array); refusing
// deeper nesting while parsing bounds the work on hostile input. Duplicate keys are refused too:
// JSON parsers silently keep one of them, which would make a file mean different things to
// different readers.
inline nlohmann::json parse_header_json(std::string_view text, std::string_view source) {
  using nlohmann::json;
  std::vector<std::set<std::string, std::less<>>> keys;  // one set per open object
  auto guard = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= 3) st_fail(source, "header JSON is nested deeper than a safetensors header can be");
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() && !keys.back().insert(parsed.get<std::string>()).second)
          st_fail(source, "header JSON has the key '" + parsed.get<std::string>() + "' twice in one object");
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text.data(), text.data() + text.size(), guard, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    st_fail(source, std::string("header is not valid JSON: ") + e.what());
  }
}

inline std::uint64_t read_le_u64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

inline std::uint64_t unsigned_field(const nlohmann::json& v, std::string_view source,
                                    const std::string& where) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) st_fail(source, where + " is negative (" + v.dump() + ")");
    st_fail(source, where + " must be a non-negative integer, got " + v.dump());
  }
  return v.get<std::uint64_t>();
}

inline TensorInfo parse_tensor_entry(const std::string& name, const nlohmann::json& entry,
                                     std::string_view source) {
  const std::string who = "tensor '" + name + "'";
  if (name.empty()) st_fail(source, "a tensor has an empty name");
  if (!entry.is_object()) st_fail(source, who + ": entry must be a JSON object, got " + entry.type_name());
  for (const auto& [key, value] : entry.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      st_fail(source, who + ": unknown field '" + key + "'");

  TensorInfo info;
  info.name = name;

  const auto dt = entry.find("dtype");
  if (dt == entry.end()) st_fail(source, who + ": no 'dtype'");
  if (!dt->is_string()) st_fail(source, who + ": 'dtype' must be a string, got " + dt->dump());
  const auto parsed = dtype_from_name(dt->get_ref<const std::string&>());
  if (!parsed) st_fail(source, who + ": unknown dtype " + dt->dump());
  info.dtype = *parsed;

  const auto sh = entry.find("shape");
  if (sh == entry.end()) st_fail(source, who + ": no 'shape'");
  if (!sh->is_array()) st_fail(source, who + ": 'shape' must be an array, got " + sh->dump());
  std::uint64_t numel = 1;
  for (std::size_t i = 0; i < sh->size(); ++i) {
    const std::uint64_t d = unsigned_field((*sh)[i], source, who + ": shape[" + std::to_string(i) + "]");
    // Every partial product must fit in int64: that is how HostTensor::numel() counts.
    constexpr auto int64_max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (d > int64_max || __builtin_mul_overflow(numel, d, &numel) || numel > int64_max)
      st_fail(source, who + ": shape " + sh->dump() + " has more elements than a signed 64-bit count holds");
    info.shape.push_back(static_cast<std::int64_t>(d));
  }

  const auto off = entry.find("data_offsets");
  if (off == entry.end()) st_fail(source, who + ": no 'data_offsets'");
  if (!off->is_array() || off->size() != 2)
    st_fail(source, who + ": 'data_offsets' must be an array [begin, end], got " + off->dump());
  info.begin = unsigned_field((*off)[0], source, who + ": data_offsets[0]");
  info.end = unsigned_field((*off)[1], source, who + ": data_offsets[1]");
  if (info.begin > info.end)
    st_fail(source, who + ": data_offsets " + off->dump() + " end before they begin");

  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_size(info.dtype)), &bytes))
    st_fail(source, who + ": shape " + sh->dump() + " is too large to address");
  if (bytes != info.end - info.begin)
    st_fail(source, who + ": shape " + sh->dump() + " of " + std::string(dtype_name(info.dtype)) + " needs " +
                        std::to_string(bytes) + " bytes, data_offsets " + off->dump() + " hold " +
                        std::to_string(info.end - info.begin));
  return info;
}

}  // namespace detail

/// Parses and validates the header of a safetensors image held in memory. `source` names it in
/// error messages (the file name).
inline SafetensorsHeader parse_safetensors_header(std::span<const std::byte> bytes,
                                                  std::string_view source = "<memory>",
                                                  const SafetensorsOptions& options = {}) {
  using detail::st_fail;
  if (bytes.size() < 8)
    st_fail(source, "file is " + std::to_string(bytes.size()) +
                        " bytes, too short for the 8-byte header length");
  const std::uint64_t n = detail::read_le_u64(bytes.data());
  if (n > options.max_header_bytes)
    st_fail(source, "header length " + std::to_string(n) + " exceeds the limit of " +
                        std::to_string(options.max_header_bytes) + " bytes");
  if (n > bytes.size() - 8)
    st_fail(source, "header length " + std::to_string(n) + " runs past the end of the file (" +
                        std::to_string(bytes.size() - 8) + " bytes follow the length field)");

  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), static_cast<std::size_t>(n));
  const nlohmann::json header = detail::parse_header_json(text, source);
  if (!header.is_object()) st_fail(source, std::string("header must be a JSON object, got ") + header.type_name());

  SafetensorsHeader result;
  result.data_start = 8 + n;
  result.data_size = bytes.size() - result.data_start;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) st_fail(source, "__metadata__ must be an object of strings, got " + entry.dump());
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          st_fail(source, "__metadata__ value of '" + key + "' must be a string, got " + value.dump());
        result.metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    result.tensors.push_back(detail::parse_tensor_entry(name, entry, source));
  }

  // The format asks that the tensors index the whole buffer, without overlaps and without holes
  // (a hole could hide other content in a file that looks like weights).
  std::sort(result.tensors.begin(), result.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : result.tensors) {
    if (t.end > result.data_size)
      st_fail(source, "tensor '" + t.name + "': data_offsets " + detail::range_string(t.begin, t.end) +
                          " run past the end of the data buffer (" + std::to_string(result.data_size) +
                          " bytes)");
    if (t.begin < covered)
      st_fail(source, "tensor '" + t.name + "' " + detail::range_string(t.begin, t.end) + " overlaps tensor '" +
                          previous->name + "' " + detail::range_string(previous->begin, previous->end));
    if (t.begin > covered)
      st_fail(source, "bytes " + detail::range_string(covered, t.begin) +
                          " of the data buffer belong to no tensor (the format allows no holes)");
    covered = t.end;
    previous = &t;
  }
  if (covered != result.data_size)
    st_fail(source, "the data buffer has " + std::to_string(result.data_size - covered) +
                        " bytes after the last tensor that belong to no tensor");
  return result;
}

/// Converts the tensor data of a validated header to float. Only F32, F16, BF16 and F64 load.
inline SafetensorsData convert_safetensors(const SafetensorsHeader& header, std::span<const std::byte> bytes,
                                           std::string_view source = "<memory>") {
  SafetensorsData out;
  out.metadata = header.metadata;
  for (const TensorInfo& info : header.tensors) {
    const std::byte* p = bytes.data() + header.data_start + info.begin;
    const std::size_t count = static_cast<std::size_t>((info.end - info.begin) / dtype_size(info.dtype));
    HostTensor tensor;
    tensor.shape = info.shape;
    tensor.data.resize(count);
    float* dst = tensor.data.data();
    switch (info.dtype) {
      case DType::F32:
        if (count) std::memcpy(dst, p, count * sizeof(float));  // memcpy: the data may be unaligned
        break;
      case DType::F64:
        for (std::size_t i = 0; i < count; ++i) {
          double v;
          std::memcpy(&v, p + i * 8, 8);
          dst[i] = static_cast<float>(v);
        }
        break;
      case DType::F16:
      case DType::BF16:
        for (std::size_t i = 0; i < count; ++i) {
          std::uint16_t v;
          std::memcpy(&v, p + i * 2, 2);
          dst[i] = info.dtype == DType::F16 ? half_to_float(v) : bfloat16_to_float(v);
        }
        break;
      default:
        detail::st_fail(source, "tensor '" + info.name + "' has dtype " + std::string(dtype_name(info.dtype)) +
                                    ", which does not load as float weights (F32, F16, BF16, F64 do)");
    }
    out.tensors.emplace(info.name, std::move(tensor));
  }
  return out;
}

/// Parses a whole safetensors image held in memory (what the file reader and the fuzzer use).
inline SafetensorsData parse_safetensors(std::span<const std::byte> bytes, std::string_view source = "<memory>",
                                         const SafetensorsOptions& options = {}) {
  return convert_safetensors(parse_safetensors_header(bytes, source, options), bytes, source);
}

/// Reads a safetensors file through a read-only memory mapping.
inline SafetensorsData read_safetensors(const std::filesystem::path& path, const SafetensorsOptions& options = {}) {
  const MappedFile file(path);
  return parse_safetensors(file.bytes(), path.string(), options);
}

/// Loads a checkpoint's weights (a safetensors file), every one finite. A PyTorch .pth given by
/// mistake gets an error that says how to convert it.
inline TensorDict load_checkpoint(const std::filesystem::path& path, const SafetensorsOptions& options = {}) {
  const MappedFile file(path);
  TensorDict tensors;
  try {
    tensors = parse_safetensors(file.bytes(), path.string(), options).tensors;
  } catch (const Error& e) {
    const auto b = file.bytes();
    const bool zip = b.size() >= 4 && std::memcmp(b.data(), "PK\x03\x04", 4) == 0;
    const bool pickle = b.size() >= 2 && b[0] == std::byte{0x80} && static_cast<unsigned>(b[1]) <= 5;
    if (zip || pickle)
      throw Error(errc::invalid_argument,
                  std::string(e.what()) + " (this looks like a PyTorch .pth checkpoint: convert it with "
                                          "tools/convert_checkpoint.py)");
    throw;
  }
  require_finite(tensors, path.string());
  return tensors;
}

/// Serialises tensors (stored as `dtype`: F32, F16, BF16 or F64) and metadata to a safetensors
/// image. The header is padded with spaces to a multiple of 8 bytes so that the data is aligned.
inline std::vector<std::byte> serialize_safetensors(const TensorDict& tensors, const Metadata& metadata = {},
                                                    DType dtype = DType::F32) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F64)
    throw Error(errc::invalid_argument, "write_safetensors: dtype " + std::string(dtype_name(dtype)) +
                                            " is not a float type (F32, F16, BF16, F64)");
  const std::size_t esize = dtype_size(dtype);
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__")
      throw Error(errc::invalid_argument, "write_safetensors: invalid tensor name '" + name + "'");
    for (auto d : t.shape)
      if (d < 0)
        throw Error(errc::invalid_argument, "write_safetensors: tensor '" + name + "' has a negative dimension " +
                                                shape_to_string(t.shape));
    if (static_cast<std::size_t>(t.numel()) != t.data.size())
      throw Error(errc::invalid_argument, "write_safetensors: tensor '" + name + "' has shape " +
                                              shape_to_string(t.shape) + " but " + std::to_string(t.data.size()) +
                                              " values");
    const std::uint64_t bytes = t.data.size() * esize;
    header[name] = {{"dtype", std::string(dtype_name(dtype))},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<std::byte> out(8 + text.size() + offset);
  const std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xFFu);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* p = out.data() + 8 + text.size();
  for (const auto& [name, t] : tensors) {
    for (float v : t.data) {
      switch (dtype) {
        case DType::F32: std::memcpy(p, &v, 4); break;
        case DType::F64: {
          const double d = v;
          std::memcpy(p, &d, 8);
          break;
        }
        case DType::F16: {
          const std::uint16_t h = float_to_half(v);
          std::memcpy(p, &h, 2);
          break;
        }
        default: {
          const std::uint16_t h = float_to_bfloat16(v);
          std::memcpy(p, &h, 2);
          break;
        }
      }
      p += esize;
    }
  }
  return out;
}

/// Writes tensors and metadata to a safetensors file (for tests and tools).
inline void write_safetensors(const std::filesystem::path& path, const TensorDict& tensors,
                              const Metadata& metadata = {}, DType dtype = DType::F32) {
  const std::vector<std::byte> image = serialize_safetensors(tensors, metadata, dtype);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(errc::invalid_argument, path.string() + ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(image.size()));
  out.close();
  if (!out) throw Error(errc::invalid_argument, path.string() + ": write failed");
}

}  // namespace sluice::weights
