// Matching a volume type's extra specs against a back-end's capabilities, as Cinder's
// CapabilitiesFilter does (cinder/scheduler/filters/capabilities_filter.py and extra_specs_ops).
//
// Which keys count: an unscoped key ("vendor_name") or one scoped "capabilities:"
// ("capabilities:storage_protocol") names a capability; a key with any other scope
// ("RESKEY:availability_zones", "volume_backend_name" is unscoped and counts) is for someone
// else and is skipped. A capability the back-end does not report fails the match.
//
// The requirement's operators, as Cinder's:
//   plain value   the capability's text equals it ("True"/"False" for booleans)
//   "<is> v"      boolean: the capability is true/false as v is ("True", "true", "1" ...)
//   "<in> v"      v is a substring of the capability's text
//   "<all-in> a b ..."  every word is among the capability's words (a list, as text)
//   "<or> a <or> b ..."  the capability's text equals one of them
//   "= n"         numeric: the capability is at least n
//   "== n", "!= n", ">= n", "<= n"  numeric comparisons
//   "s== v", "s!= v", "s>= v", "s<= v", "s< v", "s> v"  text comparisons
// A requirement whose operator wants a number the capability is not, fails.
//
// Pure: no I/O, thread safe.
#pragma once

#include <map>
#include <string>

namespace clinker::domain {

// The capabilities of one back-end, as text: booleans "True"/"False", numbers in decimal.
using Capabilities = std::map<std::string, std::string>;

// Whether `capabilities` meet every counted key of `extra_specs`; on false, *why (if given)
// names the first key that failed and the value asked.
bool ExtraSpecsMatch(const std::map<std::string, std::string>& extra_specs,
                     const Capabilities& capabilities,
                     std::string* why = nullptr);

// One requirement against one capability value (both as text).
bool RequirementMatches(const std::string& capability, const std::string& requirement);

}  // namespace clinker::domain
