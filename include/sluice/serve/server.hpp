// sluice/serve/server.hpp: the HTTP/1.1 connection layer on Boost.Beast -- async accept, keep-alive
// sessions on their own strands of the caller's executor (the Batcher's io_context), header and body
// read timeouts, a body-size limit (413), a cap on open connections, 100-continue, and a graceful
// shutdown that stops accepting, closes idle connections and lets in-flight requests finish.
// What a request means is the Api's business (api.hpp).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "sluice/core/clock.hpp"
#include "sluice/serve/api.hpp"

namespace sluice::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;

struct ServerLimits {
  std::size_t max_body_bytes = 64ull * 1024 * 1024;  ///< larger bodies: 413
  std::size_t max_header_bytes = 16 * 1024;          ///< larger headers: 431
  std::size_t max_connections = 256;                 ///< more: 503 and close
  Duration header_timeout = std::chrono::seconds(10);  ///< also the keep-alive idle timeout
  Duration body_timeout = std::chrono::seconds(60);
  Duration write_timeout = std::chrono::seconds(30);
  Duration drain_timeout = std::chrono::seconds(60);  ///< longest wait for in-flight requests at shutdown
};

class Server : public std::enable_shared_from_this<Server> {
 public:
  Server(asio::any_io_executor executor, ServerLimits limits, std::shared_ptr<Api> api)
      : executor_(std::move(executor)), limits_(limits), api_(std::move(api)),
        acceptor_(asio::make_strand(executor_)), drain_timer_(acceptor_.get_executor()) {}

