// Goal: check what is specific to the etcd adapter of LockManager, beyond the shared contract
// suite: the option check clinkerd relies on, kUnavailable when etcd cannot be reached, and the
// lease rules: a manager that can no longer renew its lease declares it lost BEFORE etcd expires
// it (so before anyone else can get the lock), marks every grant IsLost, calls the lost callback
// once per grant, never frees the next holder's grant, and works again with a fresh lease.
//
// Method: the etcd of the CTest fixture "etcd" (skipped when its env file is missing), with 2 s
// leases and 250 ms heartbeats. The manager under test reaches etcd through a small TCP proxy in
// this process; cutting the proxy (connections dropped, new ones accepted and left unanswered)
// models a network partition without disturbing the shared server. A second manager talks to etcd
// directly and waits for the lock, so the test can order "the holder declared the loss" before
// "the other side got the lock". Every wait is bounded; the proxy's threads are joined.
#include "clinker/adapters/etcd/etcd_lock_manager.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clinker/adapters/etcd/etcd_client.h"
#include "clinker/core/uuid.h"

#include "support/test_servers.h"

namespace clinker::adapters::etcd {
namespace {

using ports::LockRequest;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::optional<EtcdLockManager::Options> TestOptions() {
  return test_support::EtcdTestOptions(std::chrono::milliseconds(1000));
}

// Tests that need the fixture's etcd; skipped (with the reason) when it is not there.
class EtcdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_ = TestOptions();
    if (!options_) {
      GTEST_SKIP() << "no etcd: " << test_support::TestServerEnvPath("etcd")
                   << " is missing (run through ctest, which starts it)";
    }
  }

  std::optional<EtcdLockManager::Options> options_;
};

// A loopback TCP proxy to one target that a test can cut (partition) and restore.
class CuttableProxy {
 public:
  CuttableProxy(std::string target_host, int target_port)
      : target_host_(std::move(target_host)), target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof(address);
    const bool ok =
        listener_ >= 0 &&
        ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
        ::listen(listener_, 64) == 0 &&
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) == 0;
    EXPECT_TRUE(ok) << "proxy listener";
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }

  CuttableProxy(const CuttableProxy&) = delete;
  CuttableProxy& operator=(const CuttableProxy&) = delete;

  ~CuttableProxy() {
    stop_.store(true);
    acceptor_.join();
    for (std::thread& pump : pumps_) {
      pump.join();
    }
    for (int fd : held_) {
      ::close(fd);
    }
    ::close(listener_);
  }

  int port() const { return port_; }

  // Drops every live connection; new ones are accepted but never answered (like a partition:
  // requests time out instead of being refused).
  void Cut() { cut_.store(true); }

  void Restore() {
    std::lock_guard<std::mutex> guard(mutex_);
    for (int fd : held_) {
      ::close(fd);
    }
    held_.clear();
    cut_.store(false);
  }

 private:
  void Accept() {
    while (!stop_.load()) {
      pollfd entry{listener_, POLLIN, 0};
      if (::poll(&entry, 1, 20) != 1) {
        continue;
      }
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        continue;
      }
      if (cut_.load()) {
        std::lock_guard<std::mutex> guard(mutex_);
        held_.push_back(client);
        continue;
      }
      const int upstream = Connect();
      if (upstream < 0) {
        ::close(client);
        continue;
      }
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  int Connect() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(target_port_));
    ::inet_pton(AF_INET, target_host_.c_str(), &address.sin_addr);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      if (fd >= 0) {
        ::close(fd);
      }
      return -1;
    }
    return fd;
  }

  void Pump(int a, int b) {
    char buffer[16384];
    while (!stop_.load() && !cut_.load()) {
      pollfd entries[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(entries, 2, 20) <= 0) {
        continue;
      }
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if ((entries[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
          continue;
        }
        const ssize_t n = ::read(entries[i].fd, buffer, sizeof(buffer));
        const int to = i == 0 ? b : a;
        closed = n <= 0 || ::send(to, buffer, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n;
      }
      if (closed) {
        break;
      }
    }
    ::close(a);
    ::close(b);
  }

  std::string target_host_;
  int target_port_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_{false};
  std::thread acceptor_;
  std::vector<std::thread> pumps_;  // Acceptor thread only, until joined.
  std::mutex mutex_;
  std::vector<int> held_;  // Guarded by mutex_.
};

// A port nothing listens on (bound and closed again).
int ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST(EtcdLockManagerOptionsTest, TtlMustOutliveTheMissedHeartbeatsPlusAMargin) {
  EtcdLockManager::Options options;
  options.lease_ttl = std::chrono::seconds(1);
  options.heartbeat_interval = milliseconds(250);
  options.missed_heartbeats = 3;
  auto bad = EtcdLockManager::ValidateOptions(options);
  ASSERT_FALSE(bad.has_value()) << "1 s is not more than (3 + 1) x 250 ms";
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  for (const char* part : {"lease_ttl=1s", "heartbeat_interval=250ms", "missed_heartbeats=3"}) {
    EXPECT_NE(bad.error().message.find(part), std::string::npos)
        << part << " in: " << bad.error().message;
  }
  auto opened = EtcdLockManager::Open(options);
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().code, ErrorCode::kInvalidArgument);

  options.lease_ttl = std::chrono::seconds(2);
  EXPECT_TRUE(EtcdLockManager::ValidateOptions(options).has_value());
  EXPECT_TRUE(EtcdLockManager::ValidateOptions(EtcdLockManager::Options{}).has_value())
      << "the defaults must be valid";

  for (int field = 0; field < 4; ++field) {
    EtcdLockManager::Options zero = options;
    if (field == 0) {
      zero.heartbeat_interval = milliseconds(0);
    } else if (field == 1) {
      zero.missed_heartbeats = 0;
    } else if (field == 2) {
      zero.request_timeout = milliseconds(0);
    } else {
      zero.key_prefix.clear();
    }
    auto refused = EtcdLockManager::ValidateOptions(zero);
    ASSERT_FALSE(refused.has_value()) << "field " << field;
    EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(EtcdClientTest, Base64RoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 40; ++i) {
    auto decoded = Base64Decode(Base64Encode(bytes));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(*decoded, bytes) << "length " << i;
    bytes.push_back(static_cast<char>(i * 37 + 200));
  }
  EXPECT_EQ(Base64Encode("/p/a"), "L3AvYQ==");
  EXPECT_EQ(PrefixEnd("/p/"), "/p0");
  EXPECT_FALSE(Base64Decode("not base64!").has_value());
}

TEST(EtcdLockManagerTest, UnavailableWhenEtcdCannotBeReached) {
  EtcdLockManager::Options options;
  options.port = ClosedPort();
  options.lease_ttl = std::chrono::seconds(2);
  options.heartbeat_interval = milliseconds(250);
  options.request_timeout = milliseconds(1000);
  const Clock::time_point start = Clock::now();
  auto refused = EtcdLockManager::Open(options);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable) << refused.error().ToString();
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
}

