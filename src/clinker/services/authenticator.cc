#include "clinker/services/authenticator.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "clinker/core/time_format.h"

namespace clinker::services {
namespace {

Result<ports::TokenInfo> Expired(const ports::TokenInfo& info) {
  return MakeError(ErrorCode::kUnauthenticated,
                   "the token of user " + info.user_id + " expired at " +
                       FormatTimestamp(info.expires_at) + "Z");
}

}  // namespace

Authenticator::Authenticator(ports::TokenValidator& validator,
                             const ports::Clock& clock,
                             AuthenticatorOptions options)
    : validator_(validator), clock_(clock), options_(std::move(options)) {}

Authenticator::~Authenticator() = default;

Result<AuthResult> Authenticator::Authenticate(std::string_view user_token,
                                               std::string_view service_token) {
  if (user_token.empty()) {
    return MakeError(ErrorCode::kUnauthenticated, "no X-Auth-Token: a Keystone token is required");
  }
  if (!ports::IsPlausibleToken(user_token)) {
    return MakeError(ErrorCode::kUnauthenticated, "malformed X-Auth-Token");
  }
  CLINKER_ASSIGN_OR_RETURN(ports::TokenInfo user, Lookup(user_token));
  AuthResult result;
  result.user = std::move(user);
  if (service_token.empty()) {
    return result;
  }
  if (!ports::IsPlausibleToken(service_token)) {
    return MakeError(ErrorCode::kUnauthenticated, "malformed X-Service-Token");
  }
  Outcome service = Lookup(service_token);
  if (!service) {
    if (service.error().code == ErrorCode::kUnauthenticated) {
      return MakeError(ErrorCode::kUnauthenticated, "X-Service-Token: " + service.error().message);
    }
    return tl::unexpected(std::move(service).error());
  }
  const bool has_role =
      std::any_of(options_.service_token_roles.begin(),
                  options_.service_token_roles.end(),
                  [&](const std::string& role) { return service->HasRole(role); });
  if (!has_role && options_.service_token_roles_required) {
    std::string roles;
    for (const std::string& role : options_.service_token_roles) {
      roles += (roles.empty() ? "" : ", ") + role;
    }
    return MakeError(ErrorCode::kUnauthenticated,
                     "X-Service-Token of user " + service->user_id +
                         " carries none of the service roles (" + roles + ")");
  }
  result.is_service_request = has_role;
  result.service = std::move(*service);
  return result;
}

Authenticator::Outcome Authenticator::Lookup(std::string_view token) {
  std::promise<Outcome> promise;
  std::shared_future<Outcome> pending;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (auto it = index_.find(token); it != index_.end()) {
      if (std::optional<Outcome> cached = FromCacheLocked(it->second)) {
        ++stats_.cache_hits;
        return std::move(*cached);
      }
    }
    if (auto it = in_flight_.find(token); it != in_flight_.end()) {
      pending = it->second;
      ++stats_.coalesced;
    } else {
      // The key views the caller's token, which outlives the entry: it is erased below, before
      // this call returns.
      in_flight_.emplace(token, promise.get_future().share());
      ++stats_.validations;
    }
  }
  if (pending.valid()) {
    return pending.get();
  }
  Outcome outcome = [&]() -> Outcome {
    // A validator never throws (Results only); this keeps a broken one from leaving in_flight_
    // pointing at a dead token and its waiters without an answer.
    try {
      return validator_.Validate(token);
    } catch (const std::exception& e) {
      return MakeError(ErrorCode::kInternal, std::string("token validator failed: ") + e.what());
    }
  }();
  // Keystone does not hand out expired tokens, so one that looks expired means the local clock is
  // ahead of Keystone's. It is refused, as keystonemiddleware does, and its cached entry keeps
  // refusing it without asking again.
  const bool expired = outcome && clock_.WallNow() >= outcome->expires_at;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    StoreLocked(token, outcome);
    in_flight_.erase(token);
  }
  if (expired) {
    outcome = Expired(*outcome);
  }
  promise.set_value(outcome);
  return outcome;
}

std::optional<Authenticator::Outcome> Authenticator::FromCacheLocked(
    std::list<Entry>::iterator it) {
  const Entry& entry = *it;
  const auto now = clock_.MonoNow();
  std::optional<Outcome> answer;
  if (entry.info.has_value()) {
    if (clock_.WallNow() >= entry.info->expires_at) {
      answer = Expired(*entry.info);
    } else if (now < entry.trusted_until) {
      answer = *entry.info;
    }
  } else if (now < entry.trusted_until) {
    answer = MakeError(ErrorCode::kUnauthenticated, entry.refusal);
  }
  if (answer.has_value()) {
    lru_.splice(lru_.begin(), lru_, it);  // Most recently used; iterators stay valid.
    return answer;
  }
  index_.erase(entry.token);  // Before the node its key views goes.
  lru_.erase(it);
  return std::nullopt;
}

void Authenticator::StoreLocked(std::string_view token, const Outcome& outcome) {
  if (options_.max_entries == 0) {
    return;
  }
  Entry entry;
  const auto now = clock_.MonoNow();
  if (outcome) {
    entry.info = *outcome;
    entry.trusted_until = now + options_.max_positive_ttl;
  } else if (outcome.error().code == ErrorCode::kUnauthenticated &&
             options_.negative_ttl.count() > 0) {
    entry.refusal = outcome.error().message;
    entry.trusted_until = now + options_.negative_ttl;
  } else {
    return;  // The validator could not decide: the next request asks again.
  }
  if (auto it = index_.find(token); it != index_.end()) {
    const auto node = it->second;
    index_.erase(it);
    lru_.erase(node);
  }
  entry.token = std::string(token);
  lru_.push_front(std::move(entry));
  index_.emplace(lru_.front().token, lru_.begin());
  while (lru_.size() > options_.max_entries) {
    index_.erase(lru_.back().token);
    lru_.pop_back();
  }
}

AuthenticatorStats Authenticator::Stats() const {
  std::lock_guard<std::mutex> guard(mutex_);
  AuthenticatorStats out = stats_;
  out.entries = lru_.size();
  return out;
}

}  // namespace clinker::services
