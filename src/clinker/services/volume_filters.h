// The filters of a volume list (GET /volumes, /volumes/detail), as Cinder takes them.
//
// Cinder's resource filters for volumes (its default resource_filters.json): name, status,
// metadata, bootable, migration_status, availability_zone, group_id (3.10), size, created_at and
// updated_at (3.60, with gt/gte/lt/lte/eq/neq comparisons). A query key that is neither one of
// them nor a paging or sorting parameter is refused with 400 for a non-admin, as Cinder refuses
// it, and for an admin matches nothing (Cinder's database layer answers an empty list for an
// unknown column): a filter is never silently dropped, so a script that lists then deletes never
// gets more than it asked for. Filters from a later microversion than the request's are dropped,
// as Cinder drops them.
//
// Pure: no I/O. Thread safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/http_types.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/microversion.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

struct VolumeListFilters {
  // For the state store's query (besides the project scope, which the caller adds).
  std::vector<ports::Expectation> where;
  // What the store cannot match, checked on each row read.
  std::optional<std::map<std::string, std::string>> metadata;

  struct TimeComparison {
    std::string column;  // created_at or updated_at
    std::string op;      // gt, gte, lt, lte, eq, neq
    std::string time;    // As stored: "%Y-%m-%dT%H:%M:%S.%f", naive UTC.
  };

  std::vector<TimeComparison> times;
  // An admin's unknown filter: nothing matches.
  bool matches_nothing = false;

  // Whether rows must be checked one by one (then the store cannot paginate for the caller).
  bool NeedsRowCheck() const { return metadata.has_value() || !times.empty(); }

  bool Matches(const Volume& volume) const;
};

// kInvalidArgument (400) with Cinder's message for an unknown filter of a non-admin, a key that
// is not ASCII, or a value that cannot be a filter (size not an integer, bootable not a boolean,
// metadata not a JSON or Python dict of strings, a malformed time comparison).
Result<VolumeListFilters> ParseVolumeListFilters(const ports::HttpRequest& request,
                                                 Microversion version,
                                                 bool is_admin);

}  // namespace clinker::services
