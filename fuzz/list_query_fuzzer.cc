// Fuzz target: the query-string, filter, sort and paging parsers of the list calls. The first
// input byte picks the collection listed and the microversion; the rest is the query string as it
// follows '?' in a request target. It is split and decoded as the HTTP front end does
// (beast_request.h), then parsed directly (ParseVolumeListFilters for an admin and a non-admin,
// with every filter matched against a volume; ParseSort; ParseNonNegative for limit and offset)
// and sent to the whole API as GET on the collection, against an in-memory world holding one of
// each resource, so the filters also run through the state store's query.
//
// Findings: a crash or sanitizer report; a 5xx other than 503 (a bad query must be a 4xx).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "clinker/adapters/http/beast_request.h"
#include "clinker/services/api_common.h"
#include "clinker/services/volume_filters.h"

#include "fuzz_world.h"

namespace {

using clinker::fuzz::FuzzWorld;

constexpr std::array<std::string_view, 12> kCollections = {
    "volumes",
    "volumes/detail",
    "snapshots",
    "snapshots/detail",
    "backups",
    "backups/detail",
    "attachments",
    "types",
    "messages",
    "qos-specs",
    "os-services",
    "volume-transfers/detail",
};

std::optional<std::string> AnyColumn(std::string_view key) {
  if (key == "unsortable") {
    return std::nullopt;
  }
  return std::string(key);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  FuzzWorld::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  std::string_view collection = kCollections[data[0] % kCollections.size()];
  const clinker::services::Microversion version{
      3, (data[0] / 16) * 5 % (clinker::services::kMaxMicroversion.minor + 1)};
  std::string query(reinterpret_cast<const char*>(data + 1), size - 1);

  namespace http = boost::beast::http;
  http::request<http::string_body> message;
  message.method(http::verb::get);
  message.target(FuzzWorld::Path(collection) + "?" + query);
  message.version(11);
  clinker::ports::HttpRequest parsed = clinker::adapters::ToHttpRequest(message, "http://x");

  for (bool is_admin : {false, true}) {
    auto filters = clinker::services::ParseVolumeListFilters(parsed, version, is_admin);
    if (filters) {
      clinker::services::Volume volume;
      volume.id = "00000000-0000-0000-0000-000000000000";
      (void)filters->Matches(volume);
    }
  }
  (void)clinker::services::ParseSort(parsed, AnyColumn);
  for (std::string_view name : {"limit", "offset"}) {
    std::string value;
    if (parsed.QueryValue(name, &value)) {
      (void)clinker::services::ParseNonNegative(name, value);
    }
  }

  FuzzWorld world;
  clinker::ports::HttpRequest request =
      FuzzWorld::Request("GET", parsed.path, "", version.ToString());
  request.query = parsed.query;
  clinker::ports::HttpResponse response = world.Send(request);
  if (response.status >= 500 && response.status != 503) {
    std::fprintf(stderr,
                 "GET %s?%s answered %d: %s\n",
                 request.path.c_str(),
                 query.c_str(),
                 response.status,
                 response.body.c_str());
    std::abort();
  }
  return 0;
}
