// Error and Result: how every layer reports an expected operational failure.
//
// Rule (from FoundationDB): one ErrorCode per distinct reaction of the caller. A bug is never an
// Error: it is a CLINKER_ASSERT. Exceptions never cross a layer boundary; adapters convert them.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace clinker {

enum class ErrorCode {
  kNotFound,         // The named thing does not exist. Do not retry.
  kInvalidArgument,  // The request itself is wrong. Do not retry.
  kConflict,         // A compare-and-swap lost or a unique key exists: re-read and decide again.
  kBusy,             // Held by someone else (a lock): retry later.
  kFenced,           // This node no longer proves ownership: stop acting on the resource.
  kUnavailable,      // Not applied (engine down, busy past the retry budget): retry.
  kOutcomeUnknown,   // Maybe applied: retry only an idempotent operation, otherwise re-read.
  kDriverFailed,     // The storage back-end refused or failed the operation.
  kInternal,         // An engine returned something this code does not understand.
  kUnauthenticated,  // Credentials missing, invalid, expired or revoked: do not retry with them.
  kQuotaExceeded,    // A usage counter would pass its limit; nothing changed. Do not retry.
};

std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code;
  std::string message;

  std::string ToString() const;
};

inline tl::unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

// tl-expected 1.0.0 predates its [[nodiscard]], so the wrapper adds it: a dropped Result fails
// the build under -Werror.
template <class T>
class [[nodiscard]] Result : public tl::expected<T, Error> {
 public:
  using tl::expected<T, Error>::expected;

  // The only sanctioned way to drop an error; `why` documents the decision at the call site.
  void IgnoreError(const char* /*why*/) const {}
};

}  // namespace clinker

// The temporaries and left-hand sides below are declarations, which parentheses would break.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define CLINKER_CONCAT_INNER_(a, b) a##b
#define CLINKER_CONCAT_(a, b) CLINKER_CONCAT_INNER_(a, b)

// Propagates the error of a Result<...> expression. The temporary is named per line so the macro
// can nest (e.g. inside a lambda within another use) without shadowing.
#define CLINKER_RETURN_IF_ERROR(expr) \
  CLINKER_RETURN_IF_ERROR_IMPL_(CLINKER_CONCAT_(clinker_result_, __LINE__), expr)
#define CLINKER_RETURN_IF_ERROR_IMPL_(tmp, expr)       \
  do {                                                 \
    auto tmp = (expr);                                 \
    if (!tmp) {                                        \
      return ::tl::unexpected(std::move(tmp).error()); \
    }                                                  \
  } while (false)

// Declares `lhs` from a Result<T> expression, or propagates its error.
#define CLINKER_ASSIGN_OR_RETURN(lhs, expr) \
  CLINKER_ASSIGN_OR_RETURN_IMPL_(CLINKER_CONCAT_(clinker_tmp_, __LINE__), lhs, expr)
#define CLINKER_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp) {                                          \
    return ::tl::unexpected(std::move(tmp).error());   \
  }                                                    \
  lhs = std::move(*tmp)
// NOLINTEND(bugprone-macro-parentheses)
