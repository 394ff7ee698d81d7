// sluice/batching/batch_former.hpp: batch formation as a sans-io state machine. It holds the queue
// (priority levels, batch keys, deadlines, a bound), asks the controller whether to dispatch, and
// answers "this batch now", "these items expired/were shed", and "wake me at t". No Asio, no
// threads, no clock of its own: every call gets `now`, so tests drive it with a manual clock.
// The Batcher wraps it in one mutex and turns its answers into lane work and timer waits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "sluice/core/batch_controller.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice::batching {

/// The rules of formation. `slots` is how many batches may be in flight at once (the lanes).
struct FormerConfig {
  std::size_t max_batch_size = 1;
  std::vector<std::size_t> preferred_batch_sizes;  ///< ascending, each in [1, max_batch_size]
  Duration max_queue_delay{};
  std::size_t max_queue_size = 1024;
  std::size_t priority_levels = 1;  ///< priorities 0 .. levels-1; higher is served first
  std::size_t slots = 1;

  /// Throws sluice::Error(invalid_argument) naming the first bad field.
  void validate() const {
    auto bad = [](const char* what) { throw Error(errc::invalid_argument, what); };
    if (max_batch_size == 0) bad("max_batch_size must be >= 1");
    if (max_queue_size == 0) bad("max_queue_size must be >= 1");
    if (max_queue_size >= (std::size_t{1} << 31)) bad("max_queue_size must be < 2^31");
    if (priority_levels == 0 || priority_levels > 256) bad("priority_levels must be in [1, 256]");
    if (slots == 0) bad("lanes must be >= 1");
    if (max_queue_delay < Duration::zero()) bad("max_queue_delay must be >= 0");
    for (std::size_t i = 0; i < preferred_batch_sizes.size(); ++i) {
      const std::size_t s = preferred_batch_sizes[i];
      if (s == 0 || s > max_batch_size) bad("preferred_batch_sizes must lie in [1, max_batch_size]");
      if (i > 0 && s <= preferred_batch_sizes[i - 1]) bad("preferred_batch_sizes must be strictly ascending");
    }
  }
};

/// Names a queued item: slot index (low 32 bits) and generation (high 32 bits). 0 is never an id.
using ItemId = std::uint64_t;

template <class Payload>
struct QueuedItem {
  ItemId id = 0;
  std::uint64_t key = 0;
  std::size_t priority = 0;
  TimePoint arrival{};
  TimePoint deadline = kNever;
  Payload payload{};
};

/// Items of one batch key, in dispatch order (priority, then arrival).
template <class Payload>
struct FormedBatch {
  std::uint64_t key = 0;
  std::vector<QueuedItem<Payload>> items;
};

template <class Payload, BatchController Controller>
class BatchFormer {
 public:
  using Item = QueuedItem<Payload>;
  using Batch = FormedBatch<Payload>;

  struct Admission {
    std::error_code ec;             ///< empty when queued
    ItemId id = 0;                  ///< valid when queued
    bool by_controller = false;     ///< queue_full came from AdmittingController::admit
    explicit operator bool() const { return !ec; }
  };

  BatchFormer(FormerConfig config, Controller& controller) : config_(std::move(config)), controller_(&controller) {
    config_.validate();
    deadlines_.reserve(config_.max_batch_size);
  }

  const FormerConfig& config() const { return config_; }
  Controller& controller() { return *controller_; }

  /// Queues an item. On success the payload is moved in; on failure it is left with the caller and
  /// the error says why: invalid_argument (priority out of range), deadline_exceeded (deadline not
  /// after now), queue_full (bound reached, or the controller's admission refused).
  Admission push(Payload& payload, std::uint64_t key, std::size_t priority, TimePoint deadline, TimePoint now) {
    if (priority >= config_.priority_levels) return {make_error_code(errc::invalid_argument)};
    if (deadline <= now) return {make_error_code(errc::deadline_exceeded)};
    if (total_ >= config_.max_queue_size) return {make_error_code(errc::queue_full)};
    const std::uint32_t ks = find_or_add_key(key);
    if constexpr (AdmittingController<Controller>) {
      const QueueState q = state_for(ks);
      if (!controller_->admit(q, deadline, now)) {
        release_key_if_empty(ks);
        return {make_error_code(errc::queue_full), 0, true};
      }
    }
    const std::uint32_t n = alloc_node();
    Node& node = nodes_[n];
    node.payload.emplace(std::move(payload));
    node.key = key;
    node.key_slot = ks;
    node.seq = next_seq_++;
    node.arrival = now;
    node.deadline = deadline;
    node.priority = static_cast<std::uint16_t>(priority);
    node.queued = true;
    link_tail(ks, n);
    if (deadline != kNever) heap_push(n);
    ++total_;
    return {{}, make_id(n)};
  }

