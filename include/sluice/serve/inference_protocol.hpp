// sluice/serve/inference_protocol.hpp: the Open Inference Protocol (KServe v2; the protocol of
// Triton, KServe, Seldon MLServer and OpenVINO Model Server) as transport-neutral C++ types, and the
// InferenceService interface that its transports call: the HTTP/REST endpoints (/v2/...) and the
// gRPC service inference.GRPCInferenceService both parse into these types and render from them, so
// that one implementation serves both and every request reaches the same Batcher.
//
// Tensor data travels as the protocol's "raw" form: the elements in row-major order, little-endian,
// without padding; a BYTES element is a 4-byte little-endian length followed by that many bytes.
// This is what the binary-tensor extension of HTTP and gRPC's raw_input_contents carry already; the
// JSON form of HTTP is converted to it when parsed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/core/clock.hpp"

namespace sluice::serve::oip {

/// Request, tensor and output parameters: a JSON object whose values are bool, int64, double or string
/// (the protocol's InferParameter).
using Parameters = nlohmann::ordered_json;

/// The protocol's tensor data types ("BOOL", "UINT8", ..., "FP32", "BYTES").
enum class DataType { BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES };

namespace detail {
struct DataTypeInfo {
  DataType type;
  std::string_view name;
  std::size_t size;
};
inline constexpr DataTypeInfo kDataTypes[] = {
    {DataType::BOOL, "BOOL", 1},   {DataType::UINT8, "UINT8", 1},   {DataType::UINT16, "UINT16", 2},
    {DataType::UINT32, "UINT32", 4}, {DataType::UINT64, "UINT64", 8}, {DataType::INT8, "INT8", 1},
    {DataType::INT16, "INT16", 2}, {DataType::INT32, "INT32", 4},   {DataType::INT64, "INT64", 8},
    {DataType::FP16, "FP16", 2},   {DataType::FP32, "FP32", 4},     {DataType::FP64, "FP64", 8},
    {DataType::BF16, "BF16", 2},   {DataType::BYTES, "BYTES", 0}};
}  // namespace detail

/// The protocol's spelling of `t`.
inline std::string_view to_string(DataType t) { return detail::kDataTypes[static_cast<std::size_t>(t)].name; }

/// The type spelled `name` (case-sensitive, as the protocol spells it), or none.
inline std::optional<DataType> parse_data_type(std::string_view name) {
  for (const auto& d : detail::kDataTypes)
    if (d.name == name) return d.type;
  return std::nullopt;
}

/// Bytes per element; 0 for BYTES (variable).
inline std::size_t element_size(DataType t) { return detail::kDataTypes[static_cast<std::size_t>(t)].size; }

/// One input tensor of a request. `data` is a view into a buffer that `owner` keeps alive (the request
/// body or the gRPC message), so that large tensors are not copied on their way to the model.
struct InputTensor {
  std::string name;
  DataType datatype = DataType::FP32;
  std::vector<std::int64_t> shape;
  Parameters parameters = Parameters::object();
  std::string_view data;               ///< raw form (see above)
  std::shared_ptr<const void> owner;   ///< keeps `data` valid
};

/// An output the client asked for by name; no list in the request means every default output.
struct RequestedOutput {
  std::string name;
  /// e.g. "binary_data": true (HTTP's binary-tensor extension; the transport reads it).
  Parameters parameters = Parameters::object();
};

struct InferRequest {
  std::string model_name;
  std::string model_version;  ///< empty: the model's only/latest version
  std::string id;             ///< echoed in the response
  Parameters parameters = Parameters::object();
  std::vector<InputTensor> inputs;
  std::vector<RequestedOutput> outputs;
  /// True when the transport already holds the inputs' bytes in the server's memory budget (the
  /// HTTP body is admitted against it before it is read); otherwise the service holds them.
  bool inputs_in_budget = false;
  /// The caller's own deadline, where the transport carries one (a gRPC client's): the earlier of it
  /// and the server's request timeout is the deadline the requests' batches must meet, so that work
  /// the client has given up on is shed rather than run.
  std::optional<TimePoint> deadline;
};

/// One output tensor of a response, owning its data (raw form).
struct OutputTensor {
  std::string name;
  DataType datatype = DataType::FP32;
  std::vector<std::int64_t> shape;
  Parameters parameters = Parameters::object();
  std::string data;
};

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  Parameters parameters = Parameters::object();
  std::vector<OutputTensor> outputs;
};

/// Why a call failed, in the terms both transports map onto their status codes:
/// HTTP 400/404/503/429/504/500 and gRPC INVALID_ARGUMENT/NOT_FOUND/UNAVAILABLE/
/// RESOURCE_EXHAUSTED/DEADLINE_EXCEEDED/INTERNAL.
enum class Status { ok, invalid_argument, not_found, unavailable, resource_exhausted, deadline_exceeded, internal };

struct Failure {
  Status status = Status::internal;
  std::string message;  ///< for the client, valid UTF-8
};

/// Called exactly once per infer() call, from any thread: `failure` is empty on success.
using InferHandler = std::function<void(std::optional<Failure> failure, InferResponse response)>;

/// The protocol's metadata of a tensor (name, datatype, shape with -1 for a variable dimension).
struct TensorMetadata {
  std::string name;
  DataType datatype = DataType::FP32;
  std::vector<std::int64_t> shape;
};

struct ModelMetadata {
  std::string name;
  std::vector<std::string> versions;
  std::string platform;  ///< e.g. "sluice_cpu"
  std::vector<TensorMetadata> inputs;
  std::vector<TensorMetadata> outputs;
};

struct ServerMetadata {
  std::string name;
  std::string version;
  std::vector<std::string> extensions;
};

/// What the transports call. Implementations never throw from infer(): every failure reaches the
/// handler. The other calls are cheap and synchronous.
class InferenceService {
 public:
  virtual ~InferenceService() = default;
  virtual bool live() const = 0;
  virtual bool ready() const = 0;
  virtual ServerMetadata server_metadata() const = 0;
  /// Empty name lookups and unknown models/versions: nullopt (the transport answers not found).
  virtual bool model_ready(std::string_view name, std::string_view version) const = 0;
  virtual std::optional<ModelMetadata> model_metadata(std::string_view name, std::string_view version) const = 0;
  virtual void infer(InferRequest request, InferHandler done) = 0;
  /// The models served now (for listings such as Triton's repository index); none while loading.
  virtual std::vector<std::string> model_names() const { return {}; }
};

}  // namespace sluice::serve::oip
