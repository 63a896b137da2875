// StorageDriver: the back-end that holds volume and snapshot data.
//
// Contract, for every adapter (test/contract/storage_driver_contract_test.cc holds them to it):
// - Thread safe for different resources. Callers serialise operations on one resource with its
//   lock (services/lock_names.h); drivers need not. A source being copied (a volume cloned, a
//   volume snapshotted, a snapshot a volume is created from) is held under a shared lock by the
//   caller, so no write to it runs during the copy.
// - Blocking: an operation returns when it is done on the back-end (or failed).
// - Idempotent, because jobs are delivered at least once: creating a volume or snapshot that
//   exists with the same size succeeds without copying again; deleting one that does not exist
//   succeeds; extending a volume that already has the new size succeeds. A crash in the middle
//   of a create never leaves a partial resource under its final name.
// - Fencing. Every operation carries the fencing token of the lock under which the caller acts
//   on the resource it writes (ports/lock_manager.h; 0 when it holds none). Fence(id, token)
//   raises that resource's fence to `token`: from then on, an operation writing that resource
//   carrying a smaller token fails with kFenced and changes nothing. A node that takes over a
//   resource whose job another node left in progress fences it first, so the other node, if it
//   was only paused, cannot touch the data when it resumes. Fence is idempotent; fencing with a
//   token smaller than the fence is kFenced (the caller's own lock is stale). The check and the
//   change of an operation are atomic with respect to Fence. Fences outlive the resource: a
//   stale create must not bring a deleted volume back. Volume and snapshot ids are UUIDs and
//   never collide, so one fence namespace serves both.
// - Errors: kDriverFailed (the back-end refused or failed; the message says why, for the user),
//   kInvalidArgument (the request can never succeed, e.g. an existing volume of another size, a
//   shrink, a size smaller than the source), kNotFound (the source of a copy does not exist),
//   kFenced (see above).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "clinker/core/error.h"

namespace clinker::ports {

// Where a new volume's data comes from.
struct VolumeSource {
  enum class Kind { kNone, kVolume, kSnapshot };
  Kind kind = Kind::kNone;  // kNone: a blank volume (reads as zeros).
  std::string id;           // The source volume or snapshot.
};

struct VolumeSpec {
  std::string volume_id;
  std::int64_t size_gib = 0;  // At least the source's size; the copy is grown to it.
  std::string operation_id;   // Idempotency key of the job that asks for this work.
  std::uint64_t fencing_token = 0;
  VolumeSource source;
};

struct SnapshotSpec {
  std::string snapshot_id;
  std::string volume_id;  // The volume whose data the snapshot keeps, as it is now.
  std::string operation_id;
  std::uint64_t fencing_token = 0;  // Of the snapshot's lock.
};

// What a host needs to reach a volume (Cinder's connection_info): `driver_volume_type` names the
// os-brick connector ("local" for a path on the host), `data` its parameters ("device_path").
struct ConnectionInfo {
  std::string driver_volume_type;
  std::map<std::string, std::string> data;
};

// The host asking for a connection (Cinder's connector), as far as drivers need it.
struct Connector {
  std::string host;
  std::string initiator;
};

struct BackendStats {
  std::string backend_name;  // e.g. "file"
  std::int64_t total_capacity_gib = 0;
  std::int64_t free_capacity_gib = 0;
  // Cinder's static capabilities (get_volume_stats), shown by GET /capabilities/{host} and
  // scheduler-stats/get_pools, and matched by volume types' extra specs. Clinker's own drivers
  // keep these defaults: vendor Clinker, protocol "file" (a volume is a file on the host).
  std::string vendor_name = "Clinker";
  std::string driver_version = "1.0.0";
  std::string storage_protocol = "file";
};

class StorageDriver {
 public:
  virtual ~StorageDriver() = default;

  // Creates the volume: blank, or a copy of spec.source grown to spec.size_gib.
  virtual Result<void> CreateVolume(const VolumeSpec& spec) = 0;
  virtual Result<void> DeleteVolume(std::string_view volume_id,
                                    std::string_view operation_id,
                                    std::uint64_t fencing_token) = 0;
  // Grows the volume to new_size_gib, keeping its data. kInvalidArgument for a shrink;
  // kNotFound for a missing volume.
  virtual Result<void> ExtendVolume(std::string_view volume_id,
                                    std::int64_t new_size_gib,
                                    std::string_view operation_id,
                                    std::uint64_t fencing_token) = 0;
  // A point-in-time copy of the volume's data. kNotFound for a missing volume.
  virtual Result<void> CreateSnapshot(const SnapshotSpec& spec) = 0;
  virtual Result<void> DeleteSnapshot(std::string_view snapshot_id,
                                      std::string_view operation_id,
                                      std::uint64_t fencing_token) = 0;
  // Exports the volume to `connector` and says how to reach it. Idempotent. kNotFound for a
  // missing volume.
  virtual Result<ConnectionInfo> InitializeConnection(std::string_view volume_id,
                                                      const Connector& connector) = 0;
  // Ends the export to `connector`. Idempotent: a connection that does not exist is success.
  virtual Result<void> TerminateConnection(std::string_view volume_id,
                                           const Connector& connector) = 0;
  virtual Result<void> Fence(std::string_view resource_id, std::uint64_t fencing_token) = 0;
  virtual Result<BackendStats> GetStats() = 0;
};

}  // namespace clinker::ports
