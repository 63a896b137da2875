// lock_probe: one side of the etcd partition test (test/e2e/test_partition.py). It holds or waits
// for an exclusive EtcdLockManager lock and writes its fencing token into a volume row of a
// SQLite state store, printing what happened as JSON lines on stdout, so that a test can check,
// from outside, that a holder cut off from etcd gives the lock up before anyone else gets it and
// that its late write is refused.
//
// Modes (common flags: --etcd HOST:PORT --name LOCK --db PATH --volume ID, lease settings):
// - hold: acquire LOCK, write the token into the row, print {"event":"acquired","token","t_ms"};
//   then poll Lock::IsLost every 5 ms (bounded by --hold-max-ms) and print
//   {"event":"lost","t_ms","via"} once the lock is lost (IsLost or the lost callback, whichever
//   is seen first); then wait (bounded by --write-wait-ms) for a line "write" on stdin and try a
//   write with the now stale token: {"event":"stale_write","applied":bool}.
// - wait: Acquire LOCK (bounded by --acquire-timeout-ms), print {"event":"acquired",...}, write
//   the token into the row, print {"event":"wrote","applied":bool}.
//
// Every token write is ConditionalUpdate(kVolumes, ID, {fencing_token: t, status_reason: ...},
// [NullOrAtMost("fencing_token", t)]): the fencing check a volume service makes. The row is
// created by whichever probe opens the database first (an Insert that tolerates kConflict), after
// SqliteStateStore::Open has migrated the schema.
//
// t_ms is CLOCK_REALTIME in milliseconds, so the times of two probes on one machine (in different
// network namespaces) compare. A failure prints {"event":"error","what","message"} and exits 1;
// a holder that never saw its lock lost prints {"event":"not_lost"} and exits 2. Every wait is
// bounded; nothing here retries forever.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <unistd.h>

#include "clinker/adapters/etcd/etcd_lock_manager.h"
#include "clinker/adapters/sqlite/sqlite_state_store.h"
#include "clinker/core/error.h"
#include "clinker/ports/lock_manager.h"
#include "clinker/ports/state_store.h"

