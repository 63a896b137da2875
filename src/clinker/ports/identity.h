// Identity: who a request comes from, as the identity service (Keystone v3) tells it for a token.
//
// Contract, for every TokenValidator:
// - Thread safe: Validate may be called from any number of threads at once, and the calls run
//   concurrently (an adapter serialises only what it must, e.g. renewing its own credentials).
// - Blocking, bounded: a call waits at most the adapter's timeouts (connect plus request, for the
//   validation and for at most one renewal of the validator's own service token). Nothing waits
//   forever.
// - Idempotent, no side effects: validating a token changes nothing, on the identity service or
//   here, except that an adapter may obtain or renew its own service token. No result is cached
//   by a validator: caching (and its bound on how late a revocation is noticed) is the caller's,
//   see services::Authenticator.
// - Errors:
//   - kUnauthenticated: the token itself is no good: unknown, expired, revoked (the identity
//     service answered 404 for the subject token), or malformed (empty, longer than
//     kMaxTokenLength, or bytes that cannot be an HTTP header value; then the service is not
//     asked). Retrying with the same token is pointless; the API answers 401.
//   - kUnavailable: the identity service could not vouch either way: unreachable, timed out,
//     answered 5xx, or refused the validator's own credentials (a configuration error, which must
//     not be blamed on the caller's token). Retry later; the API answers 503. The message names
//     the identity service's host:port and never contains a password or a token.
//   - kInternal: the identity service answered something this code does not understand (not
//     JSON, no token.user.id, an unreadable expires_at).
// - A success means the identity service vouched for the token at the time of the call. The
//   token stays valid at most until expires_at; a revocation may end it sooner.
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"

namespace clinker::ports {

// Longer tokens are refused as malformed without asking the identity service. Fernet tokens are
// about 200 bytes and JWS tokens under 1 KiB; 8 KiB is also the longest header line an HTTP server
// commonly accepts. The bound also caps what a cache of tokens costs per entry.
inline constexpr std::size_t kMaxTokenLength = 8192;

// What the identity service says about one token (Keystone v3 GET /v3/auth/tokens, "token").
struct TokenInfo {
  std::string user_id;  // Never empty in a TokenInfo a validator returns.
  std::string user_name;
  std::string user_domain_id;
  std::string user_domain_name;

  // The project the token is scoped to; all empty for a domain-, system- or unscoped token.
  std::string project_id;
  std::string project_name;
  std::string project_domain_id;
  std::string project_domain_name;

  // The domain a domain-scoped token is scoped to; empty otherwise.
  std::string domain_id;
  std::string domain_name;

  // True for a system-scoped token (token.system.all).
  bool system_scope = false;

  // Role names as the identity service spells them; compare with HasRole.
  std::vector<std::string> roles;

  // Keystone leaves is_admin_project out unless an admin project is configured; absent means
  // true, as keystonemiddleware reads it (X-Is-Admin-Project).
  bool is_admin_project = true;

  // Wall-clock times from the identity service's clock. issued_at is the epoch when absent.
  std::chrono::system_clock::time_point issued_at;
  std::chrono::system_clock::time_point expires_at;

  // Case-insensitive, as oslo.policy compares role names.
  bool HasRole(std::string_view role) const {
    auto lower_equal = [](std::string_view a, std::string_view b) {
      return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
             });
    };
    return std::any_of(roles.begin(), roles.end(), [&](const std::string& name) {
      return lower_equal(name, role);
    });
  }
};

// True when `token` can be sent as an HTTP header value and is not too long: 1 to
// kMaxTokenLength bytes of visible ASCII (no spaces, control characters or bytes above 0x7E).
// Anything else is malformed (and may not be echoed into a request to the identity service).
inline bool IsPlausibleToken(std::string_view token) {
  return !token.empty() && token.size() <= kMaxTokenLength &&
         std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

class TokenValidator {
 public:
  virtual ~TokenValidator() = default;

  // Asks the identity service about `token` (an X-Auth-Token or X-Service-Token value). Errors
  // as in the contract above.
  virtual Result<TokenInfo> Validate(std::string_view token) = 0;
};

}  // namespace clinker::ports
