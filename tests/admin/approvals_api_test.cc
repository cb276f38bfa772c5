// Approvals end to end in-process: held requests on the sign socket, approvals and denials
// through the service (as the admin socket's handlers call it) and through the admin socket as
// another uid, expiry, a policy changed while pending, and a restart while pending.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "tests/admin/admin_fixture.h"

namespace signet::admin {
namespace {

using nlohmann::json;
using testing::AdminFixture;
using testing::SelfPrincipal;

// Rule "release" holds every request for `approvals` approvals from alice, bob or uid 65534;
// carol has the approver role but is not among the rule's approvers.
std::string ApprovalPolicy(int approvals, const std::string& tools = "[\"signet\"]") {
  return "[[rule]]\nname = \"release\"\nkeys = [\"default\"]\nprincipals = [\"" + SelfPrincipal() +
         "\"]\ntools = " + tools + "\napprovals = " + std::to_string(approvals) +
         "\napprovers = [\"user:alice\", \"user:bob\", \"uid:65534\"]\n\n[roles]\nadmin = [\"" +
         SelfPrincipal() + "\"]\nauditor = [\"" + SelfPrincipal() +
         "\"]\napprover = [\"user:alice\", \"user:bob\", \"user:carol\", \"uid:65534\", \"" +
         SelfPrincipal() + "\"]\n";
}

net::Peer Approver(std::string user, std::uint32_t uid) {
  net::Peer peer;
  peer.uid = uid;
  peer.gid = uid;
  peer.user = std::move(user);
  return peer;
}

class ApprovalsTest : public AdminFixture {
 protected:
  std::string PolicyText() const override { return ApprovalPolicy(approvals_); }

  // Sends a request that the policy holds; returns its approval id.
  std::string Held(const std::string& name = "app.tar.gz", const std::string& content = "app\n") {
    const auto answer = Sign(name, content);
    EXPECT_EQ(answer.status, 202) << answer.body;
    const json body = Json(answer);
    EXPECT_EQ(body["status"], "pending");
    EXPECT_EQ(body["approvals_required"], approvals_);
    return body.value("approval_id", "");
  }

  json Collect(const std::string& id) { return Json(Net("GET", "/v1/requests/" + id)); }
  net::testing::HttpResult Net(const std::string& method, const std::string& path) {
    return net::testing::Curl("-X " + method + " --unix-socket " +
                              net::testing::ShellQuote(sign_socket().string()) +
                              " http://localhost" + path);
  }

