// Policy::Evaluate: default deny, principal kinds, constraints, approvals and rule order;
// Policy::MayApprove.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

#include "appliance/policy/policy.h"

namespace signet::policy {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kFingerprint =
    "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

std::shared_ptr<const Policy> MustParse(std::string_view text) {
  auto policy = Policy::Parse(text, "test.toml");
  EXPECT_TRUE(policy.has_value()) << policy.error();
  return policy.value_or(nullptr);
}

Principal User(std::string name, std::vector<std::string> groups = {}) {
  return Principal{.uid = 1000, .user = std::move(name), .groups = std::move(groups)};
}

SignRequest Request(Principal who, std::string key, std::size_t items = 1) {
  return SignRequest{
      .principal = std::move(who), .key = std::move(key), .tool = "signet", .items = items};
}

TEST(EvaluateTest, EmptyPolicyDeniesEverything) {
  auto policy = MustParse("");
  ASSERT_NE(policy, nullptr);
  const Verdict verdict = policy->Evaluate(Request(User("bob"), "release"));
  EXPECT_EQ(verdict.decision, Decision::kDeny);
  EXPECT_EQ(verdict.rule, "");
  EXPECT_EQ(verdict.reason, "no rule lets user:bob sign with key release");
}

TEST(EvaluateTest, DefaultDenyWhenNoRuleApplies) {
  auto policy = MustParse(R"(
[[rule]]
name = "ci"
keys = ["default"]
principals = ["user:alice"]
)");
  ASSERT_NE(policy, nullptr);
  EXPECT_TRUE(policy->Evaluate(Request(User("alice"), "default")).allowed());
  Verdict other_key = policy->Evaluate(Request(User("alice"), "release"));
  EXPECT_EQ(other_key.decision, Decision::kDeny);
  EXPECT_EQ(other_key.reason, "no rule lets user:alice sign with key release");
  Verdict other_user = policy->Evaluate(Request(User("bob"), "default"));
  EXPECT_EQ(other_user.decision, Decision::kDeny);
  EXPECT_EQ(other_user.rule, "");
  Verdict anonymous = policy->Evaluate(Request(Principal{}, "default"));
  EXPECT_EQ(anonymous.reason, "no rule lets anonymous sign with key default");
}

TEST(EvaluateTest, AllowNamesTheRule) {
  auto policy = MustParse(R"(
[[rule]]
name = "ci"
keys = ["release-*"]
principals = ["user:alice"]
)");
  ASSERT_NE(policy, nullptr);
  const Verdict verdict = policy->Evaluate(Request(User("alice"), "release-2024"));
  EXPECT_EQ(verdict.decision, Decision::kAllow);
  EXPECT_EQ(verdict.rule, "ci");
  EXPECT_EQ(verdict.reason, "allowed by rule ci");
}

struct PrincipalCase {
  std::string spec;
  Principal matching;
  Principal other;
};

TEST(EvaluateTest, EachPrincipalKindMatchesAndDoesNot) {
  const std::string upper_colon_fingerprint = [] {
    std::string out;
    for (std::size_t i = 0; i < kFingerprint.size(); i += 2) {
      if (i > 0) {
        out += ':';
      }
      out += static_cast<char>(std::toupper(kFingerprint[i]));
      out += static_cast<char>(std::toupper(kFingerprint[i + 1]));
    }
    return out;
  }();
  const PrincipalCase cases[] = {
      {"user:alice", User("alice"), User("alicia")},
      {"uid:1001", Principal{.uid = 1001}, Principal{.uid = 1002}},
      {"group:ci", User("x", {"wheel", "ci"}), User("x", {"wheel", "cid"})},
      {"cert-subject:CN=builder-*,O=Example", Principal{.cert_subject = "CN=builder-3,O=Example"},
       Principal{.cert_subject = "CN=builder-3,O=Evil,O=Example"}},
      {"cert-fingerprint:" + upper_colon_fingerprint,
       Principal{.cert_fingerprint = std::string(kFingerprint)},
       Principal{.cert_fingerprint = std::string(64, 'a')}},
      {std::string("cert-fingerprint:") + std::string(kFingerprint),
       Principal{.cert_fingerprint = upper_colon_fingerprint}, Principal{}},
  };
  for (const PrincipalCase& c : cases) {
    SCOPED_TRACE(c.spec);
    auto policy =
        MustParse("[[rule]]\nname = \"r\"\nkeys = [\"k\"]\nprincipals = [\"" + c.spec + "\"]\n");
    ASSERT_NE(policy, nullptr);
    EXPECT_TRUE(policy->Evaluate(Request(c.matching, "k")).allowed());
    EXPECT_EQ(policy->Evaluate(Request(c.other, "k")).decision, Decision::kDeny);
  }
}

TEST(EvaluateTest, UserPatternNeverMatchesAnEmptyUser) {
  auto parsed = PrincipalPattern::Parse("uid:0");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_FALSE(parsed->Matches(Principal{}));
  EXPECT_TRUE(parsed->Matches(Principal{.uid = 0}));
  EXPECT_EQ(parsed->ToString(), "uid:0");
}

TEST(EvaluateTest, PrincipalNamePrefersUserThenUidThenCertificate) {
  EXPECT_EQ(PrincipalName(User("bob")), "user:bob");
  EXPECT_EQ(PrincipalName(Principal{.uid = 7}), "uid:7");
  EXPECT_EQ(PrincipalName(Principal{.cert_subject = "CN=x", .cert_fingerprint = "ab"}),
            "cert-subject:CN=x");
  EXPECT_EQ(PrincipalName(Principal{.cert_fingerprint = "ab"}), "cert-fingerprint:ab");
}

constexpr std::string_view kConstrained = R"(
[[rule]]
name = "ci"
keys = ["default"]
principals = ["group:ci"]
tools = ["signet", "signet-*"]
artifacts = ["dist/*.tar.gz", "*.rpm"]
max_items = 1000
)";

