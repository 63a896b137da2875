// Goal: the SQLite job queue keeps its promises across real process deaths, which the contract
// test (one process) cannot show: a published job survives the publisher's SIGKILL and a reopen,
// a job held by a SIGKILLed consumer is redelivered to a survivor, a receiver sees another
// process's publish within the poll interval, and lock files do not leak.
//
// Method: each test gets a fresh temp dir holding the database and the sessions dir. Children
// are made with fork() while the parent holds no open database (a SQLite connection must never
// cross a fork), open their own SqliteJobQueue, and talk to the parent over pipes read with a
// timeout. The parent kills every child by PID and reaps it (also on failure, via Child's
// destructor); children also die with the parent (PR_SET_PDEATHSIG) and bound their own waits.
#include "clinker/adapters/sqlite/sqlite_job_queue.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace clinker::adapters::sqlite {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kPollInterval{100};
constexpr milliseconds kReclaimInterval{100};
// How long a child may take to do its part; generous because the machine is shared.
constexpr milliseconds kChildTimeout{10000};

// One pipe, used in one direction. Both processes keep both ends; reads are bounded by poll().
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

  bool Write(const std::string& data) const {
    std::size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fds_[1], data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return false;
      }
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Exactly `size` bytes, or nullopt if they did not all come within `timeout`.
  std::optional<std::string> Read(std::size_t size, milliseconds timeout) const {
    auto deadline = Clock::now() + timeout;
    std::string data;
    while (data.size() < size) {
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
      char buffer[64];
      std::size_t want = std::min(sizeof(buffer), size - data.size());
      ssize_t n = ::read(fds_[0], buffer, want);
      if (n <= 0) {
        return std::nullopt;
      }
      data.append(buffer, static_cast<std::size_t>(n));
    }
    return data;
  }

 private:
  int fds_[2];
};

// A forked child running `body`; its return value is the exit status. The child never returns
// into the test framework. Killed (SIGKILL) and reaped on destruction if still there.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    pid_ = ::fork();
    if (pid_ == 0) {
      // Do not outlive a parent that crashed mid-test.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int status = body();
      ::_exit(status);
    }
    if (pid_ < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
    }
  }

  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  ~Child() { Kill(); }

  bool started() const { return pid_ > 0; }

  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  // The exit status if the child exited by itself within `timeout`; otherwise kills it.
  std::optional<int> WaitExit(milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (pid_ > 0 && Clock::now() < deadline) {
      int status = 0;
      pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? std::optional<int>(WEXITSTATUS(status)) : std::nullopt;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    Kill();
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
};

class SqliteJobQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/clinker_sqlite_queue_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }

  void TearDown() override {
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  SqliteJobQueue::Options QueueOptions() const {
    SqliteJobQueue::Options options;
    options.database.path = dir_ + "/queue.db";
    options.sessions_dir = dir_ + "/sessions";
    options.poll_interval = kPollInterval;
    options.reclaim_interval = kReclaimInterval;
    return options;
  }

  // Records a failure and returns nullptr if the queue does not open.
  std::unique_ptr<SqliteJobQueue> OpenSubscribed() const {
    auto queue = SqliteJobQueue::Open(QueueOptions());
    if (!queue) {
      ADD_FAILURE() << "open: " << queue.error().ToString();
      return nullptr;
    }
    if (auto subscribed = (*queue)->Subscribe({"jobs"}); !subscribed) {
      ADD_FAILURE() << "subscribe: " << subscribed.error().ToString();
      return nullptr;
    }
    return std::move(*queue);
  }

  int LockFileCount() const {
    int count = 0;
    std::error_code error;
    for (const auto& entry :
         std::filesystem::directory_iterator(QueueOptions().sessions_dir, error)) {
      if (entry.path().extension() == ".lock") {
        ++count;
      }
    }
    return count;
  }

  // Child side (after the fork): opens its own subscribed queue, or returns nullptr. Never
  // touches the test framework.
  std::unique_ptr<SqliteJobQueue> ChildOpen() const {
    auto queue = SqliteJobQueue::Open(QueueOptions());
    if (!queue || !(*queue)->Subscribe({"jobs"})) {
      return nullptr;
    }
    return std::move(*queue);
  }

  // Child side: the first job received within kChildTimeout on `queue`, or nullopt.
  static std::optional<ports::Delivery> ChildReceive(SqliteJobQueue* queue) {
    if (queue == nullptr) {
      return std::nullopt;
    }
    auto delivery = queue->Receive(kChildTimeout);
    if (!delivery || !delivery->has_value()) {
      return std::nullopt;
    }
    return **delivery;
  }

  std::string dir_;
};

