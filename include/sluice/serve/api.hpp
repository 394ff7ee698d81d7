// sluice/serve/api.hpp: the endpoints of the segmentation service (prefix /api/v1) and /metrics,
// independent of sockets: a parsed Beast request goes in, one response comes out (asynchronously,
// exactly once, never an exception). Routing, option parsing, limits that need the request's content
// (files, pixels), the memory budget of request bytes and the JSON bodies live here; connection
// handling lives in server.hpp. Every string a client sent (file names, query keys, field names) is
// made valid UTF-8 and clipped before it enters a JSON answer.
// An Api can start without models ("loading": health answers, segmentation gets 503) and have them
// published later, so that the server listens while the models load and warm up.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <ctime>
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

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"
#include "sluice/core/utf8.hpp"
#include "sluice/models/names.hpp"
#include "sluice/serve/api_error.hpp"
#include "sluice/serve/api_limits.hpp"
#include "sluice/serve/header_params.hpp"
#include "sluice/serve/image_answer.hpp"
#include "sluice/serve/http_metrics.hpp"
#include "sluice/serve/memory_budget.hpp"
#include "sluice/serve/spooled_body.hpp"
#include "sluice/serve/metrics_api.hpp"
#include "sluice/serve/prometheus_text.hpp"
#include "sluice/serve/model_service.hpp"
#include "sluice/serve/multipart.hpp"
#include "sluice/serve/query.hpp"
#include "sluice/serve/segment_options.hpp"
#include "sluice/serve/upload.hpp"

namespace sluice::serve {

namespace http = boost::beast::http;

using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;

class Api {
 public:
  using Respond = std::function<void(HttpResponse)>;

  /// An Api whose models are still loading: see publish(). `memory`: the budget to admit bodies
  /// against, shared with whatever else holds request bytes (the decode stage); by default one of
  /// limits.memory_budget_bytes of the Api's own.
  Api(ApiLimits limits, std::shared_ptr<HttpMetrics> metrics, std::shared_ptr<MemoryBudget> memory = nullptr)
      : limits_(limits), metrics_(std::move(metrics)),
        memory_(memory ? std::move(memory) : std::make_shared<MemoryBudget>(limits_.memory_budget_bytes)),
        started_(Clock::now()) {
    limits_.validate();
    if (limits_.metrics_threads > 0) metrics_pool_.emplace(limits_.metrics_threads);
  }

  /// An Api serving `models` at once.
  Api(std::vector<std::shared_ptr<ModelService>> models, std::string default_model, ApiLimits limits,
      std::shared_ptr<HttpMetrics> metrics, std::shared_ptr<MemoryBudget> memory = nullptr)
      : Api(limits, std::move(metrics), std::move(memory)) {
    publish(std::move(models), std::move(default_model));
  }

  /// Makes `models` servable (the Api becomes ready); `default_model` empty: the first. Throws
  /// sluice::Error(invalid_argument) for no model, a name twice or an unknown default.
  void publish(std::vector<std::shared_ptr<ModelService>> models, std::string default_model) {
    auto c = std::make_shared<Catalog>();
    c->models = std::move(models);
    if (c->models.empty()) throw Error(errc::invalid_argument, "the server needs at least one model");
    for (const auto& m : c->models)
      if (!c->by_name.emplace(m->name(), m).second)
        throw Error(errc::invalid_argument, "model '" + m->name() + "' is configured twice");
    // Every spelling of a model's network (models/names.hpp) reaches it, unless a model has that
    // name: the service's names work whatever the models are called. The first model wins.
    for (const auto& m : c->models) {
      for (const std::string& network : {m->name(), m->info().value("network", std::string())}) {
        const auto names = models::find_network(network);
        if (!names) continue;
        for (const std::string& alias : models::spellings(*names))
          if (!c->by_name.count(alias)) c->alias_of.emplace(alias, m->name());
      }
    }
    c->default_model = default_model.empty() ? c->models.front()->name() : std::move(default_model);
    if (const auto it = c->alias_of.find(c->default_model); !c->by_name.count(c->default_model) && it != c->alias_of.end())
      c->default_model = it->second;
    if (!c->by_name.count(c->default_model))
      throw Error(errc::invalid_argument, "default model '" + c->default_model + "' is not configured");
    std::lock_guard lock(catalog_mutex_);
    catalog_ = std::move(c);
  }

