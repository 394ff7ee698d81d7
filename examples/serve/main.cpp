// sluice_serve: the HTTP segmentation server. Every configured model gets its own Batcher (with the
// SloController by default), all on one io_context that also runs the HTTP connections, so
// concurrent single-image requests share batches.
//
//   sluice_serve --model demo=examples/data/demo/model.json --port 0
//   sluice_serve --config serve.json
//
// Prints "listening on http://ADDRESS:PORT/" once it accepts connections (port 0 picks a free one);
// the models then load and warm up while health answers "loading", and GET /health/ready turns 200
// once they can serve. A model that fails to load: exit status 2.
// SIGINT/SIGTERM: stop accepting, finish in-flight requests, exit 0.
// With --grpc-port (builds with the gRPC transport, docs/grpc.md) the Open Inference Protocol's gRPC
// service listens too, after HTTP, and stops before the models.
// First, before OpenCV or Eigen include <immintrin.h>: see the header.
#include "sluice/backends/cpu/intrinsics.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <malloc.h>
#include <sys/resource.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <opencv2/core/utility.hpp>

#include "backend_lanes.hpp"
#include "batching_setup.hpp"
#include "serve_config.hpp"
#include "sluice/batching/batcher.hpp"
#include "sluice/control/fixed_batch.hpp"
#include "sluice/control/slo_controller.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"
#include "sluice/serve/api.hpp"
#include "sluice/serve/oip_http.hpp"
#include "sluice/serve/batcher_service.hpp"
#include "sluice/serve/server.hpp"
#include "sluice/vision/segmenter.hpp"
#ifdef SLUICE_SERVE_GRPC
#include "sluice/grpc/grpc_server.hpp"
#endif

namespace {

using namespace sluice;
using serve_app::ModelConfig;
using serve_app::ServeConfig;
using examples::Lanes;

const char* kUsage = R"(usage: sluice_serve [--config FILE] [options]
  --config FILE            JSON configuration (keys as the options below, with _ for -; "models": [...])
  --model [NAME=]FILE      serve the model described by FILE (model.json); repeatable
  --address ADDR           listen address (default 127.0.0.1; environment SLUICE_ADDRESS, e.g. 0.0.0.0
                           in a container)
  --port N                 listen port (default 8000; 0 = any free port, printed on stdout;
                           environment SLUICE_PORT). Flags win over the environment, which wins
                           over --config
  --default-model NAME     model used when a request names none (default: the first)
  --batch-sizes FILE       batch_sizes.json: max safe batch size and latency table per model
  --controller slo|fixed   batch-size policy (default slo)
  --deadline-ms MS         each image's deadline; past it: 504 (default 300000, the backend's own
                           timeout; 0: none)
  --slo-ms MS              the SloController's latency objective (default 10000); not a deadline
  --max-batch-size N       largest batch (default 16; 1 turns batching off)
  --max-queue-delay-ms MS  longest wait for company (fixed controller; default 5)
  --max-queue-size N       queued images per model beyond which requests get 503 (default 256)
  --lanes N                batches that run at once per model (default 1)
  --backend-threads N      threads of each lane's CPU backend (default: the cores divided among the lanes)
  --batch-split auto|always|never  CPU: a batch of at least backend-threads images runs as one pass
                           per image and thread (always), each layer split across the threads (never),
                           or the faster of the two, timed per batch size (auto, the default)
  --backend cpu|cuda       where models run unless they name a backend (default cpu; cuda in builds
                           with the CUDA backend)
  --device N               CUDA device (default 0)   --precision fp32|bf16 (CPU, CUDA)|tf32|fp16 (CUDA; default fp32)
  --cpu-threads N          threads of the pre/post-processing pool (default 1)
  --io-threads N           threads running connections and completions (default 2)
  --warmup-runs N          runs per batch size (1, 2, 4, ..., max) before serving, reported to the
                           controller so it knows every size's latency (default 2; 0: none)
  --decode-threads N        threads decoding uploads before they are queued, shared by all models
                           (default 1); requests take turns image by image
  --memory-budget-mib N    request bytes held at once: bodies and decoded images (default: a quarter
                           of the machine's or the container's memory, at most 4096); past it: 503
  --max-decode-mib N       the most memory one image's decode may take, from its header (default 1024)
  --spool-dir DIR          where bodies above the spool threshold are written, unlinked (default
                           $TMPDIR, else /tmp)
  --spool-threshold-mib N  bodies above it (and chunked ones) are spooled to disk (default 8)
  --max-spool-mib N        spooled body bytes at once, on disk (default 2048; 0: never spool); past it: 503
  --max-connections N      open connections (default 256); at the cap the connection waiting
                           longest for its request header is closed to make room
  --max-connections-per-peer N  open connections per client address (default 64)
  --header-timeout-ms MS   wait for a request header, also the keep-alive idle time (default 10000)
  --pressure-header-timeout-ms MS  the same while over 3/4 of the connections are open (default 1000)
  --max-body-bytes N  --max-header-bytes N  --max-pixels N  --max-files N
  --body-timeout-ms MS  --write-timeout-ms MS  --drain-timeout-ms MS  --shutdown-grace-ms MS
  --retry-after-s S
