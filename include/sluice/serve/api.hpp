// sluice/serve/api.hpp: the endpoints of the segmentation service (prefix /api/v1) and /metrics,
// independent of sockets: a parsed Beast request goes in, one response comes out (asynchronously,
// exactly once). Routing, option parsing, limits that need the request's content (files, pixels)
// and the JSON bodies live here; connection handling lives in server.hpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"
#include "sluice/serve/api_error.hpp"
#include "sluice/serve/header_params.hpp"
#include "sluice/serve/http_metrics.hpp"
#include "sluice/serve/image_probe.hpp"
#include "sluice/serve/model_service.hpp"
#include "sluice/serve/multipart.hpp"
#include "sluice/serve/query.hpp"
#include "sluice/serve/segment_options.hpp"

namespace sluice::serve {

namespace http = boost::beast::http;

using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;

struct ApiLimits {
  std::uint64_t max_pixels = 64ull * 1024 * 1024;  ///< per image, read from its header before decoding
  std::size_t max_files = 256;                     ///< per batch-segment request
  Duration request_timeout = std::chrono::seconds(60);  ///< deadline of each image in the Batcher
  unsigned retry_after_s = 1;                      ///< Retry-After of 503 answers
  MultipartLimits multipart{};
};

class Api {
 public:
  using Respond = std::function<void(HttpResponse)>;

  Api(std::vector<std::shared_ptr<ModelService>> models, std::string default_model, ApiLimits limits,
      std::shared_ptr<HttpMetrics> metrics)
      : models_(std::move(models)), default_model_(std::move(default_model)), limits_(limits),
        metrics_(std::move(metrics)), started_(Clock::now()) {
    if (models_.empty()) throw Error(errc::invalid_argument, "the server needs at least one model");
    for (const auto& m : models_)
      if (!by_name_.emplace(m->name(), m).second)
        throw Error(errc::invalid_argument, "model '" + m->name() + "' is configured twice");
    if (default_model_.empty()) default_model_ = models_.front()->name();
    if (!by_name_.count(default_model_))
      throw Error(errc::invalid_argument, "default model '" + default_model_ + "' is not configured");
  }

  const std::vector<std::shared_ptr<ModelService>>& models() const { return models_; }
  HttpMetrics& metrics() { return *metrics_; }

  /// The route name used as the metrics label (bounded set).
  static std::string route_of(std::string_view target) {
    const std::string_view path = target.substr(0, target.find('?'));
    for (std::string_view r : {"/api/v1/health", "/api/v1/models", "/api/v1/status", "/api/v1/segment",
                               "/api/v1/batch-segment", "/metrics"})
      if (path == r) return std::string(r);
    return "other";
  }

  /// Answers `req` by calling `respond` exactly once (maybe on another thread, later).
  void handle(const HttpRequest& req, Respond respond) {
    const TimePoint start = Clock::now();
    try {
      const Target target = parse_target(req.target());
      const std::string& path = target.path;
      const auto method = req.method();
      auto only = [&](http::verb v) {
        if (method != v) throw MethodNotAllowed{std::string(http::to_string(v))};
      };
      if (path == "/api/v1/health") {
        only(http::verb::get);
        return respond(json_response(req, 200, health()));
      }
      if (path == "/api/v1/models") {
        only(http::verb::get);
        return respond(json_response(req, 200, models_json()));
      }
      if (path == "/api/v1/status") {
        only(http::verb::get);
        return respond(json_response(req, 200, status_json()));
      }
      if (path == "/metrics") {
        only(http::verb::get);
        HttpResponse res{http::status::ok, req.version()};
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = render_metrics();
        return respond(finish(std::move(res), req));
      }
      if (path == "/api/v1/segment") {
        only(http::verb::post);
        return segment(req, target, start, respond);
      }
      if (path == "/api/v1/batch-segment") {
        only(http::verb::post);
        return batch_segment(req, target, start, respond);
      }
      return respond(error_response(req, ApiError::not_found("no endpoint " + path)));
    } catch (const MethodNotAllowed& e) {
      HttpResponse res = error_response(req, ApiError{405, "method_not_allowed", "use " + e.allowed, std::nullopt});
      res.set(http::field::allow, e.allowed);
      return respond(std::move(res));
    } catch (const ApiError& e) {
      return respond(error_response(req, e));
    } catch (const Error& e) {
      // Option and multipart errors carry errc::invalid_argument and a message for the client.
      if (e.code() == errc::invalid_argument) return respond(error_response(req, ApiError::bad_request(message_of(e))));
      return respond(error_response(req, api_error_from(e.code(), limits_.retry_after_s)));
    } catch (const std::exception& e) {
      return respond(error_response(req, ApiError{500, "internal_error", e.what(), std::nullopt}));
    }
  }

