// A fake ModelService for the server tests: "segments" an image into a result that identifies it
// (its byte count and a checksum), or fails with a chosen error; answers on a thread of its own
// after an optional delay, as a Batcher would.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sluice/core/error.hpp"
#include "sluice/serve/model_service.hpp"

namespace sluice::serve::testing {

inline std::uint32_t checksum(std::string_view s) {
  std::uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

class FakeService final : public ModelService {
 public:
  explicit FakeService(std::string name) : name_(std::move(name)) {}
  ~FakeService() override { join(); }

  std::error_code fail_with{};   ///< when set, every job fails with it
  std::chrono::milliseconds delay{0};
  std::atomic<int> jobs{0};
  std::atomic<bool> stopped{false};

  const std::string& name() const override { return name_; }
  Json info() const override {
    Json j{{"input_size", {64, 64}}, {"backend", "fake"}};
    if (!network.empty()) j["network"] = network;
    return j;
  }
  std::string network;  ///< reported in info() when set (the server resolves its spellings)
  Json status() const override { return {{"jobs", jobs.load()}}; }
  void render_metrics(std::string& out) const override {
    out += "fake_jobs_total{model=\"" + name_ + "\"} " + std::to_string(jobs.load()) + "\n";
  }
  void stop() override { stopped = true; }

  void segment(SegmentJob job, SegmentHandler done) override {
    ++jobs;
    auto work = [this, job = std::move(job), done = std::move(done)] {
      std::this_thread::sleep_for(delay);
      SegmentOutcome out;
      if (fail_with) {
        out.error_detail = "fake failure";
        return done(fail_with, std::move(out));
      }
      const std::size_t polygons = job.image.size() % 3;  // some images have none
      Json list = Json::array();
      for (std::size_t i = 0; i < polygons; ++i) list.push_back({{"id", "polygon_" + std::to_string(i + 1)}});
      out.result = {{"model_used", name_},
                    {"threshold_used", job.threshold},
                    {"detect_holes", job.detect_holes},
                    {"bytes", job.image.size()},
                    {"checksum", checksum(job.image)},
                    {"polygons", list}};
      out.batch_size = 1;
      done({}, std::move(out));
    };
    std::lock_guard lock(mutex_);
    threads_.emplace_back(std::move(work));
  }

  void join() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mutex_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

 private:
  std::string name_;
  std::mutex mutex_;
  std::vector<std::thread> threads_;
};

}  // namespace sluice::serve::testing
