// examples/segment/segment_app.hpp: the segment CLI -- images and folders in, polygons out -- as a
// function that both `segment` and the demo (`sluice_demo`, other defaults) call. Images go through
// a Batcher running the Segmenter, so decoding and postprocessing overlap the network.
#pragma once

// First, before OpenCV or Eigen include <immintrin.h>: see the header.
#include "sluice/backends/cpu/intrinsics.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <semaphore>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "backend_lanes.hpp"
#include "thread_limit.hpp"
#include "sluice/batching/batcher.hpp"
#include "sluice/calibrate/batch_sizes_json.hpp"
#include "sluice/control/fixed_batch.hpp"
#include "sluice/core/utf8.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"
#include "sluice/vision/model_description.hpp"
#include "sluice/vision/segmenter.hpp"

namespace segment_app {

namespace fs = std::filesystem;
namespace sv = sluice::vision;
using sluice::examples::Lanes;

struct Options {
  std::string model;               ///< network name; default: the description's
  fs::path model_json;             ///< model.json; default: next to the weights
  fs::path weights;
  std::string backend = "cpu";
  int device = 0;                  ///< CUDA device
  std::string precision = "fp32";  ///< fp32, bf16 (CPU and CUDA); tf32, fp16 (CUDA)
  std::string batch_size = "auto";
  fs::path batch_sizes_json = "batch_sizes.json";
  std::optional<double> threshold;
  bool detect_holes = true;
  fs::path overlay_dir;
  fs::path output;                 ///< .json: one document; .jsonl or "-": JSON lines
  std::size_t threads = 0;         ///< CPU backend threads; 0: all cores
  sluice::cpu::BatchSplit batch_split = sluice::cpu::BatchSplit::automatic;  ///< CpuOptions::batch_split
  std::size_t lanes = 1;
  std::size_t cpu_threads = 1;     ///< the Batcher's prepare/finish pool
  std::optional<int> input_size;   ///< square input override
  std::size_t repeat = 1;          ///< run the image list this many times (throughput measurement)
  bool bench_network = false;      ///< also time the network alone at the same batch size
  bool list_polygons = false;      ///< print each polygon's summary (the demo does)
  bool quiet = false;
  std::vector<fs::path> paths;
};

inline const char* kUsage =
    R"(usage: segment [options] PATH...
  Segments images (files, or folders searched recursively for .png .jpg .jpeg .tif .tiff .bmp).
  --model NAME         network: hrnet, resunet_small, advanced_resunet (or the service's
                       name resunet_advanced), cbam_resunet
                       (default: the one model.json names)
  --weights FILE       safetensors checkpoint (default: the one model.json names)
  --model-json FILE    model description: network, weights, input size, mean/std
                       (default: model.json next to the weights)
  --backend cpu|cuda   where the network runs (default cpu; cuda in builds with the CUDA backend)
  --device N           CUDA device (default 0)
  --precision P        arithmetic: fp32 or bf16 (CPU: the conv GEMMs, where the CPU has AVX512_BF16,
                       else fp32 with a note); CUDA also tf32, fp16 (default fp32)
  --batch-size N|auto  auto: optimal_batch_size from batch_sizes.json when present, else 4
  --batch-sizes FILE   the batch_sizes.json that auto reads (default ./batch_sizes.json)
  --threshold T        probability threshold, 0.1 .. 0.9 (default: model.json's, else 0.5)
  --no-holes           outer outlines only, holes filled
  --overlay DIR        write DIR/<image>.png with the polygons drawn
  --output FILE        results: FILE.json (one document) or FILE.jsonl / '-' (JSON lines)
  --input-size N       square network input size (default: model.json's)
  --threads N          CPU backend threads per lane (default: the cores divided among the lanes)
  --batch-split W      CPU, batches of at least --threads images: always (one pass per image and
                       thread), never (each layer split across the threads), auto (the faster of the
                       two, timed per batch size; default)
  --lanes N            batches running at once (default 1)
  --stage-threads N    threads that decode and postprocess while the lanes run other batches;
                       0: each lane does its batch's decoding and postprocessing itself (default 1)
  --repeat N           segment the list N times (for throughput measurements)
  --bench-network      also time the network alone at the same batch size, and compare
  --list-polygons      print every polygon (type, vertices, area, bounding box)
  --quiet              no progress bar
exit status: 0 all images segmented, 1 some image failed (reasons listed), 2 bad usage or setup
)";

/// A command-line mistake: exit status 2 with the message and the usage.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline Options parse_args(int argc, char** argv, Options o) {
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw UsageError(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  auto number = [&](int& i, long min, long max = 1'000'000) -> std::size_t {
    const std::string v = value(i);
    try {
      std::size_t used = 0;
      const long n = std::stol(v, &used);
      if (used == v.size() && n >= min && n <= max) return static_cast<std::size_t>(n);
    } catch (const std::exception&) {
    }
    throw UsageError(std::string(argv[i - 1]) + " takes an integer in " + std::to_string(min) + " .. " +
                     std::to_string(max) + ", not '" + v + "'");
  };
  auto count = [&](int& i) { return number(i, 1); };
  constexpr long kMaxThreads = static_cast<long>(sluice::examples::kMaxThreads);
  bool paths_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") throw UsageError("");
    else if (a == "--model") o.model = value(i);
    else if (a == "--weights") o.weights = value(i);
    else if (a == "--model-json") o.model_json = value(i);
    else if (a == "--backend") o.backend = value(i);
    else if (a == "--device") o.device = static_cast<int>(number(i, 0));
    else if (a == "--precision") o.precision = value(i);
    else if (a == "--batch-size") o.batch_size = value(i);
    else if (a == "--batch-sizes") o.batch_sizes_json = value(i);
    else if (a == "--threshold") {
      const std::string v = value(i);
      try {
        std::size_t used = 0;
        o.threshold = std::stod(v, &used);
        if (used != v.size()) throw std::invalid_argument(v);
      } catch (const std::exception&) {
        throw UsageError("--threshold takes a number, not '" + v + "'");
      }
    } else if (a == "--no-holes") o.detect_holes = false;
    else if (a == "--overlay") o.overlay_dir = value(i);
    else if (a == "--output") o.output = value(i);
    else if (a == "--input-size") o.input_size = static_cast<int>(count(i));
    else if (a == "--threads") o.threads = number(i, 1, kMaxThreads);
    else if (a == "--batch-split") {
      try {
        o.batch_split = sluice::cpu::parse_batch_split(value(i));
      } catch (const sluice::Error& e) {
        throw UsageError(std::string("--batch-split: ") + e.what());
      }
    }
    else if (a == "--lanes") o.lanes = number(i, 1, kMaxThreads);
    else if (a == "--stage-threads") o.cpu_threads = number(i, 0, kMaxThreads);
    else if (a == "--repeat") o.repeat = count(i);
    else if (a == "--bench-network") o.bench_network = true;
    else if (a == "--list-polygons") o.list_polygons = true;
    else if (a == "--quiet") o.quiet = true;
    else if (a.size() > 1 && a[0] == '-' && a != "-") throw UsageError("unknown option " + a);
    else {
      if (!paths_given) o.paths.clear();  // paths on the command line replace default ones
      paths_given = true;
      o.paths.emplace_back(a);
    }
  }
  if (o.paths.empty()) throw UsageError("no PATH given");
  if (o.backend != "cpu" && o.backend != "cuda") throw UsageError("--backend is cpu or cuda, not '" + o.backend + "'");
  if (o.threshold && !(*o.threshold >= 0.1 && *o.threshold <= 0.9))
    throw UsageError("--threshold " + std::to_string(*o.threshold) + " is outside 0.1 .. 0.9");
  return o;
}

inline bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::set<std::string> kExt = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"};
  return kExt.contains(ext);
}

