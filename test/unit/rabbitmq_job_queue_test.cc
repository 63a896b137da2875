// Goal: the RabbitMQ job queue keeps its promises where the contract test (one process, a
// healthy broker) cannot look: a consumer process killed with SIGKILL gives its job back within
// a bound; a job that runs longer than three heartbeat intervals is not taken away, because the
// session's I/O thread keeps servicing the connection; a published job waits for a consumer that
// is not there yet; an unreachable or mute broker fails Open within connect_timeout, naming
// host:port; a dropped or silent connection is noticed, reconnected, and a delivery lost with it
// is reported stale (kFenced) on Ack; a session that cannot reconnect gives up and says so.
//
// Method: the broker is the one the "rabbitmq" CTest fixture started (settings from its env file;
// without them every test fails and says how to start it). Every test uses its own random topic.
// Process deaths are real: a child is forked while the parent holds no session (a connection and
// its thread never cross a fork), opens its own session, reports over a pipe, and is killed by
// PID. Connection faults go through a small in-test TCP proxy between session and broker that can
// drop, freeze (stop forwarding without closing) or refuse connections. Every wait is bounded;
// measured times are printed for the record.
#include "clinker/adapters/rabbitmq/rabbitmq_job_queue.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clinker/core/uuid.h"

#include "support/test_servers.h"

namespace clinker::adapters::rabbitmq {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kLongWait{5000};
constexpr milliseconds kChildTimeout{10000};

long long MillisSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

// The fixture broker's settings; records a failure naming the env file when they are missing.
std::optional<RabbitMqJobQueue::Options> BrokerOptions() {
  auto host = test_support::TestServerSetting("rabbitmq", "CLINKER_TEST_RMQ_HOST");
  auto port = test_support::TestServerSetting("rabbitmq", "CLINKER_TEST_RMQ_PORT");
  auto user = test_support::TestServerSetting("rabbitmq", "CLINKER_TEST_RMQ_USER");
  auto password = test_support::TestServerSetting("rabbitmq", "CLINKER_TEST_RMQ_PASSWORD");
  if (!host || !port || !user || !password) {
    std::string env_path = test_support::TestServerEnvPath("rabbitmq");
    ADD_FAILURE() << "RabbitMQ test settings missing ("
                  << (env_path.empty() ? "CLINKER_TEST_SERVERS_DIR is not set" : env_path)
                  << "): run through ctest, whose \"rabbitmq\" fixture runs "
                     "scripts/test_server_rabbitmq.sh, or start one with "
                     "`scripts/test_server_rabbitmq.sh start DIR/rabbitmq` and set "
                     "CLINKER_TEST_SERVERS_DIR=DIR";
    return std::nullopt;
  }
  RabbitMqJobQueue::Options options;
  options.host = *host;
  options.port = atoi(port->c_str());
  options.user = *user;
  options.password = *password;
  return options;
}

// Records a failure and returns nullptr if the session does not open or subscribe.
std::unique_ptr<RabbitMqJobQueue> OpenSession(const RabbitMqJobQueue::Options& options,
                                              const std::vector<std::string>& topics) {
  auto queue = RabbitMqJobQueue::Open(options);
  if (!queue) {
    ADD_FAILURE() << "open: " << queue.error().ToString();
    return nullptr;
  }
  if (auto subscribed = (*queue)->Subscribe(topics); !subscribed) {
    ADD_FAILURE() << "subscribe: " << subscribed.error().ToString();
    return nullptr;
  }
  return std::move(*queue);
}

// A loopback port nobody listens on (bound, then closed).
int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

// A loopback listener; returns its fd and port (fd -1 on failure).
std::pair<int, int> Listen() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    return {-1, -1};
  }
  return {fd, ntohs(address.sin_port)};
}

