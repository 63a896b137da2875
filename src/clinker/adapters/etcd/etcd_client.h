// EtcdClient: a small client of etcd's v3 JSON gRPC gateway (HTTP/1.1, cpp-httplib), with just
// what the lock manager needs: leases, put, range, txn, delete, and a prefix watch.
//
// Contract:
// - Thread safe. Requests borrow an HTTP connection from a small pool (an httplib::Client must not
//   be used by two threads at once), so concurrent calls run in parallel.
// - Blocking, bounded: every request has a connect and a read timeout (Options::request_timeout,
//   or the timeout a call names). Nothing waits forever.
// - Errors: kUnavailable when etcd cannot be reached, times out or answers 5xx/unavailable (the
//   request may or may not have been applied: a write that fails this way is only safe to retry
//   when it is idempotent or uses a key of its own); kNotFound when etcd says the lease does not
//   exist; kInternal for an answer this code does not understand.
// - Keys and values are raw bytes here; the gateway's base64 is done inside. int64 fields travel
//   as JSON strings (the gateway's encoding) and are parsed here.
// - EtcdWatch runs one streaming /v3/watch on its own thread and reconnects (from the revision
//   after the last one it saw, so no event is lost) until it is destroyed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "clinker/core/error.h"

namespace httplib {
class Client;
}  // namespace httplib

namespace clinker::adapters::etcd {

std::string Base64Encode(std::string_view bytes);
// kInternal for text that is not base64.
Result<std::string> Base64Decode(std::string_view text);
// The smallest key greater than every key that starts with `prefix` (etcd's range_end).
std::string PrefixEnd(std::string_view prefix);

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};

struct RangeResult {
  std::int64_t revision = 0;  // The store revision the range was served at.
  std::vector<KeyValue> kvs;
};

struct LeaseGrantResult {
  std::int64_t id = 0;
  std::int64_t ttl_seconds = 0;
};

// One comparison of a txn: `target` of `key` compared with `value` (EQUAL, LESS, ...).
struct Compare {
  enum class Target { kCreateRevision, kModRevision, kVersion };
  enum class Result { kEqual, kNotEqual, kLess, kGreater };
  std::string key;
  Target target = Target::kCreateRevision;
  Result result = Result::kEqual;
  std::int64_t value = 0;
};

// One operation of a txn branch.
struct TxnOp {
  enum class Kind { kPut, kRange, kDelete };
  Kind kind = Kind::kPut;
  std::string key;
  std::string range_end;        // kRange / kDelete: empty for a single key.
  std::string value;            // kPut.
  std::int64_t lease = 0;       // kPut: 0 for none.
  bool sort_by_create = false;  // kRange: ascending by create_revision.

  static TxnOp Put(std::string key, std::string value, std::int64_t lease);
  static TxnOp RangePrefix(std::string prefix);
  static TxnOp Delete(std::string key);
};

struct TxnResult {
  bool succeeded = false;
  std::int64_t revision = 0;
  // One entry per op of the branch that ran; filled for kRange ops only.
  std::vector<RangeResult> ranges;
};

class EtcdClient {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 2379;
    std::chrono::milliseconds request_timeout{5000};
  };

  explicit EtcdClient(Options options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  const Options& options() const { return options_; }

  Result<LeaseGrantResult> LeaseGrant(std::int64_t ttl_seconds);
  // The remaining TTL in seconds; 0 when the lease has expired or does not exist.
  Result<std::int64_t> LeaseKeepAlive(std::int64_t lease, std::chrono::milliseconds timeout);
  Result<void> LeaseRevoke(std::int64_t lease);
  // Returns the revision of the put.
  Result<std::int64_t> Put(const std::string& key, const std::string& value, std::int64_t lease);
  // Every key starting with `prefix`, ascending by create_revision.
  Result<RangeResult> RangePrefix(const std::string& prefix);
  Result<TxnResult> Txn(const std::vector<Compare>& compares,
                        const std::vector<TxnOp>& success,
                        const std::vector<TxnOp>& failure);
  // Returns how many keys were deleted (0 or 1).
  Result<std::int64_t> Delete(const std::string& key);

 private:
  // POSTs `body` (JSON) to `path` and returns the body of a 200 answer; other answers and
  // transport failures become errors as described above.
  Result<std::string> Post(const std::string& path,
                           const std::string& body,
                           std::chrono::milliseconds timeout);

  Options options_;
  std::mutex pool_mutex_;
  std::vector<std::unique_ptr<httplib::Client>> pool_;
};

// A watch on every key starting with `prefix`, delivering DELETE events only (the lock manager
// reacts to keys going away, never to new ones), from its own thread.
class EtcdWatch {
 public:
  struct Event {
    std::string key;
    std::int64_t revision = 0;  // The revision of the deletion.
  };

  // Called on the watch thread for each batch of deletions.
  using EventsCallback = std::function<void(const std::vector<Event>&)>;
  // Called on the watch thread each time a watch stream is (re)established, with the store
  // revision it starts after: events up to that revision are not delivered by this stream
  // (after a reconnect the stream resumes where the previous one stopped, so none are lost
  // unless etcd compacted them, which `gap` = true reports).
  using CreatedCallback = std::function<void(std::int64_t revision, bool gap)>;

  EtcdWatch(EtcdClient::Options options,
            std::string prefix,
            EventsCallback on_events,
            CreatedCallback on_created);
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // Waits until the first stream is established; false if `timeout` passed first.
  bool WaitCreated(std::chrono::milliseconds timeout);

 private:
  void Run();
  // One stream; returns when it ends. Updates next_revision_.
  void RunStream();

  EtcdClient::Options options_;
  std::string prefix_;
  EventsCallback on_events_;
  CreatedCallback on_created_;
  std::int64_t next_revision_ = 0;  // 0: from now. Watch thread only.
  bool gap_ = false;                // Watch thread only.
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
  bool created_ = false;                      // Guarded by mutex_.
  httplib::Client* stream_client_ = nullptr;  // Guarded by mutex_; the live stream's client.
  std::thread thread_;
};

}  // namespace clinker::adapters::etcd