/// Files named directly are taken whatever their name (a non-image then fails with a reason);
/// folders contribute their image files, sorted.
inline std::vector<fs::path> collect_inputs(const std::vector<fs::path>& paths) {
  std::vector<fs::path> files;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> found;
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) && is_image_name(it->path())) found.push_back(it->path());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(p);  // missing files fail later with "cannot open"
    }
  }
  return files;
}

/// The optimal_batch_size of `desc`'s network in batch_sizes.json (calibrate's reader), if the file is
/// there and has it. The file is looked for by default, so a missing one is silent, and one that
/// cannot be used (malformed, or measured at another input size) is reported and left out.
inline std::optional<std::size_t> batch_size_from_file(const fs::path& file, const sv::ModelDescription& desc) {
  std::error_code missing;
  if (!fs::exists(file, missing)) return std::nullopt;
  try {
    sluice::calibrate::BatchSizesQuery q;
    q.network = desc.network;
    q.input_height = desc.preprocess.input_height;
    q.input_width = desc.preprocess.input_width;
    if (const auto e = sluice::calibrate::load_model_batch_sizes(file.string(), q)) return e->optimal_batch_size;
    std::cerr << "segment: " << file.string() << " has no entry for '" << desc.network << "'\n";
  } catch (const std::exception& e) {
    std::cerr << "segment: not using the batch sizes: " << e.what() << "\n";
  }
  return std::nullopt;
}

