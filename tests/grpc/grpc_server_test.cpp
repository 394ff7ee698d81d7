// The gRPC transport of the Open Inference Protocol, end to end over loopback: a GrpcServer on an
// ephemeral port over a fake InferenceService, called with the stub generated from the same .proto.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include "fake_inference_service.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"
#include "sluice/grpc/grpc_predict_v2.grpc.pb.h"
#include "sluice/grpc/grpc_server.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::serve::oip::GrpcServer;
using sluice::serve::oip::GrpcServerOptions;
using sluice::serve::oip::testing::FakeInferenceService;
using inference::ModelInferRequest;
using inference::ModelInferResponse;

std::string bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

class GrpcServerTest : public ::testing::Test {
 protected:
  void start(GrpcServerOptions options = {}) {
    server_ = std::make_unique<GrpcServer>(fake_, options);
    port_ = server_->start("127.0.0.1", 0);
    ASSERT_NE(port_, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
    stub_ = inference::GRPCInferenceService::NewStub(channel_);
  }

  grpc::Status infer(const ModelInferRequest& request, ModelInferResponse& response,
                     std::chrono::milliseconds timeout = 10s) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    return stub_->ModelInfer(&context, request, &response);
  }

  /// Expects INVALID_ARGUMENT with `part` in its message, and that the service never saw the call.
  void expect_invalid(const ModelInferRequest& request, const std::string& part) {
    ModelInferResponse response;
    const auto before = fake_->seen().size();
    const grpc::Status s = infer(request, response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find(part), std::string::npos) << "message: " << s.error_message();
    EXPECT_EQ(fake_->seen().size(), before);
  }

