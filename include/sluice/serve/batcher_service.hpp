// sluice/serve/batcher_service.hpp: the real ModelService -- one model served by its own Batcher.
// It owns whatever the model needs (backends, network, Segmenter), turns each HTTP image into a
// vision::SegmentRequest submitted with async_submit (so concurrent clients share batches), and
// turns the SegmentResponse back into the spec's result JSON. Completions run on the Batcher's
// executor, which is the server's io_context.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "sluice/batching/batcher.hpp"
#include "sluice/core/batch_controller.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/error.hpp"
#include "sluice/serve/header_params.hpp"
#include "sluice/serve/model_service.hpp"
#include "sluice/vision/result_json.hpp"
#include "sluice/vision/segmenter.hpp"

namespace sluice::serve {

template <class Model, class Controller>
  requires std::same_as<typename Model::request_type, vision::SegmentRequest> &&
           std::same_as<typename Model::response_type, vision::SegmentResponse>
class BatcherService final : public ModelService {
 public:
  /// `keep` holds what `model` refers to (backends, weights) and is destroyed after the Batcher.
  BatcherService(std::string name, Json info, std::shared_ptr<void> keep, std::unique_ptr<Model> model,
                 boost::asio::any_io_executor executor, BatcherConfig config, Controller controller)
      : name_(std::move(name)), info_(std::move(info)), keep_(std::move(keep)), model_(std::move(model)) {
    config.model_name = name_;
    batcher_ = std::make_unique<Batcher<Model, Controller>>(std::move(executor), *model_, std::move(config),
                                                            std::move(controller));
  }

  ~BatcherService() override {
    // The Batcher first (it waits for its batches), then the model, then what the model uses.
    batcher_.reset();
    model_.reset();
  }

  Batcher<Model, Controller>& batcher() { return *batcher_; }

  /// Warm-up per batch size, before serving: runs the model itself at batch sizes 1, 2, 4, ... and
  /// the Batcher's max, `runs` times each, on a synthetic image of `height` x `width`, and reports
  /// every run to the controller as the Batcher would. An adaptive controller then starts with a
  /// measured latency for every size instead of learning only the sizes it happens to try. Call it
  /// before any request is submitted (it uses lane 0 directly).
  void warm_up(std::size_t runs, int height, int width) {
    if (runs == 0) return;
    cv::Mat image(height, width, CV_8UC3);
    cv::randu(image, cv::Scalar::all(0), cv::Scalar::all(255));
    std::vector<uchar> png;
    cv::imencode(".png", image, png);
    vision::SegmentRequest request;
    request.name = "warm-up";
    request.bytes = std::make_shared<const std::vector<std::uint8_t>>(png.begin(), png.end());
    const std::size_t cap = batcher_->effective_max_batch_size();
    std::vector<std::size_t> sizes;
    for (std::size_t n = 1; n < cap; n *= 2) sizes.push_back(n);
    sizes.push_back(cap);
    for (std::size_t r = 0; r < runs; ++r) {
      for (const std::size_t n : sizes) {
        const std::vector<vision::SegmentRequest> requests(n, request);
        auto batch = model_->prepare(requests);
        const TimePoint started = Clock::now();
        run_staged(*model_, batch, RunContext{0});
        const TimePoint finished = Clock::now();
        std::vector<vision::SegmentResponse> responses(n);
        model_->finish(batch, responses);
        BatchRecord record;
        record.batch_size = n;
        record.started = started;
        record.finished = finished;
        batcher_->with_controller([&](Controller& c) { c.observe(record); });
      }
    }
  }

  const std::string& name() const override { return name_; }

  Json info() const override {
    Json j = info_;
    j["max_batch_size"] = batcher_->effective_max_batch_size();
    j["max_queue_size"] = batcher_->config().max_queue_size;
    j["lanes"] = batcher_->config().lanes;
    return j;
  }

