// sluice/serve/model_service.hpp: what the HTTP layer needs from one served model, as a small
// type-erased interface: segment one encoded image asynchronously, describe itself, render its
// metrics, stop. The real implementation wraps a Batcher (batcher_service.hpp); tests use fakes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/core/clock.hpp"

namespace sluice::serve {

/// JSON that keeps insertion order, so responses list fields in the order docs/http-api.md gives.
using Json = nlohmann::ordered_json;

/// What `SegmentJob::image` holds.
enum class ImageForm {
  encoded,        ///< an encoded file (PNG, JPEG, TIFF, BMP)
  rgb8,           ///< raw pixels: height x width x 3 bytes, in the order R, G, B
  network_input,  ///< the network's input: 3 x H x W native floats, normalised (H x W = the input size)
};

/// Which answers a job wants (the Open Inference Protocol's outputs); /api/v1 wants the result only.
struct JobOutputs {
  bool result = true;        ///< the per-image result JSON
  bool mask = false;         ///< SegmentOutcome::mask
  bool probability = false;  ///< SegmentOutcome::probability
  bool logits = false;       ///< SegmentOutcome::logits
};

/// One image to segment: a view of the encoded file inside the request's body, which `owner` keeps
/// alive (with its memory lease) until the service lets go of the job -- no copy of the upload.
struct SegmentJob {
  std::string_view image;             ///< what `form` says
  std::shared_ptr<const void> owner;  ///< keeps `image` valid
  double threshold = 0.5;
  bool detect_holes = true;
  TimePoint deadline = kNever;
  ImageForm form = ImageForm::encoded;
  int width = 0, height = 0;  ///< rgb8: the pixels' size
  JobOutputs outputs;
};

/// The answer for one image.
struct SegmentOutcome {
  Json result;            ///< the per-image result JSON of docs/formats.md (on success)
  std::string error_detail;         ///< why it failed (on error), for the client
  double preprocessing_time = 0;    ///< seconds, when the model reports them
  double inference_time = 0;        ///< seconds of the batch run that served this image
  std::size_t batch_size = 1;       ///< size of that batch
  int width = 0, height = 0;        ///< of `mask` and `probability`: the image's size
  std::vector<std::uint8_t> mask;   ///< height x width, 1 = object, 0 = background (when asked for)
  std::vector<float> probability;   ///< height x width (when asked for)
  int map_width = 0, map_height = 0;  ///< of `logits`: the network's output map
  std::vector<float> logits;        ///< map_height x map_width (when asked for)
};

/// Called exactly once per job, from any thread.
using SegmentHandler = std::function<void(std::error_code, SegmentOutcome)>;
/// Called once for a group of jobs with one answer per job, in order.
using SegmentManyHandler = std::function<void(std::vector<std::pair<std::error_code, SegmentOutcome>>)>;

class ModelService {
 public:
  virtual ~ModelService() = default;
  virtual const std::string& name() const = 0;
  /// For GET /models: input size, batch sizes, backend, ...
  virtual Json info() const = 0;
  /// For GET /status: queue length, batches run, ...
  virtual Json status() const = 0;
  /// Never throws: every failure reaches `done` (exactly once).
  virtual void segment(SegmentJob job, SegmentHandler done) = 0;
  /// Several images of one request, submitted together so that they can share batches. The default
  /// submits them one by one. Never throws.
  virtual void segment_many(std::vector<SegmentJob> jobs, SegmentManyHandler done) {
    struct Gather {
      std::mutex mutex;
      std::vector<std::pair<std::error_code, SegmentOutcome>> answers;
      std::size_t remaining;
      SegmentManyHandler done;
    };
    auto g = std::make_shared<Gather>();
    g->answers.resize(jobs.size());
    g->remaining = jobs.size();
    g->done = std::move(done);
    if (jobs.empty()) return g->done({});
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      segment(std::move(jobs[i]), [g, i](std::error_code ec, SegmentOutcome out) {
        bool last;
        {
          std::lock_guard lock(g->mutex);
          g->answers[i] = {ec, std::move(out)};
          last = --g->remaining == 0;
        }
        if (last) g->done(std::move(g->answers));
      });
    }
  }
  /// Appends this model's metrics in the Prometheus text format.
  virtual void render_metrics(std::string& out) const = 0;
  /// Stops accepting work; queued jobs complete (with their result or shutting_down).
  virtual void stop() = 0;
};

}  // namespace sluice::serve