  /// Room for `n` more items (the Batcher admits a multi-item request all or nothing).
  bool has_room(std::size_t n) const { return total_ + n <= config_.max_queue_size; }

  /// Removes a queued item. Empty when it is not queued (unknown, dispatched, expired, cancelled).
  std::optional<Item> cancel(ItemId id) {
    const auto n = static_cast<std::uint32_t>(id & 0xffffffffu);
    const auto gen = static_cast<std::uint32_t>(id >> 32);
    if (n >= nodes_.size() || nodes_[n].generation != gen || !nodes_[n].queued) return std::nullopt;
    return take(n);
  }

  /// Moves every item whose deadline is at or before `now` into `out` (to complete with
  /// deadline_exceeded at this moment).
  void expire(TimePoint now, std::vector<Item>& out) {
    while (!heap_.empty() && nodes_[heap_.front()].deadline <= now) out.push_back(take(heap_.front()));
  }

  /// Forms at most one batch: when a slot is free and the controller (or a rule below) says go.
  /// Items the controller sheds are moved into `shed`. Returns true with `out` filled; the caller
  /// must call release_slot() once that batch has run. Dispatches without the controller's consent
  /// when waiting cannot help: the key has max_batch_size items, the queue is full (nothing can
  /// join), the Batcher is flushing (stopped, draining), or the wait would pass a deadline.
  bool next_batch(TimePoint now, Batch& out, std::vector<Item>& shed) {
    out.items.clear();
    controller_wake_ = kNever;
    if (busy_ >= config_.slots || total_ == 0) return false;
    std::uint32_t ks = head_key();
    QueueState q = state_for(ks);
    Decision d = controller_->decide(q, now);
    // Shedding changes the queue: ask again (a few rounds at most; a controller that keeps
    // shedding only drops items that have deadlines, so this ends).
    for (int round = 0; round < 4 && d.shed_deadline_before != TimePoint::min(); ++round) {
      const std::size_t before = shed.size();
      while (!heap_.empty() && nodes_[heap_.front()].deadline < d.shed_deadline_before)
        shed.push_back(take(heap_.front()));
      if (shed.size() == before) break;
      if (total_ == 0) return false;
      ks = head_key();
      q = state_for(ks);
      d = controller_->decide(q, now);
    }
    std::size_t n = d.dispatch;
    if (n == 0) {
      const bool cannot_grow = q.queued >= q.max_batch_size || total_ >= config_.max_queue_size || flush_;
      const bool too_late =
          d.wait_until <= now || (q.earliest_deadline != kNever && d.wait_until >= q.earliest_deadline);
      if (cannot_grow || too_late) {
        n = q.queued;
      } else {
        controller_wake_ = d.wait_until;
        return false;
      }
    }
    n = std::clamp<std::size_t>(n, 1, std::min(q.queued, q.max_batch_size));
    out.key = keys_[ks].key;
    out.items.reserve(n);
    for (std::size_t level = config_.priority_levels; level-- > 0 && out.items.size() < n;) {
      while (out.items.size() < n && keys_[ks].levels[level].head != kNone)
        out.items.push_back(take(keys_[ks].levels[level].head));
    }
    ++busy_;
    return true;
  }

  /// A batch formed by next_batch() has finished running (its slot may form the next one).
  void release_slot() {
    if (busy_ > 0) --busy_;
  }

  /// Flushing: no more arrivals are expected (a draining stop), so nothing waits for company.
  void set_flush(bool flush) { flush_ = flush; }
  bool flushing() const { return flush_; }

  /// When to call again at the latest: the controller's wait (from the last next_batch that
  /// returned false) or the earliest queued deadline, whichever is first; kNever if neither.
  TimePoint next_wakeup() const {
    const TimePoint d = heap_.empty() ? kNever : nodes_[heap_.front()].deadline;
    return std::min(d, controller_wake_);
  }

