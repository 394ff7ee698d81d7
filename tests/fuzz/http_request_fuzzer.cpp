// libFuzzer target of whole HTTP requests: the input is a byte stream from a client -- request
// lines, headers, bodies, several pipelined requests -- parsed as a connection parses it (Beast's
// parser with the server's limits) and each complete request routed through the Api to a model that
// answers at once. Whatever the bytes, every request gets exactly one answer, the answer
// serialises, a JSON answer is valid UTF-8 JSON, and nothing throws past the Api.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "sluice/core/utf8.hpp"
#include "sluice/serve/api.hpp"
#include "sluice/serve/oip_http.hpp"
#include "sluice/serve/server.hpp"

namespace {

using namespace sluice::serve;
namespace http = boost::beast::http;

/// Answers every image at once: a result that echoes its size, or an error for some sizes.
class InstantModel final : public ModelService {
 public:
  const std::string& name() const override { return name_; }
  Json info() const override { return {{"backend", "instant"}, {"input_size", {{"height", 4}, {"width", 4}}}}; }
  Json status() const override { return Json::object(); }
  void render_metrics(std::string&) const override {}
  void stop() override {}
  void segment(SegmentJob job, SegmentHandler done) override {
    SegmentOutcome out;
    if (job.image.size() % 5 == 1) {
      out.error_detail = std::string(job.image.substr(0, 40));  // client bytes in an error text
      return done(sluice::make_error_code(sluice::errc::invalid_argument), std::move(out));
    }
    out.result = {{"bytes", job.image.size()}, {"polygons", Json::array()}};
    // The Open Inference Protocol's maps: blank, at the pixels' size (8 x 8 for a file).
    out.width = job.form == ImageForm::rgb8 ? job.width : 8;
    out.height = job.form == ImageForm::rgb8 ? job.height : 8;
    const std::size_t plane = static_cast<std::size_t>(out.width) * static_cast<std::size_t>(out.height);
    if (job.outputs.mask) out.mask.assign(plane, 0);
    if (job.outputs.probability) out.probability.assign(plane, 0.0f);
    if (job.outputs.logits) {
      out.map_width = out.map_height = 4;
      out.logits.assign(16, 0.0f);
    }
    done({}, std::move(out));
  }

 private:
  std::string name_ = "m";
};

ServerLimits small_limits() {
  ServerLimits l;
  l.max_header_bytes = 4096;
  l.max_body_bytes = 64 * 1024;
  return l;
}

Api& api() {
  // metrics_threads = 0: the metric endpoints answer within handle() too.
  static Api instance({std::make_shared<InstantModel>()}, "",
                      ApiLimits{.max_files = 8, .memory_budget_bytes = 1 << 20, .metrics_threads = 0},
                      std::make_shared<HttpMetrics>());
  static const bool v2 = (serve_open_inference_protocol(instance), true);
  (void)v2;
  return instance;
}

void check_answer(const HttpResponse& res, bool head) {
  if (res.result_int() < 200 || res.result_int() > 599) std::abort();
  const auto type = res[http::field::content_type];
  if (head && !res.body().empty()) std::abort();  // HEAD: the length of the answer, not its body
  if (!head && type == "application/json" && (!sluice::is_valid_utf8(res.body()) || !nlohmann::json::accept(res.body())))
    std::abort();
  // The answer must serialise as the connection would write it.
  http::response_serializer<http::string_body> sr(res);
  boost::beast::error_code ec;
  sr.split(false);
  while (!sr.is_done() && !ec) sr.next(ec, [&](boost::beast::error_code&, const auto& buffers) {
    sr.consume(boost::beast::buffer_bytes(buffers));
  });
  if (ec) {
    std::fprintf(stderr, "serialising the answer failed: %s\n", ec.message().c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ServerLimits limits = small_limits();
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int requests = 0; requests < 8 && !rest.empty(); ++requests) {
    http::request_parser<http::string_body> parser;
    Server::configure_parser(parser, limits);
    parser.eager(true);
    boost::beast::error_code ec;
    const std::size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    if (ec == http::error::need_more) {
      parser.put_eof(ec);
      if (ec) return 0;  // a truncated request: the connection would wait, then time out
    } else if (ec) {
      return 0;  // the server answers 400/413/431 and closes
    }
    if (!parser.is_done()) return 0;
    rest.remove_prefix(used);
    int answers = 0;
    const bool head = parser.get().method() == http::verb::head;
    api().handle(parser.release(), [&](HttpResponse res) {
      ++answers;
      check_answer(res, head);
    });
    if (answers != 1) std::abort();  // the instant model answers within handle()
  }
  return 0;
}
