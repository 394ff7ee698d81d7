// sluice/serve/server.hpp: the HTTP/1.1 connection layer on Boost.Beast -- async accept, keep-alive
// sessions on their own strands of the caller's executor (the Batcher's io_context), header and body
// read timeouts, a body-size limit (413), 100-continue, 400 for a malformed request, and a graceful
// shutdown that stops accepting, closes idle keep-alive connections at once, gives requests still
// arriving (and a new connection's first one) a short grace, and lets requests already running
// finish. Against connection floods: a cap on open connections and one per peer address; at a cap
// a new connection takes the place of the one (of all, or of its peer's) that has waited longest
// for its header (idle keep-alive, slowloris), and header deadlines shorten while the table is
// nearly full. Bodies are admitted against the Api's memory budget before they are
// read (503 when full); a body above the spool threshold (or chunked) is instead written to an
// unlinked temporary file, mapped and admitted against the spool budget (spooled_body.hpp). What a
// request means is the Api's business (api.hpp).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
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
#include <boost/beast/http/file_body.hpp>

#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"
#include "sluice/serve/api.hpp"
#include "sluice/serve/memory_budget.hpp"
#include "sluice/serve/server_limits.hpp"
#include "sluice/serve/spooled_body.hpp"

namespace sluice::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;

class Server : public std::enable_shared_from_this<Server> {
 public:
  Server(asio::any_io_executor executor, ServerLimits limits, std::shared_ptr<Api> api)
      : executor_(std::move(executor)), limits_(std::move(limits)), api_(std::move(api)),
        acceptor_(asio::make_strand(executor_)), drain_timer_(acceptor_.get_executor()),
        spool_(std::make_shared<MemoryBudget>(limits_.max_spool_bytes)) {
    limits_.validate();
    if (limits_.spool_dir.empty()) limits_.spool_dir = default_spool_dir();
  }

  /// The bytes of spooled bodies held now, of limits.max_spool_bytes.
  const MemoryBudget& spool() const { return *spool_; }

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
      self->accept_backlog();
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

