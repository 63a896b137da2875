// Goal: prove that every LockManager adapter meets the contract in ports/lock_manager.h (modes,
// writer preference, reader limits, fencing tokens, errors, release), so that the in-memory fake
// used by service tests behaves like the flock-based and etcd-based production adapters.
//
// Method: one typed suite (TYPED_TEST_SUITE_P) instantiated for MemoryLockManager,
// FileLockManager and EtcdLockManager (on the etcd of the CTest fixture "etcd", with 2 s leases;
// skipped when that server's env file is missing). Exclusion is checked with "inside" counters
// that each holder bumps while it holds the lock (8 threads x 200 exclusive grants never
// overlap; N readers are seen inside together; a cap of 2 is never exceeded and is reached);
// waiting is checked with TryAcquire and short Acquire timeouts; writer preference with a writer
// requested while readers arrive back to back; tokens by collecting every grant's token from many
// threads mixing modes. Then file-only tests with real processes: 8 forked workers x 200
// exclusive grants log "begin"/"end" lines with their tokens, and the log must alternate strictly
// with strictly increasing tokens; a SIGKILLed holder (writer or capped reader) frees its lock; a
// program spawned by a holder does not inherit it (O_CLOEXEC); tokens continue in a new manager
// on the same directory. Memory-only tests check ExpireForTest / ReleaseAllForTest (IsLost, one
// callback per lost grant). Etcd-only tests repeat the forked-workers log check against etcd,
// SIGKILL a holder (its lease expires: the waiter gets in within TTL + 1 s) and check tokens
// across managers. Every wait is bounded and every forked child is killed by PID if the test
// stops early.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clinker/adapters/etcd/etcd_lock_manager.h"
#include "clinker/adapters/file/file_lock_manager.h"
#include "clinker/adapters/memory/memory_lock_manager.h"
#include "clinker/core/uuid.h"

#include "support/temp_dir.h"
#include "support/test_servers.h"

extern char** environ;