TEST(EvaluateTest, ToolRefusalNamesRuleAndAllowedTools) {
  auto policy = MustParse(kConstrained);
  ASSERT_NE(policy, nullptr);
  SignRequest request = Request(User("bob", {"ci"}), "default");
  request.tool = "signet-ci";
  EXPECT_TRUE(policy->Evaluate(request).allowed());
  request.tool = "curl";
  const Verdict verdict = policy->Evaluate(request);
  EXPECT_EQ(verdict.decision, Decision::kDeny);
  EXPECT_EQ(verdict.rule, "ci");
  EXPECT_EQ(verdict.reason, "tool 'curl' is not allowed by rule ci (allowed: signet, signet-*)");
}

TEST(EvaluateTest, ArtifactRefusalNamesTheArtifact) {
  auto policy = MustParse(kConstrained);
  ASSERT_NE(policy, nullptr);
  SignRequest request = Request(User("bob", {"ci"}), "default", 3);
  request.artifact_names = {"dist/a.tar.gz", "el9/b.rpm", "c.rpm"};
  EXPECT_TRUE(policy->Evaluate(request).allowed());
  request.artifact_names.push_back("dist/sub/x.tar.gz");
  const Verdict verdict = policy->Evaluate(request);
  EXPECT_EQ(verdict.decision, Decision::kDeny);
  EXPECT_EQ(verdict.rule, "ci");
  EXPECT_EQ(verdict.reason,
            "artifact name 'dist/sub/x.tar.gz' is not allowed by rule ci (allowed: "
            "dist/*.tar.gz, *.rpm)");
  request.artifact_names = {"evil\nname"};
  EXPECT_THAT(policy->Evaluate(request).reason, HasSubstr("'evil\\nname'"));
}

TEST(EvaluateTest, TooManyItems) {
  auto policy = MustParse(kConstrained);
  ASSERT_NE(policy, nullptr);
  EXPECT_TRUE(policy->Evaluate(Request(User("bob", {"ci"}), "default", 1000)).allowed());
  const Verdict verdict = policy->Evaluate(Request(User("bob", {"ci"}), "default", 5000));
  EXPECT_EQ(verdict.decision, Decision::kDeny);
  EXPECT_EQ(verdict.rule, "ci");
  EXPECT_EQ(verdict.reason, "too many items: 5000 > max_items 1000 of rule ci; split the request");
}

TEST(EvaluateTest, DefaultMaxItems) {
  auto policy = MustParse("[[rule]]\nname = \"r\"\nkeys = [\"*\"]\nprincipals = [\"user:a\"]\n");
  ASSERT_NE(policy, nullptr);
  EXPECT_EQ(policy->rules().at(0).max_items, kDefaultMaxItems);
  EXPECT_TRUE(policy->Evaluate(Request(User("a"), "k", kDefaultMaxItems)).allowed());
  EXPECT_FALSE(policy->Evaluate(Request(User("a"), "k", kDefaultMaxItems + 1)).allowed());
}

