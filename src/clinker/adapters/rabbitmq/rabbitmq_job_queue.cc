#include "clinker/adapters/rabbitmq/rabbitmq_job_queue.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clinker/core/assert.h"
#include "clinker/core/log.h"
#include "clinker/core/uuid.h"

namespace clinker::adapters::rabbitmq {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Publishes and declares on one channel (in confirm mode), consumes on another: a broker error
// that closes the publishing channel (a queue declared with other arguments) leaves the
// deliveries of the consuming channel alone.
constexpr amqp_channel_t kPublishChannel = 1;
constexpr amqp_channel_t kConsumeChannel = 2;
// Broadcasts (exchanges, the listening queue, its no-ack consumer, transient publishes) have a
// channel of their own: a broker error there (an exchange declared with another type) closes
// only it, and it is reopened without touching jobs.
constexpr amqp_channel_t kBroadcastChannel = 3;
constexpr char kBroadcastExchangePrefix[] = "clinker.broadcast.";
// Unread broadcasts a session keeps; the oldest are dropped first.
constexpr std::size_t kMaxPendingBroadcasts = 1000;
constexpr int kFrameMax = 131072;
constexpr char kDeliveryCountHeader[] = "x-delivery-count";
// Publisher's wall clock at publish, in microseconds since the epoch: orders jobs across topics.
constexpr char kPublishedAtHeader[] = "clinker-published-at-us";
constexpr std::size_t kMaxTopicBytes = 255;  // AMQP short string.
// Bounds every synchronous AMQP method (declare, get, consume, qos) on the I/O thread.
constexpr milliseconds kRpcTimeout{10000};
constexpr milliseconds kCloseTimeout{2000};
constexpr milliseconds kFirstBackoff{100};
constexpr milliseconds kMaxBackoff{5000};
// Remembered ids of deliveries lost with a connection, so their Ack can say so.
constexpr std::size_t kMaxStaleJobs = 4096;
// Cancelled consumers whose topic is still known, for a delivery that crossed the cancel.
constexpr std::size_t kMaxRetiredConsumers = 256;
// How long waiting consumers stay after the last Receive ended. A worker loop calls Receive again
// within it, so its consumer is not cancelled and re-created every `wait`; cancelling an idle
// consumer can cross a dispatch, which the broker then returns to the queue (counted as a
// redelivery).
constexpr milliseconds kIdleGrace{250};
// Frames handled per pass of the I/O loop before it looks at requests again.
constexpr int kMaxFramesPerPass = 256;

std::string ToString(amqp_bytes_t bytes) {
  if (bytes.len == 0 || bytes.bytes == nullptr) {
    return {};
  }
  return std::string(static_cast<const char*>(bytes.bytes), bytes.len);
}

// rabbitmq-c takes non-const pointers for data it only reads.
amqp_bytes_t ToBytes(std::string_view text) {
  amqp_bytes_t bytes;
  bytes.len = text.size();
  bytes.bytes = const_cast<char*>(text.data());
  return bytes;
}

timeval ToTimeval(milliseconds duration) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(duration.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((duration.count() % 1000) * 1000);
  return tv;
}

std::optional<std::int64_t> IntegerField(const amqp_field_value_t& value) {
  switch (value.kind) {
    case AMQP_FIELD_KIND_I8:
      return value.value.i8;
    case AMQP_FIELD_KIND_U8:
      return value.value.u8;
    case AMQP_FIELD_KIND_I16:
      return value.value.i16;
    case AMQP_FIELD_KIND_U16:
      return value.value.u16;
    case AMQP_FIELD_KIND_I32:
      return value.value.i32;
    case AMQP_FIELD_KIND_U32:
      return value.value.u32;
    case AMQP_FIELD_KIND_I64:
      return value.value.i64;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      return static_cast<std::int64_t>(value.value.u64);
    default:
      return std::nullopt;
  }
}

std::int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<void> ValidateTopic(std::string_view topic) {
  if (topic.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "job topic is empty");
  }
  if (topic.size() > kMaxTopicBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "job topic is longer than 255 bytes: " + std::string(topic.substr(0, 64)));
  }
  if (topic.substr(0, 4) == "amq.") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "job topic '" + std::string(topic) + "' starts with 'amq.' (reserved)");
  }
  return {};
}

std::string ExchangeFor(std::string_view channel) {
  return kBroadcastExchangePrefix + std::string(channel);
}

Result<void> ValidateChannel(std::string_view channel) {
  if (channel.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "broadcast channel is empty");
  }
  if (ExchangeFor(channel).size() > kMaxTopicBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "broadcast channel is too long for an exchange name: " +
                         std::string(channel.substr(0, 64)));
  }
  return {};
}

// Broker reply codes that mean "this request can never work": the caller's fault or the
// configuration's, not the broker's health.
ErrorCode CodeForReply(int reply_code) {
  switch (reply_code) {
    case 403:  // ACCESS_REFUSED: credentials, permissions, reserved name.
    case 406:  // PRECONDITION_FAILED: queue exists with other arguments.
    case 530:  // NOT_ALLOWED: vhost missing or not permitted.
      return ErrorCode::kInvalidArgument;
    default:
      return ErrorCode::kUnavailable;
  }
}

struct ReplyInfo {
  std::string text;
  int code = 0;  // Broker reply code, 0 if the library failed.
};

ReplyInfo DescribeReply(const amqp_rpc_reply_t& reply) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return {"ok", 0};
    case AMQP_RESPONSE_NONE:
      return {"no reply", 0};
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return {amqp_error_string2(reply.library_error), 0};
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
        return {"connection closed by the broker: " + std::to_string(close->reply_code) + " " +
                    ToString(close->reply_text),
                close->reply_code};
      }
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        return {"channel closed by the broker: " + std::to_string(close->reply_code) + " " +
                    ToString(close->reply_text),
                close->reply_code};
      }
      return {"unexpected broker method " + std::to_string(reply.reply.id), 0};
  }
  return {"unknown reply type", 0};
}

}  // namespace

class RabbitMqJobQueue::Impl {
 public:
  explicit Impl(Options options);
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl();

  // On the calling thread, before Start: the first connection, so Open can report its error.
  Result<void> Init();
  void Start();

  Result<std::string> Publish(std::string_view topic, std::string_view payload);
  Result<void> Subscribe(const std::vector<std::string>& topics);
  Result<std::optional<ports::Delivery>> Receive(milliseconds wait);
  Result<void> Ack(const ports::Delivery& delivery);
  Result<void> Requeue(const ports::Delivery& delivery);
  Result<void> Broadcast(std::string_view channel, std::string_view payload);
  Result<void> Listen(const std::vector<std::string>& channels);
  Result<std::vector<ports::BroadcastMessage>> ReceiveBroadcasts(milliseconds wait);
  bool connected() const;

  std::int64_t connections_opened() const { return connections_opened_.load(); }

 private:
  enum class LinkState { kConnected, kReconnecting, kFailed };

  struct Buffered {
    ports::Delivery delivery;
    std::uint64_t tag = 0;
    std::int64_t published_at_us = 0;
    std::uint64_t arrival = 0;
  };

  struct Held {
    std::uint64_t tag = 0;
    std::uint64_t generation = 0;  // Of the connection the delivery came on.
    std::string topic;
  };

  struct Content {
    std::string job_id;
    std::string payload;
    std::optional<std::int64_t> delivery_count_header;
    std::int64_t published_at_us = 0;
  };

  struct PendingPublish {
    std::string job_id;
    bool returned = false;  // The broker routed it nowhere (basic.return before the confirm).
    std::promise<Result<void>> confirmed;
  };

  using Task = std::function<void()>;

  std::string Where() const { return options_.host + ":" + std::to_string(options_.port); }

  milliseconds CallTimeout() const { return 2 * kRpcTimeout + 2 * options_.connect_timeout; }

  // ---- Any thread.
  template <class T>
  Result<T> Call(std::function<Result<T>()> task, ErrorCode on_timeout);
  void Wake();
  Error NotConnectedLocked() const;
  std::optional<ports::Delivery> PickLocked();
  std::optional<Buffered> TakeBufferedLocked(const std::string& job_id);
  void AddStaleLocked(const std::string& job_id);
  Error StaleError(const std::string& job_id) const;

