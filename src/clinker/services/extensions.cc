#include "clinker/services/extensions.h"

#include <array>

namespace clinker::services {
namespace {

using nlohmann::json;

// In the order of Cinder's api-ref sample (the order Cinder loads them in is its directory's).
constexpr std::array kExtensions = {
    ApiExtension{
        "Hosts", "os-hosts", "Admin-only host administration.", "2011-06-29T00:00:00+00:00"},
    ApiExtension{"VolumeTenantAttribute",
                 "os-vol-tenant-attr",
                 "Expose the internal project_id as an attribute of a volume.",
                 "2011-11-03T00:00:00+00:00"},
    ApiExtension{"AvailabilityZones",
                 "os-availability-zone",
                 "Describe Availability Zones.",
                 "2013-06-27T00:00:00+00:00"},
    ApiExtension{"Backups", "backups", "Backups support.", "2012-12-12T00:00:00+00:00"},
    ApiExtension{"VolumeActions",
                 "os-volume-actions",
                 "Enable volume actions.",
                 "2012-05-31T00:00:00+00:00"},
    ApiExtension{"VolumeHostAttribute",
                 "os-vol-host-attr",
                 "Expose host as an attribute of a volume.",
                 "2011-11-03T00:00:00+00:00"},
    ApiExtension{"VolumeTypeEncryption",
                 "encryption",
                 "Encryption support for volume types.",
                 "2013-07-01T00:00:00+00:00"},
    ApiExtension{"VolumeImageMetadata",
                 "os-vol-image-meta",
                 "Show image metadata associated with the volume.",
                 "2012-12-07T00:00:00+00:00"},
    ApiExtension{
        "TypesManage", "os-types-manage", "Types manage support.", "2011-08-24T00:00:00+00:00"},
    ApiExtension{
        "Capabilities", "capabilities", "Capabilities support.", "2015-08-31T00:00:00+00:00"},
    ApiExtension{"TypesExtraSpecs",
                 "os-types-extra-specs",
                 "Type extra specs support.",
                 "2011-08-24T00:00:00+00:00"},
    ApiExtension{"VolumeMigStatusAttribute",
                 "os-vol-mig-status-attr",
                 "Expose migration_status as an attribute of a volume.",
                 "2013-08-08T00:00:00+00:00"},
    ApiExtension{"VolumeTypeAccess",
                 "os-volume-type-access",
                 "Volume type access support.",
                 "2014-06-26T00:00:00Z"},
    ApiExtension{"ExtendedServices",
                 "os-extended-services",
                 "Extended services support.",
                 "2014-01-10T00:00:00-00:00"},
    ApiExtension{"ExtendedSnapshotAttributes",
                 "os-extended-snapshot-attributes",
                 "Extended SnapshotAttributes support.",
                 "2012-06-19T00:00:00+00:00"},
    ApiExtension{"VolumeTransfer",
                 "os-volume-transfer",
                 "Volume transfer management support.",
                 "2013-05-29T00:00:00+00:00"},
    ApiExtension{
        "AdminActions", "os-admin-actions", "Enable admin actions.", "2012-08-25T00:00:00+00:00"},
    ApiExtension{"Services", "os-services", "Services support.", "2012-10-28T00:00:00-00:00"},
    ApiExtension{
        "Qos_specs_manage", "qos-specs", "QoS specs support.", "2013-08-02T00:00:00+00:00"},
    ApiExtension{"Scheduler_stats",
                 "scheduler-stats",
                 "Scheduler stats support.",
                 "2014-09-07T00:00:00+00:00"},
    ApiExtension{
        "Quotas", "os-quota-sets", "Quota management support.", "2011-08-08T00:00:00+00:00"},
    ApiExtension{"QuotaClasses",
                 "os-quota-class-sets",
                 "Quota classes management support.",
                 "2012-03-12T00:00:00+00:00"},
    ApiExtension{"UsedLimits",
                 "os-used-limits",
                 "Provide data on limited resources that are being used.",
                 "2013-10-03T00:00:00+00:00"},
};

json View(const ApiExtension& extension) {
  return {{"name", extension.name},
          {"alias", extension.alias},
          {"description", extension.description},
          {"updated", extension.updated},
          {"links", json::array()}};
}

}  // namespace

std::span<const ApiExtension> ApiExtensions() {
  return kExtensions;
}

HttpResponse ListExtensions() {
  json items = json::array();
  for (const ApiExtension& extension : kExtensions) {
    items.push_back(View(extension));
  }
  return JsonResponse(200, {{"extensions", std::move(items)}});
}

HttpResponse ShowExtension(std::string_view alias) {
  for (const ApiExtension& extension : kExtensions) {
    if (extension.alias == alias) {
      return JsonResponse(200, {{"extension", View(extension)}});
    }
  }
  return Fault(404, "The resource could not be found.");
}

}  // namespace clinker::services