  /// The limits a connection's request parser gets (also what the request fuzzer parses with).
  static void configure_parser(http::request_parser<http::string_body>& parser, const ServerLimits& limits) {
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes);
  }

 private:
  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(asio::ip::tcp::socket socket, std::shared_ptr<Server> server, asio::ip::address peer)
        : stream_(std::move(socket)), server_(std::move(server)), peer_(std::move(peer)) {}

    ~Session() {
      settle_dropped();
      server_->session_closed(peer_);
    }

    void start() {
      asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
    }

    /// Starts a connection taken in while the server shuts down: its first request gets
    /// shutdown_grace to arrive, and it closes after that request's answer.
    void start_closing() {
      closing_ = true;  // before any handler runs: start() hands it to the strand
      start();
    }

    /// At shutdown: an idle keep-alive connection closes now; a request still arriving (header
    /// bytes already here, or a body) gets shutdown_grace to arrive, so a stalled upload is cut
    /// then, not after the body timeout, and so does the first request of a connection that has
    /// sent nothing yet (its client connected to send one: on a busy host its bytes may be a few
    /// milliseconds behind the signal); a running request closes after its response.
    void stop() {
      asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
        if (self->closing_) return;  // taken in at shutdown, or answering a rejection
        self->closing_ = true;
        if (self->phase_ == Phase::header || self->phase_ == Phase::body) {
          // A pending read keeps the deadline it started with: cancel it; its handler decides
          // (on_header: idle or arriving) and reads on under the grace deadline.
          self->regrace_ = true;
          self->stream_.cancel();
        }
      });
    }

    /// At the connection cap: closes this connection if it is still waiting for a header.
    void evict() {
      asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
        if (self->phase_ != Phase::header) return;
        self->server_->api_->metrics().connection_evicted();
        self->abort("evicted");
      });
    }

    const asio::ip::address& peer() const { return peer_; }

    /// Chosen to make room: no longer offered as a candidate (evict() then closes it on its strand).
    void withdraw_candidacy() { header_wait_since_.store(0, std::memory_order_release); }

    /// Since when this connection has waited for a header; nullopt while it is busy with a request.
    std::optional<std::int64_t> waiting_since() const {
      const std::int64_t t = header_wait_since_.load(std::memory_order_acquire);
      return t == 0 ? std::nullopt : std::optional<std::int64_t>(t);
    }

   private:
    enum class Phase { header, body, handling, writing };

    const http::request_header<>& request_header() const {
      return file_parser_ ? static_cast<const http::request_header<>&>(file_parser_->get())
                          : static_cast<const http::request_header<>&>(parser_->get());
    }

    void set_phase(Phase p) {
      phase_ = p;
      header_wait_since_.store(p == Phase::header ? Clock::now().time_since_epoch().count() : 0,
                               std::memory_order_release);
    }

    void read_header() {
      const bool shutting_down = closing_ || server_->stopping();
      if (shutting_down && answered_any_) return close();
      file_parser_.reset();
      parser_.emplace();
      configure_parser(*parser_, server_->limits_);
      set_phase(Phase::header);
      stream_.expires_after(shutting_down ? server_->limits_.shutdown_grace : server_->header_timeout());
      continue_header();
    }

    void continue_header() {
      http::async_read_header(stream_, buffer_, *parser_,
                              [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    /// True when a read was cancelled by stop() to go on under the shutdown grace deadline.
    bool regraced(const beast::error_code& ec) {
      if (ec != asio::error::operation_aborted || !std::exchange(regrace_, false)) return false;
      stream_.expires_after(server_->limits_.shutdown_grace);
      return true;
    }

    void on_header(beast::error_code ec) {
      if (regraced(ec)) {
        // Stopped while waiting for a header: idle after an answer, it closes now; its request
        // begun, or its first one still to come, it may arrive under the grace deadline.
        beast::error_code ignored;
        const bool arriving = !answered_any_ || parser_->got_some() || buffer_.size() > 0 ||
                              stream_.socket().available(ignored) > 0;
        return arriving ? continue_header() : abort("shutdown");
      }
      regrace_ = false;  // a stop() that came as this header completed: its cancel found no read
      // Timeout, eviction, client gone: no request was read, nothing to answer. A parse error
      // (malformed request line or header) is answered 400.
      if (ec && !is_parse_error(ec)) return close();
      started_ = Clock::now();
      request_open_ = true;
      server_->api_->metrics().request_started();
      if (ec == http::error::header_limit) return reject(ApiError{431, "headers_too_large", "request headers too large", std::nullopt});
      // Beast checks a declared Content-Length against the body limit as soon as the header is in.
      if (ec == http::error::body_limit) return reject(too_large());
      if (ec) return reject(ApiError::bad_request(std::string("malformed HTTP request: ") + ec.message()));
      set_phase(Phase::body);
      if (const auto len = parser_->content_length(); len && *len > server_->limits_.max_body_bytes)
        return reject(too_large());
      // The body's bytes count against the memory budget (or, spooled, the spool budget) from
      // before the first one is read; a chunked body of unknown length reserves the largest allowed.
      const std::size_t body_bytes = parser_->chunked() ? server_->limits_.max_body_bytes
                                                        : static_cast<std::size_t>(parser_->content_length().value_or(0));
      const auto& limits = server_->limits_;
      if (limits.max_spool_bytes > 0 && (parser_->chunked() || body_bytes > limits.spool_threshold_bytes)) {
        if (auto e = start_spool(body_bytes)) return reject(*e);
      } else {
        lease_ = MemoryBudget::try_acquire(server_->api_->memory(), body_bytes);
        if (!lease_)
          return reject(ApiError{503, "memory_budget_exhausted",
                                 "the server holds as many request bytes as its memory budget allows; retry later",
                                 server_->api_->retry_after_s()});
      }
      stream_.expires_after(closing_ ? server_->limits_.shutdown_grace : server_->limits_.body_timeout);
      // From the parser that holds the header now (a spooled body's took it from parser_).
      const auto& header = request_header();
      if (beast::iequals(header[http::field::expect], "100-continue")) {
        auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, header.version());
        http::async_write(stream_, *cont, [self = shared_from_this(), cont](beast::error_code ec, std::size_t) {
          if (ec) return self->abort("client_closed");
          self->read_body();
        });
        return;
      }
      read_body();
    }

    /// Leases `bytes` of the spool budget and hands the body to a parser that writes it to an
    /// unlinked file; an error to answer when it cannot.
    std::optional<ApiError> start_spool(std::size_t bytes) {
      spool_lease_ = MemoryBudget::try_acquire(server_->spool_, bytes);
      if (!spool_lease_)
        return ApiError{503, "spool_budget_exhausted",
                        "the server holds as many spooled request bytes as its spool budget allows; retry later",
                        server_->api_->retry_after_s()};
      beast::file file;
      try {
        file.native_handle(open_spool_file(server_->limits_.spool_dir));
      } catch (const std::exception&) {
        spool_lease_.release();
        return spool_unavailable();
      }
      file_parser_.emplace(std::move(*parser_));  // Beast: a parser that read only the header converts
      file_parser_->body_limit(server_->limits_.max_body_bytes);
      beast::error_code ec;
      file_parser_->get().body().reset(std::move(file), ec);
      if (ec) {
        spool_lease_.release();
        return spool_unavailable();
      }
      return std::nullopt;
    }

    /// The spool directory cannot take the body (full disk, missing directory): not the client's
    /// fault, and not named to it.
    ApiError spool_unavailable() const {
      return ApiError{503, "spool_unavailable", "the server cannot store this request body now; retry later",
                      server_->api_->retry_after_s()};
    }

    void read_body() {
      auto done = [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); };
      if (file_parser_) return http::async_read(stream_, buffer_, *file_parser_, std::move(done));
      http::async_read(stream_, buffer_, *parser_, std::move(done));
    }

    /// The spooled body as the Api takes it: the header in a request without a body, and the file
    /// mapped. The file's descriptor closes with the parser; the mapping keeps its bytes.
    std::pair<HttpRequest, std::shared_ptr<const SpooledBody>> take_spooled() {
      auto& message = file_parser_->get();
      auto& body = message.body();
      beast::error_code ec;
      const std::uint64_t size = body.file().size(ec);
      if (ec) throw std::system_error(ec, "spooled request body");
      auto spooled = std::make_shared<const SpooledBody>(body.file().native_handle(), static_cast<std::size_t>(size),
                                                         std::move(spool_lease_));
      HttpRequest req(std::move(message.base()));
      body.file().close(ec);
      return {std::move(req), std::move(spooled)};
    }

    void on_body(beast::error_code ec) {
      if (regraced(ec)) return read_body();
      if (ec == http::error::body_limit) return reject(too_large());
      if (ec == beast::error::timeout) return abort(closing_ ? "shutdown" : "body_timeout");
      if (ec == asio::error::operation_aborted) return close();  // stop() or evict() gave the reason
      if (is_parse_error(ec)) return reject(ApiError::bad_request(std::string("malformed HTTP body: ") + ec.message()));
      if (ec) return abort("client_closed");
      set_phase(Phase::handling);
      stream_.expires_never();  // the Batcher's deadline bounds the time from here on
      route_ = Api::route_of(request_header().target());
      method_ = std::string(request_header().method_string());
      auto respond = [self = shared_from_this()](HttpResponse res) {
        // The answer may come from a Batcher thread: back onto this connection's strand.
        asio::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable { self->write(std::move(res)); });
      };
      if (!file_parser_) return server_->api_->handle(parser_->release(), std::move(lease_), std::move(respond));
      std::pair<HttpRequest, std::shared_ptr<const SpooledBody>> spooled;
      try {
        spooled = take_spooled();
      } catch (const std::exception&) {
        return reject(spool_unavailable());
      }
      file_parser_.reset();
      server_->api_->handle(std::move(spooled.first), {}, std::move(respond), std::move(spooled.second));
    }

    ApiError too_large() const {
      return ApiError{413, "payload_too_large",
                      "request body larger than the limit of " + std::to_string(server_->limits_.max_body_bytes) +
                          " bytes",
                      std::nullopt};
    }

    /// Answers an error found while reading, then closes (the rest of the request is unread).
    void reject(const ApiError& e) {
      const auto& req = request_header();
      HttpRequest shape{http::verb::get, "/", req.version() == 10 ? 10u : 11u};
      shape.keep_alive(false);
      route_ = Api::route_of(req.target());
      method_ = std::string(req.method_string());
      lease_.release();
      spool_lease_.release();
      closing_ = true;
      rejected_ = true;
      write(Api::error_response(shape, e));
    }

    void write(HttpResponse res) {
      set_phase(Phase::writing);
      if (closing_ || server_->stopping()) res.keep_alive(false);
      response_ = std::make_shared<HttpResponse>(std::move(res));
      stream_.expires_after(server_->limits_.write_timeout);
      http::async_write(stream_, *response_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
        self->on_write(ec);
      });
    }

    void on_write(beast::error_code ec) {
      const double seconds = std::chrono::duration<double>(Clock::now() - started_).count();
      if (ec) return abort("write_failed");
      server_->api_->metrics().record(route_, method_, response_->result_int(), seconds);
      request_open_ = false;
      answered_any_ = true;
      const bool keep = response_->keep_alive();
      response_.reset();
      if (rejected_) return linger();
      if (!keep) return close();
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

    /// A started request that will get no answer counts as dropped, once, when the connection ends
    /// (not when the last handler lets go of the session: /metrics must see it as soon as a client
    /// sees the connection closed).
    void settle_dropped() {
      if (!request_open_) return;
      request_open_ = false;
      server_->api_->metrics().request_dropped(drop_reason_);
    }

    /// Ends the connection; a request it had started counts as dropped for `reason`.
    void abort(const char* reason) {
      drop_reason_ = reason;
      close();
    }

    void close() {
      settle_dropped();
      header_wait_since_.store(0, std::memory_order_release);
      beast::error_code ignored;
      stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
      stream_.close();
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    /// The header, and a body held in memory; a spooled body's parser takes over from it.
    std::optional<http::request_parser<http::string_body>> parser_;
    std::optional<http::request_parser<http::file_body>> file_parser_;
    MemoryBudget::Lease spool_lease_;
    std::shared_ptr<HttpResponse> response_;
    std::shared_ptr<Server> server_;
    asio::ip::address peer_;
    MemoryBudget::Lease lease_;
    TimePoint started_{};
    std::string route_ = "other", method_;
    std::unique_ptr<std::array<char, 16 * 1024>> scratch_;
    Phase phase_ = Phase::header;
    std::atomic<std::int64_t> header_wait_since_{0};
    const char* drop_reason_ = "client_closed";
    bool request_open_ = false;
    bool regrace_ = false;
    bool closing_ = false;
    bool answered_any_ = false;  // a response was written on this connection
    bool rejected_ = false;
  };

  /// A Beast parse error (as opposed to a timeout, a closed connection or a cancelled read).
  static bool is_parse_error(const beast::error_code& ec) {
    return ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
           ec != http::error::end_of_stream && ec != http::error::partial_message;
  }

  Duration header_timeout() const {
    const bool pressure = 4 * static_cast<std::size_t>(api_->metrics().open_connections()) > 3 * limits_.max_connections;
    return pressure ? std::min(limits_.header_timeout, limits_.pressure_header_timeout) : limits_.header_timeout;
  }

  void accept() {
    acceptor_.async_accept(asio::make_strand(executor_), [self = shared_from_this()](beast::error_code ec,
                                                                                    asio::ip::tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      // Accepted as the shutdown began: taken in like the backlog (accept_backlog), not reset.
      const bool stopping = self->stopping_;
      if (!ec) self->on_accept(std::move(socket), stopping);
      if (!stopping) self->accept();
    });
  }

  /// At shutdown: the connections the kernel has already completed but nobody accepted yet (a
  /// client that connected and sent its request just before the signal) are taken in, so that
  /// closing the acceptor does not reset them; each then gets what stop() gives any connection.
  void accept_backlog() {
    beast::error_code ec;
    acceptor_.non_blocking(true, ec);
    while (!ec) {
      asio::ip::tcp::socket socket = acceptor_.accept(asio::make_strand(executor_), ec);
      if (!ec) on_accept(std::move(socket), true);
    }
  }

  /// `at_shutdown`: taken in from the backlog while shutting down (Session::start_closing).
  void on_accept(asio::ip::tcp::socket socket, bool at_shutdown = false) {
    beast::error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    if (ec) return;  // the client is already gone
    const asio::ip::address peer = remote.address();
    // Sessions looked at under the lock are released after it: the last reference to one may be
    // among them, and its destructor takes the same lock.
    std::vector<std::shared_ptr<Session>> seen;
    std::shared_ptr<Session> victim;
    {
      std::lock_guard lock(sessions_mutex_);
      // A peer at its cap makes room among its own connections, the server at its cap among all.
      if (const auto it = per_peer_.find(peer); it != per_peer_.end() && it->second >= limits_.max_connections_per_peer) {
        victim = longest_waiting(seen, &peer);
        if (!victim) {
          api_->metrics().connection_refused("per_peer");
          return refuse(std::move(socket));
        }
      } else if (static_cast<std::size_t>(api_->metrics().open_connections()) >= limits_.max_connections) {
        victim = longest_waiting(seen, nullptr);
        if (!victim) {
          api_->metrics().connection_refused("connection_cap");
          return refuse(std::move(socket));
        }
      }
      ++per_peer_[peer];
      api_->metrics().connection_opened();
    }
    if (victim) victim->evict();
    auto session = std::make_shared<Session>(std::move(socket), shared_from_this(), peer);
    {
      std::lock_guard lock(sessions_mutex_);
      // Drop entries of closed sessions now and then, so the list stays bounded.
      if (sessions_.size() >= 2 * limits_.max_connections + 16)
        std::erase_if(sessions_, [](const std::weak_ptr<Session>& w) { return w.expired(); });
      sessions_.push_back(session);
    }
    if (at_shutdown) return session->start_closing();
    session->start();
  }

  /// The live session that has waited longest for a request header (under sessions_mutex_).
  /// Only `peer`'s sessions when it is not null. The one chosen is no longer a candidate, so two
  /// new connections never pick the same one. `seen` keeps every live session it looked at, for
  /// the caller to release outside the lock.
  std::shared_ptr<Session> longest_waiting(std::vector<std::shared_ptr<Session>>& seen,
                                           const asio::ip::address* peer) {
    std::shared_ptr<Session> best;
    std::int64_t best_since = 0;
    for (const auto& weak : sessions_) {
      auto s = weak.lock();
      if (!s || (peer && s->peer() != *peer)) continue;
      const auto since = s->waiting_since();
      if (since && (!best || *since < best_since)) {
        best = s;
        best_since = *since;
      }
      seen.push_back(std::move(s));
    }
    if (best) best->withdraw_candidacy();
    return best;
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

  void session_closed(const asio::ip::address& peer) {
    {
      std::lock_guard lock(sessions_mutex_);
      if (const auto it = per_peer_.find(peer); it != per_peer_.end() && --it->second == 0) per_peer_.erase(it);
    }
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
  std::map<asio::ip::address, std::size_t> per_peer_;  ///< open connections per client address
  std::shared_ptr<MemoryBudget> spool_;  ///< bytes of bodies spooled to disk
};

}  // namespace sluice::serve