TEST_F(SqliteJobQueueTest, PublishedJobSurvivesClosingAndReopening) {
  std::string id;
  {
    auto queue = OpenSubscribed();
    ASSERT_NE(queue, nullptr);
    auto published = queue->Publish("jobs", "durable");
    ASSERT_TRUE(published) << published.error().ToString();
    id = *published;
  }
  auto reopened = OpenSubscribed();
  ASSERT_NE(reopened, nullptr);
  auto delivery = reopened->Receive(milliseconds(0));
  ASSERT_TRUE(delivery) << delivery.error().ToString();
  ASSERT_TRUE(delivery->has_value());
  EXPECT_EQ((*delivery)->job_id, id);
  EXPECT_EQ((*delivery)->payload, "durable");
  EXPECT_FALSE((*delivery)->redelivered);
  EXPECT_EQ((*delivery)->delivery_count, 1);
}

TEST_F(SqliteJobQueueTest, JobOfAKilledConsumerIsRedeliveredToASurvivor) {
  std::string id;
  {
    auto publisher = OpenSubscribed();
    ASSERT_NE(publisher, nullptr);
    auto published = publisher->Publish("jobs", "work");
    ASSERT_TRUE(published) << published.error().ToString();
    id = *published;
  }  // Closed: no connection may be open across the fork.

  Pipe received;
  Child consumer([&] {
    // The session stays open, holding the job, until SIGKILL.
    std::unique_ptr<SqliteJobQueue> queue = ChildOpen();
    std::optional<ports::Delivery> delivery = ChildReceive(queue.get());
    if (!delivery || delivery->job_id != id) {
      received.Write("F");
      return 1;
    }
    received.Write("R");
    std::this_thread::sleep_for(std::chrono::seconds(30));  // Until SIGKILL.
    return 0;
  });
  ASSERT_TRUE(consumer.started());
  ASSERT_EQ(received.Read(1, kChildTimeout), "R");

  auto survivor = OpenSubscribed();
  ASSERT_NE(survivor, nullptr);
  // The child is alive and holds the job: it is not handed out again.
  auto while_alive = survivor->Receive(3 * kReclaimInterval);
  ASSERT_TRUE(while_alive) << while_alive.error().ToString();
  EXPECT_FALSE(while_alive->has_value());
  EXPECT_EQ(LockFileCount(), 2);

  consumer.Kill();
  auto start = Clock::now();
  auto delivery = survivor->Receive(milliseconds(5000));
  auto elapsed = Clock::now() - start;
  ASSERT_TRUE(delivery) << delivery.error().ToString();
  ASSERT_TRUE(delivery->has_value());
  EXPECT_EQ((*delivery)->job_id, id);
  EXPECT_TRUE((*delivery)->redelivered);
  EXPECT_EQ((*delivery)->delivery_count, 2);
  // Taken over by the periodic reclaim, not at the end of the wait.
  EXPECT_LT(elapsed, milliseconds(2000));
  // The dead session's lock file is gone with its jobs.
  EXPECT_EQ(LockFileCount(), 1);
}

