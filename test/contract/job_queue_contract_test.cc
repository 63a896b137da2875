// Goal: every JobQueue adapter keeps the promises of ports/job_queue.h, so services and the
// simulator can rely on the port alone: jobs, and the separate broadcast channel (every listening
// session gets each broadcast once, others none, and broadcasts and jobs never mix).
//
// Method: one typed test suite, instantiated once per adapter. A factory per adapter opens any
// number of consumer sessions on one shared queue (one MemoryBroker, one SQLite file in a fresh
// temp dir, or the RabbitMQ broker that the "rabbitmq" CTest fixture started), so the tests can
// play several consumers. RabbitMQ is shared by every test process of a ctest run, so its factory
// prefixes every topic with a random per-test prefix (hidden from the test by a decorator);
// without the fixture's settings the RabbitMQ tests fail and say how to start the broker. Timing
// claims are checked with generous bounds (the machine is shared); every wait and loop is bounded
// in time and count. Crash behaviour with real processes is in test/unit/sqlite_job_queue_test.cc
// and test/unit/rabbitmq_job_queue_test.cc.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <stdlib.h>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/rabbitmq/rabbitmq_job_queue.h"
#include "clinker/adapters/sqlite/sqlite_job_queue.h"
#include "clinker/core/uuid.h"
#include "clinker/ports/job_queue.h"

#include "support/test_servers.h"

namespace clinker {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Long enough that a test never waits for it by accident on a slow machine.
constexpr milliseconds kLongWait{5000};
// For "nothing arrives": short, so negative checks stay fast.
constexpr milliseconds kShortWait{200};

class MemoryQueueFactory {
 public:
  Result<std::unique_ptr<ports::JobQueue>> Open(int max_in_flight) {
    return std::make_unique<adapters::MemoryJobQueue>(
        broker_, adapters::MemoryJobQueue::Options{.max_in_flight = max_in_flight});
  }

 private:
  std::shared_ptr<adapters::MemoryBroker> broker_ = std::make_shared<adapters::MemoryBroker>();
};

class SqliteQueueFactory {
 public:
  SqliteQueueFactory() {
    const char* tmp = getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/clinker_queue_contract_XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) {
      dir_ = pattern;
    } else {
      ADD_FAILURE() << "mkdtemp failed for " << pattern;
    }
  }

  SqliteQueueFactory(const SqliteQueueFactory&) = delete;
  SqliteQueueFactory& operator=(const SqliteQueueFactory&) = delete;

  ~SqliteQueueFactory() {
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  Result<std::unique_ptr<ports::JobQueue>> Open(int max_in_flight) {
    adapters::sqlite::SqliteJobQueue::Options options;
    options.database.path = dir_ + "/queue.db";
    options.sessions_dir = dir_ + "/sessions";
    options.max_in_flight = max_in_flight;
    // Long, so the wake-up test proves the same-process notifier rather than polling.
    options.poll_interval = milliseconds(2000);
    options.reclaim_interval = milliseconds(500);
    auto queue = adapters::sqlite::SqliteJobQueue::Open(options);
    if (!queue) {
      return tl::unexpected(queue.error());
    }
    return std::unique_ptr<ports::JobQueue>(std::move(*queue));
  }

 private:
  std::string dir_;
};

// Hides a per-test topic prefix: the test sees "a", the broker a queue "<prefix>a". Empty topics
// pass through unchanged, so the adapter's own validation is what the tests check.
class PrefixedJobQueue final : public ports::JobQueue {
 public:
  PrefixedJobQueue(std::unique_ptr<ports::JobQueue> inner, std::string prefix)
      : inner_(std::move(inner)), prefix_(std::move(prefix)) {}

  Result<std::string> Publish(std::string_view topic, std::string_view payload) override {
    return inner_->Publish(Prefixed(topic), payload);
  }

  Result<void> Subscribe(const std::vector<std::string>& topics) override {
    std::vector<std::string> prefixed;
    for (const std::string& topic : topics) {
      prefixed.push_back(Prefixed(topic));
    }
    return inner_->Subscribe(prefixed);
  }