namespace clinker::adapters {
namespace {

using ports::LockMode;
using ports::LockRequest;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

LockRequest Exclusive(std::string name) {
  return LockRequest::Exclusive(std::move(name));
}

LockRequest Shared(std::string name, int max_readers = 0) {
  return LockRequest::Shared(std::move(name), max_readers);
}

using clinker::test_support::TempDir;

// Keeps the largest value stored; safe from many threads.
void StoreMax(std::atomic<std::uint64_t>& target, std::uint64_t value) {
  std::uint64_t seen = target.load();
  while (seen < value && !target.compare_exchange_weak(seen, value)) {
  }
}

void StoreMax(std::atomic<int>& target, int value) {
  int seen = target.load();
  while (seen < value && !target.compare_exchange_weak(seen, value)) {
  }
}

// Spins (yielding) until `done` or `deadline`; returns done().
template <class Predicate>
bool WaitFor(Predicate done, Clock::time_point deadline) {
  while (!done()) {
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

struct MemoryFactory {
  static std::unique_ptr<ports::LockManager> Make(const std::string& /*dir*/) {
    return std::make_unique<MemoryLockManager>();
  }
};

struct FileFactory {
  static std::unique_ptr<ports::LockManager> Make(const std::string& dir) {
    auto manager = FileLockManager::Create(dir + "/locks");
    EXPECT_TRUE(manager.has_value()) << manager.error().ToString();
    return manager ? std::move(*manager) : nullptr;
  }
};

// The etcd started by the CTest fixture "etcd", with short lease times so that the tests stay
// fast. Every manager gets a prefix of its own, so tests sharing the server never meet.
std::optional<etcd::EtcdLockManager::Options> EtcdTestOptions() {
  return test_support::EtcdTestOptions(std::chrono::milliseconds(3000));
}

std::unique_ptr<ports::LockManager> OpenEtcd(const etcd::EtcdLockManager::Options& options) {
  auto manager = etcd::EtcdLockManager::Open(options);
  EXPECT_TRUE(manager.has_value()) << manager.error().ToString();
  return manager ? std::move(*manager) : nullptr;
}

struct EtcdFactory {
  // Non-empty when the fixture's server is not there (the suite is then skipped, not failed).
  static std::string SkipReason() {
    return EtcdTestOptions() ? std::string()
                             : "no etcd: " + test_support::TestServerEnvPath("etcd") +
                                   " is missing (run through ctest, which starts it)";
  }

  static std::unique_ptr<ports::LockManager> Make(const std::string& /*dir*/) {
    auto options = EtcdTestOptions();
    return options ? OpenEtcd(*options) : nullptr;
  }
};

template <class Factory>
class LockManagerContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if constexpr (requires { Factory::SkipReason(); }) {
      const std::string reason = Factory::SkipReason();
      if (!reason.empty()) {
        GTEST_SKIP() << reason;
      }
    }
    manager_ = Factory::Make(temp_dir_.path());
    ASSERT_NE(manager_, nullptr);
  }

  ports::LockManager& manager() { return *manager_; }

  // TryAcquire that must be refused with kBusy.
  void ExpectBusy(const LockRequest& request, const char* why) {
    auto lock = manager().TryAcquire(request);
    ASSERT_FALSE(lock.has_value()) << why;
    EXPECT_EQ(lock.error().code, ErrorCode::kBusy) << why << ": " << lock.error().ToString();
  }

  // TryAcquire that must succeed.
  ports::LockPtr MustTake(const LockRequest& request) {
    auto lock = manager().TryAcquire(request);
    EXPECT_TRUE(lock.has_value()) << request.name << ": " << lock.error().ToString();
    return lock ? std::move(*lock) : nullptr;
  }

 private:
  TempDir temp_dir_;
  std::unique_ptr<ports::LockManager> manager_;
};

TYPED_TEST_SUITE_P(LockManagerContractTest);

TYPED_TEST_P(LockManagerContractTest, ThreadsNeverHoldTheLockTogether) {
  constexpr int kThreads = 8;
  constexpr int kRoundsPerThread = 200;
  std::atomic<bool> inside{false};
  std::atomic<int> overlaps{0};
  std::atomic<int> failures{0};
  int counter = 0;  // Guarded by the lock under test; ordered by `inside` for the checker.
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(25);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      // Start together, so that the threads really contend instead of running one after another.
      ready.fetch_add(1);
      while (ready.load() < kThreads && Clock::now() < deadline) {
        std::this_thread::yield();
      }
      for (int round = 0; round < kRoundsPerThread && Clock::now() < deadline; ++round) {
        auto lock = this->manager().Acquire(Exclusive("volume/contended"), milliseconds(10000));
        if (!lock) {
          failures.fetch_add(1);
          continue;
        }
        if (inside.exchange(true, std::memory_order_acq_rel)) {
          overlaps.fetch_add(1);
        }
        const int seen = counter;
        std::this_thread::yield();  // Widens the window a broken lock would expose.
        counter = seen + 1;
        inside.store(false, std::memory_order_release);
        (*lock)->Release();
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(counter, kThreads * kRoundsPerThread) << "lost updates, or the 25 s deadline passed";
}

TYPED_TEST_P(LockManagerContractTest, GrantsReportTheirNameModeAndToken) {
  ports::LockPtr writer = this->MustTake(Exclusive("volume/a"));
  ASSERT_NE(writer, nullptr);
  EXPECT_EQ(writer->name(), "volume/a");
  EXPECT_EQ(writer->mode(), LockMode::kExclusive);
  EXPECT_GE(writer->fencing_token(), 1u);
  EXPECT_FALSE(writer->IsLost());
  const std::uint64_t writer_token = writer->fencing_token();
  writer->Release();
  EXPECT_FALSE(writer->IsLost()) << "a release is not a loss";

  ports::LockPtr reader = this->MustTake(Shared("volume/a", 3));
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->name(), "volume/a");
  EXPECT_EQ(reader->mode(), LockMode::kShared);
  EXPECT_GT(reader->fencing_token(), writer_token);
  EXPECT_FALSE(reader->IsLost());
}

TYPED_TEST_P(LockManagerContractTest, TryAcquireIsBusyWhileHeldAndSucceedsAfterRelease) {
  auto held = this->manager().TryAcquire(Exclusive("volume/a"));
  ASSERT_TRUE(held.has_value()) << held.error().ToString();
  EXPECT_EQ((*held)->name(), "volume/a");

  this->ExpectBusy(Exclusive("volume/a"), "second writer");

  (*held)->Release();
  auto third = this->manager().TryAcquire(Exclusive("volume/a"));
  EXPECT_TRUE(third.has_value()) << third.error().ToString();
}

TYPED_TEST_P(LockManagerContractTest, AcquireTimesOutWithBusy) {
  auto held = this->manager().Acquire(Exclusive("volume/a"), milliseconds(1000));
  ASSERT_TRUE(held.has_value()) << held.error().ToString();

  for (const LockRequest& request : {Exclusive("volume/a"), Shared("volume/a", 2)}) {
    SCOPED_TRACE(ports::LockModeName(request.mode));
    const milliseconds timeout(150);
    const Clock::time_point start = Clock::now();
    auto waiter = this->manager().Acquire(request, timeout);
    const auto elapsed = Clock::now() - start;
    ASSERT_FALSE(waiter.has_value());
    EXPECT_EQ(waiter.error().code, ErrorCode::kBusy);
    EXPECT_GE(elapsed, timeout);
    EXPECT_LT(elapsed, timeout + milliseconds(1500)) << "generous slack for a loaded machine";

    // A zero timeout is a single attempt.
    const Clock::time_point zero_start = Clock::now();
    auto zero = this->manager().Acquire(request, milliseconds(0));
    ASSERT_FALSE(zero.has_value());
    EXPECT_EQ(zero.error().code, ErrorCode::kBusy);
    EXPECT_LT(Clock::now() - zero_start, milliseconds(500));
  }
}

TYPED_TEST_P(LockManagerContractTest, ReleaseIsIdempotent) {
  for (const LockRequest& request : {Exclusive("volume/a"), Shared("volume/b", 1)}) {
    SCOPED_TRACE(request.name);
    auto first = this->manager().TryAcquire(request);
    ASSERT_TRUE(first.has_value()) << first.error().ToString();
    (*first)->Release();
    (*first)->Release();

    auto second = this->manager().TryAcquire(request);
    ASSERT_TRUE(second.has_value()) << second.error().ToString();
    // A stale Lock released again (or destroyed) must not free the new holder's grant.
    (*first)->Release();
    first->reset();
    this->ExpectBusy(request, "the second grant must still hold");
  }
}

TYPED_TEST_P(LockManagerContractTest, DestroyingALockReleasesIt) {
  for (const LockRequest& request : {Exclusive("volume/a"), Shared("volume/b", 1)}) {
    SCOPED_TRACE(request.name);
    {
      auto lock = this->manager().TryAcquire(request);
      ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
      this->ExpectBusy(request, "held");
    }
    auto again = this->manager().TryAcquire(request);
    EXPECT_TRUE(again.has_value()) << again.error().ToString();
  }
}

TYPED_TEST_P(LockManagerContractTest, DifferentNamesDoNotConflict) {
  // Names that a careless file-name encoding would map to one file.
  const std::vector<std::string> names = {
      "volume/1", "volume%2F1", "volume_1", "volume 1", "volume.1", "volume/1/", "Volume/1"};
  std::vector<ports::LockPtr> held;
  for (const std::string& name : names) {
    auto lock = this->manager().TryAcquire(Exclusive(name));
    ASSERT_TRUE(lock.has_value()) << name << ": " << lock.error().ToString();
    EXPECT_EQ((*lock)->name(), name);
    held.push_back(std::move(*lock));
  }
  for (const std::string& name : names) {
    this->ExpectBusy(Exclusive(name), name.c_str());
    this->ExpectBusy(Shared(name), name.c_str());
  }
}

// A writer waiting on one name, or a name at its reader limit, must not hold back another name.
TYPED_TEST_P(LockManagerContractTest, WaitingWritersAndLimitsStayWithTheirName) {
  ports::LockPtr reader = this->MustTake(Shared("volume/a"));
  ASSERT_NE(reader, nullptr);
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    auto lock = this->manager().Acquire(Exclusive("volume/a"), milliseconds(5000));
    EXPECT_TRUE(lock.has_value()) << lock.error().ToString();
    writer_done.store(true);
  });
  // Wait until the writer queues (new readers of volume/a are then refused).
  const bool writer_waits =
      WaitFor([&] { return !this->manager().TryAcquire(Shared("volume/a")).has_value(); },
              Clock::now() + std::chrono::seconds(3));
  EXPECT_TRUE(writer_waits);

