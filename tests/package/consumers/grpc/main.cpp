// The installed sluice::grpc is enough to serve and call inference.GRPCInferenceService: a server
// over a minimal InferenceService on a free loopback port, asked with the installed generated stub.
#include <sluice/grpc/grpc_predict_v2.grpc.pb.h>
#include <sluice/grpc/grpc_server.hpp>

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <memory>
#include <string>

namespace oip = sluice::serve::oip;

struct Echo final : oip::InferenceService {
  bool live() const override { return true; }
  bool ready() const override { return true; }
  oip::ServerMetadata server_metadata() const override { return {"consumer", "0", {}}; }
  bool model_ready(std::string_view, std::string_view) const override { return true; }
  std::optional<oip::ModelMetadata> model_metadata(std::string_view, std::string_view) const override { return {}; }
  void infer(oip::InferRequest r, oip::InferHandler done) override {
    oip::InferResponse out{r.model_name, "1", r.id, {}, {}};
    for (auto& t : r.inputs) out.outputs.push_back({t.name, t.datatype, t.shape, {}, std::string(t.data)});
    done(std::nullopt, std::move(out));
  }
};

int main() {
  oip::GrpcServer server(std::make_shared<Echo>());
  const unsigned short port = server.start("127.0.0.1", 0);
  auto stub = inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  inference::ModelInferRequest request;
  request.set_model_name("echo");
  auto* in = request.add_inputs();
  in->set_name("x");
  in->set_datatype("INT32");
  in->add_shape(2);
  in->mutable_contents()->add_int_contents(7);
  in->mutable_contents()->add_int_contents(-1);
  inference::ModelInferResponse response;
  grpc::ClientContext context;
  const grpc::Status status = stub->ModelInfer(&context, request, &response);
  const std::string expected("\x07\x00\x00\x00\xff\xff\xff\xff", 8);
  if (!status.ok() || response.raw_output_contents_size() != 1 || response.raw_output_contents(0) != expected) {
    std::printf("sluice consumer: wrong answer (%s)\n", status.error_message().c_str());
    return 1;
  }
  server.shutdown(std::chrono::milliseconds(100));
  std::printf("sluice consumer: ok (gRPC ModelInfer on port %u)\n", static_cast<unsigned>(port));
  return 0;
}