  // ---- I/O thread only (and Init, before the thread exists).
  void Run();
  Result<void> Connect();
  Result<void> SetUpChannels();
  void ReconnectStep();
  void WaitForWake(milliseconds timeout);
  void WaitForActivity();
  void RunRequests();
  void PumpFrames(bool queued_only);
  void HandleFrame(const amqp_frame_t& frame);
  void HandleDeliver(const amqp_frame_t& frame);
  void HandleReturn();
  void HandleBrokerCancel(const amqp_frame_t& frame);
  void Confirm(std::uint64_t tag, bool multiple, bool positive);
  void FailUnconfirmed(const std::string& why);
  std::optional<Content> ReadContent(amqp_channel_t channel);
  void AddToBuffer(const std::string& topic, std::uint64_t tag, bool redelivered, Content content);
  Result<void> CheckRpc(amqp_channel_t channel, std::string_view what);
  Error HandleFailedReply(amqp_channel_t channel,
                          const amqp_rpc_reply_t& reply,
                          std::string_view what);
  void ReopenPublishChannel(const std::string& why);
  void Disconnect(const std::string& reason);
  void DestroyConnection();
  void Reconcile();
  void Barrier();
  void ReturnUnclaimed();
  Result<void> EnsureDeclared(const std::string& topic);
  void Get(const std::string& topic);
  void Arm(const std::string& topic);
  void Disarm(const std::string& topic);
  void Reject(std::uint64_t tag);
  Result<std::future<Result<void>>> SendPublish(const std::string& topic,
                                                const std::string& payload,
                                                const std::string& job_id);
  Result<void> ApplySubscribe(const std::vector<std::string>& topics);
  Result<void> Settle(const Held& held, const std::string& job_id, bool requeue);
  // Broadcasts, I/O thread only.
  Result<void> OpenBroadcastChannel();
  void ReopenBroadcastChannel(const std::string& why);
  Result<void> EnsureExchange(const std::string& exchange);
  Result<void> SendBroadcast(const std::string& channel, const std::string& payload);
  // Makes the listening queue, its consumer and its bindings match listen_channels_.
  Result<void> ReconcileListener();
  void HandleBroadcastDeliver(const amqp_frame_t& frame);
  void Shutdown();

  const Options options_;
  const milliseconds poll_interval_;
  const std::string consumer_tag_prefix_;
  int wake_fd_ = -1;
  std::thread io_thread_;
  std::atomic<std::int64_t> connections_opened_{0};

  // Shared between the I/O thread and callers.
  mutable std::mutex mutex_;
  // Notified on every change a waiting Receive may care about: a delivery buffered, a slot freed,
  // a round finished, the connection lost or back.
  std::condition_variable changed_;
  bool stopping_ = false;
  std::deque<Task> requests_;
  LinkState state_ = LinkState::kConnected;
  std::string last_error_;
  std::uint64_t generation_ = 1;  // Connection number; written by the I/O thread only.
  std::optional<std::vector<std::string>> topics_;
  std::map<std::string, std::deque<Buffered>> buffer_;  // Taken from the broker, not handed out.
  std::size_t buffered_count_ = 0;
  std::uint64_t next_arrival_ = 0;
  std::map<std::string, Held, std::less<>> held_;  // Handed out, by job id.
  std::set<std::string, std::less<>> stale_;
  std::deque<std::string> stale_order_;
  int waiting_ = 0;  // Receive calls in progress: the demand that lets the session take jobs.
  Clock::time_point idle_since_;  // When waiting_ last dropped to 0.
  std::uint64_t round_requested_ = 0;
  std::uint64_t round_completed_ = 0;
  // Channels to listen on; unset until the first Listen. The I/O thread makes the broker match.
  std::optional<std::vector<std::string>> listen_channels_;
  std::deque<ports::BroadcastMessage> inbox_;  // Received broadcasts, not yet returned.

  // I/O thread only.
  amqp_connection_state_t conn_ = nullptr;
  int attempts_ = 0;  // Failed reconnects in a row.
  Clock::time_point next_attempt_;
  std::set<std::string> declared_;                      // Queues declared on this connection.
  std::map<std::string, std::string> armed_;            // topic -> tag of a waiting consumer.
  std::map<std::string, std::string> consumer_topics_;  // consumer tag -> topic.
  std::deque<std::string> retired_consumers_;           // Cancelled tags, oldest first.
  std::uint64_t next_consumer_ = 1;
  std::uint64_t next_publish_seq_ = 1;  // Publisher-confirm sequence of the publish channel.
  std::map<std::uint64_t, std::shared_ptr<PendingPublish>> unconfirmed_;
  // Broadcast state of this connection (all gone with it: the queue is exclusive).
  std::set<std::string> declared_exchanges_;
  std::string listen_queue_;     // Server-named; empty until declared on this connection.
  std::set<std::string> bound_;  // Channels the listening queue is bound to.
  bool listener_dirty_ = false;  // The broker may not match listen_channels_: reconcile.
};

RabbitMqJobQueue::Impl::Impl(Options options)
    : options_(std::move(options)),
      poll_interval_(
          options_.heartbeat.count() == 0
              ? milliseconds(1000)
              : std::clamp(std::chrono::duration_cast<milliseconds>(options_.heartbeat) / 4,
                           milliseconds(50),
                           milliseconds(1000))),
      consumer_tag_prefix_("clinker." + NewUuid().substr(0, 8) + ".") {}

RabbitMqJobQueue::Impl::~Impl() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  Wake();
  if (io_thread_.joinable()) {
    io_thread_.join();
  } else {
    DestroyConnection();  // Init failed half way, or Start never ran.
  }
  if (wake_fd_ >= 0) {
    ::close(wake_fd_);
  }
}

Result<void> RabbitMqJobQueue::Impl::Init() {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    return MakeError(ErrorCode::kInternal, "eventfd: " + std::system_category().message(errno));
  }
  return Connect();
}

void RabbitMqJobQueue::Impl::Start() {
  io_thread_ = std::thread([this] { Run(); });
}

bool RabbitMqJobQueue::Impl::connected() const {
  std::lock_guard lock(mutex_);
  return state_ == LinkState::kConnected;
}

// ---------------------------------------------------------------------------------------------
// Caller side.

void RabbitMqJobQueue::Impl::Wake() {
  std::uint64_t one = 1;
  // EAGAIN (counter full) still leaves the I/O thread woken, which is all that matters.
  [[maybe_unused]] ssize_t written = ::write(wake_fd_, &one, sizeof(one));
}

template <class T>
Result<T> RabbitMqJobQueue::Impl::Call(std::function<Result<T>()> task, ErrorCode on_timeout) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  std::future<Result<T>> future = promise->get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      return MakeError(ErrorCode::kUnavailable, "job queue session is closing");
    }
    requests_.push_back([promise, task = std::move(task)] { promise->set_value(task()); });
  }
  Wake();
  if (future.wait_for(CallTimeout()) != std::future_status::ready) {
    return MakeError(on_timeout,
                     "RabbitMQ at " + Where() + ": the connection thread did not answer within " +
                         std::to_string(CallTimeout().count()) + " ms");
  }
  return future.get();
}

Error RabbitMqJobQueue::Impl::NotConnectedLocked() const {
  if (state_ == LinkState::kFailed) {
    return Error{ErrorCode::kUnavailable,
                 "RabbitMQ at " + Where() + ": session failed, gave up reconnecting after " +
                     std::to_string(options_.reconnect_attempts_max) +
                     " attempts (open a new session): " + last_error_};
  }
  return Error{ErrorCode::kUnavailable,
               "RabbitMQ at " + Where() + ": not connected, reconnecting: " + last_error_};
}

Error RabbitMqJobQueue::Impl::StaleError(const std::string& job_id) const {
  return Error{ErrorCode::kFenced,
               "job " + job_id + ": its delivery was lost with the connection to RabbitMQ at " +
                   Where() + "; the broker made the job deliverable again and it will run again"};
}

void RabbitMqJobQueue::Impl::AddStaleLocked(const std::string& job_id) {
  if (stale_.insert(job_id).second) {
    stale_order_.push_back(job_id);
  }
  while (stale_order_.size() > kMaxStaleJobs) {
    stale_.erase(stale_order_.front());
    stale_order_.pop_front();
  }
}

