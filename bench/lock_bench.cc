// bench_locks: cost of the etcd lock manager (EtcdLockManager) seen by its callers.
//
// Method: every scenario uses its own lock name under a key prefix unique to the run, so runs and
// scenarios never see each other's keys. A cycle is Acquire (blocking) followed by Release; its
// latency runs from the call to Acquire until Release returns. Each scenario loops for --seconds.
// - exclusive / shared, uncontended: one thread, one manager.
// - exclusive / shared, contended: --contenders threads on ONE name, each with its OWN manager
//   (its own lease, watch and HTTP connections), as separate nodes would be. Exclusive latencies
//   include the wait behind the other holders; shared ones show the cost of a crowded queue.
// - takeover: a forked child opens its own manager, takes the name exclusively and reports
//   through a pipe; the parent's own manager then blocks in Acquire on the name, the parent
//   SIGKILLs the child and times kill -> granted. Nothing releases the child's key: the name
//   frees only when etcd expires the child's lease, so expect about --lease-ttl-s (etcd checks
//   expiry on its own cadence, which adds a little).
// Fork safety: the parent forks only while it has no other thread (every manager of the previous
// scenario or round has been destroyed, which joins its threads), so the child starts clean.
// A benchmark, not a test: it prints figures and asserts nothing; it exits 1 if a cycle failed.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clinker/adapters/etcd/etcd_lock_manager.h"
#include "clinker/core/uuid.h"
#include "clinker/ports/lock_manager.h"

namespace {

using Clock = std::chrono::steady_clock;
using clinker::adapters::etcd::EtcdLockManager;
using clinker::ports::LockRequest;

// One Acquire may wait this long before the cycle counts as failed: far above any expected wait,
// so only a stuck engine hits it.
constexpr std::chrono::milliseconds kAcquireTimeout{15000};
// How long the takeover child may take to open its manager and get the lock.
constexpr int kChildReadyTimeoutMs = 15000;
// The takeover child never outlives this, even if the parent forgets it.
constexpr int kChildMaxLifeS = 120;
// The parent's Acquire gets this long to reach etcd and queue before the holder is killed.
constexpr std::chrono::milliseconds kQueueSettle{300};

struct Settings {
  std::string etcd;
  std::string host;
  int port = 0;
  int seconds = 3;
  int contenders = 16;
  int lease_ttl_s = 2;
  int heartbeat_ms = 400;
  int takeover_rounds = 5;
  std::string key_prefix;
};

double Percentile(std::vector<double> values, double fraction) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  auto index =
      static_cast<std::size_t>(std::lround(fraction * static_cast<double>(values.size() - 1)));
  return values[std::min(index, values.size() - 1)];
}

double MsSince(Clock::time_point begin) {
  return std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
}

EtcdLockManager::Options ManagerOptions(const Settings& settings) {
  EtcdLockManager::Options options;
  options.host = settings.host;
  options.port = settings.port;
  options.key_prefix = settings.key_prefix;
  options.lease_ttl = std::chrono::seconds(settings.lease_ttl_s);
  options.heartbeat_interval = std::chrono::milliseconds(settings.heartbeat_ms);
  return options;
}

std::unique_ptr<EtcdLockManager> OpenManager(const Settings& settings) {
  auto manager = EtcdLockManager::Open(ManagerOptions(settings));
  if (!manager) {
    std::fprintf(stderr, "bench_locks: open: %s\n", manager.error().ToString().c_str());
    return nullptr;
  }
  return std::move(*manager);
}

