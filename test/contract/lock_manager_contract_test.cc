// Goal: prove that every LockManager adapter meets the contract in ports/lock_manager.h, so that
// the in-memory fake used by service tests behaves like the flock-based production adapter.
//
// Method: one typed suite (TYPED_TEST_SUITE_P) instantiated for MemoryLockManager and
// FileLockManager: mutual exclusion among 8 threads checked with an "inside" flag, TryAcquire
// and Acquire timeouts, Release idempotency, independence of names, and hand-over latency. Then
// file-only tests with real processes: 4 forked workers append "begin"/"end" lines inside the
// critical section and the file must alternate strictly; a SIGKILLed holder loses its lock; and
// a program spawned by a holder does not inherit the lock (O_CLOEXEC). Every wait is bounded and
// every forked child is killed by PID if the test stops early.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clinker/adapters/file/file_lock_manager.h"
#include "clinker/adapters/memory/memory_lock_manager.h"

extern char** environ;

namespace clinker::adapters {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string MakeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/clinker-lock-test-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  const char* dir = ::mkdtemp(buffer.data());
  EXPECT_NE(dir, nullptr) << "mkdtemp failed";
  return dir == nullptr ? std::string() : std::string(dir);
}

// Owns a temp dir for one test and removes it afterwards.
class TempDir {
 public:
  TempDir() : path_(MakeTempDir()) {}

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  ~TempDir() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

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

template <class Factory>
class LockManagerContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    manager_ = Factory::Make(temp_dir_.path());
    ASSERT_NE(manager_, nullptr);
  }

  ports::LockManager& manager() { return *manager_; }

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
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(20);
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
        auto lock = this->manager().Acquire("volume/contended", milliseconds(10000));
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
  EXPECT_EQ(counter, kThreads * kRoundsPerThread) << "lost updates, or the 20 s deadline passed";
}

TYPED_TEST_P(LockManagerContractTest, TryAcquireIsBusyWhileHeldAndSucceedsAfterRelease) {
  auto held = this->manager().TryAcquire("volume/a");
  ASSERT_TRUE(held.has_value()) << held.error().ToString();
  EXPECT_EQ((*held)->name(), "volume/a");

  auto second = this->manager().TryAcquire("volume/a");
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, ErrorCode::kBusy);

  (*held)->Release();
  auto third = this->manager().TryAcquire("volume/a");
  EXPECT_TRUE(third.has_value()) << third.error().ToString();
}

TYPED_TEST_P(LockManagerContractTest, AcquireTimesOutWithBusy) {
  auto held = this->manager().Acquire("volume/a", milliseconds(1000));
  ASSERT_TRUE(held.has_value()) << held.error().ToString();

  const milliseconds timeout(150);
  const Clock::time_point start = Clock::now();
  auto waiter = this->manager().Acquire("volume/a", timeout);
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(waiter.has_value());
  EXPECT_EQ(waiter.error().code, ErrorCode::kBusy);
  EXPECT_GE(elapsed, timeout);
  EXPECT_LT(elapsed, timeout + milliseconds(1500)) << "generous slack for a loaded machine";

  // A zero timeout is a single attempt.
  const Clock::time_point zero_start = Clock::now();
  auto zero = this->manager().Acquire("volume/a", milliseconds(0));
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error().code, ErrorCode::kBusy);
  EXPECT_LT(Clock::now() - zero_start, milliseconds(500));
}

TYPED_TEST_P(LockManagerContractTest, ReleaseIsIdempotent) {
  auto first = this->manager().TryAcquire("volume/a");
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  (*first)->Release();
  (*first)->Release();

  auto second = this->manager().TryAcquire("volume/a");
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  // A stale Lock released again (or destroyed) must not free the new holder's grant.
  (*first)->Release();
  first->reset();
  auto third = this->manager().TryAcquire("volume/a");
  ASSERT_FALSE(third.has_value());
  EXPECT_EQ(third.error().code, ErrorCode::kBusy);
}

TYPED_TEST_P(LockManagerContractTest, DestroyingALockReleasesIt) {
  {
    auto lock = this->manager().TryAcquire("volume/a");
    ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
    auto busy = this->manager().TryAcquire("volume/a");
    ASSERT_FALSE(busy.has_value());
  }
  auto again = this->manager().TryAcquire("volume/a");
  EXPECT_TRUE(again.has_value()) << again.error().ToString();
}

TYPED_TEST_P(LockManagerContractTest, DifferentNamesDoNotConflict) {
  // Names that a careless file-name encoding would map to one file.
  const std::vector<std::string> names = {
      "volume/1", "volume%2F1", "volume_1", "volume 1", "volume.1", "volume/1/", "Volume/1"};
  std::vector<ports::LockPtr> held;
  for (const std::string& name : names) {
    auto lock = this->manager().TryAcquire(name);
    ASSERT_TRUE(lock.has_value()) << name << ": " << lock.error().ToString();
    EXPECT_EQ((*lock)->name(), name);
    held.push_back(std::move(*lock));
  }
  for (const std::string& name : names) {
    auto busy = this->manager().TryAcquire(name);
    ASSERT_FALSE(busy.has_value()) << name;
    EXPECT_EQ(busy.error().code, ErrorCode::kBusy) << name;
  }
}