TEST_F(EtcdServerTest, UnavailableWhenEtcdStopsAnsweringAndBackAfterwards) {
  const std::optional<EtcdLockManager::Options>& options = options_;
  CuttableProxy proxy(options->host, options->port);
  EtcdLockManager::Options via_proxy = *options;
  via_proxy.port = proxy.port();
  auto manager = EtcdLockManager::Open(via_proxy);
  ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
  {
    auto lock = (*manager)->TryAcquire(LockRequest::Exclusive("volume/a"));
    ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
  }

  proxy.Cut();
  for (const LockRequest& request :
       {LockRequest::Exclusive("volume/b"), LockRequest::Shared("volume/c", 2)}) {
    const Clock::time_point start = Clock::now();
    auto lock = (*manager)->Acquire(request, milliseconds(500));
    ASSERT_FALSE(lock.has_value());
    EXPECT_EQ(lock.error().code, ErrorCode::kUnavailable) << lock.error().ToString();
    EXPECT_LT(Clock::now() - start, milliseconds(4000)) << "bounded by the request timeouts";
  }

  proxy.Restore();
  // A fresh lease is taken once etcd answers again (bounded retry: the old one was lost).
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
  Result<ports::LockPtr> lock = MakeError(ErrorCode::kUnavailable, "not tried");
  while (!lock && Clock::now() < deadline) {
    lock = (*manager)->TryAcquire(LockRequest::Exclusive("volume/b"));
    if (!lock) {
      std::this_thread::sleep_for(milliseconds(100));
    }
  }
  EXPECT_TRUE(lock.has_value()) << lock.error().ToString();
}

struct LostRecord {
  std::string name;
  std::uint64_t token;
  Clock::time_point at;
};