  /// Prometheus text: the HTTP metrics, then each model's.
  std::string render_metrics() const {
    std::string out;
    metrics_->render(out);
    for (const auto& m : models_) m->render_metrics(out);
    return out;
  }

  /// Builds an error response (JSON body, Retry-After when set).
  static HttpResponse error_response(const HttpRequest& req, const ApiError& e) {
    HttpResponse res = json_response(req, e.status, e.to_json());
    if (e.retry_after_s) res.set(http::field::retry_after, std::to_string(*e.retry_after_s));
    return res;
  }

  static HttpResponse json_response(const HttpRequest& req, unsigned status, const Json& body) {
    HttpResponse res{static_cast<http::status>(status), req.version()};
    res.set(http::field::content_type, "application/json");
    res.body() = body.dump();
    return finish(std::move(res), req);
  }

 private:
  struct MethodNotAllowed {
    std::string allowed;
  };

  static HttpResponse finish(HttpResponse res, const HttpRequest& req) {
    res.set(http::field::server, "sluice");
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    return res;
  }

  static double seconds_since(TimePoint t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

  Json health() const {
    return {{"status", "healthy"}, {"models_loaded", models_.size()}, {"uptime_s", seconds_since(started_)}};
  }

  Json models_json() const {
    Json list = Json::array();
    for (const auto& m : models_) {
      Json info = m->info();
      info["name"] = m->name();
      info["default"] = m->name() == default_model_;
      list.push_back(std::move(info));
    }
    return {{"models", std::move(list)}, {"default_model", default_model_}};
  }

  Json status_json() const {
    Json models = Json::object();
    for (const auto& m : models_) models[m->name()] = m->status();
    return {{"status", "running"},
            {"uptime_s", seconds_since(started_)},
            {"open_connections", metrics_->open_connections()},
            {"images_in_flight", in_flight_.load()},
            {"models", std::move(models)}};
  }

  /// The parsed request: options and the images (views into the request body).
  struct Upload {
    SegmentOptions options;
    std::vector<std::pair<std::string, std::string_view>> files;  ///< filename, bytes
  };

  static bool allowed_extension(const std::string& filename) {
    const std::size_t dot = filename.rfind('.');
    if (dot == std::string::npos) return false;
    const std::string ext = detail::to_lower(std::string_view(filename).substr(dot));
    return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".tif" || ext == ".tiff" || ext == ".bmp";
  }

  /// Reads options and files from multipart/form-data (file field `file_field`) or from a raw
  /// image/* body with options in the query string.
  Upload read_upload(const HttpRequest& req, const Target& target, std::string_view file_field) const {
    Upload up;
    for (const auto& [k, v] : target.query)
      if (k != "filename" && !apply_option(up.options, k, v))
        throw ApiError::bad_request("unknown query parameter '" + k.substr(0, 64) + "'");
    const auto ct_it = req.find(http::field::content_type);
    if (ct_it == req.end())
      throw ApiError{415, "unsupported_media_type", "missing Content-Type: send multipart/form-data or image/*",
                     std::nullopt};
    const std::string_view content_type = ct_it->value();
    HeaderValue ct;
    try {
      ct = parse_header_value(content_type, true);
    } catch (const Error& e) {
      throw ApiError::bad_request("bad Content-Type: " + message_of(e));
    }
    if (ct.value.rfind("image/", 0) == 0) {
      std::string name = "upload";
      for (const auto& [k, v] : target.query)
        if (k == "filename") name = v;
      up.files.emplace_back(name, std::string_view(req.body()));
      return up;
    }
    if (ct.value != "multipart/form-data")
      throw ApiError{415, "unsupported_media_type",
                     "Content-Type must be multipart/form-data or image/*, got " + ct.value, std::nullopt};
    const std::string boundary = multipart_boundary(content_type);
    MultipartLimits ml = limits_.multipart;
    const auto parts = parse_multipart(req.body(), boundary, ml);
    for (const auto& part : parts) {
      if (part.name == file_field) {
        const std::string fname = part.filename.value_or("");
        if (!part.filename)
          throw ApiError::bad_request("field '" + part.name + "' must be a file upload (with a filename)");
        if (!allowed_extension(fname))
          throw ApiError::bad_request("file '" + fname.substr(0, 128) +
                                      "' must end in .jpg, .jpeg, .png, .tif, .tiff or .bmp");
        up.files.emplace_back(fname, part.content);
      } else if (!apply_option(up.options, part.name, part.content)) {
        throw ApiError::bad_request("unknown field '" + part.name.substr(0, 64) + "'");
      }
    }
    return up;
  }

  std::shared_ptr<ModelService> find_model(const SegmentOptions& options) const {
    const std::string& name = options.model.empty() ? default_model_ : options.model;
    const auto it = by_name_.find(name);
    if (it == by_name_.end()) {
      std::string known;
      for (const auto& m : models_) known += (known.empty() ? "" : ", ") + m->name();
      throw ApiError::not_found("unknown model '" + name + "' (models: " + known + ")");
    }
    return it->second;
  }

  /// Checks one image against the limits before it is queued.
  void check_image(const std::string& filename, std::string_view bytes) const {
    if (bytes.empty()) throw ApiError::bad_request("file '" + filename.substr(0, 128) + "' is empty");
    if (const auto dims = probe_image(bytes); dims && dims->pixels() > limits_.max_pixels)
      throw ApiError{413, "image_too_large",
                     "image '" + filename.substr(0, 128) + "' has " + std::to_string(dims->width) + " x " +
                         std::to_string(dims->height) + " pixels, more than the limit of " +
                         std::to_string(limits_.max_pixels),
                     std::nullopt};
  }

  SegmentJob make_job(std::string_view bytes, const SegmentOptions& options) const {
    SegmentJob job;
    job.image.assign(bytes.data(), bytes.size());
    job.threshold = options.threshold;
    job.detect_holes = options.detect_holes;
    job.deadline = Clock::now() + limits_.request_timeout;
    return job;
  }

  /// The per-image JSON of the original service plus its timing fields.
  static Json image_json(const SegmentOutcome& out, double processing_time) {
    Json j = out.result;
    j["success"] = true;
    j["processing_time"] = processing_time;
    j["inference_time"] = out.inference_time;
    j["preprocessing_time"] = out.preprocessing_time;
    j["batch_size_used"] = out.batch_size;
    const auto polygons = j.find("polygons");
    if (polygons == j.end() || polygons->empty()) j["warning"] = "no polygons found";
    return j;
  }

  /// `respond` is moved from only once the request is accepted: errors thrown before reach handle().
  void segment(const HttpRequest& req, const Target& target, TimePoint start, Respond& respond) {
    const Upload up = read_upload(req, target, "file");
    if (up.files.empty()) throw ApiError::bad_request("missing field 'file'");
    if (up.files.size() > 1) throw ApiError::bad_request("send one 'file' (use /api/v1/batch-segment for several)");
    const auto model = find_model(up.options);
    check_image(up.files[0].first, up.files[0].second);
    metrics_->record_images(model->name(), 1);
    ++in_flight_;
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    const unsigned retry = limits_.retry_after_s;
    model->segment(make_job(up.files[0].second, up.options),
                   [this, version, keep_alive, retry, start, respond = std::move(respond)](std::error_code ec,
                                                                                          SegmentOutcome out) {
                     --in_flight_;
                     HttpRequest shape{http::verb::post, "/", version};
                     shape.keep_alive(keep_alive);
                     if (ec) {
                       ApiError e = api_error_from(ec, retry);
                       if (!out.error_detail.empty()) e.message = out.error_detail;
                       return respond(error_response(shape, e));
                     }
                     respond(json_response(shape, 200, image_json(out, seconds_since(start))));
                   });
  }

  void batch_segment(const HttpRequest& req, const Target& target, TimePoint start, Respond& respond) {
    const Upload up = read_upload(req, target, "files");
    if (up.files.empty()) throw ApiError::bad_request("missing field 'files'");
    if (up.files.size() > limits_.max_files)
      throw ApiError{413, "too_many_files",
                     std::to_string(up.files.size()) + " files, more than the limit of " +
                         std::to_string(limits_.max_files),
                     std::nullopt};
    const auto model = find_model(up.options);
    for (const auto& [name, bytes] : up.files) check_image(name, bytes);

    const std::size_t n = up.files.size();
    std::vector<SegmentJob> jobs;
    std::vector<std::string> filenames;
    for (const auto& [name, bytes] : up.files) {
      jobs.push_back(make_job(bytes, up.options));
      filenames.push_back(name);
    }
    metrics_->record_images(model->name(), n);
    in_flight_ += static_cast<std::int64_t>(n);
    // One Batcher item per file: the Batcher forms batches across this and other requests, so any
    // number of files is split over as many batches as the model's safe size needs.
    model->segment_many(std::move(jobs), [this, n, start, filenames = std::move(filenames), options = up.options,
                                          model_name = model->name(), version = req.version(),
                                          keep_alive = req.keep_alive(), respond = std::move(respond)](
                                             std::vector<std::pair<std::error_code, SegmentOutcome>> answers) {
      in_flight_ -= static_cast<std::int64_t>(n);
      HttpRequest shape{http::verb::post, "/", version};
      shape.keep_alive(keep_alive);
      std::size_t ok = 0, polygons = 0;
      Json results = Json::array();
      for (std::size_t i = 0; i < answers.size(); ++i) {
        auto& [ec, out] = answers[i];
        Json r;
        if (ec) {
          const ApiError e = api_error_from(ec);
          r = {{"success", false}, {"error", e.code}, {"detail", out.error_detail.empty() ? e.message : out.error_detail}};
        } else {
          ++ok;
          r = image_json(out, seconds_since(start));
          if (const auto p = r.find("polygons"); p != r.end()) polygons += p->size();
        }
        r["filename"] = i < filenames.size() ? filenames[i] : std::string();
        r["batch_index"] = i;
        results.push_back(std::move(r));
      }
      // When every image failed the same way (queue full, deadline), the request as a whole did.
      if (ok == 0 && !answers.empty()) {
        bool same = true;
        for (const auto& a : answers) same = same && a.first == answers.front().first;
        const ApiError e = api_error_from(answers.front().first, limits_.retry_after_s);
        if (same && e.status != 400) return respond(error_response(shape, e));
      }
      Json body{{"success", ok > 0},
                {"batch_size", answers.size()},
                {"successful_count", ok},
                {"failed_count", answers.size() - ok},
                {"total_polygons", polygons},
                {"model_used", model_name},
                {"threshold_used", options.threshold},
                {"processing_time", seconds_since(start)},
                {"results", std::move(results)}};
      respond(json_response(shape, 200, body));
    });
  }

  std::vector<std::shared_ptr<ModelService>> models_;
  std::map<std::string, std::shared_ptr<ModelService>> by_name_;
  std::string default_model_;
  ApiLimits limits_;
  std::shared_ptr<HttpMetrics> metrics_;
  TimePoint started_;
  std::atomic<std::int64_t> in_flight_{0};
};

}  // namespace sluice::serve
