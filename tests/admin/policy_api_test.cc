// The policy lifecycle through the admin socket: show, validate, apply, versions, explain, roles,
// and the accept-time check of peers without a role.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "tests/admin/admin_fixture.h"

namespace signet::admin {
namespace {

using nlohmann::json;
using testing::AdminFixture;
using testing::PolicyFor;
using testing::SelfPrincipal;

using PolicyApiTest = AdminFixture;

std::vector<audit::Record> OfKind(const std::vector<audit::Record>& records,
                                  audit::RecordKind kind) {
  std::vector<audit::Record> out;
  std::copy_if(records.begin(), records.end(), std::back_inserter(out),
               [kind](const audit::Record& r) { return r.kind == kind; });
  return out;
}

// The seed's rule with tools = ["signet", "release-tool"].
std::string WiderPolicy() {
  std::string text = PolicyFor({"admin", "approver", "auditor"});
  const std::string from = "tools = [\"signet\"]";
  text.replace(text.find(from), from.size(), "tools = [\"signet\", \"release-tool\"]");
  return text;
}

TEST_F(PolicyApiTest, SeededVersionIsShownAndRecorded) {
  const auto shown = Admin("GET", "/v1/policy");
  ASSERT_EQ(shown.status, 200) << shown.body;
  const json body = Json(shown);
  EXPECT_EQ(body["number"], 1);
  EXPECT_EQ(body["text"], PolicyText());
  EXPECT_EQ(body["version"], service().policy()->version());
  EXPECT_EQ(body["source"], "file:test-policy.toml");
  const auto seeds = OfKind(Records(), audit::RecordKind::kPolicy);
  ASSERT_EQ(seeds.size(), 1u);
  EXPECT_EQ(seeds[0].decision, "seed");
  EXPECT_EQ(seeds[0].policy_version, body["version"]);
}

TEST_F(PolicyApiTest, InvalidPolicyIsRefusedWithLineNumbersAndTheOldOneStays) {
  const std::string before = service().policy()->version();
  const std::string bad = "[[rule]]\nname = \"x\"\nkeys = [\"default\"]\nprincipals = [\"" +
                          SelfPrincipal() + "\"]\nmax_items = -4\n";
  const auto validated = Admin("POST", "/v1/policy/validate", bad);
  EXPECT_EQ(validated.status, 422) << validated.body;
  EXPECT_EQ(Json(validated)["valid"], false);
  EXPECT_EQ(Json(validated)["line"], 5) << validated.body;
  EXPECT_TRUE(Json(validated)["column"].is_number());
  const auto applied = Admin("PUT", "/v1/policy", bad);
  EXPECT_EQ(applied.status, 422) << applied.body;
  EXPECT_NE(Json(applied)["message"].get<std::string>().find("admin-api:5:"), std::string::npos)
      << applied.body;
  EXPECT_EQ(service().policy()->version(), before);
  EXPECT_EQ(Json(Admin("GET", "/v1/policy"))["number"], 1);
  EXPECT_EQ(OfKind(Records(), audit::RecordKind::kPolicy).size(), 1u) << "only the seed";
}

TEST_F(PolicyApiTest, ValidateSummarizesChangesWithoutApplying) {
  std::string next = WiderPolicy();
  next += "\n[[rule]]\nname = \"extra\"\nkeys = [\"other\"]\nprincipals = [\"user:nobody\"]\n";
  const auto validated = Admin("POST", "/v1/policy/validate", next);
  ASSERT_EQ(validated.status, 200) << validated.body;
  const json changes = Json(validated)["changes"];
  EXPECT_EQ(changes["rules_added"], json::array({"extra"}));
  EXPECT_EQ(changes["rules_changed"], json::array({"self"}));
  EXPECT_EQ(changes["rules_removed"], json::array());
  EXPECT_EQ(changes["unchanged"], false);
  EXPECT_EQ(Json(Admin("GET", "/v1/policy"))["number"], 1) << "validate applies nothing";
}

TEST_F(PolicyApiTest, AppliedVersionTakesEffectIsRecordedAndSurvivesRestart) {
  EXPECT_EQ(Sign("a.bin", "aaa", "release-tool").status, 403);
  const auto applied =
      Admin("PUT", "/v1/policy", WiderPolicy(), "-H 'X-Signet-Comment: REL-42 allow release-tool'");
  ASSERT_EQ(applied.status, 200) << applied.body;
  const json body = Json(applied);
  EXPECT_EQ(body["number"], 2);
  EXPECT_EQ(body["unchanged"], false);
  const std::string version = body["version"];
  // Effective for the next request.
  EXPECT_EQ(Sign("a.bin", "aaa", "release-tool").status, 200);

  const auto policies = OfKind(Records(), audit::RecordKind::kPolicy);
  ASSERT_EQ(policies.size(), 2u);
  EXPECT_EQ(policies[1].decision, "apply");
  EXPECT_EQ(policies[1].policy_version, version);
  EXPECT_EQ(policies[1].requester.uid, ::getuid());
  EXPECT_NE(policies[1].detail.find("rules changed: self"), std::string::npos)
      << policies[1].detail;
  EXPECT_NE(policies[1].detail.find("REL-42"), std::string::npos) << policies[1].detail;
  // The sign record after it names the new version.
  const auto signs = OfKind(Records(), audit::RecordKind::kSign);
  ASSERT_EQ(signs.size(), 1u);
  EXPECT_EQ(signs[0].policy_version, version);
  EXPECT_GT(signs[0].seq, policies[1].seq);

  const auto versions = Json(Admin("GET", "/v1/policy/versions"))["versions"];
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0]["number"], 2);
  EXPECT_EQ(versions[0]["comment"], "REL-42 allow release-tool");
  EXPECT_EQ(versions[1]["number"], 1);
  const auto first = Admin("GET", "/v1/policy/versions/1");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(Json(first)["text"], PolicyText());
  EXPECT_EQ(Admin("GET", "/v1/policy/versions/9").status, 404);
  EXPECT_EQ(Admin("GET", "/v1/policy/versions/x").status, 400);

