// sluice/core/error.hpp: the error codes every sluice API reports, as a std::error_code category,
// and the exception type that synchronous APIs throw.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

namespace sluice {

/// Why a request did not get a response. Values start at 1: 0 means success in std::error_code.
enum class errc {
  queue_full = 1,     ///< the bounded queue (or the controller's admission) rejected the request
  deadline_exceeded,  ///< the deadline passed before a response was ready
  cancelled,          ///< the caller cancelled through the Asio cancellation slot
  shutting_down,      ///< the batcher was stopped
  out_of_memory,      ///< the model ran out of memory even for a batch of one
  invalid_argument,   ///< bad input: shape, value or configuration
  model_failed,       ///< the model reported any other failure
};

namespace detail {
class ErrorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "sluice"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::queue_full: return "queue full";
      case errc::deadline_exceeded: return "deadline exceeded";
      case errc::cancelled: return "cancelled";
      case errc::shutting_down: return "shutting down";
      case errc::out_of_memory: return "out of memory";
      case errc::invalid_argument: return "invalid argument";
      case errc::model_failed: return "model failed";
    }
    return "unknown sluice error " + std::to_string(value);
  }
};
}  // namespace detail

inline const std::error_category& error_category() noexcept {
  static const detail::ErrorCategory category;
  return category;
}

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// The exception of synchronous APIs (and what a model throws to report a typed failure, e.g.
/// `throw sluice::Error(errc::out_of_memory, "arena exhausted")` makes the Batcher split the batch).
class Error : public std::system_error {
 public:
  explicit Error(errc e) : std::system_error(make_error_code(e)) {}
  Error(errc e, const std::string& what) : std::system_error(make_error_code(e), what) {}
  Error(std::error_code ec, const std::string& what) : std::system_error(ec, what) {}
};

}  // namespace sluice

template <>
struct std::is_error_code_enum<sluice::errc> : std::true_type {};