std::optional<ports::Delivery> RabbitMqJobQueue::Impl::PickLocked() {
  // The oldest head of the per-topic buffers; each buffer keeps its topic's broker order.
  auto best = buffer_.end();
  for (auto it = buffer_.begin(); it != buffer_.end(); ++it) {
    if (it->second.empty()) {
      continue;
    }
    if (best == buffer_.end()) {
      best = it;
      continue;
    }
    const Buffered& candidate = it->second.front();
    const Buffered& current = best->second.front();
    if (std::tie(candidate.published_at_us, candidate.arrival) <
        std::tie(current.published_at_us, current.arrival)) {
      best = it;
    }
  }
  if (best == buffer_.end()) {
    return std::nullopt;
  }
  Buffered item = std::move(best->second.front());
  best->second.pop_front();
  if (best->second.empty()) {
    buffer_.erase(best);
  }
  --buffered_count_;
  held_[item.delivery.job_id] = Held{item.tag, generation_, item.delivery.topic};
  // A job lost with a connection and now back here: this delivery supersedes the stale one.
  stale_.erase(item.delivery.job_id);
  return std::move(item.delivery);
}

std::optional<RabbitMqJobQueue::Impl::Buffered> RabbitMqJobQueue::Impl::TakeBufferedLocked(
    const std::string& job_id) {
  for (auto topic = buffer_.begin(); topic != buffer_.end(); ++topic) {
    auto& queue = topic->second;
    for (auto it = queue.begin(); it != queue.end(); ++it) {
      if (it->delivery.job_id == job_id) {
        Buffered item = std::move(*it);
        queue.erase(it);
        if (queue.empty()) {
          buffer_.erase(topic);
        }
        --buffered_count_;
        return item;
      }
    }
  }
  return std::nullopt;
}

Result<std::string> RabbitMqJobQueue::Impl::Publish(std::string_view topic,
                                                    std::string_view payload) {
  CLINKER_RETURN_IF_ERROR(ValidateTopic(topic));
  std::string job_id = NewUuid();
  auto sent = Call<std::future<Result<void>>>(
      [this, topic = std::string(topic), payload = std::string(payload), job_id] {
        return SendPublish(topic, payload, job_id);
      },
      // The I/O thread may still send it after we stop waiting.
      ErrorCode::kOutcomeUnknown);
  if (!sent) {
    return tl::unexpected(std::move(sent).error());
  }
  std::future<Result<void>>& confirmed = *sent;
  if (confirmed.wait_for(options_.publish_timeout) != std::future_status::ready) {
    return MakeError(ErrorCode::kOutcomeUnknown,
                     "RabbitMQ at " + Where() + ": no publisher confirm for job " + job_id +
                         " within " + std::to_string(options_.publish_timeout.count()) +
                         " ms; it may be published");
  }
  CLINKER_RETURN_IF_ERROR(confirmed.get());
  return job_id;
}

Result<void> RabbitMqJobQueue::Impl::Subscribe(const std::vector<std::string>& topics) {
  std::vector<std::string> unique;
  for (const std::string& topic : topics) {
    CLINKER_RETURN_IF_ERROR(ValidateTopic(topic));
    if (std::find(unique.begin(), unique.end(), topic) == unique.end()) {
      unique.push_back(topic);
    }
  }
  return Call<void>([this, unique] { return ApplySubscribe(unique); }, ErrorCode::kUnavailable);
}

Result<std::optional<ports::Delivery>> RabbitMqJobQueue::Impl::Receive(milliseconds wait) {
  const auto deadline = Clock::now() + std::max(wait, milliseconds(0));
  std::unique_lock lock(mutex_);
  if (!topics_.has_value()) {
    return MakeError(ErrorCode::kInvalidArgument, "Receive before Subscribe");
  }
  const auto max_in_flight = static_cast<std::size_t>(options_.max_in_flight);
  ++waiting_;
  std::uint64_t my_round = 0;
  Clock::time_point round_deadline;
  auto receive = [&]() -> Result<std::optional<ports::Delivery>> {
    while (true) {
      if (state_ == LinkState::kFailed) {
        return tl::unexpected(NotConnectedLocked());
      }
      if (held_.size() < max_in_flight) {
        if (my_round == 0) {
          // A round takes the head of every queue the session holds nothing of, so even a zero
          // wait sees a job published before the call, and several topics pick the oldest.
          my_round = ++round_requested_;
          round_deadline = Clock::now() + kRpcTimeout;
          Wake();
        } else if (round_completed_ >= my_round && buffered_count_ > 0) {
          return PickLocked();
        }
      }
      // A round in progress is waited for even past `wait` (it is one round trip), unless the
      // connection is down and nobody will run it.
      bool round_pending =
          my_round != 0 && round_completed_ < my_round && state_ == LinkState::kConnected;
      auto until = round_pending ? std::max(deadline, round_deadline) : deadline;
      if (Clock::now() >= until) {
        break;
      }
      changed_.wait_until(lock, until);
    }
    if (state_ != LinkState::kConnected) {
      return tl::unexpected(NotConnectedLocked());
    }
    return std::optional<ports::Delivery>();
  };
  auto result = receive();
  if (--waiting_ == 0) {
    idle_since_ = Clock::now();
  }
  lock.unlock();
  Wake();  // Demand changed: the I/O thread may cancel its waiting consumers.
  return result;
}

Result<void> RabbitMqJobQueue::Impl::Ack(const ports::Delivery& delivery) {
  Held held;
  {
    std::lock_guard lock(mutex_);
    auto it = held_.find(delivery.job_id);
    if (it != held_.end()) {
      held = it->second;
      held_.erase(it);
      changed_.notify_all();  // A Receive at the limit may go on.
    } else if (stale_.count(delivery.job_id) > 0) {
      // The job may have come back to this session meanwhile; then ack that copy instead of
      // running the finished job again.
      auto copy = TakeBufferedLocked(delivery.job_id);
      if (!copy.has_value()) {
        return tl::unexpected(StaleError(delivery.job_id));
      }
      stale_.erase(delivery.job_id);
      held = Held{copy->tag, generation_, copy->delivery.topic};
    } else {
      return {};  // Not held by this session: acked already, or someone else's.
    }
  }
  Wake();
  return Call<void>([this, held, job_id = delivery.job_id] { return Settle(held, job_id, false); },
                    ErrorCode::kOutcomeUnknown);
}

Result<void> RabbitMqJobQueue::Impl::Requeue(const ports::Delivery& delivery) {
  Held held;
  {
    std::lock_guard lock(mutex_);
    auto it = held_.find(delivery.job_id);
    if (it == held_.end()) {
      // Stale deliveries went back to the queue with their connection already.
      stale_.erase(delivery.job_id);
      return {};
    }
    held = it->second;
    held_.erase(it);
    changed_.notify_all();
  }
  Wake();
  return Call<void>([this, held, job_id = delivery.job_id] { return Settle(held, job_id, true); },
                    ErrorCode::kOutcomeUnknown);
}

// ---------------------------------------------------------------------------------------------
// I/O thread.

void RabbitMqJobQueue::Impl::Run() {
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) {
        break;
      }
    }
    if (conn_ == nullptr) {
      ReconnectStep();
      continue;
    }
    RunRequests();
    if (conn_ != nullptr) {
      PumpFrames(false);
    }
    if (conn_ != nullptr) {
      Reconcile();
    }
    if (conn_ != nullptr) {
      WaitForActivity();
    }
  }
  Shutdown();
}

Result<void> RabbitMqJobQueue::Impl::Connect() {
  CLINKER_ASSERT(conn_ == nullptr, "one connection at a time");
  amqp_connection_state_t conn = amqp_new_connection();
  if (conn == nullptr) {
    return MakeError(ErrorCode::kInternal, "amqp_new_connection failed");
  }
  amqp_socket_t* socket = amqp_tcp_socket_new(conn);
  if (socket == nullptr) {
    amqp_destroy_connection(conn);
    return MakeError(ErrorCode::kInternal, "amqp_tcp_socket_new failed");
  }
  timeval connect_tv = ToTimeval(options_.connect_timeout);
  int status = amqp_socket_open_noblock(socket, options_.host.c_str(), options_.port, &connect_tv);
  if (status != AMQP_STATUS_OK) {
    amqp_destroy_connection(conn);
    return MakeError(ErrorCode::kUnavailable,
                     "RabbitMQ at " + Where() + ": cannot connect: " + amqp_error_string2(status));
  }
  // The handshake timeout bounds a peer that accepts TCP but never speaks AMQP.
  amqp_set_handshake_timeout(conn, &connect_tv);
  timeval rpc_tv = ToTimeval(kRpcTimeout);
  amqp_set_rpc_timeout(conn, &rpc_tv);
  amqp_rpc_reply_t login = amqp_login(conn,
                                      options_.vhost.c_str(),
                                      0,
                                      kFrameMax,
                                      static_cast<int>(options_.heartbeat.count()),
                                      AMQP_SASL_METHOD_PLAIN,
                                      options_.user.c_str(),
                                      options_.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    ReplyInfo info = DescribeReply(login);
    amqp_destroy_connection(conn);
    return MakeError(login.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION ? CodeForReply(info.code)
                                                                        : ErrorCode::kUnavailable,
                     "RabbitMQ at " + Where() + ": login as '" + options_.user + "' to vhost '" +
                         options_.vhost + "': " + info.text);
  }
  conn_ = conn;
  if (auto setup = SetUpChannels(); !setup) {
    DestroyConnection();
    return setup;
  }
  connections_opened_.fetch_add(1);
  return {};
}

