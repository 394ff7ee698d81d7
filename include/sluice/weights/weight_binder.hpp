// sluice/weights/weight_binder.hpp: strict binding of checkpoint tensors to a network's parameters by
// name. A network asks for every parameter it owns; `finish()` then reports, in one error, every
// missing, unexpected and wrongly shaped tensor -- never a silent partial load.
#pragma once

#include <deque>
#include <set>
#include <string>
#include <vector>

#include "sluice/core/error.hpp"
#include "sluice/weights/host_tensor.hpp"

namespace sluice::weights {

class WeightBinder {
 public:
  explicit WeightBinder(const TensorDict& tensors) : tensors_(tensors) {}

  bool has(const std::string& name) const { return tensors_.find(name) != tensors_.end(); }

  /// The shape of a tensor that must exist (used to detect widths from a checkpoint).
  const std::vector<std::int64_t>& shape_of(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error(errc::invalid_argument, "checkpoint has no tensor '" + name + "'");
    return it->second.shape;
  }

  /// Takes the tensor `name`, which must have `shape`. On a problem it records it and returns a
  /// zero tensor of the expected shape, so that binding goes on and `finish()` lists every problem.
  const HostTensor& take(const std::string& name, const std::vector<std::int64_t>& shape) {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      missing_.push_back(name + " " + shape_to_string(shape));
      return placeholder(shape);
    }
    used_.insert(name);
    if (it->second.shape != shape) {
      mismatched_.push_back(name + " is " + shape_to_string(it->second.shape) + ", expected " +
                            shape_to_string(shape));
      return placeholder(shape);
    }
    return it->second;
  }

  /// Marks a tensor as known but unused (e.g. a parameter the original network never reads).
  void ignore(const std::string& name) { used_.insert(name); }

  /// Throws sluice::Error(invalid_argument) listing every problem, if there is one.
  void finish() const {
    std::vector<std::string> unexpected;
    for (const auto& [name, tensor] : tensors_)
      if (!used_.contains(name)) unexpected.push_back(name + " " + shape_to_string(tensor.shape));
    if (missing_.empty() && mismatched_.empty() && unexpected.empty()) return;
    std::string message = "checkpoint does not match the network:";
    auto list = [&message](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      message += std::string("\n  ") + what + " (" + std::to_string(names.size()) + "):";
      for (const auto& n : names) message += "\n    " + n;
    };
    list("missing", missing_);
    list("wrong shape", mismatched_);
    list("unexpected", unexpected);
    throw Error(errc::invalid_argument, message);
  }

 private:
  const HostTensor& placeholder(const std::vector<std::int64_t>& shape) {
    HostTensor& t = placeholders_.emplace_back();
    t.shape = shape;
    t.data.assign(static_cast<std::size_t>(t.numel()), 0.0f);
    return t;
  }

  const TensorDict& tensors_;
  std::set<std::string, std::less<>> used_;
  std::vector<std::string> missing_, mismatched_;
  std::deque<HostTensor> placeholders_;  // deque: references stay valid as it grows
};

}  // namespace sluice::weights