// A TCP proxy on loopback in front of the broker, run by one thread. It can drop every proxied
// connection, freeze the current ones (stop forwarding in both directions, sockets left open, as
// a partition looks), and stop accepting.
class TcpProxy {
 public:
  TcpProxy(std::string upstream_host, int upstream_port)
      : upstream_host_(std::move(upstream_host)), upstream_port_(upstream_port) {
    std::tie(listener_, port_) = Listen();
    if (listener_ < 0) {
      ADD_FAILURE() << "proxy listen: " << std::strerror(errno);
      return;
    }
    thread_ = std::thread([this] { Loop(); });
  }

  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  ~TcpProxy() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    if (thread_.joinable()) {
      thread_.join();
    }
    for (Pair& pair : pairs_) {
      ::close(pair.client);
      ::close(pair.upstream);
    }
    if (listener_ >= 0) {
      ::close(listener_);
    }
  }

  int port() const { return port_; }

  // Done by the proxy thread within one loop pass (at most ~20 ms).
  void DropAll() { Command(&drop_requested_); }

  void FreezeCurrent() { Command(&freeze_requested_); }

  void StopAccepting() { Command(&stop_accepting_requested_); }

  int accepted() const { return accepted_.load(); }

 private:
  struct Pair {
    int client;
    int upstream;
    bool frozen = false;
  };

  void Command(bool* flag) {
    {
      std::lock_guard lock(mutex_);
      *flag = true;
    }
    auto deadline = Clock::now() + milliseconds(2000);
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(mutex_);
        if (!*flag) {
          return;
        }
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    ADD_FAILURE() << "proxy did not carry out a command";
  }

  int ConnectUpstream() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(upstream_port_));
    ::inet_pton(AF_INET, upstream_host_.c_str(), &address.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  // Forwards what `from` has to `to`; false when the connection should end.
  static bool Forward(int from, int to) {
    char buffer[16384];
    ssize_t n = ::read(from, buffer, sizeof(buffer));
    if (n <= 0) {
      return false;
    }
    ssize_t done = 0;
    while (done < n) {
      ssize_t written = ::send(to, buffer + done, static_cast<std::size_t>(n - done), MSG_NOSIGNAL);
      if (written <= 0) {
        return false;
      }
      done += written;
    }
    return true;
  }

  void Loop() {
    bool accepting = true;
    while (true) {
      {
        std::lock_guard lock(mutex_);
        if (stop_) {
          return;
        }
        if (drop_requested_) {
          for (Pair& pair : pairs_) {
            ::close(pair.client);
            ::close(pair.upstream);
          }
          pairs_.clear();
          drop_requested_ = false;
        }
        if (freeze_requested_) {
          for (Pair& pair : pairs_) {
            pair.frozen = true;
          }
          freeze_requested_ = false;
        }
        if (stop_accepting_requested_) {
          accepting = false;
          ::close(listener_);
          listener_ = -1;
          stop_accepting_requested_ = false;
        }
      }
      std::vector<pollfd> entries;
      std::vector<std::pair<std::size_t, bool>> owners;  // pair index, from client side
      if (accepting) {
        entries.push_back({.fd = listener_, .events = POLLIN, .revents = 0});
        owners.push_back({0, false});
      }
      for (std::size_t i = 0; i < pairs_.size(); ++i) {
        if (pairs_[i].frozen) {
          continue;
        }
        entries.push_back({.fd = pairs_[i].client, .events = POLLIN, .revents = 0});
        owners.push_back({i, true});
        entries.push_back({.fd = pairs_[i].upstream, .events = POLLIN, .revents = 0});
        owners.push_back({i, false});
      }
      if (::poll(entries.data(), entries.size(), 20) <= 0) {
        continue;
      }
      std::vector<std::size_t> closed;
      for (std::size_t e = 0; e < entries.size(); ++e) {
        if (entries[e].revents == 0) {
          continue;
        }
        if (accepting && e == 0) {
          int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
          if (client >= 0) {
            int upstream = ConnectUpstream();
            if (upstream < 0) {
              ::close(client);
            } else {
              pairs_.push_back({client, upstream});
              accepted_.fetch_add(1);
            }
          }
          continue;
        }
        auto [index, from_client] = owners[e];
        Pair& pair = pairs_[index];
        bool ok =
            from_client ? Forward(pair.client, pair.upstream) : Forward(pair.upstream, pair.client);
        if (!ok) {
          closed.push_back(index);
        }
      }
      std::sort(closed.begin(), closed.end());
      closed.erase(std::unique(closed.begin(), closed.end()), closed.end());
      for (auto it = closed.rbegin(); it != closed.rend(); ++it) {
        ::close(pairs_[*it].client);
        ::close(pairs_[*it].upstream);
        pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(*it));
      }
    }
  }

  const std::string upstream_host_;
  const int upstream_port_;
  int listener_ = -1;
  int port_ = -1;
  std::thread thread_;
  std::vector<Pair> pairs_;  // Proxy thread only.
  std::atomic<int> accepted_{0};
  std::mutex mutex_;
  bool stop_ = false;
  bool drop_requested_ = false;
  bool freeze_requested_ = false;
  bool stop_accepting_requested_ = false;
};