Result<void> RabbitMqJobQueue::Impl::SetUpChannels() {
  amqp_channel_open(conn_, kPublishChannel);
  CLINKER_RETURN_IF_ERROR(CheckRpc(kPublishChannel, "open the publish channel"));
  amqp_confirm_select(conn_, kPublishChannel);
  CLINKER_RETURN_IF_ERROR(CheckRpc(kPublishChannel, "enable publisher confirms"));
  next_publish_seq_ = 1;
  amqp_channel_open(conn_, kConsumeChannel);
  CLINKER_RETURN_IF_ERROR(CheckRpc(kConsumeChannel, "open the consume channel"));
  // Every consumer takes one job: the session asks the broker for jobs one Receive at a time.
  amqp_basic_qos(conn_, kConsumeChannel, 0, 1, 0);
  CLINKER_RETURN_IF_ERROR(CheckRpc(kConsumeChannel, "set prefetch"));
  return OpenBroadcastChannel();
}

void RabbitMqJobQueue::Impl::ReconnectStep() {
  RunRequests();  // They fail fast while disconnected.
  LinkState state;
  {
    std::lock_guard lock(mutex_);
    state = state_;
  }
  if (state == LinkState::kFailed) {
    WaitForWake(milliseconds(1000));
    return;
  }
  auto now = Clock::now();
  if (now < next_attempt_) {
    WaitForWake(std::min(std::chrono::duration_cast<milliseconds>(next_attempt_ - now),
                         milliseconds(1000)));
    return;
  }
  auto connected = Connect();
  std::lock_guard lock(mutex_);
  if (connected) {
    attempts_ = 0;
    state_ = LinkState::kConnected;
    changed_.notify_all();
    log::Info(
        "job_queue.reconnected",
        {{"broker", Where()}, {"connections", static_cast<long long>(connections_opened_.load())}});
    return;
  }
  ++attempts_;
  last_error_ = connected.error().message;
  if (attempts_ >= options_.reconnect_attempts_max) {
    state_ = LinkState::kFailed;
    changed_.notify_all();
    log::Error("job_queue.reconnect_gave_up",
               {{"broker", Where()},
                {"attempts", static_cast<long long>(attempts_)},
                {"error", last_error_}});
    return;
  }
  auto backoff = kFirstBackoff * (1LL << std::min(attempts_ - 1, 16));
  next_attempt_ = Clock::now() + std::min<milliseconds>(backoff, kMaxBackoff);
  log::Warn("job_queue.reconnect_failed",
            {{"broker", Where()},
             {"attempt", static_cast<long long>(attempts_)},
             {"error", last_error_}});
}

void RabbitMqJobQueue::Impl::WaitForWake(milliseconds timeout) {
  pollfd entry{.fd = wake_fd_, .events = POLLIN, .revents = 0};
  if (::poll(&entry, 1, static_cast<int>(timeout.count())) > 0) {
    std::uint64_t count;
    [[maybe_unused]] ssize_t got = ::read(wake_fd_, &count, sizeof(count));
  }
}

void RabbitMqJobQueue::Impl::WaitForActivity() {
  if (amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_)) {
    return;
  }
  {
    std::lock_guard lock(mutex_);
    if (!requests_.empty() || stopping_) {
      return;
    }
  }
  // Bounded so that heartbeats go out (and missing ones are noticed) while nothing happens, and
  // so that idle consumers are cancelled soon after the grace.
  milliseconds timeout = poll_interval_;
  if (!armed_.empty()) {
    timeout = std::min(timeout, kIdleGrace / 2);
  }
  pollfd entries[2] = {
      {.fd = amqp_get_sockfd(conn_), .events = POLLIN, .revents = 0},
      {.fd = wake_fd_, .events = POLLIN, .revents = 0},
  };
  if (::poll(entries, 2, static_cast<int>(timeout.count())) > 0 &&
      (entries[1].revents & POLLIN) != 0) {
    std::uint64_t count;
    [[maybe_unused]] ssize_t got = ::read(wake_fd_, &count, sizeof(count));
  }
}

void RabbitMqJobQueue::Impl::RunRequests() {
  std::deque<Task> tasks;
  {
    std::lock_guard lock(mutex_);
    tasks.swap(requests_);
  }
  for (Task& task : tasks) {
    task();
  }
}

void RabbitMqJobQueue::Impl::PumpFrames(bool queued_only) {
  for (int i = 0; conn_ != nullptr && i < kMaxFramesPerPass; ++i) {
    if (queued_only && !amqp_frames_enqueued(conn_)) {
      break;
    }
    amqp_frame_t frame;
    // 1 us rather than 0: a zero timeout makes rabbitmq-c skip its check for missed heartbeats.
    // Either way it sends a heartbeat when one is due.
    timeval tv{.tv_sec = 0, .tv_usec = 1};
    int status = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
    if (status == AMQP_STATUS_TIMEOUT) {
      break;
    }
    if (status != AMQP_STATUS_OK) {
      Disconnect(std::string("connection failed: ") + amqp_error_string2(status));
      return;
    }
    HandleFrame(frame);
  }
  if (conn_ != nullptr && !queued_only) {
    amqp_maybe_release_buffers(conn_);
  }
}

