// sluice/grpc/grpc_server.hpp: the Open Inference Protocol's gRPC transport -- the service
// inference.GRPCInferenceService (ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
// ModelInfer) over an oip::InferenceService, on gRPC's callback API: ModelInfer hands the request to
// the InferenceService and returns, and the call is answered from the service's handler, on whatever
// thread that runs, so that no gRPC thread waits for a batch.
//
// No gRPC or protobuf header reaches a user of this header (pimpl); the generated messages and the
// client stub are in sluice/grpc/grpc_predict_v2.pb.h and .grpc.pb.h. docs/grpc.md has the status
// mapping and the limits.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "sluice/serve/inference_protocol.hpp"

namespace sluice::serve::oip {

struct GrpcServerOptions {
  /// The largest request message (all tensors of one ModelInfer together); past it the call fails
  /// with RESOURCE_EXHAUSTED before it is read. The HTTP transport's default body limit.
  std::size_t max_receive_message_bytes = std::size_t{256} << 20;
  /// ModelInfer calls handed to the service and not yet answered by it; past it a call is refused
  /// with RESOURCE_EXHAUSTED at once, so that one client cannot queue unbounded work and memory.
  std::size_t max_in_flight_infers = 256;
  /// Concurrent calls on one connection (HTTP/2 streams); a client past it waits for a free stream.
  std::size_t max_concurrent_streams = 256;
};

/// The gRPC server. start() binds and serves on gRPC's own threads; shutdown() answers or refuses
/// every call still open and stops; the destructor shuts down at once if nobody did.
class GrpcServer {
 public:
  GrpcServer(std::shared_ptr<InferenceService> service, GrpcServerOptions options = {});
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  /// Listens on `address` (an IPv4 or IPv6 address, no brackets) and `port` (0: any free one);
  /// returns the bound port. Throws sluice::Error(invalid_argument) when the port cannot be bound
  /// (in use, also by another process: the port is never shared) or start() was called before
  /// (also one that failed, and after a shutdown: a server starts once).
  unsigned short start(const std::string& address, unsigned short port);

  /// Stops taking calls (new ModelInfer calls get UNAVAILABLE), waits up to `grace` for the
  /// InferenceService to answer those in flight, answers the rest UNAVAILABLE, cancels whatever
  /// else is open and returns once gRPC's threads are done with this server. Idempotent.
  /// A handler that the service calls later still finds everything it needs alive, and is ignored.
  void shutdown(std::chrono::milliseconds grace);

  /// ModelInfer calls handed to the service and not yet answered by it.
  std::size_t in_flight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The gRPC status code (grpc::StatusCode's number) for each oip::Status: invalid_argument 3
/// INVALID_ARGUMENT, not_found 5 NOT_FOUND, unavailable 14 UNAVAILABLE, resource_exhausted 8
/// RESOURCE_EXHAUSTED, deadline_exceeded 4 DEADLINE_EXCEEDED, internal 13 INTERNAL, ok 0.
int grpc_status_code(Status status);

}  // namespace sluice::serve::oip