/// A one-line progress bar on stderr, redrawn at most every 100 ms.
class Progress {
 public:
  Progress(std::size_t total, bool enabled) : total_(total), enabled_(enabled), start_(std::chrono::steady_clock::now()) {}
  void tick(std::size_t done, bool force = false) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    const int width = 30;
    const int filled = total_ ? static_cast<int>(width * done / total_) : width;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu images  %.1f img/s ", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), '.').c_str(), done, total_, s > 0 ? done / s : 0.0);
    if (done == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  std::size_t total_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_{};
};

inline void draw_overlay(const fs::path& image_path, const sv::Segmentation& seg, const fs::path& out) {
  cv::Mat img = cv::imread(image_path.string(), cv::IMREAD_COLOR);  // 16-bit is reduced to 8 for display
  if (img.empty()) return;
  for (const auto& p : seg.polygons) {
    const std::vector<std::vector<cv::Point>> one{p.points};
    cv::polylines(img, one, true, p.internal ? cv::Scalar(0, 0, 255) : cv::Scalar(0, 255, 0), 1, cv::LINE_AA);
  }
  cv::imwrite(out.string(), img);
}

inline std::string polygon_line(const sv::Polygon& p, std::size_t index) {
  const cv::Rect box = cv::boundingRect(p.points);
  char buf[200];
  std::snprintf(buf, sizeof buf, "    %s %-8s %4zu vertices  area %8.0f px  box %d,%d %dx%d%s", sv::polygon_id(index).c_str(),
                p.internal ? "internal" : "external", p.points.size(), p.area, box.x, box.y, box.width, box.height,
                p.parent >= 0 ? (" in " + sv::polygon_id(static_cast<std::size_t>(p.parent))).c_str() : "");
  return buf;
}

using Clock = std::chrono::steady_clock;

template <class B>
int run_on(const Options& o, const sv::ModelDescription& desc, double threshold, std::size_t batch, Lanes<B> lanes,
           Clock::time_point t_load);

/// Fails (exit status 2) when --output or --overlay could not be written, before any model loads
/// or image runs: a typo must not cost the whole run. Creates nothing but the overlay folder.
inline void check_outputs_writable(const Options& o) {
  if (!o.output.empty() && o.output != "-") {
    const fs::path folder = o.output.has_parent_path() ? o.output.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(folder, ec))
      throw sluice::Error(sluice::errc::invalid_argument,
                          "cannot write --output '" + o.output.string() + "': no folder '" + folder.string() + "'");
    if (fs::is_directory(o.output, ec))
      throw sluice::Error(sluice::errc::invalid_argument,
                          "cannot write --output '" + o.output.string() + "': it is a folder");
    const bool exists = fs::exists(o.output, ec);
    if (::access((exists ? o.output : folder).c_str(), W_OK) != 0)
      throw sluice::Error(sluice::errc::invalid_argument,
                          "cannot write --output '" + o.output.string() + "': permission denied");
  }
  if (!o.overlay_dir.empty()) {
    std::error_code ec;
    fs::create_directories(o.overlay_dir, ec);
    if (ec || !fs::is_directory(o.overlay_dir, ec))
      throw sluice::Error(sluice::errc::invalid_argument,
                          "cannot create --overlay folder '" + o.overlay_dir.string() + "'");
  }
}

