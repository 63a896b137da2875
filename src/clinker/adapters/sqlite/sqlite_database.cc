#include "clinker/adapters/sqlite/sqlite_database.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include <sqlite3.h>

#include "clinker/core/assert.h"
#include "clinker/core/metrics.h"
#include "clinker/core/time_format.h"

namespace clinker::adapters::sqlite {
namespace {

// Counts the SQLITE_BUSY / SQLITE_LOCKED results this thread has seen. WriteTransaction compares
// it before and after a body to tell contention (retry the whole transaction) from any other
// failure, without widening Error with engine details. A thread-local is exact here because the
// connection mutex keeps every call of one transaction on the calling thread.
thread_local std::uint64_t t_busy_results = 0;

bool IsBusy(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

Error MapError(sqlite3* db, int rc, std::string_view context) {
  int primary = rc & 0xff;
  if (IsBusy(rc)) {
    ++t_busy_results;
  }
  std::string message(context);
  message += ": ";
  message += sqlite3_errstr(rc);
  if (db != nullptr) {
    const char* detail = sqlite3_errmsg(db);
    if (detail != nullptr && std::string_view(detail) != sqlite3_errstr(rc)) {
      message += " (";
      message += detail;
      message += ")";
    }
  }
  ErrorCode code = ErrorCode::kInternal;
  switch (primary) {
    case SQLITE_CONSTRAINT:
      code = ErrorCode::kConflict;
      break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      code = ErrorCode::kUnavailable;
      break;
    default:
      break;
  }
  return Error{code, std::move(message)};
}

tl::unexpected<Error> Fail(sqlite3* db, int rc, std::string_view context) {
  return tl::unexpected<Error>(MapError(db, rc, context));
}

// The process-wide writer gate of a database file, by canonical path (so "./var/x.db" and
// "var/x.db" share one). Entries live as long as the process; there is one per file ever opened.
std::shared_ptr<WriterGate> FileWriterGate(const std::string& path) {
  static std::mutex registry_mutex;
  static std::map<std::string, std::shared_ptr<WriterGate>> registry;
  std::error_code error;
  std::filesystem::path canonical = std::filesystem::weakly_canonical(path, error);
  std::string key = error ? path : canonical.string();
  std::lock_guard<std::mutex> guard(registry_mutex);
  std::shared_ptr<WriterGate>& entry = registry[key];
  if (!entry) {
    entry = std::make_shared<WriterGate>();
  }
  return entry;
}

// Leaves a WriterGate when it goes out of scope.
class GateExit {
 public:
  explicit GateExit(WriterGate* gate) : gate_(gate) {}

  GateExit(const GateExit&) = delete;
  GateExit& operator=(const GateExit&) = delete;
  GateExit(GateExit&&) = delete;
  GateExit& operator=(GateExit&&) = delete;

  ~GateExit() { gate_->Leave(); }

 private:
  WriterGate* gate_;
};

// Short, growing, jittered pause between whole-transaction retries, so that connections that
// collided do not collide again in lockstep. busy_timeout already did the long waiting.
void BackOff(int attempt) {
  thread_local std::minstd_rand rng(
      static_cast<unsigned>(std::hash<std::thread::id>{}(std::this_thread::get_id())));
  int base_ms = 1 << std::min(attempt, 6);
  std::uniform_int_distribution<int> jitter(0, base_ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(base_ms + jitter(rng)));
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// Runs one statement that may return a single text value (a pragma), outside any mutex: only
// used while opening, before the Database is shared.
Result<std::string> PragmaValue(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return Fail(db, rc, sql);
  }
  std::string value;
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    if (text != nullptr) {
      value = reinterpret_cast<const char*>(text);
    }
    rc = sqlite3_step(stmt);
  }
  if (rc != SQLITE_DONE) {
    Error error = MapError(db, rc, sql);
    sqlite3_finalize(stmt);
    return tl::unexpected<Error>(std::move(error));
  }
  sqlite3_finalize(stmt);
  return value;
}

// Switching a fresh file to WAL needs a brief exclusive lock, so processes starting together
// can see SQLITE_BUSY here even with a busy timeout; retry like a write transaction.
Result<void> ApplyPragmas(sqlite3* db, const Database::Options& options, std::string_view sync) {
  for (int attempt = 0;; ++attempt) {
    std::uint64_t busy_before = t_busy_results;
    Result<void> result = [&]() -> Result<void> {
      CLINKER_ASSIGN_OR_RETURN(std::string mode, PragmaValue(db, "PRAGMA journal_mode=WAL"));
      mode = Lower(mode);
      if (mode != "wal" && !(mode == "memory" && options.path == ":memory:")) {
        return MakeError(ErrorCode::kInternal,
                         "database " + options.path + " refused WAL mode (got " + mode + ")");
      }
      CLINKER_RETURN_IF_ERROR(PragmaValue(db, "PRAGMA synchronous=" + std::string(sync)));
      CLINKER_RETURN_IF_ERROR(PragmaValue(db, "PRAGMA foreign_keys=ON"));
      return {};
    }();
    if (result || t_busy_results == busy_before || attempt >= options.busy_retries_max) {
      return result;
    }
    BackOff(attempt);
  }
}

// The check sits inside the caller's write transaction: another process that migrated first
// holds the write lock until its COMMIT, so this one then sees its row and skips.
Result<void> ApplyMigration(Database& db,
                            std::string_view component,
                            std::int64_t version,
                            std::string_view migration) {
  {
    CLINKER_ASSIGN_OR_RETURN(
        Statement check,
        db.Prepare("SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?"));
    CLINKER_RETURN_IF_ERROR(check.Bind(1, std::string(component)));
    CLINKER_RETURN_IF_ERROR(check.Bind(2, version));
    CLINKER_ASSIGN_OR_RETURN(bool applied, check.Step());
    if (applied) {
      return {};
    }
  }
  CLINKER_RETURN_IF_ERROR(db.Exec(migration));
  CLINKER_ASSIGN_OR_RETURN(Statement record,
                           db.Prepare("INSERT INTO schema_migrations (component, version, "
                                      "applied_at) VALUES (?, ?, ?)"));
  CLINKER_RETURN_IF_ERROR(record.Bind(1, std::string(component)));
  CLINKER_RETURN_IF_ERROR(record.Bind(2, version));
  CLINKER_RETURN_IF_ERROR(record.Bind(3, FormatTimestamp(std::chrono::system_clock::now())));
  CLINKER_RETURN_IF_ERROR(record.Step());
  return {};
}

}  // namespace

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      cached_(std::exchange(other.cached_, nullptr)) {}

Statement::~Statement() {
  if (stmt_ == nullptr) {
    return;
  }
  // Either result repeats the last step's error, which the caller already received.
  if (cached_ != nullptr) {
    // Reset ends the statement's read of the database; cleared bindings keep no caller's data.
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    cached_->lent = false;
    return;
  }
  sqlite3_finalize(stmt_);
}

Result<void> Statement::Bind(int index, const ports::Value& value) {
  CLINKER_ASSERT(stmt_ != nullptr, "Bind on a moved-from Statement");
  int rc = SQLITE_OK;
  if (std::holds_alternative<std::monostate>(value)) {
    rc = sqlite3_bind_null(stmt_, index);
  } else if (const auto* number = std::get_if<std::int64_t>(&value)) {
    rc = sqlite3_bind_int64(stmt_, index, *number);
  } else {
    const std::string& text = std::get<std::string>(value);
    rc = sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  }
  if (rc != SQLITE_OK) {
    return Fail(db_, rc, "bind parameter " + std::to_string(index));
  }
  return {};
}

Result<void> Statement::BindAll(std::span<const ports::Value> values) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    CLINKER_RETURN_IF_ERROR(Bind(static_cast<int>(i) + 1, values[i]));
  }
  return {};
}

