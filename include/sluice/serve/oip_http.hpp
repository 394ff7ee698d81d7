// sluice/serve/oip_http.hpp: the Open Inference Protocol's HTTP/REST transport (KServe v2, as Triton
// serves it), over any oip::InferenceService:
//   GET  /v2                                              server metadata
//   GET  /v2/models/{m}[/versions/{v}]                    model metadata
//   GET  /v2/models/{m}[/versions/{v}]/ready              200 ready, 400 not (empty body)
//   POST /v2/models/{m}[/versions/{v}]/infer              inference
//   POST /v2/repository/index                             the models served (Triton's listing)
// (/v2/health/live and /v2/health/ready are Api's own.) An infer body is JSON, or -- the
// binary-tensor extension, as tritonclient sends it -- `Inference-Header-Content-Length` bytes of
// JSON followed by the inputs that declare `parameters.binary_data_size`, in input order. Binary
// inputs stay views into the held request (its body may be spooled to disk): no copy. Outputs are
// JSON unless `binary_data: true` (per output) or `binary_data_output: true` (request parameter).
// Errors answer `{"error": "<message>"}` with 400, 404, 405, 429, 500, 503 or 504.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/core/utf8.hpp"
#include "sluice/serve/api.hpp"
#include "sluice/serve/inference_protocol.hpp"
#include "sluice/serve/oip_models.hpp"
#include "sluice/serve/oip_tensor.hpp"

namespace sluice::serve {

/// The HTTP status of each protocol status (Triton's choices; 429 with Retry-After for a full budget).
inline unsigned http_status_of(oip::Status s) {
  switch (s) {
    case oip::Status::ok: return 200;
    case oip::Status::invalid_argument: return 400;
    case oip::Status::not_found: return 404;
    case oip::Status::unavailable: return 503;
    case oip::Status::resource_exhausted: return 429;
    case oip::Status::deadline_exceeded: return 504;
    case oip::Status::internal: return 500;
  }
  return 500;
}

class OipHttp {
 public:
  using Respond = Api::Respond;
  /// A JSON body is parsed into a tree of about this many bytes per byte of text, held in the memory
  /// budget while it exists ("[0,0,...]": 16-byte values for 2 characters each, plus array overhead).
  static constexpr std::size_t kJsonTreeBytesPerByte = 10;
  /// Arrays and objects nest at most this deep (a tensor has at most 16 dimensions).
  static constexpr int kMaxJsonDepth = 32;

  OipHttp(std::shared_ptr<oip::InferenceService> service, std::shared_ptr<MemoryBudget> memory, unsigned retry_after_s)
      : service_(std::move(service)), memory_(std::move(memory)), retry_after_s_(retry_after_s) {}

  /// Answers a request whose path starts with /v2 (other than Api's health probes). Never throws.
  void handle(const std::shared_ptr<Api::HeldRequest>& held, const std::string& path, Respond respond) const {
    const HttpRequest& req = held->http;
    try {
      route(held, path, respond);
    } catch (const Refusal& r) {
      respond(error(req, r.status, r.message, retry_after_s_, r.allow));
    } catch (const std::bad_alloc&) {
      respond(error(req, 429, "out of memory while reading the request", retry_after_s_));
    } catch (const std::exception& e) {
      respond(error(req, 500, e.what(), retry_after_s_));
    }
  }

  /// The JSON text of `metadata`, as GET /v2/models/{m} answers it.
  static nlohmann::ordered_json to_json(const oip::ModelMetadata& md) {
    auto tensors = [](const std::vector<oip::TensorMetadata>& list) {
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (const auto& t : list)
        out.push_back({{"name", t.name}, {"datatype", std::string(oip::to_string(t.datatype))}, {"shape", t.shape}});
      return out;
    };
    return {{"name", md.name}, {"versions", md.versions}, {"platform", md.platform},
            {"inputs", tensors(md.inputs)}, {"outputs", tensors(md.outputs)}};
  }

