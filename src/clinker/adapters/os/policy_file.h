// The policy file: rule name -> check string overrides for domain::Policy::Create, in Cinder's
// format (policy.yaml; a policy.json also parses, since JSON is YAML).
//
// Accepted: a mapping whose keys are rule names and whose values are strings. An empty file (or
// one with only comments) has no overrides, as in oslo.policy. Refused, each as an Error that
// names the file and, where there is one, the line:
// - not a mapping at the top level; not YAML at all;
// - a value that is not a string: a list (oslo's old list-of-lists form), a mapping, nothing
//   (`name:` alone, which oslo would read as "allow everyone"; write "" for that), or a plain
//   scalar YAML reads as a number, boolean or null (quote it);
// - the same name twice (YAML would silently keep the last);
// - a file larger than kMaxPolicyFileBytes.
// The check strings themselves are not parsed here; Policy::Create does that.
//
// Errors: kNotFound if the file does not exist; kInvalidArgument for everything else (unreadable,
// malformed): a configuration mistake, not worth a retry. Exceptions from yaml-cpp and the
// standard library stop at this boundary. Reads the file once and keeps no state: thread safe.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include "clinker/core/error.h"

namespace clinker::adapters {

inline constexpr std::size_t kMaxPolicyFileBytes = std::size_t{4} * 1024 * 1024;

using PolicyOverrides = std::map<std::string, std::string>;

Result<PolicyOverrides> ReadPolicyFile(const std::string& path);

// The same on text already read; `file_name` only names it in errors.
Result<PolicyOverrides> ParsePolicyText(std::string_view text, std::string_view file_name);

}  // namespace clinker::adapters