  // The store, not the seed, decides after a restart.
  Restart();
  EXPECT_EQ(service().policy()->version(), version);
  EXPECT_EQ(Json(Admin("GET", "/v1/policy"))["number"], 2);
  EXPECT_EQ(Sign("b.bin", "bbb", "release-tool").status, 200);
}

TEST_F(PolicyApiTest, ApplyingTheTextInForceChangesNothing) {
  const auto applied = Admin("PUT", "/v1/policy", PolicyText());
  ASSERT_EQ(applied.status, 200) << applied.body;
  EXPECT_EQ(Json(applied)["unchanged"], true);
  EXPECT_EQ(Json(applied)["number"], 1);
  EXPECT_EQ(Json(Admin("GET", "/v1/policy/versions"))["versions"].size(), 1u);
  EXPECT_EQ(OfKind(Records(), audit::RecordKind::kPolicy).size(), 1u);
}

TEST_F(PolicyApiTest, ExplainMatchesWhatARealRequestGets) {
  struct Case {
    std::string tool;
    int status;
  };
  for (const Case& c : {Case{"signet", 200}, Case{"other-tool", 403}}) {
    const json ask{{"principal", SelfPrincipal()},
                   {"key", "default"},
                   {"tool", c.tool},
                   {"artifacts", {"x.bin"}}};
    const auto explained = Admin("POST", "/v1/policy/explain", ask.dump());
    ASSERT_EQ(explained.status, 200) << explained.body;
    const json verdict = Json(explained);
    const auto real = Sign("x.bin", "xxx", c.tool);
    EXPECT_EQ(real.status, c.status) << real.body;
    EXPECT_EQ(verdict["decision"], c.status == 200 ? "allow" : "deny") << explained.body;
    EXPECT_EQ(verdict["policy_version"], service().policy()->version());
    const auto records = Records();
    const audit::Record& last = records.back();
    EXPECT_EQ(last.policy_rule, verdict["rule"]) << explained.body;
    EXPECT_EQ(last.decision, verdict["decision"]);
    if (c.status != 200) {
      EXPECT_EQ(Json(real)["message"], verdict["reason"]);
    }
  }
  // A user name is resolved as a peer of that name would be.
  const json root{{"principal", "user:root"}, {"key", "default"}, {"tool", "signet"}};
  const auto explained = Admin("POST", "/v1/policy/explain", root.dump());
  ASSERT_EQ(explained.status, 200) << explained.body;
  EXPECT_EQ(Json(explained)["decision"], ::getuid() == 0 ? "allow" : "deny");
  const json nobody_known{{"principal", "user:no-such-user-here"}, {"key", "default"}};
  EXPECT_EQ(Admin("POST", "/v1/policy/explain", nobody_known.dump()).status, 404);
  EXPECT_EQ(Admin("POST", "/v1/policy/explain", "{\"key\": \"default\"}").status, 400);
  EXPECT_EQ(Admin("POST", "/v1/policy/explain", "not json").status, 400);
}

