#include "clinker/services/quotas_api.h"

#include <charconv>
#include <string>
#include <vector>

#include "clinker/core/time_format.h"
#include "clinker/domain/policy.h"

namespace clinker::services {
namespace {

using nlohmann::json;
namespace p = domain::policies;

HttpResponse PolicyRefused(std::string_view rule) {
  return Fault(403, "Policy doesn't allow " + std::string(rule) + " to be performed.");
}

// oslo's validate_integer: an integer, or a string of one; within [-1, kMaxQuotaLimit].
Result<std::int64_t> QuotaValue(const std::string& name, const json& value) {
  std::int64_t number = 0;
  bool parsed = false;
  if (value.is_number_integer()) {
    number = value.get<std::int64_t>();
    parsed = true;
  } else if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    parsed = ec == std::errc() && ptr == text.data() + text.size() && !text.empty();
  }
  if (!parsed) {
    return MakeError(ErrorCode::kInvalidArgument, name + " must be an integer.");
  }
  if (number < -1) {
    return MakeError(ErrorCode::kInvalidArgument, name + " must be >= -1");
  }
  if (number > kMaxQuotaLimit) {
    return MakeError(ErrorCode::kInvalidArgument,
                     name + " must be <= " + std::to_string(kMaxQuotaLimit));
  }
  return number;
}

json LimitsView(const QuotaMap& limits) {
  json view = json::object();
  for (const auto& [resource, limit] : limits) {
    view[resource] = limit;
  }
  return view;
}

// The body's object of limits, each checked; "id" and "tenant_id" (Cinder's NON_QUOTA_KEYS) are
// skipped when `skip_ids`.
Result<std::vector<std::pair<std::string, std::int64_t>>> ParseLimits(
    const HttpRequest& request,
    std::string_view root,
    const std::vector<std::string>& known,
    bool skip_ids,
    std::string_view bad_keys_what) {
  CLINKER_ASSIGN_OR_RETURN(json set, ParseBody(request, root));
  if (!set.is_object() || set.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "Invalid input for field/attribute " + std::string(root) +
                         ". Value: " + set.dump() + ". It must be a non-empty object.");
  }
  std::vector<std::pair<std::string, std::int64_t>> limits;
  std::string bad;
  for (const auto& [key, value] : set.items()) {
    if (skip_ids && (key == "id" || key == "tenant_id")) {
      continue;
    }
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      bad += bad.empty() ? key : ", " + key;
      continue;
    }
    CLINKER_ASSIGN_OR_RETURN(std::int64_t limit, QuotaValue(key, value));
    limits.emplace_back(key, limit);
  }
  if (!bad.empty()) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "Invalid input received: Bad key(s) in " + std::string(bad_keys_what) + ": " + bad);
  }
  return limits;
}

}  // namespace

HttpResponse QuotaFault(const Error& error) {
  if (auto info = ports::ParseQuotaExceeded(error)) {
    HttpResponse response = Fault(413, QuotaExceededMessage(*info));
    response.headers.emplace_back("Retry-After", "0");
    return response;
  }
  return FaultFromError(error);
}

std::optional<HttpResponse> PerVolumeLimitExceeded(const QuotaMap& limits, std::int64_t size_gib) {
  auto limit = limits.find("per_volume_gigabytes");
  if (limit == limits.end() || limit->second < 0 || size_gib <= limit->second) {
    return std::nullopt;
  }
  HttpResponse response =
      Fault(413,
            "Requested volume size " + std::to_string(size_gib) +
                "G is larger than maximum allowed limit " + std::to_string(limit->second) + "G.");
  response.headers.emplace_back("Retry-After", "0");
  return response;
}

QuotasApi::QuotasApi(QuotaService& quotas, const ports::Clock& clock)
    : quotas_(quotas), clock_(clock) {}

HttpResponse QuotasApi::Show(const RequestContext& context,
                             const HttpRequest& request,
                             std::string_view target_project) {
  if (!AllowedFor(context, p::kQuotasShow, target_project)) {
    return PolicyRefused(p::kQuotasShow);
  }
  std::string value;
  const bool usage = request.QueryValue("usage", &value) && TruthyParameter(value);
  auto limits = quotas_.ProjectLimits(target_project);
  if (!limits) {
    return FaultFromError(limits.error());
  }
  json view = json::object();
  if (usage) {
    auto used = quotas_.ProjectUsage(target_project);
    if (!used) {
      return FaultFromError(used.error());
    }
    for (const auto& [resource, limit] : *limits) {
      auto in_use = used->find(resource);
      view[resource] = {{"limit", limit},
                        {"in_use", in_use == used->end() ? 0 : in_use->second},
                        {"reserved", 0}};
    }
  } else {
    view = LimitsView(*limits);
  }
  view["id"] = std::string(target_project);
  return JsonResponse(200, {{"quota_set", view}});
}

HttpResponse QuotasApi::Defaults(const RequestContext& context, std::string_view target_project) {
  if (!AllowedFor(context, p::kQuotasShow, target_project)) {
    return PolicyRefused(p::kQuotasShow);
  }
  auto defaults = quotas_.Defaults();
  if (!defaults) {
    return FaultFromError(defaults.error());
  }
  json view = LimitsView(*defaults);
  view["id"] = std::string(target_project);
  return JsonResponse(200, {{"quota_set", view}});
}

