#include "clinker/services/metadata_rules.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <regex>

#include <openssl/evp.h>

#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using nlohmann::json;

// parameter_types.extra_specs' key pattern, as Cinder spells it in its messages.
constexpr std::string_view kKeyPattern = "^[a-zA-Z0-9-_:. /]{1,255}$";
constexpr std::size_t kMaxLength = 255;
// Lost compare-and-swaps a metadata change retries before answering 409.
constexpr int kChangeAttempts = 16;

bool KeyMatches(const std::string& key) {
  // std::regex reads "9-_" as a range, as Python's re does.
  static const std::regex kPattern("^[a-zA-Z0-9-_:. /]{1,255}$");
  return std::regex_match(key, kPattern);
}

HttpResponse BadRequest400(std::string_view message) {
  return Fault(400, message);
}

std::string PythonQuote(std::string_view text) {
  const bool has_single = text.find('\'') != std::string_view::npos;
  const bool has_double = text.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == quote) {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      std::array<char, 5> hex{};
      std::snprintf(hex.data(), hex.size(), "\\x%02x", byte);
      out += hex.data();
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

// Python's json.dumps (ensure_ascii, ", " and ": " separators) of a string.
std::string PythonJsonString(std::string_view text) {
  // nlohmann escapes as JSON requires; ensure_ascii escapes everything beyond ASCII too.
  std::string out = "\"";
  std::size_t i = 0;
  while (i < text.size()) {
    auto byte = static_cast<unsigned char>(text[i]);
    std::uint32_t code = byte;
    std::size_t length = 1;
    if (byte >= 0xf0 && i + 3 < text.size()) {
      code = ((byte & 0x07U) << 18) | ((static_cast<unsigned char>(text[i + 1]) & 0x3fU) << 12) |
             ((static_cast<unsigned char>(text[i + 2]) & 0x3fU) << 6) |
             (static_cast<unsigned char>(text[i + 3]) & 0x3fU);
      length = 4;
    } else if (byte >= 0xe0 && i + 2 < text.size()) {
      code = ((byte & 0x0fU) << 12) | ((static_cast<unsigned char>(text[i + 1]) & 0x3fU) << 6) |
             (static_cast<unsigned char>(text[i + 2]) & 0x3fU);
      length = 3;
    } else if (byte >= 0xc0 && i + 1 < text.size()) {
      code = ((byte & 0x1fU) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3fU);
      length = 2;
    }
    i += length;
    std::array<char, 13> hex{};
    if (code == '"') {
      out += "\\\"";
    } else if (code == '\\') {
      out += "\\\\";
    } else if (code == '\n') {
      out += "\\n";
    } else if (code == '\r') {
      out += "\\r";
    } else if (code == '\t') {
      out += "\\t";
    } else if (code == '\b') {
      out += "\\b";
    } else if (code == '\f') {
      out += "\\f";
    } else if (code < 0x20 || (code >= 0x7f && code < 0x10000)) {
      std::snprintf(hex.data(), hex.size(), "\\u%04x", static_cast<unsigned>(code));
      out += hex.data();
    } else if (code >= 0x10000) {
      std::uint32_t v = code - 0x10000;
      std::snprintf(hex.data(),
                    hex.size(),
                    "\\u%04x\\u%04x",
                    static_cast<unsigned>(0xd800 + (v >> 10)),
                    static_cast<unsigned>(0xdc00 + (v & 0x3ff)));
      out += hex.data();
    } else {
      out += static_cast<char>(code);
    }
  }
  out += '"';
  return out;
}

}  // namespace

std::string PythonRepr(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "None";
    case json::value_t::boolean:
      return value.get<bool>() ? "True" : "False";
    case json::value_t::string:
      return PythonQuote(value.get_ref<const std::string&>());
    case json::value_t::array: {
      std::string out = "[";
      bool first = true;
      for (const json& item : value) {
        out += first ? "" : ", ";
        out += PythonRepr(item);
        first = false;
      }
      return out + "]";
    }
    case json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        out += first ? "" : ", ";
        out += PythonQuote(key) + ": " + PythonRepr(item);
        first = false;
      }
      return out + "}";
    }
    default:
      return value.dump();
  }
}

std::string PythonStr(const json& value) {
  return value.is_string() ? value.get<std::string>() : PythonRepr(value);
}

std::string SchemaFieldError(std::string_view field, const json& value, std::string_view message) {
  return "Invalid input for field/attribute " + std::string(field) +
         ". Value: " + PythonStr(value) + ". " + std::string(message);
}

std::size_t CharacterCount(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xc0U) != 0x80U;
  }));
}

std::optional<std::string> MetadataBoundError(std::size_t items, std::size_t bytes) {
  if (items > kMaxMetadataItems) {
    return "Invalid metadata size: " + std::to_string(items) + " metadata items, more than " +
           std::to_string(kMaxMetadataItems) + ".";
  }
  if (bytes > kMaxMetadataBytes) {
    return "Invalid metadata size: " + std::to_string(bytes) +
           " bytes of metadata keys and values, more than " + std::to_string(kMaxMetadataBytes) +
           ".";
  }
  return std::nullopt;
}

