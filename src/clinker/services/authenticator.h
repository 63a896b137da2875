// Authenticator: turns a request's X-Auth-Token (and X-Service-Token) into who is calling, for
// auth_strategy = keystone, asking the TokenValidator (Keystone) only when its cache cannot answer.
//
// Cache. A bounded LRU of token -> outcome, keyed by the full token (a hash would let two tokens
// share an entry; tokens are at most ports::kMaxTokenLength bytes, so max_entries bounds memory):
// - A validated token is used while now < min(expires_at, cached_at + max_positive_ttl). The cap
//   bounds how late a revocation is noticed (keystonemiddleware's token_cache_time). expires_at is
//   compared with the local wall clock; the cap is measured on the monotonic clock.
// - A token whose expires_at has passed is refused (kUnauthenticated) without asking the
//   validator, for as long as its entry stays in the cache.
// - A token the validator refused (kUnauthenticated) is remembered for negative_ttl, so a flood of
//   bad tokens costs one validation per distinct token per negative_ttl.
// - kUnavailable and kInternal are never cached: the next request asks again.
// - Concurrent misses for one token are coalesced: one thread asks the validator, the others wait
//   for its answer (bounded by the validator's own timeouts).
//
// Service tokens (X-Service-Token, sent by Nova and other services along with the user's token):
// validated and cached like user tokens. A valid one that carries one of service_token_roles makes
// the request a service request (Cinder's is_service_request). An invalid one is kUnauthenticated
// even when the user token is good. A valid one without a service role is kUnauthenticated when
// service_token_roles_required, else ignored (is_service_request stays false), as
// keystonemiddleware's service_token_roles_required.
//
// Contract: thread safe (one mutex, never held while the validator runs). Authenticate blocks for
// at most one validation per token it has to ask about (two: user and service token). Errors:
// kUnauthenticated (no token, a malformed, unknown, expired or revoked token, a service token
// without a service role: HTTP 401); kUnavailable (the validator could not decide: HTTP 503);
// kInternal (the validator's answer was unreadable). No side effects beyond the cache.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/identity.h"

namespace clinker::services {

struct AuthenticatorOptions {
  // Cached outcomes (positive and negative) kept at most; the least recently used goes first.
  // 0 disables the cache (concurrent misses are still coalesced).
  std::size_t max_entries = 10000;
  // How long a refused token is remembered; 0 disables negative caching.
  std::chrono::seconds negative_ttl{10};
  // How long a validated token is trusted without asking again, at most (it is never trusted
  // past its expires_at).
  std::chrono::seconds max_positive_ttl{300};
  // A service token must carry one of these roles (case-insensitive) to mark a service request.
  std::vector<std::string> service_token_roles{"service"};
  bool service_token_roles_required = true;
};

struct AuthResult {
  ports::TokenInfo user;
  // The X-Service-Token's holder, when one was sent and accepted.
  std::optional<ports::TokenInfo> service;
  bool is_service_request = false;
};

struct AuthenticatorStats {
  std::uint64_t validations = 0;  // TokenValidator::Validate calls, i.e. Keystone round trips.
  std::uint64_t cache_hits = 0;   // Lookups answered by the cache (positive, negative, expired).
  std::uint64_t coalesced = 0;    // Lookups that waited for another thread's validation.
  std::size_t entries = 0;        // Cached outcomes now.
};

class Authenticator {
 public:
  // `validator` and `clock` must outlive the Authenticator.
  Authenticator(ports::TokenValidator& validator,
                const ports::Clock& clock,
                AuthenticatorOptions options = {});
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;
  ~Authenticator();

  // `user_token` is the X-Auth-Token value (empty: none was sent); `service_token` the
  // X-Service-Token value (empty: none).
  Result<AuthResult> Authenticate(std::string_view user_token, std::string_view service_token);

  AuthenticatorStats Stats() const;

 private:
  using Outcome = Result<ports::TokenInfo>;

  struct Entry {
    std::string token;
    std::optional<ports::TokenInfo> info;  // nullopt: a refused token, `refusal` says why.
    std::string refusal;
    std::chrono::steady_clock::time_point trusted_until;  // Monotonic; cap or negative_ttl.
  };

  // The outcome for one token: from the cache, from another thread's validation, or asked.
  Outcome Lookup(std::string_view token);
  // Answers from the cache entry at `it` if it still may; nullopt (entry dropped) otherwise.
  // Caller holds mutex_.
  std::optional<Outcome> FromCacheLocked(std::list<Entry>::iterator it);
  // Records the validator's answer. Caller holds mutex_.
  void StoreLocked(std::string_view token, const Outcome& outcome);

  ports::TokenValidator& validator_;
  const ports::Clock& clock_;
  const AuthenticatorOptions options_;

  mutable std::mutex mutex_;  // Guards every member below.
  std::list<Entry> lru_;      // Most recently used first.
  // Keys view Entry::token inside lru_ (list nodes never move).
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
  // Validations under way, so concurrent misses wait instead of asking again. Keys view the
  // std::string owned by the asking thread for as long as the entry exists.
  std::unordered_map<std::string_view, std::shared_future<Outcome>> in_flight_;
  AuthenticatorStats stats_;
};

}  // namespace clinker::services