Limits, their defaults and what a client gets past each: docs/http-api.md.
)";

#ifdef SLUICE_SERVE_GRPC
const char* kGrpcUsage = R"(The Open Inference Protocol over gRPC (inference.GRPCInferenceService, docs/grpc.md):
  --grpc-port PORT         gRPC port on --address (default 0: off; environment SLUICE_GRPC_PORT)
  --grpc-max-message-mib N largest gRPC request message (default: --max-body-bytes, 256 MiB)
  --grpc-max-in-flight N   gRPC inference calls with the models at once; past it RESOURCE_EXHAUSTED
                           (default 256)
)";
#endif

template <class B>
std::shared_ptr<serve::ModelService> make_service_on(const ModelConfig& m, const ServeConfig& c,
                                                     boost::asio::any_io_executor ex, Lanes<B> lanes_made,
                                                     const serve::Decoding& decoding);

/// Builds one model's service: backends (one per lane), network, Segmenter, Batcher.
std::shared_ptr<serve::ModelService> make_service(ModelConfig m, const ServeConfig& c, boost::asio::any_io_executor ex,
                                                  const serve::Decoding& decoding) {
  if (m.network.empty() || m.weights.empty())
    throw Error(errc::invalid_argument, "model '" + m.name + "' needs a network and weights");
  if (m.backend.empty()) m.backend = c.backend;
  const examples::LaneSettings settings{.backend = m.backend,
                                        .lanes = c.lanes,
                                        .cpu_threads = c.backend_threads,
                                        .cpu_batch_split = c.batch_split,
                                        .cpu_precision = m.precision.empty() ? c.precision : m.precision,
                                        .cuda_device = m.device.value_or(c.device),
                                        .cuda_precision = m.precision.empty() ? c.precision : m.precision};
  return examples::with_lanes(settings,
                              [&](auto lanes) { return make_service_on(m, c, ex, std::move(lanes), decoding); });
}

