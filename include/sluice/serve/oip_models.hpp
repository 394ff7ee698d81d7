// sluice/serve/oip_models.hpp: the Open Inference Protocol's InferenceService over the models an
// Api has published. Each served model `m` appears as two protocol models, both through m's own
// Batcher (so protocol, gRPC and /api/v1 requests share batches):
//   m          IMAGE (BYTES [N] encoded files, or UINT8 [N, H, W, 3] RGB pixels) -> MASK (UINT8
//              [N, H, W], 1 = object), PROBABILITY (FP32 [N, H, W]), POLYGONS (BYTES [N], the
//              per-image result JSON of /api/v1/segment); no outputs asked for: MASK and POLYGONS.
//   m_network  INPUT (FP32 [N, 3, S, S], normalised) -> LOGITS (FP32 [N, 1, S', S']).
// Parameters threshold (number) and detect_holes (bool), on the request or on the input (the
// input's win). Every check of what a client sent happens before anything is queued; a bad row
// fails its whole request (the protocol has no per-row status). docs/http-api.md has the details.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/core/error.hpp"
#include "sluice/core/utf8.hpp"
#include "sluice/serve/api.hpp"
#include "sluice/serve/inference_protocol.hpp"
#include "sluice/serve/oip_tensor.hpp"
#include "sluice/vision/image_header.hpp"
#include "sluice/vision/postprocess.hpp"

namespace sluice::serve {

class ModelsInferenceService final : public oip::InferenceService {
 public:
  /// The raw network of model m is the protocol model m + kNetworkSuffix.
  static constexpr std::string_view kNetworkSuffix = "_network";
  /// Each model has one version.
  static constexpr std::string_view kVersion = "1";
  /// sluice's version (CMakeLists.txt's project version).
  static constexpr std::string_view kServerVersion = "0.1.0";

  explicit ModelsInferenceService(std::shared_ptr<Api> api) : api_(std::move(api)) {
    if (!api_) throw Error(errc::invalid_argument, "ModelsInferenceService needs an Api");
  }

  bool live() const override { return true; }
  bool ready() const override { return api_->ready(); }

  oip::ServerMetadata server_metadata() const override {
    return {"sluice", std::string(kServerVersion), {"binary_tensor_data", "model_repository_index"}};
  }

  std::vector<std::string> model_names() const override {
    std::vector<std::string> names;
    for (const auto& m : api_->models()) {
      names.push_back(m->name());
      names.push_back(m->name() + std::string(kNetworkSuffix));
    }
    return names;
  }

  bool model_ready(std::string_view name, std::string_view version) const override {
    return find(name, version).has_value();
  }

  std::optional<oip::ModelMetadata> model_metadata(std::string_view name, std::string_view version) const override {
    const auto target = find(name, version);
    if (!target) return std::nullopt;
    oip::ModelMetadata md;
    md.name = std::string(name);
    md.versions = {std::string(kVersion)};
    const auto [h, w] = input_size(*target->model);
    if (target->network) {
      md.platform = "sluice_network";
      md.inputs = {{"INPUT", oip::DataType::FP32, {-1, 3, h, w}}};
      md.outputs = {{"LOGITS", oip::DataType::FP32, {-1, 1, h, w}}};
    } else {
      md.platform = "sluice_segmenter";
      md.inputs = {{"IMAGE", oip::DataType::BYTES, {-1}}};
      md.outputs = {{"MASK", oip::DataType::UINT8, {-1, -1, -1}},
                    {"PROBABILITY", oip::DataType::FP32, {-1, -1, -1}},
                    {"POLYGONS", oip::DataType::BYTES, {-1}}};
    }
    return md;
  }

  void infer(oip::InferRequest request, oip::InferHandler done) override {
    try {
      start(std::move(request), done);
    } catch (const oip::Failure& f) {
      done(f, {});
    } catch (const std::bad_alloc&) {
      done(oip::Failure{oip::Status::resource_exhausted, "out of memory while reading the request"}, {});
    } catch (const std::exception& e) {
      done(oip::Failure{oip::Status::internal, sanitize_utf8(e.what())}, {});
    }
  }

 private:
  struct Target {
    std::shared_ptr<ModelService> model;
    bool network = false;
  };

