// Policy::Parse: every kind of refusal with its line, limits, and the version hash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/policy/policy.h"

namespace signet::policy {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The error message Parse gives `text`, or "" when it parses.
std::string ParseError(std::string_view text) {
  auto policy = Policy::Parse(text, "policy.toml");
  if (policy.has_value()) {
    return "";
  }
  EXPECT_EQ(policy.error().code(), ErrorCode::kInvalidArgument);
  return policy.error().message();
}

constexpr std::string_view kHead = "[[rule]]\nname = \"ci\"\nkeys = [\"default\"]\n";  // lines 1-3

// A rule whose line 4 is `line4`.
std::string WithLine4(std::string_view line4) {
  return std::string(kHead) + std::string(line4) + "\nprincipals = [\"user:alice\"]\n";
}

TEST(ParseTest, FullExampleParses) {
  auto policy = Policy::Parse(R"(# a comment
[[rule]]
name = "ci"
description = "CI signs release candidates"
keys = ["default", "release-*"]
principals = ["group:ci", "user:alice", "uid:1001", "cert-subject:CN=builder-*,O=Example",
              "cert-fingerprint:AB:12:cd:34:ef:56:ab:12:cd:34:ef:56:ab:12:cd:34:ef:56:ab:12:cd:34:ef:56:ab:12:cd:34:ef:56:ab:12"]
tools = ["signet", "signet-*"]
artifacts = ["dist/*.tar.gz", "*.rpm"]
max_items = 1000
rate_per_hour = 50000
approvals = 0

[[rule]]
name = "release.v2_x"
keys = ["release"]
principals = ["user:bob"]
approvals = 2
approvers = ["user:carol", "group:release-managers"]

[roles]
admin = ["user:alice", "group:signet-admin"]
approver = ["group:release-managers"]
auditor = ["uid:1005"]
)",
                              "policy.toml");
  ASSERT_TRUE(policy.has_value()) << policy.error();
  const auto& rules = (*policy)->rules();
  ASSERT_EQ(rules.size(), 2u);
  const Rule& ci = rules[0];
  EXPECT_EQ(ci.name, "ci");
  EXPECT_EQ(ci.line, 2);
  EXPECT_EQ(ci.description, "CI signs release candidates");
  EXPECT_EQ(ci.keys, (std::vector<std::string>{"default", "release-*"}));
  ASSERT_EQ(ci.principals.size(), 5u);
  EXPECT_EQ(ci.principals[4].ToString(),
            "cert-fingerprint:ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12");
  EXPECT_EQ(ci.principals[3].kind, PrincipalPattern::Kind::kCertSubject);
  EXPECT_EQ(ci.tools.size(), 2u);
  EXPECT_EQ(ci.artifacts.size(), 2u);
  EXPECT_EQ(ci.max_items, 1000u);
  EXPECT_EQ(ci.rate_per_hour, 50000u);
  EXPECT_EQ(ci.approvals, 0u);
  EXPECT_TRUE(ci.approvers.empty());
  EXPECT_EQ(rules[1].name, "release.v2_x");
  EXPECT_EQ(rules[1].line, 14);
  EXPECT_FALSE(rules[1].rate_per_hour.has_value());
  EXPECT_TRUE(rules[1].tools.empty());
  EXPECT_EQ(rules[1].approvals, 2u);
  ASSERT_EQ(rules[1].approvers.size(), 2u);
  EXPECT_EQ(rules[1].approvers[0].ToString(), "user:carol");
  EXPECT_EQ(rules[1].approvers[1].ToString(), "group:release-managers");
  EXPECT_EQ((*policy)->FindRule("release.v2_x"), &rules[1]);
  EXPECT_EQ((*policy)->FindRule("nope"), nullptr);
  EXPECT_EQ((*policy)->source_name(), "policy.toml");
}

TEST(ParseTest, TomlSyntaxErrorHasItsLine) {
  const std::string error = ParseError(WithLine4("max_items = = 3"));
  EXPECT_THAT(error, StartsWith("policy.toml:4:")) << error;
}

