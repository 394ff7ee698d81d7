#include "sluice/grpc/grpc_server.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <exception>
#include <iterator>
#include <list>
#include <mutex>
#include <optional>
#include <utility>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/message_allocator.h>

#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"
#include "sluice/grpc/grpc_predict_v2.grpc.pb.h"
#include "tensor_wire.hpp"

namespace sluice::serve::oip {

int grpc_status_code(Status status) {
  switch (status) {
    case Status::ok: return ::grpc::StatusCode::OK;
    case Status::invalid_argument: return ::grpc::StatusCode::INVALID_ARGUMENT;
    case Status::not_found: return ::grpc::StatusCode::NOT_FOUND;
    case Status::unavailable: return ::grpc::StatusCode::UNAVAILABLE;
    case Status::resource_exhausted: return ::grpc::StatusCode::RESOURCE_EXHAUSTED;
    case Status::deadline_exceeded: return ::grpc::StatusCode::DEADLINE_EXCEEDED;
    case Status::internal: return ::grpc::StatusCode::INTERNAL;
  }
  return ::grpc::StatusCode::INTERNAL;
}

namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;

::grpc::Status to_grpc(Status status, const std::string& message) {
  return {static_cast<::grpc::StatusCode>(grpc_status_code(status)), message};
}

/// The client's deadline on the service's steady clock; none when it set none (gRPC reports the
/// system clock's far future) or one more than ten years away.
std::optional<TimePoint> steady_deadline(std::chrono::system_clock::time_point deadline) {
  const auto now = std::chrono::system_clock::now();
  if (deadline > now + std::chrono::hours(24 * 365 * 10)) return std::nullopt;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(deadline - now);
}

/// The two messages of one ModelInfer call, shared by gRPC (until the call is done) and by the
/// request's tensors (until the service lets go of them): raw tensors reach the model as views into
/// this request, not as copies, and stay valid when the call ends first (a client that cancels).
struct InferMessages final : ::grpc::MessageHolder<ModelInferRequest, ModelInferResponse> {
  ModelInferRequest request;
  ModelInferResponse response;
  std::shared_ptr<InferMessages> grpc_reference;

  InferMessages() {
    set_request(&request);
    set_response(&response);
  }
  void Release() override {
    auto last = std::move(grpc_reference);  // may destroy *this when the local goes: nothing follows
  }
};

class InferAllocator final : public ::grpc::MessageAllocator<ModelInferRequest, ModelInferResponse> {
 public:
  ::grpc::MessageHolder<ModelInferRequest, ModelInferResponse>* AllocateMessages() override {
    auto m = std::make_shared<InferMessages>();
    m->grpc_reference = m;
    return m.get();
  }
};

class InferReactor;

/// One ModelInfer handed to the service. Three parties may answer it -- the service's handler, the
/// client's cancellation (or its deadline), and the shutdown -- and the first to claim it does; the
/// others leave the reactor and the response alone (the reactor is gone after its call is done).
struct Call {
  InferReactor* reactor = nullptr;
  ModelInferResponse* response = nullptr;
  std::list<std::shared_ptr<Call>>::iterator pending;  ///< under State::mutex
  bool released = false;                               ///< under State::mutex

  bool claim() {
    std::lock_guard lock(mutex_);
    return !std::exchange(answered_, true);
  }

 private:
  std::mutex mutex_;
  bool answered_ = false;
};

/// What the service's handlers need after the server is gone: they may answer late.
struct State {
  std::mutex mutex;
  std::condition_variable idle;
  bool accepting = false;
  std::size_t in_flight = 0;
  std::size_t max_in_flight = 0;
  std::list<std::shared_ptr<Call>> pending;

  /// The service has let go of `call` (its handler ran, or infer() threw): its slot is free.
  void release(const std::shared_ptr<Call>& call) {
    std::lock_guard lock(mutex);
    if (std::exchange(call->released, true)) return;
    pending.erase(call->pending);
    --in_flight;
    if (in_flight == 0) idle.notify_all();
  }
};

class InferReactor final : public ::grpc::ServerUnaryReactor {
 public:
  InferReactor(std::shared_ptr<Call> call, ::grpc::CallbackServerContext* context)
      : call_(std::move(call)), context_(context) {}