namespace {

using clinker::Error;
using clinker::ErrorCode;
using clinker::Result;
using clinker::adapters::SqliteStateStore;
using clinker::adapters::etcd::EtcdLockManager;
using clinker::ports::Expectation;
using clinker::ports::LockRequest;
using clinker::ports::Row;
using clinker::ports::Table;

constexpr std::chrono::milliseconds kPollInterval{5};
constexpr std::chrono::milliseconds kOpenRetryInterval{100};

struct Flags {
  std::string etcd;
  std::string name;
  std::string db;
  std::string volume;
  std::string key_prefix = "/clinker-lock-probe/";
  int lease_ttl_s = 2;
  int heartbeat_ms = 250;
  int missed_heartbeats = 3;
  int request_timeout_ms = 500;
  int open_timeout_ms = 10000;
  int acquire_timeout_ms = 30000;
  int hold_max_ms = 30000;
  int write_wait_ms = 60000;
};

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Emit(const nlohmann::json& event) {
  std::cout << event.dump() << std::endl;  // endl: the test reads line by line, unbuffered.
}

int Fail(const std::string& what, const Error& error) {
  Emit({{"event", "error"},
        {"what", what},
        {"code", std::string(clinker::ErrorCodeName(error.code))},
        {"message", error.message}});
  return 1;
}

Result<std::unique_ptr<SqliteStateStore>> OpenStore(const Flags& flags) {
  clinker::adapters::sqlite::Database::Options options;
  options.path = flags.db;
  CLINKER_ASSIGN_OR_RETURN(auto store, SqliteStateStore::Open(options));
  Row row{{"id", flags.volume},
          {"project_id", std::string("lock-probe")},
          {"user_id", std::string("lock-probe")},
          {"status", std::string("available")},
          {"created_at", std::string("1970-01-01T00:00:00Z")}};
  auto inserted = store->Insert(Table::kVolumes, row);
  // The other probe may have created the row first: the same row either way.
  if (!inserted && inserted.error().code != ErrorCode::kConflict) {
    return tl::unexpected(inserted.error());
  }
  return store;
}

// Retries while etcd is unreachable (a link just brought back up may need a moment), within
// --open-timeout-ms.
Result<std::unique_ptr<EtcdLockManager>> OpenLocks(const Flags& flags) {
  EtcdLockManager::Options options;
  const auto colon = flags.etcd.rfind(':');
  if (colon == std::string::npos) {
    return clinker::MakeError(ErrorCode::kInvalidArgument, "--etcd must be HOST:PORT");
  }
  options.host = flags.etcd.substr(0, colon);
  try {
    options.port = std::stoi(flags.etcd.substr(colon + 1));
  } catch (const std::exception&) {
    return clinker::MakeError(ErrorCode::kInvalidArgument, "--etcd port is not a number");
  }
  options.key_prefix = flags.key_prefix;
  options.lease_ttl = std::chrono::seconds(flags.lease_ttl_s);
  options.heartbeat_interval = std::chrono::milliseconds(flags.heartbeat_ms);
  options.missed_heartbeats = flags.missed_heartbeats;
  options.request_timeout = std::chrono::milliseconds(flags.request_timeout_ms);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(flags.open_timeout_ms);
  while (true) {
    auto opened = EtcdLockManager::Open(options);
    if (opened || opened.error().code != ErrorCode::kUnavailable ||
        std::chrono::steady_clock::now() >= deadline) {
      return opened;
    }
    std::this_thread::sleep_for(kOpenRetryInterval);
  }
}

// The fencing check of a volume service: write only if no newer token has been recorded.
Result<bool> WriteToken(SqliteStateStore& store,
                        const Flags& flags,
                        std::uint64_t token,
                        const std::string& reason) {
  const auto value = static_cast<std::int64_t>(token);
  Row values{{"fencing_token", value}, {"status_reason", reason}};
  CLINKER_ASSIGN_OR_RETURN(
      auto updated,
      store.ConditionalUpdate(Table::kVolumes,
                              flags.volume,
                              values,
                              {Expectation::NullOrAtMost("fencing_token", value)},
                              {}));
  return updated.has_value();
}

// True once a line starting with "write" arrived on stdin within `timeout`; false on timeout or
// end of input. Reads with read(2) so that poll(2) sees exactly what is left.
bool WaitForWriteLine(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd fd{STDIN_FILENO, POLLIN, 0};
    const int ready = poll(&fd, 1, static_cast<int>(left.count()));
    if (ready <= 0) {
      continue;  // Timeout or EINTR: the deadline check above decides.
    }
    char c = 0;
    const ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n <= 0) {
      return false;
    }
    if (c != '\n') {
      line.push_back(c);
      continue;
    }
    if (line.rfind("write", 0) == 0) {
      return true;
    }
    line.clear();
  }
}

int Hold(const Flags& flags) {
  auto store = OpenStore(flags);
  if (!store) {
    return Fail("open_store", store.error());
  }
  // The callback runs on the heartbeat thread; it only records when it ran. Declared before the
  // manager, so it outlives the thread.
  std::atomic<std::int64_t> callback_ms{0};
  auto locks = OpenLocks(flags);
  if (!locks) {
    return Fail("open_locks", locks.error());
  }
  (*locks)->SetLostCallback(
      [&callback_ms](const std::string&, std::uint64_t) { callback_ms.store(NowMs()); });
  auto lock = (*locks)->Acquire(LockRequest::Exclusive(flags.name),
                                std::chrono::milliseconds(flags.acquire_timeout_ms));
  if (!lock) {
    return Fail("acquire", lock.error());
  }
  const std::uint64_t token = (*lock)->fencing_token();
  auto wrote = WriteToken(**store, flags, token, "hold " + std::to_string(token));
  if (!wrote) {
    return Fail("write_token", wrote.error());
  }
  if (!*wrote) {
    Emit({{"event", "error"}, {"what", "write_token"}, {"message", "fencing check refused"}});
    return 1;
  }
  Emit({{"event", "acquired"}, {"token", token}, {"t_ms", NowMs()}});

  const auto hold_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(flags.hold_max_ms);
  std::optional<nlohmann::json> lost;
  while (!lost && std::chrono::steady_clock::now() < hold_deadline) {
    if ((*lock)->IsLost()) {
      lost = nlohmann::json{{"event", "lost"}, {"t_ms", NowMs()}, {"via", "is_lost"}};
    } else if (const std::int64_t at = callback_ms.load(); at != 0) {
      lost = nlohmann::json{{"event", "lost"}, {"t_ms", at}, {"via", "callback"}};
    } else {
      std::this_thread::sleep_for(kPollInterval);
    }
  }
  if (!lost) {
    Emit({{"event", "not_lost"}, {"t_ms", NowMs()}});
    return 2;
  }
  Emit(*lost);

  if (!WaitForWriteLine(std::chrono::milliseconds(flags.write_wait_ms))) {
    Emit({{"event", "error"}, {"what", "wait_write"}, {"message", "no 'write' line on stdin"}});
    return 1;
  }
  // A zombie writer: it ignores that its lock is lost and relies on the fencing check alone.
  auto stale = WriteToken(**store, flags, token, "stale write " + std::to_string(token));
  if (!stale) {
    return Fail("stale_write", stale.error());
  }
  Emit({{"event", "stale_write"}, {"applied", *stale}, {"token", token}, {"t_ms", NowMs()}});
  return 0;
}