void RabbitMqJobQueue::Impl::HandleFrame(const amqp_frame_t& frame) {
  if (frame.frame_type != AMQP_FRAME_METHOD) {
    // Content frames are read with their method; one on its own means the stream is out of step.
    Disconnect("unexpected frame of type " + std::to_string(frame.frame_type) + " on channel " +
               std::to_string(frame.channel));
    return;
  }
  switch (frame.payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD:
      HandleDeliver(frame);
      break;
    case AMQP_BASIC_ACK_METHOD:
      if (frame.channel == kPublishChannel) {
        const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
        Confirm(ack->delivery_tag, ack->multiple != 0, true);
      }
      break;
    case AMQP_BASIC_NACK_METHOD:
      if (frame.channel == kPublishChannel) {
        const auto* nack = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
        Confirm(nack->delivery_tag, nack->multiple != 0, false);
      }
      break;
    case AMQP_BASIC_RETURN_METHOD:
      HandleReturn();
      break;
    case AMQP_BASIC_CANCEL_METHOD:
      HandleBrokerCancel(frame);
      break;
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD: {
      amqp_rpc_reply_t reply{};
      reply.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
      reply.reply = frame.payload.method;
      HandleFailedReply(frame.channel, reply, "unsolicited close");
      break;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
      log::Warn("job_queue.publishing_blocked", {{"broker", Where()}});
      break;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
      log::Info("job_queue.publishing_unblocked", {{"broker", Where()}});
      break;
    default:
      break;  // Late replies of no interest (e.g. qos-ok).
  }
}

void RabbitMqJobQueue::Impl::HandleDeliver(const amqp_frame_t& frame) {
  if (frame.channel == kBroadcastChannel) {
    HandleBroadcastDeliver(frame);
    return;
  }
  // Copied out first: the method lives in a connection buffer that reading the content reuses.
  const auto* deliver = static_cast<const amqp_basic_deliver_t*>(frame.payload.method.decoded);
  const std::uint64_t tag = deliver->delivery_tag;
  const bool redelivered = deliver->redelivered != 0;
  const std::string consumer_tag = ToString(deliver->consumer_tag);
  // The default exchange routes by queue name, so the routing key is the topic; our own
  // consumer's topic takes precedence.
  std::string topic = ToString(deliver->routing_key);
  if (auto it = consumer_topics_.find(consumer_tag); it != consumer_topics_.end()) {
    topic = it->second;
  }
  if (auto it = armed_.find(topic); it != armed_.end() && it->second == consumer_tag) {
    // Prefetch 1: the consumer is spent. Cancelled now, it takes no job when this one settles.
    Disarm(topic);
    if (conn_ == nullptr) {
      return;
    }
  }
  std::optional<Content> content = ReadContent(frame.channel);
  if (!content.has_value()) {
    return;
  }
  AddToBuffer(topic, tag, redelivered, std::move(*content));
}

void RabbitMqJobQueue::Impl::HandleReturn() {
  std::optional<Content> content = ReadContent(kPublishChannel);
  if (!content.has_value()) {
    return;
  }
  for (auto& [seq, pending] : unconfirmed_) {
    if (pending->job_id == content->job_id) {
      pending->returned = true;
    }
  }
}

void RabbitMqJobQueue::Impl::HandleBrokerCancel(const amqp_frame_t& frame) {
  // The queue went away under the consumer (deleted, or its leader lost). Forget the
  // declaration so that the next Receive declares the queue again.
  const auto* cancel = static_cast<const amqp_basic_cancel_t*>(frame.payload.method.decoded);
  std::string tag = ToString(cancel->consumer_tag);
  for (auto it = armed_.begin(); it != armed_.end(); ++it) {
    if (it->second == tag) {
      declared_.erase(it->first);
      armed_.erase(it);
      break;
    }
  }
  log::Warn("job_queue.consumer_cancelled_by_broker", {{"broker", Where()}, {"consumer", tag}});
}

void RabbitMqJobQueue::Impl::Confirm(std::uint64_t tag, bool multiple, bool positive) {
  auto first = multiple ? unconfirmed_.begin() : unconfirmed_.find(tag);
  auto last = multiple ? unconfirmed_.upper_bound(tag)
                       : (first == unconfirmed_.end() ? first : std::next(first));
  for (auto it = first; it != last; ++it) {
    PendingPublish& pending = *it->second;
    if (!positive) {
      pending.confirmed.set_value(MakeError(
          ErrorCode::kUnavailable,
          "RabbitMQ at " + Where() + ": broker refused job " + pending.job_id + " (nack)"));
    } else if (pending.returned) {
      pending.confirmed.set_value(
          MakeError(ErrorCode::kUnavailable,
                    "RabbitMQ at " + Where() + ": job " + pending.job_id +
                        " was routed to no queue (queue deleted meanwhile?)"));
    } else {
      pending.confirmed.set_value(Result<void>());
    }
  }
  unconfirmed_.erase(first, last);
}

void RabbitMqJobQueue::Impl::FailUnconfirmed(const std::string& why) {
  for (auto& [seq, pending] : unconfirmed_) {
    pending->confirmed.set_value(MakeError(ErrorCode::kOutcomeUnknown,
                                           "RabbitMQ at " + Where() + ": job " + pending->job_id +
                                               " sent but not confirmed (" + why +
                                               "); it may be published"));
  }
  unconfirmed_.clear();
  next_publish_seq_ = 1;
}

std::optional<RabbitMqJobQueue::Impl::Content> RabbitMqJobQueue::Impl::ReadContent(
    amqp_channel_t channel) {
  amqp_message_t message;
  amqp_rpc_reply_t reply = amqp_read_message(conn_, channel, &message, 0);
  if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
    // amqp_read_message frees the message itself on failure.
    HandleFailedReply(channel, reply, "read a message");
    return std::nullopt;
  }
  Content content;
  const amqp_basic_properties_t& properties = message.properties;
  if ((properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) {
    content.job_id = ToString(properties.message_id);
  }
  if ((properties._flags & AMQP_BASIC_HEADERS_FLAG) != 0) {
    for (int i = 0; i < properties.headers.num_entries; ++i) {
      const amqp_table_entry_t& entry = properties.headers.entries[i];
      std::string key = ToString(entry.key);
      if (key == kDeliveryCountHeader) {
        content.delivery_count_header = IntegerField(entry.value);
      } else if (key == kPublishedAtHeader) {
        content.published_at_us = IntegerField(entry.value).value_or(0);
      }
    }
  }
  content.payload = ToString(message.body);
  amqp_destroy_message(&message);
  return content;
}

void RabbitMqJobQueue::Impl::AddToBuffer(const std::string& topic,
                                         std::uint64_t tag,
                                         bool redelivered,
                                         Content content) {
  ports::Delivery delivery{
      // Every Clinker publish sets message_id; a foreign message gets an id of its own.
      .job_id = content.job_id.empty() ? NewUuid() : std::move(content.job_id),
      .topic = topic,
      .payload = std::move(content.payload),
      .redelivered = redelivered,
      .delivery_count = content.delivery_count_header.has_value()
                            ? *content.delivery_count_header + 1
                            : (redelivered ? 2 : 1),
  };
  {
    std::lock_guard lock(mutex_);
    bool subscribed =
        topics_.has_value() && std::find(topics_->begin(), topics_->end(), topic) != topics_->end();
    if (subscribed) {
      // Job ids key held deliveries; a duplicate message_id (a foreign publisher) gets a suffix.
      bool duplicate = held_.count(delivery.job_id) > 0;
      for (const auto& [buffered_topic, queue] : buffer_) {
        for (const Buffered& item : queue) {
          duplicate = duplicate || item.delivery.job_id == delivery.job_id;
        }
      }
      if (duplicate) {
        delivery.job_id += "#" + std::to_string(tag);
      }
      buffer_[topic].push_back(Buffered{
          .delivery = std::move(delivery),
          .tag = tag,
          .published_at_us = content.published_at_us,
          .arrival = next_arrival_++,
      });
      ++buffered_count_;
      changed_.notify_all();
      return;
    }
  }
  // Unsubscribed meanwhile: give it back for another consumer.
  Reject(tag);
}

Result<void> RabbitMqJobQueue::Impl::CheckRpc(amqp_channel_t channel, std::string_view what) {
  amqp_rpc_reply_t reply = amqp_get_rpc_reply(conn_);
  if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
    return {};
  }
  return tl::unexpected(HandleFailedReply(channel, reply, what));
}

Error RabbitMqJobQueue::Impl::HandleFailedReply(amqp_channel_t channel,
                                                const amqp_rpc_reply_t& reply,
                                                std::string_view what) {
  ReplyInfo info = DescribeReply(reply);
  std::string message = "RabbitMQ at " + Where() + ": " + std::string(what) + ": " + info.text;
  if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_ok_t close_ok{};
    int status = amqp_send_method(conn_, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
    if (status == AMQP_STATUS_OK && channel == kPublishChannel) {
      ReopenPublishChannel(message);
    } else if (status == AMQP_STATUS_OK && channel == kBroadcastChannel) {
      ReopenBroadcastChannel(message);
    } else {
      // The consume channel held the deliveries and consumers: start over on a new connection.
      Disconnect(message);
    }
    return Error{CodeForReply(info.code), message};
  }
  if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_ok_t close_ok{};
    [[maybe_unused]] int status =
        amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
  }
  Disconnect(message);
  return Error{ErrorCode::kUnavailable, message};
}

void RabbitMqJobQueue::Impl::ReopenPublishChannel(const std::string& why) {
  FailUnconfirmed(why);
  declared_.clear();
  amqp_channel_open(conn_, kPublishChannel);
  if (!CheckRpc(kPublishChannel, "reopen the publish channel")) {
    return;  // CheckRpc dropped the connection.
  }
  amqp_confirm_select(conn_, kPublishChannel);
  CheckRpc(kPublishChannel, "enable publisher confirms").IgnoreError("dropped the connection");
}

void RabbitMqJobQueue::Impl::DestroyConnection() {
  if (conn_ != nullptr) {
    amqp_destroy_connection(conn_);  // Closes the socket; the broker requeues unacked jobs.
    conn_ = nullptr;
  }
}

void RabbitMqJobQueue::Impl::Disconnect(const std::string& reason) {
  if (conn_ == nullptr) {
    return;
  }
  DestroyConnection();
  declared_.clear();
  armed_.clear();
  consumer_topics_.clear();
  retired_consumers_.clear();
  declared_exchanges_.clear();
  listen_queue_.clear();
  bound_.clear();
  listener_dirty_ = true;
  FailUnconfirmed("connection lost: " + reason);
  bool was_connected;
  {
    std::lock_guard lock(mutex_);
    was_connected = state_ == LinkState::kConnected;
    ++generation_;
    for (const auto& [job_id, held] : held_) {
      AddStaleLocked(job_id);
    }
    held_.clear();
    buffer_.clear();
    buffered_count_ = 0;
    round_completed_ = round_requested_;
    last_error_ = reason;
    state_ = options_.reconnect_attempts_max > 0 ? LinkState::kReconnecting : LinkState::kFailed;
    changed_.notify_all();
  }
  next_attempt_ = Clock::now();
  if (was_connected) {
    log::Warn("job_queue.connection_lost", {{"broker", Where()}, {"reason", reason}});
  }
}

