#include "clinker/adapters/etcd/etcd_client.h"

#include <algorithm>
#include <array>
#include <string_view>
#include <utility>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "clinker/core/base64.h"

namespace clinker::adapters::etcd {
namespace {

using Json = nlohmann::json;

// The gateway encodes int64 as JSON strings and leaves out fields equal to zero.
std::int64_t GetInt(const Json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) {
    return 0;
  }
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (const std::exception&) {
      return 0;
    }
  }
  if (it->is_number()) {
    return it->get<std::int64_t>();
  }
  return 0;
}

std::string GetBytes(const Json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end() || !it->is_string()) {
    return "";
  }
  auto decoded = Base64Decode(it->get<std::string>());
  return decoded ? std::move(*decoded) : std::string();
}

Result<Json> ParseJson(const std::string& text) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return MakeError(ErrorCode::kInternal,
                     "etcd answered with something that is not JSON: " + text.substr(0, 200));
  }
  return parsed;
}

KeyValue ParseKeyValue(const Json& kv) {
  KeyValue out;
  out.key = GetBytes(kv, "key");
  out.value = GetBytes(kv, "value");
  out.create_revision = GetInt(kv, "create_revision");
  out.mod_revision = GetInt(kv, "mod_revision");
  out.version = GetInt(kv, "version");
  out.lease = GetInt(kv, "lease");
  return out;
}

RangeResult ParseRange(const Json& range) {
  RangeResult out;
  if (auto header = range.find("header"); header != range.end()) {
    out.revision = GetInt(*header, "revision");
  }
  if (auto kvs = range.find("kvs"); kvs != range.end() && kvs->is_array()) {
    for (const Json& kv : *kvs) {
      out.kvs.push_back(ParseKeyValue(kv));
    }
  }
  return out;
}

std::int64_t HeaderRevision(const Json& answer) {
  auto header = answer.find("header");
  return header == answer.end() ? 0 : GetInt(*header, "revision");
}

Json OpToJson(const TxnOp& op) {
  switch (op.kind) {
    case TxnOp::Kind::kPut: {
      Json put = {{"key", Base64Encode(op.key)}, {"value", Base64Encode(op.value)}};
      if (op.lease != 0) {
        put["lease"] = std::to_string(op.lease);
      }
      return Json{{"request_put", put}};
    }
    case TxnOp::Kind::kRange: {
      Json range = {{"key", Base64Encode(op.key)}};
      if (!op.range_end.empty()) {
        range["range_end"] = Base64Encode(op.range_end);
      }
      if (op.sort_by_create) {
        range["sort_order"] = "ASCEND";
        range["sort_target"] = "CREATE";
      }
      return Json{{"request_range", range}};
    }
    case TxnOp::Kind::kDelete: {
      Json del = {{"key", Base64Encode(op.key)}};
      if (!op.range_end.empty()) {
        del["range_end"] = Base64Encode(op.range_end);
      }
      return Json{{"request_delete_range", del}};
    }
  }
  return Json::object();
}

Json CompareToJson(const Compare& compare) {
  Json out = {{"key", Base64Encode(compare.key)}};
  switch (compare.result) {
    case Compare::Result::kEqual:
      out["result"] = "EQUAL";
      break;
    case Compare::Result::kNotEqual:
      out["result"] = "NOT_EQUAL";
      break;
    case Compare::Result::kLess:
      out["result"] = "LESS";
      break;
    case Compare::Result::kGreater:
      out["result"] = "GREATER";
      break;
  }
  const std::string value = std::to_string(compare.value);
  switch (compare.target) {
    case Compare::Target::kCreateRevision:
      out["target"] = "CREATE";
      out["create_revision"] = value;
      break;
    case Compare::Target::kModRevision:
      out["target"] = "MOD";
      out["mod_revision"] = value;
      break;
    case Compare::Target::kVersion:
      out["target"] = "VERSION";
      out["version"] = value;
      break;
  }
  return out;
}

// httplib takes whole seconds plus microseconds.
template <class Setter>
void SetTimeout(Setter setter, std::chrono::milliseconds timeout) {
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
  setter(static_cast<time_t>(micros / 1000000), static_cast<time_t>(micros % 1000000));
}