  std::size_t size() const { return total_; }
  bool empty() const { return total_ == 0; }
  std::size_t busy_slots() const { return busy_; }
  std::size_t free_slots() const { return config_.slots - std::min(busy_, config_.slots); }
  /// Items queued under `key`.
  std::size_t size(std::uint64_t key) const {
    for (const KeySlot& k : keys_)
      if (k.active && k.key == key) return k.count;
    return 0;
  }

  /// Moves every queued item into `out` (a cancelling stop), in no particular order.
  void drain_all(std::vector<Item>& out) {
    for (std::uint32_t n = 0; n < nodes_.size(); ++n)
      if (nodes_[n].queued) out.push_back(take(n));
  }

  /// Changes the largest batch (e.g. a memory-derived cap). Clamped to >= 1.
  void set_max_batch_size(std::size_t n) { config_.max_batch_size = std::max<std::size_t>(1, n); }

 private:
  static constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

  struct Node {
    std::optional<Payload> payload;
    std::uint64_t key = 0;
    std::uint64_t seq = 0;
    TimePoint arrival{};
    TimePoint deadline = kNever;
    std::uint32_t generation = 1;
    std::uint32_t prev = kNone;
    std::uint32_t next = kNone;  ///< also the free-list link
    std::uint32_t heap_pos = kNone;
    std::uint32_t key_slot = 0;
    std::uint16_t priority = 0;
    bool queued = false;
  };
  struct List {
    std::uint32_t head = kNone;
    std::uint32_t tail = kNone;
  };
  struct KeySlot {
    std::uint64_t key = 0;
    std::size_t count = 0;
    bool active = false;
    std::vector<List> levels;
  };

  ItemId make_id(std::uint32_t n) const { return (ItemId{nodes_[n].generation} << 32) | n; }

  std::uint32_t alloc_node() {
    if (free_ != kNone) {
      const std::uint32_t n = free_;
      free_ = nodes_[n].next;
      nodes_[n].next = kNone;
      return n;
    }
    nodes_.emplace_back();
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }

  /// Unlinks a queued node, returns its item and recycles the node.
  Item take(std::uint32_t n) {
    Node& node = nodes_[n];
    KeySlot& ks = keys_[node.key_slot];
    List& list = ks.levels[node.priority];
    if (node.prev != kNone) nodes_[node.prev].next = node.next; else list.head = node.next;
    if (node.next != kNone) nodes_[node.next].prev = node.prev; else list.tail = node.prev;
    if (node.heap_pos != kNone) heap_erase(node.heap_pos);
    --ks.count;
    --total_;
    Item item{make_id(n), node.key, node.priority, node.arrival, node.deadline, std::move(*node.payload)};
    node.payload.reset();
    node.queued = false;
    node.prev = kNone;
    ++node.generation;
    if (node.generation == 0) node.generation = 1;
    node.next = free_;
    free_ = n;
    release_key_if_empty(node.key_slot);
    return item;
  }

  void link_tail(std::uint32_t ks, std::uint32_t n) {
    List& list = keys_[ks].levels[nodes_[n].priority];
    nodes_[n].prev = list.tail;
    nodes_[n].next = kNone;
    if (list.tail != kNone) nodes_[list.tail].next = n; else list.head = n;
    list.tail = n;
    ++keys_[ks].count;
  }

