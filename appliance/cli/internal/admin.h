// Private to appliance/cli: what the `signet admin` commands share. The admin socket's API is
// admin/API.md; this is its client: finding the socket, one request at a time over it, and
// turning what went wrong into a message a user can act on.
//
// Caveats:
// - The admin socket is a Unix socket only (no TLS), reached with the caller's own uid: signetd
//   reads it with SO_PEERCRED and maps it to roles in the policy's [roles].
// - A peer that holds no role is disconnected before a byte is read: no status, no body. That is
//   told apart from other failures only by how the connection ended (see AdminRequest).
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_ADMIN_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_ADMIN_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "appliance/cli/internal/command.h"
#include "appliance/cli/internal/console.h"
#include "appliance/cli/internal/daemon_client.h"

namespace signet::cli {

// Where the admin socket is looked for, for help texts.
inline constexpr std::string_view kAdminSocketHelp = R"help(
The admin socket is --socket PATH, else $SIGNET_ADMIN_SOCKET, else the first of
./.signet/admin/admin.sock (signetd --dev), /run/signet/admin/admin.sock and
/var/lib/signet/admin/admin.sock that exists. What you may do there is decided by the roles the
policy's [roles] table gives your user or groups (admin, approver, auditor).

Exit status: 0 done, 1 signetd refused or could not be asked, 2 bad command line.)help";

// The options of every `signet admin` leaf command: --socket PATH and --json.
struct AdminOptions {
  void Register(CLI::App* app);

  std::string socket;
  bool json = false;
  CLI::Option* socket_option = nullptr;
};

// One request for the admin socket.
struct AdminRequestSpec {
  std::string method = "GET";  // GET, POST or PUT
  std::string target{};        // "/v1/policy"
  std::optional<std::string> body{};
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers{};
  // Statuses that are answers rather than refusals (their bodies are the caller's to read).
  std::vector<int> accepted = {200};
};

// Sends `spec` to the admin socket `options` names. On success, the answer (its status one of
// spec.accepted). Otherwise prints "signet: COMMAND: what went wrong and what to check" through
// `console` and returns nullopt: no socket found, permission denied, nothing listening, the
// connection closed without an answer (no role), or the daemon's refusal (its message and code).
std::optional<HttpAnswer> AdminRequest(Console& console, std::string_view command,
                                       const AdminOptions& options, const AdminRequestSpec& spec);

// The answer's body as a JSON object; prints "signet: COMMAND: signetd's answer is not JSON" and
// returns nullopt when it is not one.
std::optional<nlohmann::json> ParseAnswer(Console& console, std::string_view command,
                                          const HttpAnswer& answer);

// `body` as signetd sent it, with a final newline: what --json prints.
std::string AsIs(std::string_view body);

// The daemon's error shape {"code", "message"[, "role"][, "limit"]} as "MESSAGE (CODE)", plus a
// hint when a role was missing.
std::string DescribeAdminRefusal(const HttpAnswer& answer);

// `time_us` (µs since the epoch) as RFC 3339 UTC, seconds precision: "2026-01-31T12:00:00Z".
std::string Rfc3339(std::int64_t time_us);

// A string field of `object`, DisplayName'd; `fallback` when absent or not a string.
std::string Field(const nlohmann::json& object, const char* name, std::string_view fallback = "");

// Key names in URL paths: 1 to 128 of A-Z a-z 0-9 . _ -
bool ValidKeyName(std::string_view name);

// A usage error of COMMAND: "signet: COMMAND: MESSAGE" and the --help hint; returns kExitUsage.
int UsageError(Console& console, std::string_view command, std::string_view message);

// `signet admin policy ...` (admin_policy_command.cc) and `signet admin keys ...`
// (admin_command.cc), registered under `signet admin` by MakeAdminCommand's command.
std::unique_ptr<Command> MakeAdminPolicyCommand();
std::unique_ptr<Command> MakeAdminKeysCommand();
// `signet admin approvals list|show|approve|deny` (admin_approvals_command.cc).
std::unique_ptr<Command> MakeAdminApprovalsCommand();
// `signet admin stats` (admin_stats_command.cc).
std::unique_ptr<Command> MakeAdminStatsCommand();

// One sample of the Prometheus text format: `name{label="value",...} value`.
struct MetricSample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};
// The samples of a Prometheus text exposition (0.0.4); comments, blank lines and lines that do
// not parse are skipped. A timestamp after the value is ignored.
std::vector<MetricSample> ParseMetrics(std::string_view text);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_ADMIN_H_