  Result<std::optional<ports::Delivery>> Receive(milliseconds wait) override {
    auto delivery = inner_->Receive(wait);
    if (delivery && delivery->has_value()) {
      std::string& topic = (*delivery)->topic;
      if (topic.rfind(prefix_, 0) == 0) {
        topic.erase(0, prefix_.size());
      } else {
        ADD_FAILURE() << "delivery from a foreign topic: " << topic;
      }
    }
    return delivery;
  }

  Result<void> Ack(const ports::Delivery& delivery) override {
    return inner_->Ack(WithPrefix(delivery));
  }

  Result<void> Requeue(const ports::Delivery& delivery) override {
    return inner_->Requeue(WithPrefix(delivery));
  }

  Result<void> Broadcast(std::string_view channel, std::string_view payload) override {
    return inner_->Broadcast(Prefixed(channel), payload);
  }

  Result<void> Listen(const std::vector<std::string>& channels) override {
    std::vector<std::string> prefixed;
    for (const std::string& channel : channels) {
      prefixed.push_back(Prefixed(channel));
    }
    return inner_->Listen(prefixed);
  }

  Result<std::vector<ports::BroadcastMessage>> ReceiveBroadcasts(milliseconds wait) override {
    auto messages = inner_->ReceiveBroadcasts(wait);
    if (messages) {
      for (ports::BroadcastMessage& message : *messages) {
        if (message.channel.rfind(prefix_, 0) == 0) {
          message.channel.erase(0, prefix_.size());
        } else {
          ADD_FAILURE() << "broadcast from a foreign channel: " << message.channel;
        }
      }
    }
    return messages;
  }

 private:
  std::string Prefixed(std::string_view topic) const {
    return topic.empty() ? std::string() : prefix_ + std::string(topic);
  }

  ports::Delivery WithPrefix(const ports::Delivery& delivery) const {
    ports::Delivery copy = delivery;
    copy.topic = Prefixed(copy.topic);
    return copy;
  }

  std::unique_ptr<ports::JobQueue> inner_;
  std::string prefix_;
};

class RabbitMqQueueFactory {
 public:
  Result<std::unique_ptr<ports::JobQueue>> Open(int max_in_flight) {
    auto host = test_support::TestServerSetting("rabbitmq", "CLINKER_TEST_RMQ_HOST");
    auto port = test_support::TestServerSetting("rabbitmq", "CLINKER_TEST_RMQ_PORT");
    auto user = test_support::TestServerSetting("rabbitmq", "CLINKER_TEST_RMQ_USER");
    auto password = test_support::TestServerSetting("rabbitmq", "CLINKER_TEST_RMQ_PASSWORD");
    if (!host || !port || !user || !password) {
      std::string env_path = test_support::TestServerEnvPath("rabbitmq");
      std::string message =
          "RabbitMQ test settings missing (" +
          (env_path.empty() ? std::string("CLINKER_TEST_SERVERS_DIR is not set") : env_path) +
          "): run through ctest, whose \"rabbitmq\" fixture runs scripts/test_server_rabbitmq.sh, "
          "or start one with `scripts/test_server_rabbitmq.sh start DIR` and set "
          "CLINKER_TEST_SERVERS_DIR to the parent of DIR (DIR named rabbitmq)";
      ADD_FAILURE() << message;
      return MakeError(ErrorCode::kUnavailable, message);
    }
    adapters::rabbitmq::RabbitMqJobQueue::Options options;
    options.host = *host;
    options.port = atoi(port->c_str());
    options.user = *user;
    options.password = *password;
    options.max_in_flight = max_in_flight;
    options.heartbeat = std::chrono::seconds(5);
    auto queue = adapters::rabbitmq::RabbitMqJobQueue::Open(options);
    if (!queue) {
      return tl::unexpected(queue.error());
    }
    return std::unique_ptr<ports::JobQueue>(
        std::make_unique<PrefixedJobQueue>(std::move(*queue), prefix_));
  }

 private:
  // Queues are named after topics and the broker is shared by parallel test processes.
  const std::string prefix_ = "contract-" + NewUuid().substr(0, 8) + ".";
};

template <class Factory>
class JobQueueContractTest : public ::testing::Test {
 protected:
  // Records a failure and returns nullptr when the adapter cannot open a session.
  std::unique_ptr<ports::JobQueue> NewSession(int max_in_flight = 4,
                                              const std::vector<std::string>& topics = {"a"}) {
    auto queue = factory_.Open(max_in_flight);
    if (!queue) {
      ADD_FAILURE() << "open session: " << queue.error().ToString();
      return nullptr;
    }
    auto subscribed = (*queue)->Subscribe(topics);
    if (!subscribed) {
      ADD_FAILURE() << "subscribe: " << subscribed.error().ToString();
      return nullptr;
    }
    return std::move(*queue);
  }