  // Waits until the held request leaves "approved" (it is being signed).
  json WaitSettled(const std::string& id) {
    json status;
    for (int i = 0; i < 200; ++i) {
      status = Collect(id);
      if (status["status"] != "approved" && status["status"] != "pending") {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return status;
  }

  std::vector<audit::Record> Of(audit::RecordKind kind) {
    std::vector<audit::Record> out;
    for (auto& r : Records()) {
      if (r.kind == kind) {
        out.push_back(std::move(r));
      }
    }
    return out;
  }

  bool OpensslVerifies(const std::string& content, const std::string& signature_b64) {
    const auto sig = Base64Decode(signature_b64);
    if (!sig) {
      return false;
    }
    const json key = Json(SignSocketGet("/v1/keys/default"));
    std::ofstream(dir() / "pub.pem") << key["public_key_pem"].get<std::string>();
    std::ofstream(dir() / "file", std::ios::binary) << content;
    std::ofstream(dir() / "file.sig", std::ios::binary) << std::string(sig->begin(), sig->end());
    const auto run = net::testing::RunCommand(
        "openssl dgst -sha256 -verify " + (dir() / "pub.pem").string() + " -signature " +
        (dir() / "file.sig").string() + " " + (dir() / "file").string() + " 2>&1");
    return run.exit_code == 0;
  }

  int approvals_ = 2;
};

TEST_F(ApprovalsTest, AHeldRequestIsRecordedStoredListedAndSignsNothing) {
  const std::string id = Held();
  ASSERT_EQ(id.size(), 32u);
  const json status = Collect(id);
  EXPECT_EQ(status["status"], "pending");
  EXPECT_EQ(status["approvals"], json::array());
  const auto holds = Of(audit::RecordKind::kApproval);
  ASSERT_EQ(holds.size(), 1u);
  EXPECT_EQ(holds[0].decision, "hold");
  EXPECT_EQ(holds[0].policy_rule, "release");
  EXPECT_EQ(holds[0].request_id, id);
  EXPECT_EQ(holds[0].artifact_name, "app.tar.gz");
  EXPECT_TRUE(Of(audit::RecordKind::kSign).empty());

  const json listed = Json(Admin("GET", "/v1/approvals"))["approvals"];
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], id);
  EXPECT_EQ(listed[0]["artifacts"], json::array({"app.tar.gz"}));
  const auto me = net::LocalPeer(static_cast<std::uint32_t>(::getuid()));
  EXPECT_EQ(listed[0]["requester"], me && !me->user.empty() ? "user:" + me->user : SelfPrincipal());
  EXPECT_EQ(listed[0]["key"], "default");
  EXPECT_EQ(listed[0]["rule"], "release");
  const json shown = Json(Admin("GET", "/v1/approvals/" + id));
  EXPECT_EQ(shown["artifacts"][0]["name"], "app.tar.gz");
  EXPECT_EQ(shown["artifacts"][0]["digests"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(Admin("GET", "/v1/approvals/nope").status, 404);
  EXPECT_EQ(Net("GET", "/v1/requests/nope").status, 404);
  const auto metrics = Admin("GET", "/metrics").body;
  EXPECT_NE(metrics.find("signet_approvals_pending 1"), std::string::npos);
}

TEST_F(ApprovalsTest, TwoDistinctApproversSignAndTheRecordsNameThem) {
  const std::string content = "release candidate\n";
  const std::string id = Held("app.tar.gz", content);

  const auto self = service().Approve(id, Approver(::getuid() == 0 ? "root" : "", ::getuid()));
  EXPECT_EQ(self.status, 403);
  EXPECT_EQ(self.code, "self_approval");
  const auto carol = service().Approve(id, Approver("carol", 1003));
  EXPECT_EQ(carol.status, 403);
  EXPECT_EQ(carol.code, "not_an_approver");
  EXPECT_NE(carol.message.find("user:alice"), std::string::npos) << carol.message;
  const auto stranger = service().Approve(id, Approver("mallory", 1666));
  EXPECT_EQ(stranger.code, "not_an_approver") << "no approver role";

  const auto first = service().Approve(id, Approver("alice", 1001));
  ASSERT_EQ(first.status, 200) << first.message;
  EXPECT_EQ(first.request.status, "pending");
  const auto again = service().Approve(id, Approver("alice", 1001));
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.code, "already_approved");
  EXPECT_EQ(Collect(id)["approvals"].size(), 1u);

  const auto second = service().Approve(id, Approver("bob", 1002));
  ASSERT_EQ(second.status, 200) << second.message;
  EXPECT_EQ(second.request.status, "approved");
  const json done = WaitSettled(id);
  ASSERT_EQ(done["status"], "signed") << done.dump();
  ASSERT_EQ(done["items"].size(), 1u);
  EXPECT_TRUE(OpensslVerifies(content, done["items"][0]["signature"]));

  const auto signs = Of(audit::RecordKind::kSign);
  ASSERT_EQ(signs.size(), 1u);
  EXPECT_EQ(signs[0].request_id, id);
  ASSERT_EQ(signs[0].approvers.size(), 2u);
  EXPECT_EQ(signs[0].approvers[0].identity, "user:alice");
  EXPECT_EQ(signs[0].approvers[1].identity, "user:bob");
  EXPECT_EQ(signs[0].requester.uid, ::getuid());
  EXPECT_EQ(done["items"][0]["seq"], signs[0].seq);
  // hold, alice, bob: every step recorded; the refused attempts change nothing and record nothing.
  const auto approvals = Of(audit::RecordKind::kApproval);
  ASSERT_EQ(approvals.size(), 3u);
  EXPECT_EQ(approvals[1].decision, "approve");
  EXPECT_EQ(approvals[2].approvers.size(), 2u);
  EXPECT_EQ(service().Approve(id, Approver("alice", 1001)).code, "not_pending");
}

TEST_F(ApprovalsTest, ADenialWithAReasonIsFinal) {
  const std::string id = Held();
  EXPECT_EQ(Admin("POST", "/v1/approvals/" + id + "/deny", "{}").status, 400) << "no reason";
  const auto denied = service().Deny(id, Approver("bob", 1002), "not in the release plan");
  ASSERT_EQ(denied.status, 200) << denied.message;
  const json status = Collect(id);
  EXPECT_EQ(status["status"], "denied");
  EXPECT_EQ(status["reason"], "not in the release plan");
  EXPECT_EQ(status["denied_by"], "user:bob");
  EXPECT_EQ(service().Approve(id, Approver("alice", 1001)).code, "not_pending");
  const auto approvals = Of(audit::RecordKind::kApproval);
  ASSERT_EQ(approvals.size(), 2u);
  EXPECT_EQ(approvals[1].decision, "deny");
  EXPECT_NE(approvals[1].detail.find("not in the release plan"), std::string::npos);
  EXPECT_TRUE(Of(audit::RecordKind::kSign).empty());
  EXPECT_TRUE(Json(Admin("GET", "/v1/approvals"))["approvals"].empty());
  EXPECT_EQ(Json(Admin("GET", "/v1/approvals?status=all"))["approvals"].size(), 1u);
}

class ShortLivedApprovalsTest : public ApprovalsTest {
 protected:
  void SetUp() override {
    approval_ttl_ = std::chrono::milliseconds(1000);
    ApprovalsTest::SetUp();
  }
};

TEST_F(ShortLivedApprovalsTest, AnUnapprovedRequestExpiresAndTheExpiryIsRecorded) {
  const std::string id = Held();
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(Collect(id)["status"], "expired");
  EXPECT_EQ(service().Approve(id, Approver("alice", 1001)).code, "not_pending");
  std::vector<audit::Record> expiries;
  for (int i = 0; i < 100; ++i) {
    const auto approvals = Of(audit::RecordKind::kApproval);
    expiries.clear();
    std::copy_if(approvals.begin(), approvals.end(), std::back_inserter(expiries),
                 [](const audit::Record& r) { return r.decision == "expire"; });
    if (!expiries.empty()) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(expiries.size(), 1u);
  EXPECT_EQ(expiries[0].request_id, id);
}

class OneApprovalTest : public ApprovalsTest {
 protected:
  OneApprovalTest() { approvals_ = 1; }
};

TEST_F(OneApprovalTest, ThePolicyInForceAtApprovalDecides) {
  const std::string id = Held();
  // The rule no longer lets this tool sign.
  const auto applied = Admin("PUT", "/v1/policy", ApprovalPolicy(1, "[\"other-tool\"]"));
  ASSERT_EQ(applied.status, 200) << applied.body;
  const auto approved = service().Approve(id, Approver("alice", 1001));
  ASSERT_EQ(approved.status, 200) << approved.message;
  const json done = WaitSettled(id);
  EXPECT_EQ(done["status"], "failed") << done.dump();
  EXPECT_NE(done["message"].get<std::string>().find("other-tool"), std::string::npos)
      << done.dump();
  EXPECT_TRUE(Of(audit::RecordKind::kSign).empty());
  const auto records = Records();
  EXPECT_EQ(records.back().kind, audit::RecordKind::kDeny);
  EXPECT_EQ(records.back().request_id, id);
}

TEST_F(OneApprovalTest, AHeldRequestSurvivesARestart) {
  const std::string content = "held across a restart\n";
  const std::string id = Held("a.bin", content);
  Restart();
  EXPECT_EQ(Collect(id)["status"], "pending");
  const auto approved = service().Approve(id, Approver("bob", 1002));
  ASSERT_EQ(approved.status, 200) << approved.message;
  const json done = WaitSettled(id);
  ASSERT_EQ(done["status"], "signed") << done.dump();
  EXPECT_TRUE(OpensslVerifies(content, done["items"][0]["signature"]));
}

TEST_F(OneApprovalTest, AnotherUidApprovesThroughTheAdminSocket) {
  if (::getuid() != 0) {
    GTEST_SKIP() << "needs root to connect as another uid (setpriv)";
  }
  const std::string id = Held();
  // The requester approving over the socket is refused.
  const auto self = Admin("POST", "/v1/approvals/" + id + "/approve");
  EXPECT_EQ(self.status, 403) << self.body;
  EXPECT_EQ(Json(self)["code"], "self_approval");
  ASSERT_EQ(::chmod(dir().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(admin_socket().c_str(), 0666), 0);
  const auto run = net::testing::RunCommand(
      "setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -X POST --unix-socket " +
      net::testing::ShellQuote(admin_socket().string()) + " http://localhost/v1/approvals/" + id +
      "/approve");
  const json answer = json::parse(run.out, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << run.out;
  EXPECT_EQ(answer["status"], "approved") << run.out;
  // The approver role does not reach what the admin role does.
  const auto put = net::testing::RunCommand(
      "setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -o /dev/null -w '%{http_code}' "
      "-X PUT --data-binary x --unix-socket " +
      net::testing::ShellQuote(admin_socket().string()) + " http://localhost/v1/policy");
  EXPECT_EQ(put.out, "403");
  const json done = WaitSettled(id);
  EXPECT_EQ(done["status"], "signed") << done.dump();
  const auto signs = Of(audit::RecordKind::kSign);
  ASSERT_EQ(signs.size(), 1u);
  ASSERT_EQ(signs[0].approvers.size(), 1u);
  EXPECT_EQ(signs[0].approvers[0].identity, "user:nobody");
}

}  // namespace
}  // namespace signet::admin