  ports::LockPtr other_reader = this->MustTake(Shared("volume/b", 1));
  EXPECT_NE(other_reader, nullptr);
  this->ExpectBusy(Shared("volume/b", 1), "volume/b is at its limit");
  ports::LockPtr third_reader = this->MustTake(Shared("volume/c", 1));
  ports::LockPtr third_writer = this->MustTake(Exclusive("volume/d"));
  EXPECT_NE(third_reader, nullptr);
  EXPECT_NE(third_writer, nullptr);
  EXPECT_FALSE(writer_done.load());

  reader->Release();
  writer.join();
  EXPECT_TRUE(writer_done.load());
}

TYPED_TEST_P(LockManagerContractTest, WaiterGetsTheLockPromptlyAfterRelease) {
  auto held = this->manager().TryAcquire(Exclusive("volume/a"));
  ASSERT_TRUE(held.has_value()) << held.error().ToString();

  std::atomic<bool> acquired{false};
  std::atomic<bool> ok{false};
  Clock::time_point acquired_at{};
  std::thread waiter([&] {
    auto lock = this->manager().Acquire(Exclusive("volume/a"), milliseconds(5000));
    acquired_at = Clock::now();
    ok.store(lock.has_value());
    acquired.store(true);
  });
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_FALSE(acquired.load()) << "the waiter got a held lock";
  const Clock::time_point released_at = Clock::now();
  (*held)->Release();
  waiter.join();
  ASSERT_TRUE(ok.load());
  EXPECT_LT(acquired_at - released_at, milliseconds(250));
}

TYPED_TEST_P(LockManagerContractTest, HugeTimeoutWaitsInsteadOfOverflowing) {
  auto held = this->manager().TryAcquire(Exclusive("volume/a"));
  ASSERT_TRUE(held.has_value()) << held.error().ToString();
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(50));
    (*held)->Release();
  });
  auto lock = this->manager().Acquire(Exclusive("volume/a"), milliseconds::max());
  releaser.join();
  EXPECT_TRUE(lock.has_value()) << lock.error().ToString();
}

TYPED_TEST_P(LockManagerContractTest, BadRequestsAreInvalid) {
  const std::vector<std::pair<LockRequest, const char*>> bad = {
      {Exclusive(""), "empty name"},
      {Shared(""), "empty name, shared"},
      {Shared("volume/a", -1), "negative max_readers"},
      {Shared("volume/a", ports::kMaxReadersLimit + 1), "max_readers over the limit"},
      {LockRequest{"volume/a", LockMode::kExclusive, 2}, "max_readers on an exclusive request"},
  };
  for (const auto& [request, why] : bad) {
    auto lock = this->manager().TryAcquire(request);
    ASSERT_FALSE(lock.has_value()) << why;
    EXPECT_EQ(lock.error().code, ErrorCode::kInvalidArgument) << why;
    auto waited = this->manager().Acquire(request, milliseconds(50));
    ASSERT_FALSE(waited.has_value()) << why;
    EXPECT_EQ(waited.error().code, ErrorCode::kInvalidArgument) << why;
  }
  // The bad requests left nothing held.
  EXPECT_NE(this->MustTake(Exclusive("volume/a")), nullptr);
  EXPECT_NE(this->MustTake(Shared("volume/b", ports::kMaxReadersLimit)), nullptr);
}

