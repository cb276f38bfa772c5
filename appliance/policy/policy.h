// appliance/policy/policy.h: who may sign what. A policy is a TOML file of rules; it denies by
// default and every evaluation names the rule that decided and why.
//
// Caveats:
// - Deny by default: a request that no rule lets through is refused. Sign only on
//   Decision::kAllow. kNeedsApproval is not an allow: the caller must hold such a request until
//   the deciding rule's approvals are given (see MayApprove), and never sign on it; a caller that
//   cannot hold requests must treat it as a denial.
// - Rules are evaluated in file order (see "Evaluation" below). Order matters: put narrow rules
//   before broad ones.
// - Tool names and artifact names are what the client claims. They keep honest clients inside
//   their lane and label the audit record; they are no defence against a principal that lies.
//   Keys and principals are the security boundary.
// - A Policy is immutable once parsed: share it as std::shared_ptr<const Policy> across threads
//   and swap the pointer to reload. A reload that fails to parse leaves the caller holding the
//   previous policy (Parse has no side effects).
// - Policy::Evaluate is pure: rate limits need state across requests and live in RateLimiter,
//   which is keyed by rule name, so counters survive a reload that keeps the rule's name.
// - Reasons in verdicts quote client-supplied strings with control characters escaped and long
//   values cut, so they are safe to log and to show.
//
// The file (all keys other than name, keys and principals are optional):
//
//   [[rule]]
//   name = "ci"                                # [A-Za-z0-9][A-Za-z0-9._-]*, unique, <= 128 chars
//   description = "CI signs release candidates"
//   keys = ["default", "release-*"]            # key name globs
//   principals = ["group:ci", "user:alice", "uid:1001",
//                 "cert-subject:CN=builder-*,O=Example",
//                 "cert-fingerprint:ab12...ef"] # 64 hex digits (SHA-256), ':' allowed, any case
//   tools = ["signet", "signet-*"]             # tool name globs; absent: any tool
//   artifacts = ["dist/**.tar.gz", "*.rpm"]    # artifact name globs; absent: any name
//   max_items = 1000                           # items per request; default 10000
//   rate_per_hour = 50000                      # items per principal per hour; absent: unlimited
//   approvals = 0                              # 0 to 16; > 0: each request waits for that many
//                                              # distinct approvals (Decision::kNeedsApproval)
//   approvers = ["user:bob", "uid:1001",       # who may approve: principal patterns, as in
//                "group:release-managers"]     # principals; only with approvals > 0; absent:
//                                              # anyone with the approver role
//
//   [roles]                                    # for the admin API; user:, uid: and group: only
//   admin = ["user:alice", "group:signet-admin"]
//   approver = ["group:release-managers"]
//   auditor = ["uid:1005"]
//
// Anything else (an unknown key or table, a wrong type, an empty list, an unknown principal kind,
// a duplicate rule name, a number out of range, a bad glob, approvers without approvals > 0)
// refuses the whole file with "SOURCE:LINE:COL: what is wrong". Limits: text <= 1 MiB, <= 10,000
// rules, strings <= 4 KiB.
//
// Globs: `*` any run of characters, `?` one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`)
// one character of (not of) a set, `\x` the character x, `**` any run of characters including
// the separator below. A glob matches the whole name.
// - Key names and tool names: no separator; `*` matches anything.
// - Artifact names: '/' separates path components. `*`, `?` and sets never match '/'; `**`
//   matches anything including '/'. A glob without '/' matches the last component (as in
//   .gitignore): "*.rpm" matches "x.rpm" and "out/el9/x.rpm"; "dist/*.rpm" matches only
//   "dist/x.rpm"; "dist/**.rpm" matches "dist/a/b/x.rpm".
// - cert-subject: ',' separates RDNs (RFC 4514 form, "CN=x,O=y"). `*` and `?` never match ',',
//   so "CN=builder-*" matches no subject that holds a second RDN: write every RDN.
//
// Evaluation: a rule *applies* to a request when one of its key globs matches the key and one of
// its principals matches the requester. Rules are tried in file order; the first applying rule
// whose tool, artifact and max_items constraints all pass decides: kAllow, or kNeedsApproval when
// it has approvals > 0 (even when a later rule would allow). If rules applied but each refused,
// the verdict is a denial naming the first of them and its reason. If none applied, the verdict
// is "no rule lets PRINCIPAL sign with key KEY" with an empty rule name.
#ifndef SIGNET_APPLIANCE_POLICY_POLICY_H_
#define SIGNET_APPLIANCE_POLICY_POLICY_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "appliance/base/base.h"