  std::shared_ptr<FakeInferenceService> fake_ = std::make_shared<FakeInferenceService>();
  std::unique_ptr<GrpcServer> server_;
  unsigned short port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

/// A request of one raw FP32 input "x" of shape [1, n] to `model`.
ModelInferRequest raw_fp32(const std::string& model, std::vector<float> values) {
  ModelInferRequest r;
  r.set_model_name(model);
  auto* in = r.add_inputs();
  in->set_name("x");
  in->set_datatype("FP32");
  in->add_shape(1);
  in->add_shape(static_cast<std::int64_t>(values.size()));
  r.add_raw_input_contents(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  return r;
}

/// A call made on a thread of its own, so that a test can hold several open at once.
struct AsyncCall {
  grpc::ClientContext context;
  ModelInferResponse response;
  grpc::Status status;
  std::thread thread;

  AsyncCall(inference::GRPCInferenceService::Stub& stub, ModelInferRequest request, std::chrono::milliseconds timeout) {
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    thread = std::thread([this, &stub, r = std::move(request)] { status = stub.ModelInfer(&context, r, &response); });
  }
  ~AsyncCall() {
    if (thread.joinable()) thread.join();
  }
  void join() { thread.join(); }
};

TEST_F(GrpcServerTest, HealthAndMetadata) {
  start();
  {
    grpc::ClientContext c;
    inference::ServerLiveResponse r;
    ASSERT_TRUE(stub_->ServerLive(&c, {}, &r).ok());
    EXPECT_TRUE(r.live());
  }
  for (bool ready : {true, false}) {
    fake_->set_ready(ready);
    grpc::ClientContext c;
    inference::ServerReadyResponse r;
    ASSERT_TRUE(stub_->ServerReady(&c, {}, &r).ok());
    EXPECT_EQ(r.ready(), ready);
  }
  for (const auto& [name, ready] : {std::pair{"echo", true}, std::pair{"nope", false}}) {
    grpc::ClientContext c;
    inference::ModelReadyRequest q;
    q.set_name(name);
    inference::ModelReadyResponse r;
    ASSERT_TRUE(stub_->ModelReady(&c, q, &r).ok());
    EXPECT_EQ(r.ready(), ready) << name;
  }
  {
    grpc::ClientContext c;
    inference::ServerMetadataResponse r;
    ASSERT_TRUE(stub_->ServerMetadata(&c, {}, &r).ok());
    EXPECT_EQ(r.name(), "fake");
    EXPECT_EQ(r.version(), "1.2.3");
    ASSERT_EQ(r.extensions_size(), 1);
    EXPECT_EQ(r.extensions(0), "binary_tensor_data");
  }
  {
    grpc::ClientContext c;
    inference::ModelMetadataRequest q;
    q.set_name("echo");
    inference::ModelMetadataResponse r;
    ASSERT_TRUE(stub_->ModelMetadata(&c, q, &r).ok());
    EXPECT_EQ(r.name(), "echo");
    EXPECT_EQ(r.platform(), "fake_platform");
    ASSERT_EQ(r.versions_size(), 1);
    ASSERT_EQ(r.inputs_size(), 1);
    EXPECT_EQ(r.inputs(0).datatype(), "FP32");
    EXPECT_EQ(std::vector<std::int64_t>(r.inputs(0).shape().begin(), r.inputs(0).shape().end()),
              (std::vector<std::int64_t>{-1, 3}));
    ASSERT_EQ(r.outputs_size(), 1);
    EXPECT_EQ(r.outputs(0).datatype(), "UINT8");
  }
  for (const auto& [name, version] : {std::pair{"nope", ""}, std::pair{"echo", "7"}}) {
    grpc::ClientContext c;
    inference::ModelMetadataRequest q;
    q.set_name(name);
    q.set_version(version);
    inference::ModelMetadataResponse r;
    const auto s = stub_->ModelMetadata(&c, q, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << name << " " << version;
    EXPECT_NE(s.error_message().find(name), std::string::npos);
  }
}

TEST_F(GrpcServerTest, RawInferRoundTripWithParameters) {
  start();
  ModelInferRequest r = raw_fp32("echo", {1.5f, -2.0f, 3.25f});
  r.set_id("req-7");
  (*r.mutable_parameters())["flag"].set_bool_param(true);
  (*r.mutable_parameters())["count"].set_int64_param(-42);
  (*r.mutable_parameters())["label"].set_string_param("abc");
  (*r.mutable_parameters())["ratio"].set_double_param(0.25);
  (*r.mutable_parameters())["big"].set_uint64_param(std::numeric_limits<std::uint64_t>::max());
  (*r.mutable_inputs(0)->mutable_parameters())["binary_data_size"].set_int64_param(12);
  auto* out = r.add_outputs();
  out->set_name("x");
  (*out->mutable_parameters())["binary_data"].set_bool_param(true);

  ModelInferResponse response;
  const auto s = infer(r, response);
  ASSERT_TRUE(s.ok()) << s.error_message();

  const auto seen = fake_->seen();
  ASSERT_EQ(seen.size(), 1u);
  const auto& q = seen[0].request;
  EXPECT_EQ(q.model_name, "echo");
  EXPECT_EQ(q.id, "req-7");
  EXPECT_EQ(q.parameters["flag"], true);
  EXPECT_EQ(q.parameters["count"], -42);
  EXPECT_EQ(q.parameters["label"], "abc");
  EXPECT_EQ(q.parameters["ratio"], 0.25);
  EXPECT_EQ(q.parameters["big"].get<std::uint64_t>(), std::numeric_limits<std::uint64_t>::max());
  ASSERT_EQ(q.inputs.size(), 1u);
  EXPECT_EQ(q.inputs[0].shape, (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(q.inputs[0].parameters["binary_data_size"], 12);
  ASSERT_EQ(q.outputs.size(), 1u);
  EXPECT_EQ(q.outputs[0].name, "x");
  EXPECT_EQ(q.outputs[0].parameters["binary_data"], true);
  EXPECT_EQ(seen[0].data[0], r.raw_input_contents(0));

  EXPECT_EQ(response.model_name(), "echo");
  EXPECT_EQ(response.model_version(), "1");
  EXPECT_EQ(response.id(), "req-7");
  EXPECT_EQ(response.parameters().at("count").int64_param(), -42);
  EXPECT_EQ(response.parameters().at("ratio").double_param(), 0.25);
  EXPECT_EQ(response.parameters().at("label").string_param(), "abc");
  EXPECT_TRUE(response.parameters().at("flag").bool_param());
  EXPECT_EQ(response.parameters().at("big").uint64_param(), std::numeric_limits<std::uint64_t>::max());
  ASSERT_EQ(response.outputs_size(), 1);
  EXPECT_EQ(response.outputs(0).name(), "x");
  EXPECT_EQ(response.outputs(0).datatype(), "FP32");
  EXPECT_EQ(response.outputs(0).shape_size(), 2);
  EXPECT_FALSE(response.outputs(0).has_contents());
  ASSERT_EQ(response.raw_output_contents_size(), 1);
  EXPECT_EQ(response.raw_output_contents(0), r.raw_input_contents(0));
}

// The client's deadline becomes the request's (on the steady clock), so that the Batcher can shed
// work the client has given up on; a call without one carries none.
TEST_F(GrpcServerTest, TheClientsDeadlineReachesTheService) {
  start();
  ModelInferResponse response;
  const auto before = sluice::Clock::now();
  ASSERT_TRUE(infer(raw_fp32("echo", {1.0f}), response, 3s).ok());
  const auto after = sluice::Clock::now();
  {
    grpc::ClientContext no_deadline;
    ASSERT_TRUE(stub_->ModelInfer(&no_deadline, raw_fp32("echo", {2.0f}), &response).ok());
  }
  const auto seen = fake_->seen();
  ASSERT_EQ(seen.size(), 2u);
  ASSERT_TRUE(seen[0].request.deadline.has_value());
  // Within half a second either way: gRPC sends the timeout rounded up on the wire, and the server
  // converts it to the steady clock through two clock readings a busy machine may preempt between
  // (9 ms past `after + 3s` seen under a parallel test run).
  EXPECT_GE(*seen[0].request.deadline, before + 2500ms);
  EXPECT_LE(*seen[0].request.deadline, after + 3500ms);
  EXPECT_FALSE(seen[1].request.deadline.has_value());
}

TEST_F(GrpcServerTest, TypedContentsOfEveryDatatypeBecomeTheRawForm) {
  start();
  ModelInferRequest r;
  r.set_model_name("echo");
  std::vector<std::string> expected;
  auto add = [&](const char* type, std::int64_t n, std::string raw) {
    auto* in = r.add_inputs();
    in->set_name(type);
    in->set_datatype(type);
    in->add_shape(n);
    expected.push_back(std::move(raw));
    return in->mutable_contents();
  };
  // Each expected form written out byte by byte: little-endian, as the protocol defines it.
  auto* c = add("BOOL", 3, bytes({1, 0, 1}));
  c->add_bool_contents(true), c->add_bool_contents(false), c->add_bool_contents(true);
  c = add("INT8", 2, bytes({0xff, 0x02}));
  c->add_int_contents(-1), c->add_int_contents(2);
  c = add("INT16", 2, bytes({0xfe, 0xff, 0x02, 0x01}));
  c->add_int_contents(-2), c->add_int_contents(258);
  c = add("INT32", 2, bytes({0xff, 0xff, 0xff, 0xff, 0x04, 0x03, 0x02, 0x01}));
  c->add_int_contents(-1), c->add_int_contents(0x01020304);
  c = add("INT64", 1, bytes({0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
  c->add_int64_contents(-2);
  c = add("UINT8", 2, bytes({0xff, 0x00}));
  c->add_uint_contents(255), c->add_uint_contents(0);
  c = add("UINT16", 2, bytes({0xff, 0xff, 0x01, 0x00}));
  c->add_uint_contents(65535), c->add_uint_contents(1);
  c = add("UINT32", 1, bytes({0xff, 0xff, 0xff, 0xff}));
  c->add_uint_contents(0xffffffffu);
  c = add("UINT64", 1, bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
  c->add_uint64_contents(std::numeric_limits<std::uint64_t>::max());
  c = add("FP32", 2, bytes({0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0}));  // 1.0, -2.5
  c->add_fp32_contents(1.0f), c->add_fp32_contents(-2.5f);
  c = add("FP64", 1, bytes({0, 0, 0, 0, 0, 0, 0xf0, 0x3f}));  // 1.0
  c->add_fp64_contents(1.0);
  c = add("BYTES", 2, bytes({2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0}));  // "ab", ""
  c->add_bytes_contents("ab"), c->add_bytes_contents("");

  ModelInferResponse response;
  const auto s = infer(r, response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const auto seen = fake_->seen();
  ASSERT_EQ(seen.size(), 1u);
  ASSERT_EQ(seen[0].data.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(seen[0].data[i], expected[i]) << r.inputs(static_cast<int>(i)).datatype();
    EXPECT_EQ(response.raw_output_contents(static_cast<int>(i)), expected[i]);
    EXPECT_EQ(response.outputs(static_cast<int>(i)).datatype(), r.inputs(static_cast<int>(i)).datatype());
  }
}

TEST_F(GrpcServerTest, RawBytesTensorIsCheckedElementByElement) {
  start();
  ModelInferRequest r;
  r.set_model_name("echo");
  auto* in = r.add_inputs();
  in->set_name("s");
  in->set_datatype("BYTES");
  in->add_shape(2);
  r.add_raw_input_contents(bytes({3, 0, 0, 0, 'x', 'y', 'z', 1, 0, 0, 0, '!'}));
  ModelInferResponse response;
  ASSERT_TRUE(infer(r, response).ok());
  EXPECT_EQ(response.raw_output_contents(0), r.raw_input_contents(0));

  r.set_raw_input_contents(0, bytes({3, 0, 0, 0, 'x', 'y', 'z', 9, 0, 0, 0, '!'}));
  expect_invalid(r, "BYTES element 1 declares 9 bytes, only 1 remain");
  r.set_raw_input_contents(0, bytes({3, 0, 0, 0, 'x', 'y', 'z', 1, 0}));
  expect_invalid(r, "BYTES element 1 of 2 starts past the end");
  r.set_raw_input_contents(0, bytes({0xff, 0xff, 0xff, 0xff}));  // a 4 GiB length in 4 bytes
  expect_invalid(r, "declares 4294967295 bytes");
  r.set_raw_input_contents(0, bytes({0, 0, 0, 0, 0, 0, 0, 0, 'x'}));
  expect_invalid(r, "1 bytes of raw contents after its 2 BYTES elements");
}

TEST_F(GrpcServerTest, MalformedRequestsAreInvalidArgument) {
  start();
  const ModelInferRequest good = raw_fp32("echo", {1, 2, 3, 4});

  auto r = good;
  r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
  expect_invalid(r, "has contents and the request has raw_input_contents");

  r = good;
  r.add_raw_input_contents("extra");
  expect_invalid(r, "raw_input_contents has 2 entries for 1 inputs");

  r = good;
  r.set_raw_input_contents(0, std::string(15, '\0'));
  expect_invalid(r, "has 15 bytes of raw contents, its shape and FP32 need 16");

  r = good;
  r.mutable_inputs(0)->set_datatype("FLOAT32");
  expect_invalid(r, "unknown datatype 'FLOAT32'");

  r = good;
  r.mutable_inputs(0)->set_datatype("fp32");  // the protocol's names are case-sensitive
  expect_invalid(r, "unknown datatype");

  r = good;
  r.mutable_inputs(0)->set_shape(0, -1);
  expect_invalid(r, "negative dimension (-1)");

  r = good;
  r.mutable_inputs(0)->set_shape(0, std::numeric_limits<std::int64_t>::max());
  r.mutable_inputs(0)->set_shape(1, 4);
  expect_invalid(r, "more elements than a tensor can hold");

  r = good;
  r.mutable_inputs(0)->set_shape(0, std::int64_t{1} << 62);  // count fits, its bytes do not
  r.mutable_inputs(0)->set_shape(1, 1);
  expect_invalid(r, "FP32 need more");

  r = good;
  (*r.mutable_parameters())["empty"];  // an InferParameter with no value set
  expect_invalid(r, "parameter 'empty' has no value");

  // Typed contents: the wrong field, the wrong count, out of range, FP16, none at all.
  ModelInferRequest typed;
  typed.set_model_name("echo");
  auto* in = typed.add_inputs();
  in->set_name("t");
  in->set_datatype("INT8");
  in->add_shape(2);
  in->mutable_contents()->add_int_contents(1);
  in->mutable_contents()->add_int_contents(2);

  r = typed;
  r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
  expect_invalid(r, "contents in a field that is not the one of INT8");
  r = typed;
  r.mutable_inputs(0)->mutable_contents()->add_int_contents(3);
  expect_invalid(r, "has 3 elements in contents, its shape needs 2");
  r = typed;
  r.mutable_inputs(0)->mutable_contents()->set_int_contents(1, 128);
  expect_invalid(r, "128 is out of the range of INT8");
  r = typed;
  r.mutable_inputs(0)->set_datatype("UINT16");
  r.mutable_inputs(0)->mutable_contents()->Clear();
  r.mutable_inputs(0)->mutable_contents()->add_uint_contents(1);
  r.mutable_inputs(0)->mutable_contents()->add_uint_contents(70000);
  expect_invalid(r, "70000 is out of the range of UINT16");
  r = typed;
  r.mutable_inputs(0)->set_datatype("FP16");
  expect_invalid(r, "FP16 has no typed contents");
  r = typed;
  r.mutable_inputs(0)->clear_contents();
  expect_invalid(r, "input 't' has no data");

  // A long name is cut in the message.
  r = good;
  r.mutable_inputs(0)->set_datatype(std::string(10000, 'Q'));
  ModelInferResponse response;
  const auto s = infer(r, response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(s.error_message().size(), 200u);

  // And the server still serves.
  EXPECT_TRUE(infer(good, response).ok());
}

TEST_F(GrpcServerTest, ServiceFailuresMapToGrpcStatusCodes) {
  start();
  const std::pair<const char*, grpc::StatusCode> cases[] = {
      {"invalid_argument", grpc::StatusCode::INVALID_ARGUMENT},
      {"not_found", grpc::StatusCode::NOT_FOUND},
      {"unavailable", grpc::StatusCode::UNAVAILABLE},
      {"resource_exhausted", grpc::StatusCode::RESOURCE_EXHAUSTED},
      {"deadline_exceeded", grpc::StatusCode::DEADLINE_EXCEEDED},
      {"internal", grpc::StatusCode::INTERNAL}};
  for (const auto& [name, code] : cases) {
    auto r = raw_fp32("fail", {1});
    (*r.mutable_parameters())["status"].set_string_param(name);
    ModelInferResponse response;
    const auto s = infer(r, response);
    EXPECT_EQ(s.error_code(), code) << name;
    EXPECT_EQ(s.error_message(), std::string("fake failure: ") + name);
  }
  ModelInferResponse response;
  const auto s = infer(raw_fp32("unknown", {1}), response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServerTest, ConcurrentCallsAnsweredLateFromOtherThreadsEachGetTheirOwnData) {
  start();
  constexpr int kCalls = 32;
  std::vector<std::unique_ptr<AsyncCall>> calls;
  for (int i = 0; i < kCalls; ++i) {
    auto r = raw_fp32("late", {static_cast<float>(i), static_cast<float>(i) * 2});
    r.set_id("call-" + std::to_string(i));
    (*r.mutable_parameters())["delay_ms"].set_int64_param((i * 7) % 50);
    calls.push_back(std::make_unique<AsyncCall>(*stub_, std::move(r), 20s));
  }
  for (int i = 0; i < kCalls; ++i) {
    auto& c = *calls[i];
    c.join();
    ASSERT_TRUE(c.status.ok()) << i << ": " << c.status.error_message();
    EXPECT_EQ(c.response.id(), "call-" + std::to_string(i));
    const float expected[] = {static_cast<float>(i), static_cast<float>(i) * 2};
    EXPECT_EQ(c.response.raw_output_contents(0), std::string(reinterpret_cast<const char*>(expected), sizeof expected));
  }
  EXPECT_EQ(server_->in_flight(), 0u);
}

TEST_F(GrpcServerTest, AHandlerThatAnswersAfterTheClientsDeadlineIsIgnoredAndTheDataStaysValid) {
  start();
  const auto request = raw_fp32("hold", {7, 8, 9});
  ModelInferResponse response;
  const auto s = infer(request, response, 200ms);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(fake_->wait_held(1));
  EXPECT_EQ(server_->in_flight(), 1u);  // the slot is the service's until it answers
  // The call is over on both sides; the tensor the service holds is still the client's data.
  EXPECT_EQ(fake_->held_data(0, 0), request.raw_input_contents(0));
  EXPECT_EQ(fake_->release_all(), 1u);
  EXPECT_EQ(server_->in_flight(), 0u);
  EXPECT_TRUE(infer(raw_fp32("echo", {1}), response).ok());
}

TEST_F(GrpcServerTest, InFlightLimitRefusesWithResourceExhausted) {
  GrpcServerOptions options;
  options.max_in_flight_infers = 4;
  start(options);
  std::vector<std::unique_ptr<AsyncCall>> held;
  for (int i = 0; i < 4; ++i) held.push_back(std::make_unique<AsyncCall>(*stub_, raw_fp32("hold", {1}), 20s));
  ASSERT_TRUE(fake_->wait_held(4));
  EXPECT_EQ(server_->in_flight(), 4u);
  ModelInferResponse response;
  const auto refused = infer(raw_fp32("echo", {1}), response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("too many inference calls in flight (4)"), std::string::npos);
  // Health is not counted against the limit.
  grpc::ClientContext c;
  inference::ServerLiveResponse live;
  EXPECT_TRUE(stub_->ServerLive(&c, {}, &live).ok());

  EXPECT_EQ(fake_->release_all(), 4u);
  for (auto& h : held) {
    h->join();
    EXPECT_TRUE(h->status.ok()) << h->status.error_message();
  }
  EXPECT_TRUE(infer(raw_fp32("echo", {1}), response).ok());
}

TEST_F(GrpcServerTest, MessagesOverTheReceiveLimitAreRefused) {
  GrpcServerOptions options;
  options.max_receive_message_bytes = 1 << 20;
  start(options);
  ModelInferResponse response;
  const auto s = infer(raw_fp32("echo", std::vector<float>(300 * 1024)), response);  // 1.2 MB
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_TRUE(fake_->seen().empty());
  EXPECT_TRUE(infer(raw_fp32("echo", std::vector<float>(200 * 1024)), response).ok());  // 0.8 MB
}

TEST_F(GrpcServerTest, ShutdownWaitsForAnswersWithinTheGrace) {
  start();
  AsyncCall call(*stub_, raw_fp32("hold", {5}), 20s);
  ASSERT_TRUE(fake_->wait_held(1));
  std::thread answerer([&] {
    std::this_thread::sleep_for(100ms);
    fake_->release_all();
  });
  server_->shutdown(10s);
  answerer.join();
  call.join();
  EXPECT_TRUE(call.status.ok()) << call.status.error_message();
  EXPECT_EQ(call.response.raw_output_contents_size(), 1);
}

TEST_F(GrpcServerTest, ShutdownPastTheGraceAnswersUnavailableAndLateHandlersAreHarmless) {
  start();
  std::vector<std::unique_ptr<AsyncCall>> calls;
  for (int i = 0; i < 8; ++i) calls.push_back(std::make_unique<AsyncCall>(*stub_, raw_fp32("hold", {1, 2}), 20s));
  ASSERT_TRUE(fake_->wait_held(8));
  server_->shutdown(50ms);
  for (auto& c : calls) {
    c->join();
    EXPECT_EQ(c->status.error_code(), grpc::StatusCode::UNAVAILABLE) << c->status.error_message();
    EXPECT_NE(c->status.error_message().find("shutting down"), std::string::npos);
  }
  server_.reset();  // the server is gone before the service answers
  EXPECT_EQ(fake_->release_all(), 8u);

  // A stopped server takes no call.
  ModelInferResponse response;
  const auto s = infer(raw_fp32("echo", {1}), response, 2s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcServerTest, APortInUseIsRefusedNotShared) {
  start();
  GrpcServer second(fake_);
  EXPECT_THROW(second.start("127.0.0.1", port_), sluice::Error);
  GrpcServer third(fake_);
  EXPECT_NE(third.start("::1", 0), 0);  // IPv6 loopback, bracketed for gRPC
  EXPECT_THROW(third.start("::1", 0), sluice::Error);  // started already
  third.shutdown(0ms);
  EXPECT_THROW(third.start("::1", 0), sluice::Error);  // and once only
}

TEST(GrpcStatusCode, EveryStatusHasItsCode) {
  using sluice::serve::oip::Status;
  using sluice::serve::oip::grpc_status_code;
  EXPECT_EQ(grpc_status_code(Status::ok), grpc::StatusCode::OK);
  EXPECT_EQ(grpc_status_code(Status::invalid_argument), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(grpc_status_code(Status::not_found), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(grpc_status_code(Status::unavailable), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(grpc_status_code(Status::resource_exhausted), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(grpc_status_code(Status::deadline_exceeded), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(grpc_status_code(Status::internal), grpc::StatusCode::INTERNAL);
}

}  // namespace
