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
//
// Broadcasts: a second, separate channel for small, periodic, replaceable messages (a volume
// service's capability report to every scheduler, as Cinder's scheduler fanout). A broadcast is
// not a job: it is never acked, never redelivered and never durable, because the next report
// replaces a lost one and a restarted listener only needs the reports sent after it starts.
// - Thread safe: Broadcast, Listen and ReceiveBroadcasts may be called from any threads at once,
//   also alongside the job methods, which they never disturb (a broadcast is never a Delivery
//   and a job never a BroadcastMessage, even on a channel and a topic of the same name).
// - Broadcast is best effort, at most once to every session listening on the channel at that
//   time: each listening session gets the message once, in send order per sender and channel.
//   A message sent before a session's Listen is not guaranteed to reach it. Success means handed
//   to the engine, not received. kInvalidArgument: empty channel. kUnavailable: not sent.
// - Listen sets the channels this session listens on (calling again replaces the set; an empty
//   set stops listening). It does not Subscribe to jobs, and Subscribe does not Listen.
// - ReceiveBroadcasts returns what arrived since its last call (possibly nothing), waiting up to
//   `wait` for a first message when none is there. Before any Listen: kInvalidArgument. Unread
//   messages are kept in a bounded way (each adapter says how); beyond it the oldest are lost.
// - The defaults below fail with kInvalidArgument; the three adapters override them, and so
//   must any decorator that should pass broadcasts through.
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

struct BroadcastMessage {
  std::string channel;
  std::string payload;  // Opaque to the queue; services use JSON.
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

  // Broadcast channel (see the contract above).
  virtual Result<void> Broadcast(std::string_view channel, std::string_view payload) = 0;
  virtual Result<void> Listen(const std::vector<std::string>& channels) = 0;
  virtual Result<std::vector<BroadcastMessage>> ReceiveBroadcasts(
      std::chrono::milliseconds wait) = 0;
};

}  // namespace clinker::ports