// Runs `threads` workers, each with its own manager, doing acquire+release cycles on `request`
// for settings.seconds; prints one line. False if a manager could not open or a cycle failed.
bool RunCycles(const Settings& settings,
               const std::string& label,
               const LockRequest& request,
               int threads) {
  std::vector<std::unique_ptr<EtcdLockManager>> managers;
  for (int t = 0; t < threads; ++t) {
    auto manager = OpenManager(settings);
    if (manager == nullptr) {
      return false;
    }
    managers.push_back(std::move(manager));
  }
  std::mutex mutex;
  std::vector<double> latencies_ms;
  std::atomic<int> failures{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads));
  std::atomic<std::int64_t> deadline_ns{0};
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, manager = managers[static_cast<std::size_t>(t)].get()] {
      while (!go.load()) {
        std::this_thread::yield();
      }
      Clock::time_point end{Clock::duration(deadline_ns.load())};
      std::vector<double> mine;
      while (Clock::now() < end) {
        auto begin = Clock::now();
        auto lock = manager->Acquire(request, kAcquireTimeout);
        if (!lock) {
          ++failures;
          std::fprintf(
              stderr, "bench_locks: %s: %s\n", label.c_str(), lock.error().ToString().c_str());
          continue;
        }
        (*lock)->Release();
        mine.push_back(MsSince(begin));
      }
      std::lock_guard<std::mutex> guard(mutex);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    });
  }
  auto started = Clock::now();
  deadline_ns.store((started + std::chrono::seconds(settings.seconds)).time_since_epoch().count());
  go.store(true);
  for (std::thread& worker : workers) {
    worker.join();
  }
  double elapsed_s = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf(
      "%-28s threads=%-2d acquisitions=%-6zu failures=%d acq_per_s=%.1f "
      "latency_ms p50=%.2f p99=%.2f max=%.2f\n",
      label.c_str(),
      threads,
      latencies_ms.size(),
      failures.load(),
      elapsed_s > 0 ? static_cast<double>(latencies_ms.size()) / elapsed_s : 0.0,
      Percentile(latencies_ms, 0.50),
      Percentile(latencies_ms, 0.99),
      Percentile(latencies_ms, 1.0));
  std::fflush(stdout);
  return failures.load() == 0 && !latencies_ms.empty();
}

// The takeover child: holds `name` until killed. Never returns.
[[noreturn]] void ChildHold(const Settings& settings, const std::string& name, int ready_fd) {
  // Dies with the parent, so a crashed bench leaves no holder behind.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char status = 'E';
  auto manager = OpenManager(settings);
  std::optional<clinker::ports::LockPtr> held;
  if (manager != nullptr) {
    auto lock = manager->Acquire(LockRequest::Exclusive(name), kAcquireTimeout);
    if (lock) {
      held = std::move(*lock);
      status = 'L';
    }
  }
  ssize_t written = write(ready_fd, &status, 1);
  (void)written;
  close(ready_fd);
  auto until = Clock::now() + std::chrono::seconds(kChildMaxLifeS);
  while (status == 'L' && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  _exit(status == 'L' ? 0 : 1);
}

void KillAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// One takeover round; the kill -> granted time in ms, or nothing on failure.
std::optional<double> TakeoverRound(const Settings& settings, const std::string& name) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("bench_locks: pipe2");
    return std::nullopt;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("bench_locks: fork");
    close(fds[0]);
    close(fds[1]);
    return std::nullopt;
  }
  if (pid == 0) {
    close(fds[0]);
    ChildHold(settings, name, fds[1]);
  }
  close(fds[1]);
  pollfd ready{fds[0], POLLIN, 0};
  int polled = 0;
  do {
    polled = poll(&ready, 1, kChildReadyTimeoutMs);
  } while (polled < 0 && errno == EINTR);
  char status = 0;
  bool child_holds = polled > 0 && read(fds[0], &status, 1) == 1 && status == 'L';
  close(fds[0]);
  if (!child_holds) {
    std::fprintf(stderr, "bench_locks: takeover: the child did not get the lock\n");
    KillAndReap(pid);
    return std::nullopt;
  }

  auto manager = OpenManager(settings);
  if (manager == nullptr) {
    KillAndReap(pid);
    return std::nullopt;
  }
  std::atomic<std::int64_t> granted_ns{0};
  std::atomic<bool> failed{false};
  std::thread waiter([&] {
    // Long enough for the lease to expire, bounded so a stuck engine ends the round.
    auto timeout = std::chrono::seconds(settings.lease_ttl_s * 5) + kAcquireTimeout;
    auto lock = manager->Acquire(LockRequest::Exclusive(name),
                                 std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
    granted_ns.store(Clock::now().time_since_epoch().count());
    if (!lock) {
      std::fprintf(stderr, "bench_locks: takeover: %s\n", lock.error().ToString().c_str());
      failed.store(true);
      return;
    }
    (*lock)->Release();
  });
  std::this_thread::sleep_for(kQueueSettle);
  bool early = granted_ns.load() != 0;
  auto killed = Clock::now();
  KillAndReap(pid);
  waiter.join();
  manager.reset();
  if (early || failed.load()) {
    if (early) {
      std::fprintf(stderr, "bench_locks: takeover: granted before the holder was killed\n");
    }
    return std::nullopt;
  }
  Clock::time_point granted{Clock::duration(granted_ns.load())};
  return std::chrono::duration<double, std::milli>(granted - killed).count();
}