TEST_F(EtcdServerTest, LeaseLossIsDeclaredBeforeEtcdExpiresItAndEachGrantIsToldOnce) {
  const std::optional<EtcdLockManager::Options>& options = options_;
  CuttableProxy proxy(options->host, options->port);
  EtcdLockManager::Options via_proxy = *options;
  via_proxy.port = proxy.port();
  auto holder = EtcdLockManager::Open(via_proxy);
  ASSERT_TRUE(holder.has_value()) << holder.error().ToString();
  auto other = EtcdLockManager::Open(*options);  // Same prefix, direct to etcd.
  ASSERT_TRUE(other.has_value()) << other.error().ToString();

  std::mutex lost_mutex;
  std::vector<LostRecord> lost;
  (*holder)->SetLostCallback([&](const std::string& name, std::uint64_t token) {
    // Calling back into the manager must not deadlock (the callback runs outside its mutex).
    (void)(*holder)->CurrentLeaseForTest();
    std::lock_guard<std::mutex> guard(lost_mutex);
    lost.push_back({name, token, Clock::now()});
  });
  const std::int64_t first_lease = (*holder)->CurrentLeaseForTest();
  auto writer = (*holder)->TryAcquire(LockRequest::Exclusive("volume/x"));
  auto reader1 = (*holder)->TryAcquire(LockRequest::Shared("volume/y", 2));
  auto reader2 = (*holder)->TryAcquire(LockRequest::Shared("volume/y", 2));
  auto released = (*holder)->TryAcquire(LockRequest::Exclusive("volume/r"));
  ASSERT_TRUE(writer && reader1 && reader2 && released);
  (*released)->Release();  // Released grants are never reported lost.
  const std::map<std::string, std::uint64_t> expected = {{"volume/x", (*writer)->fencing_token()}};

  // The other side waits for the writer's name; it can only get it once etcd expired the lease.
  std::atomic<bool> other_done{false};
  Clock::time_point other_got_it{};
  Result<ports::LockPtr> other_lock = MakeError(ErrorCode::kUnavailable, "not tried");
  std::thread waiter([&] {
    other_lock = (*other)->Acquire(LockRequest::Exclusive("volume/x"), milliseconds(6000));
    other_got_it = Clock::now();
    other_done.store(true);
  });
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_FALSE(other_done.load()) << "the other manager got a held lock";

  const Clock::time_point cut_at = Clock::now();
  proxy.Cut();
  const Clock::time_point deadline = cut_at + std::chrono::seconds(5);
  while (Clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> guard(lost_mutex);
      if (lost.size() >= 3) {
        break;
      }
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  waiter.join();

  std::lock_guard<std::mutex> guard(lost_mutex);
  ASSERT_EQ(lost.size(), 3u) << "one callback per held grant, none for the released one";
  std::multiset<std::string> names;
  Clock::time_point last_loss = lost[0].at;
  for (const LostRecord& record : lost) {
    names.insert(record.name);
    last_loss = std::max(last_loss, record.at);
  }
  EXPECT_EQ(names, (std::multiset<std::string>{"volume/x", "volume/y", "volume/y"}));
  for (const LostRecord& record : lost) {
    if (record.name == "volume/x") {
      EXPECT_EQ(record.token, expected.at("volume/x"));
    }
  }
  EXPECT_TRUE((*writer)->IsLost());
  EXPECT_TRUE((*reader1)->IsLost());
  EXPECT_TRUE((*reader2)->IsLost());
  EXPECT_FALSE((*released)->IsLost());
  // Declared by the missed heartbeats: well before the TTL.
  EXPECT_LT(last_loss - cut_at, options->lease_ttl - options->heartbeat_interval);

  ASSERT_TRUE(other_lock.has_value()) << other_lock.error().ToString();
  EXPECT_LT(last_loss, other_got_it) << "both sides believed they held volume/x";
  EXPECT_LT(other_got_it - cut_at, options->lease_ttl + milliseconds(1500));
  EXPECT_GT((*other_lock)->fencing_token(), (*writer)->fencing_token());

  // Back online: a fresh lease serves new requests; the lost Lock cannot free the new holder.
  proxy.Restore();
  const Clock::time_point retry_deadline = Clock::now() + std::chrono::seconds(5);
  Result<ports::LockPtr> fresh = MakeError(ErrorCode::kUnavailable, "not tried");
  while (!fresh && Clock::now() < retry_deadline) {
    fresh = (*holder)->TryAcquire(LockRequest::Exclusive("volume/z"));
    if (!fresh) {
      std::this_thread::sleep_for(milliseconds(100));
    }
  }
  ASSERT_TRUE(fresh.has_value()) << fresh.error().ToString();
  EXPECT_NE((*holder)->CurrentLeaseForTest(), first_lease);
  EXPECT_FALSE((*fresh)->IsLost());
  (*writer)->Release();
  writer->reset();
  auto busy = (*holder)->TryAcquire(LockRequest::Exclusive("volume/x"));
  ASSERT_FALSE(busy.has_value()) << "the lost grant's release freed the new holder";
  EXPECT_EQ(busy.error().code, ErrorCode::kBusy);
  // Both readers' slots went with the lease.
  auto slot1 = (*other)->TryAcquire(LockRequest::Shared("volume/y", 2));
  auto slot2 = (*other)->TryAcquire(LockRequest::Shared("volume/y", 2));
  EXPECT_TRUE(slot1.has_value() && slot2.has_value());
  EXPECT_EQ(lost.size(), 3u) << "releasing lost grants must not call back again";
}

}  // namespace
}  // namespace clinker::adapters::etcd