/// make_service on lanes of backend B.
template <class B>
std::shared_ptr<serve::ModelService> make_service_on(const ModelConfig& m, const ServeConfig& c,
                                                     boost::asio::any_io_executor ex, Lanes<B> lanes_made,
                                                     const serve::Decoding& decoding) {
  using Net = models::AnyNetwork<B>;
  using Segmenter = vision::Segmenter<Net, B>;
  auto owned = std::make_shared<Lanes<B>>(std::move(lanes_made));
  const std::size_t lanes = owned->ptrs.size();
  const weights::TensorDict checkpoint = weights::load_checkpoint(m.weights);
  Net net = models::load_network<B>(m.network, owned->front(), checkpoint);

  vision::SegmenterConfig sc;
  sc.model_name = m.name;
  sc.device = m.backend;
  if (m.input_height > 0) {
    sc.preprocess.input_height = m.input_height;
    sc.preprocess.input_width = m.input_width;
  }
  if (m.mean) sc.preprocess.mean = *m.mean;
  if (m.std) sc.preprocess.std = *m.std;
  sc.decode.max_pixels = static_cast<std::int64_t>(c.api.max_pixels);
  sc.decode.max_decode_bytes = static_cast<std::int64_t>(c.max_decode_bytes);
  auto segmenter = std::make_unique<Segmenter>(std::move(net), owned->ptrs, sc);

  const int h = sc.preprocess.input_height, w = sc.preprocess.input_width;
  const serve_app::BatchingSetup setup = serve_app::batching_setup(m, c, lanes, h, w);
  if (!c.batch_sizes.empty() && !setup.calibration)
    std::cerr << "sluice_serve: " << c.batch_sizes << " has no entry for model '" << m.name << "' or network '"
              << m.network << "': it starts uncalibrated\n";

  serve::Json info{{"network", m.network},
                   {"backend", owned->description},
                   {"weights", m.weights},
                   {"input_size", {{"height", sc.preprocess.input_height}, {"width", sc.preprocess.input_width}}},
                   {"controller", c.controller},
                   {"slo_ms", c.slo_ms},
                   {"deadline_ms", c.deadline_ms}};
  if (c.controller == "fixed") {
    auto s = std::make_shared<serve::BatcherService<Segmenter, control::FixedBatch>>(
        m.name, std::move(info), owned, std::move(segmenter), ex, setup.batcher, control::FixedBatch{}, decoding);
    s->warm_up(c.warmup_runs, h, w);
    return s;
  }
  auto s = std::make_shared<serve::BatcherService<Segmenter, control::SloController>>(
      m.name, std::move(info), owned, std::move(segmenter), ex, setup.batcher, control::SloController(setup.slo),
      decoding);
  s->warm_up(c.warmup_runs, h, w);
  return s;
}

ServeConfig parse_args(int argc, char** argv) {
  ServeConfig c;
  std::vector<std::string> args(argv + 1, argv + argc);
  // The file first, so that flags override it wherever they stand.
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--config") serve_app::load_config_file(c, args[i + 1]);
  serve_app::apply_environment(c, [](const char* name) { return std::getenv(name); });
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
#ifdef SLUICE_SERVE_GRPC
      std::cout << kGrpcUsage;
#endif
      std::exit(0);
    }
    if (a.rfind("--", 0) != 0 || i + 1 >= args.size())
      throw Error(errc::invalid_argument, "bad argument '" + a + "' (see --help)");
    const std::string v = args[++i];
    std::string key = a.substr(2);
    std::replace(key.begin(), key.end(), '-', '_');
    if (key == "config") continue;
    if (key == "model") {
      c.models.push_back(serve_app::model_from_flag(v));
      continue;
    }
    nlohmann::json value;
    const bool text = key == "address" || key == "default_model" || key == "batch_sizes" || key == "controller" ||
                      key == "backend" || key == "precision" || key == "batch_split" || key == "spool_dir";
    if (text) {
      value = v;
    } else {
      try {
        value = nlohmann::json::parse(v);
      } catch (const nlohmann::json::exception&) {
        throw Error(errc::invalid_argument, "--" + a.substr(2) + " needs a number, got '" + v + "'");
      }
    }
    serve_app::detail::apply(c, key, value);
  }
  if (c.models.empty()) throw Error(errc::invalid_argument, "no model configured (--model or \"models\" in --config)");
  if (c.io_threads == 0) c.io_threads = 1;
  // Refuse at start what would make every request fail.
  c.api.request_timeout = std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(c.deadline_ms));
  // What loading would refuse, refused before listening.
  std::vector<std::string> names;
  for (const auto& m : c.models) {
    if (m.network.empty() || m.weights.empty())
      throw Error(errc::invalid_argument, "model '" + m.name + "' needs a network and weights");
    if (std::find(names.begin(), names.end(), m.name) != names.end())
      throw Error(errc::invalid_argument, "model '" + m.name + "' is configured twice");
    names.push_back(m.name);
  }
  if (!c.default_model.empty() && std::find(names.begin(), names.end(), c.default_model) == names.end()) {
    const auto wanted = models::find_network(c.default_model);
    const bool spelled = wanted && std::any_of(c.models.begin(), c.models.end(),
                                               [&](const ModelConfig& m) { return m.network == wanted->name; });
    if (!spelled) throw Error(errc::invalid_argument, "default model '" + c.default_model + "' is not configured");
  }
  c.server.validate();
  c.api.validate();