 private:
  struct Refusal {
    unsigned status;
    std::string message;
    std::string allow;  ///< for 405
  };
  [[noreturn]] static void refuse(unsigned status, std::string message) { throw Refusal{status, std::move(message), {}}; }

  static HttpResponse error(const HttpRequest& req, unsigned status, std::string_view message, unsigned retry_after_s,
                            const std::string& allow = {}) {
    HttpResponse res = Api::json_response(req, status, Json{{"error", clip_utf8(std::string(message), 1024)}});
    if (!allow.empty()) res.set(http::field::allow, allow);
    if (status == 503 || status == 429) res.set(http::field::retry_after, std::to_string(retry_after_s));
    return res;
  }

  static void only(const HttpRequest& req, http::verb v) {
    if (req.method() == v || (v == http::verb::get && req.method() == http::verb::head)) return;
    throw Refusal{405, "use " + std::string(http::to_string(v)), v == http::verb::get ? "GET, HEAD" : std::string(http::to_string(v))};
  }

  static HttpResponse empty(const HttpRequest& req, unsigned status) {
    HttpResponse res{static_cast<http::status>(status), req.version()};
    res.set(http::field::server, "sluice");
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    return res;
  }

  void route(const std::shared_ptr<Api::HeldRequest>& held, const std::string& path, Respond& respond) const {
    const HttpRequest& req = held->http;
    if (path == "/v2" || path == "/v2/") {
      only(req, http::verb::get);
      const oip::ServerMetadata md = service_->server_metadata();
      return respond(Api::json_response(req, 200, Json{{"name", md.name}, {"version", md.version}, {"extensions", md.extensions}}));
    }
    if (path == "/v2/repository/index") {
      only(req, http::verb::post);
      Json list = Json::array();
      for (const auto& name : service_->model_names())
        list.push_back({{"name", name}, {"version", "1"}, {"state", service_->model_ready(name, "") ? "READY" : "UNAVAILABLE"}});
      return respond(Api::json_response(req, 200, list));
    }
    constexpr std::string_view prefix = "/v2/models/";
    if (!path.starts_with(prefix)) refuse(404, "no endpoint " + clip_utf8(path, 128));
    // {m}, {m}/ready, {m}/infer, {m}/versions/{v}, {m}/versions/{v}/ready, {m}/versions/{v}/infer
    std::vector<std::string_view> parts;
    std::string_view rest = std::string_view(path).substr(prefix.size());
    while (true) {
      const auto slash = rest.find('/');
      parts.push_back(rest.substr(0, slash));
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
    std::string_view model = parts[0], version, action;
    if (parts.size() >= 3 && parts[1] == "versions") {
      version = parts[2];
      if (parts.size() == 4) action = parts[3];
      else if (parts.size() > 4) refuse(404, "no endpoint " + clip_utf8(path, 128));
    } else if (parts.size() == 2) {
      action = parts[1];
    } else if (parts.size() != 1) {
      refuse(404, "no endpoint " + clip_utf8(path, 128));
    }
    if (model.empty() || (parts.size() >= 3 && version.empty())) refuse(404, "no endpoint " + clip_utf8(path, 128));
    if (action.empty()) {
      only(req, http::verb::get);
      const auto md = service_->model_metadata(model, version);
      if (!md) refuse(404, not_found_message(model, version));
      return respond(Api::json_response(req, 200, to_json(*md)));
    }
    if (action == "ready") {
      only(req, http::verb::get);
      return respond(empty(req, service_->model_ready(model, version) ? 200 : 400));
    }
    if (action == "infer") {
      only(req, http::verb::post);
      return infer(held, model, version, respond);
    }
    refuse(404, "no endpoint " + clip_utf8(path, 128));
  }

  std::string not_found_message(std::string_view model, std::string_view version) const {
    std::string m = "unknown model '" + clip_utf8(std::string(model), 64) + "'";
    if (!version.empty()) m += " version '" + clip_utf8(std::string(version), 32) + "'";
    return m;
  }

  /// The JSON header's length from Inference-Header-Content-Length: decimal digits, at most the body.
  static std::size_t header_length(const HttpRequest& req, std::size_t body_size) {
    const auto it = req.find("Inference-Header-Content-Length");
    if (it == req.end()) return body_size;
    const std::string_view v(it->value().data(), it->value().size());
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc{} || end != v.data() + v.size())
      refuse(400, "Inference-Header-Content-Length must be a non-negative decimal number");
    if (n > body_size)
      refuse(400, "Inference-Header-Content-Length " + std::to_string(n) + " exceeds the body's " + std::to_string(body_size) + " bytes");
    return static_cast<std::size_t>(n);
  }