  /// The client went away or its deadline passed: the call ends now; the service's answer, when it
  /// comes, is dropped. The in-flight slot stays taken until then, so that cancelling does not let a
  /// client queue more work than the limit.
  void OnCancel() override {
    if (!call_->claim()) return;
    const bool late = context_->deadline() <= std::chrono::system_clock::now();
    Finish(late ? ::grpc::Status(::grpc::StatusCode::DEADLINE_EXCEEDED, "the call's deadline passed")
                : ::grpc::Status(::grpc::StatusCode::CANCELLED, "the client cancelled the call"));
  }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<Call> call_;
  ::grpc::CallbackServerContext* context_;
};

/// Answers a call on gRPC's own reactor for calls that finish inside their method.
::grpc::ServerUnaryReactor* answer(::grpc::CallbackServerContext* context, ::grpc::Status status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

/// Runs a synchronous InferenceService call; an exception becomes INTERNAL rather than a crash.
template <class F>
::grpc::ServerUnaryReactor* answer_with(::grpc::CallbackServerContext* context, F&& f) {
  try {
    return answer(context, f());
  } catch (const std::exception& e) {
    return answer(context, ::grpc::Status(::grpc::StatusCode::INTERNAL, e.what()));
  } catch (...) {
    return answer(context, ::grpc::Status(::grpc::StatusCode::INTERNAL, "unknown error"));
  }
}

class Service final : public inference::GRPCInferenceService::CallbackService {
 public:
  Service(std::shared_ptr<InferenceService> service, std::shared_ptr<State> state)
      : service_(std::move(service)), state_(std::move(state)) {
    SetMessageAllocatorFor_ModelInfer(&allocator_);
  }

  ::grpc::ServerUnaryReactor* ServerLive(::grpc::CallbackServerContext* c, const inference::ServerLiveRequest*,
                                         inference::ServerLiveResponse* out) override {
    return answer_with(c, [&] {
      out->set_live(service_->live());
      return ::grpc::Status::OK;
    });
  }

  ::grpc::ServerUnaryReactor* ServerReady(::grpc::CallbackServerContext* c, const inference::ServerReadyRequest*,
                                          inference::ServerReadyResponse* out) override {
    return answer_with(c, [&] {
      out->set_ready(service_->ready());
      return ::grpc::Status::OK;
    });
  }

  ::grpc::ServerUnaryReactor* ModelReady(::grpc::CallbackServerContext* c, const inference::ModelReadyRequest* in,
                                         inference::ModelReadyResponse* out) override {
    return answer_with(c, [&] {
      out->set_ready(service_->model_ready(in->name(), in->version()));
      return ::grpc::Status::OK;
    });
  }

  ::grpc::ServerUnaryReactor* ServerMetadata(::grpc::CallbackServerContext* c, const inference::ServerMetadataRequest*,
                                             inference::ServerMetadataResponse* out) override {
    return answer_with(c, [&] {
      wire::to_server_metadata_response(service_->server_metadata(), *out);
      return ::grpc::Status::OK;
    });
  }

  ::grpc::ServerUnaryReactor* ModelMetadata(::grpc::CallbackServerContext* c, const inference::ModelMetadataRequest* in,
                                            inference::ModelMetadataResponse* out) override {
    return answer_with(c, [&] {
      const auto metadata = service_->model_metadata(in->name(), in->version());
      if (!metadata)
        return ::grpc::Status(::grpc::StatusCode::NOT_FOUND,
                              "unknown model '" + in->name() + "'" +
                                  (in->version().empty() ? std::string() : " version '" + in->version() + "'"));
      wire::to_model_metadata_response(*metadata, *out);
      return ::grpc::Status::OK;
    });
  }

  ::grpc::ServerUnaryReactor* ModelInfer(::grpc::CallbackServerContext* c, const ModelInferRequest* in,
                                         ModelInferResponse* out) override {
    try {
      return infer(c, *in, out);
    } catch (const std::exception& e) {  // e.g. bad_alloc while converting: this call fails, not the server
      return answer(c, ::grpc::Status(::grpc::StatusCode::INTERNAL, e.what()));
    }
  }

 private:
  ::grpc::ServerUnaryReactor* infer(::grpc::CallbackServerContext* c, const ModelInferRequest& in,
                                    ModelInferResponse* out) {
    {  // a cheap refusal before any conversion
      std::lock_guard lock(state_->mutex);
      if (!state_->accepting) return answer(c, {::grpc::StatusCode::UNAVAILABLE, "the server is shutting down"});
      if (state_->in_flight >= state_->max_in_flight)
        return answer(c, {::grpc::StatusCode::RESOURCE_EXHAUSTED, too_many()});
    }
    auto* messages = static_cast<InferMessages*>(c->GetRpcAllocatorState());
    std::shared_ptr<const void> owner = messages->grpc_reference;
    InferRequest request;
    if (auto failure = wire::to_infer_request(in, std::move(owner), request))
      return answer(c, to_grpc(failure->status, failure->message));
    request.deadline = steady_deadline(c->deadline());

    auto call = std::make_shared<Call>();
    call->response = out;
    {
      std::lock_guard lock(state_->mutex);
      if (!state_->accepting) return answer(c, {::grpc::StatusCode::UNAVAILABLE, "the server is shutting down"});
      if (state_->in_flight >= state_->max_in_flight)
        return answer(c, {::grpc::StatusCode::RESOURCE_EXHAUSTED, too_many()});
      ++state_->in_flight;
      call->pending = state_->pending.insert(state_->pending.end(), call);
    }
    auto* reactor = new InferReactor(call, c);
    call->reactor = reactor;
    auto done = [state = state_, call](std::optional<Failure> failure, InferResponse response) {
      state->release(call);
      if (!call->claim()) return;
      if (failure) return call->reactor->Finish(to_grpc(failure->status, failure->message));
      try {
        wire::to_model_infer_response(std::move(response), *call->response);
      } catch (const std::exception& e) {
        return call->reactor->Finish({::grpc::StatusCode::INTERNAL, std::string("rendering the response: ") + e.what()});
      }
      call->reactor->Finish(::grpc::Status::OK);
    };
    try {
      service_->infer(std::move(request), std::move(done));
    } catch (const std::exception& e) {  // infer() promises not to throw; if it does, the call still ends
      state_->release(call);
      if (call->claim()) reactor->Finish({::grpc::StatusCode::INTERNAL, e.what()});
    }
    return reactor;
  }

  std::string too_many() const {
    return "too many inference calls in flight (" + std::to_string(state_->max_in_flight) + "); retry later";
  }

  std::shared_ptr<InferenceService> service_;
  std::shared_ptr<State> state_;
  InferAllocator allocator_;
};

}  // namespace

struct GrpcServer::Impl {
  GrpcServerOptions options;
  std::shared_ptr<State> state = std::make_shared<State>();
  Service service;
  std::unique_ptr<::grpc::Server> server;
  bool started = false;       ///< a gRPC service joins one server only: no restart after shutdown
  std::mutex shutdown_mutex;  ///< one shutdown at a time; the second finds it done

