// Random (version 4) UUIDs for resource, job and operation ids.
#pragma once

#include <string>
#include <string_view>

namespace clinker {

// Thread safe. Lower-case canonical form, e.g. "6a2b0c1e-....". Not deterministic by design:
// ids must be unique across processes and restarts, and unguessable (their 122 random bits come
// from the kernel's CSPRNG, getrandom(2), as Python's uuid4 behind Cinder's ids).
std::string NewUuid();

// True for the canonical 36-character form with lower or upper case hex digits.
bool IsUuid(std::string_view text);

}  // namespace clinker
