// RecordingJobQueue: a JobQueue decorator for service tests. It forwards every call to a real
// session and remembers the topic of every successful publish, so a test can say "no job at all
// was published", not only "none on the topic I looked at". Thread safe as the session it wraps.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/ports/job_queue.h"

namespace clinker::test_support {

class RecordingJobQueue final : public clinker::ports::JobQueue {
 public:
  explicit RecordingJobQueue(clinker::ports::JobQueue& inner) : inner_(inner) {}

  clinker::Result<std::string> Publish(std::string_view topic, std::string_view payload) override {
    clinker::Result<std::string> published = inner_.Publish(topic, payload);
    if (published) {
      std::lock_guard<std::mutex> lock(mutex_);
      topics_.emplace_back(topic);
    }
    return published;
  }

  clinker::Result<void> Subscribe(const std::vector<std::string>& topics) override {
    return inner_.Subscribe(topics);
  }

  clinker::Result<std::optional<clinker::ports::Delivery>> Receive(
      std::chrono::milliseconds wait) override {
    return inner_.Receive(wait);
  }

  clinker::Result<void> Ack(const clinker::ports::Delivery& delivery) override {
    return inner_.Ack(delivery);
  }

  clinker::Result<void> Requeue(const clinker::ports::Delivery& delivery) override {
    return inner_.Requeue(delivery);
  }

  clinker::Result<void> Broadcast(std::string_view channel, std::string_view payload) override {
    return inner_.Broadcast(channel, payload);
  }

  clinker::Result<void> Listen(const std::vector<std::string>& channels) override {
    return inner_.Listen(channels);
  }

  clinker::Result<std::vector<clinker::ports::BroadcastMessage>> ReceiveBroadcasts(
      std::chrono::milliseconds wait) override {
    return inner_.ReceiveBroadcasts(wait);
  }

  std::vector<std::string> PublishedTopics() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return topics_;
  }

 private:
  clinker::ports::JobQueue& inner_;
  mutable std::mutex mutex_;
  std::vector<std::string> topics_;
};

}  // namespace clinker::test_support