/// Runs the CLI. Returns the exit status.
inline int run(const Options& o) {
  check_outputs_writable(o);
  // The model: description, network, weights.
  sv::ModelDescription desc;
  fs::path json_path = o.model_json;
  if (json_path.empty() && !o.weights.empty() && fs::exists(o.weights.parent_path() / "model.json"))
    json_path = o.weights.parent_path() / "model.json";
  if (!json_path.empty()) desc = sv::load_model_description(json_path);
  if (!o.model.empty()) desc.network = o.model;
  if (!o.weights.empty()) desc.weights = o.weights;
  if (o.input_size) desc.preprocess.input_height = desc.preprocess.input_width = *o.input_size;
  if (desc.network.empty()) throw sluice::Error(sluice::errc::invalid_argument, "no network: give --model or --model-json");
  desc.network = sluice::models::network_name(desc.network);  // the service's names too
  if (desc.weights.empty()) throw sluice::Error(sluice::errc::invalid_argument, "no weights: give --weights or --model-json");
  const double threshold = o.threshold.value_or(desc.threshold);

  std::size_t batch = 4;  // safe default: small enough for any model on any device sluice runs on
  if (o.batch_size == "auto") {
    if (auto n = batch_size_from_file(o.batch_sizes_json, desc)) batch = *n;
  } else {
    try {
      std::size_t used = 0;
      const long n = std::stol(o.batch_size, &used);
      if (used != o.batch_size.size() || n <= 0) throw std::invalid_argument(o.batch_size);
      batch = static_cast<std::size_t>(n);
    } catch (const std::exception&) {
      throw UsageError("--batch-size takes a positive integer or auto, not '" + o.batch_size + "'");
    }
  }

  const auto t_load = Clock::now();
  const sluice::examples::LaneSettings settings{.backend = o.backend,
                                                .lanes = o.lanes,
                                                .cpu_threads = o.threads,
                                                .cpu_batch_split = o.batch_split,
                                                .cpu_precision = o.precision,
                                                .cuda_device = o.device,
                                                .cuda_precision = o.precision};
  return sluice::examples::with_lanes(
      settings, [&](auto lanes) { return run_on(o, desc, threshold, batch, std::move(lanes), t_load); });
}

