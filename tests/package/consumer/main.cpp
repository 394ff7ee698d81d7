// The installed headers are enough to batch requests: a tiny model through sluice::Batcher.
#include <sluice/batching/batcher.hpp>
#include <sluice/control/fixed_batch.hpp>
#include <sluice/sluice.hpp>

#include <boost/asio/use_future.hpp>

#include <cstdio>
#include <span>
#include <string>
#include <vector>

struct Length {
  using request_type = std::string;
  using response_type = std::size_t;
  void run(std::span<const std::string> in, std::span<std::size_t> out) {
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = in[i].size();
  }
};

int main() {
  Length model;
  sluice::Batcher<Length, sluice::control::FixedBatch> batcher(model, sluice::BatcherConfig{});
  const std::size_t a = batcher.submit("four");
  std::vector<std::string> many{"a", "bb", "ccc"};
  auto f = batcher.async_submit_many(many, sluice::SubmitOptions{}, boost::asio::use_future);
  auto [ec, sizes] = f.get();
  if (a != 4 || ec || sizes != std::vector<std::size_t>{1, 2, 3}) {
    std::printf("sluice consumer: wrong results\n");
    return 1;
  }
  std::printf("sluice consumer: ok\n");
  return 0;
}
