// sluice/vision/segmenter.hpp: Segmenter, the staged BatchModel that the Batcher runs for image
// segmentation: prepare (CPU: read, decode, resize, normalise straight into the batch tensor),
// run (a lane's backend: upload, network forward, download), finish (CPU: postprocess into
// polygons). With the Batcher, prepare and finish of neighbouring batches overlap a run.
//
//   sluice::vision::Segmenter seg(network, {&cpu}, {.model_name = "cbam_resunet", .preprocess = {...}});
//   sluice::Batcher<Segmenter, control::FixedBatch> batcher(seg, {.max_batch_size = 8});
//   auto response = batcher.submit({.name = "a.png", .path = "a.png"});
//
// A bad image (unreadable, not an image, too small or large, bad threshold) fails alone: its
// response carries the error and the rest of its batch runs.
#pragma once

#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "sluice/core/backend.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"
#include "sluice/models/network.hpp"
#include "sluice/vision/decode.hpp"
#include "sluice/vision/postprocess.hpp"
#include "sluice/vision/preprocess.hpp"
#include "sluice/vision/result_json.hpp"

namespace sluice::vision {

/// What finish makes of an image's logits. The service's endpoints want the polygons; tensor clients
/// (the Open Inference Protocol) may want the maps, or only the raw logits.
struct SegmentOutputs {
  bool segmentation = true;  ///< polygons (SegmentResponse::segmentation)
  bool mask = false;         ///< probability > threshold at the original size: CV_8UC1, 1 = object, 0 = background
  bool probability = false;  ///< sigmoid of the logits at the original size: CV_32FC1
  bool logits = false;       ///< the network's output map as it is
};

/// One image to segment: its pixels already decoded, or its bytes, or a path that prepare reads --
/// or the network's input itself (`network_input`), for clients that pre-process themselves.
struct SegmentRequest {
  std::string name;                  ///< echoed in the response (file name, client label)
  std::filesystem::path path;        ///< read when `bytes` and `decoded` are null
  std::shared_ptr<const std::vector<std::uint8_t>> bytes;  ///< decoded by prepare when `decoded` is null
  PostprocessOptions options;        ///< threshold, detect_holes, min_area
  /// Pixels decoded before the request was queued (a server decodes on its own pool), possibly
  /// already resized to the network's input (resize_to_input); then `original_size` is the size the
  /// image was decoded at, which the polygons are scaled to.
  std::shared_ptr<const DecodedImage> decoded;
  cv::Size original_size;
  std::shared_ptr<const void> keep;  ///< released with the request (e.g. the memory its pixels hold)
  /// When not empty: 3 x H x W floats (H x W = the input size; native byte order), already
  /// normalised, copied into the batch as they are; `keep` keeps the bytes valid. The image's
  /// "original size" is then the input size.
  std::string_view network_input;
  SegmentOutputs outputs;
};

/// Seconds each stage of an image's batch took, and the batch's size.
struct StageTimes {
  double prepare_s = 0.0;  ///< read + decode + preprocess of the whole batch
  double run_s = 0.0;      ///< upload + forward + download
  double finish_s = 0.0;   ///< postprocess of the whole batch
};

struct SegmentResponse {
  std::string name;
  std::error_code error;     ///< empty on success; invalid_argument for bad input
  std::string message;       ///< why, when `error` is set
  Segmentation segmentation;   ///< when outputs.segmentation
  cv::Mat mask;                ///< when outputs.mask
  cv::Mat probability;         ///< when outputs.probability
  std::vector<float> logits;   ///< when outputs.logits: map_size.height x map_size.width
  cv::Size map_size;           ///< the network's output map
  ResultInfo info;           ///< model, device, batch size and this image's position in it
  StageTimes times;
  std::uint64_t batch_id = 0;       ///< the same for the images of one batch
  std::size_t batch_requests = 0;   ///< requests in the batch, failed ones included

  bool ok() const { return !error; }
};

struct SegmenterConfig {
  std::string model_name = "model";  ///< reported as model_used
  std::string device = "cpu";        ///< reported as processing_info.device
  PreprocessOptions preprocess;      ///< the network's input size and normalisation
  DecodeOptions decode;
};

template <class Net, Backend B>
  requires models::Network<Net, B>
class Segmenter {
 public:
  using request_type = SegmentRequest;
  using response_type = SegmentResponse;

