// Tests of the connection layer over loopback (127.0.0.1 only): keep-alive, body and header limits,
// read timeouts, the connection cap, and graceful shutdown, with a fake model behind the Api.
// Clients are synchronous Beast streams with their own expiry, so no test can hang.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <sstream>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "support/fake_service.hpp"
#include "sluice/serve/server.hpp"

namespace {

using namespace sluice::serve;
using namespace std::chrono_literals;
using sluice::serve::testing::FakeService;
namespace asio = boost::asio;
namespace beast = boost::beast;

struct ServerFixture : ::testing::Test {
  asio::io_context ioc;
  std::shared_ptr<FakeService> model = std::make_shared<FakeService>("m");
  std::shared_ptr<Api> api;
  std::shared_ptr<Server> server;
  ServerLimits limits;
  unsigned short port = 0;
  std::vector<std::thread> threads;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;

  void start() {
    api = std::make_shared<Api>(std::vector<std::shared_ptr<ModelService>>{model}, "", ApiLimits{},
                                std::make_shared<HttpMetrics>());
    server = std::make_shared<Server>(ioc.get_executor(), limits, api);
    port = server->listen("127.0.0.1", 0).port();
    guard.emplace(ioc.get_executor());
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
  }
  void TearDown() override {
    if (server && !server->stopping()) {
      std::promise<void> done;
      server->shutdown([&] { done.set_value(); });
      done.get_future().wait_for(10s);
    }
    guard.reset();
    ioc.stop();
    for (auto& t : threads) t.join();
    model->join();
  }

  /// A client connection with a 10 s expiry on every operation.
  struct Client {
    asio::io_context ctx;
    beast::tcp_stream stream{ctx};
    beast::flat_buffer buffer;
    /// `from`: the client's own loopback address, so that tests can play several peers.
    explicit Client(unsigned short port, const char* from = "127.0.0.1") {
      stream.expires_after(10s);
      stream.socket().open(asio::ip::tcp::v4());
      stream.socket().bind(asio::ip::tcp::endpoint(asio::ip::make_address(from), 0));
      stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    }
    /// Sends raw bytes and reads the answer.
    HttpResponse raw(const std::string& bytes) {
      asio::write(stream, asio::buffer(bytes));
      return read();
    }
    HttpResponse call(http::request<http::string_body> req) {
      req.set(http::field::host, "127.0.0.1");
      req.prepare_payload();
      stream.expires_after(10s);
      http::write(stream, req);
      return read();
    }
    HttpResponse read() {
      HttpResponse res;
      stream.expires_after(10s);
      http::read(stream, buffer, res);
      return res;
    }
    /// True once the server has closed the connection (EOF); false on the client's own timeout.
    bool closed_by_server() {
      char byte;
      beast::error_code ec;
      stream.expires_after(10s);
      stream.read_some(asio::buffer(&byte, 1), ec);
      return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset;
    }
  };

