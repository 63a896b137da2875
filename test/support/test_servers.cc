#include "support/test_servers.h"

#include <cstdlib>
#include <fstream>

#include "clinker/core/uuid.h"

namespace clinker::test_support {

std::string TestServerEnvPath(std::string_view server) {
  // Read once per call from the test's own environment, which CTest sets before the process
  // starts and nothing changes afterwards.
  const char* dir = std::getenv("CLINKER_TEST_SERVERS_DIR");  // NOLINT(concurrency-mt-unsafe)
  if (dir == nullptr || *dir == '\0') {
    return "";
  }
  return std::string(dir) + "/" + std::string(server) + "/env";
}

std::optional<std::string> TestServerSetting(std::string_view server, std::string_view key) {
  std::string path = TestServerEnvPath(server);
  if (path.empty()) {
    return std::nullopt;
  }
  std::ifstream file(path);
  if (!file) {
    return std::nullopt;
  }
  std::optional<std::string> value;
  std::string line;
  while (std::getline(file, line)) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.empty() || line.front() == '#') {
      continue;
    }
    std::size_t equals = line.find('=');
    if (equals == std::string::npos || std::string_view(line).substr(0, equals) != key) {
      continue;
    }
    value = line.substr(equals + 1);
  }
  return value;
}

std::optional<adapters::etcd::EtcdLockManager::Options> EtcdTestOptions(
    std::chrono::milliseconds request_timeout) {
  auto host = TestServerSetting("etcd", "CLINKER_TEST_ETCD_HOST");
  auto port = TestServerSetting("etcd", "CLINKER_TEST_ETCD_PORT");
  if (!host || !port) {
    return std::nullopt;
  }
  adapters::etcd::EtcdLockManager::Options options;
  options.host = *host;
  options.port = std::stoi(*port);
  options.key_prefix = "/clinker-test/" + NewUuid() + "/";
  options.lease_ttl = std::chrono::seconds(2);
  options.heartbeat_interval = std::chrono::milliseconds(250);
  options.missed_heartbeats = 3;
  options.request_timeout = request_timeout;
  return options;
}

}  // namespace clinker::test_support