bool RunTakeover(const Settings& settings) {
  std::vector<double> samples_ms;
  int failures = 0;
  for (int round = 0; round < settings.takeover_rounds; ++round) {
    std::string name = "takeover-" + std::to_string(round);
    auto sample = TakeoverRound(settings, name);
    if (!sample) {
      ++failures;
      continue;
    }
    samples_ms.push_back(*sample);
    std::printf("takeover round=%d kill_to_acquired_ms=%.1f\n", round, *sample);
    std::fflush(stdout);
  }
  std::printf(
      "%-28s rounds=%d failures=%d lease_ttl_s=%d heartbeat_ms=%d "
      "kill_to_acquired_ms p50=%.1f max=%.1f\n",
      "takeover after SIGKILL",
      static_cast<int>(samples_ms.size()),
      failures,
      settings.lease_ttl_s,
      settings.heartbeat_ms,
      Percentile(samples_ms, 0.50),
      Percentile(samples_ms, 1.0));
  return failures == 0;
}

bool ParseEndpoint(Settings& settings) {
  auto colon = settings.etcd.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return false;
  }
  settings.host = settings.etcd.substr(0, colon);
  try {
    std::size_t used = 0;
    std::string port = settings.etcd.substr(colon + 1);
    settings.port = std::stoi(port, &used);
    return used == port.size() && settings.port > 0 && settings.port < 65536;
  } catch (const std::exception&) {
    return false;
  }
}

int Run(int argc, char** argv) {
  Settings settings;
  CLI::App app(
      "Measures acquire+release latency and acquisitions per second of the etcd lock manager, "
      "uncontended and contended, and the takeover time after a holder is SIGKILLed.");
  app.add_option("--etcd", settings.etcd, "etcd client endpoint HOST:PORT")->required();
  app.add_option("--seconds", settings.seconds, "Duration of each latency scenario")
      ->check(CLI::Range(1, 3600));
  app.add_option("--contenders", settings.contenders, "Threads (one manager each) on one name")
      ->check(CLI::Range(1, 1024));
  app.add_option("--lease-ttl-s", settings.lease_ttl_s, "Lease TTL of every manager, seconds")
      ->check(CLI::Range(1, 3600));
  app.add_option("--heartbeat-ms", settings.heartbeat_ms, "Lease keepalive interval, ms")
      ->check(CLI::Range(1, 3600000));
  app.add_option("--takeover-rounds", settings.takeover_rounds, "SIGKILL takeover samples")
      ->check(CLI::Range(0, 1000));
  CLI11_PARSE(app, argc, argv);
  if (!ParseEndpoint(settings)) {
    std::fprintf(stderr, "bench_locks: --etcd wants HOST:PORT, got '%s'\n", settings.etcd.c_str());
    return 2;
  }
  settings.key_prefix = "/clinker-bench/" + clinker::NewUuid() + "/";
  if (auto valid = EtcdLockManager::ValidateOptions(ManagerOptions(settings)); !valid) {
    std::fprintf(stderr, "bench_locks: %s\n", valid.error().ToString().c_str());
    return 2;
  }

  std::printf("etcd=%s key_prefix=%s seconds=%d contenders=%d lease_ttl_s=%d heartbeat_ms=%d\n",
              settings.etcd.c_str(),
              settings.key_prefix.c_str(),
              settings.seconds,
              settings.contenders,
              settings.lease_ttl_s,
              settings.heartbeat_ms);
  std::fflush(stdout);
  bool ok = true;
  ok &= RunCycles(settings, "exclusive uncontended", LockRequest::Exclusive("excl-solo"), 1);
  ok &= RunCycles(settings, "shared uncontended", LockRequest::Shared("shared-solo"), 1);
  ok &= RunCycles(
      settings, "exclusive contended", LockRequest::Exclusive("excl-crowd"), settings.contenders);
  ok &= RunCycles(
      settings, "shared contended", LockRequest::Shared("shared-crowd"), settings.contenders);
  if (settings.takeover_rounds > 0) {
    ok &= RunTakeover(settings);
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench_locks: %s\n", error.what());
    return 1;
  }
}