std::optional<std::string> MetadataBoundError(const json& object) {
  if (!object.is_object()) {
    return std::nullopt;
  }
  // The count first: a body of 200,000 keys is refused before any of them is looked at.
  if (object.size() > kMaxMetadataItems) {
    return MetadataBoundError(object.size(), 0);
  }
  std::size_t bytes = 0;
  for (const auto& [key, item] : object.items()) {
    bytes += key.size() + (item.is_string() ? item.get_ref<const std::string&>().size() : 0);
  }
  return MetadataBoundError(object.size(), bytes);
}

namespace {

std::size_t MetadataBytes(const Metadata& metadata) {
  std::size_t bytes = 0;
  for (const auto& [key, value] : metadata) {
    bytes += key.size() + value.size();
  }
  return bytes;
}

}  // namespace

std::optional<Error> ExtraSpecsError(const json& value,
                                     std::string_view field,
                                     bool exactly_one,
                                     Metadata* out) {
  // jsonschema's order: type, patternProperties (each matching key's value), additionalProperties,
  // minProperties, maxProperties; the first error is the answer. Clinker's bound comes after the
  // type and before the per-key work.
  if (!value.is_object()) {
    return BadRequest(
        SchemaFieldError(field, value, PythonRepr(value) + " is not of type 'object'"));
  }
  if (auto too_big = MetadataBoundError(value)) {
    return Error{ErrorCode::kQuotaExceeded, std::move(*too_big)};
  }
  Metadata metadata;
  std::vector<std::string> unexpected;
  for (const auto& [key, item] : value.items()) {
    if (!KeyMatches(key)) {
      unexpected.push_back(key);
      continue;
    }
    if (!item.is_string()) {
      return BadRequest(SchemaFieldError(key, item, PythonRepr(item) + " is not of type 'string'"));
    }
    if (CharacterCount(item.get_ref<const std::string&>()) > kMaxLength) {
      return BadRequest(SchemaFieldError(key, item, PythonRepr(item) + " is too long"));
    }
    metadata[key] = item.get<std::string>();
  }
  if (!unexpected.empty()) {
    std::sort(unexpected.begin(), unexpected.end());
    std::string joined;
    for (const std::string& key : unexpected) {
      joined += (joined.empty() ? "" : ", ") + PythonRepr(key);
    }
    return BadRequest(SchemaFieldError(field,
                                       value,
                                       joined + (unexpected.size() == 1 ? " does" : " do") +
                                           " not match any of the regexes: '" +
                                           std::string(kKeyPattern) + "'"));
  }
  if (exactly_one && value.empty()) {
    return BadRequest(
        SchemaFieldError(field, value, PythonRepr(value) + " does not have enough properties"));
  }
  if (exactly_one && value.size() > 1) {
    return BadRequest(
        SchemaFieldError(field, value, PythonRepr(value) + " has too many properties"));
  }
  *out = std::move(metadata);
  return std::nullopt;
}

tl::expected<Metadata, HttpResponse> CheckExtraSpecs(const json& value,
                                                     std::string_view field,
                                                     bool exactly_one) {
  Metadata metadata;
  if (auto error = ExtraSpecsError(value, field, exactly_one, &metadata)) {
    return tl::unexpected(FaultFromError(*error));
  }
  return metadata;
}

tl::expected<Metadata, HttpResponse> CheckMetadataBody(const json& body,
                                                       std::string_view root,
                                                       bool exactly_one) {
  if (!body.is_object()) {
    return tl::unexpected(BadRequest400(PythonRepr(body) + " is not of type 'object'"));
  }
  const std::string key(root);
  if (!body.contains(key)) {
    return tl::unexpected(BadRequest400("'" + key + "' is a required property"));
  }
  auto metadata = CheckExtraSpecs(body[key], root, exactly_one);
  if (!metadata) {
    return metadata;
  }
  std::vector<std::string> extra;
  for (const auto& [name, item] : body.items()) {
    if (name != key) {
      extra.push_back(name);
    }
  }
  if (!extra.empty()) {
    std::string joined;
    for (const std::string& name : extra) {
      joined += (joined.empty() ? "" : ", ") + PythonRepr(name);
    }
    return tl::unexpected(BadRequest400("Additional properties are not allowed (" + joined +
                                        (extra.size() == 1 ? " was" : " were") + " unexpected)"));
  }
  return metadata;
}

tl::expected<json, HttpResponse> ParseRequestBody(const HttpRequest& request) {
  if (request.body.empty()) {
    return json(nullptr);
  }
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return tl::unexpected(BadRequest400("Malformed request body"));
  }
  return body;
}

