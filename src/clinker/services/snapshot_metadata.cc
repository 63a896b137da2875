// SnapshotsApi's /snapshots/{id}/metadata sub-resource, as Cinder's snapshot metadata controller
// answers: the body's shape is checked first (assert_valid_body), then the snapshot is looked
// up, then the metadata to be stored (check_metadata_properties: 400, or 413 for a key or value
// over 255 characters).
#include "clinker/services/metadata_rules.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/snapshots_api.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using nlohmann::json;

HttpResponse NotFoundSnapshot(std::string_view id) {
  return Fault(404, "Snapshot " + std::string(id) + " could not be found.");
}

HttpResponse NoSuchKey(std::string_view id, std::string_view key) {
  return Fault(
      404, "Snapshot " + std::string(id) + " has no metadata with key " + std::string(key) + ".");
}

tl::expected<Snapshot, HttpResponse> VisibleSnapshot(ports::StateStore& store,
                                                     const RequestContext& context,
                                                     std::string_view snapshot_id) {
  auto row = store.Get(ports::Table::kSnapshots, snapshot_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound ? NotFoundSnapshot(snapshot_id)
                                                                   : FaultFromError(row.error()));
  }
  auto snapshot = SnapshotFromRow(*row);
  if (!snapshot) {
    return tl::unexpected(FaultFromError(snapshot.error()));
  }
  if (snapshot->deleted || !CanSee(context, snapshot->project_id)) {
    return tl::unexpected(NotFoundSnapshot(snapshot_id));
  }
  return *snapshot;
}

// Stores `incoming` over (merge) or instead of (replace) the snapshot's metadata, checking what
// would be stored: the stored map, or the fault.
tl::expected<Metadata, HttpResponse> StoreSnapshotMetadata(ports::StateStore& store,
                                                           const Snapshot& snapshot,
                                                           const json& incoming,
                                                           bool replace) {
  Metadata stored;
  auto written = ChangeMetadataColumn(
      store,
      ports::Table::kSnapshots,
      snapshot.id,
      "metadata",
      [&](const ports::Row&, const Metadata& current) -> tl::expected<Metadata, HttpResponse> {
        json merged = replace ? json::object() : json(current);
        for (const auto& [key, value] : incoming.items()) {
          merged[key] = value;
        }
        auto checked = CheckMetadataProperties(merged);
        if (!checked) {
          return tl::unexpected(checked.error());
        }
        stored = *checked;
        return *checked;
      },
      NotFoundSnapshot(snapshot.id));
  if (!written) {
    return tl::unexpected(written.error());
  }
  return stored;
}

}  // namespace

HttpResponse SnapshotsApi::ShowMetadata(const RequestContext& context,
                                        std::string_view snapshot_id) {
  auto snapshot = VisibleSnapshot(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  return JsonResponse(200, {{"metadata", snapshot->metadata}});
}

HttpResponse SnapshotsApi::ChangeMetadata(const RequestContext& context,
                                          const HttpRequest& request,
                                          std::string_view snapshot_id,
                                          bool replace) {
  auto body = ParseRequestBody(request);
  if (!body) {
    return body.error();
  }
  auto incoming = AssertValidBody(*body, "metadata");
  if (!incoming) {
    return incoming.error();
  }
  auto snapshot = VisibleSnapshot(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  auto stored = StoreSnapshotMetadata(store_, *snapshot, *incoming, replace);
  if (!stored) {
    return stored.error();
  }
  return JsonResponse(200, {{"metadata", *stored}});
}

HttpResponse SnapshotsApi::ShowMetadataItem(const RequestContext& context,
                                            std::string_view snapshot_id,
                                            std::string_view key) {
  auto snapshot = VisibleSnapshot(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  auto found = snapshot->metadata.find(std::string(key));
  if (found == snapshot->metadata.end()) {
    return NoSuchKey(snapshot_id, key);
  }
  return JsonResponse(200, {{"meta", {{found->first, found->second}}}});
}

HttpResponse SnapshotsApi::UpdateMetadataItem(const RequestContext& context,
                                              const HttpRequest& request,
                                              std::string_view snapshot_id,
                                              std::string_view key) {
  auto body = ParseRequestBody(request);
  if (!body) {
    return body.error();
  }
  auto item = AssertValidBody(*body, "meta");
  if (!item) {
    return item.error();
  }
  if (!item->contains(std::string(key))) {
    return Fault(400, "Request body and URI mismatch");
  }
  if (item->size() > 1) {
    return Fault(400, "Request body contains too many items");
  }
  auto snapshot = VisibleSnapshot(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  auto stored = StoreSnapshotMetadata(store_, *snapshot, *item, /*replace=*/false);
  if (!stored) {
    return stored.error();
  }
  return JsonResponse(200, {{"meta", *item}});
}

HttpResponse SnapshotsApi::DeleteMetadataItem(const RequestContext& context,
                                              std::string_view snapshot_id,
                                              std::string_view key) {
  auto snapshot = VisibleSnapshot(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  const std::string name(key);
  auto written = ChangeMetadataColumn(
      store_,
      ports::Table::kSnapshots,
      snapshot->id,
      "metadata",
      [&](const ports::Row&, Metadata current) -> tl::expected<Metadata, HttpResponse> {
        if (current.erase(name) == 0) {
          return tl::unexpected(NoSuchKey(snapshot_id, key));
        }
        return current;
      },
      NotFoundSnapshot(snapshot_id));
  if (!written) {
    return written.error();
  }
  HttpResponse response;
  response.status = 200;
  return response;
}

}  // namespace clinker::services
