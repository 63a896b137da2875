// Base64 (RFC 4648, standard alphabet, padded) for bytes that travel inside JSON: etcd's gateway
// keys and values, and Cinder's backup records (export_record / import_record).
#pragma once

#include <string>
#include <string_view>

#include "clinker/core/error.h"

namespace clinker {

// Thread safe, pure.
std::string Base64Encode(std::string_view bytes);
// kInvalidArgument for text that is not base64. Stops at the first '='.
Result<std::string> Base64Decode(std::string_view text);

}  // namespace clinker