  static http::request<http::string_body> get(const std::string& target) {
    return {http::verb::get, target, 11};
  }
  static http::request<http::string_body> post_image(const std::string& body) {
    http::request<http::string_body> r{http::verb::post, "/api/v1/segment", 11};
    r.set(http::field::content_type, "image/png");
    r.body() = body;
    return r;
  }
  /// Sends a request with `body` on each client and waits until the model has them all: the
  /// connections are then busy, not waiting for a header.
  void occupy(std::initializer_list<Client*> clients, const std::string& body = "busy") {
    const int expected = model->jobs.load() + static_cast<int>(clients.size());
    for (Client* c : clients) {
      auto req = post_image(body);
      req.set(http::field::host, "127.0.0.1");
      req.prepare_payload();
      http::write(c->stream, req);
    }
    for (int i = 0; i < 500 && model->jobs.load() < expected; ++i) std::this_thread::sleep_for(2ms);
    ASSERT_EQ(model->jobs.load(), expected);
  }
};

TEST_F(ServerFixture, KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  Client c(port);
  for (int i = 0; i < 3; ++i) {
    auto r = c.call(get("/api/v1/health"));
    EXPECT_EQ(r.result_int(), 200u);
    EXPECT_TRUE(r.keep_alive());
  }
  auto r = c.call(post_image("some bytes"));
  EXPECT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(nlohmann::json::parse(r.body())["bytes"], 10);
  r = c.call(get("/metrics"));
  EXPECT_NE(r.body().find("sluice_http_requests_total{route=\"/api/v1/health\",method=\"GET\",status=\"200\"} 3"),
            std::string::npos)
      << r.body();
  EXPECT_NE(r.body().find("sluice_http_connections_total 1"), std::string::npos);
  EXPECT_NE(r.body().find("fake_jobs_total{model=\"m\"} 1"), std::string::npos);
}

TEST_F(ServerFixture, BodyLargerThanTheLimitIs413) {
  limits.max_body_bytes = 1000;
  start();
  {
    Client c(port);  // declared by Content-Length: refused before the body is read
    auto r = c.call(post_image(std::string(1001, 'x')));
    EXPECT_EQ(r.result_int(), 413u);
    EXPECT_EQ(nlohmann::json::parse(r.body())["error"], "payload_too_large");
    EXPECT_FALSE(r.keep_alive());
  }
  {
    Client c(port);  // chunked: refused when the body passes the limit
    std::string chunked = "POST /api/v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) chunked += "190\r\n" + std::string(400, 'y') + "\r\n";
    chunked += "0\r\n\r\n";
    asio::write(c.stream, asio::buffer(chunked));
    auto r = c.read();
    EXPECT_EQ(r.result_int(), 413u);
  }
  Client c(port);  // at the limit: served
  EXPECT_EQ(c.call(post_image(std::string(1000, 'x'))).result_int(), 200u);
}

TEST_F(ServerFixture, OversizedHeadersAre431) {
  limits.max_header_bytes = 512;
  start();
  Client c(port);
  auto req = get("/api/v1/health");
  req.set("X-Padding", std::string(1000, 'p'));
  auto r = c.call(req);
  EXPECT_EQ(r.result_int(), 431u);
}

TEST_F(ServerFixture, SlowClientsAreDisconnected) {
  limits.header_timeout = 200ms;
  limits.body_timeout = 200ms;
  start();
  Client idle(port);  // sends nothing
  EXPECT_TRUE(idle.closed_by_server());
  Client partial_header(port);
  asio::write(partial_header.stream, asio::buffer(std::string("GET /api/v1/health HTTP/1.1\r\nHost")));
  EXPECT_TRUE(partial_header.closed_by_server());
  Client slow_body(port);  // promises 100 bytes, sends 10
  asio::write(slow_body.stream, asio::buffer(std::string("POST /api/v1/segment HTTP/1.1\r\nHost: x\r\n"
                                                         "Content-Type: image/png\r\nContent-Length: 100\r\n\r\n0123456789")));
  EXPECT_TRUE(slow_body.closed_by_server());
  EXPECT_EQ(model->jobs.load(), 0);
  Client fine(port);  // the server still serves
  EXPECT_EQ(fine.call(get("/api/v1/health")).result_int(), 200u);
}

TEST_F(ServerFixture, AtTheCapTheConnectionWaitingLongestForAHeaderMakesRoom) {
  limits.max_connections = 2;
  start();
  Client oldest(port), newer(port);
  EXPECT_EQ(oldest.call(get("/api/v1/health")).result_int(), 200u);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(newer.call(get("/api/v1/health")).result_int(), 200u);
  // Both now wait for their next request header; a third client takes the oldest one's place.
  Client third(port);
  EXPECT_EQ(third.call(get("/api/v1/health")).result_int(), 200u);
  EXPECT_TRUE(oldest.closed_by_server());
  EXPECT_EQ(newer.call(get("/api/v1/health")).result_int(), 200u);
  auto m = third.call(get("/metrics"));
  EXPECT_NE(m.body().find("sluice_http_connections_evicted_total 1"), std::string::npos) << m.body();
}

TEST_F(ServerFixture, ConnectionsOverTheCapGet503WhenEveryConnectionIsBusy) {
  limits.max_connections = 2;
  model->delay = 500ms;
  start();
  Client a(port), b(port);
  occupy({&a, &b});
  Client c(port);
  auto r = c.read();  // answered without asking
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_EQ(nlohmann::json::parse(r.body())["error"], "too_many_connections");
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_EQ(a.read().result_int(), 200u);  // the busy ones are served
  EXPECT_EQ(b.read().result_int(), 200u);
}

TEST_F(ServerFixture, OnePeerCannotTakeMoreThanItsShareOfConnections) {
  limits.max_connections_per_peer = 2;
  model->delay = 500ms;
  start();
  Client a(port, "127.0.0.3"), b(port, "127.0.0.3");
  EXPECT_EQ(a.call(get("/api/v1/health")).result_int(), 200u);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(b.call(get("/api/v1/health")).result_int(), 200u);
  // At its cap, the peer's connection waiting longest for a header makes room for its new one.
  Client c(port, "127.0.0.3");
  EXPECT_EQ(c.call(get("/api/v1/health")).result_int(), 200u);
  EXPECT_TRUE(a.closed_by_server());
  // With both of its connections busy, the peer's next one is refused; another peer is served.
  occupy({&b, &c});
  Client d(port, "127.0.0.3");
  EXPECT_EQ(d.read().result_int(), 503u);
  Client other(port, "127.0.0.4");
  EXPECT_EQ(other.call(get("/api/v1/health")).result_int(), 200u);
  EXPECT_EQ(b.read().result_int(), 200u);
  EXPECT_EQ(c.read().result_int(), 200u);
  auto m = other.call(get("/metrics"));
  EXPECT_NE(m.body().find("sluice_http_connections_refused_total{reason=\"per_peer\"} 1"), std::string::npos)
      << m.body();
  EXPECT_NE(m.body().find("sluice_http_connections_evicted_total 1"), std::string::npos) << m.body();
}

TEST_F(ServerFixture, MalformedRequestsGet400BeforeTheClose) {
  start();
  for (const std::string& bad : {std::string("GARBAGE\r\n\r\n"), std::string("GET / HTTP/9.9\r\n\r\n"),
                                std::string("GET / HTTP/1.1\r\nNoColonHere\r\n\r\n"),
                                std::string("GET / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n")}) {
    Client c(port);
    auto r = c.raw(bad);
    EXPECT_EQ(r.result_int(), 400u) << bad;
    EXPECT_EQ(nlohmann::json::parse(r.body())["error"], "bad_request");
    EXPECT_TRUE(c.closed_by_server());
  }
  Client c(port);
  EXPECT_EQ(c.call(get("/api/v1/health")).result_int(), 200u);
}

TEST_F(ServerFixture, HeadIsAnsweredLikeGetWithoutTheBody) {
  start();
  Client c(port);
  const auto full = c.call(get("/api/v1/models"));
  http::request<http::string_body> head{http::verb::head, "/api/v1/models", 11};
  head.set(http::field::host, "x");
  http::write(c.stream, head);
  http::response_parser<http::empty_body> parser;
  parser.skip(true);  // a response to HEAD has no body, whatever its Content-Length says
  c.stream.expires_after(10s);
  http::read(c.stream, c.buffer, parser);
  EXPECT_EQ(parser.get().result_int(), 200u);
  EXPECT_EQ(parser.get()[http::field::content_length], std::to_string(full.body().size()));
  // The connection is still in step: the next answer is the next request's.
  EXPECT_EQ(c.call(get("/api/v1/health")).result_int(), 200u);
}

TEST_F(ServerFixture, BodiesPastTheMemoryBudgetGet503BeforeTheyAreRead) {
  start();  // with a budget below the body limit
  api = std::make_shared<Api>(std::vector<std::shared_ptr<ModelService>>{model}, "",
                              ApiLimits{.memory_budget_bytes = 1500}, std::make_shared<HttpMetrics>());
  auto small = std::make_shared<Server>(ioc.get_executor(), limits, api);
  const auto small_port = small->listen("127.0.0.1", 0).port();
  Client holder(small_port);  // promises 1000 bytes and sends part of them: they stay reserved
  asio::write(holder.stream, asio::buffer(std::string("POST /api/v1/segment HTTP/1.1\r\nHost: x\r\n"
                                                      "Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n0123")));
  std::this_thread::sleep_for(50ms);
  Client c(small_port);
  // The header only: the answer must come without the body.
  auto r = c.raw("POST /api/v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n");
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_EQ(nlohmann::json::parse(r.body())["error"], "memory_budget_exhausted");
  asio::write(holder.stream, asio::buffer(std::string(996, 'y')));
  EXPECT_EQ(holder.read().result_int(), 200u);
  // The body's bytes are released when the last holder of the request lets go, which can come a
  // little after its answer reached the client: wait for that (bounded), then the budget is free.
  model->join();
  for (int i = 0; i < 500 && api->memory()->in_use() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(api->memory()->in_use(), 0u);
  Client after(small_port);  // the budget is free again
  EXPECT_EQ(after.call(post_image(std::string(1000, 'x'))).result_int(), 200u);
  model->join();  // the model lets go of the job (and its body) after it has answered
  EXPECT_EQ(api->memory()->in_use(), 0u);
  std::promise<void> done;
  small->shutdown([&] { done.set_value(); });
  done.get_future().wait_for(10s);
}

TEST_F(ServerFixture, EveryStartedRequestIsCountedOnceAnsweredOrDropped) {
  limits.body_timeout = 200ms;
  start();
  {
    Client stalled(port);  // a header, then a body that never comes: dropped
    asio::write(stalled.stream, asio::buffer(std::string("POST /api/v1/segment HTTP/1.1\r\nHost: x\r\n"
                                                         "Content-Type: image/png\r\nContent-Length: 100\r\n\r\n")));
    EXPECT_TRUE(stalled.closed_by_server());
  }
  Client c(port);
  c.raw("BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n");
  c.raw("FOO /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(c.call(get("/api/v1/health")).result_int(), 200u);
  auto value = [](const std::string& m, const std::string& prefix) {  // the sum over lines starting with `prefix`
    double sum = 0;
    std::istringstream lines(m);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind(prefix, 0) == 0) sum += std::stod(line.substr(line.rfind(' ') + 1));
    return sum;
  };
  // The stalled request is counted when its handler runs, which a loaded machine may delay past the
  // moment the client sees the close (the stream's timer closes the socket first): ask until it is.
  const std::string dropped = "sluice_http_requests_dropped_total{reason=\"body_timeout\"}";
  std::string m;
  int metrics_calls = 0;
  for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
    m = c.call(get("/metrics")).body();
    ++metrics_calls;
    if (value(m, dropped) > 0) break;
    std::this_thread::sleep_for(20ms);
  }
  // Methods outside the standard ones share one label.
  EXPECT_EQ(m.find("BREW"), std::string::npos);
  EXPECT_NE(m.find("method=\"other\""), std::string::npos) << m;
  // Started: the stalled POST, BREW, FOO, GET health and every /metrics request; answered: all but
  // the stalled one (the last /metrics answer is written after it was rendered, so it is not in it).
  EXPECT_EQ(value(m, "sluice_http_requests_started_total"), 4 + metrics_calls);
  EXPECT_EQ(value(m, "sluice_http_requests_total{"), 3 + (metrics_calls - 1));
  EXPECT_EQ(value(m, dropped), 1) << m;
}

TEST_F(ServerFixture, ExpectContinueIsHonoured) {
  limits.spool_threshold_bytes = 5;
  start();
  for (const std::string body : {"hello", "hello, spooled"}) {  // in memory, then spooled
    Client c(port);
    const std::string head = "POST /api/v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                             "Content-Length: " + std::to_string(body.size()) + "\r\nExpect: 100-continue\r\n\r\n";
    asio::write(c.stream, asio::buffer(head));
    http::response_parser<http::empty_body> interim;
    http::read_header(c.stream, c.buffer, interim);
    EXPECT_EQ(interim.get().result(), http::status::continue_) << body;
    asio::write(c.stream, asio::buffer(body));
    auto r = c.read();
    EXPECT_EQ(r.result_int(), 200u) << r.body();
    EXPECT_EQ(nlohmann::json::parse(r.body())["bytes"], body.size());
  }
}

TEST_F(ServerFixture, ShutdownFinishesInFlightRequestsAndClosesIdleOnes) {
  model->delay = 300ms;
  limits.body_timeout = 60s;  // the stalled upload below must not hold the shutdown for this long
  start();
  Client idle(port);
  EXPECT_EQ(idle.call(get("/api/v1/health")).result_int(), 200u);
  Client stalled(port);  // an upload that stopped half-way: closed at once, not after the body timeout
  asio::write(stalled.stream, asio::buffer(std::string("POST /api/v1/segment HTTP/1.1\r\nHost: x\r\n"
                                                       "Content-Type: image/png\r\nContent-Length: 100\r\n\r\n01")));
  Client busy(port);
  occupy({&busy}, "in flight");  // then shut down while its job runs
  std::promise<void> drained;
  server->shutdown([&] { drained.set_value(); });
  EXPECT_TRUE(idle.closed_by_server());
  EXPECT_TRUE(stalled.closed_by_server());
  auto r = busy.read();
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_FALSE(r.keep_alive());
  EXPECT_EQ(nlohmann::json::parse(r.body())["bytes"], 9);
  EXPECT_TRUE(busy.closed_by_server());
  EXPECT_EQ(drained.get_future().wait_for(10s), std::future_status::ready);
  // No new connections are accepted.
  asio::io_context ctx;
  beast::tcp_stream s(ctx);
  beast::error_code ec;
  s.expires_after(5s);
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  EXPECT_TRUE(ec);
}

TEST_F(ServerFixture, ShutdownTakesInConnectionsTheKernelHadAlreadyCompleted) {
  // Listening, but nothing runs the server yet: the client's connection completes in the kernel's
  // backlog and its whole request arrives before the server has accepted it; then the shutdown.
  api = std::make_shared<Api>(std::vector<std::shared_ptr<ModelService>>{model}, "", ApiLimits{},
                              std::make_shared<HttpMetrics>());
  server = std::make_shared<Server>(ioc.get_executor(), limits, api);
  port = server->listen("127.0.0.1", 0).port();
  Client late(port);
  auto req = post_image("backlog");
  req.set(http::field::host, "127.0.0.1");
  req.prepare_payload();
  http::write(late.stream, req);
  std::promise<void> drained;
  server->shutdown([&] { drained.set_value(); });
  guard.emplace(ioc.get_executor());
  for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
  // Taken in and answered, not reset with the closing acceptor.
  auto r = late.read();
  EXPECT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(drained.get_future().wait_for(10s), std::future_status::ready);
}

}  // namespace