  Impl(std::shared_ptr<InferenceService> s, GrpcServerOptions o) : options(o), service(std::move(s), state) {
    state->max_in_flight = options.max_in_flight_infers;
  }
};

GrpcServer::GrpcServer(std::shared_ptr<InferenceService> service, GrpcServerOptions options) {
  if (!service) throw Error(errc::invalid_argument, "GrpcServer needs an InferenceService");
  if (options.max_in_flight_infers == 0 || options.max_concurrent_streams == 0 || options.max_receive_message_bytes == 0)
    throw Error(errc::invalid_argument, "the gRPC limits must be positive");
  impl_ = std::make_unique<Impl>(std::move(service), options);
}

GrpcServer::~GrpcServer() { shutdown(std::chrono::milliseconds(0)); }

unsigned short GrpcServer::start(const std::string& address, unsigned short port) {
  std::lock_guard lock(impl_->shutdown_mutex);
  if (impl_->started) throw Error(errc::invalid_argument, "the gRPC server was started already");
  const bool v6 = address.find(':') != std::string::npos;
  const std::string target = (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
  const auto as_int = [](std::size_t v) { return static_cast<int>(std::min<std::size_t>(v, INT_MAX)); };

  ::grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(target, ::grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&impl_->service);
  builder.SetMaxReceiveMessageSize(as_int(impl_->options.max_receive_message_bytes));
  // gRPC sets SO_REUSEPORT by default: a second server on the same port would then share it silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, as_int(impl_->options.max_concurrent_streams));
  {
    std::lock_guard state_lock(impl_->state->mutex);
    impl_->state->accepting = true;
  }
  impl_->started = true;
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || bound == 0) {
    impl_->server.reset();
    std::lock_guard state_lock(impl_->state->mutex);
    impl_->state->accepting = false;
    throw Error(errc::invalid_argument, "gRPC: cannot listen on " + target + " (in use, or not an address of this host)");
  }
  return static_cast<unsigned short>(bound);
}

void GrpcServer::shutdown(std::chrono::milliseconds grace) {
  std::lock_guard lock(impl_->shutdown_mutex);
  if (!impl_->server) return;
  State& state = *impl_->state;
  const auto end_of_grace = std::chrono::system_clock::now() + grace;
  std::vector<std::shared_ptr<Call>> unanswered;
  {
    std::unique_lock state_lock(state.mutex);
    state.accepting = false;
    state.idle.wait_for(state_lock, grace, [&] { return state.in_flight == 0; });
    unanswered.assign(state.pending.begin(), state.pending.end());
  }
  for (const auto& call : unanswered)
    if (call->claim()) call->reactor->Finish({::grpc::StatusCode::UNAVAILABLE, "the server is shutting down"});
  // Every ModelInfer is answered now and the other calls answer inside their method. Finish only
  // queues an answer: Shutdown's deadline leaves the rest of the grace (and at least a moment) for
  // those answers to reach their clients before what remains open is cancelled; it returns once
  // gRPC's callbacks for this server are done.
  impl_->server->Shutdown(std::max(end_of_grace, std::chrono::system_clock::now() + std::chrono::milliseconds(500)));
  impl_->server->Wait();
  impl_->server.reset();
}

std::size_t GrpcServer::in_flight() const {
  std::lock_guard lock(impl_->state->mutex);
  return impl_->state->in_flight;
}

}  // namespace sluice::serve::oip