// One pipe used in one direction; reads are bounded by poll().
class Pipe {
 public:
  Pipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      fds_[0] = fds_[1] = -1;
    }
  }

  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  ~Pipe() {
    for (int fd : fds_) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }

  bool WriteLine(const std::string& line) const {
    std::string data = line + "\n";
    return ::write(fds_[1], data.data(), data.size()) == static_cast<ssize_t>(data.size());
  }

  // One line (without its newline), or nullopt if none came within `timeout`.
  std::optional<std::string> ReadLine(milliseconds timeout) const {
    auto deadline = Clock::now() + timeout;
    std::string line;
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return std::nullopt;
      }
      pollfd entry{.fd = fds_[0], .events = POLLIN, .revents = 0};
      int ready = ::poll(&entry, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) {
        continue;
      }
      if (ready <= 0) {
        return std::nullopt;
      }
      char c;
      if (::read(fds_[0], &c, 1) != 1) {
        return std::nullopt;
      }
      if (c == '\n') {
        return line;
      }
      line.push_back(c);
    }
  }

 private:
  int fds_[2];
};

// A forked child running `body` (its return value is the exit status); it never returns into the
// test framework, dies with the parent, and is killed (SIGKILL) and reaped on destruction.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::_exit(body());
    }
    if (pid_ < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
    }
  }

  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  ~Child() { Kill(); }

  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
};

class RabbitMqJobQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto options = BrokerOptions();
    ASSERT_TRUE(options.has_value());
    options_ = *options;
    topic_ = "unit-" + NewUuid().substr(0, 8) + ".jobs";
  }

  RabbitMqJobQueue::Options options_;
  std::string topic_;
};

TEST_F(RabbitMqJobQueueTest, JobOfAKilledConsumerProcessIsRedeliveredToAnotherSession) {
  Pipe child_says;
  // Forked before this process opens any session.
  Child child([&]() -> int {
    auto consumer = RabbitMqJobQueue::Open(options_);
    if (!consumer || !(*consumer)->Subscribe({topic_})) {
      return 2;
    }
    child_says.WriteLine("ready");
    auto delivery = (*consumer)->Receive(kChildTimeout);
    if (!delivery || !delivery->has_value()) {
      return 3;
    }
    child_says.WriteLine((*delivery)->job_id);
    std::this_thread::sleep_for(kChildTimeout);  // "Working" until killed.
    return 4;
  });
  ASSERT_EQ(child_says.ReadLine(kChildTimeout), "ready");

  auto survivor = OpenSession(options_, {topic_});
  ASSERT_NE(survivor, nullptr);
  auto published = survivor->Publish(topic_, "volume-42");
  ASSERT_TRUE(published) << published.error().ToString();
  auto taken = child_says.ReadLine(kChildTimeout);
  ASSERT_EQ(taken, *published) << "the child did not take the job";
  // Held by a live consumer: nobody else gets it.
  auto early = survivor->Receive(milliseconds(300));
  ASSERT_TRUE(early) << early.error().ToString();
  EXPECT_FALSE(early->has_value());

  auto killed_at = Clock::now();
  child.Kill();
  auto redelivery = survivor->Receive(kLongWait);
  long long redelivered_after_ms = MillisSince(killed_at);
  ASSERT_TRUE(redelivery) << redelivery.error().ToString();
  ASSERT_TRUE(redelivery->has_value()) << "not redelivered within " << kLongWait.count() << " ms";
  EXPECT_EQ((*redelivery)->job_id, *published);
  EXPECT_EQ((*redelivery)->payload, "volume-42");
  EXPECT_TRUE((*redelivery)->redelivered);
  EXPECT_EQ((*redelivery)->delivery_count, 2);
  EXPECT_LT(redelivered_after_ms, 3000);
  std::printf("[ measured ] redelivered %lld ms after SIGKILL of the consumer\n",
              redelivered_after_ms);
  EXPECT_TRUE(survivor->Ack(**redelivery));
}

