// sluice/serve/fair_pool.hpp: a bounded thread pool that serves groups of tasks round-robin. The
// server decodes each request's images as one group, so a request with eight huge images takes
// turns with a request of one small image instead of making it wait behind all eight: a client's
// wait for a decode thread is bounded by one task of each other active group, not by their totals.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace sluice::serve {

class FairPool {
 public:
  using Task = std::function<void()>;

  explicit FairPool(std::size_t threads) {
    if (threads == 0) threads = 1;
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  FairPool(const FairPool&) = delete;
  FairPool& operator=(const FairPool&) = delete;

  /// Runs the queued tasks, then joins the threads.
  ~FairPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  /// Queues one group; its tasks start in order, taking turns with the other groups' tasks. Tasks
  /// must not throw (an escaping exception would end the process).
  void post_group(std::vector<Task> tasks) {
    if (tasks.empty()) return;
    {
      std::lock_guard lock(mutex_);
      groups_.emplace_back(std::make_move_iterator(tasks.begin()), std::make_move_iterator(tasks.end()));
    }
    wake_.notify_all();
  }

  /// Tasks queued and not yet started.
  std::size_t queued() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& g : groups_) n += g.size();
    return n;
  }

 private:
  void work() {
    for (;;) {
      Task task;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !groups_.empty(); });
        if (groups_.empty()) return;  // stopping, and nothing left to run
        // Take the front group's next task and send the group to the back of the line.
        auto group = groups_.begin();
        task = std::move(group->front());
        group->pop_front();
        if (group->empty()) groups_.erase(group);
        else groups_.splice(groups_.end(), groups_, group);
      }
      task();
    }
  }

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::list<std::deque<Task>> groups_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace sluice::serve