TYPED_TEST_P(LockManagerContractTest, ReadersShareTheLock) {
  constexpr int kReaders = 4;
  // One thread holding several grants: each is its own holder.
  std::vector<ports::LockPtr> readers;
  for (int i = 0; i < kReaders; ++i) {
    readers.push_back(this->MustTake(Shared("volume/a")));
    ASSERT_NE(readers.back(), nullptr) << "reader " << i;
  }
  readers.clear();

  // Readers on their own threads, each waiting inside until it has seen all the others inside.
  std::atomic<int> inside{0};
  std::atomic<int> saw_all{0};
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReaders; ++i) {
    threads.emplace_back([&] {
      auto lock = this->manager().Acquire(Shared("volume/a"), milliseconds(5000));
      if (!lock) {
        return;
      }
      inside.fetch_add(1);
      if (WaitFor([&] { return inside.load() == kReaders; }, deadline)) {
        saw_all.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(saw_all.load(), kReaders) << "the readers were never all inside together";
}

TYPED_TEST_P(LockManagerContractTest, AWriterExcludesReadersAndReadersExcludeAWriter) {
  {
    ports::LockPtr writer = this->MustTake(Exclusive("volume/a"));
    ASSERT_NE(writer, nullptr);
    this->ExpectBusy(Shared("volume/a"), "reader while a writer holds");
    this->ExpectBusy(Shared("volume/a", 5), "capped reader while a writer holds");
  }
  ports::LockPtr first = this->MustTake(Shared("volume/a"));
  ports::LockPtr second = this->MustTake(Shared("volume/a"));
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  this->ExpectBusy(Exclusive("volume/a"), "writer while readers hold");

  std::atomic<bool> acquired{false};
  Clock::time_point acquired_at{};
  std::thread writer([&] {
    auto lock = this->manager().Acquire(Exclusive("volume/a"), milliseconds(5000));
    acquired_at = Clock::now();
    acquired.store(lock.has_value());
  });
  std::this_thread::sleep_for(milliseconds(100));
  first->Release();
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(acquired.load()) << "the writer got in while a reader still held the lock";
  const Clock::time_point released_at = Clock::now();
  second->Release();
  writer.join();
  ASSERT_TRUE(acquired.load());
  EXPECT_LT(acquired_at - released_at, milliseconds(250));
}

TYPED_TEST_P(LockManagerContractTest, ReaderLimitHolds) {
  ports::LockPtr first = this->MustTake(Shared("volume/a", 2));
  ports::LockPtr second = this->MustTake(Shared("volume/a", 2));
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  this->ExpectBusy(Shared("volume/a", 2), "third reader with a cap of 2");
  auto waited = this->manager().Acquire(Shared("volume/a", 2), milliseconds(100));
  ASSERT_FALSE(waited.has_value());
  EXPECT_EQ(waited.error().code, ErrorCode::kBusy);

  // A waiting third reader gets in once one of the two leaves.
  std::atomic<bool> acquired{false};
  Clock::time_point acquired_at{};
  std::thread third([&] {
    auto lock = this->manager().Acquire(Shared("volume/a", 2), milliseconds(5000));
    acquired_at = Clock::now();
    acquired.store(lock.has_value());
  });
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_FALSE(acquired.load()) << "a third reader got in under a cap of 2";
  const Clock::time_point released_at = Clock::now();
  first->Release();
  third.join();
  ASSERT_TRUE(acquired.load());
  EXPECT_LT(acquired_at - released_at, milliseconds(250));
}

TYPED_TEST_P(LockManagerContractTest, ReaderLimitHoldsUnderContention) {
  constexpr int kThreads = 6;
  constexpr int kRounds = 25;
  constexpr int kCap = 2;
  std::atomic<int> inside{0};
  std::atomic<int> most_inside{0};
  std::atomic<int> failures{0};
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(20);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < kRounds && Clock::now() < deadline; ++round) {
        auto lock = this->manager().Acquire(Shared("volume/a", kCap), milliseconds(10000));
        if (!lock) {
          failures.fetch_add(1);
          continue;
        }
        StoreMax(most_inside, inside.fetch_add(1) + 1);
        std::this_thread::sleep_for(milliseconds(1));  // Overlap with the other readers.
        inside.fetch_sub(1);
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(most_inside.load(), kCap);
  EXPECT_EQ(most_inside.load(), kCap) << "the readers never shared the lock";
}

// The smallest cap among the request and the counted holders decides (ports/lock_manager.h).
TYPED_TEST_P(LockManagerContractTest, MixedCapsAreServedWithTheSmallest) {
  {
    // Holders capped at 2: a request with a larger cap, or none, still sees a full lock.
    ports::LockPtr a = this->MustTake(Shared("volume/small", 2));
    ports::LockPtr b = this->MustTake(Shared("volume/small", 2));
    this->ExpectBusy(Shared("volume/small", 5), "cap 5 while two cap-2 holders are in");
    this->ExpectBusy(Shared("volume/small"), "no cap while two cap-2 holders are in");
  }
  {
    // Holders capped at 5: a request capped at 2 is refused once 2 are in, one capped at 4 is
    // served, and then the holders' smallest cap is 4.
    std::vector<ports::LockPtr> held;
    for (int i = 0; i < 3; ++i) {
      held.push_back(this->MustTake(Shared("volume/large", 5)));
    }
    this->ExpectBusy(Shared("volume/large", 2), "cap 2 while three are in");
    held.push_back(this->MustTake(Shared("volume/large", 4)));
    this->ExpectBusy(Shared("volume/large", 5), "cap 5 while four are in, one capped at 4");
  }
  {
    // A request without a cap, arriving while a capped holder is in, takes that cap and counts.
    ports::LockPtr capped = this->MustTake(Shared("volume/joined", 2));
    ports::LockPtr uncapped = this->MustTake(Shared("volume/joined"));
    this->ExpectBusy(Shared("volume/joined", 2), "the uncapped reader counts");
  }
  {
    // Readers without a cap, with no capped holder inside, are not counted.
    std::vector<ports::LockPtr> held;
    for (int i = 0; i < 3; ++i) {
      held.push_back(this->MustTake(Shared("volume/free")));
    }
    held.push_back(this->MustTake(Shared("volume/free", 2)));
    held.push_back(this->MustTake(Shared("volume/free", 2)));
    this->ExpectBusy(Shared("volume/free", 2), "two capped readers are in");
  }
}

// New readers queue behind a waiting writer, so a stream of readers cannot starve it.
TYPED_TEST_P(LockManagerContractTest, AWaitingWriterHoldsBackNewReaders) {
  ports::LockPtr reader = this->MustTake(Shared("volume/a"));
  ASSERT_NE(reader, nullptr);
  std::atomic<bool> acquired{false};
  std::thread writer([&] {
    auto lock = this->manager().Acquire(Exclusive("volume/a"), milliseconds(5000));
    acquired.store(lock.has_value());
  });
  // A broken adapter keeps admitting readers and this wait times out.
  const bool readers_refused =
      WaitFor([&] { return !this->manager().TryAcquire(Shared("volume/a")).has_value(); },
              Clock::now() + std::chrono::seconds(3));
  EXPECT_TRUE(readers_refused) << "new readers kept getting in while a writer waited";
  auto timed_out = this->manager().Acquire(Shared("volume/a", 3), milliseconds(50));
  EXPECT_FALSE(timed_out.has_value());
  EXPECT_FALSE(acquired.load());
  reader->Release();
  writer.join();
  EXPECT_TRUE(acquired.load());
}

TYPED_TEST_P(LockManagerContractTest, WriterIsNotStarvedByAStreamOfReaders) {
  constexpr int kReaders = 4;
  std::atomic<bool> stop{false};
  std::atomic<int> inside{0};
  std::atomic<int> most_inside{0};
  std::atomic<int> reader_grants{0};
  std::atomic<int> reader_failures{0};
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(15);
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&] {
      // Back to back: each reader asks again as soon as it let go, and holds for 3 ms, so with
      // four of them the lock is practically never free of readers.
      while (!stop.load() && Clock::now() < deadline) {
        auto lock = this->manager().Acquire(Shared("volume/a"), milliseconds(5000));
        if (!lock) {
          reader_failures.fetch_add(1);
          continue;
        }
        reader_grants.fetch_add(1);
        StoreMax(most_inside, inside.fetch_add(1) + 1);
        std::this_thread::sleep_for(milliseconds(3));
        inside.fetch_sub(1);
      }
    });
  }
  // Let the stream settle before the writer arrives.
  EXPECT_TRUE(
      WaitFor([&] { return reader_grants.load() >= 20; }, Clock::now() + std::chrono::seconds(5)));
  const Clock::time_point requested_at = Clock::now();
  auto writer = this->manager().Acquire(Exclusive("volume/a"), milliseconds(5000));
  const auto waited = Clock::now() - requested_at;
  const int inside_with_writer = inside.load();
  if (writer) {
    (*writer)->Release();
  }
  stop.store(true);
  for (std::thread& thread : readers) {
    thread.join();
  }
  ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
  EXPECT_LT(waited, milliseconds(2000)) << "the writer waited too long behind the readers";
  EXPECT_EQ(inside_with_writer, 0) << "a reader was inside with the writer";
  EXPECT_GE(most_inside.load(), 2) << "the readers did not overlap: the test proves nothing";
  EXPECT_EQ(reader_failures.load(), 0);
}