TYPED_TEST_P(LockManagerContractTest, WaiterGetsTheLockPromptlyAfterRelease) {
  auto held = this->manager().TryAcquire("volume/a");
  ASSERT_TRUE(held.has_value()) << held.error().ToString();

  std::atomic<bool> acquired{false};
  std::atomic<bool> ok{false};
  Clock::time_point acquired_at{};
  std::thread waiter([&] {
    auto lock = this->manager().Acquire("volume/a", milliseconds(5000));
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
  auto held = this->manager().TryAcquire("volume/a");
  ASSERT_TRUE(held.has_value()) << held.error().ToString();
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(50));
    (*held)->Release();
  });
  auto lock = this->manager().Acquire("volume/a", milliseconds::max());
  releaser.join();
  EXPECT_TRUE(lock.has_value()) << lock.error().ToString();
}

TYPED_TEST_P(LockManagerContractTest, EmptyNameIsInvalid) {
  auto lock = this->manager().TryAcquire("");
  ASSERT_FALSE(lock.has_value());
  EXPECT_EQ(lock.error().code, ErrorCode::kInvalidArgument);
}

REGISTER_TYPED_TEST_SUITE_P(LockManagerContractTest,
                            ThreadsNeverHoldTheLockTogether,
                            TryAcquireIsBusyWhileHeldAndSucceedsAfterRelease,
                            AcquireTimesOutWithBusy,
                            ReleaseIsIdempotent,
                            DestroyingALockReleasesIt,
                            DifferentNamesDoNotConflict,
                            WaiterGetsTheLockPromptlyAfterRelease,
                            HugeTimeoutWaitsInsteadOfOverflowing,
                            EmptyNameIsInvalid);

using Factories = ::testing::Types<MemoryFactory, FileFactory>;

class FactoryNames {
 public:
  template <class T>
  static std::string GetName(int /*index*/) {
    return std::is_same_v<T, MemoryFactory> ? "Memory" : "File";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(All, LockManagerContractTest, Factories, FactoryNames);

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

// The body of a forked worker: 100 rounds of lock, "begin", yield, "end", unlock. Exits with
// the number of failed acquisitions (0 expected); never returns.
[[noreturn]] void AppendUnderLock(const std::string& lock_dir, const std::string& log_path) {
  auto manager = FileLockManager::Create(lock_dir);
  int failures = manager ? 0 : 100;
  const std::string pid = std::to_string(::getpid());
  for (int round = 0; manager && round < 100; ++round) {
    auto lock = (*manager)->Acquire("volume/shared", milliseconds(10000));
    if (!lock) {
      ++failures;
      continue;
    }
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    bool written = fd >= 0 && WriteAll(fd, "begin " + pid + "\n");
    ::usleep(50);  // Another holder would write here if exclusion were broken.
    written = written && WriteAll(fd, "end " + pid + "\n");
    if (fd >= 0) {
      ::close(fd);
    }
    failures += written ? 0 : 1;
  }
  ::_exit(failures > 100 ? 100 : failures);
}

TEST(FileLockManagerTest, ForkedProcessesNeverHoldTheLockTogether) {
  TempDir temp_dir;
  const std::string lock_dir = temp_dir.path() + "/locks";
  const std::string log_path = temp_dir.path() + "/log";
  constexpr int kProcesses = 4;
  Children children;
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcesses; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) {
      AppendUnderLock(lock_dir, log_path);
    }
    children.Add(pid);
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    EXPECT_EQ(children.Wait(pid, milliseconds(20000)), 0) << "worker " << pid;
  }

  std::ifstream log(log_path);
  std::string line;
  std::string open_pid;  // The pid between its "begin" and "end"; empty outside.
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
    EXPECT_EQ(count, 100) << "worker " << pid;
  }
}

TEST(FileLockManagerTest, KilledHolderLosesTheLock) {
  TempDir temp_dir;
  auto manager = FileLockManager::Create(temp_dir.path() + "/locks");
  ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  Children children;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) {
    auto lock = (*manager)->TryAcquire("volume/a");
    const char byte = lock ? 'L' : 'F';
    if (::write(ready[1], &byte, 1) != 1) {
      ::_exit(2);
    }
    ::sleep(30);  // Bounded: the parent kills it long before.
    ::_exit(0);
  }
  children.Add(pid);
  ::close(ready[1]);
  char byte = 0;
  ASSERT_TRUE(ReadByte(ready[0], milliseconds(5000), &byte));
  ::close(ready[0]);
  ASSERT_EQ(byte, 'L') << "the child could not take the lock";

  auto busy = (*manager)->TryAcquire("volume/a");
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error().code, ErrorCode::kBusy);

  const Clock::time_point killed_at = Clock::now();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto lock = (*manager)->Acquire("volume/a", milliseconds(1000));
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
    auto lock = (*manager)->TryAcquire("volume/a");
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
  auto lock = (*manager)->Acquire("volume/a", milliseconds(1000));
  EXPECT_TRUE(lock.has_value()) << "the spawned program kept the lock";
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
    auto lock = (*manager)->TryAcquire("../escape");
    ASSERT_TRUE(lock.has_value()) << lock.error().ToString();
  }
  EXPECT_FALSE(std::filesystem::exists(temp_dir.path() + "/escape.lock"));
  // Released locks keep their file: unlinking would break exclusion for a waiter on the inode.
  EXPECT_TRUE(std::filesystem::exists(lock_dir + "/..%2Fescape.lock"));

  auto too_long = (*manager)->TryAcquire(std::string(300, 'a'));
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace clinker::adapters