HttpResponse QuotasApi::Update(const RequestContext& context,
                               const HttpRequest& request,
                               std::string_view target_project) {
  if (!AllowedFor(context, p::kQuotasUpdate, target_project)) {
    return PolicyRefused(p::kQuotasUpdate);
  }
  if (target_project.empty() || target_project.size() > kMaxTextLength) {
    return Fault(400, "Invalid input received: quota_set_name must be 1 to 255 characters");
  }
  auto names = quotas_.ResourceNames();
  if (!names) {
    return FaultFromError(names.error());
  }
  auto limits = ParseLimits(request, "quota_set", *names, true, "quota set");
  if (!limits) {
    return FaultFromError(limits.error());
  }
  auto used = quotas_.ProjectUsage(target_project);
  if (!used) {
    return FaultFromError(used.error());
  }
  // Cinder's _validate_existing_resource: a limit may not go below what is in use.
  for (const auto& [resource, limit] : *limits) {
    if (resource == "per_volume_gigabytes" || limit == -1) {
      continue;
    }
    auto in_use = used->find(resource);
    const std::int64_t count = in_use == used->end() ? 0 : in_use->second;
    if (limit < count) {
      return Fault(400,
                   "Quota " + resource +
                       " limit must be equal or greater than existing resources. Current usage "
                       "is " +
                       std::to_string(count) + " and the requested limit is " +
                       std::to_string(limit) + ".");
    }
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  for (const auto& [resource, limit] : *limits) {
    if (auto set = quotas_.SetProjectLimit(target_project, resource, limit, now); !set) {
      return FaultFromError(set.error());
    }
  }
  auto after = quotas_.ProjectLimits(target_project);
  if (!after) {
    return FaultFromError(after.error());
  }
  return JsonResponse(200, {{"quota_set", LimitsView(*after)}});
}

HttpResponse QuotasApi::Delete(const RequestContext& context, std::string_view target_project) {
  if (!AllowedFor(context, p::kQuotasDelete, target_project)) {
    return PolicyRefused(p::kQuotasDelete);
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  if (auto deleted = quotas_.DeleteProjectLimits(target_project, now); !deleted) {
    return FaultFromError(deleted.error());
  }
  HttpResponse response;
  response.status = 200;
  return response;
}

HttpResponse QuotasApi::ShowClass(const RequestContext& context, std::string_view class_name) {
  // Cinder's authorize_quota_class_context: a non-admin sees only its own class, and this
  // release gives no caller a class.
  if (!context.is_admin) {
    return Fault(403, "Policy doesn't allow volume_extension:quota_classes:get to be performed.");
  }
  auto limits = quotas_.ClassLimits(class_name);
  if (!limits) {
    return FaultFromError(limits.error());
  }
  json view = LimitsView(*limits);
  view["id"] = std::string(class_name);
  return JsonResponse(200, {{"quota_class_set", view}});
}

HttpResponse QuotasApi::UpdateClass(const RequestContext& /*context*/,
                                    const HttpRequest& request,
                                    std::string_view class_name) {
  if (class_name.empty() || class_name.size() > kMaxTextLength) {
    return Fault(400, "Invalid input received: quota_class_name must be 1 to 255 characters");
  }
  auto names = quotas_.ResourceNames();
  if (!names) {
    return FaultFromError(names.error());
  }
  auto limits = ParseLimits(request, "quota_class_set", *names, false, "quota class set");
  if (!limits) {
    return FaultFromError(limits.error());
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  for (const auto& [resource, limit] : *limits) {
    if (auto set = quotas_.SetClassLimit(class_name, resource, limit, now); !set) {
      return FaultFromError(set.error());
    }
  }
  auto after = quotas_.ClassLimits(class_name);
  if (!after) {
    return FaultFromError(after.error());
  }
  return JsonResponse(200, {{"quota_class_set", LimitsView(*after)}});
}

HttpResponse QuotasApi::Limits(const RequestContext& context, const HttpRequest& request) {
  std::string project = context.project_id;
  std::string value;
  // Cinder's LIMITS_ADMIN_FILTER (3.39): an admin may ask for another project's limits.
  if (context.is_admin && context.version >= Microversion{3, 39} &&
      (request.QueryValue("project_id", &value) || request.QueryValue("tenant_id", &value))) {
    project = value;
  }
  auto limits = quotas_.ProjectLimits(project);
  if (!limits) {
    return FaultFromError(limits.error());
  }

  struct Name {
    std::string_view resource;
    std::string_view max;
    std::string_view used;
  };

  constexpr Name kNames[] = {
      {"volumes", "maxTotalVolumes", "totalVolumesUsed"},
      {"gigabytes", "maxTotalVolumeGigabytes", "totalGigabytesUsed"},
      {"snapshots", "maxTotalSnapshots", "totalSnapshotsUsed"},
      {"backups", "maxTotalBackups", "totalBackupsUsed"},
      {"backup_gigabytes", "maxTotalBackupGigabytes", "totalBackupGigabytesUsed"},
  };
  json absolute = json::object();
  for (const Name& name : kNames) {
    absolute[std::string(name.max)] = limits->at(std::string(name.resource));
  }
  // Cinder's used_limits extension adds the counts when its rule allows.
  if (Allowed(context, p::kUsedLimits)) {
    auto used = quotas_.ProjectUsage(project);
    if (!used) {
      return FaultFromError(used.error());
    }
    for (const Name& name : kNames) {
      auto in_use = used->find(name.resource);
      absolute[std::string(name.used)] = in_use == used->end() ? 0 : in_use->second;
    }
  }
  return JsonResponse(200, {{"limits", {{"rate", json::array()}, {"absolute", absolute}}}});
}

}  // namespace clinker::services