  /// The batch between the stages. Valid images occupy consecutive slots of `input`.
  struct Batch {
    struct Item {
      std::string name;
      PostprocessOptions options;
      SegmentOutputs outputs;
      cv::Size original;
      std::error_code error;
      std::string message;
      std::ptrdiff_t slot = -1;  ///< row of the batch tensor; -1 when the image failed
    };
    std::vector<Item> items;
    std::size_t images = 0;      ///< valid images = rows of the batch tensor
    std::vector<float> input;    ///< images x 3 x H x W
    std::vector<float> logits;   ///< images x H' x W'
    cv::Size map_size;           ///< H' x W' of the network's output
    StageTimes times;
    std::uint64_t id = 0;
  };
  using batch_type = Batch;

  /// `lanes`: one backend per Batcher lane (lane i runs on lanes[i % size]); they must outlive
  /// the Segmenter. The network's weights are shared by all lanes.
  Segmenter(Net network, std::vector<B*> lanes, SegmenterConfig config)
      : network_(std::move(network)), lanes_(std::move(lanes)), config_(std::move(config)) {
    config_.preprocess.validate();
    if (lanes_.empty()) throw Error(errc::invalid_argument, "Segmenter needs at least one backend");
    for (B* b : lanes_)
      if (b == nullptr) throw Error(errc::invalid_argument, "Segmenter: null backend");
    if (network_.in_channels() != 3)
      throw Error(errc::invalid_argument, "Segmenter: the network takes " + std::to_string(network_.in_channels()) +
                                              " channels; the image pipeline makes 3");
    const auto min = network_.min_input_size();
    if (config_.preprocess.input_height < min || config_.preprocess.input_width < min)
      throw Error(errc::invalid_argument, "Segmenter: input size below the network's minimum of " +
                                              std::to_string(min));
  }

  const SegmenterConfig& config() const { return config_; }

  /// CPU stage: read, decode and preprocess every request into its slot. Never throws for a bad
  /// image: the image's item records the error.
  Batch prepare(std::span<const SegmentRequest> requests) const {
    const auto start = Clock::now();
    Batch batch;
    batch.id = next_id_.fetch_add(1, std::memory_order_relaxed);
    batch.items.resize(requests.size());
    const std::size_t slot_floats = config_.preprocess.slot_floats();
    batch.input.resize(requests.size() * slot_floats);
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const SegmentRequest& r = requests[i];
      auto& item = batch.items[i];
      item.name = r.name;
      item.options = r.options;
      item.outputs = r.outputs;
      try {
        r.options.validate();
        if (!r.network_input.empty()) {
          if (r.network_input.size() != slot_floats * sizeof(float))
            throw Error(errc::invalid_argument, "network input holds " + std::to_string(r.network_input.size()) +
                                                    " bytes, expected " + std::to_string(slot_floats * sizeof(float)));
          std::memcpy(batch.input.data() + batch.images * slot_floats, r.network_input.data(), r.network_input.size());
          item.original = cv::Size(config_.preprocess.input_width, config_.preprocess.input_height);
          item.slot = static_cast<std::ptrdiff_t>(batch.images++);
          continue;
        }
        if (r.decoded) {
          const std::span<float> slot(batch.input.data() + batch.images * slot_floats, slot_floats);
          preprocess_into(*r.decoded, config_.preprocess, slot);
          item.original = r.original_size.empty() ? r.decoded->size() : r.original_size;
          item.slot = static_cast<std::ptrdiff_t>(batch.images++);
          continue;
        }
        std::vector<std::uint8_t> owned;
        std::span<const std::uint8_t> bytes;
        if (r.bytes) {
          bytes = *r.bytes;
        } else {
          if (r.path.empty()) throw Error(errc::invalid_argument, "request has neither bytes nor a path");
          owned = read_file_bytes(r.path);
          bytes = owned;
        }
        const DecodedImage image = decode_image(bytes, config_.decode);
        const std::span<float> slot(batch.input.data() + batch.images * slot_floats, slot_floats);
        preprocess_into(image, config_.preprocess, slot);
        item.original = image.size();
        item.slot = static_cast<std::ptrdiff_t>(batch.images++);
      } catch (const Error& e) {
        item.error = e.code();
        item.message = e.what();
      } catch (const std::bad_alloc&) {
        item.error = make_error_code(errc::out_of_memory);
        item.message = "out of memory while decoding";
      } catch (const std::exception& e) {
        item.error = make_error_code(errc::invalid_argument);
        item.message = e.what();
      }
    }
    batch.input.resize(batch.images * slot_floats);  // shrinks in place: no reallocation
    batch.times.prepare_s = seconds_since(start);
    return batch;
  }