  /// What a request asked for, checked.
  struct Plan {
    bool mask = false, probability = false, polygons = false, logits = false;
    std::vector<std::string> order;  ///< output names in the order to answer them
  };

  [[noreturn]] static void refuse(oip::Status status, std::string message) {
    throw oip::Failure{status, sanitize_utf8(message)};
  }
  static std::string quoted(std::string_view s) { return "'" + clip_utf8(std::string(s), 64) + "'"; }

  std::optional<Target> find(std::string_view name, std::string_view version) const {
    if (!version.empty() && version != kVersion) return std::nullopt;
    for (const auto& m : api_->models()) {
      if (name == m->name()) return Target{m, false};
      if (name.size() == m->name().size() + kNetworkSuffix.size() && name.starts_with(m->name()) &&
          name.ends_with(kNetworkSuffix))
        return Target{m, true};
    }
    return std::nullopt;
  }

  /// The network's input size {height, width}, from the model's info ({height, width} or [h, w]).
  static std::pair<std::int64_t, std::int64_t> input_size(const ModelService& m) {
    const Json info = m.info();
    const auto it = info.find("input_size");
    if (it != info.end() && it->is_object())
      return {it->value("height", std::int64_t{-1}), it->value("width", std::int64_t{-1})};
    if (it != info.end() && it->is_array() && it->size() == 2 && (*it)[0].is_number_integer() && (*it)[1].is_number_integer())
      return {(*it)[0].get<std::int64_t>(), (*it)[1].get<std::int64_t>()};
    return {-1, -1};
  }

  /// threshold and detect_holes from one parameter object (other keys belong to the transports).
  static void read_parameters(const oip::Parameters& p, double& threshold, bool& detect_holes, std::string_view where) {
    if (!p.is_object()) return;
    if (const auto it = p.find("threshold"); it != p.end()) {
      if (!it->is_number()) refuse(oip::Status::invalid_argument, std::string(where) + "parameter 'threshold' must be a number");
      threshold = it->get<double>();
      if (!(threshold >= vision::PostprocessOptions::kMinThreshold && threshold <= vision::PostprocessOptions::kMaxThreshold))
        refuse(oip::Status::invalid_argument, std::string(where) + "parameter 'threshold' " + std::to_string(threshold) +
                                                  " is outside 0.1 .. 0.9");
    }
    if (const auto it = p.find("detect_holes"); it != p.end()) {
      if (!it->is_boolean()) refuse(oip::Status::invalid_argument, std::string(where) + "parameter 'detect_holes' must be a bool");
      detect_holes = it->get<bool>();
    }
  }

  static Plan plan_outputs(const oip::InferRequest& r, bool network) {
    Plan plan;
    if (r.outputs.empty()) {
      if (network) plan.order = {"LOGITS"};
      else plan.order = {"MASK", "POLYGONS"};
    }
    for (const auto& o : r.outputs) {
      if (std::find(plan.order.begin(), plan.order.end(), o.name) != plan.order.end())
        refuse(oip::Status::invalid_argument, "output " + quoted(o.name) + " is asked for twice");
      const bool known = network ? o.name == "LOGITS" : (o.name == "MASK" || o.name == "PROBABILITY" || o.name == "POLYGONS");
      if (!known)
        refuse(oip::Status::invalid_argument, "unknown output " + quoted(o.name) + " (model " + quoted(r.model_name) +
                                                  " has " + (network ? "LOGITS" : "MASK, PROBABILITY, POLYGONS") + ")");
      plan.order.push_back(o.name);
    }
    for (const auto& n : plan.order) {
      plan.mask |= n == "MASK";
      plan.probability |= n == "PROBABILITY";
      plan.polygons |= n == "POLYGONS";
      plan.logits |= n == "LOGITS";
    }
    return plan;
  }

  /// The model's answers for a request, gathered: rows, the shared size of its maps, its lease.
  struct Pending {
    oip::InferRequest request;
    Plan plan;
    MemoryBudget::Lease output_lease;
    oip::InferHandler done;
  };