std::unique_ptr<httplib::Client> NewClient(const EtcdClient::Options& options,
                                           std::chrono::milliseconds read_timeout) {
  auto client = std::make_unique<httplib::Client>(options.host, options.port);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(true);  // Headers and body go out in two writes: no Nagle stall.
  SetTimeout([&](time_t s, time_t us) { client->set_connection_timeout(s, us); },
             options.request_timeout);
  SetTimeout([&](time_t s, time_t us) { client->set_write_timeout(s, us); },
             options.request_timeout);
  SetTimeout([&](time_t s, time_t us) { client->set_read_timeout(s, us); }, read_timeout);
  return client;
}

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  return ::clinker::Base64Encode(bytes);
}

Result<std::string> Base64Decode(std::string_view text) {
  auto decoded = ::clinker::Base64Decode(text);
  if (!decoded) {
    return MakeError(ErrorCode::kInternal, "bad base64 from etcd");
  }
  return decoded;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xFF) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // Every key: etcd's "\0" range_end.
}

TxnOp TxnOp::Put(std::string key, std::string value, std::int64_t lease) {
  TxnOp op;
  op.kind = Kind::kPut;
  op.key = std::move(key);
  op.value = std::move(value);
  op.lease = lease;
  return op;
}

TxnOp TxnOp::RangePrefix(std::string prefix) {
  TxnOp op;
  op.kind = Kind::kRange;
  op.range_end = PrefixEnd(prefix);
  op.key = std::move(prefix);
  op.sort_by_create = true;
  return op;
}

TxnOp TxnOp::Delete(std::string key) {
  TxnOp op;
  op.kind = Kind::kDelete;
  op.key = std::move(key);
  return op;
}

EtcdClient::EtcdClient(Options options) : options_(std::move(options)) {}

EtcdClient::~EtcdClient() = default;