Result<bool> Statement::Step() {
  CLINKER_ASSERT(stmt_ != nullptr, "Step on a moved-from Statement");
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return Fail(db_, rc, "step");
}

int Statement::ColumnCount() const {
  return sqlite3_column_count(stmt_);
}

std::string_view Statement::ColumnName(int index) const {
  const char* name = sqlite3_column_name(stmt_, index);
  return name == nullptr ? std::string_view() : std::string_view(name);
}

ports::Value Statement::ColumnValue(int index) const {
  switch (sqlite3_column_type(stmt_, index)) {
    case SQLITE_NULL:
      return std::monostate{};
    case SQLITE_INTEGER:
      return static_cast<std::int64_t>(sqlite3_column_int64(stmt_, index));
    case SQLITE_FLOAT:
      // The schema has no REAL column; a float can only come from an expression.
      return static_cast<std::int64_t>(sqlite3_column_double(stmt_, index));
    default: {
      const unsigned char* text = sqlite3_column_text(stmt_, index);
      int size = sqlite3_column_bytes(stmt_, index);
      if (text == nullptr) {
        return std::string();
      }
      return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(size));
    }
  }
}

ports::Row Statement::RowValue() const {
  ports::Row row;
  int count = ColumnCount();
  for (int i = 0; i < count; ++i) {
    row.emplace(std::string(ColumnName(i)), ColumnValue(i));
  }
  return row;
}