// Every grant of one name, shared or exclusive, gets a token larger than every token granted
// before it was requested; so all tokens differ.
TYPED_TEST_P(LockManagerContractTest, TokensIncreaseAcrossAllGrantsOfAName) {
  constexpr int kThreads = 6;
  constexpr int kRounds = 30;
  std::atomic<std::uint64_t> largest_granted{0};
  std::atomic<int> out_of_order{0};
  std::atomic<int> failures{0};
  std::mutex tokens_mutex;
  std::vector<std::uint64_t> tokens;
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(20);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds && Clock::now() < deadline; ++round) {
        const LockRequest request = (t + round) % 3 == 0   ? Exclusive("volume/a")
                                    : (t + round) % 3 == 1 ? Shared("volume/a")
                                                           : Shared("volume/a", 2);
        const std::uint64_t before = largest_granted.load();
        auto lock = this->manager().Acquire(request, milliseconds(10000));
        if (!lock) {
          failures.fetch_add(1);
          continue;
        }
        const std::uint64_t token = (*lock)->fencing_token();
        if (token <= before) {
          out_of_order.fetch_add(1);
        }
        StoreMax(largest_granted, token);
        {
          std::lock_guard<std::mutex> guard(tokens_mutex);
          tokens.push_back(token);
        }
        std::this_thread::yield();
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(out_of_order.load(), 0) << "a grant got a token not above an earlier grant's";
  ASSERT_EQ(tokens.size(), static_cast<std::size_t>(kThreads * kRounds));
  const std::set<std::uint64_t> distinct(tokens.begin(), tokens.end());
  EXPECT_EQ(distinct.size(), tokens.size()) << "two grants shared a token";
  EXPECT_GE(*distinct.begin(), 1u);
}

REGISTER_TYPED_TEST_SUITE_P(LockManagerContractTest,
                            ThreadsNeverHoldTheLockTogether,
                            GrantsReportTheirNameModeAndToken,
                            TryAcquireIsBusyWhileHeldAndSucceedsAfterRelease,
                            AcquireTimesOutWithBusy,
                            ReleaseIsIdempotent,
                            DestroyingALockReleasesIt,
                            DifferentNamesDoNotConflict,
                            WaitingWritersAndLimitsStayWithTheirName,
                            WaiterGetsTheLockPromptlyAfterRelease,
                            HugeTimeoutWaitsInsteadOfOverflowing,
                            BadRequestsAreInvalid,
                            ReadersShareTheLock,
                            AWriterExcludesReadersAndReadersExcludeAWriter,
                            ReaderLimitHolds,
                            ReaderLimitHoldsUnderContention,
                            MixedCapsAreServedWithTheSmallest,
                            AWaitingWriterHoldsBackNewReaders,
                            WriterIsNotStarvedByAStreamOfReaders,
                            TokensIncreaseAcrossAllGrantsOfAName);

using Factories = ::testing::Types<MemoryFactory, FileFactory, EtcdFactory>;

class FactoryNames {
 public:
  template <class T>
  static std::string GetName(int /*index*/) {
    return std::is_same_v<T, MemoryFactory> ? "Memory"
           : std::is_same_v<T, FileFactory> ? "File"
                                            : "Etcd";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(All, LockManagerContractTest, Factories, FactoryNames);

// ---- Memory-only: losses a test injects. ----

struct LostRecord {
  std::string name;
  std::uint64_t token;
  bool held_during_callback;
};

TEST(MemoryLockManagerTest, ExpireForTestMarksTheGrantLostAndCallsBackOnce) {
  MemoryLockManager manager;
  std::vector<LostRecord> lost;
  manager.SetLostCallback([&](const std::string& name, std::uint64_t token) {
    // Calling into the manager here would deadlock if the callback ran under its mutex.
    lost.push_back({name, token, manager.IsHeld(name)});
  });
  auto held = manager.TryAcquire(Exclusive("volume/a"));
  ASSERT_TRUE(held.has_value()) << held.error().ToString();
  auto other = manager.TryAcquire(Exclusive("volume/b"));
  ASSERT_TRUE(other.has_value()) << other.error().ToString();
  const std::uint64_t token = (*held)->fencing_token();

  EXPECT_EQ(manager.ExpireForTest("volume/a"), 1u);

  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].name, "volume/a");
  EXPECT_EQ(lost[0].token, token);
  EXPECT_FALSE(lost[0].held_during_callback) << "the name is free before the callback runs";
  EXPECT_TRUE((*held)->IsLost());
  EXPECT_FALSE((*other)->IsLost());
  EXPECT_TRUE(manager.IsHeld("volume/b"));

  // The name is free at once, with a larger token; the lost Lock cannot free the new grant.
  auto next = manager.TryAcquire(Exclusive("volume/a"));
  ASSERT_TRUE(next.has_value()) << next.error().ToString();
  EXPECT_GT((*next)->fencing_token(), token);
  (*held)->Release();
  held->reset();
  EXPECT_TRUE(manager.IsHeld("volume/a"));
  EXPECT_EQ(lost.size(), 1u) << "releasing a lost grant must not call back again";

  // Expiring a free name, or releasing normally, calls nothing.
  (*next)->Release();
  EXPECT_EQ(manager.ExpireForTest("volume/a"), 0u);
  EXPECT_EQ(manager.ExpireForTest("volume/never"), 0u);
  (*other)->Release();
  EXPECT_EQ(lost.size(), 1u);
  EXPECT_FALSE((*other)->IsLost());
}

TEST(MemoryLockManagerTest, ExpiringReadersCallsBackForEachGrant) {
  MemoryLockManager manager;
  std::vector<LostRecord> lost;
  manager.SetLostCallback([&](const std::string& name, std::uint64_t token) {
    lost.push_back({name, token, false});
  });
  auto first = manager.TryAcquire(Shared("volume/a", 2));
  auto second = manager.TryAcquire(Shared("volume/a", 2));
  ASSERT_TRUE(first.has_value() && second.has_value());

  EXPECT_EQ(manager.ExpireForTest("volume/a"), 2u);

  ASSERT_EQ(lost.size(), 2u);
  const std::set<std::uint64_t> tokens = {lost[0].token, lost[1].token};
  EXPECT_EQ(tokens,
            (std::set<std::uint64_t>{(*first)->fencing_token(), (*second)->fencing_token()}));
  EXPECT_TRUE((*first)->IsLost());
  EXPECT_TRUE((*second)->IsLost());
  // The cap no longer counts the lost readers.
  auto again = manager.TryAcquire(Shared("volume/a", 2));
  auto again2 = manager.TryAcquire(Shared("volume/a", 2));
  EXPECT_TRUE(again.has_value() && again2.has_value());
}