  void start(oip::InferRequest request, const oip::InferHandler& done) {
    if (!api_->ready()) refuse(oip::Status::unavailable, "the models are loading and warming up; retry later");
    const auto target = find(request.model_name, request.model_version);
    if (!target) {
      if (!request.model_version.empty() && request.model_version != kVersion && find(request.model_name, ""))
        refuse(oip::Status::not_found, "model " + quoted(request.model_name) + " has no version " +
                                           quoted(request.model_version) + " (its only version is 1)");
      refuse(oip::Status::not_found, "unknown model " + quoted(request.model_name));
    }
    const ApiLimits& limits = api_->limits();
    const Plan plan = plan_outputs(request, target->network);
    const std::string expected = target->network ? "INPUT" : "IMAGE";
    if (request.inputs.size() != 1 || request.inputs[0].name != expected) {
      for (const auto& in : request.inputs)
        if (in.name != expected)
          refuse(oip::Status::invalid_argument, "unknown input " + quoted(in.name) + " (model " + quoted(request.model_name) +
                                                    " takes one input, " + expected + ")");
      refuse(oip::Status::invalid_argument, "model " + quoted(request.model_name) + " takes exactly one input, " + expected);
    }
    const oip::InputTensor& in = request.inputs[0];
    double threshold = 0.5;
    bool detect_holes = true;
    read_parameters(request.parameters, threshold, detect_holes, "");
    read_parameters(in.parameters, threshold, detect_holes, "input " + expected + ": ");

    const auto count = oip::element_count(in.shape);
    if (in.shape.empty() || !count)
      refuse(oip::Status::invalid_argument, "input " + expected + " has an invalid shape " + oip::shape_string(in.shape));
    const std::uint64_t rows = static_cast<std::uint64_t>(in.shape[0]);
    if (rows == 0) refuse(oip::Status::invalid_argument, "input " + expected + " has no rows (shape " + oip::shape_string(in.shape) + ")");
    if (rows > limits.max_files)
      refuse(oip::Status::invalid_argument, "input " + expected + " has " + std::to_string(rows) +
                                                " rows, more than the limit of " + std::to_string(limits.max_files));
    if (in.datatype != oip::DataType::BYTES && *count * oip::element_size(in.datatype) != in.data.size())
      refuse(oip::Status::invalid_argument, "input " + expected + " holds " + std::to_string(in.data.size()) +
                                                " bytes; shape " + oip::shape_string(in.shape) + " of " +
                                                std::string(oip::to_string(in.datatype)) + " needs " +
                                                std::to_string(*count * oip::element_size(in.datatype)));

    // A caller already past its deadline is refused before any row is read.
    const Duration timeout = limits.request_timeout > Duration::zero() ? limits.request_timeout
                                                                        : Duration(std::chrono::hours(24 * 365 * 100));
    TimePoint deadline = Clock::now() + timeout;
    if (request.deadline) {
      if (*request.deadline <= Clock::now())
        refuse(oip::Status::deadline_exceeded, "the request's deadline passed before it could be queued");
      deadline = std::min(deadline, *request.deadline);
    }
    std::vector<SegmentJob> jobs(rows);
    std::uint64_t output_bytes = 0;
    std::optional<std::pair<std::int64_t, std::int64_t>> map_size;  // rows' {width, height}, when all equal
    bool sizes_differ = false;
    auto note_size = [&](std::int64_t w, std::int64_t h) {
      if (!map_size) map_size = std::pair{w, h};
      else if (*map_size != std::pair{w, h}) sizes_differ = true;
      output_bytes += static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h) *
                      ((plan.mask ? 1u : 0u) + (plan.probability ? 4u : 0u) + (plan.logits ? 4u : 0u));
    };
    if (target->network) {
      const auto [s_h, s_w] = input_size(*target->model);
      if (in.datatype != oip::DataType::FP32 || in.shape != std::vector<std::int64_t>{in.shape[0], 3, s_h, s_w})
        refuse(oip::Status::invalid_argument, "input INPUT must be FP32 [N, 3, " + std::to_string(s_h) + ", " +
                                                  std::to_string(s_w) + "], got " + std::string(oip::to_string(in.datatype)) +
                                                  " " + oip::shape_string(in.shape));
      const std::size_t row_bytes = in.data.size() / rows;
      for (std::uint64_t i = 0; i < rows; ++i) {
        jobs[i].form = ImageForm::network_input;
        jobs[i].image = in.data.substr(i * row_bytes, row_bytes);
        note_size(s_w, s_h);
      }
    } else if (in.datatype == oip::DataType::BYTES) {
      if (!(in.shape.size() == 1 || (in.shape.size() == 2 && in.shape[1] == 1)))
        refuse(oip::Status::invalid_argument, "input IMAGE of BYTES must have shape [N] or [N, 1], got " + oip::shape_string(in.shape));
      const auto elements = oip::split_bytes(in.data, rows);
      if (!elements)
        refuse(oip::Status::invalid_argument, "input IMAGE: its BYTES data does not hold " + std::to_string(rows) +
                                                  " elements (a length prefix overruns the data, or bytes are left over)");
      for (std::uint64_t i = 0; i < rows; ++i) {
        const std::string_view file = (*elements)[i];
        const std::string row = "input IMAGE[" + std::to_string(i) + "]: ";
        if (file.empty()) refuse(oip::Status::invalid_argument, row + "empty image");
        vision::ImageHeader header;
        try {
          header = vision::read_image_header({reinterpret_cast<const std::uint8_t*>(file.data()), file.size()});
        } catch (const Error& e) {
          refuse(oip::Status::invalid_argument, row + without_code_suffix(e.what(), e.code()));
        }
        const auto w = header.upright_width(), h = header.upright_height();
        if (static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h) > limits.max_pixels)
          refuse(oip::Status::invalid_argument, row + std::to_string(w) + " x " + std::to_string(h) +
                                                    " pixels, more than the limit of " + std::to_string(limits.max_pixels));
        jobs[i].image = file;
        note_size(w, h);
      }
    } else if (in.datatype == oip::DataType::UINT8) {
      if (in.shape.size() != 4 || in.shape[3] != 3 || in.shape[1] < 1 || in.shape[2] < 1)
        refuse(oip::Status::invalid_argument, "input IMAGE of UINT8 must have shape [N, H, W, 3] (RGB), got " +
                                                  oip::shape_string(in.shape));
      const std::int64_t h = in.shape[1], w = in.shape[2];
      if (static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h) > limits.max_pixels)
        refuse(oip::Status::invalid_argument, "input IMAGE: " + std::to_string(w) + " x " + std::to_string(h) +
                                                  " pixels, more than the limit of " + std::to_string(limits.max_pixels));
      const std::size_t row_bytes = in.data.size() / rows;
      for (std::uint64_t i = 0; i < rows; ++i) {
        jobs[i].form = ImageForm::rgb8;
        jobs[i].image = in.data.substr(i * row_bytes, row_bytes);
        jobs[i].width = static_cast<int>(w);
        jobs[i].height = static_cast<int>(h);
        note_size(w, h);
      }
    } else {
      refuse(oip::Status::invalid_argument, "input IMAGE must be BYTES (encoded files) or UINT8 (RGB pixels), got " +
                                                std::string(oip::to_string(in.datatype)));
    }
    if (sizes_differ && (plan.mask || plan.probability))
      refuse(oip::Status::invalid_argument, "MASK and PROBABILITY are one tensor for all rows: every image of the "
                                            "request must have the same size (ask for POLYGONS only, or send one "
                                            "image per request)");

    // The answer's tensors, and the inputs unless the transport holds them already, are held in
    // the memory budget until the response has been handed over.
    std::uint64_t held = output_bytes;
    if (!request.inputs_in_budget) held += in.data.size();
    const auto& memory = api_->memory();
    auto lease = MemoryBudget::try_acquire(memory, static_cast<std::size_t>(std::min<std::uint64_t>(held, SIZE_MAX)));
    if (!lease)
      refuse(oip::Status::resource_exhausted,
             held > memory->limit() ? "the request needs " + std::to_string(held) + " bytes, more than the server's memory budget of " +
                                          std::to_string(memory->limit())
                                    : "the server's memory budget cannot hold this request's " + std::to_string(held) +
                                          " bytes now; retry later");

    const std::shared_ptr<const void> owner = in.owner;
    for (auto& job : jobs) {
      job.owner = owner;
      job.threshold = threshold;
      job.detect_holes = detect_holes;
      job.deadline = deadline;
      job.outputs = {plan.polygons, plan.mask, plan.probability, plan.logits};
    }
    auto pending = std::make_shared<Pending>();
    pending->plan = plan;
    pending->output_lease = std::move(lease);
    pending->done = done;
    pending->request.model_name = std::move(request.model_name);
    pending->request.id = std::move(request.id);
    request.inputs.clear();  // the jobs hold the bytes they need
    target->model->segment_many(std::move(jobs), [pending](std::vector<std::pair<std::error_code, SegmentOutcome>> answers) {
      answer(*pending, std::move(answers));
      pending->output_lease.release();
    });
  }

  static oip::Status status_of(std::error_code ec) {
    if (ec.category() != error_category()) return oip::Status::internal;
    switch (static_cast<errc>(ec.value())) {
      case errc::invalid_argument: return oip::Status::invalid_argument;
      case errc::queue_full:
      case errc::shutting_down:
      case errc::cancelled: return oip::Status::unavailable;
      case errc::out_of_memory: return oip::Status::resource_exhausted;
      case errc::deadline_exceeded: return oip::Status::deadline_exceeded;
      case errc::model_failed: return oip::Status::internal;
    }
    return oip::Status::internal;
  }

  /// Turns the rows' answers into the response, or the first failed row's error. Never throws.
  static void answer(Pending& p, std::vector<std::pair<std::error_code, SegmentOutcome>> answers) {
    try {
      for (std::size_t i = 0; i < answers.size(); ++i) {
        auto& [ec, out] = answers[i];
        if (!ec) continue;
        const std::string detail = !out.error_detail.empty() ? out.error_detail : api_error_from(ec).message;
        return p.done(oip::Failure{status_of(ec), sanitize_utf8("row " + std::to_string(i) + " of the input: " + detail)}, {});
      }
      const auto n = static_cast<std::int64_t>(answers.size());
      oip::InferResponse response;
      response.model_name = p.request.model_name;
      response.model_version = std::string(kVersion);
      response.id = p.request.id;
      for (const std::string& name : p.plan.order) {
        oip::OutputTensor t;
        t.name = name;
        if (name == "POLYGONS") {
          t.datatype = oip::DataType::BYTES;
          t.shape = {n};
          for (const auto& a : answers) oip::append_bytes_element(t.data, a.second.result.dump(-1, ' ', false, Json::error_handler_t::replace));
        } else if (name == "LOGITS") {
          const auto& first = answers.front().second;
          t.shape = {n, 1, first.map_height, first.map_width};
          for (const auto& a : answers) append_floats(t.data, a.second.logits, first.map_width, first.map_height, a.second.map_width, a.second.map_height);
        } else {
          const auto& first = answers.front().second;
          for (const auto& a : answers)
            if (a.second.width != first.width || a.second.height != first.height)
              return p.done(oip::Failure{oip::Status::invalid_argument,
                                         "MASK and PROBABILITY are one tensor for all rows: the images of the request "
                                         "have different sizes"}, {});
          t.shape = {n, first.height, first.width};
          const std::size_t plane = static_cast<std::size_t>(first.width) * static_cast<std::size_t>(first.height);
          if (name == "MASK") {
            t.datatype = oip::DataType::UINT8;
            t.data.reserve(plane * answers.size());
            for (const auto& a : answers) {
              if (a.second.mask.size() != plane) return p.done(oip::Failure{oip::Status::internal, "the model made no MASK"}, {});
              t.data.append(reinterpret_cast<const char*>(a.second.mask.data()), plane);
            }
          } else {
            for (const auto& a : answers)
              append_floats(t.data, a.second.probability, first.width, first.height, a.second.width, a.second.height);
          }
        }
        response.outputs.push_back(std::move(t));
      }
      p.done(std::nullopt, std::move(response));
    } catch (const oip::Failure& f) {
      p.done(f, {});
    } catch (const std::bad_alloc&) {
      p.done(oip::Failure{oip::Status::resource_exhausted, "out of memory while assembling the response"}, {});
    }
  }

  /// Appends one row's floats, which must fill the tensor's w x h plane.
  static void append_floats(std::string& data, const std::vector<float>& row, int w, int h, int row_w, int row_h) {
    const std::size_t plane = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
    if (row_w != w || row_h != h || row.size() != plane)
      throw oip::Failure{oip::Status::internal, "the model's output maps differ between rows"};
    data.append(reinterpret_cast<const char*>(row.data()), plane * sizeof(float));
  }

  std::shared_ptr<Api> api_;
};

}  // namespace sluice::serve