namespace signet::policy {

// ---- Identities --------------------------------------------------------------------------------

// (Plain structs here give every member a default initializer, so designated initializers may
// leave any member out.)

// Who is asking. The net layer fills it from SO_PEERCRED (uid, user, groups) or from the client's
// TLS certificate (subject in RFC 4514 form, fingerprint as hex SHA-256 of the certificate).
struct Principal {
  std::optional<std::uint32_t> uid{};
  std::string user{};
  std::vector<std::string> groups{};
  std::string cert_subject{};
  std::string cert_fingerprint{};
  friend bool operator==(const Principal&, const Principal&) = default;
};

// The name messages and rate counters use for `principal`: "user:NAME" when the user is known,
// else "uid:N", else "cert-subject:SUBJECT", else "cert-fingerprint:HEX", else "anonymous".
std::string PrincipalName(const Principal& principal);

// One entry of a rule's `principals` list (or of a role), e.g. "group:ci".
struct PrincipalPattern {
  enum class Kind : std::uint8_t { kUser, kUid, kGroup, kCertSubject, kCertFingerprint };
  Kind kind = Kind::kUser;
  // The part after the prefix. For kCertFingerprint: 64 lower-case hex digits, no colons.
  std::string value{};

  // Parses "user:NAME", "uid:N", "group:NAME", "cert-subject:GLOB", "cert-fingerprint:HEX".
  // Errors: kInvalidArgument saying what is wrong (unknown prefix, empty or malformed value).
  [[nodiscard]] static Result<PrincipalPattern> Parse(std::string_view text);
  // The canonical text: the prefix and value ("cert-fingerprint:" + lower-case hex).
  std::string ToString() const;
  bool Matches(const Principal& principal) const;
  friend bool operator==(const PrincipalPattern&, const PrincipalPattern&) = default;
};

// Roles for the admin API. Members are user:, uid: or group: patterns.
enum class Role : std::uint8_t { kAdmin, kApprover, kAuditor };
std::string_view RoleName(Role role);  // "admin", "approver", "auditor"
[[nodiscard]] Result<Role> ParseRole(std::string_view name);

// ---- Rules and verdicts ------------------------------------------------------------------------

inline constexpr std::uint64_t kDefaultMaxItems = 10'000;
inline constexpr std::uint64_t kMaxMaxItems = 10'000'000;
inline constexpr std::uint64_t kMaxRatePerHour = 1'000'000'000;
inline constexpr std::uint32_t kMaxApprovals = 16;
inline constexpr std::size_t kMaxPolicyBytes = 1 << 20;
inline constexpr std::size_t kMaxRules = 10'000;
inline constexpr std::size_t kMaxStringBytes = 4096;
inline constexpr std::size_t kMaxRuleNameBytes = 128;

// One [[rule]] as parsed (globs are kept as written).
struct Rule {
  std::string name{};
  std::string description{};
  int line = 0;  // where its [[rule]] header is, for explanations
  std::vector<std::string> keys{};
  std::vector<PrincipalPattern> principals{};
  std::vector<std::string> tools{};      // empty: any tool
  std::vector<std::string> artifacts{};  // empty: any artifact name
  std::uint64_t max_items = kDefaultMaxItems;
  std::optional<std::uint64_t> rate_per_hour{};  // unset: unlimited
  std::uint32_t approvals = 0;
  std::vector<PrincipalPattern> approvers{};  // empty: anyone with the approver role
};

// What a client asks to do. `items` is the number of digests to sign; `artifact_names` are the
// names the client gave them (may be fewer than `items`, or empty).
struct SignRequest {
  Principal principal;
  std::string key{};
  std::string tool{};
  std::vector<std::string> artifact_names{};
  std::size_t items = 0;
};

enum class Decision : std::uint8_t { kAllow, kDeny, kNeedsApproval };
std::string_view DecisionName(Decision decision);  // "allow", "deny", "needs-approval"

// The outcome of an evaluation: the decision, the rule that made it (empty when no rule applied)
// and a sentence a person can act on. Only kAllow permits signing; kNeedsApproval means "hold it"
// (see the caveats above).
struct Verdict {
  Decision decision = Decision::kDeny;
  std::string rule{};
  std::string reason{};
  std::uint32_t approvals = 0;  // approvals the deciding rule requires