  /// The models could not be loaded: health says "unhealthy" with `why`, readiness stays 503.
  void fail(std::string why) {
    std::lock_guard lock(catalog_mutex_);
    failure_ = std::move(why);
  }

  /// True once publish() succeeded.
  bool ready() const { return catalog() != nullptr; }

  /// Waits for the metric requests already accepted, so that each is answered.
  ~Api() {
    if (metrics_pool_) metrics_pool_->join();
  }
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  /// The published models (none while loading).
  std::vector<std::shared_ptr<ModelService>> models() const {
    const auto c = catalog();
    return c ? c->models : std::vector<std::shared_ptr<ModelService>>{};
  }
  HttpMetrics& metrics() { return *metrics_; }
  const std::shared_ptr<MemoryBudget>& memory() const { return memory_; }
  unsigned retry_after_s() const { return limits_.retry_after_s; }
  const ApiLimits& limits() const { return limits_; }

  /// The route name used as the metrics label (bounded set).
  static std::string route_of(std::string_view target) {
    const std::string_view path = target.substr(0, target.find('?'));
    if ((path == "/v2" || path.starts_with("/v2/")) && !path.starts_with("/v2/health/"))
      return path.ends_with("/infer") ? "/v2/infer" : path.ends_with("/ready") ? "/v2/ready" : "/v2/metadata";
    for (std::string_view r : {"/health", "/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/api/v1/health", "/api/v1/models", "/api/v1/status", "/api/v1/segment",
                               "/api/v1/batch-segment", "/metrics",
                               "/api/calculate-metrics", "/api/disintegration-index"})
      if (path == r) return std::string(r);
    return "other";
  }

  /// A request and the memory lease of its body, kept alive together while its images are in use.
  /// A large body is not in `http` but spooled to disk (server.hpp).
  struct HeldRequest {
    HttpRequest http;
    MemoryBudget::Lease lease;
    std::shared_ptr<const SpooledBody> spooled;
    std::string_view body() const { return spooled ? spooled->view() : std::string_view(http.body()); }
  };

  void handle(HttpRequest req, Respond respond) { handle(std::move(req), {}, std::move(respond)); }

  /// Answers the paths under /v2 but its health probes (the Open Inference Protocol, oip_http.hpp);
  /// without one they are 404. Set it before serving.
  using V2Handler = std::function<void(const std::shared_ptr<HeldRequest>&, const std::string& path, Respond)>;
  void serve_v2(V2Handler handler) { v2_ = std::move(handler); }

  /// Answers `req` by calling `respond` exactly once (maybe on another thread, later). `body_lease`
  /// holds the body's bytes in the memory budget; it is released with the body.
  /// `spooled`, when given, is the body (`req`'s own is then empty).
  void handle(HttpRequest req, MemoryBudget::Lease body_lease, Respond respond,
              std::shared_ptr<const SpooledBody> spooled = nullptr) {
    const TimePoint start = Clock::now();
    auto held = std::make_shared<HeldRequest>(HeldRequest{std::move(req), std::move(body_lease), std::move(spooled)});
    const HttpRequest& r = held->http;
    if (r.method() == http::verb::head) {  // HEAD: GET's answer without its body
      respond = [inner = std::move(respond)](HttpResponse res) {
        const std::size_t length = res.body().size();
        res.body().clear();
        res.content_length(length);
        inner(std::move(res));
      };
    }
    try {
      route(held, start, respond);
    } catch (const MethodNotAllowed& e) {
      HttpResponse res = error_response(r, ApiError{405, "method_not_allowed", "use " + e.allowed, std::nullopt});
      res.set(http::field::allow, e.allowed);
      respond(std::move(res));
    } catch (const ApiError& e) {
      respond(error_response(r, e));
    } catch (const Error& e) {
      // Option and multipart errors carry errc::invalid_argument and a message for the client.
      if (e.code() == errc::invalid_argument) return respond(error_response(r, ApiError::bad_request(message_of(e))));
      respond(error_response(r, api_error_from(e.code(), limits_.retry_after_s)));
    } catch (const std::exception& e) {
      respond(error_response(r, ApiError{500, "internal_error", e.what(), std::nullopt}));
    }
  }

