// RabbitMqJobQueue: the JobQueue port on a RabbitMQ broker (3.10+), for deployments where
// several nodes share one job queue over the network.
//
// How it keeps the port's promises:
// - Durability: each topic is a durable quorum queue of the same name (declared idempotently on
//   Publish and Subscribe), jobs are persistent messages (delivery_mode 2), and Publish returns
//   only after the broker's publisher confirm, that is after the queue's Raft log has it.
// - One delivery at a time, acknowledged after the job: manual acks; an unacked job belongs to
//   this session's connection until Ack, Requeue (basic.reject with requeue) or the connection's
//   end, when the broker makes it deliverable again, flagged redelivered.
// - Jobs go to the session that asks: the broker's usual push (a consumer with a prefetch window)
//   would park jobs in sessions that publish only or whose workers are all busy, while another
//   node idles. So a session takes jobs only while a Receive waits and it is under
//   max_in_flight. A Receive first takes the head of each subscribed queue it holds nothing of
//   (basic.get; for a queue whose consumer already waits, a round trip on the channel that lets
//   a delivery on its way arrive), so even a zero wait sees a job published before the call. It
//   then waits on one consumer per queue with prefetch 1. A consumer that delivered is cancelled at
//   once (it has no credit left, so nothing races the cancel); an idle one is cancelled 250 ms
//   after the last Receive ended or when the session reaches max_in_flight (a worker loop calls
//   Receive again well within that, so its consumer stays). Cancelling an idle consumer can cross a
//   dispatch: the broker then returns that job to the queue, so it comes next with redelivered
//   set and delivery_count one higher although nobody ran it (rare; harmless to idempotent jobs).
//   A job that reached the session after its Receive gave up is handed to the next Receive, or
//   given back to the queue 250 ms after the last one (same flag).
// - Order: within a topic the broker's order; across topics the job published first (publisher's
//   clock, a header set by Publish) is handed out first.
// - Job identity: the message_id property, a UUID set by Publish, kept across redeliveries.
//   delivery_count is the quorum queue's x-delivery-count header + 1 (else 2 if the broker flags
//   the delivery redelivered, 1 if not).
//
// Threads: one I/O thread per session owns the AMQP connection (rabbitmq-c connections are not
// thread safe). It sends heartbeats, publishes, consumes, acks; every method hands it a request
// and waits for the answer. Because that thread services the connection all the time, a job may
// run for minutes without the broker taking the session for dead (only process death, a closed
// connection, or 2 missed heartbeats do). Broker-side limit: `consumer_timeout` (30 min by
// default in 3.10) closes the channel of a delivery unacked for longer.
//
// Contract:
// - Thread safe: every method may be called from any thread at once.
// - Blocking: Publish waits for the confirm (at most publish_timeout); Subscribe, Ack and Requeue
//   wait for one round trip through the I/O thread; Receive waits up to `wait`.
// - Errors: kInvalidArgument for bad options, an empty or unusable topic (longer than 255 bytes,
//   or starting with "amq."), a queue that exists with other arguments, refused credentials or
//   vhost, and Receive before Subscribe. kUnavailable: broker unreachable or connection down
//   (message names host:port), a nacked or unroutable publish: not done, retry.
//   kOutcomeUnknown: Publish whose connection dropped, or whose confirm did not come within
//   publish_timeout, after the message was sent: maybe published (a timeout is not reported as
//   kUnavailable, which would promise "not published"); Ack whose connection failed while sending
//   it: the job may run again.
// - Connection loss: the I/O thread reconnects with exponential backoff (100 ms doubling, at most
//   5 s), up to reconnect_attempts_max attempts in a row; after that the session is failed and
//   every call returns kUnavailable (open a new session). While disconnected, calls fail fast
//   with kUnavailable; a Receive that waited its full `wait` without a job then also returns
//   kUnavailable rather than "no job", so a worker loop notices the outage.
// - Deliveries lost with a connection are stale: the broker already made them deliverable again
//   (to any session). Ack of a stale delivery returns kFenced ("the session no longer holds the
//   job; it will run again"), except when the same job has meanwhile come back to this session
//   and waits here unhanded: then that copy is acked and Ack succeeds. Requeue of a stale
//   delivery succeeds (the broker already requeued it).
// - Ack and Requeue of a delivery this session does not hold (already acked or requeued, or held
//   by another session) succeed and change nothing (idempotent). They act on the job this session
//   holds under that job id. Requeue cancels the session's idle consumer of that topic first when
//   no Receive waits, so the job goes to another session rather than straight back here.
// - Destruction closes the connection (clean AMQP close, at most 2 s); the broker then requeues
//   this session's unacked jobs, flagged redelivered. No call may be running at destruction.
//   Never carry a session across fork(): open one in the child.
// - Broadcasts: channel C is a fanout exchange "clinker.broadcast.C" (non-durable, not
//   auto-deleted, declared idempotently by senders and listeners). Broadcast publishes a
//   transient message to it, without publisher confirm (best effort: success means written to
//   the socket). A listening session has one exclusive, auto-deleted, server-named queue bound to
//   the exchange of each channel it listens on, consumed with auto-ack into an in-memory inbox
//   (at most 1000 messages; the oldest are dropped) that ReceiveBroadcasts drains. All of this
//   runs on a third AMQP channel of the same connection, so a broker error there (an exchange of
//   that name with another type) closes only that channel, which is reopened; jobs are not
//   touched. After a reconnect the I/O thread declares and binds a new queue (broadcasts sent
//   meanwhile are lost, as the port allows). Listen while disconnected returns kUnavailable but
//   is kept and applied on reconnect. ReceiveBroadcasts on a failed session: kUnavailable.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/job_queue.h"