  // Publishes and returns the job id; records a failure on error.
  static std::string MustPublish(ports::JobQueue& queue,
                                 const std::string& topic,
                                 const std::string& payload) {
    auto id = queue.Publish(topic, payload);
    if (!id) {
      ADD_FAILURE() << "publish: " << id.error().ToString();
      return {};
    }
    return *id;
  }

  // The delivery, or nullopt if none came within `wait`; records a failure on error.
  static std::optional<ports::Delivery> MustReceive(ports::JobQueue& queue, milliseconds wait) {
    auto delivery = queue.Receive(wait);
    if (!delivery) {
      ADD_FAILURE() << "receive: " << delivery.error().ToString();
      return std::nullopt;
    }
    return *delivery;
  }

  // Every broadcast that arrives within `wait`, reading until `count` came or the time is up;
  // records a failure on error.
  static std::vector<ports::BroadcastMessage> CollectBroadcasts(ports::JobQueue& queue,
                                                                std::size_t count,
                                                                milliseconds wait) {
    std::vector<ports::BroadcastMessage> collected;
    auto deadline = Clock::now() + wait;
    for (int round = 0; round < 1000; ++round) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() < 0 || collected.size() >= count) {
        break;
      }
      auto messages = queue.ReceiveBroadcasts(left);
      if (!messages) {
        ADD_FAILURE() << "receive broadcasts: " << messages.error().ToString();
        break;
      }
      collected.insert(collected.end(), messages->begin(), messages->end());
    }
    return collected;
  }

  Factory factory_;
};

using Adapters = ::testing::Types<MemoryQueueFactory, SqliteQueueFactory, RabbitMqQueueFactory>;

class AdapterNames {
 public:
  template <class T>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<T, MemoryQueueFactory>) {
      return "Memory";
    } else if constexpr (std::is_same_v<T, SqliteQueueFactory>) {
      return "Sqlite";
    } else {
      return "RabbitMq";
    }
  }
};

TYPED_TEST_SUITE(JobQueueContractTest, Adapters, AdapterNames);

TYPED_TEST(JobQueueContractTest, PublishThenReceiveReturnsTheJob) {
  auto queue = this->NewSession();
  ASSERT_NE(queue, nullptr);
  std::string id = this->MustPublish(*queue, "a", R"({"volume_id":"v1"})");
  ASSERT_FALSE(id.empty());

  auto delivery = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  EXPECT_EQ(delivery->job_id, id);
  EXPECT_EQ(delivery->topic, "a");
  EXPECT_EQ(delivery->payload, R"({"volume_id":"v1"})");
  EXPECT_FALSE(delivery->redelivered);
  EXPECT_EQ(delivery->delivery_count, 1);
}

TYPED_TEST(JobQueueContractTest, PayloadIsKeptByteForByte) {
  auto queue = this->NewSession();
  ASSERT_NE(queue, nullptr);
  using namespace std::string_literals;
  std::string payload = "nul\0byte, utf-8 \xc3\xa9, quote ' and \""s;
  ASSERT_EQ(payload.find('\0'), 3u);  // The literal really holds a NUL byte.
  this->MustPublish(*queue, "a", payload);
  auto delivery = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  EXPECT_EQ(delivery->payload, payload);
}

TYPED_TEST(JobQueueContractTest, JobIdsAreUnique) {
  auto queue = this->NewSession();
  ASSERT_NE(queue, nullptr);
  std::string first = this->MustPublish(*queue, "a", "same");
  std::string second = this->MustPublish(*queue, "a", "same");
  EXPECT_FALSE(first.empty());
  EXPECT_NE(first, second);
}

TYPED_TEST(JobQueueContractTest, ReceiveOnEmptyQueueReturnsNulloptAfterTheWait) {
  auto queue = this->NewSession();
  ASSERT_NE(queue, nullptr);
  auto start = Clock::now();
  auto delivery = this->MustReceive(*queue, milliseconds(300));
  auto elapsed = Clock::now() - start;
  EXPECT_FALSE(delivery.has_value());
  EXPECT_GE(elapsed, milliseconds(290));
  EXPECT_LT(elapsed, milliseconds(2000));
}