class AuditorOnlyTest : public AdminFixture {
 protected:
  std::string PolicyText() const override { return PolicyFor({"auditor"}); }
};

TEST_F(AuditorOnlyTest, EachEndpointChecksItsRole) {
  EXPECT_EQ(Admin("GET", "/v1/policy").status, 200);
  EXPECT_EQ(Admin("GET", "/v1/policy/versions").status, 200);
  const auto put = Admin("PUT", "/v1/policy", PolicyFor({"admin"}));
  EXPECT_EQ(put.status, 403) << put.body;
  EXPECT_EQ(Json(put)["code"], "role_required");
  EXPECT_EQ(Json(put)["role"], "admin");
  EXPECT_NE(Json(put)["message"].get<std::string>().find("has auditor"), std::string::npos)
      << put.body;
  EXPECT_EQ(Admin("POST", "/v1/policy/validate", PolicyFor({"admin"})).status, 403);
  EXPECT_EQ(Admin("GET", "/metrics").status, 200);
  EXPECT_EQ(OfKind(Records(), audit::RecordKind::kPolicy).size(), 1u);
  // Each refused action is recorded (not awaited: give the writer a moment).
  std::vector<audit::Record> refusals;
  for (int i = 0; i < 100 && refusals.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    refusals.clear();
    for (audit::Record& record : OfKind(Records(), audit::RecordKind::kAdmin)) {
      if (record.decision == "deny") {  // the reads it was allowed are recorded as "read"
        refusals.push_back(std::move(record));
      }
    }
  }
  ASSERT_EQ(refusals.size(), 2u);
  EXPECT_EQ(refusals[0].decision, "deny");
  EXPECT_EQ(refusals[0].requester.uid, ::getuid());
  EXPECT_NE(refusals[0].detail.find("PUT /v1/policy refused"), std::string::npos)
      << refusals[0].detail;
  EXPECT_NE(refusals[1].detail.find("POST /v1/policy/validate refused"), std::string::npos)
      << refusals[1].detail;
}

class NoRoleTest : public AdminFixture {
 protected:
  std::string PolicyText() const override { return PolicyFor({}); }
};

TEST_F(NoRoleTest, APeerWithoutARoleIsDisconnectedBeforeARequestAndRecorded) {
  const auto answer = Admin("GET", "/v1/policy");
  EXPECT_EQ(answer.status, 0) << "no answer at all: " << answer.body;
  EXPECT_NE(answer.exit_code, 0);
  // The refusal is recorded without waiting; give the writer a moment.
  std::vector<audit::Record> denials;
  for (int i = 0; i < 100 && denials.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    denials = OfKind(Records(), audit::RecordKind::kAdmin);
  }
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0].decision, "deny");
  EXPECT_EQ(denials[0].requester.uid, ::getuid());
  EXPECT_TRUE(denials[0].peer_pid.has_value());
  EXPECT_NE(denials[0].detail.find("holds no role"), std::string::npos) << denials[0].detail;
  // The sign socket is not affected.
  EXPECT_EQ(Sign("a.bin", "aaa").status, 200);
}

TEST_F(PolicyApiTest, AnotherUidIsRefusedAtAccept) {
  if (::getuid() != 0) {
    GTEST_SKIP() << "needs root to connect as another uid (setpriv)";
  }
  // Let uid 65534 reach the socket: the test directory is private otherwise.
  ASSERT_EQ(::chmod(dir().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(admin_socket().c_str(), 0666), 0);
  const auto run = net::testing::RunCommand(
      "setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -o /dev/null -w '%{http_code}' "
      "--unix-socket " +
      net::testing::ShellQuote(admin_socket().string()) + " http://localhost/v1/policy");
  EXPECT_EQ(run.out, "000") << "no HTTP answer";
  std::vector<audit::Record> denials;
  for (int i = 0; i < 100 && denials.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    denials = OfKind(Records(), audit::RecordKind::kAdmin);
  }
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0].requester.uid, 65534u);
  EXPECT_EQ(denials[0].decision, "deny");
}

}  // namespace
}  // namespace signet::admin
