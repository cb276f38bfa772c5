// appliance/policy/internal/text.h: globs and message quoting shared by the policy sources.
#ifndef SIGNET_APPLIANCE_POLICY_INTERNAL_TEXT_H_
#define SIGNET_APPLIANCE_POLICY_INTERNAL_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "appliance/base/base.h"

namespace signet::policy::internal {

// Which character, if any, `*`, `?` and sets refuse to match (see policy.h, "Globs").
enum class GlobSyntax : std::uint8_t {
  kPlain,    // key and tool names: no separator
  kPath,     // artifact names: '/'; a glob without '/' matches the last component
  kSubject,  // certificate subjects: ','
};

// Checks that `pattern` is a well-formed glob. Errors: kInvalidArgument saying what is wrong
// ("unclosed '[' at offset 3", "trailing '\\'").
[[nodiscard]] Status CheckGlob(std::string_view pattern);

// True when `pattern` matches all of `name`. A malformed pattern matches nothing. Runs in
// O(len(pattern) * len(name)): no backtracking blow-up on hostile names.
bool GlobMatch(std::string_view pattern, std::string_view name, GlobSyntax syntax);

// `text` made safe for a message: control characters, backslashes, quotes and bytes that are not
// UTF-8 are escaped (\n, \x1b, ...) and text past 200 bytes is cut with "...".
std::string Printable(std::string_view text);
// Printable(text) in single quotes.
std::string Quoted(std::string_view text);

}  // namespace signet::policy::internal

#endif  // SIGNET_APPLIANCE_POLICY_INTERNAL_TEXT_H_
