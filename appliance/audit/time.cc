// Times for the export and record filters (ParseTimeUs).
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <string>
#include <string_view>

#include "appliance/audit/audit.h"

namespace signet::audit {
namespace {

// Reads exactly `count` decimal digits at `*pos`.
bool TakeDigits(std::string_view text, std::size_t* pos, std::size_t count, int* value) {
  if (text.size() - *pos < count) {
    return false;
  }
  int v = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const char c = text[*pos + i];
    if (c < '0' || c > '9') {
      return false;
    }
    v = v * 10 + (c - '0');
  }
  *pos += count;
  *value = v;
  return true;
}

bool TakeChar(std::string_view text, std::size_t* pos, std::string_view one_of) {
  if (*pos < text.size() && one_of.find(text[*pos]) != std::string_view::npos) {
    ++*pos;
    return true;
  }
  return false;
}

}  // namespace

Result<std::int64_t> ParseTimeUs(std::string_view text) {
  auto bad = [](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(why));
  };
  constexpr std::int64_t kUs = 1'000'000;
  if (text.empty() || text.size() > 64) {
    return bad("is not a time");
  }
  if (text.starts_with('@')) {
    std::string_view digits = text.substr(1);
    const bool negative = digits.starts_with('-');
    if (negative) {
      digits.remove_prefix(1);
    }
    std::int64_t seconds = 0;
    const char* end = digits.data() + digits.size();
    auto [ptr, ec] = std::from_chars(digits.data(), end, seconds);
    if (digits.empty() || digits.front() == '-' || digits.front() == '+' || ptr != end ||
        (ec != std::errc() && ec != std::errc::result_out_of_range)) {
      return bad("is not a time");
    }
    if (ec == std::errc::result_out_of_range || seconds > INT64_MAX / kUs) {
      return bad("is out of range");
    }
    return (negative ? -seconds : seconds) * kUs;
  }

  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), 'T' and 'Z' in either case (RFC 3339 §5.6).
  std::size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!TakeDigits(text, &pos, 4, &year) || !TakeChar(text, &pos, "-") ||
      !TakeDigits(text, &pos, 2, &month) || !TakeChar(text, &pos, "-") ||
      !TakeDigits(text, &pos, 2, &day)) {
    return bad("is not a time");
  }
  if (pos == text.size()) {
    return bad("has no time of day (add e.g. T00:00:00Z)");
  }
  if (!TakeChar(text, &pos, "Tt") || !TakeDigits(text, &pos, 2, &hour) ||
      !TakeChar(text, &pos, ":") || !TakeDigits(text, &pos, 2, &minute) ||
      !TakeChar(text, &pos, ":") || !TakeDigits(text, &pos, 2, &second)) {
    return bad("is not a time");
  }
  std::int64_t nanos = 0;
  if (TakeChar(text, &pos, ".")) {
    std::size_t digits = 0;
    for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos, ++digits) {
      if (digits == 9) {
        return bad("has more than 9 fractional digits");
      }
      nanos = nanos * 10 + (text[pos] - '0');
    }
    if (digits == 0) {
      return bad("is not a time");
    }
    for (; digits < 9; ++digits) {
      nanos *= 10;
    }
  }
  int offset_seconds = 0;
  if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int sign = text[pos++] == '-' ? -1 : 1;
    int offset_hours = 0, offset_minutes = 0;
    if (!TakeDigits(text, &pos, 2, &offset_hours) || !TakeChar(text, &pos, ":") ||
        !TakeDigits(text, &pos, 2, &offset_minutes) || offset_hours > 23 || offset_minutes > 59) {
      return bad("has a malformed offset (+HH:MM or -HH:MM)");
    }
    offset_seconds = sign * (offset_hours * 3600 + offset_minutes * 60);
  } else if (!TakeChar(text, &pos, "Zz")) {
    return bad(pos == text.size() ? "has no time zone (add Z for UTC, or an offset such as +01:00)"
                                  : "is not a time");
  }
  if (pos != text.size()) {
    return bad("is not a time");
  }
  const std::chrono::year_month_day date{std::chrono::year(year),
                                         std::chrono::month(static_cast<unsigned>(month)),
                                         std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) {
    return bad("is not a date");
  }
  if (hour > 23 || minute > 59 || second > 59) {
    return bad("is not a time of day (leap seconds are not accepted)");
  }
  // Years 0000-9999 keep every value here far from overflow.
  const std::int64_t days = std::chrono::sys_days(date).time_since_epoch().count();
  const std::int64_t seconds =
      days * 86400 + hour * 3600 + minute * 60 + second - std::int64_t{offset_seconds};
  return seconds * kUs + (nanos + 999) / 1000;
}

}  // namespace signet::audit
