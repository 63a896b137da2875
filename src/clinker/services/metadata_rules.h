// Cinder's rules for metadata (string to string maps) in request bodies, and the read-modify-write
// of a metadata column, shared by the volume metadata, snapshot metadata, image metadata and
// admin metadata (readonly, attached_mode) handlers.
//
// Two generations of rules, as Cinder has them:
// - JSON-schema checked (volume metadata, image metadata: parameter_types.extra_specs): keys of
//   1 to 255 characters of [a-zA-Z0-9-_:. /] (the class as Python reads it, so "9-_" is the
//   range '9'..'_'), values strings of at most 255 characters. Errors are 400 with jsonschema's
//   words, values printed as Python prints them (PythonStr / PythonRepr).
// - Checked in the volume API (snapshot metadata, check_metadata_properties): any key of at
//   least one character; 400 "Invalid metadata: ..." for an empty key or a value that is not a
//   string, 413 "Invalid metadata size: ..." for a key or value longer than 255 characters.
//
// Pure except ChangeMetadataColumn, which blocks on the StateStore. Thread safe.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"

namespace clinker::services {

using Metadata = std::map<std::string, std::string>;

// Clinker's bound on one metadata map (volume, snapshot, backup, image metadata). Cinder has
// none beyond its request size, but every listing carries each row's whole map, so an unbounded
// map makes /volumes/detail cost memory in proportion to what one client stored. A map of more
// items, or whose keys and values hold more UTF-8 bytes in all, is refused with 413 ("Invalid
// metadata size: ...", as Cinder words its own metadata size errors) when a request would
// create or grow it.
constexpr std::size_t kMaxMetadataItems = 256;
constexpr std::size_t kMaxMetadataBytes = 65536;

// The 413 message for a map over the bound, or nullopt. `items` and `bytes` are the map's item
// count and the UTF-8 bytes of its keys and values.
std::optional<std::string> MetadataBoundError(std::size_t items, std::size_t bytes);
// The same on a JSON object (counted as stored: keys and string values).
std::optional<std::string> MetadataBoundError(const nlohmann::json& object);

// Python's repr() and str() of a JSON value (None, True, 'text', {'k': 'v'}, [1, 2]), as
// jsonschema's messages print request values.
std::string PythonRepr(const nlohmann::json& value);
std::string PythonStr(const nlohmann::json& value);

// Cinder's wording of a schema error at `field`:
// "Invalid input for field/attribute <field>. Value: <str(value)>. <message>".
std::string SchemaFieldError(std::string_view field,
                             const nlohmann::json& value,
                             std::string_view message);

// Characters in a UTF-8 string (Python's len()).
std::size_t CharacterCount(std::string_view text);

// parameter_types.extra_specs at `field` (the enclosing property's name) within Clinker's bound
// (kInvalidArgument with jsonschema's message, or kQuotaExceeded with the bound's): nullopt and
// *out filled when the value passes.
std::optional<Error> ExtraSpecsError(const nlohmann::json& value,
                                     std::string_view field,
                                     bool exactly_one,
                                     Metadata* out);

// parameter_types.extra_specs at `field` (the enclosing property's name): a 400 fault (413 over
// Clinker's bound), or the map. `exactly_one`: the schema's minProperties / maxProperties 1 (a
// metadata item).
tl::expected<Metadata, HttpResponse> CheckExtraSpecs(const nlohmann::json& value,
                                                     std::string_view field,
                                                     bool exactly_one = false);

// The body `{"<root>": {...extra_specs...}}` with no other key (volume_metadata.create /
// update and volume_image_metadata.set_image_metadata's inner object): the map, or the 400
// Cinder gives. `body` is the parsed request body (null for an empty one).
tl::expected<Metadata, HttpResponse> CheckMetadataBody(const nlohmann::json& body,
                                                       std::string_view root,
                                                       bool exactly_one = false);

// The request body, parsed: null for an empty body (Cinder validates None), or the 400
// "Malformed request body" fault.
tl::expected<nlohmann::json, HttpResponse> ParseRequestBody(const HttpRequest& request);

// Snapshot metadata: wsgi's assert_valid_body (the body has `root` holding an object), else
// 400 "Missing required element '<root>' in request body.".
tl::expected<nlohmann::json, HttpResponse> AssertValidBody(const nlohmann::json& body,
                                                           std::string_view root);

// check_metadata_properties on the metadata to be stored (the merged map for an update): the
// map, or 400 / 413 as Cinder answers (413 also over Clinker's bound).
tl::expected<Metadata, HttpResponse> CheckMetadataProperties(const nlohmann::json& metadata);

// The ETag of a metadata listing (3.15+): the MD5 of {"metadata": {...}} as Python's
// json.dumps writes it, in hex, as Cinder's volume metadata index sends it.
std::string MetadataEtag(const Metadata& metadata);

// Whether an If-Match header admits `etag` (webob's rules): absent or "*" admits anything, else
// one of its comma-separated strong tags, quoted or not, must equal it.
bool IfMatchAdmits(std::string_view if_match, std::string_view etag);

// A read-modify-write of one metadata column (a JSON object of strings) of one live row:
// `change` gets the row as read and its current map, and gives the new map or the fault to
// answer (it checks the row's preconditions, e.g. a status, itself); the write is a
// compare-and-swap on the column's text and on `expected` (those preconditions again), retried
// from a fresh read when another writer got in between, so concurrent changes of different keys
// are never lost. A change that grows the map past Clinker's bound is refused (413). `also` are
// further column values written with it. The row after the write, or
// a fault: `not_found` (404) when the row is gone or deleted, 409 after too many lost races, 503
// for engine trouble.
using MetadataChange =
    std::function<tl::expected<Metadata, HttpResponse>(const ports::Row& row, Metadata current)>;
tl::expected<ports::Row, HttpResponse> ChangeMetadataColumn(
    ports::StateStore& store,
    ports::Table table,
    std::string_view id,
    std::string_view column,
    const MetadataChange& change,
    const HttpResponse& not_found,
    const std::vector<ports::Expectation>& expected = {},
    const ports::Row& also = {});

}  // namespace clinker::services