  Json status() const override {
    const auto& m = batcher_->metrics();
    const std::uint64_t batches = m.batch_size().count();
    return {{"queued", batcher_->queued()},
            {"batches", batches},
            {"mean_batch_size", batches ? static_cast<double>(m.batch_size().sum()) / static_cast<double>(batches) : 0.0},
            {"completed_ok", m.completions_ok()},
            {"deadline_misses", m.deadline_misses()},
            {"stopped", batcher_->stopped()}};
  }

  void render_metrics(std::string& out) const override { out += batcher_->render_prometheus(); }

  void stop() override { batcher_->stop(StopMode::drain); }

  void segment(SegmentJob job, SegmentHandler done) override {
    SubmitOptions options;
    options.deadline = job.deadline;
    // The model's failure text outlives the submission inside the handler. `done` is copied into
    // the handler so that it is still here if async_submit throws.
    auto message = std::make_shared<std::string>();
    options.error_message = message.get();
    try {
      batcher_->async_submit(to_request(job, "upload"), options,
                             [done, message](std::error_code ec, vision::SegmentResponse r) {
                               auto [code, out] = outcome_of(ec, std::move(r), *message);
                               done(code, std::move(out));
                             });
    } catch (const std::exception& e) {
      SegmentOutcome out;
      out.error_detail = e.what();
      done(make_error_code(errc::model_failed), std::move(out));
    }
  }

  /// The files of one request enter the queue together (async_submit_many), so the controller sees
  /// them all at once and can put them in one batch, or split them over several.
  void segment_many(std::vector<SegmentJob> jobs, SegmentManyHandler done) override {
    std::vector<vision::SegmentRequest> requests;
    TimePoint deadline = kNever;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      requests.push_back(to_request(jobs[i], "file_" + std::to_string(i)));
      deadline = std::min(deadline, jobs[i].deadline);
    }
    SubmitOptions options;
    options.deadline = deadline;
    auto message = std::make_shared<std::string>();
    options.error_message = message.get();
    const std::size_t n = requests.size();
    try {
      batcher_->async_submit_many(
          std::move(requests), options,
          [done, message, n](std::error_code ec, std::vector<vision::SegmentResponse> responses) {
            std::vector<std::pair<std::error_code, SegmentOutcome>> answers(n);
            for (std::size_t i = 0; i < n; ++i) {
              // A slot without a response (batch_requests == 0) failed with the group's error.
              if (i >= responses.size() || responses[i].batch_requests == 0) {
                answers[i].first = ec ? ec : make_error_code(errc::model_failed);
                answers[i].second.error_detail = *message;
              } else {
                answers[i] = outcome_of({}, std::move(responses[i]), "");
              }
            }
            done(std::move(answers));
          });
    } catch (const std::exception& e) {
      std::vector<std::pair<std::error_code, SegmentOutcome>> answers(n);
      for (auto& a : answers) {
        a.first = make_error_code(errc::model_failed);
        a.second.error_detail = e.what();
      }
      done(std::move(answers));
    }
  }

 private:
  static vision::SegmentRequest to_request(const SegmentJob& job, std::string name) {
    vision::SegmentRequest request;
    request.name = std::move(name);
    request.bytes = std::make_shared<const std::vector<std::uint8_t>>(job.image.begin(), job.image.end());
    request.options.threshold = job.threshold;
    request.options.detect_holes = job.detect_holes;
    return request;
  }

  /// The answer for one image: the Batcher's error, else the image's own (a bad image fails alone).
  static std::pair<std::error_code, SegmentOutcome> outcome_of(std::error_code ec, vision::SegmentResponse r,
                                                                const std::string& batcher_message) {
    SegmentOutcome out;
    if (!ec && r.error) ec = r.error;
    if (ec) {
      out.error_detail = without_code_suffix(!r.message.empty() ? r.message : batcher_message, ec);
      return {ec, std::move(out)};
    }
    out.result = vision::to_json(r.segmentation, r.info);
    out.preprocessing_time = r.times.prepare_s;
    out.inference_time = r.times.run_s;
    out.batch_size = r.info.batch_size;
    return {ec, std::move(out)};
  }

  std::string name_;
  Json info_;
  std::shared_ptr<void> keep_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Batcher<Model, Controller>> batcher_;
};

}  // namespace sluice::serve
