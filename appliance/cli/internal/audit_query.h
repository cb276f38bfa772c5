// Private to appliance/cli: what `signet audit export --socket` and `signet audit find` share to
// ask signetd's admin API (admin/API.md, "Audit") about the audit log.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_AUDIT_QUERY_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_AUDIT_QUERY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "appliance/audit/audit.h"
#include "appliance/cli/internal/command.h"

namespace signet::cli {

// Percent-encodes `value` for a query string (RFC 3986 unreserved characters stay as they are).
std::string QueryEscape(std::string_view value);

// The query string (without '?') of the admin API's audit filters: from_seq, to_seq, from_time,
// to_time (µs), key, identity, digest, consistency_from (N,M,...). Empty when nothing is set.
std::string AuditFilterQuery(const audit::ExportOptions& options);

// RFC 3339 in UTC with microseconds: 2026-11-27T10:00:00.123456Z.
std::string FormatTimeUs(std::int64_t time_us);

// `signet audit find FILE...|--digest HEX (--socket ADMIN_SOCK | --log DIR) [--json]`
// (audit_find_command.cc). Registered under `signet audit` by MakeAuditCommand's command.
std::unique_ptr<Command> MakeAuditFindCommand();

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_AUDIT_QUERY_H_