tl::expected<json, HttpResponse> AssertValidBody(const json& body, std::string_view root) {
  const std::string key(root);
  if (!body.is_object() || !body.contains(key) || !body[key].is_object()) {
    return tl::unexpected(BadRequest400("Missing required element '" + key + "' in request body."));
  }
  return body[key];
}

tl::expected<Metadata, HttpResponse> CheckMetadataProperties(const json& metadata) {
  if (auto too_big = MetadataBoundError(metadata)) {
    return tl::unexpected(Fault(413, *too_big));
  }
  Metadata checked;
  for (const auto& [key, item] : metadata.items()) {
    // cinder.utils.check_string_length through oslo's strutils, then the size checks.
    if (key.empty()) {
      return tl::unexpected(BadRequest400(
          "Invalid metadata: Invalid input received: Metadata key:  has 0 characters, less "
          "than 1."));
    }
    if (!item.is_string()) {
      return tl::unexpected(
          BadRequest400("Invalid metadata: Invalid input received: Value for metadata key: " + key +
                        " is not a string or unicode"));
    }
    if (CharacterCount(key) > kMaxLength) {
      return tl::unexpected(Fault(
          413,
          "Invalid metadata size: Metadata property key " + key + " greater than 255 characters."));
    }
    if (CharacterCount(item.get_ref<const std::string&>()) > kMaxLength) {
      return tl::unexpected(Fault(413,
                                  "Invalid metadata size: Metadata property key " + key +
                                      " value greater than 255 characters."));
    }
    checked[key] = item.get<std::string>();
  }
  return checked;
}

std::string MetadataEtag(const Metadata& metadata) {
  std::string text = "{\"metadata\": {";
  bool first = true;
  for (const auto& [key, value] : metadata) {
    text += first ? "" : ", ";
    text += PythonJsonString(key) + ": " + PythonJsonString(value);
    first = false;
  }
  text += "}}";
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_md5(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0x0f];
  }
  return out;
}

bool IfMatchAdmits(std::string_view if_match, std::string_view etag) {
  std::size_t start = 0;
  bool any_tag = false;
  while (start <= if_match.size()) {
    std::size_t comma = if_match.find(',', start);
    if (comma == std::string_view::npos) {
      comma = if_match.size();
    }
    std::string_view tag = if_match.substr(start, comma - start);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) {
      tag.remove_prefix(1);
    }
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) {
      tag.remove_suffix(1);
    }
    start = comma + 1;
    if (tag.empty()) {
      continue;
    }
    any_tag = true;
    if (tag == "*") {
      return true;
    }
    if (tag.substr(0, 2) == "W/") {
      continue;  // A weak tag never matches If-Match (strong comparison).
    }
    if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"') {
      tag = tag.substr(1, tag.size() - 2);
    }
    if (tag == etag) {
      return true;
    }
  }
  return !any_tag;
}

tl::expected<ports::Row, HttpResponse> ChangeMetadataColumn(
    ports::StateStore& store,
    ports::Table table,
    std::string_view id,
    std::string_view column,
    const MetadataChange& change,
    const HttpResponse& not_found,
    const std::vector<ports::Expectation>& expected,
    const ports::Row& also) {
  for (int attempt = 0; attempt < kChangeAttempts; ++attempt) {
    auto row = store.Get(table, id);
    if (!row) {
      if (row.error().code == ErrorCode::kNotFound) {
        return tl::unexpected(not_found);
      }
      return tl::unexpected(FaultFromError(row.error()));
    }
    if (IntegerOr(*row, "deleted", 0) != 0) {
      return tl::unexpected(not_found);
    }
    const std::string before = TextOr(*row, std::string(column), "{}");
    Metadata current = MetadataFromJson(before);
    const std::size_t current_items = current.size();
    const std::size_t current_bytes = MetadataBytes(current);
    auto changed = change(*row, std::move(current));
    if (!changed) {
      return tl::unexpected(changed.error());
    }
    // Only growth is refused: a map stored before the bound can still shrink.
    if (const std::size_t bytes = MetadataBytes(*changed);
        changed->size() > current_items || bytes > current_bytes) {
      if (auto too_big = MetadataBoundError(changed->size(), bytes)) {
        return tl::unexpected(Fault(413, *too_big));
      }
    }
    ports::Row values = also;
    values[std::string(column)] = MetadataToJson(*changed);
    std::vector<ports::Expectation> conditions = expected;
    conditions.push_back(ports::Expectation::Equals("deleted", std::int64_t{0}));
    conditions.push_back(ports::Expectation::Equals(std::string(column), before));
    auto written = store.ConditionalUpdate(table, id, values, conditions, {});
    if (!written) {
      return tl::unexpected(FaultFromError(written.error()));
    }
    if (written->has_value()) {
      return std::move(**written);
    }
    // Another writer changed the row since it was read: read it again and redo the change.
  }
  return tl::unexpected(
      Fault(409, "The metadata of " + std::string(id) + " kept changing; retry the request"));
}

}  // namespace clinker::services