TEST_F(SqliteJobQueueTest, OpeningASessionReclaimsJobsOfDeadSessions) {
  {
    auto publisher = OpenSubscribed();
    ASSERT_NE(publisher, nullptr);
    ASSERT_TRUE(publisher->Publish("jobs", "work"));
  }
  Pipe received;
  Child consumer([&] {
    std::unique_ptr<SqliteJobQueue> queue = ChildOpen();
    received.Write(ChildReceive(queue.get()).has_value() ? "R" : "F");
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return 0;
  });
  ASSERT_TRUE(consumer.started());
  ASSERT_EQ(received.Read(1, kChildTimeout), "R");
  consumer.Kill();

  auto options = QueueOptions();
  options.reclaim_interval = std::chrono::hours(1);  // Only the reclaim in Open can help.
  auto opened = SqliteJobQueue::Open(options);
  ASSERT_TRUE(opened) << opened.error().ToString();
  ASSERT_TRUE((*opened)->Subscribe({"jobs"}));
  auto delivery = (*opened)->Receive(milliseconds(0));
  ASSERT_TRUE(delivery) << delivery.error().ToString();
  ASSERT_TRUE(delivery->has_value());
  EXPECT_TRUE((*delivery)->redelivered);
}

TEST_F(SqliteJobQueueTest, SessionsOfOneProcessSeeEachOtherAlive) {
  // flock locks belong to the open file description, so a session's probe of another session
  // of the same process must still fail: that one is alive.
  auto holder = OpenSubscribed();
  auto other = OpenSubscribed();
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(holder->Publish("jobs", "held"));
  auto held = holder->Receive(milliseconds(0));
  ASSERT_TRUE(held && held->has_value());

  auto reclaimed = other->ReclaimDeadSessions();
  ASSERT_TRUE(reclaimed) << reclaimed.error().ToString();
  EXPECT_EQ(*reclaimed, 0);
  // Several periodic reclaims run during this wait.
  auto delivery = other->Receive(5 * kReclaimInterval);
  ASSERT_TRUE(delivery) << delivery.error().ToString();
  EXPECT_FALSE(delivery->has_value());
  EXPECT_EQ(LockFileCount(), 2);
}

TEST_F(SqliteJobQueueTest, JobOfAKilledPublisherIsKept) {
  Pipe published;
  Child publisher([&] {
    auto queue = SqliteJobQueue::Open(QueueOptions());
    if (!queue) {
      return 1;
    }
    auto id = (*queue)->Publish("jobs", "from the dead");
    if (!id) {
      return 1;
    }
    published.Write(*id);
    std::this_thread::sleep_for(std::chrono::seconds(30));  // Until SIGKILL.
    return 0;
  });
  ASSERT_TRUE(publisher.started());
  auto id = published.Read(36, kChildTimeout);
  ASSERT_TRUE(id.has_value()) << "the child did not publish";
  publisher.Kill();

  auto queue = OpenSubscribed();
  ASSERT_NE(queue, nullptr);
  auto delivery = queue->Receive(milliseconds(0));
  ASSERT_TRUE(delivery) << delivery.error().ToString();
  ASSERT_TRUE(delivery->has_value());
  EXPECT_EQ((*delivery)->job_id, *id);
  EXPECT_EQ((*delivery)->payload, "from the dead");
  EXPECT_FALSE((*delivery)->redelivered);
}