#ifdef SLUICE_SERVE_GRPC
  if (c.grpc_port != 0 && c.grpc_port == c.port)
    throw Error(errc::invalid_argument, "grpc_port must differ from port (" + std::to_string(c.port) + ")");
  if (!c.grpc_max_message_bytes) c.grpc_max_message_bytes = std::min(c.server.max_body_bytes, std::size_t{2047} << 20);
#else
  if (c.grpc_port != 0)
    throw Error(errc::invalid_argument, "this sluice_serve was built without the gRPC transport (SLUICE_WITH_GRPC)");
#endif
  // The largest body held in memory: spooled ones are on disk.
  const std::size_t in_memory = c.server.max_spool_bytes > 0
                                    ? std::min(c.server.max_body_bytes, c.server.spool_threshold_bytes)
                                    : c.server.max_body_bytes;
  if (in_memory > c.api.memory_budget_bytes)
    throw Error(errc::invalid_argument, "bodies held in memory (up to " + std::to_string(in_memory) +
                                            " bytes) can be larger than the memory budget (" +
                                            std::to_string(c.api.memory_budget_bytes) + " bytes)");
  return c;
}

/// Lets the process hold as many sockets as the hard limit allows: at the connection cap, each
/// open connection is a descriptor, and the default soft limit (often 1024) is below what
/// max_connections may ask for.
void raise_descriptor_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // The Batchers' CPU pools are the pipeline's parallelism: OpenCV's own workers (resize, colour
  // conversion) would compete with the backends' threads for the same cores.
  cv::setNumThreads(1);
  // Request bodies and images are large, short-lived buffers. glibc's default mmap threshold grows
  // after each such buffer is freed, after which new ones come from the heap and their memory is not
  // given back: a fixed threshold keeps every buffer over 1 MiB in its own mapping, returned on free,
  // so the process's size follows the memory budget.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  raise_descriptor_limit();
  boost::asio::io_context ioc;
  // The loader thread adds services while a signal may stop them: both under `services_mutex`.
  std::mutex services_mutex;
  std::vector<std::shared_ptr<serve::ModelService>> services;
  bool stopping = false;
  int exit_code = 0;
  std::shared_ptr<serve::Server> server;
  std::shared_ptr<serve::Api> api;
  ServeConfig config;
  auto stop_all = [&] {
    std::lock_guard lock(services_mutex);
    if (stopping) return;  // the loader stops what it makes after this
    stopping = true;
    for (auto& s : services) s->stop();
  };
#ifdef SLUICE_SERVE_GRPC
  std::unique_ptr<serve::oip::GrpcServer> grpc_server;