Result<std::string> EtcdClient::Post(const std::string& path,
                                     const std::string& body,
                                     std::chrono::milliseconds timeout) {
  std::unique_ptr<httplib::Client> client;
  {
    std::lock_guard<std::mutex> guard(pool_mutex_);
    if (!pool_.empty()) {
      client = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  if (client == nullptr) {
    client = NewClient(options_, timeout);
  }
  // Per call: a keepalive must give up within one heartbeat, connect included.
  SetTimeout([&](time_t s, time_t us) { client->set_read_timeout(s, us); }, timeout);
  SetTimeout([&](time_t s, time_t us) { client->set_connection_timeout(s, us); },
             std::min(timeout, options_.request_timeout));
  const std::string where = options_.host + ":" + std::to_string(options_.port) + path;
  auto result = client->Post(path, body, "application/json");
  if (!result) {
    // The connection may be half-broken: do not give it back to the pool.
    return MakeError(ErrorCode::kUnavailable,
                     "etcd " + where + ": " + httplib::to_string(result.error()));
  }
  const int status = result->status;
  std::string answer = std::move(result->body);
  {
    std::lock_guard<std::mutex> guard(pool_mutex_);
    if (pool_.size() < 16) {
      pool_.push_back(std::move(client));
    }
  }
  if (status == 200) {
    return answer;
  }
  // The gateway maps gRPC errors to HTTP statuses and puts the gRPC code in the body.
  Json parsed = Json::parse(answer, nullptr, false);
  const std::int64_t grpc_code =
      parsed.is_object() && parsed.contains("code") ? GetInt(parsed, "code") : -1;
  const std::string message =
      "etcd " + where + ": HTTP " + std::to_string(status) + ": " + answer.substr(0, 300);
  if (grpc_code == 5) {
    return MakeError(ErrorCode::kNotFound, message);
  }
  if (status >= 500 || grpc_code == 14 || grpc_code == 4) {
    return MakeError(ErrorCode::kUnavailable, message);
  }
  return MakeError(ErrorCode::kInternal, message);
}

Result<LeaseGrantResult> EtcdClient::LeaseGrant(std::int64_t ttl_seconds) {
  CLINKER_ASSIGN_OR_RETURN(std::string text,
                           Post("/v3/lease/grant",
                                Json{{"TTL", std::to_string(ttl_seconds)}}.dump(),
                                options_.request_timeout));
  CLINKER_ASSIGN_OR_RETURN(Json answer, ParseJson(text));
  LeaseGrantResult out{GetInt(answer, "ID"), GetInt(answer, "TTL")};
  if (out.id == 0 || out.ttl_seconds <= 0) {
    return MakeError(ErrorCode::kUnavailable, "etcd refused a lease: " + text.substr(0, 300));
  }
  return out;
}

Result<std::int64_t> EtcdClient::LeaseKeepAlive(std::int64_t lease,
                                                std::chrono::milliseconds timeout) {
  CLINKER_ASSIGN_OR_RETURN(
      std::string text,
      Post("/v3/lease/keepalive", Json{{"ID", std::to_string(lease)}}.dump(), timeout));
  CLINKER_ASSIGN_OR_RETURN(Json answer, ParseJson(text));
  auto result = answer.find("result");
  if (result == answer.end() || !result->is_object()) {
    return MakeError(ErrorCode::kUnavailable, "etcd keepalive failed: " + text.substr(0, 300));
  }
  return GetInt(*result, "TTL");  // Absent (0) once the lease is gone.
}

Result<void> EtcdClient::LeaseRevoke(std::int64_t lease) {
  auto text = Post(
      "/v3/lease/revoke", Json{{"ID", std::to_string(lease)}}.dump(), options_.request_timeout);
  if (!text && text.error().code != ErrorCode::kNotFound) {
    return tl::unexpected(text.error());
  }
  return {};  // A lease that is already gone is revoked.
}

Result<std::int64_t> EtcdClient::Put(const std::string& key,
                                     const std::string& value,
                                     std::int64_t lease) {
  Json body = {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease != 0) {
    body["lease"] = std::to_string(lease);
  }
  CLINKER_ASSIGN_OR_RETURN(std::string text,
                           Post("/v3/kv/put", body.dump(), options_.request_timeout));
  CLINKER_ASSIGN_OR_RETURN(Json answer, ParseJson(text));
  return HeaderRevision(answer);
}

Result<RangeResult> EtcdClient::RangePrefix(const std::string& prefix) {
  Json body = {{"key", Base64Encode(prefix)},
               {"range_end", Base64Encode(PrefixEnd(prefix))},
               {"sort_order", "ASCEND"},
               {"sort_target", "CREATE"}};
  CLINKER_ASSIGN_OR_RETURN(std::string text,
                           Post("/v3/kv/range", body.dump(), options_.request_timeout));
  CLINKER_ASSIGN_OR_RETURN(Json answer, ParseJson(text));
  return ParseRange(answer);
}

Result<TxnResult> EtcdClient::Txn(const std::vector<Compare>& compares,
                                  const std::vector<TxnOp>& success,
                                  const std::vector<TxnOp>& failure) {
  Json body = Json::object();
  body["compare"] = Json::array();
  for (const Compare& compare : compares) {
    body["compare"].push_back(CompareToJson(compare));
  }
  body["success"] = Json::array();
  for (const TxnOp& op : success) {
    body["success"].push_back(OpToJson(op));
  }
  body["failure"] = Json::array();
  for (const TxnOp& op : failure) {
    body["failure"].push_back(OpToJson(op));
  }
  CLINKER_ASSIGN_OR_RETURN(std::string text,
                           Post("/v3/kv/txn", body.dump(), options_.request_timeout));
  CLINKER_ASSIGN_OR_RETURN(Json answer, ParseJson(text));
  TxnResult out;
  out.succeeded = answer.value("succeeded", false);
  out.revision = HeaderRevision(answer);
  if (auto responses = answer.find("responses");
      responses != answer.end() && responses->is_array()) {
    for (const Json& response : *responses) {
      auto range = response.find("response_range");
      out.ranges.push_back(range != response.end() ? ParseRange(*range) : RangeResult{});
    }
  }
  return out;
}

Result<std::int64_t> EtcdClient::Delete(const std::string& key) {
  CLINKER_ASSIGN_OR_RETURN(
      std::string text,
      Post(
          "/v3/kv/deleterange", Json{{"key", Base64Encode(key)}}.dump(), options_.request_timeout));
  CLINKER_ASSIGN_OR_RETURN(Json answer, ParseJson(text));
  return GetInt(answer, "deleted");
}

// ---- EtcdWatch ----

namespace {

// An idle stream is closed and resumed this often; resuming loses nothing (start_revision).
constexpr std::chrono::milliseconds kWatchIdleTimeout{10000};
constexpr std::chrono::milliseconds kWatchRetryDelay{200};

}  // namespace

EtcdWatch::EtcdWatch(EtcdClient::Options options,
                     std::string prefix,
                     EventsCallback on_events,
                     CreatedCallback on_created)
    : options_(std::move(options)),
      prefix_(std::move(prefix)),
      on_events_(std::move(on_events)),
      on_created_(std::move(on_created)) {
  thread_ = std::thread([this] { Run(); });
}

EtcdWatch::~EtcdWatch() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> guard(mutex_);
    changed_.notify_all();
  }
  // stop() aborts a blocking read; repeat it in case the stream was just being opened.
  for (int attempt = 0; attempt < 400; ++attempt) {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      if (stream_client_ == nullptr) {
        break;
      }
      stream_client_->stop();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  thread_.join();
}

bool EtcdWatch::WaitCreated(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard(mutex_);
  return changed_.wait_for(guard, timeout, [&] { return created_; });
}

void EtcdWatch::Run() {
  while (!stop_.load()) {
    RunStream();
    if (stop_.load()) {
      break;
    }
    std::unique_lock<std::mutex> guard(mutex_);
    changed_.wait_for(guard, kWatchRetryDelay, [&] { return stop_.load(); });
  }
}

void EtcdWatch::RunStream() {
  auto client = NewClient(options_, kWatchIdleTimeout);
  client->set_keep_alive(false);
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (stop_.load()) {
      return;
    }
    stream_client_ = client.get();
  }
  Json create = {{"key", Base64Encode(prefix_)},
                 {"range_end", Base64Encode(PrefixEnd(prefix_))},
                 {"filters", Json::array({"NOPUT"})}};
  if (next_revision_ > 0) {
    create["start_revision"] = std::to_string(next_revision_);
  }
  httplib::Request request;
  request.method = "POST";
  request.path = "/v3/watch";
  request.headers.emplace("Content-Type", "application/json");
  request.body = Json{{"create_request", create}}.dump();
  std::string buffer;
  auto handle_line = [&](const std::string& line) {
    Json parsed = Json::parse(line, nullptr, false);
    if (!parsed.is_object()) {
      return;
    }
    auto result = parsed.find("result");
    if (result == parsed.end() || !result->is_object()) {
      return;  // An error object: the stream ends and is reopened.
    }
    const std::int64_t header_revision = HeaderRevision(*result);
    if (result->value("canceled", false)) {
      const std::int64_t compacted = GetInt(*result, "compact_revision");
      if (compacted > 0) {
        // The events we wanted are gone: resume at the oldest kept one and report the gap.
        next_revision_ = compacted;
        gap_ = true;
      }
      return;
    }
    if (result->value("created", false)) {
      const std::int64_t start = next_revision_ > 0 ? next_revision_ - 1 : header_revision;
      if (next_revision_ == 0) {
        next_revision_ = header_revision + 1;
      }
      on_created_(start, gap_);
      gap_ = false;
      std::lock_guard<std::mutex> guard(mutex_);
      created_ = true;
      changed_.notify_all();
    }
    std::vector<Event> events;
    if (auto list = result->find("events"); list != result->end() && list->is_array()) {
      for (const Json& event : *list) {
        if (event.value("type", std::string("PUT")) != "DELETE") {
          continue;
        }
        auto kv = event.find("kv");
        if (kv == event.end()) {
          continue;
        }
        Event out{GetBytes(*kv, "key"), GetInt(*kv, "mod_revision")};
        if (out.revision >= next_revision_) {
          next_revision_ = out.revision + 1;
        }
        events.push_back(std::move(out));
      }
    }
    if (!events.empty()) {
      on_events_(events);
    }
  };
  request.content_receiver =
      [&](const char* data, std::size_t length, std::uint64_t, std::uint64_t) {
        buffer.append(data, length);
        std::size_t newline = 0;
        while ((newline = buffer.find('\n')) != std::string::npos) {
          handle_line(buffer.substr(0, newline));
          buffer.erase(0, newline + 1);
        }
        return !stop_.load();
      };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  client->send(request, response, error);
  if (!buffer.empty()) {
    handle_line(buffer);
  }
  std::lock_guard<std::mutex> guard(mutex_);
  stream_client_ = nullptr;
}

}  // namespace clinker::adapters::etcd
