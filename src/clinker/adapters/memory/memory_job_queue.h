// MemoryJobQueue: the JobQueue port in process memory, a faithful fake for unit tests and the
// simulator. It keeps every promise of ports/job_queue.h except durability across a crash of the
// process that holds the MemoryBroker (there is no disk).
//
// MemoryBroker is the shared state of one queue "server": topics, ready jobs in publish order and
// in-flight jobs per consumer session. Each MemoryJobQueue is one consumer session on a broker;
// many sessions (one per simulated node, or per test thread) share one broker.
//
// Contract:
// - Thread safe: every method of MemoryJobQueue may be called from any thread at once. All state
//   lives in the broker under one mutex, so operations are atomic across sessions.
// - Blocking: Receive waits on a condition variable (no polling) until a job of a subscribed
//   topic is ready and this session is under max_in_flight, or until `wait` has passed.
//   Publish, Subscribe, Ack and Requeue never block beyond the broker mutex.
// - Order: jobs of one topic are delivered in publish order. A requeued job goes back to its
//   original place (ahead of later jobs), as the SQLite adapter does.
// - Errors: kInvalidArgument for an empty topic, and for Receive before any Subscribe (a caller
//   bug that would otherwise look like an idle queue). Nothing else fails.
// - Ack and Requeue of a delivery this session no longer holds (already acked or requeued, or
//   held by another session) succeed and change nothing: both are idempotent.
// - Destroying a session requeues its in-flight jobs, flagged redelivered, as a consumer crash
//   does with a real engine. No call on that session may be running at that time.
// - Broadcasts: Broadcast copies the message, under the broker mutex, into the inbox of every
//   session listening on the channel at that moment, so delivery is exactly once per listener
//   (the port promises at most once). An inbox holds at most kMaxPendingBroadcasts messages; the
//   oldest are dropped beyond that. ReceiveBroadcasts waits on the broker's condition variable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/job_queue.h"

namespace clinker::adapters {

class MemoryJobQueue;

class MemoryBroker {
 public:
  MemoryBroker() = default;
  ~MemoryBroker() = default;
  MemoryBroker(const MemoryBroker&) = delete;
  MemoryBroker& operator=(const MemoryBroker&) = delete;

  // Introspection for tests and the simulator's invariant checkers.
  std::size_t ReadyCount(std::string_view topic) const;
  std::size_t InFlightCount() const;

  // Unread broadcasts a session keeps; older ones are dropped first.
  static constexpr std::size_t kMaxPendingBroadcasts = 1000;

 private:
  friend class MemoryJobQueue;

  struct Job {
    std::string id;
    std::string topic;
    std::string payload;
    bool redelivered = false;
    std::int64_t delivery_count = 0;  // Deliveries so far.
  };

  // Ready jobs of one topic by publish sequence: the smallest key is the oldest job.
  using ReadyJobs = std::map<std::uint64_t, Job>;
  // In-flight jobs of one session by job id, with their publish sequence kept for requeueing.
  using InFlightJobs = std::map<std::string, std::pair<std::uint64_t, Job>, std::less<>>;

  mutable std::mutex mutex_;
  // Notified on every change that could let a waiting Receive proceed: a publish, a requeue, an
  // ack (frees an in-flight slot) or a session's end.
  std::condition_variable changed_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t next_session_ = 1;
  std::map<std::string, ReadyJobs, std::less<>> ready_;
  std::map<std::uint64_t, InFlightJobs> in_flight_;

  struct Listener {
    std::vector<std::string> channels;
    std::deque<ports::BroadcastMessage> inbox;
  };

  // Listening sessions by session number; a session is here from its first Listen to its end.
  std::map<std::uint64_t, Listener> listeners_;
};

class MemoryJobQueue final : public ports::JobQueue {
 public:
  struct Options {
    int max_in_flight = 4;  // At least 1.
  };

  explicit MemoryJobQueue(std::shared_ptr<MemoryBroker> broker);
  MemoryJobQueue(std::shared_ptr<MemoryBroker> broker, Options options);
  MemoryJobQueue(const MemoryJobQueue&) = delete;
  MemoryJobQueue& operator=(const MemoryJobQueue&) = delete;
  ~MemoryJobQueue() override;

  Result<std::string> Publish(std::string_view topic, std::string_view payload) override;
  Result<void> Subscribe(const std::vector<std::string>& topics) override;
  Result<std::optional<ports::Delivery>> Receive(std::chrono::milliseconds wait) override;
  Result<void> Ack(const ports::Delivery& delivery) override;
  Result<void> Requeue(const ports::Delivery& delivery) override;
  Result<void> Broadcast(std::string_view channel, std::string_view payload) override;
  Result<void> Listen(const std::vector<std::string>& channels) override;
  Result<std::vector<ports::BroadcastMessage>> ReceiveBroadcasts(
      std::chrono::milliseconds wait) override;

 private:
  // Under broker_->mutex_: takes the oldest ready job of the subscribed topics, if any.
  std::optional<ports::Delivery> TryClaimLocked();

  std::shared_ptr<MemoryBroker> broker_;
  Options options_;
  std::uint64_t session_;
  // Guarded by broker_->mutex_. Unset until the first Subscribe.
  std::optional<std::vector<std::string>> topics_;
};

}  // namespace clinker::adapters