namespace {

/// Descriptors of this process open on a file in `dir` (a spooled body has no name but its directory).
int open_in(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.rfind(dir + "/", 0) == 0) ++n;
  }
  return n;
}

std::string fresh_dir(const char* name) {
  const auto dir = std::filesystem::temp_directory_path() / (std::string(name) + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return std::filesystem::canonical(dir).string();
}

}  // namespace

TEST_F(ServerFixture, BodiesAboveTheSpoolThresholdAreSpooledAndAnsweredAsInMemory) {
  limits.spool_threshold_bytes = 1000;
  limits.spool_dir = fresh_dir("sluice-spool-test");
  start();
  ServerLimits in_memory = limits;  // the same server, never spooling
  in_memory.max_spool_bytes = 0;
  auto plain = std::make_shared<Server>(ioc.get_executor(), in_memory, api);
  const auto plain_port = plain->listen("127.0.0.1", 0).port();

  std::string image(200'000, '\0');
  for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<char>((i * 7919) >> 3);
  const std::string body = "--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\n" + image +
                           "\r\n--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"b.png\"\r\n\r\n" +
                           image.substr(1000) + "\r\n--XX--\r\n";
  auto batch = [&](unsigned short p) {
    http::request<http::string_body> r{http::verb::post, "/api/v1/batch-segment", 11};
    r.set(http::field::content_type, "multipart/form-data; boundary=XX");
    r.body() = body;
    Client c(p);
    auto res = c.call(std::move(r));
    EXPECT_EQ(res.result_int(), 200u) << res.body();
    auto j = nlohmann::json::parse(res.body());
    nlohmann::json results = j["results"];
    for (auto& x : results) x.erase("processing_time");
    return results;
  };
  const auto spooled = batch(port);
  const auto held = batch(plain_port);
  EXPECT_EQ(spooled, held);
  EXPECT_EQ(spooled.size(), 2u);
  // A raw image body, spooled: the same answer as in memory.
  {
    Client a(port), b(plain_port);
    EXPECT_EQ(nlohmann::json::parse(a.call(post_image(image)).body())["checksum"],
              nlohmann::json::parse(b.call(post_image(image)).body())["checksum"]);
  }
  model->join();
  EXPECT_EQ(server->spool().in_use(), 0u);
  EXPECT_EQ(plain->spool().in_use(), 0u);
  EXPECT_EQ(api->memory()->in_use(), 0u);
  EXPECT_EQ(open_in(limits.spool_dir), 0);
  EXPECT_TRUE(std::filesystem::is_empty(limits.spool_dir));  // unlinked from the start
  std::promise<void> done;
  plain->shutdown([&] { done.set_value(); });
  done.get_future().wait_for(10s);
  std::filesystem::remove_all(limits.spool_dir);
}

TEST_F(ServerFixture, ATruncatedSpooledUploadIsDroppedAndItsSpoolReleased) {
  limits.spool_threshold_bytes = 1000;
  limits.spool_dir = fresh_dir("sluice-spool-cut");
  start();
  {
    Client c(port);
    asio::write(c.stream, asio::buffer("POST /api/v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                                       "Content-Length: 100000\r\n\r\n" + std::string(5000, 'z')));
    for (int i = 0; i < 500 && open_in(limits.spool_dir) == 0; ++i) std::this_thread::sleep_for(2ms);
    EXPECT_EQ(open_in(limits.spool_dir), 1);  // the body is being spooled
    EXPECT_EQ(server->spool().in_use(), 100000u);
    EXPECT_TRUE(std::filesystem::is_empty(limits.spool_dir));
  }  // the client goes away mid-body
  for (int i = 0; i < 1000 && (server->spool().in_use() != 0 || open_in(limits.spool_dir) != 0); ++i)
    std::this_thread::sleep_for(2ms);
  EXPECT_EQ(server->spool().in_use(), 0u);
  EXPECT_EQ(open_in(limits.spool_dir), 0);
  EXPECT_EQ(api->memory()->in_use(), 0u);
  EXPECT_EQ(model->jobs.load(), 0);
  std::filesystem::remove_all(limits.spool_dir);
}

TEST_F(ServerFixture, SpooledBodiesPastTheSpoolBudgetGet503) {
  limits.spool_threshold_bytes = 1000;
  limits.max_spool_bytes = 5000;
  limits.max_body_bytes = 5000;
  start();
  Client holder(port);  // reserves 4000 of the 5000
  asio::write(holder.stream, asio::buffer(std::string("POST /api/v1/segment HTTP/1.1\r\nHost: x\r\n"
                                                      "Content-Type: image/png\r\nContent-Length: 4000\r\n\r\n01")));
  for (int i = 0; i < 500 && server->spool().in_use() == 0; ++i) std::this_thread::sleep_for(2ms);
  Client c(port);
  auto r = c.raw("POST /api/v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 2000\r\n\r\n");
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_EQ(nlohmann::json::parse(r.body())["error"], "spool_budget_exhausted");
  asio::write(holder.stream, asio::buffer(std::string(3998, 'y')));
  EXPECT_EQ(holder.read().result_int(), 200u);
}