  /// Prometheus text: the HTTP metrics, then each model's.
  std::string render_metrics() const {
    std::string out;
    metrics_->render(out);
    out += "# HELP sluice_http_memory_budget_bytes Request bytes the server may hold at once.\n";
    out += "# TYPE sluice_http_memory_budget_bytes gauge\nsluice_http_memory_budget_bytes " +
           std::to_string(memory_->limit()) + "\n";
    out += "# HELP sluice_http_memory_in_use_bytes Request bytes held now (bodies, decoded images).\n";
    out += "# TYPE sluice_http_memory_in_use_bytes gauge\nsluice_http_memory_in_use_bytes " +
           std::to_string(memory_->in_use()) + "\n";
    out += "# HELP sluice_http_memory_rejections_total Requests and images refused for want of budget.\n";
    out += "# TYPE sluice_http_memory_rejections_total counter\nsluice_http_memory_rejections_total " +
           std::to_string(memory_->rejections()) + "\n";
    for (const auto& m : models()) m->render_metrics(out);
    return group_metric_families(out);  // each model renders the same families: one TYPE line each
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
    // Strings from clients are sanitised where they enter; replacing here too means that one that
    // slipped through costs a U+FFFD, never an exception.
    res.body() = body.dump(-1, ' ', false, Json::error_handler_t::replace);
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

  /// The models and how requests name them, replaced whole by publish().
  struct Catalog {
    std::vector<std::shared_ptr<ModelService>> models;
    std::map<std::string, std::shared_ptr<ModelService>> by_name;
    std::map<std::string, std::string> alias_of;  ///< another spelling -> a model's name
    std::string default_model;
  };

  std::shared_ptr<const Catalog> catalog() const {
    std::lock_guard lock(catalog_mutex_);
    return catalog_;
  }

  std::string failure() const {
    std::lock_guard lock(catalog_mutex_);
    return failure_;
  }

  /// The 503 of a request that needs a model before any is ready.
  ApiError not_ready() const {
    const std::string why = failure();
    if (!why.empty()) return ApiError{503, "unavailable", "the models failed to load: " + why, limits_.retry_after_s};
    return ApiError{503, "loading", "the models are loading and warming up; retry later", limits_.retry_after_s};
  }

  static std::string utc_timestamp() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
  }

  /// GET /health and /api/v1/health: the service's fields (status, timestamp, service, device)
  /// and sluice's (ready, models_loaded, models, uptime_s). status: loading, healthy or unhealthy.
  Json health() const {
    const auto c = catalog();
    const std::string why = failure();
    Json names = Json::array();
    bool gpu = false;
    std::vector<std::string> devices;
    std::string device_name = "CPU";
    if (c) {
      for (const auto& m : c->models) {
        names.push_back(m->name());
        const std::string backend = m->info().value("backend", std::string());
        if (backend.find("cuda") == std::string::npos) continue;
        gpu = true;
        if (std::find(devices.begin(), devices.end(), backend) == devices.end()) devices.push_back(backend);
        device_name = devices.front();
      }
    }
    Json j{{"status", c ? "healthy" : why.empty() ? "loading" : "unhealthy"},
           {"ready", c != nullptr},
           {"timestamp", utc_timestamp()},
           {"service", "sluice"},
           {"device", {{"gpu_available", gpu}, {"device_count", devices.size()}, {"device_name", device_name}}},
           {"models_loaded", c ? c->models.size() : 0},
           {"models", std::move(names)},
           {"uptime_s", seconds_since(started_)}};
    if (!why.empty()) j["error"] = why;
    return j;
  }

  Json models_json(const Catalog& c) const {
    Json list = Json::array();
    for (const auto& m : c.models) {
      Json info = m->info();
      info["name"] = m->name();
      info["default"] = m->name() == c.default_model;
      info["available"] = true;
      info["description"] = info.value("network", m->name()) + " on " + info.value("backend", std::string("?"));
      Json aliases = Json::array();
      for (const auto& [alias, target] : c.alias_of)
        if (target == m->name() && alias != m->name()) aliases.push_back(alias);
      info["aliases"] = std::move(aliases);
      list.push_back(std::move(info));
    }
    return {{"models", std::move(list)}, {"default_model", c.default_model}};
  }