TEST(MemoryLockManagerTest, ReleaseAllForTestLosesEveryGrant) {
  MemoryLockManager manager;
  int calls = 0;
  manager.SetLostCallback([&](const std::string&, std::uint64_t) { ++calls; });
  auto writer = manager.TryAcquire(Exclusive("volume/a"));
  auto reader = manager.TryAcquire(Shared("volume/b"));
  ASSERT_TRUE(writer.has_value() && reader.has_value());
  EXPECT_EQ(manager.HeldCount(), 2u);

  EXPECT_EQ(manager.ReleaseAllForTest(), 2u);

  EXPECT_EQ(calls, 2);
  EXPECT_EQ(manager.HeldCount(), 0u);
  EXPECT_TRUE((*writer)->IsLost());
  EXPECT_TRUE((*reader)->IsLost());

  // A replaced (or removed) callback is the one that runs.
  manager.SetLostCallback(nullptr);
  auto again = manager.TryAcquire(Exclusive("volume/a"));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(manager.ReleaseAllForTest(), 1u);
  EXPECT_EQ(calls, 2);
}

// ---- File-only: real processes. ----

// Kills and reaps every child still registered, so a failing test leaves no process behind.
class Children {
 public:
  Children() = default;
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;

  ~Children() {
    for (pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  void Add(pid_t pid) { pids_.push_back(pid); }

  // Waits (bounded) for `pid` to exit; returns its exit code, or -1 if it died by a signal or
  // did not exit in time (then it is killed).
  int Wait(pid_t pid, milliseconds timeout) {
    const Clock::time_point deadline = Clock::now() + timeout;
    int status = 0;
    while (true) {
      const pid_t done = ::waitpid(pid, &status, WNOHANG);
      if (done == pid) {
        Forget(pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      if (done < 0 || Clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        Forget(pid);
        return -1;
      }
      std::this_thread::sleep_for(milliseconds(2));
    }
  }

  void Forget(pid_t pid) { std::erase(pids_, pid); }

 private:
  std::vector<pid_t> pids_;
};

bool WriteAll(int fd, const std::string& text) {
  return ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

// Reads one byte from `fd` within `timeout`.
bool ReadByte(int fd, milliseconds timeout, char* byte) {
  pollfd entry{fd, POLLIN, 0};
  if (::poll(&entry, 1, static_cast<int>(timeout.count())) != 1) {
    return false;
  }
  return ::read(fd, byte, 1) == 1;
}

constexpr int kWorkerRounds = 200;

// Opens a manager in a forked child (nullptr on failure).
using ManagerOpener = std::function<std::unique_ptr<ports::LockManager>()>;

ManagerOpener FileOpener(const std::string& lock_dir) {
  return [lock_dir]() -> std::unique_ptr<ports::LockManager> {
    auto manager = FileLockManager::Create(lock_dir);
    return manager ? std::move(*manager) : nullptr;
  };
}

// The body of a forked worker: kWorkerRounds rounds of lock, "begin <pid> <token>", pause,
// "end <pid>", unlock. Exits with the number of failed rounds (0 expected); never returns.
[[noreturn]] void AppendUnderLock(const ManagerOpener& open_manager, const std::string& log_path) {
  std::unique_ptr<ports::LockManager> manager = open_manager();
  int failures = manager ? 0 : kWorkerRounds;
  const std::string pid = std::to_string(::getpid());
  for (int round = 0; manager && round < kWorkerRounds; ++round) {
    auto lock = manager->Acquire(Exclusive("volume/shared"), milliseconds(20000));
    if (!lock) {
      ++failures;
      continue;
    }
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    const std::string token = std::to_string((*lock)->fencing_token());
    bool written = fd >= 0 && WriteAll(fd, "begin " + pid + " " + token + "\n");
    ::usleep(50);  // Another holder would write here if exclusion were broken.
    written = written && WriteAll(fd, "end " + pid + "\n");
    if (fd >= 0) {
      ::close(fd);
    }
    failures += written ? 0 : 1;
  }
  manager.reset();  // Joins the manager's threads (if any) before _exit.
  ::_exit(failures > 100 ? 100 : failures);
}

// Forks kProcesses workers (AppendUnderLock), waits for them, and checks the log: strictly
// alternating begin/end lines, strictly increasing tokens, every round of every worker present.
void RunForkedWorkersAndCheckTheLog(const ManagerOpener& open_manager,
                                    const std::string& log_path,
                                    milliseconds worker_timeout) {
  constexpr int kProcesses = 8;
  Children children;
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcesses; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) {
      AppendUnderLock(open_manager, log_path);
    }
    children.Add(pid);
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    EXPECT_EQ(children.Wait(pid, worker_timeout), 0) << "worker " << pid;
  }

  std::ifstream log(log_path);
  std::string line;
  std::string open_pid;  // The pid between its "begin" and "end"; empty outside.
  std::uint64_t last_token = 0;
  std::map<std::string, int> rounds;
  int line_number = 0;
  while (std::getline(log, line)) {
    ++line_number;
    std::istringstream fields(line);
    std::string word;
    std::string pid;
    fields >> word >> pid;
    if (word == "begin") {
      ASSERT_TRUE(open_pid.empty()) << "line " << line_number << ": " << pid << " began while "
                                    << open_pid << " held the lock";
      open_pid = pid;
      std::uint64_t token = 0;
      ASSERT_TRUE(fields >> token) << "line " << line_number;
      ASSERT_GT(token, last_token) << "line " << line_number << ": tokens must increase";
      last_token = token;
    } else {
      ASSERT_EQ(word, "end") << "line " << line_number;
      ASSERT_EQ(pid, open_pid) << "line " << line_number << ": end of a section never begun";
      open_pid.clear();
      ++rounds[pid];
    }
  }
  EXPECT_TRUE(open_pid.empty());
  ASSERT_EQ(rounds.size(), static_cast<std::size_t>(kProcesses));
  for (const auto& [pid, count] : rounds) {
    EXPECT_EQ(count, kWorkerRounds) << "worker " << pid;
  }
}

TEST(FileLockManagerTest, ForkedProcessesNeverHoldTheLockTogetherAndTokensIncrease) {
  TempDir temp_dir;
  RunForkedWorkersAndCheckTheLog(
      FileOpener(temp_dir.path() + "/locks"), temp_dir.path() + "/log", milliseconds(25000));
}

// Forks a child that takes `request` from a manager `open_manager` makes, reports 'L' (or 'F')
// on a pipe and sleeps until killed. Returns its pid, or -1 if it did not report 'L'.
pid_t ForkHolder(const ManagerOpener& open_manager,
                 const LockRequest& request,
                 Children* children) {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    return -1;
  }
  if (pid == 0) {
    std::unique_ptr<ports::LockManager> manager = open_manager();
    ports::LockPtr lock;
    if (manager) {
      auto taken = manager->TryAcquire(request);
      if (taken) {
        lock = std::move(*taken);
      }
    }
    const char byte = lock != nullptr ? 'L' : 'F';
    if (::write(ready[1], &byte, 1) != 1) {
      ::_exit(2);
    }
    ::sleep(30);  // Bounded: the parent kills it long before.
    ::_exit(0);
  }
  children->Add(pid);
  ::close(ready[1]);
  char byte = 0;
  const bool reported = ReadByte(ready[0], milliseconds(5000), &byte);
  ::close(ready[0]);
  return reported && byte == 'L' ? pid : -1;
}

TEST(FileLockManagerTest, KilledHolderLosesTheLock) {
  TempDir temp_dir;
  const std::string lock_dir = temp_dir.path() + "/locks";
  auto manager = FileLockManager::Create(lock_dir);
  ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
  Children children;
  const pid_t pid = ForkHolder(FileOpener(lock_dir), Exclusive("volume/a"), &children);
  ASSERT_GT(pid, 0) << "the child could not take the lock";

  auto busy = (*manager)->TryAcquire(Exclusive("volume/a"));
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error().code, ErrorCode::kBusy);

  const Clock::time_point killed_at = Clock::now();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto lock = (*manager)->Acquire(Exclusive("volume/a"), milliseconds(1000));
  ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
  EXPECT_LT(Clock::now() - killed_at, milliseconds(1000));
  EXPECT_EQ(children.Wait(pid, milliseconds(5000)), -1);
}

// A reader that dies gives back its slot as well as the lock.
TEST(FileLockManagerTest, KilledReaderFreesItsSlot) {
  TempDir temp_dir;
  const std::string lock_dir = temp_dir.path() + "/locks";
  auto manager = FileLockManager::Create(lock_dir);
  ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
  Children children;
  const pid_t pid = ForkHolder(FileOpener(lock_dir), Shared("volume/a", 1), &children);
  ASSERT_GT(pid, 0) << "the child could not take the lock";

  auto busy = (*manager)->TryAcquire(Shared("volume/a", 1));
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error().code, ErrorCode::kBusy);