  static oip::Parameters parameters_of(const nlohmann::json& j, const std::string& where) {
    const auto it = j.find("parameters");
    if (it == j.end()) return oip::Parameters::object();
    if (!it->is_object()) refuse(400, where + "'parameters' must be an object");
    return oip::Parameters(*it);
  }

  void infer(const std::shared_ptr<Api::HeldRequest>& held, std::string_view model, std::string_view version,
             Respond& respond) const {
    const HttpRequest& req = held->http;
    if (const auto enc = req.find(http::field::content_encoding); enc != req.end() && enc->value() != "identity")
      refuse(400, "unsupported Content-Encoding '" + clip_utf8(std::string(enc->value()), 32) + "' (send it uncompressed)");
    const std::string_view body = held->body();
    const std::size_t json_size = header_length(req, body.size());
    // The parse tree is held in the memory budget while it lives (the body itself is the server's).
    const std::uint64_t tree = static_cast<std::uint64_t>(json_size) * kJsonTreeBytesPerByte;
    auto tree_lease = MemoryBudget::try_acquire(memory_, static_cast<std::size_t>(tree));
    if (!tree_lease) refuse(429, "the server's memory budget cannot hold this request's JSON now (" + std::to_string(json_size) +
                                     " bytes of text); send tensors as binary data");
    nlohmann::json j;
    try {
      // Nesting is bounded while parsing: copies and walks of the tree recurse.
      j = nlohmann::json::parse(body.substr(0, json_size), [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
        if (depth > kMaxJsonDepth) throw Refusal{400, "the inference request nests deeper than " + std::to_string(kMaxJsonDepth), {}};
        return true;
      });
    } catch (const nlohmann::json::exception& e) {
      refuse(400, std::string("the inference request is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) refuse(400, "the inference request must be a JSON object");

    oip::InferRequest r;
    r.model_name = std::string(model);
    r.model_version = std::string(version);
    r.inputs_in_budget = true;  // the body is the server's lease, or on disk
    if (const auto id = j.find("id"); id != j.end()) {
      if (!id->is_string()) refuse(400, "'id' must be a string");
      r.id = id->get<std::string>();
    }
    r.parameters = parameters_of(j, "");
    const auto inputs = j.find("inputs");
    if (inputs == j.end() || !inputs->is_array() || inputs->empty()) refuse(400, "'inputs' must be a non-empty array");
    std::string_view binary = body.substr(json_size);
    for (const auto& in : *inputs) r.inputs.push_back(read_input(in, binary, held));
    if (!binary.empty())
      refuse(400, std::to_string(binary.size()) + " bytes of binary data follow the inputs that declare binary_data_size");

    bool all_binary = false;
    if (const auto it = r.parameters.find("binary_data_output"); it != r.parameters.end()) {
      if (!it->is_boolean()) refuse(400, "parameter 'binary_data_output' must be a bool");
      all_binary = it->get<bool>();
    }
    std::vector<bool> binary_outputs;  // per requested output; empty list: all_binary for each
    if (const auto outs = j.find("outputs"); outs != j.end()) {
      if (!outs->is_array()) refuse(400, "'outputs' must be an array");
      for (const auto& o : *outs) {
        if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) refuse(400, "each output needs a 'name' string");
        oip::RequestedOutput out{o["name"].get<std::string>(), parameters_of(o, "output '" + clip_utf8(o["name"].get<std::string>(), 64) + "': ")};
        bool bin = all_binary;
        if (const auto b = out.parameters.find("binary_data"); b != out.parameters.end()) {
          if (!b->is_boolean()) refuse(400, "output parameter 'binary_data' must be a bool");
          bin = b->get<bool>();
        }
        if (out.parameters.contains("classification")) refuse(400, "the classification extension is not supported");
        binary_outputs.push_back(bin);
        r.outputs.push_back(std::move(out));
      }
    }
    j = nlohmann::json();  // the tree goes before inference starts
    tree_lease.release();

    std::vector<std::string> requested;
    for (const auto& o : r.outputs) requested.push_back(o.name);
    const unsigned version_http = req.version();
    const bool keep_alive = req.keep_alive();
    service_->infer(std::move(r), [requested = std::move(requested), binary_outputs = std::move(binary_outputs), all_binary, retry = retry_after_s_,
                                   version_http, keep_alive, respond = std::move(respond)](std::optional<oip::Failure> failure,
                                                                                           oip::InferResponse response) {
      HttpRequest shape{http::verb::post, "/", version_http};
      shape.keep_alive(keep_alive);
      if (failure) return respond(error(shape, http_status_of(failure->status), failure->message, retry));
      try {
        respond(render(shape, response, requested, binary_outputs, all_binary));
      } catch (const std::exception& e) {
        respond(error(shape, 500, std::string("cannot render the response: ") + e.what(), retry));
      }
    });
  }

  /// One input of the JSON header: its data from the binary section (a view) or from `data`.
  static oip::InputTensor read_input(const nlohmann::json& in, std::string_view& binary,
                                     const std::shared_ptr<Api::HeldRequest>& held) {
    if (!in.is_object() || !in.contains("name") || !in["name"].is_string()) refuse(400, "each input needs a 'name' string");
    oip::InputTensor t;
    t.name = in["name"].get<std::string>();
    const std::string where = "input '" + clip_utf8(t.name, 64) + "': ";
    const auto dt = in.find("datatype");
    if (dt == in.end() || !dt->is_string()) refuse(400, where + "needs a 'datatype' string");
    const auto type = oip::parse_data_type(dt->get<std::string>());
    if (!type) refuse(400, where + "unknown datatype '" + clip_utf8(dt->get<std::string>(), 16) + "'");
    t.datatype = *type;
    const auto shape = in.find("shape");
    if (shape == in.end() || !shape->is_array() || shape->size() > 16) refuse(400, where + "needs a 'shape' array (at most 16 dimensions)");
    for (const auto& d : *shape) {
      if (!d.is_number_integer() || (d.is_number_unsigned() && d.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())))
        refuse(400, where + "each dimension of 'shape' must be an integer");
      if (d.get<std::int64_t>() < 0) refuse(400, where + "'shape' has a negative dimension");
      t.shape.push_back(d.get<std::int64_t>());
    }
    const auto count = oip::element_count(t.shape);
    if (!count) refuse(400, where + "'shape' " + oip::shape_string(t.shape) + " has too many elements");
    t.parameters = parameters_of(in, where);
    if (const auto size = t.parameters.find("binary_data_size"); size != t.parameters.end()) {
      if (!size->is_number_integer() || size->get<std::int64_t>() < 0) refuse(400, where + "'binary_data_size' must be a non-negative integer");
      if (in.contains("data")) refuse(400, where + "has both 'data' and 'binary_data_size'");
      const auto n = size->get<std::uint64_t>();
      if (n > binary.size())
        refuse(400, where + "binary_data_size " + std::to_string(n) + " overruns the " + std::to_string(binary.size()) +
                        " bytes of binary data left");
      t.data = binary.substr(0, static_cast<std::size_t>(n));
      t.owner = held;
      binary.remove_prefix(static_cast<std::size_t>(n));
      t.parameters.erase("binary_data_size");
      return t;
    }
    const auto data = in.find("data");
    if (data == in.end()) refuse(400, where + "needs 'data' or parameters.binary_data_size");
    auto owned = std::make_shared<std::string>();
    std::uint64_t seen = 0;
    append_json_data(*data, t.datatype, *count, seen, *owned, where);
    if (seen != *count)
      refuse(400, where + "'data' holds " + std::to_string(seen) + " elements, shape " + oip::shape_string(t.shape) + " needs " +
                      std::to_string(*count));
    t.data = *owned;
    t.owner = std::move(owned);
    return t;
  }

  /// Appends the elements of `data` (flat or nested arrays, or one scalar) in raw form.
  static void append_json_data(const nlohmann::json& data, oip::DataType type, std::uint64_t count, std::uint64_t& seen,
                               std::string& out, const std::string& where) {
    if (data.is_array()) {
      for (const auto& e : data) append_json_data(e, type, count, seen, out, where);
      return;
    }
    if (++seen > count) return;  // counted; refused by the caller
    auto put = [&out](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    auto integer = [&](std::int64_t lo, std::uint64_t hi) {
      if (data.is_number_unsigned() && data.get<std::uint64_t>() <= hi) return;
      if (data.is_number_integer() && data.get<std::int64_t>() >= lo &&
          (data.get<std::int64_t>() < 0 || static_cast<std::uint64_t>(data.get<std::int64_t>()) <= hi))
        return;
      refuse(400, where + "element " + std::to_string(seen - 1) + " is not a " + std::string(oip::to_string(type)));
    };
    switch (type) {
      case oip::DataType::BOOL:
        if (!data.is_boolean()) refuse(400, where + "element " + std::to_string(seen - 1) + " is not a bool");
        return put(static_cast<std::uint8_t>(data.get<bool>()));
      case oip::DataType::UINT8: integer(0, 0xFF); return put(static_cast<std::uint8_t>(data.get<std::uint64_t>()));
      case oip::DataType::UINT16: integer(0, 0xFFFF); return put(static_cast<std::uint16_t>(data.get<std::uint64_t>()));
      case oip::DataType::UINT32: integer(0, 0xFFFFFFFFu); return put(static_cast<std::uint32_t>(data.get<std::uint64_t>()));
      case oip::DataType::UINT64: integer(0, std::numeric_limits<std::uint64_t>::max()); return put(data.get<std::uint64_t>());
      case oip::DataType::INT8: integer(-128, 127); return put(static_cast<std::int8_t>(data.get<std::int64_t>()));
      case oip::DataType::INT16: integer(-32768, 32767); return put(static_cast<std::int16_t>(data.get<std::int64_t>()));
      case oip::DataType::INT32: integer(std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max());
        return put(static_cast<std::int32_t>(data.get<std::int64_t>()));
      case oip::DataType::INT64: integer(std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max());
        return put(data.get<std::int64_t>());
      case oip::DataType::FP32:
      case oip::DataType::FP64:
        if (!data.is_number()) refuse(400, where + "element " + std::to_string(seen - 1) + " is not a number");
        if (type == oip::DataType::FP32) return put(static_cast<float>(data.get<double>()));
        return put(data.get<double>());
      case oip::DataType::BYTES:
        if (!data.is_string()) refuse(400, where + "element " + std::to_string(seen - 1) + " is not a string");
        return oip::append_bytes_element(out, data.get_ref<const std::string&>());
      case oip::DataType::FP16:
      case oip::DataType::BF16: refuse(400, where + std::string(oip::to_string(type)) + " travels as binary data only");
    }
  }

  /// A raw tensor as the JSON `data` array (flat, as Triton answers).
  static nlohmann::json json_data(const oip::OutputTensor& t) {
    nlohmann::json out = nlohmann::json::array();
    const std::string& d = t.data;
    auto each = [&](auto zero) {
      using T = decltype(zero);
      for (std::size_t at = 0; at + sizeof(T) <= d.size(); at += sizeof(T)) {
        T v;
        std::memcpy(&v, d.data() + at, sizeof(T));
        out.push_back(v);
      }
    };
    switch (t.datatype) {
      case oip::DataType::BOOL:
        for (const char c : d) out.push_back(c != 0);
        break;
      case oip::DataType::UINT8: each(std::uint8_t{}); break;
      case oip::DataType::UINT16: each(std::uint16_t{}); break;
      case oip::DataType::UINT32: each(std::uint32_t{}); break;
      case oip::DataType::UINT64: each(std::uint64_t{}); break;
      case oip::DataType::INT8: each(std::int8_t{}); break;
      case oip::DataType::INT16: each(std::int16_t{}); break;
      case oip::DataType::INT32: each(std::int32_t{}); break;
      case oip::DataType::INT64: each(std::int64_t{}); break;
      case oip::DataType::FP32: each(float{}); break;
      case oip::DataType::FP64: each(double{}); break;
      case oip::DataType::BYTES: {
        const auto elements = oip::split_bytes(d, oip::kAnyCount);
        if (elements)
          for (const auto e : *elements) out.push_back(sanitize_utf8(std::string(e)));
        break;
      }
      case oip::DataType::FP16:
      case oip::DataType::BF16: throw std::runtime_error(std::string(oip::to_string(t.datatype)) + " outputs need binary_data");
    }
    return out;
  }

  static HttpResponse render(const HttpRequest& shape, oip::InferResponse& r, const std::vector<std::string>& requested,
                             const std::vector<bool>& binary_outputs, bool all_binary) {
    nlohmann::ordered_json j{{"model_name", r.model_name}, {"model_version", r.model_version}};
    if (!r.id.empty()) j["id"] = r.id;
    if (!r.parameters.empty()) j["parameters"] = r.parameters;
    j["outputs"] = nlohmann::ordered_json::array();
    std::vector<const oip::OutputTensor*> tail;  // the binary outputs, appended after the JSON
    std::size_t tail_bytes = 0;
    for (auto& t : r.outputs) {
      bool binary = all_binary;
      for (std::size_t i = 0; i < requested.size() && i < binary_outputs.size(); ++i)
        if (requested[i] == t.name) binary = binary_outputs[i];
      nlohmann::ordered_json o{{"name", t.name}, {"datatype", std::string(oip::to_string(t.datatype))}, {"shape", t.shape}};
      oip::Parameters p = t.parameters;
      if (binary) {
        p["binary_data_size"] = t.data.size();
        o["parameters"] = p;
        tail.push_back(&t);
        tail_bytes += t.data.size();
      } else {
        if (!p.empty()) o["parameters"] = p;
        o["data"] = json_data(t);
        t.data.clear();
        t.data.shrink_to_fit();
      }
      j["outputs"].push_back(std::move(o));
    }
    HttpResponse res{http::status::ok, shape.version()};
    res.set(http::field::server, "sluice");
    res.body() = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    if (tail.empty()) {
      res.set(http::field::content_type, "application/json");
    } else {
      res.set("Inference-Header-Content-Length", std::to_string(res.body().size()));
      res.set(http::field::content_type, "application/octet-stream");
      res.body().reserve(res.body().size() + tail_bytes);
      for (const oip::OutputTensor* t : tail) res.body() += t->data;
    }
    res.keep_alive(shape.keep_alive());
    res.prepare_payload();
    return res;
  }

  std::shared_ptr<oip::InferenceService> service_;
  std::shared_ptr<MemoryBudget> memory_;
  unsigned retry_after_s_;
};

/// Makes `api` answer the Open Inference Protocol's /v2 endpoints with a ModelsInferenceService of its
/// own models, and returns that service (another transport, e.g. gRPC, may share it). The service
/// refers to `api` without owning it (the Api owns the route): use it only while `api` lives.
inline std::shared_ptr<ModelsInferenceService> serve_open_inference_protocol(Api& api) {
  auto service = std::make_shared<ModelsInferenceService>(std::shared_ptr<Api>(std::shared_ptr<Api>(), &api));
  auto http = std::make_shared<OipHttp>(service, api.memory(), api.retry_after_s());
  api.serve_v2([http](const std::shared_ptr<Api::HeldRequest>& held, const std::string& path, Api::Respond respond) {
    http->handle(held, path, std::move(respond));
  });
  return service;
}

}  // namespace sluice::serve
