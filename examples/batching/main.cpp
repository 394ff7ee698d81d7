// sluice_batching_example: the complete example of docs/batching.md. A toy model that scores
// sentences, batched by sentence length; requests with callbacks, a future, a deadline,
// priorities, a multi-item request; then the metrics in Prometheus text and a draining stop.
#include <sluice/batching/batcher.hpp>
#include <sluice/control/fixed_batch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <span>
#include <string>
#include <thread>
#include <vector>

// 1. The model: request and response types, and a run over a whole batch.
struct SentenceScorer {
  using request_type = std::string;
  using response_type = double;

  // Optional: requests with different keys never share a batch (here: padded length class).
  std::uint64_t batch_key(const std::string& s) const { return s.size() / 16; }

  void run(std::span<const std::string> in, std::span<double> out) {
    std::this_thread::sleep_for(std::chrono::microseconds(200 + 20 * in.size()));  // "the device"
    for (std::size_t i = 0; i < in.size(); ++i) {
      double vowels = 0;
      for (char c : in[i]) vowels += (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u');
      out[i] = in[i].empty() ? 0.0 : vowels / static_cast<double>(in[i].size());
    }
  }
};

int main() {
  using namespace std::chrono_literals;
  boost::asio::io_context io;  // completions and timers run here
  auto work = boost::asio::make_work_guard(io);  // keep it running between requests

  // 2. The Batcher: up to 8 per batch, wait at most 2 ms for company, 2 priority levels.
  SentenceScorer model;
  sluice::BatcherConfig config;
  config.max_batch_size = 8;
  config.max_queue_delay = 2ms;
  config.max_queue_size = 1024;
  config.priority_levels = 2;
  config.model_name = "sentence_scorer";
  sluice::Batcher<SentenceScorer, sluice::control::FixedBatch> batcher(io.get_executor(), model, config);

  // 3. Callbacks: void(std::error_code, response).
  int answered = 0;
  for (const char* s : {"the quick brown fox", "jumps over", "the lazy dog", "sluice"}) {
    batcher.async_submit(s, sluice::SubmitOptions{}, [&answered, s](std::error_code ec, double score) {
      ++answered;
      if (ec) {
        std::printf("%-22s -> error: %s\n", s, ec.message().c_str());
      } else {
        std::printf("%-22s -> %.3f\n", s, score);
      }
    });
  }

  // 4. A high-priority request with a deadline.
  sluice::SubmitOptions urgent;
  urgent.priority = 1;
  urgent.timeout = 50ms;
  batcher.async_submit("urgent and important", urgent, [&answered](std::error_code ec, double score) {
    ++answered;
    std::printf("urgent                 -> %s %.3f\n", ec ? ec.message().c_str() : "ok", score);
  });

  // 5. A request of several items: split across batches, answered in order.
  std::vector<std::string> document{"a", "document", "of", "several", "sentences", "in", "one", "request", "!"};
  batcher.async_submit_many(document, sluice::SubmitOptions{},
                            [&answered](std::error_code ec, std::vector<double> scores) {
                              ++answered;
                              std::printf("document (%zu items)   -> %s, first %.3f last %.3f\n", scores.size(),
                                          ec ? ec.message().c_str() : "ok", scores.front(), scores.back());
                            });

  // Run the completions until the six answers are in.
  while (answered < 6) io.run_one();

  // 6. From another thread: a future (the result is a tuple: Asio only turns
  //    boost::system::error_code into exceptions) and the blocking call, which throws sluice::Error.
  //    The executor must keep running meanwhile: the max_queue_delay timer lives there.
  std::atomic<bool> client_done{false};
  std::thread client([&] {
    auto [ec, score] = batcher.async_submit("from a future", sluice::SubmitOptions{}, boost::asio::use_future).get();
    std::printf("future                 -> %s %.3f\n", ec ? ec.message().c_str() : "ok", score);
    std::printf("blocking               -> %.3f\n", batcher.submit("blocking call"));
    client_done = true;
  });
  while (!client_done) io.run_one_for(10ms);
  client.join();

  // 7. Metrics, then a draining stop: queued work finishes, new work is refused.
  batcher.stop(sluice::StopMode::drain);
  batcher.wait_idle();
  const std::string metrics = batcher.render_prometheus();
  std::printf("\nmetrics (counts and totals of %zu bytes of Prometheus text):\n", metrics.size());
  for (std::size_t at = 0, end; at < metrics.size(); at = end + 1) {
    end = metrics.find('\n', at);
    const std::string line = metrics.substr(at, end - at);
    if (line.find("_count{") != std::string::npos || line.find("completions_total") != std::string::npos)
      std::printf("  %s\n", line.c_str());
  }
  work.reset();
  return 0;
}
