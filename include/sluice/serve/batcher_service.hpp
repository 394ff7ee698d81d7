// sluice/serve/batcher_service.hpp: the real ModelService -- one model served by its own Batcher.
// It owns whatever the model needs (backends, network, Segmenter), turns each HTTP image into a
// vision::SegmentRequest submitted to the Batcher (so concurrent clients share batches), and turns
// the SegmentResponse back into the result JSON. With a Decoding stage, a request's images are
// decoded before they are queued, on a shared FairPool (requests take turns, so one client's huge
// images cannot stall the others; a large JPEG decoded reduced, vision/decode.hpp), resized to the
// network's input at once, and held in the memory budget while they wait. Completions run on the Batcher's executor, the server's io_context.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "sluice/batching/batcher.hpp"
#include "sluice/core/batch_controller.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/error.hpp"
#include "sluice/core/utf8.hpp"
#include "sluice/serve/fair_pool.hpp"
#include "sluice/serve/header_params.hpp"
#include "sluice/serve/memory_budget.hpp"
#include "sluice/serve/model_service.hpp"
#include "sluice/vision/decode.hpp"
#include "sluice/vision/preprocess.hpp"
#include "sluice/vision/result_json.hpp"
#include "sluice/vision/segmenter.hpp"

namespace sluice::serve {

/// Where images are decoded before they are queued; without a pool, the model's prepare decodes.
struct Decoding {
  std::shared_ptr<FairPool> pool;
  std::shared_ptr<MemoryBudget> memory;  ///< holds each image's decode cost, then its resized pixels
};

template <class Model, class Controller>
  requires std::same_as<typename Model::request_type, vision::SegmentRequest> &&
           std::same_as<typename Model::response_type, vision::SegmentResponse>
class BatcherService final : public ModelService {
 public:
  /// `keep` holds what `model` refers to (backends, weights) and is destroyed after the Batcher.
  BatcherService(std::string name, Json info, std::shared_ptr<void> keep, std::unique_ptr<Model> model,
                 boost::asio::any_io_executor executor, BatcherConfig config, Controller controller,
                 Decoding decoding = {})
      : name_(std::move(name)), info_(std::move(info)), keep_(std::move(keep)), model_(std::move(model)),
        decoding_(std::move(decoding)) {
    config.model_name = name_;
    batcher_ = std::make_unique<Batcher<Model, Controller>>(std::move(executor), *model_, std::move(config),
                                                            std::move(controller));
  }

  ~BatcherService() override {
    // Decode tasks on the shared pool use this service: wait for those in flight (at a shutdown
    // whose drain timed out, some may still be), then the Batcher (it waits for its batches), then
    // the model, then what the model uses.
    {
      std::unique_lock lock(decoding_mutex_);
      decoding_idle_.wait(lock, [&] { return decoding_groups_ == 0; });
    }
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
    std::vector<SegmentJob> jobs;
    jobs.push_back(std::move(job));
    segment_many(std::move(jobs), [done = std::move(done)](std::vector<std::pair<std::error_code, SegmentOutcome>> a) {
      done(a.front().first, std::move(a.front().second));
    });
  }