  Json status_json() const {
    Json models = Json::object();
    for (const auto& m : this->models()) models[m->name()] = m->status();
    return {{"status", ready() ? "running" : "loading"},
            {"uptime_s", seconds_since(started_)},
            {"open_connections", metrics_->open_connections()},
            {"images_in_flight", in_flight_.load()},
            {"models", std::move(models)}};
  }

  /// Dispatches by path and method; throws what handle() turns into an error answer.
  void route(const std::shared_ptr<HeldRequest>& held, TimePoint start, Respond& respond) {
    const HttpRequest& req = held->http;
    const Target target = parse_target(req.target());
    const std::string& path = target.path;
    const auto method = req.method();
    auto only = [&](http::verb v) {
      if (method == v || (v == http::verb::get && method == http::verb::head)) return;
      throw MethodNotAllowed{v == http::verb::get ? "GET, HEAD" : std::string(http::to_string(v))};
    };
    // The service's health is /api/v1/health; /health is the same answer at the root. Liveness
    // and readiness are separate probes: live as soon as the server listens, ready once the
    // models can serve.
    if (path == "/api/v1/health" || path == "/health") {
      only(http::verb::get);
      return respond(json_response(req, 200, health()));
    }
    if (path == "/health/live") {
      only(http::verb::get);
      return respond(json_response(req, 200, {{"status", "alive"}, {"uptime_s", seconds_since(started_)}}));
    }
    if (path == "/health/ready") {
      only(http::verb::get);
      if (ready()) return respond(json_response(req, 200, {{"status", "ready"}, {"ready", true}}));
      const ApiError e = not_ready();
      HttpResponse res = json_response(req, 503, {{"status", failure().empty() ? "loading" : "unhealthy"},
                                                  {"ready", false}, {"detail", e.message}});
      res.set(http::field::retry_after, std::to_string(limits_.retry_after_s));
      return respond(std::move(res));
    }
    // The Open Inference Protocol's probes: the status code is the answer (200 true, 4xx false),
    // the body is empty.
    if (path == "/v2/health/live" || path == "/v2/health/ready") {
      only(http::verb::get);
      const bool yes = path == "/v2/health/live" || ready();
      HttpResponse res{yes ? http::status::ok : http::status::bad_request, req.version()};
      return respond(finish(std::move(res), req));
    }
    if (v2_ && (path == "/v2" || path.starts_with("/v2/"))) return v2_(held, path, std::move(respond));
    if (path == "/api/v1/models") {
      only(http::verb::get);
      const auto c = catalog();
      if (!c) throw not_ready();
      return respond(json_response(req, 200, models_json(*c)));
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
    // The service's metric endpoints (no /v1): geometry on the request's own polygons, bounded by
    // limits_.polygons, computed on the metrics threads.
    if (path == "/api/calculate-metrics") {
      only(http::verb::post);
      return answer_metrics(held, respond, &calculate_metrics_json);
    }
    if (path == "/api/disintegration-index") {
      only(http::verb::post);
      return answer_metrics(held, respond, &disintegration_index_json);
    }
    if (path == "/api/v1/segment") {
      only(http::verb::post);
      return segment(held, target, start, respond);
    }
    if (path == "/api/v1/batch-segment") {
      only(http::verb::post);
      return batch_segment(held, target, start, respond);
    }
    return respond(error_response(req, ApiError::not_found("no endpoint " + clip_utf8(path, 128))));
  }

  using MetricsWork = Json (*)(std::string_view, const PolygonLimits&);

  /// Answers a metric endpoint with `work`'s JSON or its error, on the metrics threads when there
  /// are any. The held request keeps the body (and its memory lease) until then.
  void answer_metrics(const std::shared_ptr<HeldRequest>& held, Respond& respond, MetricsWork work) {
    auto run = [this, held, work](const Respond& answer) {
      const HttpRequest& req = held->http;
      try {
        answer(json_response(req, 200, work(held->body(), limits_.polygons)));
      } catch (const ApiError& e) {
        answer(error_response(req, e));
      } catch (const std::exception& e) {
        answer(error_response(req, ApiError{500, "internal_error", e.what(), std::nullopt}));
      }
    };
    if (!metrics_pool_) return run(respond);
    boost::asio::post(*metrics_pool_, [run, answer = std::move(respond)] { run(answer); });
  }

  /// The model a request names (its name or another spelling of its network), or the default;
  /// 503 while none is ready, 404 listing every accepted name for an unknown one.
  std::shared_ptr<ModelService> find_model(const SegmentOptions& options) const {
    const auto c = catalog();
    if (!c) throw not_ready();
    const std::string& name = options.model.empty() ? c->default_model : options.model;
    if (const auto it = c->by_name.find(name); it != c->by_name.end()) return it->second;
    if (const auto it = c->alias_of.find(name); it != c->alias_of.end()) return c->by_name.at(it->second);
    std::string known;
    for (const auto& m : c->models) {
      known += (known.empty() ? "" : ", ") + m->name();
      std::string others;
      for (const auto& [alias, target] : c->alias_of)
        if (target == m->name()) others += (others.empty() ? "" : ", ") + alias;
      if (!others.empty()) known += " (also " + others + ")";
    }
    throw ApiError::not_found("unknown model '" + clip_utf8(name, 64) + "' (models: " + known + ")");
  }

  SegmentJob make_job(std::string_view bytes, std::shared_ptr<const void> owner, const SegmentOptions& options) const {
    SegmentJob job;
    job.image = bytes;
    job.owner = std::move(owner);
    job.threshold = options.threshold;
    job.detect_holes = options.detect_holes;
    // No deadline: a century away (not TimePoint::max(), which arithmetic on deadlines would overflow).
    const Duration timeout =
        limits_.request_timeout > Duration::zero() ? limits_.request_timeout : Duration(std::chrono::hours(24 * 365 * 100));
    job.deadline = Clock::now() + timeout;
    return job;
  }

  /// `respond` is moved from only once the request is accepted: errors thrown before reach handle().
  void segment(const std::shared_ptr<HeldRequest>& held, const Target& target, TimePoint start, Respond& respond) {
    const HttpRequest& req = held->http;
    const Upload up = read_upload(held->http, held->body(), target, "file", limits_.multipart);
    if (up.files.empty()) throw ApiError::bad_request("missing field 'file'");
    if (up.files.size() > 1) throw ApiError::bad_request("send one 'file' (use /api/v1/batch-segment for several)");
    const auto model = find_model(up.options);
    const auto& [filename, bytes] = up.files[0];
    // A raw image/* body has no file name to check; a multipart one must name an image.
    const bool named = req[http::field::content_type].starts_with("multipart/");
    if (auto problem = image_problem(filename, bytes, named, limits_.max_pixels)) {
      metrics_->record_image(model->name(), problem->code);
      throw *problem;
    }
    ++in_flight_;
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    const unsigned retry = limits_.retry_after_s;
    model->segment(make_job(bytes, held, up.options),
                   [this, version, keep_alive, retry, start, model_name = model->name(),
                    respond = std::move(respond)](std::error_code ec, SegmentOutcome out) {
                     --in_flight_;
                     HttpRequest shape{http::verb::post, "/", version};
                     shape.keep_alive(keep_alive);
                     if (ec) {
                       const ApiError e = image_error(ec, out, retry);
                       metrics_->record_image(model_name, e.code);
                       return respond(error_response(shape, e));
                     }
                     metrics_->record_image(model_name, "ok");
                     respond(json_response(shape, 200, image_json(out, seconds_since(start))));
                   });
  }

  /// Every file gets its own result or its own error, in order: a bad file (wrong name, empty,
  /// over the pixel limit, undecodable) fails alone.
  void batch_segment(const std::shared_ptr<HeldRequest>& held, const Target& target, TimePoint start,
                     Respond& respond) {
    const HttpRequest& req = held->http;
    const Upload up = read_upload(held->http, held->body(), target, "files", limits_.multipart);
    if (up.files.empty()) throw ApiError::bad_request("missing field 'files'");
    if (up.files.size() > limits_.max_files)
      throw ApiError{413, "too_many_files",
                     std::to_string(up.files.size()) + " files, more than the limit of " +
                         std::to_string(limits_.max_files),
                     std::nullopt};
    const auto model = find_model(up.options);
    const std::size_t n = up.files.size();
    std::vector<std::string> filenames;
    std::vector<std::optional<ApiError>> refused(n);
    std::vector<SegmentJob> jobs;
    std::vector<std::size_t> queued;  // the file index of each job
    for (std::size_t i = 0; i < n; ++i) {
      const auto& [name, bytes] = up.files[i];
      filenames.push_back(name);
      refused[i] = image_problem(name, bytes, true, limits_.max_pixels);
      if (refused[i]) continue;
      jobs.push_back(make_job(bytes, held, up.options));
      queued.push_back(i);
    }
    in_flight_ += static_cast<std::int64_t>(jobs.size());
    auto complete = [this, n, start, filenames = std::move(filenames), refused = std::move(refused),
                     queued, options = up.options, model_name = model->name(), version = req.version(),
                     keep_alive = req.keep_alive(), respond = std::move(respond)](
                        std::vector<std::pair<std::error_code, SegmentOutcome>> answers) {
      in_flight_ -= static_cast<std::int64_t>(queued.size());
      HttpRequest shape{http::verb::post, "/", version};
      shape.keep_alive(keep_alive);
      std::vector<std::optional<ApiError>> errors = refused;
      std::vector<const SegmentOutcome*> outcomes(n, nullptr);
      for (std::size_t k = 0; k < queued.size() && k < answers.size(); ++k) {
        auto& [ec, out] = answers[k];
        if (ec) errors[queued[k]] = image_error(ec, out, limits_.retry_after_s);
        else outcomes[queued[k]] = &out;
      }
      std::size_t ok = 0, polygons = 0;
      Json results = Json::array();
      for (std::size_t i = 0; i < n; ++i) {
        Json r;
        if (outcomes[i]) {
          ++ok;
          r = image_json(*outcomes[i], seconds_since(start));
          if (const auto p = r.find("polygons"); p != r.end()) polygons += p->size();
        } else {
          if (!errors[i]) errors[i] = ApiError{500, "internal_error", "no answer for this image", std::nullopt};
          r = {{"success", false}, {"error", errors[i]->code}, {"detail", errors[i]->detail()}};
        }
        metrics_->record_image(model_name, outcomes[i] ? "ok" : errors[i]->code);
        r["filename"] = filenames[i];
        r["batch_index"] = i;
        results.push_back(std::move(r));
      }
      // When every image failed the same way for the server's sake (queue full, deadline), the
      // request as a whole did: the client should retry it.
      if (ok == 0) {
        bool same = true;
        for (const auto& e : errors) same = same && e->code == errors.front()->code;
        if (same && errors.front()->status >= 500) return respond(error_response(shape, *errors.front()));
      }
      Json body{{"success", ok > 0},
                {"batch_size", n},
                {"successful_count", ok},
                {"failed_count", n - ok},
                {"total_polygons", polygons},
                {"model_used", model_name},
                {"threshold_used", options.threshold},
                {"processing_time", seconds_since(start)},
                {"results", std::move(results)}};
      respond(json_response(shape, 200, body));
    };
    if (jobs.empty()) return complete({});
    // One Batcher item per file: the Batcher forms batches across this and other requests, so any
    // number of files is split over as many batches as the model's safe size needs.
    model->segment_many(std::move(jobs), std::move(complete));
  }

  mutable std::mutex catalog_mutex_;
  std::shared_ptr<const Catalog> catalog_;  // null while loading
  std::string failure_;                     // why loading failed
  ApiLimits limits_;
  std::shared_ptr<HttpMetrics> metrics_;
  std::shared_ptr<MemoryBudget> memory_;
  TimePoint started_;
  std::atomic<std::int64_t> in_flight_{0};
  V2Handler v2_;
  std::optional<boost::asio::thread_pool> metrics_pool_;  // last: joined before the rest is destroyed
};

}  // namespace sluice::serve