void RabbitMqJobQueue::Impl::Reconcile() {
  if (listener_dirty_) {
    // After a reconnect or a reopened broadcast channel: listen again (what was sent meanwhile
    // is lost, as the port allows). A failure is retried on the next pass.
    if (auto listening = ReconcileListener(); !listening) {
      log::Warn("job_queue.listen_failed",
                {{"broker", Where()}, {"error", listening.error().message}});
    }
    if (conn_ == nullptr) {
      return;
    }
  }
  std::vector<std::string> topics;
  bool has_room;
  bool idle;
  std::uint64_t round_target = 0;
  {
    std::lock_guard lock(mutex_);
    if (!topics_.has_value()) {
      return;
    }
    topics = *topics_;
    has_room = held_.size() < static_cast<std::size_t>(options_.max_in_flight);
    idle = waiting_ == 0 && Clock::now() - idle_since_ >= kIdleGrace;
    if (round_requested_ > round_completed_) {
      round_target = round_requested_;
    }
  }
  auto has_buffered = [this](const std::string& topic) {
    std::lock_guard lock(mutex_);
    auto it = buffer_.find(topic);
    return it != buffer_.end() && !it->second.empty();
  };
  if (idle || !has_room) {
    // Nobody asks for a job (for a while: a worker loop calls Receive again at once), or no job
    // may be taken: cancel the waiting consumers so the broker gives jobs to sessions that ask.
    while (!armed_.empty() && conn_ != nullptr) {
      Disarm(armed_.begin()->first);
    }
    if (idle) {
      ReturnUnclaimed();
    }
  }
  if (conn_ != nullptr && round_target != 0) {
    bool barrier = false;
    for (const std::string& topic : topics) {
      if (conn_ == nullptr || !has_room) {
        break;
      }
      if (has_buffered(topic)) {
        continue;
      }
      if (armed_.count(topic) > 0) {
        // A job published before the Receive may still be on its way to the consumer.
        barrier = true;
      } else {
        Get(topic);
      }
    }
    if (barrier && conn_ != nullptr) {
      Barrier();
    }
    if (conn_ == nullptr) {
      return;
    }
    std::lock_guard lock(mutex_);
    round_completed_ = std::max(round_completed_, round_target);
    changed_.notify_all();
  }
  for (const std::string& topic : topics) {
    if (conn_ == nullptr) {
      return;
    }
    {
      // Checked afresh for each consumer: a Receive may have finished since the snapshot.
      std::lock_guard lock(mutex_);
      if (waiting_ == 0 || buffered_count_ > 0 ||
          held_.size() >= static_cast<std::size_t>(options_.max_in_flight)) {
        return;  // No demand, or a waiting Receive takes what is here first.
      }
    }
    if (armed_.count(topic) == 0) {
      Arm(topic);
    }
  }
}

void RabbitMqJobQueue::Impl::Barrier() {
  // The broker's channel answers in order: once qos-ok is here, so is every delivery the queues
  // had sent to this channel before it.
  amqp_basic_qos(conn_, kConsumeChannel, 0, 1, 0);
  if (CheckRpc(kConsumeChannel, "barrier")) {
    PumpFrames(true);
  }
}

void RabbitMqJobQueue::Impl::ReturnUnclaimed() {
  std::vector<std::uint64_t> tags;
  {
    std::lock_guard lock(mutex_);
    if (waiting_ > 0 || buffered_count_ == 0) {
      return;
    }
    for (const auto& [topic, queue] : buffer_) {
      for (const Buffered& item : queue) {
        tags.push_back(item.tag);
      }
    }
    buffer_.clear();
    buffered_count_ = 0;
  }
  // Taken for a Receive that is gone: back to the queue for sessions that ask.
  for (std::uint64_t tag : tags) {
    Reject(tag);
  }
}

Result<void> RabbitMqJobQueue::Impl::EnsureDeclared(const std::string& topic) {
  if (declared_.count(topic) > 0) {
    return {};
  }
  amqp_table_entry_t argument;
  argument.key = amqp_cstring_bytes("x-queue-type");
  argument.value.kind = AMQP_FIELD_KIND_UTF8;
  argument.value.value.bytes = amqp_cstring_bytes("quorum");
  amqp_table_t arguments{.num_entries = 1, .entries = &argument};
  amqp_queue_declare(conn_,
                     kPublishChannel,
                     ToBytes(topic),
                     /*passive=*/0,
                     /*durable=*/1,
                     /*exclusive=*/0,
                     /*auto_delete=*/0,
                     arguments);
  CLINKER_RETURN_IF_ERROR(CheckRpc(kPublishChannel, "declare quorum queue '" + topic + "'"));
  declared_.insert(topic);
  return {};
}

void RabbitMqJobQueue::Impl::Get(const std::string& topic) {
  if (auto declared = EnsureDeclared(topic); !declared) {
    log::Warn("job_queue.declare_failed", {{"topic", topic}, {"error", declared.error().message}});
    return;
  }
  amqp_rpc_reply_t reply = amqp_basic_get(conn_, kConsumeChannel, ToBytes(topic), /*no_ack=*/0);
  if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
    HandleFailedReply(kConsumeChannel, reply, "basic.get from '" + topic + "'");
    return;
  }
  if (reply.reply.id != AMQP_BASIC_GET_OK_METHOD) {
    return;  // get-empty.
  }
  const auto* ok = static_cast<const amqp_basic_get_ok_t*>(reply.reply.decoded);
  const std::uint64_t tag = ok->delivery_tag;
  const bool redelivered = ok->redelivered != 0;
  // Frames that came in during the get are older than its message: a delivery from a consumer
  // cancelled a moment ago is this topic's earlier job. They go first, content included, so the
  // topic's order holds and the get's content is read after theirs.
  PumpFrames(true);
  if (conn_ == nullptr) {
    return;
  }
  std::optional<Content> content = ReadContent(kConsumeChannel);
  if (!content.has_value()) {
    return;
  }
  AddToBuffer(topic, tag, redelivered, std::move(*content));
}

void RabbitMqJobQueue::Impl::Arm(const std::string& topic) {
  if (auto declared = EnsureDeclared(topic); !declared) {
    log::Warn("job_queue.declare_failed", {{"topic", topic}, {"error", declared.error().message}});
    return;
  }
  std::string tag = consumer_tag_prefix_ + std::to_string(next_consumer_++);
  amqp_basic_consume(conn_,
                     kConsumeChannel,
                     ToBytes(topic),
                     ToBytes(tag),
                     /*no_local=*/0,
                     /*no_ack=*/0,
                     /*exclusive=*/0,
                     amqp_empty_table);
  if (!CheckRpc(kConsumeChannel, "consume from '" + topic + "'")) {
    return;
  }
  armed_[topic] = tag;
  consumer_topics_[tag] = topic;
}

void RabbitMqJobQueue::Impl::Disarm(const std::string& topic) {
  auto it = armed_.find(topic);
  if (it == armed_.end()) {
    return;
  }
  std::string tag = std::move(it->second);
  armed_.erase(it);
  amqp_basic_cancel_t cancel{};
  cancel.consumer_tag = ToBytes(tag);
  cancel.nowait = 1;
  int status = amqp_send_method(conn_, kConsumeChannel, AMQP_BASIC_CANCEL_METHOD, &cancel);
  // A delivery may cross the cancel; its topic stays known for a while.
  retired_consumers_.push_back(tag);
  while (retired_consumers_.size() > kMaxRetiredConsumers) {
    consumer_topics_.erase(retired_consumers_.front());
    retired_consumers_.pop_front();
  }
  if (status != AMQP_STATUS_OK) {
    Disconnect(std::string("cancel consumer: ") + amqp_error_string2(status));
  }
}

void RabbitMqJobQueue::Impl::Reject(std::uint64_t tag) {
  if (conn_ == nullptr) {
    return;
  }
  int status = amqp_basic_reject(conn_, kConsumeChannel, tag, /*requeue=*/1);
  if (status != AMQP_STATUS_OK) {
    Disconnect(std::string("reject: ") + amqp_error_string2(status));
  }
}