/// The run itself, on lanes of backend B.
template <class B>
int run_on(const Options& o, const sv::ModelDescription& desc, double threshold, std::size_t batch, Lanes<B> lanes,
           Clock::time_point t_load) {
  using Net = sluice::models::AnyNetwork<B>;
  using Segmenter = sv::Segmenter<Net, B>;
  const auto checkpoint = sluice::weights::load_checkpoint(desc.weights);
  Net net = sluice::models::load_network<B>(desc.network, lanes.front(), checkpoint);
  sv::SegmenterConfig sc;
  sc.model_name = desc.network;
  sc.device = o.backend;
  sc.preprocess = desc.preprocess;
  Segmenter segmenter(net, lanes.ptrs, sc);
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();

  std::vector<fs::path> files = collect_inputs(o.paths);
  if (files.empty()) {
    std::cerr << "segment: no images found in the given paths\n";
    return 1;
  }
  const std::size_t unique_files = files.size();
  const std::vector<fs::path> once = files;  // (inserting a vector's own range into it is undefined)
  for (std::size_t r = 1; r < o.repeat; ++r) files.insert(files.end(), once.begin(), once.end());

  sluice::BatcherConfig bc;
  bc.max_batch_size = batch;
  bc.preferred_batch_sizes = {batch};
  bc.max_queue_delay = std::chrono::milliseconds(20);
  bc.lanes = o.lanes;
  bc.cpu_threads = o.cpu_threads;
  bc.model_name = desc.network;

  std::vector<sv::SegmentResponse> results(files.size());
  std::vector<std::string> submit_errors(files.size());
  std::atomic<std::size_t> done{0};
  // A window of requests in flight keeps the queue bounded however many files there are.
  std::counting_semaphore<> window(static_cast<std::ptrdiff_t>(std::max<std::size_t>(16, 4 * batch * o.lanes)));
  Progress progress(files.size(), !o.quiet && ::isatty(STDERR_FILENO));
  std::mutex progress_mutex;

  const auto t0 = Clock::now();
  {
    sluice::Batcher<Segmenter, sluice::control::FixedBatch> batcher(segmenter, bc);
    for (std::size_t i = 0; i < files.size(); ++i) {
      window.acquire();
      sv::SegmentRequest req;
      req.name = files[i].string();
      req.path = files[i];
      req.options.threshold = threshold;
      req.options.detect_holes = o.detect_holes;
      batcher.async_submit(std::move(req), [&, i](std::error_code ec, sv::SegmentResponse r) {
        if (ec) {
          r.error = ec;
          r.message = ec.message();
          r.name = files[i].string();
        }
        results[i] = std::move(r);
        const std::size_t n = ++done;
        window.release();
        std::lock_guard lock(progress_mutex);
        progress.tick(n, n == files.size());
      });
    }
    batcher.stop(sluice::StopMode::drain);
    batcher.wait_idle();
  }
  while (done.load() < files.size()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();

  // Results.
  std::size_t failed = 0, polygons = 0;
  std::map<std::uint64_t, std::pair<std::size_t, sv::StageTimes>> batches;  // id -> (images, times)
  auto record_of = [&](const sv::SegmentResponse& r) {
    nlohmann::ordered_json j;
    // File names are bytes (a Latin-1 name is no UTF-8), and messages quote them: JSON needs UTF-8.
    j["filename"] = sluice::sanitize_utf8(r.name);
    j["success"] = r.ok();
    if (!r.ok()) {
      j["error"] = sluice::sanitize_utf8(r.message);
      return j;
    }
    const auto result = sv::to_json(r.segmentation, r.info);  // named: items() does not extend a temporary
    for (const auto& [k, v] : result.items()) j[k] = v;
    return j;
  };
  if (!o.output.empty()) {
    const bool lines = o.output == "-" || o.output.extension() == ".jsonl";
    std::ofstream file;
    if (o.output != "-") {
      file.open(o.output);
      if (!file) throw sluice::Error(sluice::errc::invalid_argument, "cannot write '" + o.output.string() + "'");
    }
    std::ostream& out = o.output == "-" ? std::cout : file;
    if (lines) {
      for (std::size_t i = 0; i < unique_files; ++i) out << record_of(results[i]).dump() << "\n";
    } else {
      nlohmann::ordered_json all = nlohmann::ordered_json::array();
      for (std::size_t i = 0; i < unique_files; ++i) all.push_back(record_of(results[i]));
      out << all.dump(1) << "\n";
    }
  }
  if (!o.overlay_dir.empty()) fs::create_directories(o.overlay_dir);

  std::vector<std::string> failures;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const auto& r = results[i];
    if (r.batch_id) batches.emplace(r.batch_id, std::make_pair(r.info.batch_size, r.times));
    if (i >= unique_files) {  // repeats: in the timings, and a failure still counts
      if (!r.ok()) {
        ++failed;
        failures.push_back(files[i].string() + " (repeat): " + r.message);
      }
      continue;
    }
    if (!r.ok()) {
      ++failed;
      failures.push_back(files[i].string() + ": " + r.message);
      continue;
    }
    const auto& seg = r.segmentation;
    polygons += seg.polygons.size();
    if (!o.overlay_dir.empty()) draw_overlay(files[i], seg, o.overlay_dir / (files[i].stem().string() + ".png"));
    if (o.list_polygons || o.output != "-") {
      std::size_t internal = 0;
      for (const auto& p : seg.polygons) internal += p.internal;
      if (o.output != "-") {
        std::printf("%s: %dx%d, %zu polygons (%zu external, %zu internal), confidence %.3f\n", files[i].filename().c_str(),
                    seg.image_size.width, seg.image_size.height, seg.polygons.size(), seg.polygons.size() - internal,
                    internal, seg.confidence);
        if (o.list_polygons)
          for (std::size_t k = 0; k < seg.polygons.size(); ++k) std::printf("%s\n", polygon_line(seg.polygons[k], k).c_str());
      }
    }
  }

  // Summary (stderr when results go to stdout).
  FILE* s = o.output == "-" ? stderr : stdout;
  double prepare = 0, run_t = 0, finish = 0;
  std::map<std::size_t, std::size_t> sizes;
  for (const auto& [id, b] : batches) {
    prepare += b.second.prepare_s;
    run_t += b.second.run_s;
    finish += b.second.finish_s;
    ++sizes[b.first];
  }
  const std::size_t images = files.size();
  std::fprintf(s, "\n%s on %s, input %dx%d, batch size %zu%s; model loaded in %.2f s\n", desc.network.c_str(),
               lanes.description.c_str(), desc.preprocess.input_width, desc.preprocess.input_height, batch,
               o.batch_size == "auto" ? " (auto)" : "", load_s);
  std::fprintf(s, "%zu images (%zu unique x %zu), %zu failed, %zu polygons in %.3f s: %.2f images/s end to end\n",
               images, unique_files, o.repeat, failed, polygons, wall_s, images / wall_s);
  std::fprintf(s, "stage time per image: prepare %.2f ms, network %.2f ms, finish %.2f ms (stages overlap)\n",
               1e3 * prepare / images, 1e3 * run_t / images, 1e3 * finish / images);
  std::string hist;
  for (const auto& [n, c] : sizes) hist += " " + std::to_string(n) + "x" + std::to_string(c);
  std::fprintf(s, "batches (size x count):%s\n", hist.c_str());

  if (o.bench_network) {
    // The network alone on the same batch size: upload + forward + download, random inputs.
    auto& b = lanes.front();
    const auto& pre = desc.preprocess;
    std::vector<float> input(batch * pre.slot_floats());
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    for (auto& v : input) v = nd(rng);
    std::vector<float> logits(batch * static_cast<std::size_t>(pre.input_height) * pre.input_width);
    const sluice::Shape shape{static_cast<std::int64_t>(batch), 3, pre.input_height, pre.input_width};
    auto once = [&] {
      const auto x = b.upload(input, shape);
      const auto y = sluice::models::run_forward(net, b, x);
      b.download(y, logits);
      b.synchronize();
    };
    once();  // warm-up
    const std::size_t rounds = std::max<std::size_t>(1, images / batch);
    const auto tn = Clock::now();
    for (std::size_t r = 0; r < rounds; ++r) once();
    const double net_s = std::chrono::duration<double>(Clock::now() - tn).count();
    const double net_ips = static_cast<double>(rounds * batch) / net_s;
    std::fprintf(s, "network only at batch %zu: %.2f images/s; end to end is %.0f%% of it\n", batch, net_ips,
                 100.0 * (images / wall_s) / net_ips);
  }

  if (failed) {
    std::fprintf(stderr, "%zu image%s failed:\n", failed, failed > 1 ? "s" : "");
    for (const auto& f : failures) std::fprintf(stderr, "  %s\n", f.c_str());
    return 1;
  }
  return 0;
}

/// main() of both programs: parses, runs, maps errors to exit statuses.
inline int main_with_defaults(int argc, char** argv, const Options& defaults) {
  // The Batcher's CPU pool is the pipeline's parallelism: OpenCV's own workers (resize, colour
  // conversion) would compete with the backend's threads for the same cores.
  cv::setNumThreads(1);
  try {
    return run(parse_args(argc, argv, defaults));
  } catch (const UsageError& e) {
    if (*e.what()) std::cerr << "segment: " << e.what() << "\n";
    std::cerr << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "segment: " << e.what() << "\n";
    return 2;
  }
}

}  // namespace segment_app