TEST(ParseTest, DuplicateTomlKeyHasItsLine) {
  EXPECT_THAT(ParseError(WithLine4("name = \"again\"")), StartsWith("policy.toml:4:"));
}

TEST(ParseTest, UnknownKeyInRule) {
  const std::string error = ParseError(WithLine4("max_item = 3"));
  EXPECT_THAT(error, StartsWith("policy.toml:4:1: unknown key 'max_item' in [[rule]] (keys: "))
      << error;
  EXPECT_THAT(error, HasSubstr(", approvals, approvers)")) << error;
}

TEST(ParseTest, UnknownTopLevelKeyAndTable) {
  EXPECT_EQ(ParseError("\nversion = 3\n"),
            "policy.toml:2:1: unknown key 'version' (a policy holds [[rule]] tables and one "
            "[roles] table)");
  EXPECT_THAT(ParseError("\n\n[rules]\nx = 1\n"), StartsWith("policy.toml:3:"));
  EXPECT_THAT(ParseError("rule = 3\n"),
              StartsWith("policy.toml:1:8: 'rule' must be [[rule]] tables"));
}

TEST(ParseTest, WrongTypes) {
  EXPECT_EQ(ParseError(WithLine4("max_items = \"10\"")),
            "policy.toml:4:13: max_items must be an integer, not a string");
  EXPECT_EQ(ParseError(WithLine4("max_items = 1.5")),
            "policy.toml:4:13: max_items must be an integer, not a float");
  EXPECT_EQ(ParseError(WithLine4("tools = \"signet\"")),
            "policy.toml:4:9: tools must be an array of strings, not a string");
  EXPECT_EQ(ParseError(WithLine4("tools = [\"a\", 3]")),
            "policy.toml:4:15: tools entry must be a string, not an integer");
  EXPECT_EQ(ParseError(WithLine4("description = true")),
            "policy.toml:4:15: description must be a string, not a boolean");
  EXPECT_EQ(ParseError("[[rule]]\nname = 7\nkeys = [\"k\"]\nprincipals = [\"uid:1\"]\n"),
            "policy.toml:2:8: name must be a string, not an integer");
}

TEST(ParseTest, EmptyLists) {
  EXPECT_THAT(ParseError(WithLine4("artifacts = []")),
              StartsWith("policy.toml:4:13: artifacts is empty"));
  EXPECT_THAT(ParseError("[[rule]]\nname = \"a\"\nkeys = []\nprincipals = [\"uid:1\"]\n"),
              StartsWith("policy.toml:3:8: keys is empty"));
  EXPECT_THAT(ParseError(WithLine4("tools = [\"\"]")),
              StartsWith("policy.toml:4:10: tools entry is an empty pattern"));
}

TEST(ParseTest, MissingRequiredKeysPointAtTheRule) {
  const std::string text = "\n[[rule]]\nname = \"a\"\n";
  const std::string error = ParseError(text);
  EXPECT_EQ(error,
            "policy.toml:2:1: rule a has no keys (key name patterns)\n"
            "policy.toml:2:1: rule a has no principals");
  EXPECT_THAT(ParseError("[[rule]]\nkeys = [\"k\"]\nprincipals = [\"uid:1\"]\n"),
              StartsWith("policy.toml:1:1: [[rule]] has no name"));
}

