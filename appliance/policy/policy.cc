// Policy: the parsed rules, their version hash, and the evaluator.
#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "appliance/policy/internal/parse.h"
#include "appliance/policy/internal/text.h"
#include "appliance/policy/policy.h"

namespace signet::policy {
namespace {

using internal::GlobMatch;
using internal::GlobSyntax;
using internal::Printable;
using internal::Quoted;

Result<std::string> Sha256Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    return MakeError(OpenSslError("SHA-256 of the policy text"));
  }
  return HexEncode({digest, length});
}

bool AnyGlob(const std::vector<std::string>& patterns, std::string_view name, GlobSyntax syntax) {
  for (const std::string& pattern : patterns) {
    if (GlobMatch(pattern, name, syntax)) {
      return true;
    }
  }
  return false;
}

std::string JoinPatterns(const std::vector<std::string>& patterns) {
  std::string joined;
  for (const std::string& pattern : patterns) {
    if (!joined.empty()) {
      joined += ", ";
    }
    joined += Printable(pattern);
    if (joined.size() > 300) {
      joined += ", ...";
      break;
    }
  }
  return joined;
}

// Why `rule`, which applies to `request`, refuses it; empty when it does not.
std::string Refusal(const Rule& rule, const SignRequest& request) {
  if (!rule.tools.empty() && !AnyGlob(rule.tools, request.tool, GlobSyntax::kPlain)) {
    return "tool " + Quoted(request.tool) + " is not allowed by rule " + rule.name +
           " (allowed: " + JoinPatterns(rule.tools) + ")";
  }
  if (request.items > rule.max_items) {
    return "too many items: " + std::to_string(request.items) + " > max_items " +
           std::to_string(rule.max_items) + " of rule " + rule.name + "; split the request";
  }
  if (!rule.artifacts.empty()) {
    for (const std::string& name : request.artifact_names) {
      if (!AnyGlob(rule.artifacts, name, GlobSyntax::kPath)) {
        return "artifact name " + Quoted(name) + " is not allowed by rule " + rule.name +
               " (allowed: " + JoinPatterns(rule.artifacts) + ")";
      }
    }
  }
  return {};
}

// The sentence a kNeedsApproval verdict gives: how many approvals, and from whom.
std::string ApprovalReason(const Rule& rule) {
  std::string from;
  if (rule.approvers.empty()) {
    from = "the approver role";
  } else {
    std::vector<std::string> names;
    names.reserve(rule.approvers.size());
    for (const PrincipalPattern& approver : rule.approvers) {
      names.push_back(approver.ToString());
    }
    from = JoinPatterns(names);
  }
  return "rule " + rule.name + " requires " + std::to_string(rule.approvals) + " approval" +
         (rule.approvals == 1 ? "" : "s") + " (from " + from + ")";
}

bool AnyPrincipal(const std::vector<PrincipalPattern>& patterns, const Principal& principal) {
  for (const PrincipalPattern& pattern : patterns) {
    if (pattern.Matches(principal)) {
      return true;
    }
  }
  return false;
}

}  // namespace

Policy::Policy(Token, std::string text, std::string source_name, std::string version,
               std::vector<Rule> rules, std::map<Role, std::vector<PrincipalPattern>> roles)
    : text_(std::move(text)),
      source_name_(std::move(source_name)),
      version_(std::move(version)),
      rules_(std::move(rules)),
      roles_(std::move(roles)) {
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    rule_index_.emplace(rules_[i].name, i);
  }
}

Result<std::shared_ptr<const Policy>> Policy::Parse(std::string_view toml_text,
                                                    std::string_view source_name) {
  SIGNET_ASSIGN_OR_RETURN(internal::ParsedPolicy parsed,
                          internal::ParsePolicyToml(toml_text, source_name));
  SIGNET_ASSIGN_OR_RETURN(std::string version, Sha256Hex(toml_text));
  return std::make_shared<const Policy>(Token(), std::string(toml_text), std::string(source_name),
                                        std::move(version), std::move(parsed.rules),
                                        std::move(parsed.roles));
}

const Rule* Policy::FindRule(std::string_view name) const {
  const auto it = rule_index_.find(name);
  return it == rule_index_.end() ? nullptr : &rules_[it->second];
}

Verdict Policy::Evaluate(const SignRequest& request) const {
  const Rule* first_refusing = nullptr;
  std::string first_reason;
  std::size_t refusing = 0;
  for (const Rule& rule : rules_) {
    if (!AnyGlob(rule.keys, request.key, GlobSyntax::kPlain) ||
        !AnyPrincipal(rule.principals, request.principal)) {
      continue;
    }
    std::string reason = Refusal(rule, request);
    if (reason.empty()) {
      if (rule.approvals > 0) {
        // Decides even when a later rule would allow: the author put the hold first on purpose.
        return Verdict{.decision = Decision::kNeedsApproval,
                       .rule = rule.name,
                       .reason = ApprovalReason(rule),
                       .approvals = rule.approvals};
      }
      return Verdict{.decision = Decision::kAllow,
                     .rule = rule.name,
                     .reason = "allowed by rule " + rule.name};
    }
    if (first_refusing == nullptr) {
      first_refusing = &rule;
      first_reason = std::move(reason);
    }
    ++refusing;
  }
  if (first_refusing != nullptr) {
    if (refusing > 1) {
      first_reason += " (" + std::to_string(refusing - 1) + " later applying rule" +
                      (refusing == 2 ? " refuses" : "s refuse") + " too)";
    }
    return Verdict{.decision = Decision::kDeny,
                   .rule = first_refusing->name,
                   .reason = std::move(first_reason),
                   .approvals = first_refusing->approvals};
  }
  return Verdict{.decision = Decision::kDeny,
                 .rule = "",
                 .reason = "no rule lets " + Printable(PrincipalName(request.principal)) +
                           " sign with key " + Printable(request.key)};
}

bool Policy::MayApprove(const Rule& rule, const Principal& approver) const {
  if (rule.approvers.empty()) {
    return HasRole(approver, Role::kApprover);
  }
  return AnyPrincipal(rule.approvers, approver);
}

bool Policy::HasRole(const Principal& principal, Role role) const {
  return AnyPrincipal(RoleMembers(role), principal);
}

const std::vector<PrincipalPattern>& Policy::RoleMembers(Role role) const {
  static const std::vector<PrincipalPattern> kNone;
  const auto it = roles_.find(role);
  return it == roles_.end() ? kNone : it->second;
}

}  // namespace signet::policy
