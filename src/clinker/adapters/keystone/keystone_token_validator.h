// KeystoneTokenValidator: a ports::TokenValidator that asks Keystone v3 (HTTP/1.1, cpp-httplib),
// as keystonemiddleware's auth_token does.
//
// How: Clinker first gets a token of its own by password authentication (POST /v3/auth/tokens,
// scoped to its service project; Keystone returns the token in the X-Subject-Token header). It
// then validates each user token with GET /v3/auth/tokens?nocatalog, X-Auth-Token = its own
// token, X-Subject-Token = the token to check. 200: the token is good and the body describes it;
// 404: unknown, expired or revoked (kUnauthenticated). Expired tokens are never accepted (no
// allow_expired).
//
// The service token is kept until shortly before it expires (refresh margin, at most half its
// lifetime). Its remaining life is measured on the local monotonic clock from Keystone's own
// issued_at/expires_at difference, so a skewed local wall clock neither keeps a dead token nor
// renews a live one on every call. A validation answered 401 means Keystone no longer accepts
// the service token (revoked, Keystone restarted with new keys): it is renewed once and the
// validation retried; a second 401 is kUnavailable (keystonemiddleware: "Identity server rejected
// authorization", 503).
//
// Contract: that of ports::TokenValidator (identity.h), plus:
// - Thread safe. Validations run in parallel, each on an HTTP connection borrowed from a small
//   pool (an httplib::Client must not be used by two threads at once). Obtaining the service
//   token holds a mutex, so concurrent callers that need a new one wait for a single
//   authentication instead of each doing one.
// - Every request has a connect timeout and a read/write timeout (Options); a call makes at most
//   four requests (authentication, validation, re-authentication, validation).
// - kUnavailable when Keystone is unreachable, times out, answers 5xx, refuses the service
//   credentials (401 on the password authentication) or forbids validation (403: the service
//   user lacks the service or admin role). Messages name the Keystone host:port and the service
//   user, never the password or a token: excerpts of Keystone's replies are redacted.
// - kInternal for a reply this code does not understand.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/identity.h"

namespace httplib {
class Client;
}  // namespace httplib

namespace clinker::adapters::keystone {

struct KeystoneTokenValidatorOptions {
  // Keystone's identity endpoint: http(s)://host[:port][/path], e.g. http://keystone:5000/v3 or
  // http://controller/identity/v3. "/v3" is appended when the path does not end with it.
  std::string auth_url;
  // Clinker's own service credentials ([keystone_authtoken] in Cinder's cinder.conf).
  std::string username;
  std::string password;
  std::string user_domain_name = "Default";
  std::string project_name;
  std::string project_domain_name = "Default";
  // https only: a CA bundle to verify Keystone with (empty: the system's), or no verification.
  std::string ca_file;
  bool insecure = false;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds request_timeout{10000};
  // The service token is renewed this long before it expires (at most half its lifetime), so a
  // validation never goes out with a token that expires on the way.
  std::chrono::seconds service_token_refresh_margin{120};
};

class KeystoneTokenValidator final : public ports::TokenValidator {
 public:
  // kInvalidArgument when auth_url is not an http(s) URL or a credential is missing. Does not
  // contact Keystone (Clinker must start while Keystone is down). `clock` must outlive the
  // validator.
  static Result<std::unique_ptr<KeystoneTokenValidator>> Create(
      KeystoneTokenValidatorOptions options, const ports::Clock& clock);

  ~KeystoneTokenValidator() override;
  KeystoneTokenValidator(const KeystoneTokenValidator&) = delete;
  KeystoneTokenValidator& operator=(const KeystoneTokenValidator&) = delete;

  Result<ports::TokenInfo> Validate(std::string_view token) override;

  // "host:port" of Keystone, as error messages name it.
  const std::string& endpoint() const { return endpoint_; }

 private:
  struct Reply {
    int status = 0;
    std::string body;
    std::string subject_token;  // The X-Subject-Token reply header.
  };

  KeystoneTokenValidator(KeystoneTokenValidatorOptions options,
                         const ports::Clock& clock,
                         std::string base_url,
                         std::string endpoint,
                         std::string path_prefix);

  // A service token valid for at least the refresh margin. `stale` is a token Keystone has just
  // refused: it is renewed unless another caller already did so. Empty: renew only when due.
  Result<std::string> ServiceToken(const std::string& stale);
  // POST /v3/auth/tokens with the service credentials. Caller holds service_mutex_.
  Result<void> AuthenticateLocked();
  // One request on a pooled connection. kUnavailable for a transport failure only; every HTTP
  // status is returned to the caller.
  Result<Reply> Send(const char* method,
                     const std::string& path,
                     const std::string& service_token,
                     std::string_view subject_token,
                     const std::string& body);
  // The outcome of a validation reply (after any renewal): the token, or the error for its status.
  Result<ports::TokenInfo> ValidationAnswer(const Reply& reply,
                                            std::string_view service_token,
                                            std::string_view token) const;
  std::unique_ptr<httplib::Client> NewClient() const;
  // `text` without the password or the given tokens, cut to a readable length.
  std::string Redact(std::string text, std::string_view token_a, std::string_view token_b) const;

  const KeystoneTokenValidatorOptions options_;
  const ports::Clock& clock_;
  const std::string base_url_;     // scheme://host:port, for httplib::Client.
  const std::string endpoint_;     // host:port, for messages.
  const std::string path_prefix_;  // e.g. "/v3" or "/identity/v3".

  std::mutex service_mutex_;  // Guards the two members below; held while authenticating.
  std::string service_token_;
  std::chrono::steady_clock::time_point service_token_renew_at_;  // ports::Clock::MonoNow.

  std::mutex pool_mutex_;  // Guards pool_.
  std::vector<std::unique_ptr<httplib::Client>> pool_;
};

// Keystone's timestamps, e.g. "2026-12-05T14:00:00.000000Z": ISO 8601 in UTC, the fraction and
// the zone optional (no zone means UTC), a "+hh:mm"/"-hh:mm" offset accepted. kInternal otherwise.
Result<std::chrono::system_clock::time_point> ParseKeystoneTime(std::string_view text);

// The "token" object of a Keystone v3 token reply, as a TokenInfo. kInternal when it is not JSON,
// has no token.user.id or no readable token.expires_at.
Result<ports::TokenInfo> ParseKeystoneToken(std::string_view body);

}  // namespace clinker::adapters::keystone
