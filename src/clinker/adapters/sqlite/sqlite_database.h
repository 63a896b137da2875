// Database: one SQLite connection, shared by the SQLite adapters (state store, job queue).
//
// Why one small wrapper: every adapter needs the same pragmas (WAL, busy timeout, foreign keys),
// the same `BEGIN IMMEDIATE` write transactions with a bounded retry on SQLITE_BUSY (a deferred
// transaction that reads then writes gets SQLITE_BUSY at once, which busy_timeout does not
// cover), and the same schema-migration bookkeeping.
//
// Contract:
// - Thread safe: a Database serialises its own use with an internal mutex (an sqlite3 connection
//   must not be used by two threads at once). Several Databases, in one or many processes, may
//   open the same file; SQLite's file locking makes their transactions atomic.
// - Never carry a Database across fork(): open a new one in the child.
// - Errors: kUnavailable when the database stayed busy past the retry budget or the disk failed;
//   kConflict for a constraint violation (e.g. a duplicate primary key); kInternal otherwise.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/state_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace clinker::adapters::sqlite {

// A cached prepared statement of one Database, lent to one Statement at a time.
struct CachedStatement {
  sqlite3_stmt* stmt = nullptr;
  bool lent = false;
};

// A prepared statement, valid only inside the Database call that handed it out. One that came
// from the Database's statement cache is reset (bindings cleared) and given back when destroyed
// instead of finalized.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt, CachedStatement* cached = nullptr)
      : db_(db), stmt_(stmt), cached_(cached) {}

  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) = delete;
  ~Statement();

  // Binds 1-based parameter `index`. NULL for std::monostate.
  Result<void> Bind(int index, const ports::Value& value);
  // Binds every value in order, starting at parameter 1.
  Result<void> BindAll(std::span<const ports::Value> values);
  // True if a row is ready to read, false when done.
  Result<bool> Step();
  int ColumnCount() const;
  std::string_view ColumnName(int index) const;
  ports::Value ColumnValue(int index) const;
  // The current row as column name -> value.
  ports::Row RowValue() const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  CachedStatement* cached_;
};

// A mutex with a bounded wait, built on std::mutex and a condition variable (ThreadSanitizer
// does not model std::timed_mutex's timed lock).
class WriterGate {
 public:
  // True once held; false if `timeout` passed first.
  bool TryEnterFor(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!free_.wait_for(lock, timeout, [this] { return !held_; })) {
      return false;
    }
    held_ = true;
    return true;
  }

  void Leave() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      held_ = false;
    }
    free_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable free_;
  bool held_ = false;
};

class Database {
 public:
  struct Options {
    std::string path;
    // How long one statement waits for another connection's write lock.
    std::chrono::milliseconds busy_timeout{5000};
    // How many times a whole write transaction is retried when it still met SQLITE_BUSY.
    int busy_retries_max = 20;
    // "normal" survives a process crash (WAL); "full" also survives power loss, at an fsync
    // per commit.
    std::string synchronous = "normal";
  };

  // Opens (creating if needed) the database file and applies the pragmas.
  static Result<std::unique_ptr<Database>> Open(const Options& options);

  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // Runs `body` in BEGIN IMMEDIATE ... COMMIT under the connection mutex. A body that returns an
  // error rolls back. The whole transaction is retried on SQLITE_BUSY, so `body` must have no
  // effect outside the database.
  //
  // Write transactions of every Database of this process on the same file also take one
  // process-wide mutex first: SQLite's busy handler waits by sleeping (1, 2, 5, 10 ms ...), so
  // connections of one process that met each other's write lock would sleep far longer than the
  // sub-millisecond transactions they wait for. Other processes still meet the file lock and the
  // busy handler. A body must not start a write transaction on another Database of the same file.
  // Waiting for that mutex counts like waiting for the file lock: at most busy_timeout per attempt,
  // busy_retries_max retries, then kUnavailable.
  Result<void> WriteTransaction(const std::function<Result<void>(Database&)>& body);

  // Runs `body` under the connection mutex without an explicit transaction (each statement is
  // its own autocommit transaction; a single SELECT is consistent on its own in WAL mode).
  Result<void> Read(const std::function<Result<void>(Database&)>& body);

  // Only inside WriteTransaction / Read bodies. Compiled statements are cached per SQL text (up
  // to kStatementCacheMax texts), so a statement run again costs no parsing or planning; a text
  // already lent out (the same SQL open twice at once) gets a fresh, uncached statement.
  Result<Statement> Prepare(std::string_view sql);
  Result<void> Exec(std::string_view sql);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  std::int64_t ChangedRows() const;

  // Applies, in order, the migrations of `component` not applied yet, each in its own write
  // transaction, recording them in `schema_migrations(component, version)`. Version N is
  // migrations[N-1]. Safe when several processes start at once.
  Result<void> Migrate(std::string_view component, std::span<const std::string_view> migrations);

  const std::string& path() const { return path_; }

 private:
  // Beyond this many distinct SQL texts, statements are compiled for each use (the texts built
  // from a caller's filters are many; the hot ones are few and come first).
  static constexpr std::size_t kStatementCacheMax = 256;

  Database(sqlite3* db, Options options);
  // Runs one cached statement that returns no row (BEGIN IMMEDIATE, COMMIT, ROLLBACK).
  Result<void> Run(std::string_view sql);

  sqlite3* db_;
  std::string path_;
  Options options_;
  // Shared by this process's Databases of path_; waited for at most busy_timeout per attempt,
  // like the file lock.
  std::shared_ptr<class WriterGate> file_writer_gate_;
  std::mutex mutex_;
  // Guarded by mutex_ (Prepare and Statement's destructor run only inside a call holding it).
  // Node-based, so entries stay put while lent.
  std::unordered_map<std::string, CachedStatement> statements_;
};

}  // namespace clinker::adapters::sqlite