  const Clock::time_point killed_at = Clock::now();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto lock = (*manager)->Acquire(Shared("volume/a", 1), milliseconds(1000));
  ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
  EXPECT_LT(Clock::now() - killed_at, milliseconds(1000));
  EXPECT_EQ(children.Wait(pid, milliseconds(5000)), -1);
}

// A holder that spawns a program (qemu-img, dd) and then dies must not leave its lock with that
// program: the lock descriptor is O_CLOEXEC.
TEST(FileLockManagerTest, SpawnedProgramDoesNotKeepADeadHoldersLock) {
  TempDir temp_dir;
  auto manager = FileLockManager::Create(temp_dir.path() + "/locks");
  ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  Children children;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) {
    auto lock = (*manager)->TryAcquire(Exclusive("volume/a"));
    pid_t helper = -1;
    char sleep_path[] = "/bin/sleep";
    char seconds[] = "10";
    char* argv[] = {sleep_path, seconds, nullptr};
    const bool spawned =
        lock && ::posix_spawn(&helper, sleep_path, nullptr, nullptr, argv, environ) == 0;
    const std::string report = spawned ? std::to_string(helper) + "\n" : "F\n";
    if (::write(ready[1], report.data(), report.size()) != static_cast<ssize_t>(report.size())) {
      ::_exit(2);
    }
    ::sleep(30);
    ::_exit(0);
  }
  children.Add(pid);
  ::close(ready[1]);
  std::string report;
  char byte = 0;
  while (report.size() < 32 && ReadByte(ready[0], milliseconds(5000), &byte) && byte != '\n') {
    report.push_back(byte);
  }
  ::close(ready[0]);
  ASSERT_FALSE(report.empty());
  ASSERT_NE(report, "F") << "the child could not take the lock or spawn the helper";
  const pid_t helper = static_cast<pid_t>(std::stol(report));

  // The helper is the child's child: the kernel reparents it when the child dies, so it is
  // killed by PID here rather than reaped.
  struct HelperKiller {
    pid_t pid;

    ~HelperKiller() { ::kill(pid, SIGKILL); }
  } helper_killer{helper};

  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_EQ(children.Wait(pid, milliseconds(5000)), -1);
  ASSERT_EQ(::kill(helper, 0), 0) << "the spawned helper should still be running";
  auto lock = (*manager)->Acquire(Exclusive("volume/a"), milliseconds(1000));
  EXPECT_TRUE(lock.has_value()) << "the spawned program kept the lock";
}

TEST(FileLockManagerTest, TokensContinueInANewManagerOnTheSameDirectory) {
  TempDir temp_dir;
  const std::string lock_dir = temp_dir.path() + "/locks";
  std::uint64_t last = 0;
  for (int generation = 0; generation < 3; ++generation) {
    SCOPED_TRACE(generation);
    auto manager = FileLockManager::Create(lock_dir);
    ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
    for (const LockRequest& request : {Exclusive("volume/a"), Shared("volume/a", 2)}) {
      auto lock = (*manager)->TryAcquire(request);
      ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
      EXPECT_GT((*lock)->fencing_token(), last);
      last = (*lock)->fencing_token();
    }
  }
}

// Tokens come from the wall clock when it is ahead of the file (see file_lock_manager.h): a token
// file whose last write was lost, or one far behind, still yields a larger token than any before.
TEST(FileLockManagerTest, TokensStayAheadOfTheWallClockAndOfTheFile) {
  TempDir temp_dir;
  const std::string lock_dir = temp_dir.path() + "/locks";
  auto manager = FileLockManager::Create(lock_dir);
  ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
  const auto now_us =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  std::uint64_t first = 0;
  {
    auto lock = (*manager)->TryAcquire(Exclusive("volume/a"));
    ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
    first = (*lock)->fencing_token();
    EXPECT_GE(first, now_us);
  }
  // A file far ahead of the clock (a clock stepped back) still counts up from the file.
  const std::string token_path = lock_dir + "/volume%2Fa.token";
  { std::ofstream(token_path, std::ios::trunc) << "09000000000000000000\n"; }
  auto lock = (*manager)->TryAcquire(Exclusive("volume/a"));
  ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
  EXPECT_EQ((*lock)->fencing_token(), 9000000000000000001u);
}