TEST(EvaluateTest, ApprovalRuleNeedsApprovalFromTheApproverRole) {
  auto policy = MustParse(R"(
[[rule]]
name = "release"
keys = ["release"]
principals = ["user:alice"]
approvals = 2
)");
  ASSERT_NE(policy, nullptr);
  const Verdict verdict = policy->Evaluate(Request(User("alice"), "release"));
  EXPECT_EQ(verdict.decision, Decision::kNeedsApproval);
  EXPECT_FALSE(verdict.allowed());
  EXPECT_EQ(verdict.rule, "release");
  EXPECT_EQ(verdict.approvals, 2u);
  EXPECT_EQ(verdict.reason, "rule release requires 2 approvals (from the approver role)");
}

TEST(EvaluateTest, ApprovalRuleNeedsApprovalFromItsApprovers) {
  auto policy = MustParse(R"(
[[rule]]
name = "release"
keys = ["release"]
principals = ["user:alice"]
approvals = 1
approvers = ["user:bob", "group:release-managers",
             "cert-fingerprint:AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12"]
)");
  ASSERT_NE(policy, nullptr);
  const Verdict verdict = policy->Evaluate(Request(User("alice"), "release"));
  EXPECT_EQ(verdict.decision, Decision::kNeedsApproval);
  EXPECT_EQ(verdict.rule, "release");
  EXPECT_EQ(verdict.approvals, 1u);
  EXPECT_EQ(verdict.reason,
            "rule release requires 1 approval (from user:bob, "
            "group:release-managers, cert-fingerprint:" +
                std::string(kFingerprint) + ")");
}

TEST(EvaluateTest, ApprovalRuleThatRefusesDenies) {
  auto policy = MustParse(R"(
[[rule]]
name = "release"
keys = ["release"]
principals = ["user:alice"]
tools = ["signet"]
approvals = 2
)");
  ASSERT_NE(policy, nullptr);
  SignRequest request = Request(User("alice"), "release");
  request.tool = "curl";
  const Verdict verdict = policy->Evaluate(request);
  EXPECT_EQ(verdict.decision, Decision::kDeny);
  EXPECT_EQ(verdict.rule, "release");
  EXPECT_EQ(verdict.reason, "tool 'curl' is not allowed by rule release (allowed: signet)");
}

constexpr std::string_view kOrdered = R"(
[[rule]]
name = "narrow"
keys = ["release"]
principals = ["group:ci"]
tools = ["signet"]
max_items = 10

[[rule]]
name = "held"
keys = ["release"]
principals = ["user:carol"]
max_items = 10
approvals = 1

[[rule]]
name = "broad"
keys = ["*"]
principals = ["group:ci", "user:carol"]
max_items = 100
)";

TEST(EvaluateTest, FirstPassingApplyingRuleDecides) {
  auto policy = MustParse(kOrdered);
  ASSERT_NE(policy, nullptr);
  // "narrow" applies and passes.
  EXPECT_EQ(policy->Evaluate(Request(User("bob", {"ci"}), "release", 5)).rule, "narrow");
  // "narrow" applies but refuses (items); "broad" applies and passes: allowed by broad.
  const Verdict broad = policy->Evaluate(Request(User("bob", {"ci"}), "release", 50));
  EXPECT_TRUE(broad.allowed());
  EXPECT_EQ(broad.rule, "broad");
  // Both refuse: the first applying rule is named, with its reason.
  const Verdict both = policy->Evaluate(Request(User("bob", {"ci"}), "release", 500));
  EXPECT_EQ(both.decision, Decision::kDeny);
  EXPECT_EQ(both.rule, "narrow");
  EXPECT_EQ(both.reason,
            "too many items: 500 > max_items 10 of rule narrow; split the request (1 later "
            "applying rule refuses too)");
  // A passing rule that needs approval decides, even when a later rule would allow.
  const Verdict held = policy->Evaluate(Request(User("carol"), "release"));
  EXPECT_EQ(held.decision, Decision::kNeedsApproval);
  EXPECT_EQ(held.rule, "held");
  EXPECT_EQ(held.approvals, 1u);
  EXPECT_EQ(held.reason, "rule held requires 1 approval (from the approver role)");
  // When "held" refuses (items), "broad" still gets its turn: the hold is not a denial.
  const Verdict past_held = policy->Evaluate(Request(User("carol"), "release", 50));
  EXPECT_TRUE(past_held.allowed());
  EXPECT_EQ(past_held.rule, "broad");
  // For another key "held" does not apply.
  EXPECT_EQ(policy->Evaluate(Request(User("carol"), "other")).rule, "broad");
}