Result<std::future<Result<void>>> RabbitMqJobQueue::Impl::SendPublish(const std::string& topic,
                                                                      const std::string& payload,
                                                                      const std::string& job_id) {
  if (conn_ == nullptr) {
    std::lock_guard lock(mutex_);
    return tl::unexpected(NotConnectedLocked());
  }
  CLINKER_RETURN_IF_ERROR(EnsureDeclared(topic));
  amqp_table_entry_t published_at;
  published_at.key = amqp_cstring_bytes(kPublishedAtHeader);
  published_at.value.kind = AMQP_FIELD_KIND_I64;
  published_at.value.value.i64 = NowMicros();
  amqp_basic_properties_t properties;
  std::memset(&properties, 0, sizeof(properties));
  properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                      AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
  properties.content_type = amqp_cstring_bytes("application/octet-stream");
  properties.delivery_mode = AMQP_DELIVERY_PERSISTENT;
  properties.message_id = ToBytes(job_id);
  properties.headers = amqp_table_t{.num_entries = 1, .entries = &published_at};
  int status = amqp_basic_publish(conn_,
                                  kPublishChannel,
                                  amqp_empty_bytes,
                                  ToBytes(topic),
                                  /*mandatory=*/1,
                                  /*immediate=*/0,
                                  &properties,
                                  ToBytes(payload));
  if (status != AMQP_STATUS_OK) {
    // A message the broker did not receive whole is discarded with the connection.
    std::string why = std::string("publish: ") + amqp_error_string2(status);
    Disconnect(why);
    return MakeError(ErrorCode::kUnavailable, "RabbitMQ at " + Where() + ": " + why);
  }
  auto pending = std::make_shared<PendingPublish>();
  pending->job_id = job_id;
  std::future<Result<void>> confirmed = pending->confirmed.get_future();
  unconfirmed_.emplace(next_publish_seq_++, std::move(pending));
  return confirmed;
}

Result<void> RabbitMqJobQueue::Impl::ApplySubscribe(const std::vector<std::string>& topics) {
  if (conn_ == nullptr) {
    std::lock_guard lock(mutex_);
    return tl::unexpected(NotConnectedLocked());
  }
  // Declared first, so that a topic that cannot be used changes nothing.
  for (const std::string& topic : topics) {
    CLINKER_RETURN_IF_ERROR(EnsureDeclared(topic));
  }
  std::vector<std::uint64_t> dropped;
  {
    std::lock_guard lock(mutex_);
    topics_ = topics;
    for (auto it = buffer_.begin(); it != buffer_.end();) {
      if (std::find(topics.begin(), topics.end(), it->first) == topics.end()) {
        for (const Buffered& item : it->second) {
          dropped.push_back(item.tag);
        }
        buffered_count_ -= it->second.size();
        it = buffer_.erase(it);
      } else {
        ++it;
      }
    }
    changed_.notify_all();
  }
  std::vector<std::string> unsubscribed;
  for (const auto& [topic, tag] : armed_) {
    if (std::find(topics.begin(), topics.end(), topic) == topics.end()) {
      unsubscribed.push_back(topic);
    }
  }
  for (const std::string& topic : unsubscribed) {
    Disarm(topic);
  }
  for (std::uint64_t tag : dropped) {
    Reject(tag);
  }
  return {};
}

Result<void> RabbitMqJobQueue::Impl::Settle(const Held& held,
                                            const std::string& job_id,
                                            bool requeue) {
  bool stale;
  bool receiving;
  {
    std::lock_guard lock(mutex_);
    stale = conn_ == nullptr || held.generation != generation_;
    if (stale && !requeue) {
      AddStaleLocked(job_id);
    }
    receiving = waiting_ > 0;
  }
  if (stale) {
    if (requeue) {
      return {};  // The broker requeued it when the connection went.
    }
    return tl::unexpected(StaleError(job_id));
  }
  if (requeue && !receiving) {
    // Cancelled first (the channel keeps the order), so the job does not come straight back to
    // this session's idle consumer but goes to one that asks.
    Disarm(held.topic);
    if (conn_ == nullptr) {
      return {};
    }
  }
  int status = requeue ? amqp_basic_reject(conn_, kConsumeChannel, held.tag, /*requeue=*/1)
                       : amqp_basic_ack(conn_, kConsumeChannel, held.tag, /*multiple=*/0);
  if (status != AMQP_STATUS_OK) {
    std::string why = std::string(requeue ? "reject" : "ack") + ": " + amqp_error_string2(status);
    Disconnect(why);
    if (requeue) {
      return {};  // Not sent, or sent: the job is back in the queue either way.
    }
    return MakeError(ErrorCode::kOutcomeUnknown,
                     "RabbitMQ at " + Where() + ": job " + job_id +
                         ": connection lost while acking (" + why + "); it may run again");
  }
  return {};
}

void RabbitMqJobQueue::Impl::Shutdown() {
  RunRequests();
  if (conn_ != nullptr) {
    // A clean close: the broker requeues this session's unacked jobs at once.
    timeval tv = ToTimeval(kCloseTimeout);
    amqp_set_rpc_timeout(conn_, &tv);
    amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    DestroyConnection();
  }
  FailUnconfirmed("session closed");
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<RabbitMqJobQueue>> RabbitMqJobQueue::Open(const Options& options) {
  if (options.host.empty() || options.port <= 0 || options.port > 65535) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "RabbitMQ address is invalid: '" + options.host + ":" + std::to_string(options.port) + "'");
  }
  if (options.max_in_flight < 1 || options.max_in_flight > 65535) {
    return MakeError(ErrorCode::kInvalidArgument, "max_in_flight must be 1 to 65535");
  }
  if (options.heartbeat.count() < 0 || options.heartbeat.count() > 65535 ||
      options.connect_timeout.count() <= 0 || options.publish_timeout.count() <= 0 ||
      options.reconnect_attempts_max < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "RabbitMQ job queue timeouts are invalid");
  }
  auto impl = std::make_unique<Impl>(options);
  CLINKER_RETURN_IF_ERROR(impl->Init());
  impl->Start();
  return std::unique_ptr<RabbitMqJobQueue>(new RabbitMqJobQueue(std::move(impl)));
}