  bool allowed() const { return decision == Decision::kAllow; }
  friend bool operator==(const Verdict&, const Verdict&) = default;
};

// ---- Policy ------------------------------------------------------------------------------------

// Policy is a parsed, immutable policy file. Thread-safe (const after Parse).
class Policy {
 public:
  // Parses and checks a whole policy. `source_name` (a file name, "admin-api", ...) starts every
  // error message. Errors: kInvalidArgument "SOURCE:LINE:COL: ..." for anything the format above
  // does not allow, or for text over kMaxPolicyBytes.
  [[nodiscard]] static Result<std::shared_ptr<const Policy>> Parse(std::string_view toml_text,
                                                                   std::string_view source_name);

  // Lower-case hex SHA-256 of text(): names this policy in audit records and the admin API.
  const std::string& version() const { return version_; }
  const std::string& text() const { return text_; }
  const std::string& source_name() const { return source_name_; }
  const std::vector<Rule>& rules() const { return rules_; }
  // The rule named `name`, or nullptr.
  const Rule* FindRule(std::string_view name) const;

  // Decides `request` by the rules (see "Evaluation" above), without rate limits. Pure: the same
  // request always gets the same verdict, so it also serves "explain" in the admin API.
  Verdict Evaluate(const SignRequest& request) const;

  // True when `rule` lets `approver` approve the requests it holds: `approver` matches one of
  // rule.approvers or, when the rule names none, holds the approver role in this policy. Pass the
  // rule as the policy in force at approval time has it (FindRule(held_rule_name)).
  // WARNING: this is only the rule's half of the check. The caller must also check that the
  // approver holds the approver role (HasRole(approver, Role::kApprover): being named in
  // rule.approvers does not grant it) and is not the requester (neither the same principal nor
  // the same uid), and must count distinct approvers.
  bool MayApprove(const Rule& rule, const Principal& approver) const;

  // True when `principal` matches a member of `role` in [roles].
  bool HasRole(const Principal& principal, Role role) const;
  const std::vector<PrincipalPattern>& RoleMembers(Role role) const;

  // Parse's way in; not for callers.
  struct Token {
    explicit Token() = default;
  };
  Policy(Token, std::string text, std::string source_name, std::string version,
         std::vector<Rule> rules, std::map<Role, std::vector<PrincipalPattern>> roles);

 private:
  std::string text_;
  std::string source_name_;
  std::string version_;
  std::vector<Rule> rules_;
  std::map<std::string, std::size_t, std::less<>> rule_index_;
  std::map<Role, std::vector<PrincipalPattern>> roles_;
};

// ---- Rate limits -------------------------------------------------------------------------------

// RateLimiter counts items per (rule name, principal) over a sliding hour, in one-minute buckets:
// a charge is allowed when the items charged in the current minute and the 59 before it, plus
// this charge, stay within the rule's rate_per_hour. Thread-safe.
//
// Memory is bounded: at most `max_tracked` (rule, principal) counters (about 300 bytes each); past
// that the least recently charged one is forgotten, and its principal starts from zero. Size it
// above the number of distinct principals that sign within an hour.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kDefaultMaxTracked = 16384;

  explicit RateLimiter(std::size_t max_tracked = kDefaultMaxTracked);
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Charges `items` to `principal` under `rule` when they fit, and returns kAllow; otherwise
  // charges nothing and returns kDeny saying how many are used and when to try again. A rule
  // without rate_per_hour always allows and tracks nothing.
  Verdict Charge(const Rule& rule, const Principal& principal, std::size_t items,
                 Clock::time_point now);
  Verdict Charge(const Rule& rule, const Principal& principal, std::size_t items) {
    return Charge(rule, principal, items, Clock::now());
  }

  // Items charged to `principal` under the rule named `rule` within the hour before `now`.
  std::uint64_t Used(std::string_view rule, const Principal& principal,
                     Clock::time_point now) const;
  // Forgets the counters of rules that `policy` does not have or no longer rate-limits; the others
  // keep counting under the new policy's limits. Call it after a reload.
  void Retain(const Policy& policy);
  // How many (rule, principal) counters are held.
  std::size_t tracked() const;

 private:
  struct Counter;
  using Lru = std::list<std::string>;

  std::size_t max_tracked_;
  mutable std::mutex mu_;
  Lru lru_;  // keys, most recently charged first
  std::unordered_map<std::string, std::unique_ptr<Counter>> counters_;
};

// Authorize is what the sign service runs per request: policy.Evaluate, then, when that allows,
// the deciding rule's rate limit. The verdict names the rule either way. A kNeedsApproval verdict
// is returned as it is, with nothing charged.
Verdict Authorize(const Policy& policy, RateLimiter& limiter, const SignRequest& request,
                  RateLimiter::Clock::time_point now);

}  // namespace signet::policy

#endif  // SIGNET_APPLIANCE_POLICY_POLICY_H_