TEST(FileLockManagerTest, CorruptTokenFileIsUnavailableNotReset) {
  TempDir temp_dir;
  const std::string lock_dir = temp_dir.path() + "/locks";
  auto manager = FileLockManager::Create(lock_dir);
  ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
  {
    auto lock = (*manager)->TryAcquire(Exclusive("volume/a"));
    ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
  }
  const std::string token_path = lock_dir + "/volume%2Fa.token";
  std::uint64_t issued = 0;
  {
    std::ifstream in(token_path);
    std::string content;
    std::getline(in, content);
    ASSERT_EQ(content.size(), 20u) << content;
    issued = std::stoull(content);
  }
  { std::ofstream(token_path, std::ios::trunc) << "garbage\n"; }

  for (const LockRequest& request : {Exclusive("volume/a"), Shared("volume/a")}) {
    auto lock = (*manager)->TryAcquire(request);
    ASSERT_FALSE(lock.has_value());
    EXPECT_EQ(lock.error().code, ErrorCode::kUnavailable) << lock.error().ToString();
  }
  // Nothing stayed held: a repaired file serves again, with a token past every earlier one.
  { std::ofstream(token_path, std::ios::trunc) << "00000000000000000041\n"; }
  auto lock = (*manager)->TryAcquire(Exclusive("volume/a"));
  ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
  EXPECT_GT((*lock)->fencing_token(), issued);
}

TEST(FileLockManagerTest, LockFilesStayInTheLockDirectory) {
  TempDir temp_dir;
  const std::string lock_dir = temp_dir.path() + "/locks";
  auto manager = FileLockManager::Create(lock_dir);
  ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
  EXPECT_EQ((*manager)->PathFor("volume/ab-1"), lock_dir + "/volume%2Fab-1.lock");
  EXPECT_EQ((*manager)->PathFor("../x"), lock_dir + "/..%2Fx.lock");
  EXPECT_EQ((*manager)->PathFor("a%b"), lock_dir + "/a%25b.lock");
  {
    auto writer = (*manager)->Acquire(Exclusive("../escape"), milliseconds(1000));
    ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
  }
  {
    auto reader = (*manager)->TryAcquire(Shared("../escape", 1));
    ASSERT_TRUE(reader.has_value()) << reader.error().ToString();
  }
  EXPECT_FALSE(std::filesystem::exists(temp_dir.path() + "/escape.lock"));
  // Released locks keep their files: unlinking would break exclusion for a waiter on the inode.
  for (const char* suffix : {".lock", ".turnstile", ".token", ".capped", ".slot.0"}) {
    EXPECT_TRUE(std::filesystem::exists(lock_dir + "/..%2Fescape" + suffix)) << suffix;
  }
  for (const auto& entry : std::filesystem::directory_iterator(temp_dir.path())) {
    EXPECT_EQ(entry.path().filename(), "locks") << "a file escaped the lock directory";
  }

  auto too_long = (*manager)->TryAcquire(Exclusive(std::string(300, 'a')));
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error().code, ErrorCode::kInvalidArgument);
  // The longest file name (".turnstile", ".slot.1023") must fit too, not only ".lock".
  auto almost = (*manager)->TryAcquire(Shared(std::string(NAME_MAX - 7, 'b'), 1));
  ASSERT_FALSE(almost.has_value());
  EXPECT_EQ(almost.error().code, ErrorCode::kInvalidArgument);
}

// ---- Etcd-only: real processes against the fixture's etcd. ----

// Tests that need the fixture's etcd; skipped (with the reason) when it is not there.
class EtcdLockManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_ = EtcdTestOptions();
    if (!options_) {
      GTEST_SKIP() << EtcdFactory::SkipReason();
    }
  }

  std::optional<etcd::EtcdLockManager::Options> options_;
};

ManagerOpener EtcdOpener(const etcd::EtcdLockManager::Options& options) {
  return [options]() -> std::unique_ptr<ports::LockManager> {
    auto manager = etcd::EtcdLockManager::Open(options);
    return manager ? std::move(*manager) : nullptr;
  };
}

TEST_F(EtcdLockManagerTest, ForkedProcessesNeverHoldTheLockTogetherAndTokensIncrease) {
  const std::optional<etcd::EtcdLockManager::Options>& options = options_;
  TempDir temp_dir;
  RunForkedWorkersAndCheckTheLog(
      EtcdOpener(*options), temp_dir.path() + "/log", milliseconds(40000));
}

// The holder's keys go when etcd expires its lease: a waiter gets in within TTL + 1 s.
TEST_F(EtcdLockManagerTest, KilledHolderLosesTheLockWhenItsLeaseExpires) {
  const std::optional<etcd::EtcdLockManager::Options>& options = options_;
  for (const LockRequest& request : {Exclusive("volume/a"), Shared("volume/b", 1)}) {
    SCOPED_TRACE(request.name);
    Children children;
    // Forked before this process opens a manager, so the child inherits no running threads.
    const pid_t pid = ForkHolder(EtcdOpener(*options), request, &children);
    ASSERT_GT(pid, 0) << "the child could not take the lock";
    std::unique_ptr<ports::LockManager> manager = OpenEtcd(*options);
    ASSERT_NE(manager, nullptr);

    auto busy = manager->TryAcquire(request);
    ASSERT_FALSE(busy.has_value());
    EXPECT_EQ(busy.error().code, ErrorCode::kBusy);

    const Clock::time_point killed_at = Clock::now();
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    const milliseconds limit = options->lease_ttl + milliseconds(1000);
    auto lock = manager->Acquire(request, limit);
    ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
    EXPECT_LT(Clock::now() - killed_at, limit + milliseconds(500));
    EXPECT_EQ(children.Wait(pid, milliseconds(5000)), -1);
  }
}

// The store is the cluster: a new manager on the same prefix continues the tokens.
TEST_F(EtcdLockManagerTest, TokensContinueInANewManagerOnTheSameCluster) {
  const std::optional<etcd::EtcdLockManager::Options>& options = options_;
  std::uint64_t last = 0;
  for (int generation = 0; generation < 3; ++generation) {
    SCOPED_TRACE(generation);
    std::unique_ptr<ports::LockManager> manager = OpenEtcd(*options);
    ASSERT_NE(manager, nullptr);
    for (const LockRequest& request : {Exclusive("volume/a"), Shared("volume/a", 2)}) {
      auto lock = manager->TryAcquire(request);
      ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
      EXPECT_GT((*lock)->fencing_token(), last);
      last = (*lock)->fencing_token();
    }
  }
}

}  // namespace
}  // namespace clinker::adapters
