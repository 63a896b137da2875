#include "clinker/adapters/memory/memory_job_queue.h"

#include <algorithm>
#include <utility>

#include "clinker/core/assert.h"
#include "clinker/core/uuid.h"

namespace clinker::adapters {

std::size_t MemoryBroker::ReadyCount(std::string_view topic) const {
  std::lock_guard lock(mutex_);
  auto it = ready_.find(topic);
  return it == ready_.end() ? 0 : it->second.size();
}

std::size_t MemoryBroker::InFlightCount() const {
  std::lock_guard lock(mutex_);
  std::size_t count = 0;
  for (const auto& [session, jobs] : in_flight_) {
    count += jobs.size();
  }
  return count;
}

MemoryJobQueue::MemoryJobQueue(std::shared_ptr<MemoryBroker> broker)
    : MemoryJobQueue(std::move(broker), Options{}) {}

MemoryJobQueue::MemoryJobQueue(std::shared_ptr<MemoryBroker> broker, Options options)
    : broker_(std::move(broker)), options_(options) {
  CLINKER_ASSERT(broker_ != nullptr, "a session needs a broker");
  CLINKER_ASSERT(options_.max_in_flight >= 1, "a session must be able to hold one job");
  std::lock_guard lock(broker_->mutex_);
  session_ = broker_->next_session_++;
  broker_->in_flight_[session_];
}

MemoryJobQueue::~MemoryJobQueue() {
  std::lock_guard lock(broker_->mutex_);
  auto it = broker_->in_flight_.find(session_);
  CLINKER_ASSERT(it != broker_->in_flight_.end(), "a live session has an in-flight entry");
  for (auto& [job_id, entry] : it->second) {
    auto& [seq, job] = entry;
    job.redelivered = true;
    broker_->ready_[job.topic].emplace(seq, std::move(job));
  }
  broker_->in_flight_.erase(it);
  broker_->listeners_.erase(session_);
  broker_->changed_.notify_all();
}

Result<std::string> MemoryJobQueue::Publish(std::string_view topic, std::string_view payload) {
  if (topic.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "job topic is empty");
  }
  MemoryBroker::Job job{
      .id = NewUuid(),
      .topic = std::string(topic),
      .payload = std::string(payload),
  };
  std::string id = job.id;
  std::lock_guard lock(broker_->mutex_);
  std::uint64_t seq = broker_->next_seq_++;
  broker_->ready_[job.topic].emplace(seq, std::move(job));
  broker_->changed_.notify_all();
  return id;
}

Result<void> MemoryJobQueue::Subscribe(const std::vector<std::string>& topics) {
  for (const std::string& topic : topics) {
    if (topic.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "subscribed topic is empty");
    }
  }
  std::lock_guard lock(broker_->mutex_);
  topics_ = topics;
  // A Receive already waiting must look at the new topics.
  broker_->changed_.notify_all();
  return {};
}

std::optional<ports::Delivery> MemoryJobQueue::TryClaimLocked() {
  auto& mine = broker_->in_flight_[session_];
  if (mine.size() >= static_cast<std::size_t>(options_.max_in_flight)) {
    return std::nullopt;
  }
  // The oldest ready job across the subscribed topics.
  MemoryBroker::ReadyJobs* oldest_topic = nullptr;
  for (const std::string& topic : *topics_) {
    auto it = broker_->ready_.find(topic);
    if (it == broker_->ready_.end() || it->second.empty()) {
      continue;
    }
    if (oldest_topic == nullptr || it->second.begin()->first < oldest_topic->begin()->first) {
      oldest_topic = &it->second;
    }
  }
  if (oldest_topic == nullptr) {
    return std::nullopt;
  }
  auto node = oldest_topic->extract(oldest_topic->begin());
  std::uint64_t seq = node.key();
  MemoryBroker::Job& job = node.mapped();
  job.delivery_count += 1;
  ports::Delivery delivery{
      .job_id = job.id,
      .topic = job.topic,
      .payload = job.payload,
      .redelivered = job.redelivered,
      .delivery_count = job.delivery_count,
  };
  std::string id = job.id;
  mine.emplace(std::move(id), std::make_pair(seq, std::move(job)));
  return delivery;
}

Result<std::optional<ports::Delivery>> MemoryJobQueue::Receive(std::chrono::milliseconds wait) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_lock lock(broker_->mutex_);
  if (!topics_.has_value()) {
    return MakeError(ErrorCode::kInvalidArgument, "Receive before Subscribe");
  }
  while (true) {
    if (auto delivery = TryClaimLocked()) {
      return delivery;
    }
    if (broker_->changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      // One last look: a change may have landed together with the timeout.
      return TryClaimLocked();
    }
  }
}

Result<void> MemoryJobQueue::Ack(const ports::Delivery& delivery) {
  std::lock_guard lock(broker_->mutex_);
  if (broker_->in_flight_[session_].erase(delivery.job_id) > 0) {
    // A Receive of this session may be waiting for a free slot.
    broker_->changed_.notify_all();
  }
  return {};
}

Result<void> MemoryJobQueue::Requeue(const ports::Delivery& delivery) {
  std::lock_guard lock(broker_->mutex_);
  auto& mine = broker_->in_flight_[session_];
  auto node = mine.extract(delivery.job_id);
  if (node.empty()) {
    return {};
  }
  auto& [seq, job] = node.mapped();
  job.redelivered = true;
  broker_->ready_[job.topic].emplace(seq, std::move(job));
  broker_->changed_.notify_all();
  return {};
}

Result<void> MemoryJobQueue::Broadcast(std::string_view channel, std::string_view payload) {
  if (channel.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "broadcast channel is empty");
  }
  std::lock_guard lock(broker_->mutex_);
  bool delivered = false;
  for (auto& [session, listener] : broker_->listeners_) {
    if (std::find(listener.channels.begin(), listener.channels.end(), channel) ==
        listener.channels.end()) {
      continue;
    }
    if (listener.inbox.size() >= MemoryBroker::kMaxPendingBroadcasts) {
      listener.inbox.pop_front();
    }
    listener.inbox.push_back(
        ports::BroadcastMessage{.channel = std::string(channel), .payload = std::string(payload)});
    delivered = true;
  }
  if (delivered) {
    broker_->changed_.notify_all();
  }
  return {};
}

Result<void> MemoryJobQueue::Listen(const std::vector<std::string>& channels) {
  for (const std::string& channel : channels) {
    if (channel.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "listened channel is empty");
    }
  }
  std::lock_guard lock(broker_->mutex_);
  broker_->listeners_[session_].channels = channels;
  return {};
}

Result<std::vector<ports::BroadcastMessage>> MemoryJobQueue::ReceiveBroadcasts(
    std::chrono::milliseconds wait) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_lock lock(broker_->mutex_);
  auto it = broker_->listeners_.find(session_);
  if (it == broker_->listeners_.end()) {
    return MakeError(ErrorCode::kInvalidArgument, "ReceiveBroadcasts before Listen");
  }
  // The entry lives until this session's destructor, which no running call may overlap.
  MemoryBroker::Listener& listener = it->second;
  broker_->changed_.wait_until(lock, deadline, [&] { return !listener.inbox.empty(); });
  std::vector<ports::BroadcastMessage> messages(std::make_move_iterator(listener.inbox.begin()),
                                                std::make_move_iterator(listener.inbox.end()));
  listener.inbox.clear();
  return messages;
}

}  // namespace clinker::adapters