RabbitMqJobQueue::RabbitMqJobQueue(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RabbitMqJobQueue::~RabbitMqJobQueue() = default;

Result<std::string> RabbitMqJobQueue::Publish(std::string_view topic, std::string_view payload) {
  return impl_->Publish(topic, payload);
}

Result<void> RabbitMqJobQueue::Subscribe(const std::vector<std::string>& topics) {
  return impl_->Subscribe(topics);
}

Result<std::optional<ports::Delivery>> RabbitMqJobQueue::Receive(std::chrono::milliseconds wait) {
  return impl_->Receive(wait);
}

Result<void> RabbitMqJobQueue::Ack(const ports::Delivery& delivery) {
  return impl_->Ack(delivery);
}

Result<void> RabbitMqJobQueue::Requeue(const ports::Delivery& delivery) {
  return impl_->Requeue(delivery);
}

bool RabbitMqJobQueue::connected() const {
  return impl_->connected();
}

std::int64_t RabbitMqJobQueue::connections_opened() const {
  return impl_->connections_opened();
}

Result<void> RabbitMqJobQueue::Broadcast(std::string_view channel, std::string_view payload) {
  return impl_->Broadcast(channel, payload);
}

Result<void> RabbitMqJobQueue::Listen(const std::vector<std::string>& channels) {
  return impl_->Listen(channels);
}

Result<std::vector<ports::BroadcastMessage>> RabbitMqJobQueue::ReceiveBroadcasts(
    std::chrono::milliseconds wait) {
  return impl_->ReceiveBroadcasts(wait);
}

// ---------------------------------------------------------------------------------------------
// Broadcasts: caller side.

Result<void> RabbitMqJobQueue::Impl::Broadcast(std::string_view channel, std::string_view payload) {
  CLINKER_RETURN_IF_ERROR(ValidateChannel(channel));
  return Call<void>(
      [this, channel = std::string(channel), payload = std::string(payload)] {
        return SendBroadcast(channel, payload);
      },
      // Best effort anyway; a late send is harmless.
      ErrorCode::kUnavailable);
}

Result<void> RabbitMqJobQueue::Impl::Listen(const std::vector<std::string>& channels) {
  std::vector<std::string> unique;
  for (const std::string& channel : channels) {
    CLINKER_RETURN_IF_ERROR(ValidateChannel(channel));
    if (std::find(unique.begin(), unique.end(), channel) == unique.end()) {
      unique.push_back(channel);
    }
  }
  return Call<void>(
      [this, unique] {
        {
          std::lock_guard lock(mutex_);
          listen_channels_ = unique;
        }
        listener_dirty_ = true;
        if (conn_ == nullptr) {
          // Recorded: the listener is set up once the connection is back.
          std::lock_guard lock(mutex_);
          return Result<void>(tl::unexpected(NotConnectedLocked()));
        }
        return ReconcileListener();
      },
      ErrorCode::kUnavailable);
}

Result<std::vector<ports::BroadcastMessage>> RabbitMqJobQueue::Impl::ReceiveBroadcasts(
    milliseconds wait) {
  const auto deadline = Clock::now() + std::max(wait, milliseconds(0));
  std::unique_lock lock(mutex_);
  if (!listen_channels_.has_value()) {
    return MakeError(ErrorCode::kInvalidArgument, "ReceiveBroadcasts before Listen");
  }
  changed_.wait_until(
      lock, deadline, [this] { return !inbox_.empty() || state_ == LinkState::kFailed; });
  if (inbox_.empty() && state_ == LinkState::kFailed) {
    return tl::unexpected(NotConnectedLocked());
  }
  std::vector<ports::BroadcastMessage> messages(std::make_move_iterator(inbox_.begin()),
                                                std::make_move_iterator(inbox_.end()));
  inbox_.clear();
  return messages;
}

// ---------------------------------------------------------------------------------------------
// Broadcasts: I/O thread.

Result<void> RabbitMqJobQueue::Impl::OpenBroadcastChannel() {
  amqp_channel_open(conn_, kBroadcastChannel);
  CLINKER_RETURN_IF_ERROR(CheckRpc(kBroadcastChannel, "open the broadcast channel"));
  declared_exchanges_.clear();
  listen_queue_.clear();
  bound_.clear();
  listener_dirty_ = true;
  return {};
}

void RabbitMqJobQueue::Impl::ReopenBroadcastChannel(const std::string& why) {
  log::Warn("job_queue.broadcast_channel_closed", {{"broker", Where()}, {"reason", why}});
  // The listening queue lost its only consumer with the channel, so the broker auto-deletes it;
  // OpenBroadcastChannel marks the listener for a new queue on the next pass.
  OpenBroadcastChannel().IgnoreError("CheckRpc dropped the connection; it is set up again");
}

Result<void> RabbitMqJobQueue::Impl::EnsureExchange(const std::string& exchange) {
  if (declared_exchanges_.count(exchange) > 0) {
    return {};
  }
  // Non-durable and not auto-deleted: it lasts until the broker restarts, so a sender that has
  // declared it never publishes to a vanished exchange (an error that closes the channel).
  amqp_exchange_declare(conn_,
                        kBroadcastChannel,
                        ToBytes(exchange),
                        amqp_cstring_bytes("fanout"),
                        /*passive=*/0,
                        /*durable=*/0,
                        /*auto_delete=*/0,
                        /*internal=*/0,
                        amqp_empty_table);
  CLINKER_RETURN_IF_ERROR(CheckRpc(kBroadcastChannel, "declare exchange '" + exchange + "'"));
  declared_exchanges_.insert(exchange);
  return {};
}

Result<void> RabbitMqJobQueue::Impl::SendBroadcast(const std::string& channel,
                                                   const std::string& payload) {
  if (conn_ == nullptr) {
    std::lock_guard lock(mutex_);
    return tl::unexpected(NotConnectedLocked());
  }
  std::string exchange = ExchangeFor(channel);
  CLINKER_RETURN_IF_ERROR(EnsureExchange(exchange));
  amqp_basic_properties_t properties;
  std::memset(&properties, 0, sizeof(properties));
  properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  properties.content_type = amqp_cstring_bytes("application/octet-stream");
  properties.delivery_mode = 1;  // Transient.
  int status = amqp_basic_publish(conn_,
                                  kBroadcastChannel,
                                  ToBytes(exchange),
                                  amqp_empty_bytes,
                                  /*mandatory=*/0,
                                  /*immediate=*/0,
                                  &properties,
                                  ToBytes(payload));
  if (status != AMQP_STATUS_OK) {
    std::string why = std::string("broadcast: ") + amqp_error_string2(status);
    Disconnect(why);
    return MakeError(ErrorCode::kUnavailable, "RabbitMQ at " + Where() + ": " + why);
  }
  return {};
}

Result<void> RabbitMqJobQueue::Impl::ReconcileListener() {
  std::vector<std::string> wanted;
  {
    std::lock_guard lock(mutex_);
    if (!listen_channels_.has_value()) {
      listener_dirty_ = false;
      return {};
    }
    wanted = *listen_channels_;
  }
  if (listen_queue_.empty()) {
    // Exclusive and auto-deleted: it lives exactly as long as this session's connection.
    amqp_queue_declare_ok_t* declared = amqp_queue_declare(conn_,
                                                           kBroadcastChannel,
                                                           amqp_empty_bytes,
                                                           /*passive=*/0,
                                                           /*durable=*/0,
                                                           /*exclusive=*/1,
                                                           /*auto_delete=*/1,
                                                           amqp_empty_table);
    CLINKER_RETURN_IF_ERROR(CheckRpc(kBroadcastChannel, "declare the listening queue"));
    std::string queue = ToString(declared->queue);
    amqp_basic_consume(conn_,
                       kBroadcastChannel,
                       ToBytes(queue),
                       ToBytes(consumer_tag_prefix_ + "broadcast"),
                       /*no_local=*/0,
                       /*no_ack=*/1,
                       /*exclusive=*/1,
                       amqp_empty_table);
    CLINKER_RETURN_IF_ERROR(CheckRpc(kBroadcastChannel, "consume the listening queue"));
    listen_queue_ = std::move(queue);
    bound_.clear();
  }
  for (const std::string& channel : wanted) {
    if (bound_.count(channel) > 0) {
      continue;
    }
    std::string exchange = ExchangeFor(channel);
    CLINKER_RETURN_IF_ERROR(EnsureExchange(exchange));
    amqp_queue_bind(conn_,
                    kBroadcastChannel,
                    ToBytes(listen_queue_),
                    ToBytes(exchange),
                    amqp_empty_bytes,
                    amqp_empty_table);
    CLINKER_RETURN_IF_ERROR(CheckRpc(kBroadcastChannel, "bind to exchange '" + exchange + "'"));
    bound_.insert(channel);
  }
  std::vector<std::string> unwanted;
  for (const std::string& channel : bound_) {
    if (std::find(wanted.begin(), wanted.end(), channel) == wanted.end()) {
      unwanted.push_back(channel);
    }
  }
  for (const std::string& channel : unwanted) {
    std::string exchange = ExchangeFor(channel);
    amqp_queue_unbind(conn_,
                      kBroadcastChannel,
                      ToBytes(listen_queue_),
                      ToBytes(exchange),
                      amqp_empty_bytes,
                      amqp_empty_table);
    CLINKER_RETURN_IF_ERROR(CheckRpc(kBroadcastChannel, "unbind from exchange '" + exchange + "'"));
    bound_.erase(channel);
  }
  listener_dirty_ = false;
  return {};
}

void RabbitMqJobQueue::Impl::HandleBroadcastDeliver(const amqp_frame_t& frame) {
  // Copied out first: reading the content reuses the buffer the method lives in.
  const auto* deliver = static_cast<const amqp_basic_deliver_t*>(frame.payload.method.decoded);
  std::string exchange = ToString(deliver->exchange);
  std::optional<Content> content = ReadContent(kBroadcastChannel);
  if (!content.has_value()) {
    return;
  }
  const std::string_view prefix = kBroadcastExchangePrefix;
  if (exchange.rfind(prefix, 0) != 0) {
    return;  // Not one of ours (a foreign binding): ignore.
  }
  std::lock_guard lock(mutex_);
  // A message for a channel unbound a moment ago is still one this session listened to.
  if (inbox_.size() >= kMaxPendingBroadcasts) {
    inbox_.pop_front();
  }
  inbox_.push_back(ports::BroadcastMessage{.channel = exchange.substr(prefix.size()),
                                           .payload = std::move(content->payload)});
  changed_.notify_all();
}

}  // namespace clinker::adapters::rabbitmq