TEST(ParseTest, BadPrincipals) {
  const std::string base = std::string(kHead) + "principals = [\"user:alice\",\n  ";
  EXPECT_EQ(ParseError(base + "\"host:x\"]\n"),
            "policy.toml:5:3: principal 'host:x' has no known kind: write user:NAME, uid:N, "
            "group:NAME, cert-subject:PATTERN or cert-fingerprint:HEX");
  EXPECT_THAT(ParseError(base + "\"uid:-1\"]\n"), StartsWith("policy.toml:5:3: uid '-1'"));
  EXPECT_THAT(ParseError(base + "\"uid:4294967295\"]\n"), StartsWith("policy.toml:5:3: uid"));
  EXPECT_THAT(ParseError(base + "\"uid:12x\"]\n"), StartsWith("policy.toml:5:3: uid"));
  EXPECT_THAT(ParseError(base + "\"user:\"]\n"), StartsWith("policy.toml:5:3: user name is empty"));
  EXPECT_THAT(ParseError(base + "\"group: ci\"]\n"), HasSubstr("starts or ends with a space"));
  EXPECT_THAT(ParseError(base + "\"user:a\\nb\"]\n"), HasSubstr("control character"));
  EXPECT_THAT(ParseError(base + "\"cert-fingerprint:abcd\"]\n"),
              StartsWith("policy.toml:5:3: cert-fingerprint 'abcd' is not a SHA-256"));
  EXPECT_THAT(ParseError(base + "\"cert-subject:CN=[x\"]\n"),
              StartsWith("policy.toml:5:3: cert-subject pattern 'CN=[x': unclosed '['"));
}

TEST(ParseTest, BadGlob) {
  EXPECT_EQ(ParseError(WithLine4("artifacts = [\"*.rpm\", \"dist/[a-\"]")),
            "policy.toml:4:23: artifacts pattern 'dist/[a-': unclosed '[' at offset 5");
}

TEST(ParseTest, DuplicateRuleName) {
  const std::string text = WithLine4("") + WithLine4("");
  EXPECT_EQ(ParseError(text), "policy.toml:7:8: duplicate rule name 'ci' (first at line 2)");
}

TEST(ParseTest, BadRuleName) {
  EXPECT_THAT(
      ParseError("[[rule]]\nname = \"has space\"\nkeys = [\"k\"]\nprincipals = [\"uid:1\"]"),
      StartsWith("policy.toml:2:8: rule name 'has space' must be"));
  EXPECT_THAT(ParseError("[[rule]]\nname = \"-x\"\nkeys = [\"k\"]\nprincipals = [\"uid:1\"]"),
              StartsWith("policy.toml:2:8: rule name"));
}

TEST(ParseTest, NumbersOutOfRange) {
  EXPECT_EQ(ParseError(WithLine4("max_items = 0")),
            "policy.toml:4:13: max_items = 0 is out of range (1 to 10000000)");
  EXPECT_THAT(ParseError(WithLine4("max_items = 10000001")), HasSubstr("out of range"));
  EXPECT_THAT(ParseError(WithLine4("rate_per_hour = -5")),
              StartsWith("policy.toml:4:17: rate_per_hour = -5 is out of range"));
  EXPECT_THAT(ParseError(WithLine4("approvals = 17")),
              StartsWith("policy.toml:4:13: approvals = 17 is out of range (0 to 16)"));
}

TEST(ParseTest, ApproversOfEveryKind) {
  auto policy = Policy::Parse(std::string(kHead) + R"(principals = ["user:alice"]
approvals = 1
approvers = ["user:bob", "uid:1001", "group:release-managers", "cert-subject:CN=rm-*,O=Example",
             "cert-fingerprint:AB:12:cd:34:ef:56:ab:12:cd:34:ef:56:ab:12:cd:34:ef:56:ab:12:cd:34:ef:56:ab:12:cd:34:ef:56:ab:12"]
)",
                              "policy.toml");
  ASSERT_TRUE(policy.has_value()) << policy.error();
  const Rule& rule = (*policy)->rules().at(0);
  EXPECT_EQ(rule.approvals, 1u);
  std::vector<std::string> approvers;
  for (const PrincipalPattern& approver : rule.approvers) {
    approvers.push_back(approver.ToString());
  }
  EXPECT_EQ(approvers,
            (std::vector<std::string>{
                "user:bob", "uid:1001", "group:release-managers", "cert-subject:CN=rm-*,O=Example",
                "cert-fingerprint:"
                "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12"}));
  // Unlike [roles] members, approvers may be certificate identities, as in `principals`.
  EXPECT_EQ(rule.approvers[3].kind, PrincipalPattern::Kind::kCertSubject);
}