TEST_F(SqliteJobQueueTest, PublishInAnotherProcessWakesAReceiverWithinThePollInterval) {
  Pipe go;
  Pipe published_at;
  Child publisher([&] {
    if (go.Read(1, kChildTimeout) != "G") {
      return 1;
    }
    auto queue = SqliteJobQueue::Open(QueueOptions());
    if (!queue) {
      return 1;
    }
    // Let the parent settle into its wait, so the publish lands during it.
    std::this_thread::sleep_for(milliseconds(300));
    if (!(*queue)->Publish("jobs", "wake up")) {
      return 1;
    }
    // steady_clock is CLOCK_MONOTONIC: one clock for every process on the machine.
    std::int64_t now_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
            .count();
    published_at.Write(std::to_string(now_ns) + "\n");
    return 0;
  });
  ASSERT_TRUE(publisher.started());

  auto options = QueueOptions();
  options.reclaim_interval = std::chrono::hours(1);  // So only polling can end the wait early.
  auto opened = SqliteJobQueue::Open(options);
  ASSERT_TRUE(opened) << opened.error().ToString();
  std::unique_ptr<SqliteJobQueue> queue = std::move(*opened);
  ASSERT_TRUE(queue->Subscribe({"jobs"}));
  ASSERT_TRUE(go.Write("G"));
  auto start = Clock::now();
  auto delivery = queue->Receive(milliseconds(5000));
  auto received_at = Clock::now();
  ASSERT_TRUE(delivery) << delivery.error().ToString();
  ASSERT_TRUE(delivery->has_value());
  EXPECT_EQ((*delivery)->payload, "wake up");

  auto line = published_at.Read(1, kChildTimeout);
  std::string text;
  while (line.has_value() && *line != "\n") {
    text += *line;
    line = published_at.Read(1, kChildTimeout);
  }
  ASSERT_FALSE(text.empty());
  Clock::time_point published{std::chrono::nanoseconds(std::stoll(text))};
  EXPECT_EQ(publisher.WaitExit(kChildTimeout), 0);

  EXPECT_GT(published, start);  // The publish happened during the wait.
  // At most one poll interval late, plus slack for a loaded machine.
  EXPECT_LT(received_at - published, kPollInterval + milliseconds(400));
}

TEST_F(SqliteJobQueueTest, LockFilesAreRemovedWhenSessionsEnd) {
  {
    auto first = OpenSubscribed();
    auto second = OpenSubscribed();
    ASSERT_NE(first, nullptr);
    ASSERT_NE(second, nullptr);
    EXPECT_EQ(LockFileCount(), 2);
  }
  EXPECT_EQ(LockFileCount(), 0);
}

TEST_F(SqliteJobQueueTest, LockFileOfAKilledIdleSessionIsCollected) {
  Pipe opened;
  Child idle([&] {
    auto queue = SqliteJobQueue::Open(QueueOptions());
    opened.Write(queue ? "O" : "F");
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return 0;
  });
  ASSERT_TRUE(idle.started());
  ASSERT_EQ(opened.Read(1, kChildTimeout), "O");
  EXPECT_EQ(LockFileCount(), 1);
  idle.Kill();
  EXPECT_EQ(LockFileCount(), 1);  // Nobody has looked yet.

  auto queue = OpenSubscribed();
  ASSERT_NE(queue, nullptr);
  EXPECT_EQ(LockFileCount(), 1);  // Only the new session's own.
}

TEST_F(SqliteJobQueueTest, SessionLockFileIsNotInheritedByExec) {
  auto queue = OpenSubscribed();
  ASSERT_NE(queue, nullptr);
  std::filesystem::path lock_file =
      std::filesystem::path(QueueOptions().sessions_dir) / (queue->session_id() + ".lock");
  int checked = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", error)) {
    std::error_code link_error;
    auto target = std::filesystem::read_symlink(entry.path(), link_error);
    if (link_error || target != lock_file) {
      continue;
    }
    int fd = std::stoi(entry.path().filename().string());
    int flags = ::fcntl(fd, F_GETFD);
    EXPECT_NE(flags & FD_CLOEXEC, 0) << "lock fd " << fd << " would leak into spawned tools";
    ++checked;
  }
  EXPECT_EQ(checked, 1);
}

TEST_F(SqliteJobQueueTest, InvalidOptionsAreRejected) {
  auto options = QueueOptions();
  options.max_in_flight = 0;
  auto opened = SqliteJobQueue::Open(options);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kInvalidArgument);

  options = QueueOptions();
  options.sessions_dir.clear();
  opened = SqliteJobQueue::Open(options);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace clinker::adapters::sqlite
