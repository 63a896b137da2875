// Settings of the throwaway servers (PostgreSQL, RabbitMQ, ...) that CTest fixtures start for the
// tests that need a real engine: scripts/test_server_<server>.sh writes KEY=VALUE lines to
// $CLINKER_TEST_SERVERS_DIR/<server>/env, and tests read them here.
//
// Contract: thread safe (reads the file on every call, keeps no state); blocks only on that small
// file read. std::nullopt when the variable is unset, the file is missing or has no such key, so
// a test can fail with a message that says how to start the server (tests never skip silently).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "clinker/adapters/etcd/etcd_lock_manager.h"

namespace clinker::test_support {

// The value of `key` in $CLINKER_TEST_SERVERS_DIR/<server>/env. Lines are KEY=VALUE; the value
// is everything after the first '=' (trailing '\r' removed). Blank lines and lines starting with
// '#' are ignored; a repeated key takes its last value.
std::optional<std::string> TestServerSetting(std::string_view server, std::string_view key);

// The path of that env file (for error messages), or "" when the variable is unset.
std::string TestServerEnvPath(std::string_view server);

// Options for an EtcdLockManager on the etcd of the CTest fixture "etcd", with short lease times
// (TTL 2 s, heartbeat 250 ms, 3 missed beats) so that tests stay fast, and a key prefix of its
// own, so that tests sharing the server never meet. std::nullopt without that fixture.
std::optional<adapters::etcd::EtcdLockManager::Options> EtcdTestOptions(
    std::chrono::milliseconds request_timeout);

}  // namespace clinker::test_support