TYPED_TEST(JobQueueContractTest, ReceiveWithZeroWaitDoesNotBlock) {
  auto queue = this->NewSession();
  ASSERT_NE(queue, nullptr);
  auto start = Clock::now();
  EXPECT_FALSE(this->MustReceive(*queue, milliseconds(0)).has_value());
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  this->MustPublish(*queue, "a", "x");
  EXPECT_TRUE(this->MustReceive(*queue, milliseconds(0)).has_value());
}

TYPED_TEST(JobQueueContractTest, ReceiveBeforeSubscribeIsInvalid) {
  auto queue = this->factory_.Open(4);
  ASSERT_TRUE(queue) << queue.error().ToString();
  auto delivery = (*queue)->Receive(kShortWait);
  ASSERT_FALSE(delivery);
  EXPECT_EQ(delivery.error().code, ErrorCode::kInvalidArgument);
}

TYPED_TEST(JobQueueContractTest, EmptyTopicIsInvalid) {
  auto queue = this->NewSession();
  ASSERT_NE(queue, nullptr);
  auto published = queue->Publish("", "x");
  ASSERT_FALSE(published);
  EXPECT_EQ(published.error().code, ErrorCode::kInvalidArgument);
  auto subscribed = queue->Subscribe({"a", ""});
  ASSERT_FALSE(subscribed);
  EXPECT_EQ(subscribed.error().code, ErrorCode::kInvalidArgument);
}

