// Settings of the throwaway servers (PostgreSQL, RabbitMQ, ...) that CTest fixtures start for the
// tests that need a real engine: scripts/test_server_<server>.sh writes KEY=VALUE lines to
// $CLINKER_TEST_SERVERS_DIR/<server>/env, and tests read them here.
//
// Contract: thread safe (reads the file on every call, keeps no state); blocks only on that small
// file read. std::nullopt when the variable is unset, the file is missing or has no such key, so
// a test can fail with a message that says how to start the server (tests never skip silently).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace clinker::test_support {

// The value of `key` in $CLINKER_TEST_SERVERS_DIR/<server>/env. Lines are KEY=VALUE; the value
// is everything after the first '=' (trailing '\r' removed). Blank lines and lines starting with
// '#' are ignored; a repeated key takes its last value.
std::optional<std::string> TestServerSetting(std::string_view server, std::string_view key);

// The path of that env file (for error messages), or "" when the variable is unset.
std::string TestServerEnvPath(std::string_view server);

}  // namespace clinker::test_support
