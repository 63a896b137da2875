#include "clinker/services/transfers_api.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/metadata_rules.h"
#include "clinker/services/quotas_api.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using domain::SnapshotStatus;
using domain::VolumeStatus;
using nlohmann::json;
using ports::Expectation;

constexpr std::string_view kCollection = "os-volume-transfer";

std::string TransferNotFound(std::string_view id) {
  return "Transfer " + std::string(id) + " could not be found.";
}

std::string VolumeNotFound(std::string_view id) {
  return "Volume " + std::string(id) + " could not be found.";
}

// Links name os-volume-transfer whichever URL the request used: Cinder's view builder has one
// collection name for both controllers.
json Links(const RequestContext& context, const std::string& id) {
  return json::array({
      {{"href", context.link_base + "/" + std::string(kCollection) + "/" + id}, {"rel", "self"}},
      {{"href", context.bookmark_base + "/" + std::string(kCollection) + "/" + id},
       {"rel", "bookmark"}},
  });
}

// Cinder's _get_random_string: hex digits only, so the recipient can type the key.
Result<std::string> RandomHex(std::size_t length) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::vector<unsigned char> bytes((length + 1) / 2);
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return MakeError(ErrorCode::kInternal, "no random bytes for a transfer key");
  }
  std::string out;
  for (unsigned char byte : bytes) {
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0x0f]);
  }
  out.resize(length);
  return out;
}

// parameter_types.boolean: a JSON boolean or one of oslo's boolean strings.
std::optional<bool> SchemaBoolean(const json& value) {
  if (value.is_boolean()) {
    return value.get<bool>();
  }
  if (!value.is_string()) {
    return std::nullopt;
  }
  std::string text = value.get<std::string>();
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  static constexpr std::array<std::string_view, 5> kTrue = {"true", "1", "on", "yes", "y"};
  static constexpr std::array<std::string_view, 5> kFalse = {"false", "0", "off", "no", "n"};
  if (std::find(kTrue.begin(), kTrue.end(), text) != kTrue.end()) {
    return true;
  }
  if (std::find(kFalse.begin(), kFalse.end(), text) != kFalse.end()) {
    return false;
  }
  return std::nullopt;
}

std::string Trim(const std::string& text) {
  std::size_t begin = text.find_first_not_of(" \t\n\r\f\v");
  if (begin == std::string::npos) {
    return "";
  }
  std::size_t end = text.find_last_not_of(" \t\n\r\f\v");
  return text.substr(begin, end - begin + 1);
}

// The live transfer if the caller may see it (its project's, any for an admin); else 404, the
// same for another project's transfer as for one that does not exist.
tl::expected<ports::Row, HttpResponse> Visible(ports::StateStore& store,
                                               const RequestContext& context,
                                               std::string_view transfer_id,
                                               bool any_project) {
  auto row = store.Get(ports::Table::kTransfers, transfer_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound
                              ? Fault(404, TransferNotFound(transfer_id))
                              : FaultFromError(row.error()));
  }
  if (IntegerOr(*row, "deleted", 0) != 0 ||
      (!any_project && !CanSee(context, TextOr(*row, "source_project_id", "")))) {
    return tl::unexpected(Fault(404, TransferNotFound(transfer_id)));
  }
  return *row;
}

std::optional<std::string> SortColumn(std::string_view key) {
  static const std::map<std::string_view, std::string_view> kColumns = {
      {"id", "id"},
      {"name", "display_name"},
      {"display_name", "display_name"},
      {"volume_id", "volume_id"},
      {"created_at", "created_at"},
      {"updated_at", "updated_at"},
      {"source_project_id", "source_project_id"},
      {"destination_project_id", "destination_project_id"},
  };
  auto it = kColumns.find(key);
  if (it == kColumns.end()) {
    return std::nullopt;
  }
  return std::string(it->second);
}

