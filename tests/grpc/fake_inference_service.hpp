// A fake oip::InferenceService for the gRPC transport's tests. Model "echo" answers at once, on the
// calling thread, with every input as an output of the same name, type, shape and data; "late"
// answers the same from a thread of its own after the request's parameter "delay_ms"; "hold" keeps
// each call until the test releases it; "fail" fails with the Status named by the parameter
// "status". Any other model: not_found. Every request is recorded (with its tensors' data).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sluice/serve/inference_protocol.hpp"

namespace sluice::serve::oip::testing {

class FakeInferenceService final : public InferenceService {
 public:
  ~FakeInferenceService() override {
    release_all();
    std::lock_guard lock(mutex_);
    for (auto& t : threads_) t.join();
  }

  bool live() const override { return true; }
  bool ready() const override { return ready_; }
  void set_ready(bool r) { ready_ = r; }
  ServerMetadata server_metadata() const override { return {"fake", "1.2.3", {"binary_tensor_data"}}; }
  bool model_ready(std::string_view name, std::string_view) const override { return known(name); }
  std::optional<ModelMetadata> model_metadata(std::string_view name, std::string_view version) const override {
    if (!known(name) || (!version.empty() && version != "1")) return std::nullopt;
    return ModelMetadata{std::string(name), {"1"}, "fake_platform",
                         {{"x", DataType::FP32, {-1, 3}}}, {{"y", DataType::UINT8, {-1, 1, 4, 4}}}};
  }

  void infer(InferRequest request, InferHandler done) override {
    {
      std::lock_guard lock(mutex_);
      seen_.push_back(copy_of(request));
    }
    if (request.model_name == "echo") return done(std::nullopt, echo(request));
    if (request.model_name == "late") {
      const auto delay = std::chrono::milliseconds(request.parameters.value("delay_ms", 0));
      std::lock_guard lock(mutex_);
      threads_.emplace_back([delay, r = std::move(request), done = std::move(done)]() mutable {
        std::this_thread::sleep_for(delay);
        done(std::nullopt, echo(r));
      });
      return;
    }
    if (request.model_name == "hold") {
      std::lock_guard lock(mutex_);
      held_.emplace_back(std::move(request), std::move(done));
      changed_.notify_all();
      return;
    }
    if (request.model_name == "fail") {
      const std::string s = request.parameters.value("status", "internal");
      const Status status = s == "invalid_argument"     ? Status::invalid_argument
                            : s == "not_found"          ? Status::not_found
                            : s == "unavailable"        ? Status::unavailable
                            : s == "resource_exhausted" ? Status::resource_exhausted
                            : s == "deadline_exceeded"  ? Status::deadline_exceeded
                                                        : Status::internal;
      return done(Failure{status, "fake failure: " + s}, {});
    }
    done(Failure{Status::not_found, "unknown model '" + request.model_name + "'"}, {});
  }

  /// Waits (up to 10 s) until `n` calls are held; true when they are.
  bool wait_held(std::size_t n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(10), [&] { return held_.size() >= n; });
  }
  std::size_t held() {
    std::lock_guard lock(mutex_);
    return held_.size();
  }
  /// Answers every held call with its echo; returns how many. The data is read only now, after
  /// the calls may have ended: the views must still be valid.
  std::size_t release_all() {
    std::vector<std::pair<InferRequest, InferHandler>> held;
    {
      std::lock_guard lock(mutex_);
      held.swap(held_);
    }
    for (auto& [r, done] : held) done(std::nullopt, echo(r));
    return held.size();
  }
  /// The tensors' bytes of held call `i`, read while it is held.
  std::string held_data(std::size_t i, std::size_t input) {
    std::lock_guard lock(mutex_);
    return std::string(held_.at(i).first.inputs.at(input).data);
  }

  /// The requests seen so far, their tensors' data copied into `copies`.
  struct Seen {
    InferRequest request;
    std::vector<std::string> data;
  };
  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  static bool known(std::string_view name) { return name == "echo" || name == "late" || name == "hold"; }

  static InferResponse echo(const InferRequest& r) {
    InferResponse out{r.model_name, "1", r.id, r.parameters, {}};
    for (const auto& t : r.inputs) out.outputs.push_back({t.name, t.datatype, t.shape, t.parameters, std::string(t.data)});
    return out;
  }

  static Seen copy_of(const InferRequest& r) {
    Seen s{r, {}};
    for (auto& t : s.request.inputs) {
      s.data.emplace_back(t.data);
      t.data = {};
      t.owner.reset();
    }
    return s;
  }

  std::atomic<bool> ready_{true};
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::thread> threads_;
  std::vector<std::pair<InferRequest, InferHandler>> held_;
  std::vector<Seen> seen_;
};

}  // namespace sluice::serve::oip::testing
