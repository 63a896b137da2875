// Cinder API microversions ("OpenStack-API-Version: volume 3.x"), negotiated per request.
#pragma once

#include <compare>
#include <optional>
#include <string>
#include <string_view>

namespace clinker::services {

struct Microversion {
  int major = 3;
  int minor = 0;

  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads defaulted <=> (llvm#46235).
  auto operator<=>(const Microversion&) const = default;
  std::string ToString() const;
};

// The range this server implements. Raised only when every change of the new microversion to
// the resources this server has (volumes, snapshots, attachments, services, clusters) is
// implemented; resources it does not have (groups, group snapshots, backups' newer fields ...)
// answer 404 at every microversion. docs/API.md lists what each microversion brings here.
inline constexpr Microversion kMinMicroversion{3, 0};
inline constexpr Microversion kMaxMicroversion{3, 70};

struct MicroversionRequest {
  enum class Outcome { kOk, kMalformed, kUnsupported };
  Outcome outcome = Outcome::kOk;
  Microversion version = kMinMicroversion;
};

// Parses the OpenStack-API-Version header value (may be empty). As in Cinder: the first
// comma-separated element naming "volume" counts; absent means 3.0; "latest" means the
// maximum; a malformed version is kMalformed (400); outside the range is kUnsupported (406).
MicroversionRequest NegotiateMicroversion(std::string_view header_value);

}  // namespace clinker::services