  /// The files of one request enter the queue together (async_submit_many), so the controller sees
  /// them all at once and can put them in one batch, or split them over several. Never throws.
  void segment_many(std::vector<SegmentJob> jobs, SegmentManyHandler done) override {
    auto group = std::make_shared<Group>();
    group->jobs = std::move(jobs);
    group->requests.resize(group->jobs.size());
    group->answers.resize(group->jobs.size());
    group->done = std::move(done);
    if (group->jobs.empty()) return group->done({});
    if (!decoding_.pool || !decoding_.memory) {
      for (std::size_t i = 0; i < group->jobs.size(); ++i) {
        const SegmentJob& job = group->jobs[i];
        auto request = to_request(job, "file_" + std::to_string(i));
        try {
          if (job.form == ImageForm::encoded)
            request.bytes = std::make_shared<const std::vector<std::uint8_t>>(job.image.begin(), job.image.end());
          else if (job.form == ImageForm::rgb8)
            request.decoded = std::make_shared<const vision::DecodedImage>(pixels_of(job));
        } catch (const std::exception& e) {
          group->answers[i].first = make_error_code(errc::invalid_argument);
          group->answers[i].second.error_detail = e.what();
          continue;
        }
        group->requests[i] = std::move(request);
      }
      return submit(group);
    }
    group->remaining = group->jobs.size();
    {
      std::lock_guard lock(decoding_mutex_);
      ++decoding_groups_;
    }
    std::vector<FairPool::Task> tasks;
    for (std::size_t i = 0; i < group->jobs.size(); ++i)
      tasks.push_back([this, group, i] {
        decode_one(*group, i);
        if (group->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
        submit(group);
        std::lock_guard lock(decoding_mutex_);
        if (--decoding_groups_ == 0) decoding_idle_.notify_all();
      });
    decoding_.pool->post_group(std::move(tasks));
  }

 private:
  /// One request's images on their way through decoding into the Batcher.
  struct Group {
    std::vector<SegmentJob> jobs;
    std::vector<std::optional<vision::SegmentRequest>> requests;  ///< empty where decoding failed
    std::vector<std::pair<std::error_code, SegmentOutcome>> answers;
    std::atomic<std::size_t> remaining{0};
    SegmentManyHandler done;
  };

  /// On the decode pool: image i's header cost is leased, then it is decoded, resized to the
  /// network's input (the lease shrinks to what stays) and its share of the body let go.
  void decode_one(Group& g, std::size_t i) {
    SegmentJob& job = g.jobs[i];
    auto fail = [&](errc code, std::string detail) {
      g.answers[i].first = make_error_code(code);
      g.answers[i].second.error_detail = sanitize_utf8(detail);
    };
    try {
      if (job.form == ImageForm::network_input) {
        g.requests[i] = to_request(job, "file_" + std::to_string(i));
        return;  // nothing to decode; the request keeps the body
      }
      if (job.form == ImageForm::rgb8) return decode_pixels(g, i);
      const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(job.image.data()), job.image.size());
      const auto& config = model_->config();
      // The network sees its input size: a large JPEG decodes reduced to no less than that.
      vision::DecodeOptions decode = config.decode;
      decode.min_output = cv::Size(config.preprocess.input_width, config.preprocess.input_height);
      // The header alone says what decoding costs (at that reduction); what it cannot read is refused here.
      const auto cost = static_cast<std::size_t>(vision::inspect_image(bytes, decode).decode_bytes);
      auto lease = MemoryBudget::try_acquire(decoding_.memory, cost);
      if (!lease && cost > decoding_.memory->limit()) {
        fail(errc::invalid_argument, "the image needs " + std::to_string(cost) +
                                         " bytes to decode, more than the server's memory budget of " +
                                         std::to_string(decoding_.memory->limit()));
      } else if (!lease) {
        fail(errc::out_of_memory, "the server's memory budget cannot hold this image's " + std::to_string(cost) +
                                      " bytes of pixels now; retry later");
      } else {
        vision::DecodedImage full = vision::decode_image(bytes, decode);
        const cv::Size original = full.original;  // polygons scale back to this, not the reduced size
        store_resized(g, i, std::move(full), original, std::move(lease));
      }
    } catch (const Error& e) {
      fail(e.code() == errc::invalid_argument ? errc::invalid_argument : errc::model_failed,
           without_code_suffix(e.what(), e.code()));
    } catch (const std::bad_alloc&) {
      fail(errc::out_of_memory, "out of memory while decoding");
    } catch (const std::exception& e) {
      fail(errc::invalid_argument, std::string("cannot decode image: ") + e.what());
    }
    job.image = {};
    job.owner.reset();  // the last image of a request to let go frees its body
  }

  /// Raw RGB pixels -> the decoder's form (OpenCV's BGR), as decoding an encoded file gives them.
  static vision::DecodedImage pixels_of(const SegmentJob& job) {
    if (job.width <= 0 || job.height <= 0 ||
        job.image.size() != static_cast<std::size_t>(job.width) * static_cast<std::size_t>(job.height) * 3)
      throw Error(errc::invalid_argument, "pixels do not hold height x width x 3 bytes");
    const cv::Mat rgb(job.height, job.width, CV_8UC3, const_cast<char*>(job.image.data()));
    vision::DecodedImage image;
    cv::cvtColor(rgb, image.pixels, cv::COLOR_RGB2BGR);
    image.scale = 1.0f / 255.0f;
    image.original = image.pixels.size();
    return image;
  }

  /// On the decode pool: raw pixels, held in the budget while converted, resized like a decoded file.
  void decode_pixels(Group& g, std::size_t i) {
    SegmentJob& job = g.jobs[i];
    const std::size_t cost = job.image.size();
    auto lease = MemoryBudget::try_acquire(decoding_.memory, cost);
    if (!lease) {
      g.answers[i].first = make_error_code(errc::out_of_memory);
      g.answers[i].second.error_detail = "the server's memory budget cannot hold this image's " +
                                         std::to_string(cost) + " bytes of pixels now; retry later";
    } else {
      vision::DecodedImage full = pixels_of(job);
      const cv::Size original = full.pixels.size();
      store_resized(g, i, std::move(full), original, std::move(lease));
    }
    job.image = {};
    job.owner.reset();
  }

