// JobQueue: durable, at-least-once delivery of jobs to workers, acknowledged only after the job
// is finished. This is what lets a survivor take over a dead node's job: until the ack, the job
// belongs to the queue, and when the consumer that holds it goes away (process death, closed
// connection, this object destroyed) the job becomes deliverable again, flagged as redelivered.
//
// Contract, for every adapter (checked by test/contract/job_queue_contract_test.cc):
// - Thread safe: Publish, Receive, Ack and Requeue may be called from any threads at once.
// - One instance is one consumer session. Its in-flight jobs (received, neither acked nor
//   requeued) are at most `max_in_flight`; Receive waits for an ack while at the limit.
// - Publish returns only once the job is durable: it survives a crash of the publisher, of the
//   consumer, and of the embedded engine's process. kUnavailable: not published, retry.
//   kOutcomeUnknown: maybe published (receivers must tolerate a duplicate, as always).
// - Receive waits at most `wait` and returns std::nullopt if no job came. Jobs of one topic are
//   delivered in publish order, except redeliveries. A job is delivered to one session at a time.
// - Ack is idempotent: acking an already acked delivery succeeds. After Ack the job is gone.
// - Requeue gives the job back untouched for another consumer (used on shutdown, for jobs not
//   started); its next delivery is flagged redelivered.
// - Destroying the session (or the process dying) requeues every in-flight job of the session.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"

namespace clinker::ports {

struct Delivery {
  std::string job_id;  // Stable across redeliveries of the same job.
  std::string topic;
  std::string payload;              // Opaque to the queue; services use JSON.
  bool redelivered = false;         // True if an earlier delivery of this job was not acked.
  std::int64_t delivery_count = 1;  // 1 on the first delivery.
};

class JobQueue {
 public:
  virtual ~JobQueue() = default;

  // Returns the new job's id.
  virtual Result<std::string> Publish(std::string_view topic, std::string_view payload) = 0;

  // Topics this session receives from. Call before Receive; calling again replaces the set.
  virtual Result<void> Subscribe(const std::vector<std::string>& topics) = 0;

  virtual Result<std::optional<Delivery>> Receive(std::chrono::milliseconds wait) = 0;

  virtual Result<void> Ack(const Delivery& delivery) = 0;

  virtual Result<void> Requeue(const Delivery& delivery) = 0;
};

}  // namespace clinker::ports