TEST(ParseTest, ApproversNeedApprovals) {
  // Absent approvals: the error points at the approvers list.
  EXPECT_EQ(ParseError(WithLine4("approvers = [\"user:bob\"]")),
            "policy.toml:4:13: approvers needs approvals > 0");
  // approvals = 0, whichever key comes first.
  EXPECT_EQ(ParseError(WithLine4("approvers = [\"user:bob\"]\napprovals = 0")),
            "policy.toml:4:13: approvers needs approvals > 0");
  EXPECT_EQ(ParseError(WithLine4("approvals = 0\napprovers = [\"user:bob\"]")),
            "policy.toml:5:13: approvers needs approvals > 0");
  // An approvals value already refused is reported once, without a misleading second problem.
  EXPECT_EQ(ParseError(WithLine4("approvals = 17\napprovers = [\"user:bob\"]")),
            "policy.toml:4:13: approvals = 17 is out of range (0 to 16)");
  EXPECT_EQ(ParseError(WithLine4("approvals = \"2\"\napprovers = [\"user:bob\"]")),
            "policy.toml:4:13: approvals must be an integer, not a string");
  EXPECT_EQ(ParseError(WithLine4("approvals = 1\napprovers = [\"user:bob\"]")), "");
}

TEST(ParseTest, BadApprovers) {
  EXPECT_THAT(ParseError(WithLine4("approvals = 1\napprovers = []")),
              StartsWith("policy.toml:5:13: approvers is empty"));
  EXPECT_EQ(ParseError(WithLine4("approvals = 1\napprovers = \"user:bob\"")),
            "policy.toml:5:13: approvers must be an array of strings, not a string");
  // Lines 4-6: principals, approvals, approvers; the bad entry is on line 7.
  const std::string base = std::string(kHead) +
                           "principals = [\"user:alice\"]\napprovals = 2\n"
                           "approvers = [\"user:bob\",\n  ";
  EXPECT_EQ(ParseError(base + "\"host:x\"]\n"),
            "policy.toml:7:3: principal 'host:x' has no known kind: write user:NAME, uid:N, "
            "group:NAME, cert-subject:PATTERN or cert-fingerprint:HEX");
  EXPECT_THAT(ParseError(base + "\"uid:12x\"]\n"), StartsWith("policy.toml:7:3: uid '12x'"));
  EXPECT_THAT(ParseError(base + "\"group:\"]\n"),
              StartsWith("policy.toml:7:3: group name is empty"));
  EXPECT_THAT(ParseError(base + "3]\n"),
              StartsWith("policy.toml:7:3: approvers entry must be a string, not an integer"));
}

TEST(ParseTest, BadRoles) {
  EXPECT_THAT(ParseError("[roles]\nroot = [\"user:a\"]\n"),
              StartsWith("policy.toml:2:1: unknown role 'root'"));
  EXPECT_THAT(ParseError("[roles]\nadmin = [\"cert-subject:CN=x\"]\n"),
              StartsWith("policy.toml:2:10: role members are user:NAME, uid:N or group:NAME"));
  EXPECT_THAT(ParseError("[roles]\nadmin = []\n"), StartsWith("policy.toml:2:9: admin is empty"));
  EXPECT_THAT(ParseError("roles = 1\n"), StartsWith("policy.toml:1:9: 'roles' must be"));
}

TEST(ParseTest, SeveralProblemsAreAllReportedEarliestFirst) {
  const std::string error = ParseError(
      "[[rule]]\nname = \"a\"\nkeys = [\"k\"]\nprincipals = [\"bad:1\"]\nzzz = 1\naaa = 2\n");
  EXPECT_THAT(error, StartsWith("policy.toml:4:"));
  EXPECT_THAT(error, HasSubstr("\npolicy.toml:5:1: unknown key 'zzz'"));
  EXPECT_THAT(error, HasSubstr("\npolicy.toml:6:1: unknown key 'aaa'"));
}

