#include "tensor_wire.hpp"

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace sluice::serve::oip::wire {
namespace {

using ParameterMap = google::protobuf::Map<std::string, inference::InferParameter>;

/// A malformed request; its message goes to the client as it is.
struct Malformed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Names from the client, quoted and cut so that a message stays short and readable.
std::string quoted(const std::string& name) {
  constexpr std::size_t kMax = 64;
  return "'" + (name.size() <= kMax ? name : name.substr(0, kMax) + "...") + "'";
}

Parameters to_parameters(const ParameterMap& map, const std::string& where) {
  Parameters out = Parameters::object();
  for (const auto& [key, value] : map) {
    switch (value.parameter_choice_case()) {
      case inference::InferParameter::kBoolParam: out[key] = value.bool_param(); break;
      case inference::InferParameter::kInt64Param: out[key] = value.int64_param(); break;
      case inference::InferParameter::kStringParam: out[key] = value.string_param(); break;
      case inference::InferParameter::kDoubleParam: out[key] = value.double_param(); break;
      case inference::InferParameter::kUint64Param: out[key] = value.uint64_param(); break;
      default: throw Malformed(where + "parameter " + quoted(key) + " has no value");
    }
  }
  return out;
}

void from_parameters(const Parameters& in, ParameterMap& out) {
  if (!in.is_object()) return;
  for (const auto& [key, value] : in.items()) {
    inference::InferParameter& p = out[key];
    if (value.is_boolean()) p.set_bool_param(value.get<bool>());
    else if (value.is_number_unsigned()) {
      const auto u = value.get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        p.set_int64_param(static_cast<std::int64_t>(u));
      else
        p.set_uint64_param(u);
    } else if (value.is_number_integer()) p.set_int64_param(value.get<std::int64_t>());
    else if (value.is_number_float()) p.set_double_param(value.get<double>());
    else if (value.is_string()) p.set_string_param(value.get<std::string>());
    else p.set_string_param(value.dump());  // arrays and objects have no InferParameter of their own
  }
}

/// Elements of a tensor of `shape`; every dimension non-negative and the product within int64.
std::uint64_t element_count(const google::protobuf::RepeatedField<std::int64_t>& shape, const std::string& what) {
  std::uint64_t n = 1;
  for (const std::int64_t d : shape) {
    if (d < 0) throw Malformed(what + " has a negative dimension (" + std::to_string(d) + ")");
    if (d != 0 && n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / static_cast<std::uint64_t>(d))
      throw Malformed(what + " has more elements than a tensor can hold");
    n *= static_cast<std::uint64_t>(d);
  }
  return n;
}

/// Appends `v` little-endian, as the raw form wants it on any host.
template <class T>
void put_le(std::string& out, T v) {
  if constexpr (std::is_same_v<T, bool>) {
    out.push_back(v ? 1 : 0);
  } else {
    using Bits = std::conditional_t<sizeof(T) == 8, std::uint64_t,
                                    std::conditional_t<sizeof(T) == 4, std::uint32_t,
                                                       std::conditional_t<sizeof(T) == 2, std::uint16_t, std::uint8_t>>>;
    const auto u = std::bit_cast<Bits>(v);
    for (std::size_t i = 0; i < sizeof(Bits); ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  }
}

template <class Narrow, class Wide>
Narrow narrowed(Wide v, const std::string& what, DataType t) {
  if (v < static_cast<Wide>(std::numeric_limits<Narrow>::min()) || v > static_cast<Wide>(std::numeric_limits<Narrow>::max()))
    throw Malformed(what + ": " + std::to_string(v) + " is out of the range of " + std::string(to_string(t)));
  return static_cast<Narrow>(v);
}

std::size_t field_size(const inference::InferTensorContents& c, DataType t) {
  switch (t) {
    case DataType::BOOL: return static_cast<std::size_t>(c.bool_contents_size());
    case DataType::INT8: case DataType::INT16: case DataType::INT32: return static_cast<std::size_t>(c.int_contents_size());
    case DataType::INT64: return static_cast<std::size_t>(c.int64_contents_size());
    case DataType::UINT8: case DataType::UINT16: case DataType::UINT32: return static_cast<std::size_t>(c.uint_contents_size());
    case DataType::UINT64: return static_cast<std::size_t>(c.uint64_contents_size());
    case DataType::FP32: return static_cast<std::size_t>(c.fp32_contents_size());
    case DataType::FP64: return static_cast<std::size_t>(c.fp64_contents_size());
    case DataType::BYTES: return static_cast<std::size_t>(c.bytes_contents_size());
    default: return 0;
  }
}

/// The typed contents of a tensor of type `t` and `count` elements, in the raw form. Only the
/// field of `t` may hold values, exactly `count` of them.
std::string raw_from_contents(const inference::InferTensorContents& c, DataType t, std::uint64_t count,
                              const std::string& what) {
  if (t == DataType::FP16 || t == DataType::BF16)
    throw Malformed(what + ": " + std::string(to_string(t)) + " has no typed contents; send it in raw_input_contents");
  const std::size_t all = static_cast<std::size_t>(c.bool_contents_size() + c.int_contents_size() + c.int64_contents_size() +
                                                   c.uint_contents_size() + c.uint64_contents_size() +
                                                   c.fp32_contents_size() + c.fp64_contents_size() +
                                                   c.bytes_contents_size());
  const std::size_t own = field_size(c, t);
  if (own != all)
    throw Malformed(what + " has contents in a field that is not the one of " + std::string(to_string(t)));
  if (own != count)
    throw Malformed(what + " has " + std::to_string(own) + " elements in contents, its shape needs " +
                    std::to_string(count));
  std::string raw;
  if (t != DataType::BYTES) raw.reserve(own * element_size(t));
  switch (t) {
    case DataType::BOOL: for (bool v : c.bool_contents()) put_le(raw, v); break;
    case DataType::INT8: for (auto v : c.int_contents()) put_le(raw, narrowed<std::int8_t>(v, what, t)); break;
    case DataType::INT16: for (auto v : c.int_contents()) put_le(raw, narrowed<std::int16_t>(v, what, t)); break;
    case DataType::INT32: for (auto v : c.int_contents()) put_le(raw, v); break;
    case DataType::INT64: for (auto v : c.int64_contents()) put_le(raw, v); break;
    case DataType::UINT8: for (auto v : c.uint_contents()) put_le(raw, narrowed<std::uint8_t>(v, what, t)); break;
    case DataType::UINT16: for (auto v : c.uint_contents()) put_le(raw, narrowed<std::uint16_t>(v, what, t)); break;
    case DataType::UINT32: for (auto v : c.uint_contents()) put_le(raw, v); break;
    case DataType::UINT64: for (auto v : c.uint64_contents()) put_le(raw, v); break;
    case DataType::FP32: for (auto v : c.fp32_contents()) put_le(raw, v); break;
    case DataType::FP64: for (auto v : c.fp64_contents()) put_le(raw, v); break;
    case DataType::BYTES:
      for (const std::string& v : c.bytes_contents()) {
        if (v.size() > std::numeric_limits<std::uint32_t>::max()) throw Malformed(what + " has an element over 4 GiB");
        put_le(raw, static_cast<std::uint32_t>(v.size()));
        raw += v;
      }
      break;
    default: break;
  }
  return raw;
}

/// Checks that raw data holds exactly `count` elements of type `t`.
void check_raw(std::string_view raw, DataType t, std::uint64_t count, const std::string& what) {
  if (t != DataType::BYTES) {
    const std::uint64_t size = element_size(t);
    if (count > std::numeric_limits<std::uint64_t>::max() / size || count * size != raw.size())
      throw Malformed(what + " has " + std::to_string(raw.size()) + " bytes of raw contents, its shape and " +
                      std::string(to_string(t)) + " need " +
                      (count > std::numeric_limits<std::uint64_t>::max() / size ? std::string("more")
                                                                               : std::to_string(count * size)));
    return;
  }
  std::size_t pos = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (raw.size() - pos < 4)
      throw Malformed(what + ": BYTES element " + std::to_string(i) + " of " + std::to_string(count) +
                      " starts past the end of the raw contents");
    std::uint32_t len = 0;
    for (int b = 0; b < 4; ++b) len |= static_cast<std::uint32_t>(static_cast<unsigned char>(raw[pos + b])) << (8 * b);
    pos += 4;
    if (raw.size() - pos < len)
      throw Malformed(what + ": BYTES element " + std::to_string(i) + " declares " + std::to_string(len) +
                      " bytes, only " + std::to_string(raw.size() - pos) + " remain");
    pos += len;
  }
  if (pos != raw.size())
    throw Malformed(what + ": " + std::to_string(raw.size() - pos) + " bytes of raw contents after its " +
                    std::to_string(count) + " BYTES elements");
}

}  // namespace

std::optional<Failure> to_infer_request(const inference::ModelInferRequest& in, std::shared_ptr<const void> owner,
                                        InferRequest& out) {
  try {
    out.model_name = in.model_name();
    out.model_version = in.model_version();
    out.id = in.id();
    out.parameters = to_parameters(in.parameters(), "");
    const bool raw = in.raw_input_contents_size() > 0;
    if (raw && in.raw_input_contents_size() != in.inputs_size())
      throw Malformed("raw_input_contents has " + std::to_string(in.raw_input_contents_size()) + " entries for " +
                      std::to_string(in.inputs_size()) + " inputs (one per input, in their order)");
    out.inputs.reserve(static_cast<std::size_t>(in.inputs_size()));
    for (int i = 0; i < in.inputs_size(); ++i) {
      const auto& t = in.inputs(i);
      const std::string what = "input " + quoted(t.name());
      InputTensor& tensor = out.inputs.emplace_back();
      tensor.name = t.name();
      const auto type = parse_data_type(t.datatype());
      if (!type) throw Malformed(what + " has an unknown datatype " + quoted(t.datatype()));
      tensor.datatype = *type;
      tensor.shape.assign(t.shape().begin(), t.shape().end());
      const std::uint64_t count = element_count(t.shape(), what);
      tensor.parameters = to_parameters(t.parameters(), what + ": ");
      if (raw) {
        if (t.has_contents())
          throw Malformed(what + " has contents and the request has raw_input_contents: send one or the other");
        tensor.data = in.raw_input_contents(i);
        check_raw(tensor.data, *type, count, what);
        tensor.owner = owner;
      } else if (t.has_contents()) {
        auto buffer = std::make_shared<const std::string>(raw_from_contents(t.contents(), *type, count, what));
        tensor.data = *buffer;
        tensor.owner = std::move(buffer);
      } else if (count != 0) {
        throw Malformed(what + " has no data (neither contents nor raw_input_contents)");
      }
    }
    out.outputs.reserve(static_cast<std::size_t>(in.outputs_size()));
    for (const auto& o : in.outputs())
      out.outputs.push_back({o.name(), to_parameters(o.parameters(), "output " + quoted(o.name()) + ": ")});
    return std::nullopt;
  } catch (const Malformed& e) {
    return Failure{Status::invalid_argument, e.what()};
  }
}

void to_model_infer_response(InferResponse&& in, inference::ModelInferResponse& out) {
  out.set_model_name(std::move(in.model_name));
  out.set_model_version(std::move(in.model_version));
  out.set_id(std::move(in.id));
  from_parameters(in.parameters, *out.mutable_parameters());
  for (OutputTensor& t : in.outputs) {
    auto* o = out.add_outputs();
    o->set_name(std::move(t.name));
    o->set_datatype(std::string(to_string(t.datatype)));
    for (const auto d : t.shape) o->add_shape(d);
    from_parameters(t.parameters, *o->mutable_parameters());
    *out.add_raw_output_contents() = std::move(t.data);
  }
}

void to_model_metadata_response(const ModelMetadata& in, inference::ModelMetadataResponse& out) {
  out.set_name(in.name);
  for (const auto& v : in.versions) out.add_versions(v);
  out.set_platform(in.platform);
  auto tensors = [](const std::vector<TensorMetadata>& from, auto* to) {
    for (const auto& t : from) {
      auto* m = to->Add();
      m->set_name(t.name);
      m->set_datatype(std::string(to_string(t.datatype)));
      for (const auto d : t.shape) m->add_shape(d);
    }
  };
  tensors(in.inputs, out.mutable_inputs());
  tensors(in.outputs, out.mutable_outputs());
}

void to_server_metadata_response(const ServerMetadata& in, inference::ServerMetadataResponse& out) {
  out.set_name(in.name);
  out.set_version(in.version);
  for (const auto& e : in.extensions) out.add_extensions(e);
}

}  // namespace sluice::serve::oip::wire
