// sluice/models/param_binder.hpp: binds a network's parameters, by their PyTorch state-dict keys,
// to backend weight objects. A thin layer over weights::WeightBinder (strict: every problem is listed
// by finish()) that knows the shapes of convolutions, norms, linears and transposed convolutions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/core/backend.hpp"
#include "sluice/core/error.hpp"
#include "sluice/weights/weight_binder.hpp"

namespace sluice::models {

/// Whether a layer's bias is in the checkpoint. `optional` is for a conv followed by instance norm:
/// the norm cancels the bias mathematically, but a checkpoint may hold one and then it is applied.
enum class Bias { none, optional, required };

template <Backend B>
class ParamBinder {
 public:
  using conv_type = typename B::conv_type;

  ParamBinder(B& backend, const weights::TensorDict& tensors) : backend_(backend), binder_(tensors) {}

  B& backend() { return backend_; }
  bool has(const std::string& name) const { return binder_.has(name); }

  /// The shape of a tensor that must exist, for detecting widths; throws invalid_argument if absent.
  const std::vector<std::int64_t>& shape_of(const std::string& name) const { return binder_.shape_of(name); }

  /// The size of dimension `dim` of `name`, with a clear error when the tensor has too few dimensions.
  std::int64_t dim_of(const std::string& name, std::size_t dim) const {
    const auto& s = shape_of(name);
    if (s.size() <= dim)
      throw Error(errc::invalid_argument, "checkpoint tensor '" + name + "' has shape " + weights::shape_to_string(s) +
                                              ", expected at least " + std::to_string(dim + 1) + " dimensions");
    return s[dim];
  }

  /// Conv2d `prefix`.weight (out, in/groups, kh, kw) and, per `bias`, `prefix`.bias (out).
  conv_type conv(const std::string& prefix, std::int64_t out, std::int64_t in, std::int64_t kh, std::int64_t kw,
                 const ConvSpec& spec, Bias bias) {
    const weights::HostTensor& w = binder_.take(prefix + ".weight", {out, in / spec.groups, kh, kw});
    const std::optional<WeightView> b = take_bias(prefix, out, bias);
    return backend_.make_conv(w, b ? &*b : nullptr, spec);
  }

  /// "conv k": a k x k convolution with padding k/2 and the given stride.
  conv_type conv(const std::string& prefix, std::int64_t out, std::int64_t in, std::int64_t k, Bias bias,
                 std::int64_t stride = 1) {
    return conv(prefix, out, in, k, k, ConvSpec::same(k, stride), bias);
  }

  /// A (1 x kw) or (kh x 1) convolution applied to a tensor whose width (or height) is 1 with
  /// "same" padding: only the centre tap meets data, the others meet zero padding. Binds the full
  /// kernel and hands the backend the equivalent 1 x 1 convolution of the centre tap.
  conv_type conv_centre_tap(const std::string& prefix, std::int64_t out, std::int64_t in, std::int64_t kh,
                            std::int64_t kw) {
    const weights::HostTensor& w = binder_.take(prefix + ".weight", {out, in, kh, kw});
    weights::HostTensor centre;
    centre.shape = {out, in, 1, 1};
    centre.data.resize(static_cast<std::size_t>(out * in));
    const std::int64_t taps = kh * kw, mid = (kh / 2) * kw + kw / 2;
    for (std::int64_t i = 0; i < out * in; ++i)
      centre.data[static_cast<std::size_t>(i)] = w.data[static_cast<std::size_t>(i * taps + mid)];
    return backend_.make_conv(centre, nullptr, ConvSpec{});
  }

  /// InstanceNorm2d(affine): `prefix`.weight and `prefix`.bias, both (c).
  typename B::norm_type norm(const std::string& prefix, std::int64_t c) {
    const weights::HostTensor& gamma = binder_.take(prefix + ".weight", {c});
    const weights::HostTensor& beta = binder_.take(prefix + ".bias", {c});
    return backend_.make_norm(gamma, beta);
  }

  /// Linear: `prefix`.weight (out, in) and, per `bias`, `prefix`.bias (out).
  typename B::linear_type linear(const std::string& prefix, std::int64_t out, std::int64_t in, Bias bias) {
    const weights::HostTensor& w = binder_.take(prefix + ".weight", {out, in});
    const std::optional<WeightView> b = take_bias(prefix, out, bias);
    return backend_.make_linear(w, b ? &*b : nullptr);
  }

  /// ConvTranspose2d(kernel 2, stride 2, bias): `prefix`.weight (in, out, 2, 2), `prefix`.bias (out).
  typename B::conv_transpose_type up(const std::string& prefix, std::int64_t in, std::int64_t out) {
    const weights::HostTensor& w = binder_.take(prefix + ".weight", {in, out, 2, 2});
    const WeightView b = binder_.take(prefix + ".bias", {out});
    return backend_.make_conv_transpose2x2(w, &b);
  }

  /// A tensor the checkpoint holds and the network never reads.
  void ignore(const std::string& name) { binder_.ignore(name); }

  /// Throws sluice::Error(invalid_argument) listing every missing, unexpected or misshapen tensor.
  void finish() const { binder_.finish(); }

 private:
  std::optional<WeightView> take_bias(const std::string& prefix, std::int64_t out, Bias bias) {
    if (bias == Bias::required || (bias == Bias::optional && binder_.has(prefix + ".bias")))
      return binder_.take(prefix + ".bias", {out}).view();
    return std::nullopt;
  }

  B& backend_;
  weights::WeightBinder binder_;
};

/// The widths a caller asked for must be those the checkpoint holds (empty: accept the checkpoint's).
inline void check_widths(const char* network, const std::vector<std::int64_t>& requested,
                         const std::vector<std::int64_t>& detected) {
  if (requested.empty() || requested == detected) return;
  throw Error(errc::invalid_argument, std::string(network) + ": the checkpoint has widths " +
                                          weights::shape_to_string(detected) + ", the options ask for " +
                                          weights::shape_to_string(requested));
}

}  // namespace sluice::models