Result<std::unique_ptr<Database>> Database::Open(const Options& options) {
  std::string sync = Lower(options.synchronous);
  if (sync != "off" && sync != "normal" && sync != "full" && sync != "extra") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "synchronous must be off, normal, full or extra, not " + options.synchronous);
  }
  if (options.busy_retries_max < 0 || options.busy_timeout.count() < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "busy_timeout and busy_retries_max must be >= 0");
  }
  if (options.path.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "database path is empty");
  }
  sqlite3* db = nullptr;
  // NOMUTEX: the Database mutex already serialises every use of the connection.
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(options.path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    Error error = MapError(db, rc, "open " + options.path);
    sqlite3_close_v2(db);
    return tl::unexpected<Error>(std::move(error));
  }
  sqlite3_extended_result_codes(db, 1);
  auto timeout_ms = std::min<std::chrono::milliseconds::rep>(options.busy_timeout.count(), 1 << 30);
  sqlite3_busy_timeout(db, static_cast<int>(timeout_ms));
  Result<void> pragmas = ApplyPragmas(db, options, sync);
  if (!pragmas) {
    sqlite3_close_v2(db);
    return tl::unexpected<Error>(pragmas.error());
  }
  return std::unique_ptr<Database>(new Database(db, options));
}

Database::Database(sqlite3* db, Options options)
    : db_(db),
      path_(options.path),
      options_(std::move(options)),
      file_writer_gate_(FileWriterGate(path_)) {}

Database::~Database() {
  for (auto& [sql, cached] : statements_) {
    sqlite3_finalize(cached.stmt);
  }
  // close_v2 defers the close until any leaked statement is finalized instead of failing.
  sqlite3_close_v2(db_);
}

Result<void> Database::WriteTransaction(const std::function<Result<void>(Database&)>& body) {
  for (int attempt = 0;; ++attempt) {
    std::uint64_t busy_before = t_busy_results;
    Result<void> result = [&]() -> Result<void> {
      if (!file_writer_gate_->TryEnterFor(options_.busy_timeout)) {
        ++t_busy_results;  // Another connection of this process held the write lock throughout.
        return MakeError(ErrorCode::kUnavailable,
                         "database " + path_ + ": write lock busy in this process");
      }
      GateExit leave(file_writer_gate_.get());
      std::lock_guard<std::mutex> lock(mutex_);
      metrics::CountWrite();
      CLINKER_RETURN_IF_ERROR(Run("BEGIN IMMEDIATE"));
      Result<void> outcome = body(*this);
      if (outcome) {
        outcome = Run("COMMIT");
      }
      if (!outcome && sqlite3_get_autocommit(db_) == 0) {
        // Some errors (SQLITE_FULL, SQLITE_IOERR) already rolled back; only an open transaction
        // needs it. The body's error is the one to report, not the rollback's.
        Run("ROLLBACK").IgnoreError("the transaction is abandoned either way");
      }
      return outcome;
    }();
    if (result || t_busy_results == busy_before) {
      return result;
    }
    if (attempt >= options_.busy_retries_max) {
      return MakeError(ErrorCode::kUnavailable,
                       "database " + path_ + " stayed busy after " + std::to_string(attempt + 1) +
                           " attempts: " + result.error().message);
    }
    BackOff(attempt);
  }
}