TEST(ParseTest, InvalidUtf8IsRefusedWithALine) {
  EXPECT_THAT(ParseError(WithLine4("description = \"\xff\"")), StartsWith("policy.toml:4:"));
}

TEST(ParseTest, TextSizeLimit) {
  std::string text = WithLine4("");
  text.resize(kMaxPolicyBytes, '\n');
  EXPECT_TRUE(Policy::Parse(text, "policy.toml").has_value());
  text += '\n';
  EXPECT_EQ(ParseError(text), "policy.toml:1:1: policy is 1048577 bytes; at most 1048576");
}

TEST(ParseTest, StringLimit) {
  EXPECT_THAT(
      ParseError(WithLine4("description = \"" + std::string(kMaxStringBytes + 1, 'x') + "\"")),
      StartsWith("policy.toml:4:15: description is 4097 bytes long; at most 4096"));
  EXPECT_TRUE(
      Policy::Parse(WithLine4("description = \"" + std::string(kMaxStringBytes, 'x') + "\""), "p")
          .has_value());
  EXPECT_THAT(ParseError(std::string(kHead) +
                         "principals = [\"user:" + std::string(kMaxStringBytes, 'u') + "\"]\n"),
              StartsWith("policy.toml:4:15: principals entry is 4101 bytes long"));
}

std::string ManyRules(std::size_t n) {
  std::string text;
  for (std::size_t i = 0; i < n; ++i) {
    text += "[[rule]]\nname=\"r" + std::to_string(i) + "\"\nkeys=[\"k\"]\nprincipals=[\"uid:1\"]\n";
  }
  return text;
}

TEST(ParseTest, RuleCountLimit) {
  auto policy = Policy::Parse(ManyRules(kMaxRules), "p");
  ASSERT_TRUE(policy.has_value()) << policy.error();
  EXPECT_EQ((*policy)->rules().size(), kMaxRules);
  EXPECT_EQ((*policy)->FindRule("r9999"), &(*policy)->rules().back());
  // The 10,001st rule starts at line 4 * 10000 + 1.
  EXPECT_EQ(ParseError(ManyRules(kMaxRules + 1)),
            "policy.toml:40001:1: too many rules: at most 10000");
}

TEST(VersionTest, IsSha256OfTheText) {
  auto empty = Policy::Parse("", "p");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ((*empty)->version(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  auto a = Policy::Parse("# one\n", "a");
  auto b = Policy::Parse("# one\n", "b");
  auto c = Policy::Parse("# two\n", "a");
  ASSERT_TRUE(a.has_value() && b.has_value() && c.has_value());
  EXPECT_EQ((*a)->version(), (*b)->version());
  EXPECT_NE((*a)->version(), (*c)->version());
  EXPECT_EQ((*a)->text(), "# one\n");
}

TEST(VersionTest, EqualsSha256sum) {
  const std::string text = WithLine4("tools = [\"signet\"]  # caf\xc3\xa9");
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("policy_test_" + std::to_string(getpid()) + ".toml");
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  const std::string command = "sha256sum '" + path.string() + "'";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char line[256] = {};
  const bool read = fgets(line, sizeof line, pipe) != nullptr;
  pclose(pipe);
  std::filesystem::remove(path);
  ASSERT_TRUE(read);
  auto policy = Policy::Parse(text, "p");
  ASSERT_TRUE(policy.has_value()) << policy.error();
  EXPECT_EQ((*policy)->version(), std::string(line, 64));
}

TEST(ReloadTest, FailedParseLeavesTheCurrentPolicy) {
  auto first = Policy::Parse(WithLine4(""), "v1");
  ASSERT_TRUE(first.has_value());
  std::shared_ptr<const Policy> current = *first;
  auto next = Policy::Parse(WithLine4("bogus = 1"), "v2");
  ASSERT_FALSE(next.has_value());
  EXPECT_THAT(next.error().message(), StartsWith("v2:4:1: unknown key 'bogus'"));
  EXPECT_EQ(current->source_name(), "v1");
  EXPECT_EQ(current->rules().size(), 1u);
}

}  // namespace
}  // namespace signet::policy