TYPED_TEST(JobQueueContractTest, TopicsIsolate) {
  auto on_a = this->NewSession(4, {"a"});
  auto on_b = this->NewSession(4, {"b"});
  ASSERT_NE(on_a, nullptr);
  ASSERT_NE(on_b, nullptr);
  std::string b_id = this->MustPublish(*on_a, "b", "for b");

  EXPECT_FALSE(this->MustReceive(*on_a, kShortWait).has_value());
  auto delivery = this->MustReceive(*on_b, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  EXPECT_EQ(delivery->job_id, b_id);
  EXPECT_EQ(delivery->topic, "b");
}

TYPED_TEST(JobQueueContractTest, SubscribeReplacesTheTopicSet) {
  auto queue = this->NewSession(4, {"a"});
  ASSERT_NE(queue, nullptr);
  this->MustPublish(*queue, "a", "on a");
  ASSERT_TRUE(queue->Subscribe({"b", "c"}));
  EXPECT_FALSE(this->MustReceive(*queue, kShortWait).has_value());
  this->MustPublish(*queue, "c", "on c");
  auto delivery = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  EXPECT_EQ(delivery->topic, "c");
}

TYPED_TEST(JobQueueContractTest, FifoWithinATopic) {
  auto queue = this->NewSession(4, {"a"});
  ASSERT_NE(queue, nullptr);
  constexpr int kJobs = 20;
  for (int i = 0; i < kJobs; ++i) {
    this->MustPublish(*queue, "a", "job-" + std::to_string(i));
    this->MustPublish(*queue, "other", "noise-" + std::to_string(i));
  }
  for (int i = 0; i < kJobs; ++i) {
    auto delivery = this->MustReceive(*queue, kLongWait);
    ASSERT_TRUE(delivery.has_value()) << "job " << i;
    EXPECT_EQ(delivery->payload, "job-" + std::to_string(i));
    ASSERT_TRUE(queue->Ack(*delivery));
  }
}

TYPED_TEST(JobQueueContractTest, SeveralTopicsAreReceivedOldestFirst) {
  auto queue = this->NewSession(4, {"a", "b"});
  ASSERT_NE(queue, nullptr);
  this->MustPublish(*queue, "b", "1");
  this->MustPublish(*queue, "a", "2");
  this->MustPublish(*queue, "b", "3");
  for (std::string expected : {"1", "2", "3"}) {
    auto delivery = this->MustReceive(*queue, kLongWait);
    ASSERT_TRUE(delivery.has_value());
    EXPECT_EQ(delivery->payload, expected);
    ASSERT_TRUE(queue->Ack(*delivery));
  }
}

TYPED_TEST(JobQueueContractTest, AckRemovesTheJobForGood) {
  auto first = this->NewSession();
  auto second = this->NewSession();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  this->MustPublish(*first, "a", "x");
  auto delivery = this->MustReceive(*first, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  ASSERT_TRUE(first->Ack(*delivery));
  first.reset();  // Would requeue the job if the ack had not removed it.

  EXPECT_FALSE(this->MustReceive(*second, kShortWait).has_value());
}

TYPED_TEST(JobQueueContractTest, AckIsIdempotent) {
  auto queue = this->NewSession();
  ASSERT_NE(queue, nullptr);
  this->MustPublish(*queue, "a", "x");
  auto delivery = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  auto acked = queue->Ack(*delivery);
  EXPECT_TRUE(acked) << acked.error().ToString();
  auto again = queue->Ack(*delivery);
  EXPECT_TRUE(again) << again.error().ToString();
  EXPECT_FALSE(this->MustReceive(*queue, kShortWait).has_value());
}

TYPED_TEST(JobQueueContractTest, AckFromAnotherSessionDoesNotRemoveAHeldJob) {
  auto holder = this->NewSession();
  auto other = this->NewSession();
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  this->MustPublish(*holder, "a", "x");
  auto delivery = this->MustReceive(*holder, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  EXPECT_TRUE(other->Ack(*delivery));  // Succeeds (idempotent) but must not touch the job.
  holder.reset();
  auto redelivery = this->MustReceive(*other, kLongWait);
  ASSERT_TRUE(redelivery.has_value());
  EXPECT_EQ(redelivery->job_id, delivery->job_id);
}

TYPED_TEST(JobQueueContractTest, InFlightJobIsNotDeliveredToAnotherSession) {
  auto first = this->NewSession();
  auto second = this->NewSession();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  this->MustPublish(*first, "a", "x");
  auto delivery = this->MustReceive(*first, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  EXPECT_FALSE(this->MustReceive(*second, kShortWait).has_value());
  EXPECT_FALSE(this->MustReceive(*first, milliseconds(0)).has_value());
}

TYPED_TEST(JobQueueContractTest, DestroyedSessionsJobsAreRedelivered) {
  auto first = this->NewSession();
  auto second = this->NewSession();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::string id = this->MustPublish(*first, "a", "x");
  auto delivery = this->MustReceive(*first, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  first.reset();

  auto redelivery = this->MustReceive(*second, kLongWait);
  ASSERT_TRUE(redelivery.has_value());
  EXPECT_EQ(redelivery->job_id, id);
  EXPECT_EQ(redelivery->payload, "x");
  EXPECT_TRUE(redelivery->redelivered);
  EXPECT_EQ(redelivery->delivery_count, 2);
}

TYPED_TEST(JobQueueContractTest, DestroyingASessionWakesAWaitingReceiver) {
  auto first = this->NewSession();
  auto second = this->NewSession();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  this->MustPublish(*first, "a", "x");
  ASSERT_TRUE(this->MustReceive(*first, kLongWait).has_value());

  std::optional<ports::Delivery> redelivery;
  Clock::time_point destroyed;
  Clock::time_point received_at;
  std::thread waiter([&] {
    redelivery = this->MustReceive(*second, kLongWait);
    received_at = Clock::now();
  });
  std::this_thread::sleep_for(milliseconds(100));
  destroyed = Clock::now();
  first.reset();
  waiter.join();
  ASSERT_TRUE(redelivery.has_value());
  EXPECT_TRUE(redelivery->redelivered);
  EXPECT_LT(received_at - destroyed, milliseconds(1000));
}

TYPED_TEST(JobQueueContractTest, RequeueGivesTheJobBackFlaggedRedelivered) {
  auto first = this->NewSession();
  auto second = this->NewSession();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::string id = this->MustPublish(*first, "a", "x");
  auto delivery = this->MustReceive(*first, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  ASSERT_TRUE(first->Requeue(*delivery));
  EXPECT_TRUE(first->Requeue(*delivery));  // Idempotent: no longer held, nothing happens.

  auto redelivery = this->MustReceive(*second, kLongWait);
  ASSERT_TRUE(redelivery.has_value());
  EXPECT_EQ(redelivery->job_id, id);
  EXPECT_TRUE(redelivery->redelivered);
  EXPECT_EQ(redelivery->delivery_count, 2);
  ASSERT_TRUE(second->Ack(*redelivery));
  EXPECT_FALSE(this->MustReceive(*first, kShortWait).has_value());
}

TYPED_TEST(JobQueueContractTest, RequeueFreesAnInFlightSlot) {
  auto queue = this->NewSession(1);
  ASSERT_NE(queue, nullptr);
  this->MustPublish(*queue, "a", "1");
  this->MustPublish(*queue, "a", "2");
  auto first = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(this->MustReceive(*queue, kShortWait).has_value());
  ASSERT_TRUE(queue->Requeue(*first));
  auto next = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(next.has_value());
}

TYPED_TEST(JobQueueContractTest, MaxInFlightBoundsUnackedDeliveries) {
  auto queue = this->NewSession(2);
  ASSERT_NE(queue, nullptr);
  for (int i = 0; i < 3; ++i) {
    this->MustPublish(*queue, "a", std::to_string(i));
  }
  auto first = this->MustReceive(*queue, kLongWait);
  auto second = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(this->MustReceive(*queue, kShortWait).has_value());

  ASSERT_TRUE(queue->Ack(*first));
  auto third = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->payload, "2");
  // The bound is per session: another session still receives.
  auto other = this->NewSession(2);
  ASSERT_NE(other, nullptr);
  this->MustPublish(*queue, "a", "3");
  EXPECT_TRUE(this->MustReceive(*other, kLongWait).has_value());
}

TYPED_TEST(JobQueueContractTest, ReceiveAtTheLimitIsWokenByAnAck) {
  auto queue = this->NewSession(1);
  ASSERT_NE(queue, nullptr);
  this->MustPublish(*queue, "a", "1");
  this->MustPublish(*queue, "a", "2");
  auto first = this->MustReceive(*queue, kLongWait);
  ASSERT_TRUE(first.has_value());

  std::optional<ports::Delivery> second;
  Clock::time_point acked;
  Clock::time_point received_at;
  std::thread waiter([&] {
    second = this->MustReceive(*queue, kLongWait);
    received_at = Clock::now();
  });
  std::this_thread::sleep_for(milliseconds(150));
  acked = Clock::now();
  ASSERT_TRUE(queue->Ack(*first));
  waiter.join();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->payload, "2");
  EXPECT_LT(received_at - acked, milliseconds(1000));
}

TYPED_TEST(JobQueueContractTest, PublishWakesAWaitingReceiver) {
  auto consumer = this->NewSession();
  auto producer = this->NewSession();
  ASSERT_NE(consumer, nullptr);
  ASSERT_NE(producer, nullptr);
  std::optional<ports::Delivery> delivery;
  Clock::time_point published;
  Clock::time_point received_at;
  std::thread waiter([&] {
    delivery = this->MustReceive(*consumer, kLongWait);
    received_at = Clock::now();
  });
  std::this_thread::sleep_for(milliseconds(150));
  published = Clock::now();
  this->MustPublish(*producer, "a", "x");
  waiter.join();
  ASSERT_TRUE(delivery.has_value());
  // Well under the SQLite factory's poll interval: the wake-up, not polling, delivered it.
  EXPECT_LT(received_at - published, milliseconds(1000));
}

TYPED_TEST(JobQueueContractTest, ConcurrentProducersAndConsumersLoseAndDuplicateNothing) {
  constexpr int kProducers = 3;
  constexpr int kJobsPerProducer = 40;
  constexpr int kConsumers = 3;
  constexpr int kThreadsPerConsumer = 2;
  constexpr int kJobs = kProducers * kJobsPerProducer;
  const auto deadline = Clock::now() + std::chrono::seconds(20);

  std::vector<std::unique_ptr<ports::JobQueue>> producers;
  std::vector<std::unique_ptr<ports::JobQueue>> consumers;
  for (int i = 0; i < kProducers; ++i) {
    producers.push_back(this->NewSession());
    ASSERT_NE(producers.back(), nullptr);
  }
  for (int i = 0; i < kConsumers; ++i) {
    consumers.push_back(this->NewSession(2));
    ASSERT_NE(consumers.back(), nullptr);
  }

  std::mutex mutex;
  std::map<std::string, int> received_by_payload;  // payload -> times received
  std::set<std::string> published_ids;
  std::set<std::string> received_ids;
  std::atomic<int> acked{0};
  std::atomic<int> errors{0};

  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int j = 0; j < kJobsPerProducer; ++j) {
        auto id = producers[p]->Publish("a", std::to_string(p) + "-" + std::to_string(j));
        if (!id) {
          ++errors;
          continue;
        }
        std::lock_guard lock(mutex);
        published_ids.insert(*id);
      }
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    for (int t = 0; t < kThreadsPerConsumer; ++t) {
      threads.emplace_back([&, c] {
        while (acked.load() < kJobs && Clock::now() < deadline) {
          auto delivery = consumers[c]->Receive(milliseconds(100));
          if (!delivery) {
            ++errors;
            continue;
          }
          if (!delivery->has_value()) {
            continue;
          }
          {
            std::lock_guard lock(mutex);
            ++received_by_payload[(*delivery)->payload];
            received_ids.insert((*delivery)->job_id);
          }
          if ((*delivery)->redelivered) {
            ++errors;  // No session died and nothing was requeued.
          }
          if (consumers[c]->Ack(**delivery)) {
            ++acked;
          } else {
            ++errors;
          }
        }
      });
    }
  }
  for (std::thread& thread : threads) {
    thread.join();
  }

  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(acked.load(), kJobs);
  EXPECT_EQ(published_ids.size(), static_cast<std::size_t>(kJobs));
  EXPECT_EQ(received_ids, published_ids);
  EXPECT_EQ(received_by_payload.size(), static_cast<std::size_t>(kJobs));
  for (const auto& [payload, times] : received_by_payload) {
    EXPECT_EQ(times, 1) << payload;
  }
  for (auto& consumer : consumers) {
    EXPECT_FALSE(this->MustReceive(*consumer, milliseconds(0)).has_value());
  }
}

// --- Broadcasts -------------------------------------------------------------------------------

TYPED_TEST(JobQueueContractTest, EveryListeningSessionGetsEachBroadcastOnce) {
  auto sender = this->NewSession();
  auto first = this->NewSession();
  auto second = this->NewSession();
  ASSERT_TRUE(sender && first && second);
  ASSERT_TRUE(first->Listen({"fanout"}));
  ASSERT_TRUE(second->Listen({"fanout"}));

  ASSERT_TRUE(sender->Broadcast("fanout", R"({"n":1})"));
  ASSERT_TRUE(sender->Broadcast("fanout", R"({"n":2})"));

  for (ports::JobQueue* listener : {first.get(), second.get()}) {
    auto messages = this->CollectBroadcasts(*listener, 2, kLongWait);
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(messages[0].channel, "fanout");
    EXPECT_EQ(messages[0].payload, R"({"n":1})");
    EXPECT_EQ(messages[1].payload, R"({"n":2})");
    // Once: nothing more comes.
    EXPECT_TRUE(this->CollectBroadcasts(*listener, 1, kShortWait).empty());
  }
}

TYPED_TEST(JobQueueContractTest, ASessionListeningElsewhereGetsNoBroadcast) {
  auto sender = this->NewSession();
  auto listener = this->NewSession();
  auto other = this->NewSession();
  ASSERT_TRUE(sender && listener && other);
  ASSERT_TRUE(listener->Listen({"fanout"}));
  ASSERT_TRUE(other->Listen({"elsewhere"}));

  ASSERT_TRUE(sender->Broadcast("fanout", "report"));

  // The listener's copy arrived, so the other session's would have had the time to arrive too.
  EXPECT_EQ(this->CollectBroadcasts(*listener, 1, kLongWait).size(), 1u);
  EXPECT_TRUE(this->CollectBroadcasts(*other, 1, kShortWait).empty());
  // Never listening is a caller bug, not an idle channel.
  auto never = sender->ReceiveBroadcasts(milliseconds(0));
  ASSERT_FALSE(never);
  EXPECT_EQ(never.error().code, ErrorCode::kInvalidArgument);
}

TYPED_TEST(JobQueueContractTest, ReceiveBroadcastsOnASilentChannelReturnsEmptyAfterTheWait) {
  auto listener = this->NewSession();
  ASSERT_NE(listener, nullptr);
  ASSERT_TRUE(listener->Listen({"fanout"}));
  auto start = Clock::now();
  auto messages = listener->ReceiveBroadcasts(milliseconds(300));
  auto elapsed = Clock::now() - start;
  ASSERT_TRUE(messages);
  EXPECT_TRUE(messages->empty());
  EXPECT_GE(elapsed, milliseconds(250));
  EXPECT_LT(elapsed, kLongWait);
}

TYPED_TEST(JobQueueContractTest, ListenAgainReplacesTheChannelSet) {
  auto sender = this->NewSession();
  auto listener = this->NewSession();
  ASSERT_TRUE(sender && listener);
  ASSERT_TRUE(listener->Listen({"old", "kept"}));
  ASSERT_TRUE(listener->Listen({"kept", "new"}));

  ASSERT_TRUE(sender->Broadcast("old", "dropped"));
  ASSERT_TRUE(sender->Broadcast("kept", "k"));
  ASSERT_TRUE(sender->Broadcast("new", "n"));

  auto messages = this->CollectBroadcasts(*listener, 2, kLongWait);
  ASSERT_EQ(messages.size(), 2u);
  std::set<std::pair<std::string, std::string>> got;
  for (const ports::BroadcastMessage& message : messages) {
    got.emplace(message.channel, message.payload);
  }
  EXPECT_EQ(got, (std::set<std::pair<std::string, std::string>>{{"kept", "k"}, {"new", "n"}}));
  EXPECT_TRUE(this->CollectBroadcasts(*listener, 1, kShortWait).empty());
}

TYPED_TEST(JobQueueContractTest, EmptyBroadcastChannelIsInvalid) {
  auto queue = this->NewSession();
  ASSERT_NE(queue, nullptr);
  auto sent = queue->Broadcast("", "x");
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, ErrorCode::kInvalidArgument);
  auto listened = queue->Listen({""});
  ASSERT_FALSE(listened);
  EXPECT_EQ(listened.error().code, ErrorCode::kInvalidArgument);
}

TYPED_TEST(JobQueueContractTest, JobsAndBroadcastsDoNotMix) {
  // Same name for the topic and the channel: the two must still stay apart.
  auto session = this->NewSession(4, {"a"});
  auto listener = this->NewSession(4, {"b"});
  ASSERT_TRUE(session && listener);
  ASSERT_TRUE(session->Listen({"a"}));
  ASSERT_TRUE(listener->Listen({"a"}));

  std::string id = this->MustPublish(*session, "a", "job");
  ASSERT_TRUE(session->Broadcast("a", "broadcast"));

  auto delivery = this->MustReceive(*session, kLongWait);
  ASSERT_TRUE(delivery.has_value());
  EXPECT_EQ(delivery->job_id, id);
  EXPECT_EQ(delivery->payload, "job");
  ASSERT_TRUE(session->Ack(*delivery));
  EXPECT_FALSE(this->MustReceive(*session, kShortWait).has_value());

  for (ports::JobQueue* receiver : {session.get(), listener.get()}) {
    auto messages = this->CollectBroadcasts(*receiver, 1, kLongWait);
    ASSERT_EQ(messages.size(), 1u);
    EXPECT_EQ(messages[0].payload, "broadcast");
  }
  // The session that only listens on "a" got no job of topic "a".
  EXPECT_FALSE(this->MustReceive(*listener, kShortWait).has_value());
}

TYPED_TEST(JobQueueContractTest, ABroadcastWakesAWaitingListener) {
  auto sender = this->NewSession();
  auto listener = this->NewSession();
  ASSERT_TRUE(sender && listener);
  ASSERT_TRUE(listener->Listen({"fanout"}));
  std::thread later([&] {
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_TRUE(sender->Broadcast("fanout", "late"));
  });
  auto start = Clock::now();
  auto messages = listener->ReceiveBroadcasts(kLongWait);
  auto elapsed = Clock::now() - start;
  later.join();
  ASSERT_TRUE(messages);
  ASSERT_EQ(messages->size(), 1u);
  EXPECT_EQ((*messages)[0].payload, "late");
  // Woken by the broadcast, not by the end of the wait (the SQLite poll interval is 2 s here).
  EXPECT_LT(elapsed, milliseconds(1500));
}

}  // namespace
}  // namespace clinker