int Wait(const Flags& flags) {
  auto store = OpenStore(flags);
  if (!store) {
    return Fail("open_store", store.error());
  }
  auto locks = OpenLocks(flags);
  if (!locks) {
    return Fail("open_locks", locks.error());
  }
  Emit({{"event", "waiting"}, {"t_ms", NowMs()}});
  auto lock = (*locks)->Acquire(LockRequest::Exclusive(flags.name),
                                std::chrono::milliseconds(flags.acquire_timeout_ms));
  if (!lock) {
    return Fail("acquire", lock.error());
  }
  const std::uint64_t token = (*lock)->fencing_token();
  Emit({{"event", "acquired"}, {"token", token}, {"t_ms", NowMs()}});
  auto wrote = WriteToken(**store, flags, token, "wait " + std::to_string(token));
  if (!wrote) {
    return Fail("write_token", wrote.error());
  }
  Emit({{"event", "wrote"}, {"applied", *wrote}, {"token", token}, {"t_ms", NowMs()}});
  return 0;
}

void AddCommonFlags(CLI::App& app, Flags& flags) {
  app.add_option("--etcd", flags.etcd, "etcd client endpoint HOST:PORT")->required();
  app.add_option("--name", flags.name, "lock name")->required();
  app.add_option("--db", flags.db, "SQLite state database file")->required();
  app.add_option("--volume", flags.volume, "volume row id receiving the tokens")->required();
  app.add_option("--key-prefix", flags.key_prefix, "etcd key prefix of the locks");
  app.add_option("--lease-ttl-s", flags.lease_ttl_s, "lease TTL (seconds)");
  app.add_option("--heartbeat-ms", flags.heartbeat_ms, "keepalive interval (ms)");
  app.add_option("--missed-heartbeats", flags.missed_heartbeats, "failed keepalives before loss");
  app.add_option("--request-timeout-ms", flags.request_timeout_ms, "etcd request timeout (ms)");
  app.add_option("--open-timeout-ms", flags.open_timeout_ms, "retry connecting this long (ms)");
  app.add_option("--acquire-timeout-ms", flags.acquire_timeout_ms, "Acquire timeout (ms)");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lock_probe: hold or wait for an etcd lock and write its fencing token"};
  app.require_subcommand(1);
  Flags flags;
  CLI::App* hold = app.add_subcommand("hold", "hold the lock until it is lost, then write late");
  AddCommonFlags(*hold, flags);
  hold->add_option("--hold-max-ms", flags.hold_max_ms, "give up waiting for the loss (ms)");
  hold->add_option("--write-wait-ms", flags.write_wait_ms, "wait this long for 'write' (ms)");
  CLI::App* wait = app.add_subcommand("wait", "acquire the lock (blocking), write the token");
  AddCommonFlags(*wait, flags);
  CLI11_PARSE(app, argc, argv);
  return hold->parsed() ? Hold(flags) : Wait(flags);
}
