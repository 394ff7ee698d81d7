// sluice/batching/io_thread.hpp: an io_context run by a thread of its own, for a Batcher built
// without an executor (blocking submit() and callback users who run no io_context themselves).
#pragma once

#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace sluice::batching {

class IoThread {
 public:
  IoThread() : guard_(ctx_.get_executor()), thread_([this] { ctx_.run(); }) {}
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;
  ~IoThread() { join(); }

  boost::asio::io_context::executor_type get_executor() noexcept { return ctx_.get_executor(); }

  /// Lets the context run out of work, and waits for the thread.
  void join() {
    guard_.reset();
    if (thread_.joinable()) thread_.join();
  }

 private:
  boost::asio::io_context ctx_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

}  // namespace sluice::batching
