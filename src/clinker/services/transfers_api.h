// TransfersApi: Cinder's volume transfers (give a volume to another project), transport-free:
// create, show, list, list detail, delete and accept, under both of Cinder's URLs:
// /os-volume-transfer (the old extension: its create takes no `no_snapshots`, its list neither
// paginates nor sorts) and /volume-transfers (Cinder's v3 controller: `no_snapshots` from 3.55,
// marker / limit / offset / sort from 3.59). Views follow the microversion on both: `no_snapshots`
// from 3.55, `source_project_id`, `destination_project_id` and `accepted` from 3.57.
//
// The auth key is generated here, shown once (in the create answer) and never stored: the row
// keeps a random salt and the hex HMAC-SHA1 of the key under it, as Cinder does.
//
// Every state change is a compare-and-swap, so any number of API servers may serve transfers at
// once (Active/Active):
// - create moves the volume `available` -> `awaiting-transfer` first, then inserts the transfer:
//   only one transfer of a volume can ever be live, and a volume in any other status is refused;
// - delete marks the transfer deleted (only one caller wins), then moves the volume back to
//   `available`;
// - accept checks the key, then claims the transfer (deleted = 0 -> accepted and deleted): of
//   any number of racing accepts (and deletes) exactly one wins, the others get 404 as for a
//   transfer that is gone. The winner then moves the volume (`awaiting-transfer` -> `available`,
//   to the caller's project and user) and, unless the transfer says no_snapshots, each of its
//   snapshots; if one of those swaps fails (the volume or a snapshot changed meanwhile), what was
//   moved is moved back and the transfer is live again (400, as Cinder).
//   A process that dies between the claim and the volume's move leaves an accepted transfer and
//   the volume awaiting-transfer in its old project: an admin's os-reset_status to `available`
//   gives it back to its owner.
//
// Projects, as Cinder: a transfer belongs to its volume's project (source_project_id); a caller
// sees its own project's transfers, an admin every project's (lists only with all_tenants).
// Accept looks the transfer up in every project: the auth key is what authorizes the taker.
//
// Thread safe (no mutable state of its own). Blocks on the StateStore.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"
#include "clinker/services/quotas.h"

namespace clinker::services {

struct TransfersApiOptions {
  std::int64_t max_limit = 1000;
  // Cinder's volume_transfer_salt_length and volume_transfer_key_length.
  std::size_t salt_length = 8;
  std::size_t key_length = 16;
  // Limits and what counts (services/quotas.h): an accept moves the volume's (and its
  // snapshots') usage from the giver to the taker in the writes that move them (413 when the
  // taker has no room).
  QuotaOptions quota;
};

// Which of Cinder's two controllers a URL reaches.
enum class TransferRoute {
  kExtension,  // /os-volume-transfer
  kV3,         // /volume-transfers
};

class TransfersApi {
 public:
  TransfersApi(ports::StateStore& store, const ports::Clock& clock, TransfersApiOptions options);

  HttpResponse Create(const RequestContext& context,
                      const HttpRequest& request,
                      TransferRoute route);
  HttpResponse Show(const RequestContext& context, std::string_view transfer_id);
  HttpResponse List(const RequestContext& context,
                    const HttpRequest& request,
                    bool detail,
                    TransferRoute route);
  HttpResponse Delete(const RequestContext& context, std::string_view transfer_id);
  HttpResponse Accept(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view transfer_id);

  // Cinder's _get_crypt_hash: hex HMAC-SHA1 of `auth_key` keyed with `salt`.
  static std::string CryptHash(std::string_view salt, std::string_view auth_key);

 private:
  nlohmann::json View(const ports::Row& row, const RequestContext& context, bool detail) const;

  ports::StateStore& store_;
  const ports::Clock& clock_;
  TransfersApiOptions options_;
  QuotaService quotas_;
};

}  // namespace clinker::services
