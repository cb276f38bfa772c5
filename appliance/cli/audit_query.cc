// Query strings and times for the admin API's audit endpoints (internal/audit_query.h).
#include "appliance/cli/internal/audit_query.h"

#include <fmt/format.h>

#include <chrono>

namespace signet::cli {

std::string QueryEscape(std::string_view value) {
  constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0x0f]);
    }
  }
  return out;
}

std::string AuditFilterQuery(const audit::ExportOptions& options) {
  std::string query;
  auto add = [&](std::string_view name, std::string_view value) {
    query += query.empty() ? "" : "&";
    query += name;
    query += '=';
    query += QueryEscape(value);
  };
  if (options.from_seq != 0) {
    add("from_seq", std::to_string(options.from_seq));
  }
  if (options.to_seq) {
    add("to_seq", std::to_string(*options.to_seq));
  }
  if (options.from_time_us) {
    add("from_time", std::to_string(*options.from_time_us));
  }
  if (options.to_time_us) {
    add("to_time", std::to_string(*options.to_time_us));
  }
  if (!options.key.empty()) {
    add("key", options.key);
  }
  if (!options.identity.empty()) {
    add("identity", options.identity);
  }
  if (!options.digest.empty()) {
    add("digest", options.digest);
  }
  if (!options.full_proofs) {
    add("proofs", "false");
  }
  if (!options.consistency_from.empty()) {
    std::string sizes;
    for (const std::uint64_t size : options.consistency_from) {
      sizes += (sizes.empty() ? "" : ",") + std::to_string(size);
    }
    add("consistency_from", sizes);
  }
  return query;
}

std::string FormatTimeUs(std::int64_t time_us) {
  using std::chrono::microseconds;
  const std::chrono::sys_time<microseconds> time{microseconds(time_us)};
  const auto day = std::chrono::floor<std::chrono::days>(time);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss<microseconds> clock{time - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", static_cast<int>(date.year()),
                     static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                     clock.hours().count(), clock.minutes().count(), clock.seconds().count(),
                     clock.subseconds().count());
}

}  // namespace signet::cli