#endif
  // Stops gRPC (on a thread of its own: its calls in flight are answered from completions that run
  // on this io_context) and HTTP together, then the models.
  std::thread grpc_stopper;
  std::atomic<bool> serving_stopped{false};  // a signal and a failed load may both ask
  auto stop_serving = [&] {
    if (serving_stopped.exchange(true)) return;
    auto open = std::make_shared<std::atomic<int>>(2);
    auto last = [&, open] {
      if (--*open > 0) return;
      stop_all();
      ioc.stop();
    };
#ifdef SLUICE_SERVE_GRPC
    grpc_stopper = std::thread([&, last] {
      if (grpc_server) grpc_server->shutdown(std::chrono::duration_cast<std::chrono::milliseconds>(config.server.drain_timeout));
      boost::asio::post(ioc, last);
    });
#else
    boost::asio::post(ioc, last);
#endif
    server->shutdown(last);
  };
  // Signals are caught from before the server listens: a supervisor that signals as soon as the
  // "listening" line appears gets a graceful stop, not a killed process.
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    std::cerr << "sluice_serve: signal " << sig << ", finishing running requests\n";
    if (!server) return ioc.stop();
    stop_serving();
  });
  serve::Decoding decoding;
  try {
    config = parse_args(argc, argv);
    auto metrics = std::make_shared<serve::HttpMetrics>();
    // One memory budget for the bodies the Api admits and the images the decode stage holds.
    decoding.pool = std::make_shared<serve::FairPool>(config.decode_threads);
    decoding.memory = std::make_shared<serve::MemoryBudget>(config.api.memory_budget_bytes);
    // Listen first, with no model yet: health answers "loading" while the models load.
    api = std::make_shared<serve::Api>(config.api, metrics, decoding.memory);
    // The Open Inference Protocol (/v2) over the same models and Batchers; gRPC serves it too.
    [[maybe_unused]] const auto open_inference = serve::serve_open_inference_protocol(*api);
    server = std::make_shared<serve::Server>(ioc.get_executor(), config.server, api);
    const auto ep = server->listen(config.address, config.port);
    std::cout << "listening on http://" << ep.address().to_string() << ":" << ep.port() << "/" << std::endl;
#ifdef SLUICE_SERVE_GRPC
    if (config.grpc_port != 0) {
      serve::oip::GrpcServerOptions options;
      options.max_receive_message_bytes = *config.grpc_max_message_bytes;
      options.max_in_flight_infers = config.grpc_max_in_flight;
      grpc_server = std::make_unique<serve::oip::GrpcServer>(open_inference, options);
      const unsigned short grpc_port = grpc_server->start(ep.address().to_string(), config.grpc_port);
      std::cout << "grpc listening on " << ep.address().to_string() << ":" << grpc_port << std::endl;
    }
#endif
  } catch (const std::exception& e) {
    std::cerr << "sluice_serve: " << e.what() << "\n";
    return 2;
  }

  // Loads and warms up every model, then publishes them; a failure ends the process with status 2
  // (after the connections are finished), since a server without its models serves nothing.
  std::thread loader([&] {
    try {
      std::vector<std::shared_ptr<serve::ModelService>> loaded;
      for (const auto& m : config.models) {
        auto s = make_service(m, config, ioc.get_executor(), decoding);
        std::lock_guard lock(services_mutex);
        if (stopping) {
          s->stop();
          return;
        }
        services.push_back(s);
        loaded.push_back(std::move(s));
      }
      api->publish(std::move(loaded), config.default_model);
      std::cerr << "sluice_serve: ready (" << config.models.size() << " model(s))\n";
    } catch (const std::exception& e) {
      std::cerr << "sluice_serve: loading the models failed: " << e.what() << "\n";
      api->fail(e.what());
      boost::asio::post(ioc, [&] {
        exit_code = 2;
        stop_serving();
      });
    }
  });

  // A handler that throws must not end the process: log it and keep serving. (Handlers are written
  // not to throw; this is the last line of defence.)
  auto run = [&] {
    for (;;) {
      try {
        ioc.run();
        return;
      } catch (const std::exception& e) {
        std::cerr << "sluice_serve: error in a handler (serving on): " << e.what() << "\n";
      } catch (...) {
        std::cerr << "sluice_serve: unknown error in a handler (serving on)\n";
      }
    }
  };
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < config.io_threads; ++i) threads.emplace_back(run);
  run();
  for (auto& t : threads) t.join();
  if (grpc_stopper.joinable()) grpc_stopper.join();
#ifdef SLUICE_SERVE_GRPC
  grpc_server.reset();  // calls still open are answered UNAVAILABLE before the models go
#endif
  stop_all();  // a model that finished loading after the stop
  loader.join();
  server.reset();
  api.reset();
  services.clear();  // each Batcher waits for its batches
  std::cerr << "sluice_serve: stopped\n";
  return exit_code;
}