// A list filter (any query parameter the list does not consume) as Cinder's DB layer applies it:
// equality on a column of the transfers model. A key that is no column of the model makes
// Cinder's query empty (is_valid_model_filters), so it does here too: nullopt.
std::optional<Expectation> FilterOf(const std::string& key, const std::string& value) {
  static const std::map<std::string_view, std::string_view> kTextColumns = {
      {"id", "id"},
      {"volume_id", "volume_id"},
      {"display_name", "display_name"},
      {"salt", "salt"},
      {"crypt_hash", "crypt_hash"},
      {"source_project_id", "source_project_id"},
      {"destination_project_id", "destination_project_id"},
      {"created_at", "created_at"},
      {"updated_at", "updated_at"},
      // Cinder filters project_id through the volume, whose project is the transfer's source
      // while the transfer is live.
      {"project_id", "source_project_id"},
  };
  if (auto it = kTextColumns.find(key); it != kTextColumns.end()) {
    return Expectation::Equals(std::string(it->second), value);
  }
  if (key == "no_snapshots" || key == "accepted") {
    return Expectation::Equals(key, std::int64_t{TruthyParameter(value) ? 1 : 0});
  }
  return std::nullopt;
}

}  // namespace

TransfersApi::TransfersApi(ports::StateStore& store,
                           const ports::Clock& clock,
                           TransfersApiOptions options)
    : store_(store), clock_(clock), options_(options), quotas_(store, options_.quota) {}

std::string TransfersApi::CryptHash(std::string_view salt, std::string_view auth_key) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  HMAC(EVP_sha1(),
       salt.data(),
       static_cast<int>(salt.size()),
       reinterpret_cast<const unsigned char*>(auth_key.data()),
       auth_key.size(),
       digest.data(),
       &length);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kDigits[digest[i] >> 4]);
    out.push_back(kDigits[digest[i] & 0x0f]);
  }
  return out;
}

// Cinder's views: summary (id, volume_id, name, links); detail adds created_at, then
// no_snapshots from 3.55 and the transfer's history from 3.57.
json TransfersApi::View(const ports::Row& row, const RequestContext& context, bool detail) const {
  const std::string id = TextOr(row, "id", "");
  json view = {{"id", id},
               {"volume_id", TextOr(row, "volume_id", "")},
               {"name", NullOr(OptionalText(row, "display_name"))},
               {"links", Links(context, id)}};
  if (!detail) {
    return view;
  }
  view["created_at"] = TextOr(row, "created_at", "");
  if (context.version >= Microversion{3, 55}) {
    view["no_snapshots"] = IntegerOr(row, "no_snapshots", 0) != 0;
  }
  if (context.version >= Microversion{3, 57}) {
    view["source_project_id"] = TextOr(row, "source_project_id", "");
    view["destination_project_id"] = NullOr(OptionalText(row, "destination_project_id"));
    view["accepted"] = IntegerOr(row, "accepted", 0) != 0;
  }
  return view;
}

