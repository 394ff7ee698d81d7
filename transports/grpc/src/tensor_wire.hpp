// The gRPC messages of the Open Inference Protocol <-> its transport-neutral types
// (sluice/serve/inference_protocol.hpp): a ModelInferRequest becomes an oip::InferRequest whose tensors
// are in the raw form, an oip::InferResponse becomes a ModelInferResponse with raw_output_contents.
#pragma once

#include <memory>
#include <optional>

#include "sluice/grpc/grpc_predict_v2.pb.h"
#include "sluice/serve/inference_protocol.hpp"

namespace sluice::serve::oip::wire {

/// Fills `out` from `in`. Raw inputs stay where they are: their `data` views into `in`, which `owner`
/// keeps alive; typed `contents` are converted into a buffer of the tensor's own. A malformed request
/// (a bad datatype or shape, contents and raw_input_contents together, a raw entry per input missing,
/// a byte count that does not match the shape, a BYTES element running past its data, a value out
/// of its type's range) is a Failure(invalid_argument) that says what is wrong, and `out` is then
/// partly filled.
std::optional<Failure> to_infer_request(const inference::ModelInferRequest& in, std::shared_ptr<const void> owner,
                                        InferRequest& out);

/// Moves `in` into `out`: outputs as raw_output_contents, parameters as InferParameter values.
void to_model_infer_response(InferResponse&& in, inference::ModelInferResponse& out);

/// The metadata answers.
void to_model_metadata_response(const ModelMetadata& in, inference::ModelMetadataResponse& out);
void to_server_metadata_response(const ServerMetadata& in, inference::ServerMetadataResponse& out);

}  // namespace sluice::serve::oip::wire