TEST_F(RabbitMqJobQueueTest, JobLongerThanThreeHeartbeatsIsNotTakenAway) {
  options_.heartbeat = std::chrono::seconds(1);
  auto worker = OpenSession(options_, {topic_});
  auto other = OpenSession(options_, {topic_});
  ASSERT_NE(worker, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(worker->Publish(topic_, "long job"));
  auto delivery = worker->Receive(kLongWait);
  ASSERT_TRUE(delivery && delivery->has_value());

  // The other session asks for jobs the whole time the job runs.
  std::optional<ports::Delivery> stolen;
  std::thread thief([&] {
    auto received = other->Receive(milliseconds(4500));
    if (received && received->has_value()) {
      stolen = **received;
    }
  });
  std::this_thread::sleep_for(milliseconds(4000));  // The handler: 4 heartbeat intervals.
  auto acked = worker->Ack(**delivery);
  thief.join();
  EXPECT_TRUE(acked) << acked.error().ToString();
  EXPECT_FALSE(stolen.has_value()) << "the broker gave the running job to another session";
  EXPECT_TRUE(worker->connected());
  EXPECT_EQ(worker->connections_opened(), 1) << "the worker's connection was lost meanwhile";
  auto after = other->Receive(milliseconds(300));
  ASSERT_TRUE(after);
  EXPECT_FALSE(after->has_value()) << "the acked job came back";
}

TEST_F(RabbitMqJobQueueTest, PublishedJobWaitsForAConsumerThatComesLater) {
  std::string id;
  {
    auto publisher = RabbitMqJobQueue::Open(options_);
    ASSERT_TRUE(publisher) << publisher.error().ToString();
    auto published = (*publisher)->Publish(topic_, "for later");
    ASSERT_TRUE(published) << published.error().ToString();
    id = *published;
  }  // The publisher's connection is gone too.
  std::this_thread::sleep_for(milliseconds(200));
  auto consumer = OpenSession(options_, {topic_});
  ASSERT_NE(consumer, nullptr);
  auto delivery = consumer->Receive(kLongWait);
  ASSERT_TRUE(delivery) << delivery.error().ToString();
  ASSERT_TRUE(delivery->has_value());
  EXPECT_EQ((*delivery)->job_id, id);
  EXPECT_EQ((*delivery)->payload, "for later");
  EXPECT_FALSE((*delivery)->redelivered);
  EXPECT_EQ((*delivery)->delivery_count, 1);
  EXPECT_TRUE(consumer->Ack(**delivery));
}

TEST_F(RabbitMqJobQueueTest, SessionThatOnlyPublishesHoldsNoJobs) {
  // Subscribed but never receiving: jobs must go to the session that asks.
  auto idle = OpenSession(options_, {topic_});
  auto worker = OpenSession(options_, {topic_});
  ASSERT_NE(idle, nullptr);
  ASSERT_NE(worker, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(idle->Publish(topic_, std::to_string(i)));
  }
  for (int i = 0; i < 5; ++i) {
    auto delivery = worker->Receive(kLongWait);
    ASSERT_TRUE(delivery && delivery->has_value()) << "job " << i;
    EXPECT_EQ((*delivery)->payload, std::to_string(i));
    EXPECT_FALSE((*delivery)->redelivered);
    EXPECT_TRUE(worker->Ack(**delivery));
  }
}

TEST_F(RabbitMqJobQueueTest, UnreachableBrokerFailsOpenWithinTheTimeout) {
  int port = UnusedPort();
  ASSERT_GT(port, 0);
  options_.port = port;
  options_.connect_timeout = milliseconds(1000);
  auto start = Clock::now();
  auto queue = RabbitMqJobQueue::Open(options_);
  long long elapsed_ms = MillisSince(start);
  ASSERT_FALSE(queue);
  EXPECT_EQ(queue.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(queue.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << queue.error().message;
  EXPECT_LT(elapsed_ms, 1000 + 1000);
  std::printf("[ measured ] refused connection reported after %lld ms\n", elapsed_ms);
}

TEST_F(RabbitMqJobQueueTest, MuteBrokerFailsOpenWithinTheTimeout) {
  // Accepts TCP (the kernel completes the handshake from the backlog) but never speaks AMQP.
  auto [listener, port] = Listen();
  ASSERT_GE(listener, 0);
  options_.port = port;
  options_.connect_timeout = milliseconds(700);
  auto start = Clock::now();
  auto queue = RabbitMqJobQueue::Open(options_);
  long long elapsed_ms = MillisSince(start);
  ::close(listener);
  ASSERT_FALSE(queue);
  EXPECT_EQ(queue.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(queue.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << queue.error().message;
  EXPECT_GE(elapsed_ms, 600);
  EXPECT_LT(elapsed_ms, 700 + 1500);
  std::printf("[ measured ] mute broker reported after %lld ms\n", elapsed_ms);
}

TEST_F(RabbitMqJobQueueTest, WrongPasswordIsInvalidArgument) {
  options_.password = "not-the-password";
  auto queue = RabbitMqJobQueue::Open(options_);
  ASSERT_FALSE(queue);
  EXPECT_EQ(queue.error().code, ErrorCode::kInvalidArgument) << queue.error().ToString();
}

TEST_F(RabbitMqJobQueueTest, DroppedConnectionReconnectsAndReportsTheLostDeliveryStale) {
  TcpProxy proxy(options_.host, options_.port);
  auto direct = options_;
  options_.port = proxy.port();
  auto session = OpenSession(options_, {topic_});
  auto other = OpenSession(direct, {topic_});
  ASSERT_NE(session, nullptr);
  ASSERT_NE(other, nullptr);
  auto id = session->Publish(topic_, "x");
  ASSERT_TRUE(id) << id.error().ToString();
  auto delivery = session->Receive(kLongWait);
  ASSERT_TRUE(delivery && delivery->has_value());

  auto dropped_at = Clock::now();
  proxy.DropAll();
  // The broker saw the connection close: the job is free again, for anyone who asks.
  auto taken_over = other->Receive(kLongWait);
  ASSERT_TRUE(taken_over && taken_over->has_value()) << "job not freed by the dropped connection";
  EXPECT_EQ((*taken_over)->job_id, *id);
  EXPECT_TRUE((*taken_over)->redelivered);

  auto reconnect_deadline = Clock::now() + kLongWait;
  while (session->connections_opened() < 2 && Clock::now() < reconnect_deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(session->connections_opened(), 2);
  ASSERT_TRUE(session->connected());
  std::printf("[ measured ] reconnected %lld ms after the drop\n", MillisSince(dropped_at));

  // The old delivery is stale: Ack says so instead of pretending the job is gone.
  auto stale_ack = session->Ack(**delivery);
  ASSERT_FALSE(stale_ack);
  EXPECT_EQ(stale_ack.error().code, ErrorCode::kFenced) << stale_ack.error().ToString();
  EXPECT_TRUE(session->Requeue(**delivery));  // Already back in the queue: nothing to do.

  // The session works again, both ways.
  ASSERT_TRUE(other->Requeue(**taken_over));
  auto again = session->Receive(kLongWait);
  ASSERT_TRUE(again) << again.error().ToString();
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ((*again)->job_id, *id);
  EXPECT_EQ((*again)->delivery_count, 3);
  EXPECT_TRUE(session->Ack(**again));
  auto next = session->Publish(topic_, "after the reconnect");
  EXPECT_TRUE(next) << next.error().ToString();
}

TEST_F(RabbitMqJobQueueTest, SilentBrokerIsNoticedByHeartbeats) {
  TcpProxy proxy(options_.host, options_.port);
  options_.port = proxy.port();
  options_.heartbeat = std::chrono::seconds(1);
  auto session = OpenSession(options_, {topic_});
  ASSERT_NE(session, nullptr);
  auto frozen_at = Clock::now();
  proxy.FreezeCurrent();  // Like a partition: no FIN, no RST, just silence.
  auto deadline = Clock::now() + milliseconds(6000);
  while (session->connections_opened() < 2 && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  long long noticed_ms = MillisSince(frozen_at);
  ASSERT_EQ(session->connections_opened(), 2) << "silence not noticed within 6 s";
  // rabbitmq-c gives up after 2 heartbeat intervals without a byte from the broker.
  EXPECT_GE(noticed_ms, 1000);
  std::printf("[ measured ] silent connection replaced after %lld ms (heartbeat 1 s)\n",
              noticed_ms);
  auto published = session->Publish(topic_, "x");
  EXPECT_TRUE(published) << published.error().ToString();
}

TEST_F(RabbitMqJobQueueTest, SessionGivesUpAfterMaxReconnectAttempts) {
  TcpProxy proxy(options_.host, options_.port);
  options_.port = proxy.port();
  options_.reconnect_attempts_max = 3;
  auto session = OpenSession(options_, {topic_});
  ASSERT_NE(session, nullptr);
  proxy.StopAccepting();
  proxy.DropAll();
  // Attempts at once, then after 100 and 200 ms of backoff.
  auto deadline = Clock::now() + kLongWait;
  Result<std::string> published = MakeError(ErrorCode::kInternal, "not tried");
  while (Clock::now() < deadline) {
    published = session->Publish(topic_, "x");
    if (!published && published.error().message.find("gave up") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_FALSE(published);
  EXPECT_EQ(published.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(published.error().message.find("gave up"), std::string::npos)
      << published.error().message;
  EXPECT_FALSE(session->connected());
  auto received = session->Receive(milliseconds(100));
  ASSERT_FALSE(received);
  EXPECT_EQ(received.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace clinker::adapters::rabbitmq