namespace clinker::adapters::rabbitmq {

class RabbitMqJobQueue final : public ports::JobQueue {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 5672;
    std::string user = "guest";
    std::string password = "guest";
    std::string vhost = "/";
    int max_in_flight = 4;  // 1 to 65535.
    // Negotiated with the broker (which may lower it); 0 disables heartbeats, so a hung or
    // partitioned peer is only noticed by TCP keepalive.
    std::chrono::seconds heartbeat{10};
    // Bounds the TCP connect and the AMQP handshake, on Open and on every reconnect.
    std::chrono::milliseconds connect_timeout{5000};
    int reconnect_attempts_max = 10;  // In a row; 0: the first connection loss fails the session.
    // How long Publish waits for the broker's confirm before answering kOutcomeUnknown.
    std::chrono::milliseconds publish_timeout{30000};
  };

  // Connects, logs in, opens the channels. kUnavailable (naming host:port) if the broker cannot
  // be reached or does not answer within connect_timeout.
  static Result<std::unique_ptr<RabbitMqJobQueue>> Open(const Options& options);

  RabbitMqJobQueue(const RabbitMqJobQueue&) = delete;
  RabbitMqJobQueue& operator=(const RabbitMqJobQueue&) = delete;
  ~RabbitMqJobQueue() override;

  Result<std::string> Publish(std::string_view topic, std::string_view payload) override;
  Result<void> Subscribe(const std::vector<std::string>& topics) override;
  Result<std::optional<ports::Delivery>> Receive(std::chrono::milliseconds wait) override;
  Result<void> Ack(const ports::Delivery& delivery) override;
  Result<void> Requeue(const ports::Delivery& delivery) override;
  Result<void> Broadcast(std::string_view channel, std::string_view payload) override;
  Result<void> Listen(const std::vector<std::string>& channels) override;
  Result<std::vector<ports::BroadcastMessage>> ReceiveBroadcasts(
      std::chrono::milliseconds wait) override;

  // For health checks and tests: whether the connection is up now, and how many connections
  // this session has opened (1 after Open, +1 per successful reconnect).
  bool connected() const;
  std::int64_t connections_opened() const;

 private:
  class Impl;
  explicit RabbitMqJobQueue(std::unique_ptr<Impl> impl);

  const std::unique_ptr<Impl> impl_;
};

}  // namespace clinker::adapters::rabbitmq