  /// Binds and starts accepting; returns the bound endpoint (port 0 picks a free port).
  asio::ip::tcp::endpoint listen(const std::string& address, unsigned short port) {
    const asio::ip::tcp::endpoint ep(asio::ip::make_address(address), port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    const auto bound = acceptor_.local_endpoint();
    asio::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->accept(); });
    return bound;
  }

  /// Stops accepting, closes idle connections, and calls `drained` once every in-flight request
  /// has been answered (or after the drain timeout). Safe to call from any thread, once.
  void shutdown(std::function<void()> drained) {
    asio::dispatch(acceptor_.get_executor(), [self = shared_from_this(), drained = std::move(drained)]() mutable {
      if (self->stopping_.exchange(true)) return;
      self->drained_ = std::move(drained);
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      for (const auto& weak : self->live_sessions())
        if (auto s = weak.lock()) s->stop();
      self->drain_timer_.expires_after(self->limits_.drain_timeout);
      self->drain_timer_.async_wait([self](beast::error_code ec) {
        if (!ec) self->on_drained();
      });
      self->check_drained();
    });
  }

  bool stopping() const { return stopping_.load(); }

 private:
  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(asio::ip::tcp::socket socket, std::shared_ptr<Server> server)
        : stream_(std::move(socket)), server_(std::move(server)) {}

    ~Session() { server_->session_closed(); }

    void start() {
      asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
    }

    /// At shutdown: an idle connection closes now; a busy one closes after its response.
    void stop() {
      asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
        self->closing_ = true;
        if (self->idle_) {
          beast::error_code ignored;
          self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
          self->stream_.socket().close(ignored);
        }
      });
    }

   private:
    void read_header() {
      if (closing_ || server_->stopping()) return close();
      parser_.emplace();
      parser_->header_limit(static_cast<std::uint32_t>(server_->limits_.max_header_bytes));
      parser_->body_limit(server_->limits_.max_body_bytes);
      idle_ = true;
      stream_.expires_after(server_->limits_.header_timeout);
      http::async_read_header(stream_, buffer_, *parser_,
                              [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
      idle_ = false;
      if (ec == http::error::header_limit) return reject(ApiError{431, "headers_too_large", "request headers too large", std::nullopt});
      // Beast checks a declared Content-Length against the body limit as soon as the header is in.
      if (ec == http::error::body_limit) return reject(too_large());
      if (ec) return close();  // timeout, client gone, or malformed request line: nothing to answer
      started_ = Clock::now();
      const auto& req = parser_->get();
      if (const auto len = parser_->content_length(); len && *len > server_->limits_.max_body_bytes)
        return reject(too_large());
      stream_.expires_after(server_->limits_.body_timeout);
      if (beast::iequals(req[http::field::expect], "100-continue")) {
        auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, req.version());
        http::async_write(stream_, *cont, [self = shared_from_this(), cont](beast::error_code ec, std::size_t) {
          if (ec) return self->close();
          self->read_body();
        });
        return;
      }
      read_body();
    }

    void read_body() {
      http::async_read(stream_, buffer_, *parser_,
                       [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); });
    }

    void on_body(beast::error_code ec) {
      if (ec == http::error::body_limit) return reject(too_large());
      if (ec) return close();
      stream_.expires_never();  // the Batcher's deadline bounds the time from here on
      server_->api_->handle(parser_->get(), [self = shared_from_this()](HttpResponse res) {
        // The answer may come from a Batcher thread: back onto this connection's strand.
        asio::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable { self->write(std::move(res)); });
      });
    }

    ApiError too_large() const {
      return ApiError{413, "payload_too_large",
                      "request body larger than the limit of " + std::to_string(server_->limits_.max_body_bytes) +
                          " bytes",
                      std::nullopt};
    }

    /// Answers an error found while reading, then closes (the rest of the request is unread).
    void reject(const ApiError& e) {
      HttpRequest shape{http::verb::get, "/", parser_ ? parser_->get().version() : 11};
      shape.keep_alive(false);
      if (started_ == TimePoint{}) started_ = Clock::now();
      closing_ = true;
      rejected_ = true;
      write(Api::error_response(shape, e));
    }

    void write(HttpResponse res) {
      if (closing_ || server_->stopping()) res.keep_alive(false);
      const auto& req = parser_->get();
      route_ = Api::route_of(req.target());
      method_ = std::string(req.method_string().substr(0, 16));
      if (method_.empty()) method_ = "OTHER";
      response_ = std::make_shared<HttpResponse>(std::move(res));
      stream_.expires_after(server_->limits_.write_timeout);
      http::async_write(stream_, *response_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
        self->on_write(ec);
      });
    }

    void on_write(beast::error_code ec) {
      const double seconds = std::chrono::duration<double>(Clock::now() - started_).count();
      server_->api_->metrics().record(route_, method_, response_->result_int(), seconds);
      const bool keep = response_->keep_alive();
      response_.reset();
      started_ = TimePoint{};
      if (!ec && rejected_) return linger();
      if (ec || !keep) return close();
      read_header();
    }

    /// After answering a request whose body was not read: closing now with unread bytes would send
    /// a reset that can destroy the answer in the client's buffers. Half-close, read and discard
    /// what still comes (for at most 2 s), then close.
    void linger() {
      if (!scratch_) {  // the first call: half-close, and one deadline for the whole drain
        beast::error_code ignored;
        stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
        stream_.expires_after(std::chrono::seconds(2));
        scratch_ = std::make_unique<std::array<char, 16 * 1024>>();
      }
      stream_.async_read_some(asio::buffer(*scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
        if (ec) return self->stream_.close();
        self->linger();
      });
    }

    void close() {
      beast::error_code ignored;
      stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
      stream_.close();
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::shared_ptr<HttpResponse> response_;
    std::shared_ptr<Server> server_;
    TimePoint started_{};
    std::string route_, method_;
    std::unique_ptr<std::array<char, 16 * 1024>> scratch_;
    bool idle_ = false;
    bool closing_ = false;
    bool rejected_ = false;
  };

  void accept() {
    acceptor_.async_accept(asio::make_strand(executor_), [self = shared_from_this()](beast::error_code ec,
                                                                                    asio::ip::tcp::socket socket) {
      if (ec == asio::error::operation_aborted || self->stopping_) return;
      if (!ec) self->on_accept(std::move(socket));
      self->accept();
    });
  }

  void on_accept(asio::ip::tcp::socket socket) {
    if (static_cast<std::size_t>(api_->metrics().open_connections()) >= limits_.max_connections) {
      api_->metrics().connection_refused();
      refuse(std::move(socket));
      return;
    }
    api_->metrics().connection_opened();
    auto session = std::make_shared<Session>(std::move(socket), shared_from_this());
    {
      std::lock_guard lock(sessions_mutex_);
      // Drop entries of closed sessions now and then, so the list stays bounded.
      if (sessions_.size() >= 2 * limits_.max_connections + 16)
        std::erase_if(sessions_, [](const std::weak_ptr<Session>& w) { return w.expired(); });
      sessions_.push_back(session);
    }
    session->start();
  }

  /// Over the connection cap: one canned 503, then close.
  void refuse(asio::ip::tcp::socket socket) {
    static const std::string body = ApiError{503, "too_many_connections", "too many open connections", 1u}.body();
    static const std::string reply = "HTTP/1.1 503 Service Unavailable\r\nServer: sluice\r\nContent-Type: "
                                     "application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
                                     std::to_string(body.size()) + "\r\n\r\n" + body;
    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
    stream->expires_after(std::chrono::seconds(2));
    asio::async_write(*stream, asio::buffer(reply), [stream](beast::error_code, std::size_t) {
      beast::error_code ignored;
      stream->socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
      stream->close();
    });
  }

  std::vector<std::weak_ptr<Session>> live_sessions() {
    std::lock_guard lock(sessions_mutex_);
    return sessions_;
  }

  void session_closed() {
    api_->metrics().connection_closed();
    if (stopping_) asio::post(acceptor_.get_executor(), [self = shared_from_this()] { self->check_drained(); });
  }

  void check_drained() {
    if (stopping_ && api_->metrics().open_connections() == 0) on_drained();
  }

  void on_drained() {
    drain_timer_.cancel();
    if (auto d = std::exchange(drained_, nullptr)) d();
  }

  asio::any_io_executor executor_;
  ServerLimits limits_;
  std::shared_ptr<Api> api_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer drain_timer_;
  std::atomic<bool> stopping_{false};
  std::function<void()> drained_;
  std::mutex sessions_mutex_;
  std::vector<std::weak_ptr<Session>> sessions_;
};

}  // namespace sluice::serve