  /// Device stage, on lane ctx.lane's backend. Throws what the backend throws (out_of_memory makes
  /// the Batcher split the batch).
  void run(Batch& batch, const RunContext& ctx) const {
    const auto start = Clock::now();
    if (batch.images > 0) {
      B& backend = *lanes_[ctx.lane % lanes_.size()];
      const auto& pre = config_.preprocess;
      const Shape in{static_cast<std::int64_t>(batch.images), 3, pre.input_height, pre.input_width};
      const auto x = backend.upload(batch.input, in);
      const auto y = models::run_forward(network_, backend, x);
      const Shape out = backend.shape_of(y);
      if (out.n != in.n || out.c != 1 || out.h <= 0 || out.w <= 0)
        throw Error(errc::model_failed, "network output " + out.to_string() + " is not " +
                                            std::to_string(in.n) + " x 1 x H x W");
      batch.map_size = cv::Size(static_cast<int>(out.w), static_cast<int>(out.h));
      batch.logits.resize(static_cast<std::size_t>(out.numel()));
      backend.download(y, batch.logits);
      backend.synchronize();
    }
    batch.times.run_s = seconds_since(start);
  }

  void run(Batch& batch) const { run(batch, RunContext{}); }

  /// CPU stage: postprocess each valid image; copy each failed image's error.
  void finish(Batch& batch, std::span<SegmentResponse> out) const {
    const auto start = Clock::now();
    const std::size_t plane = static_cast<std::size_t>(batch.map_size.area());
    for (std::size_t i = 0; i < batch.items.size() && i < out.size(); ++i) {
      auto& item = batch.items[i];
      SegmentResponse& r = out[i];
      r.name = std::move(item.name);
      r.batch_id = batch.id;
      r.batch_requests = batch.items.size();
      r.info = ResultInfo{config_.model_name, config_.device, batch.images,
                          item.slot < 0 ? 0 : static_cast<std::size_t>(item.slot)};
      if (item.error) {
        r.error = item.error;
        r.message = std::move(item.message);
        continue;
      }
      try {
        const std::span<const float> logits(batch.logits.data() + static_cast<std::size_t>(item.slot) * plane, plane);
        const SegmentOutputs& o = item.outputs;
        r.map_size = batch.map_size;
        if (o.logits) r.logits.assign(logits.begin(), logits.end());
        if (o.segmentation || o.mask || o.probability) {
          item.options.validate();
          cv::Mat probability = probability_map(logits, batch.map_size, item.original);
          if (o.segmentation) r.segmentation = segment_probability(probability, item.options);
          if (o.mask) {
            cv::bitwise_and(threshold_mask(probability, item.options.threshold), cv::Scalar(1), r.mask);
          }
          if (o.probability) r.probability = std::move(probability);
        }
      } catch (const Error& e) {
        r.error = e.code();
        r.message = e.what();
      } catch (const std::exception& e) {
        r.error = make_error_code(errc::model_failed);
        r.message = std::string("postprocess failed: ") + e.what();
      }
    }
    batch.times.finish_s = seconds_since(start);
    for (std::size_t i = 0; i < batch.items.size() && i < out.size(); ++i) out[i].times = batch.times;
  }

 private:
  static double seconds_since(TimePoint start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  Net network_;
  std::vector<B*> lanes_;
  SegmenterConfig config_;
  mutable std::atomic<std::uint64_t> next_id_{1};
};

}  // namespace sluice::vision