Result<void> Database::Read(const std::function<Result<void>(Database&)>& body) {
  // A WAL reader is only busy in rare moments (another connection recovering the WAL index);
  // the body only reads, so running it again is harmless.
  for (int attempt = 0;; ++attempt) {
    std::uint64_t busy_before = t_busy_results;
    Result<void> result = [&]() -> Result<void> {
      std::lock_guard<std::mutex> lock(mutex_);
      metrics::CountRead();
      return body(*this);
    }();
    if (result || t_busy_results == busy_before) {
      return result;
    }
    if (attempt >= options_.busy_retries_max) {
      return MakeError(ErrorCode::kUnavailable,
                       "database " + path_ + " stayed busy after " + std::to_string(attempt + 1) +
                           " attempts: " + result.error().message);
    }
    BackOff(attempt);
  }
}

Result<Statement> Database::Prepare(std::string_view sql) {
  auto found = statements_.find(std::string(sql));
  if (found != statements_.end() && !found->second.lent) {
    found->second.lent = true;
    return Statement(db_, found->second.stmt, &found->second);
  }
  // Only a text seen for the first time is cached: a lent one is compiled again, uncached.
  const bool cache = found == statements_.end() && statements_.size() < kStatementCacheMax;
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db_,
                              sql.data(),
                              static_cast<int>(sql.size()),
                              cache ? SQLITE_PREPARE_PERSISTENT : 0,
                              &stmt,
                              &tail);
  if (rc != SQLITE_OK) {
    return Fail(db_, rc, "prepare");
  }
  if (stmt == nullptr) {
    return MakeError(ErrorCode::kInternal, "prepare: no statement in the SQL text");
  }
  std::string_view rest(tail, static_cast<std::size_t>(sql.data() + sql.size() - tail));
  if (rest.find_first_not_of(" \t\r\n;") != std::string_view::npos) {
    sqlite3_finalize(stmt);
    return MakeError(ErrorCode::kInternal, "prepare: more than one statement in the SQL text");
  }
  if (!cache) {
    return Statement(db_, stmt);
  }
  // SQLite recompiles a cached statement by itself when the schema changed under it.
  CachedStatement& cached = statements_[std::string(sql)];
  cached.stmt = stmt;
  cached.lent = true;
  return Statement(db_, stmt, &cached);
}

Result<void> Database::Run(std::string_view sql) {
  CLINKER_ASSIGN_OR_RETURN(Statement statement, Prepare(sql));
  CLINKER_ASSIGN_OR_RETURN(bool row, statement.Step());
  CLINKER_ASSERT(!row, "a transaction statement returns no row");
  return {};
}

Result<void> Database::Exec(std::string_view sql) {
  std::string text(sql);
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    return Fail(db_, rc, "exec");
  }
  return {};
}

std::int64_t Database::ChangedRows() const {
  return sqlite3_changes64(db_);
}

Result<void> Database::Migrate(std::string_view component,
                               std::span<const std::string_view> migrations) {
  CLINKER_RETURN_IF_ERROR(WriteTransaction([](Database& db) -> Result<void> {
    return db.Exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "component TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL, "
        "PRIMARY KEY (component, version))");
  }));
  for (std::size_t i = 0; i < migrations.size(); ++i) {
    auto version = static_cast<std::int64_t>(i + 1);
    std::string_view migration = migrations[i];
    CLINKER_RETURN_IF_ERROR(WriteTransaction([&](Database& db) -> Result<void> {
      return ApplyMigration(db, component, version, migration);
    }));
  }
  return {};
}

}  // namespace clinker::adapters::sqlite