  /// Image i, whole (`original` is the size its polygons scale back to), resized to the network's
  /// input and stored as its request; the full image is let go first, then the lease shrinks to
  /// the resized pixels it keeps held while they wait in the queue.
  void store_resized(Group& g, std::size_t i, vision::DecodedImage full, cv::Size original,
                     MemoryBudget::Lease lease) {
    auto small = std::make_shared<const vision::DecodedImage>(vision::resize_to_input(full, model_->config().preprocess));
    full = {};
    lease.shrink_to(small->pixels.total() * small->pixels.elemSize());
    auto request = to_request(g.jobs[i], "file_" + std::to_string(i));
    request.decoded = std::move(small);
    request.original_size = original;
    request.keep = std::make_shared<MemoryBudget::Lease>(std::move(lease));
    g.requests[i] = std::move(request);
  }

  /// Queues the group's images that are ready; answers all of them once the Batcher has.
  void submit(const std::shared_ptr<Group>& g) {
    std::vector<vision::SegmentRequest> requests;
    std::vector<std::size_t> index;
    TimePoint deadline = kNever;
    for (std::size_t i = 0; i < g->requests.size(); ++i) {
      if (!g->requests[i]) continue;
      requests.push_back(std::move(*g->requests[i]));
      index.push_back(i);
      deadline = std::min(deadline, g->jobs[i].deadline);
    }
    g->requests.clear();
    if (requests.empty()) return g->done(std::move(g->answers));
    SubmitOptions options;
    options.deadline = deadline;
    // The model's failure text outlives the submission inside the handler.
    auto message = std::make_shared<std::string>();
    options.error_message = message.get();
    try {
      batcher_->async_submit_many(
          std::move(requests), options,
          [g, index, message](std::error_code ec, std::vector<vision::SegmentResponse> responses) {
            for (std::size_t k = 0; k < index.size(); ++k) {
              auto& answer = g->answers[index[k]];
              // A slot without a response (batch_requests == 0) failed with the group's error.
              if (k >= responses.size() || responses[k].batch_requests == 0) {
                answer.first = ec ? ec : make_error_code(errc::model_failed);
                answer.second.error_detail = *message;
              } else {
                answer = outcome_of({}, std::move(responses[k]), "");
              }
            }
            g->done(std::move(g->answers));
          });
    } catch (const std::exception& e) {
      for (const std::size_t i : index) {
        g->answers[i].first = make_error_code(errc::model_failed);
        g->answers[i].second.error_detail = e.what();
      }
      g->done(std::move(g->answers));
    }
  }

  static vision::SegmentRequest to_request(const SegmentJob& job, std::string name) {
    vision::SegmentRequest request;
    request.name = std::move(name);
    request.options.threshold = job.threshold;
    request.options.detect_holes = job.detect_holes;
    request.outputs = {job.outputs.result, job.outputs.mask, job.outputs.probability, job.outputs.logits};
    if (job.form == ImageForm::network_input) {
      request.network_input = job.image;
      request.keep = job.owner;
    }
    return request;
  }

  /// The answer for one image: the Batcher's error, else the image's own (a bad image fails alone).
  static std::pair<std::error_code, SegmentOutcome> outcome_of(std::error_code ec, vision::SegmentResponse r,
                                                                const std::string& batcher_message) {
    SegmentOutcome out;
    if (!ec && r.error) ec = r.error;
    if (ec) {
      out.error_detail = sanitize_utf8(without_code_suffix(!r.message.empty() ? r.message : batcher_message, ec));
      return {ec, std::move(out)};
    }
    out.result = vision::to_json(r.segmentation, r.info);
    if (!r.mask.empty()) {
      out.width = r.mask.cols;
      out.height = r.mask.rows;
      out.mask.assign(r.mask.ptr<std::uint8_t>(), r.mask.ptr<std::uint8_t>() + r.mask.total());
    }
    if (!r.probability.empty()) {
      out.width = r.probability.cols;
      out.height = r.probability.rows;
      out.probability.assign(r.probability.ptr<float>(), r.probability.ptr<float>() + r.probability.total());
    }
    out.map_width = r.map_size.width;
    out.map_height = r.map_size.height;
    out.logits = std::move(r.logits);
    out.preprocessing_time = r.times.prepare_s;
    out.inference_time = r.times.run_s;
    out.batch_size = r.info.batch_size;
    return {ec, std::move(out)};
  }

  std::string name_;
  Json info_;
  std::shared_ptr<void> keep_;
  std::unique_ptr<Model> model_;
  Decoding decoding_;
  std::mutex decoding_mutex_;
  std::condition_variable decoding_idle_;
  std::size_t decoding_groups_ = 0;  ///< requests whose images are on the decode pool
  std::unique_ptr<Batcher<Model, Controller>> batcher_;
};

}  // namespace sluice::serve
