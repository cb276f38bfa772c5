// appliance/policy/internal/parse.h: the TOML policy reader behind Policy::Parse.
#ifndef SIGNET_APPLIANCE_POLICY_INTERNAL_PARSE_H_
#define SIGNET_APPLIANCE_POLICY_INTERNAL_PARSE_H_

#include <map>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"
#include "appliance/policy/policy.h"

namespace signet::policy::internal {

struct ParsedPolicy {
  std::vector<Rule> rules;
  std::map<Role, std::vector<PrincipalPattern>> roles;
};

// Reads and checks policy text (format in policy.h). Errors: kInvalidArgument holding one line
// "SOURCE:LINE:COL: what is wrong" per problem found (at most 20), earliest first.
[[nodiscard]] Result<ParsedPolicy> ParsePolicyToml(std::string_view text,
                                                   std::string_view source_name);

}  // namespace signet::policy::internal

#endif  // SIGNET_APPLIANCE_POLICY_INTERNAL_PARSE_H_