  std::uint32_t find_or_add_key(std::uint64_t key) {
    if (last_key_ < keys_.size() && keys_[last_key_].active && keys_[last_key_].key == key) return last_key_;
    std::uint32_t free_slot = kNone;
    for (std::uint32_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i].active && keys_[i].key == key) return last_key_ = i;
      if (!keys_[i].active && free_slot == kNone) free_slot = i;
    }
    if (free_slot == kNone) {
      keys_.emplace_back();
      free_slot = static_cast<std::uint32_t>(keys_.size() - 1);
    }
    KeySlot& k = keys_[free_slot];
    k.key = key;
    k.count = 0;
    k.active = true;
    k.levels.assign(config_.priority_levels, List{});
    return last_key_ = free_slot;
  }

  /// A few keys stay active while empty (no churn for the common one-key case); beyond that,
  /// empty keys give their slot back so that a stream of distinct keys cannot grow the scan.
  void release_key_if_empty(std::uint32_t ks) {
    if (keys_[ks].count == 0 && keys_.size() > 8) keys_[ks].active = false;
  }

  /// The key of the next batch: of the highest-priority level that has items, the key whose head
  /// arrived first.
  std::uint32_t head_key() const {
    for (std::size_t level = config_.priority_levels; level-- > 0;) {
      std::uint32_t best = kNone;
      std::uint64_t best_seq = 0;
      for (std::uint32_t i = 0; i < keys_.size(); ++i) {
        if (!keys_[i].active) continue;
        const std::uint32_t h = keys_[i].levels[level].head;
        if (h != kNone && (best == kNone || nodes_[h].seq < best_seq)) {
          best = i;
          best_seq = nodes_[h].seq;
        }
      }
      if (best != kNone) return best;
    }
    return 0;  // unreachable while total_ > 0
  }

  /// What the controller sees for one key: its count, its oldest arrival, the deadlines of the
  /// items the next batch would take, the lanes.
  QueueState state_for(std::uint32_t ks) {
    const KeySlot& k = keys_[ks];
    QueueState q;
    q.queued = k.count;
    q.total_queued = total_;
    q.max_batch_size = config_.max_batch_size;
    q.preferred_batch_sizes = config_.preferred_batch_sizes;
    q.max_queue_delay = config_.max_queue_delay;
    q.idle_lanes = free_slots();
    q.busy_lanes = busy_;
    q.key = k.key;
    deadlines_.clear();
    const std::size_t want = std::min(k.count, config_.max_batch_size);
    for (std::size_t level = config_.priority_levels; level-- > 0;) {
      const std::uint32_t h = k.levels[level].head;
      if (h != kNone) q.oldest_arrival = std::min(q.oldest_arrival, nodes_[h].arrival);
      for (std::uint32_t n = h; n != kNone && deadlines_.size() < want; n = nodes_[n].next) {
        deadlines_.push_back(nodes_[n].deadline);
        q.earliest_deadline = std::min(q.earliest_deadline, nodes_[n].deadline);
      }
    }
    q.deadlines = deadlines_;
    return q;
  }

  // ---- a binary min-heap of node indices by (deadline, seq), with positions kept in the nodes ----
  bool heap_less(std::uint32_t a, std::uint32_t b) const {
    const Node& x = nodes_[a];
    const Node& y = nodes_[b];
    return x.deadline < y.deadline || (x.deadline == y.deadline && x.seq < y.seq);
  }
  void heap_set(std::size_t pos, std::uint32_t n) {
    heap_[pos] = n;
    nodes_[n].heap_pos = static_cast<std::uint32_t>(pos);
  }
  void heap_up(std::size_t pos) {
    const std::uint32_t n = heap_[pos];
    while (pos > 0) {
      const std::size_t parent = (pos - 1) / 2;
      if (!heap_less(n, heap_[parent])) break;
      heap_set(pos, heap_[parent]);
      pos = parent;
    }
    heap_set(pos, n);
  }
  void heap_down(std::size_t pos) {
    const std::uint32_t n = heap_[pos];
    const std::size_t size = heap_.size();
    for (;;) {
      std::size_t child = 2 * pos + 1;
      if (child >= size) break;
      if (child + 1 < size && heap_less(heap_[child + 1], heap_[child])) ++child;
      if (!heap_less(heap_[child], n)) break;
      heap_set(pos, heap_[child]);
      pos = child;
    }
    heap_set(pos, n);
  }
  void heap_push(std::uint32_t n) {
    heap_.push_back(n);
    heap_up(heap_.size() - 1);
  }
  void heap_erase(std::uint32_t pos) {
    const std::uint32_t removed = heap_[pos];
    const std::uint32_t last = heap_.back();
    heap_.pop_back();
    nodes_[removed].heap_pos = kNone;
    if (pos < heap_.size()) {
      heap_set(pos, last);
      heap_up(pos);
      heap_down(nodes_[last].heap_pos);
    }
  }

  FormerConfig config_;
  Controller* controller_;
  std::vector<Node> nodes_;
  std::uint32_t free_ = kNone;
  std::vector<KeySlot> keys_;
  std::uint32_t last_key_ = kNone;
  std::vector<std::uint32_t> heap_;
  std::vector<TimePoint> deadlines_;
  std::uint64_t next_seq_ = 0;
  std::size_t total_ = 0;
  std::size_t busy_ = 0;
  bool flush_ = false;
  TimePoint controller_wake_ = kNever;
};

}  // namespace sluice::batching