constexpr std::string_view kApprovals = R"(
[[rule]]
name = "named"
keys = ["release"]
principals = ["user:alice"]
approvals = 2
approvers = ["user:bob", "uid:1001", "group:release-managers"]

[[rule]]
name = "by-role"
keys = ["nightly"]
principals = ["user:alice"]
approvals = 1

[roles]
approver = ["group:approvers", "user:dave"]
)";

TEST(MayApproveTest, RuleApproversDecideWhenNamed) {
  auto policy = MustParse(kApprovals);
  ASSERT_NE(policy, nullptr);
  const Rule* named = policy->FindRule("named");
  ASSERT_NE(named, nullptr);
  EXPECT_TRUE(policy->MayApprove(*named, User("bob")));
  EXPECT_TRUE(policy->MayApprove(*named, Principal{.uid = 1001}));
  EXPECT_TRUE(policy->MayApprove(*named, User("erin", {"wheel", "release-managers"})));
  EXPECT_FALSE(policy->MayApprove(*named, User("erin", {"wheel"})));
  EXPECT_FALSE(policy->MayApprove(*named, Principal{}));
  // The approver role does not stand in for a rule's own list.
  EXPECT_FALSE(policy->MayApprove(*named, User("dave")));
  EXPECT_FALSE(policy->MayApprove(*named, User("erin", {"approvers"})));
  // Nor does being listed grant the role: that is the caller's check (see MayApprove).
  EXPECT_FALSE(policy->HasRole(User("bob"), Role::kApprover));
}

TEST(MayApproveTest, ApproverRoleDecidesWhenTheRuleNamesNone) {
  auto policy = MustParse(kApprovals);
  ASSERT_NE(policy, nullptr);
  const Rule* by_role = policy->FindRule("by-role");
  ASSERT_NE(by_role, nullptr);
  ASSERT_TRUE(by_role->approvers.empty());
  EXPECT_TRUE(policy->MayApprove(*by_role, User("dave")));
  EXPECT_TRUE(policy->MayApprove(*by_role, User("erin", {"approvers"})));
  EXPECT_FALSE(policy->MayApprove(*by_role, User("bob")));
  EXPECT_FALSE(policy->MayApprove(*by_role, Principal{.uid = 1001}));
  EXPECT_FALSE(policy->MayApprove(*by_role, Principal{}));
  // Without an approver role nobody may approve such a rule.
  auto no_role = MustParse(
      "[[rule]]\nname = \"r\"\nkeys = [\"k\"]\nprincipals = [\"user:a\"]\n"
      "approvals = 1\n");
  ASSERT_NE(no_role, nullptr);
  EXPECT_FALSE(no_role->MayApprove(no_role->rules().at(0), User("dave")));
}

TEST(EvaluateTest, KeyGlobsAndRoles) {
  auto policy = MustParse(R"(
[[rule]]
name = "r"
keys = ["release-[0-9]*", "default"]
principals = ["uid:0"]

[roles]
admin = ["user:alice", "group:signet-admin"]
auditor = ["uid:1005"]
)");
  ASSERT_NE(policy, nullptr);
  EXPECT_TRUE(policy->Evaluate(Request(Principal{.uid = 0}, "release-1")).allowed());
  EXPECT_FALSE(policy->Evaluate(Request(Principal{.uid = 0}, "release-x")).allowed());
  EXPECT_TRUE(policy->HasRole(User("alice"), Role::kAdmin));
  EXPECT_TRUE(policy->HasRole(User("zed", {"signet-admin"}), Role::kAdmin));
  EXPECT_FALSE(policy->HasRole(User("alice"), Role::kAuditor));
  EXPECT_TRUE(policy->HasRole(Principal{.uid = 1005}, Role::kAuditor));
  EXPECT_FALSE(policy->HasRole(User("alice"), Role::kApprover));
  EXPECT_TRUE(policy->RoleMembers(Role::kApprover).empty());
  EXPECT_EQ(policy->RoleMembers(Role::kAdmin).size(), 2u);
}

TEST(EvaluateTest, DecisionAndRoleNames) {
  EXPECT_EQ(DecisionName(Decision::kNeedsApproval), "needs-approval");
  EXPECT_EQ(RoleName(Role::kApprover), "approver");
  ASSERT_TRUE(ParseRole("auditor").has_value());
  EXPECT_EQ(*ParseRole("auditor"), Role::kAuditor);
  EXPECT_FALSE(ParseRole("root").has_value());
}

}  // namespace
}  // namespace signet::policy