HttpResponse TransfersApi::Create(const RequestContext& context,
                                  const HttpRequest& request,
                                  TransferRoute route) {
  auto body = ParseBody(request, "transfer");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  // Cinder's request schemas: no_snapshots only on /volume-transfers from 3.55.
  const bool takes_no_snapshots =
      route == TransferRoute::kV3 && context.version >= Microversion{3, 55};
  for (const auto& [key, value] : spec.items()) {
    if (key != "volume_id" && key != "name" && !(key == "no_snapshots" && takes_no_snapshots)) {
      return Fault(400,
                   "Invalid input for field/attribute transfer. Value: " + spec.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
  }
  if (!spec.contains("volume_id")) {
    return Fault(400,
                 "Invalid input for field/attribute transfer. Value: " + spec.dump() +
                     ". 'volume_id' is a required property");
  }
  if (auto checked = CheckUuidField(spec, "volume_id", UuidField::kUuid); !checked) {
    return FaultFromError(checked.error());
  }
  std::optional<std::string> name;
  if (spec.contains("name") && !spec["name"].is_null()) {
    if (!spec["name"].is_string()) {
      return Fault(400,
                   "Invalid input for field/attribute name. Value: " + spec["name"].dump() +
                       " is not valid under any of the given schemas");
    }
    std::string trimmed = Trim(spec["name"].get<std::string>());
    if (trimmed.empty()) {
      return Fault(400, "Invalid input for field/attribute name. The 'name' can not be empty.");
    }
    if (CharacterCount(trimmed) > kMaxTextLength) {
      return Fault(400,
                   "Invalid input for field/attribute name. The 'name' can not be greater than "
                   "255 characters.");
    }
    name = std::move(trimmed);
  }
  bool no_snapshots = false;
  if (spec.contains("no_snapshots")) {
    std::optional<bool> parsed = SchemaBoolean(spec["no_snapshots"]);
    if (!parsed) {
      return Fault(400,
                   "Invalid input for field/attribute no_snapshots. Value: " +
                       spec["no_snapshots"].dump() + " is not a valid boolean");
    }
    no_snapshots = *parsed;
  }

  const std::string volume_id = spec["volume_id"].get<std::string>();
  auto volume_row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!volume_row) {
    return volume_row.error().code == ErrorCode::kNotFound ? Fault(404, VolumeNotFound(volume_id))
                                                           : FaultFromError(volume_row.error());
  }
  auto volume = VolumeFromRow(*volume_row);
  if (!volume) {
    return FaultFromError(volume.error());
  }
  if (volume->deleted || !CanSee(context, volume->project_id)) {
    return Fault(404, VolumeNotFound(volume_id));
  }
  if (volume->status != VolumeStatus::kAvailable) {
    return Fault(400, "Invalid volume: status must be available");
  }
  if (!no_snapshots) {
    ports::ListQuery query;
    query.filters = {Expectation::Equals("volume_id", volume_id)};
    auto snapshots = store_.List(ports::Table::kSnapshots, query);
    if (!snapshots) {
      return FaultFromError(snapshots.error());
    }
    for (const ports::Row& row : *snapshots) {
      if (TextOr(row, "status", "") != domain::StoredName(SnapshotStatus::kAvailable)) {
        return Fault(
            400,
            "Invalid snapshot: snapshot: " + TextOr(row, "id", "") + " status must be available");
      }
    }
  }
  auto salt = RandomHex(options_.salt_length);
  auto auth_key = RandomHex(options_.key_length);
  if (!salt || !auth_key) {
    return FaultFromError(!salt ? salt.error() : auth_key.error());
  }
  const std::string id = NewUuid();
  const std::string now = FormatTimestamp(clock_.WallNow());

  // The volume first (Cinder's transfer_create does the same in one transaction): only the
  // caller whose swap wins may insert a transfer, so a volume never has two live transfers.
  auto offered = store_.ConditionalUpdate(
      ports::Table::kVolumes,
      volume_id,
      {{"status", Status(VolumeStatus::kAwaitingTransfer)}, {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::Equals("project_id", volume->project_id),
       Expectation::Equals("status", Status(VolumeStatus::kAvailable))},
      {});
  if (!offered) {
    return FaultFromError(offered.error());
  }
  if (!offered->has_value()) {
    return Fault(400,
                 "Invalid volume: Transfer " + id + ": Volume id " + volume_id +
                     " expected in available state.");
  }
  ports::Row row = {{"id", id},
                    {"volume_id", volume_id},
                    {"display_name", TextOrNull(name)},
                    {"salt", *salt},
                    {"crypt_hash", CryptHash(*salt, *auth_key)},
                    {"no_snapshots", std::int64_t{no_snapshots ? 1 : 0}},
                    {"source_project_id", volume->project_id},
                    {"accepted", std::int64_t{0}},
                    {"created_at", now}};
  if (auto inserted = store_.Insert(ports::Table::kTransfers, row); !inserted) {
    auto back = store_.ConditionalUpdate(
        ports::Table::kVolumes,
        volume_id,
        {{"status", Status(VolumeStatus::kAvailable)}},
        {Expectation::Equals("status", Status(VolumeStatus::kAwaitingTransfer))},
        {});
    back.IgnoreError("the client is told why; an admin reset fixes a volume left awaiting");
    return FaultFromError(inserted.error());
  }
  log::Info("transfer.created",
            {{"transfer_id", id}, {"volume_id", volume_id}, {"project_id", volume->project_id}});
  json view = View(row, context, true);
  view["auth_key"] = *auth_key;
  return JsonResponse(202, {{"transfer", view}});
}

HttpResponse TransfersApi::Show(const RequestContext& context, std::string_view transfer_id) {
  auto row = Visible(store_, context, transfer_id, false);
  if (!row) {
    return row.error();
  }
  return JsonResponse(200, {{"transfer", View(*row, context, true)}});
}

HttpResponse TransfersApi::List(const RequestContext& context,
                                const HttpRequest& request,
                                bool detail,
                                TransferRoute route) {
  // Pagination and sorting are the v3 controller's from 3.59; before, and on the extension's URL,
  // Cinder lists in creation order and hands every query parameter to the DB as a filter.
  const bool paginated = route == TransferRoute::kV3 && context.version >= Microversion{3, 59};
  static constexpr std::array<std::string_view, 6> kPaging = {
      "marker", "limit", "offset", "sort", "sort_key", "sort_dir"};
  std::string value;
  const bool all_tenants =
      context.is_admin && request.QueryValue("all_tenants", &value) && TruthyParameter(value);
  ports::ListQuery query;
  if (!all_tenants) {
    query.filters.push_back(Expectation::Equals("source_project_id", context.project_id));
  }
  bool matches_nothing = false;
  for (const auto& [key, text] : request.query) {
    if (key == "all_tenants" ||
        (paginated && std::find(kPaging.begin(), kPaging.end(), key) != kPaging.end())) {
      continue;
    }
    std::optional<Expectation> filter = FilterOf(key == "name" ? "display_name" : key, text);
    if (!filter) {
      matches_nothing = true;
      continue;
    }
    query.filters.push_back(std::move(*filter));
  }
  std::int64_t limit = options_.max_limit;
  std::int64_t offset = 0;
  for (std::string_view name : {std::string_view("limit"), std::string_view("offset")}) {
    if (request.QueryValue(name, &value)) {
      auto parsed = ParseNonNegative(name, value);
      if (!parsed) {
        return FaultFromError(parsed.error());
      }
      if (name == "limit") {
        limit = *parsed == 0 ? options_.max_limit : std::min(*parsed, options_.max_limit);
      } else {
        offset = *parsed;
      }
    }
  }
  std::string marker;
  if (paginated) {
    auto sort = ParseSort(request, SortColumn);
    if (!sort) {
      return FaultFromError(sort.error());
    }
    query.sort = *sort;
    if (request.QueryValue("marker", &marker)) {
      query.marker_id = marker;
    }
  } else {
    query.sort = {ports::SortKey{"created_at", true}, ports::SortKey{"id", true}};
  }
  std::vector<ports::Row> rows;
  if (!matches_nothing) {
    auto listed = store_.List(ports::Table::kTransfers, query);
    if (!listed) {
      if (listed.error().code == ErrorCode::kNotFound) {
        return Fault(404, TransferNotFound(marker));
      }
      return FaultFromError(listed.error());
    }
    rows = std::move(*listed);
  }
  // Cinder counts the whole list, then slices it (common.limited): a next link when the page is
  // full (the list had at least `limit` transfers).
  const auto total = static_cast<std::int64_t>(rows.size());
  const auto begin = std::min(offset, total);
  const auto end = std::min(begin + limit, total);
  json items = json::array();
  for (std::int64_t i = begin; i < end; ++i) {
    items.push_back(View(rows[static_cast<std::size_t>(i)], context, detail));
  }
  json body = {{"transfers", items}};
  if (end > begin && limit <= total) {
    body["transfers_links"] =
        json::array({{{"rel", "next"},
                      {"href",
                       NextLink(context,
                                request,
                                kCollection,
                                TextOr(rows[static_cast<std::size_t>(end - 1)], "id", ""))}}});
  }
  return JsonResponse(200, body);
}

HttpResponse TransfersApi::Delete(const RequestContext& context, std::string_view transfer_id) {
  auto row = Visible(store_, context, transfer_id, false);
  if (!row) {
    return row.error();
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  // The transfer first: of a delete and an accept (or two deletes) racing, one claims it.
  auto deleted = store_.ConditionalUpdate(ports::Table::kTransfers,
                                          transfer_id,
                                          {{"deleted", std::int64_t{1}}, {"deleted_at", now}},
                                          {Expectation::Equals("deleted", std::int64_t{0})},
                                          {});
  if (!deleted) {
    return FaultFromError(deleted.error());
  }
  if (!deleted->has_value()) {
    return Fault(404, TransferNotFound(transfer_id));
  }
  const std::string volume_id = TextOr(*row, "volume_id", "");
  auto released = store_.ConditionalUpdate(
      ports::Table::kVolumes,
      volume_id,
      {{"status", Status(VolumeStatus::kAvailable)}, {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::Equals("project_id", TextOr(*row, "source_project_id", "")),
       Expectation::Equals("status", Status(VolumeStatus::kAwaitingTransfer))},
      {});
  if (!released || !released->has_value()) {
    // As Cinder: the transfer is gone all the same; a volume moved out of awaiting-transfer by
    // an admin keeps the status it was given.
    log::Warn("transfer.volume_not_awaiting",
              {{"transfer_id", std::string(transfer_id)}, {"volume_id", volume_id}});
  }
  log::Info("transfer.deleted",
            {{"transfer_id", std::string(transfer_id)}, {"volume_id", volume_id}});
  return Accepted();
}

HttpResponse TransfersApi::Accept(const RequestContext& context,
                                  const HttpRequest& request,
                                  std::string_view transfer_id) {
  auto body = ParseBody(request, "accept");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  for (const auto& [key, value] : spec.items()) {
    if (key != "auth_key") {
      return Fault(400,
                   "Invalid input for field/attribute accept. Value: " + spec.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
  }
  if (!spec.contains("auth_key")) {
    return Fault(400,
                 "Invalid input for field/attribute accept. Value: " + spec.dump() +
                     ". 'auth_key' is a required property");
  }
  const json& key_value = spec["auth_key"];
  std::string auth_key;
  if (key_value.is_string()) {
    auth_key = key_value.get<std::string>();
  } else if (key_value.is_number_integer()) {
    auth_key = key_value.dump();  // Cinder hashes str(auth_key).
  } else {
    return Fault(400,
                 "Invalid input for field/attribute auth_key. Value: " + key_value.dump() +
                     " is not of type 'string', 'integer'");
  }

  // Any project's transfer: the key authorizes the taker.
  auto row = Visible(store_, context, transfer_id, true);
  if (!row) {
    return row.error();
  }
  if (CryptHash(TextOr(*row, "salt", ""), auth_key) != TextOr(*row, "crypt_hash", "")) {
    log::Info("transfer.bad_auth_key",
              {{"transfer_id", std::string(transfer_id)}, {"by", context.user_id}});
    return Fault(400,
                 "Invalid auth key: Attempt to transfer " + std::string(transfer_id) +
                     " with invalid auth key.");
  }
  const std::string volume_id = TextOr(*row, "volume_id", "");
  const std::string source_project = TextOr(*row, "source_project_id", "");
  const bool no_snapshots = IntegerOr(*row, "no_snapshots", 0) != 0;
  auto volume_row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!volume_row) {
    return volume_row.error().code == ErrorCode::kNotFound ? Fault(404, VolumeNotFound(volume_id))
                                                           : FaultFromError(volume_row.error());
  }
  const std::string old_user = TextOr(*volume_row, "user_id", "");
  const std::string now = FormatTimestamp(clock_.WallNow());

  // 1. Claim the transfer. Exactly one of racing accepts and deletes gets past this swap; the
  //    others find the transfer gone, as Cinder's transfer_get would (404).
  auto claimed = store_.ConditionalUpdate(ports::Table::kTransfers,
                                          transfer_id,
                                          {{"deleted", std::int64_t{1}},
                                           {"deleted_at", now},
                                           {"accepted", std::int64_t{1}},
                                           {"destination_project_id", context.project_id}},
                                          {Expectation::Equals("deleted", std::int64_t{0}),
                                           Expectation::Equals("accepted", std::int64_t{0})},
                                          {});
  if (!claimed) {
    return FaultFromError(claimed.error());
  }
  if (!claimed->has_value()) {
    return Fault(404, TransferNotFound(transfer_id));
  }
  // Gives the transfer back if a later step fails: it is live again, as before the accept.
  auto release_claim = [&] {
    auto released = store_.ConditionalUpdate(
        ports::Table::kTransfers,
        transfer_id,
        {{"deleted", std::int64_t{0}},
         {"deleted_at", std::monostate{}},
         {"accepted", std::int64_t{0}},
         {"destination_project_id", std::monostate{}}},
        {Expectation::Equals("accepted", std::int64_t{1}),
         Expectation::Equals("destination_project_id", context.project_id)},
        {});
    released.IgnoreError("the client is told why; the transfer stays accepted otherwise");
  };

  // Quotas: what the volume and its snapshots count moves with each of them, in the write that
  // moves it; the taker's limits apply.
  auto taker_limits = quotas_.ProjectLimits(context.project_id);
  if (!taker_limits) {
    release_claim();
    return FaultFromError(taker_limits.error());
  }
  // From the giver to the taker (or back, with `to_taker` false: no limits then).
  auto move_usage = [&](const UsageAmounts& amounts, bool to_taker) {
    const std::string& from = to_taker ? source_project : context.project_id;
    const std::string& to = to_taker ? context.project_id : source_project;
    std::vector<ports::UsageChange> changes = QuotaService::Release(from, amounts);
    std::vector<ports::UsageChange> charged =
        to_taker ? QuotaService::ChargeWithLimits(*taker_limits, to, amounts)
                 : QuotaService::ChargeWithLimits({}, to, amounts);
    changes.insert(changes.end(), charged.begin(), charged.end());
    return changes;
  };
  const std::int64_t volume_size = IntegerOr(*volume_row, "size_gib", 0);
  const std::optional<std::string> volume_type = OptionalText(*volume_row, "volume_type_id");
  auto volume_usage = quotas_.UsageOfVolume(volume_size, volume_type);
  if (!volume_usage) {
    release_claim();
    return FaultFromError(volume_usage.error());
  }

  // 2. Move the volume to the caller's project, only from awaiting-transfer in its old project.
  auto moved = store_.ConditionalUpdateWithUsage(
      ports::Table::kVolumes,
      volume_id,
      {{"status", Status(VolumeStatus::kAvailable)},
       {"project_id", context.project_id},
       {"user_id", context.user_id},
       {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::Equals("project_id", source_project),
       Expectation::Equals("status", Status(VolumeStatus::kAwaitingTransfer)),
       Expectation::Equals("size_gib", volume_size),
       Expectation::IsNull("pending_size_gib"),
       volume_type ? Expectation::Equals("volume_type_id", *volume_type)
                   : Expectation::IsNull("volume_type_id")},
      {},
      move_usage(*volume_usage, true));
  if (!moved || !moved->has_value()) {
    release_claim();
    if (!moved) {
      return QuotaFault(moved.error());
    }
    return Fault(400,
                 "Invalid volume: Transfer " + std::string(transfer_id) + ": Volume id " +
                     volume_id + " expected in awaiting-transfer state.");
  }

  // 3. Its snapshots (3.55's no_snapshots leaves them with the giver), each only if available.
  if (!no_snapshots) {
    ports::ListQuery query;
    query.filters = {Expectation::Equals("volume_id", volume_id),
                     Expectation::Equals("project_id", source_project)};
    auto snapshots = store_.List(ports::Table::kSnapshots, query);

    struct MovedSnapshot {
      std::string id;
      std::string user;
      UsageAmounts usage;
    };

    std::vector<MovedSnapshot> moved_snapshots;
    std::optional<HttpResponse> failure;
    if (!snapshots) {
      failure = FaultFromError(snapshots.error());
    } else {
      for (const ports::Row& snapshot : *snapshots) {
        const std::string snapshot_id = TextOr(snapshot, "id", "");
        const std::int64_t snapshot_size = IntegerOr(snapshot, "size_gib", 0);
        auto snapshot_usage = quotas_.UsageOfSnapshot(snapshot_size, volume_id);
        if (!snapshot_usage) {
          failure = FaultFromError(snapshot_usage.error());
          break;
        }
        auto given = store_.ConditionalUpdateWithUsage(
            ports::Table::kSnapshots,
            snapshot_id,
            {{"project_id", context.project_id}, {"user_id", context.user_id}, {"updated_at", now}},
            {Expectation::Equals("deleted", std::int64_t{0}),
             Expectation::Equals("project_id", source_project),
             Expectation::Equals("status", Status(SnapshotStatus::kAvailable)),
             Expectation::Equals("size_gib", snapshot_size)},
            {},
            move_usage(*snapshot_usage, true));
        if (!given || !given->has_value()) {
          failure = !given ? QuotaFault(given.error())
                           : Fault(400,
                                   "Invalid snapshot: Transfer " + std::string(transfer_id) +
                                       ": Snapshot " + snapshot_id +
                                       " is not in the expected available state.");
          break;
        }
        moved_snapshots.push_back(
            MovedSnapshot{snapshot_id, TextOr(snapshot, "user_id", ""), *snapshot_usage});
      }
    }
    if (failure) {
      // Cinder's _roll_back_transferred_volume_and_snapshots, then the transfer is live again.
      for (const MovedSnapshot& snapshot : moved_snapshots) {
        auto back = store_.ConditionalUpdateWithUsage(
            ports::Table::kSnapshots,
            snapshot.id,
            {{"project_id", source_project}, {"user_id", snapshot.user}},
            {Expectation::Equals("project_id", context.project_id),
             Expectation::Equals("deleted", std::int64_t{0})},
            {},
            move_usage(snapshot.usage, false));
        back.IgnoreError("rolled back as far as possible; logged below");
      }
      auto back = store_.ConditionalUpdateWithUsage(
          ports::Table::kVolumes,
          volume_id,
          {{"status", Status(VolumeStatus::kAwaitingTransfer)},
           {"project_id", source_project},
           {"user_id", old_user}},
          {Expectation::Equals("project_id", context.project_id),
           Expectation::Equals("status", Status(VolumeStatus::kAvailable)),
           Expectation::Equals("deleted", std::int64_t{0})},
          {},
          move_usage(*volume_usage, false));
      back.IgnoreError("rolled back as far as possible; logged below");
      release_claim();
      log::Warn("transfer.accept_rolled_back",
                {{"transfer_id", std::string(transfer_id)}, {"volume_id", volume_id}});
      return std::move(*failure);
    }
  }
  log::Info("transfer.accepted",
            {{"transfer_id", std::string(transfer_id)},
             {"volume_id", volume_id},
             {"from_project", source_project},
             {"to_project", context.project_id}});
  return JsonResponse(202, {{"transfer", View(*row, context, false)}});
}

}  // namespace clinker::services
