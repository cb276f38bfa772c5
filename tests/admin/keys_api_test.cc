// Keys through the admin socket: generate in the HSM, list, disable and enable, across restarts,
// with the sign socket's answers and the openssl command as the judge.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "tests/admin/admin_fixture.h"

namespace signet::admin {
namespace {

using nlohmann::json;
using testing::AdminFixture;
using testing::PolicyFor;
using testing::SelfPrincipal;

// This process may sign with every key.
class KeysApiTest : public AdminFixture {
 protected:
  std::string PolicyText() const override {
    std::string text = PolicyFor({"admin", "auditor"});
    const std::string from = "keys = [\"default\"]";
    text.replace(text.find(from), from.size(), "keys = [\"*\"]");
    return text;
  }

  // A name no earlier test used: the SoftHSM token is shared by the whole process.
  static std::string FreshName(const std::string& base) {
    static int n = 0;
    return base + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
  }

  json KeyListed(const std::string& name) {
    const json keys = Json(Admin("GET", "/v1/keys"))["keys"];
    for (const json& key : keys) {
      if (key["name"] == name) {
        return key;
      }
    }
    return nullptr;
  }

  // Signs `content` with `key` and checks the signature with the openssl command and the public
  // key the sign socket publishes.
  void ExpectSignsAndVerifies(const std::string& key, const std::string& content) {
    const auto answer = Sign("file.bin", content, "signet", key);
    ASSERT_EQ(answer.status, 200) << answer.body;
    const std::string signature =
        Base64Decode(Json(answer)["items"][0]["signature"].get<std::string>())
            .transform([](const Bytes& b) { return std::string(b.begin(), b.end()); })
            .value_or("");
    const json published = Json(SignSocketGet("/v1/keys/" + key));
    ASSERT_TRUE(published.is_object());
    auto write = [&](const std::string& file, const std::string& data) {
      std::ofstream(dir() / file, std::ios::binary) << data;
    };
    write("pub.pem", published["public_key_pem"].get<std::string>());
    write("file.bin", content);
    write("file.bin.sig", signature);
    const auto run = net::testing::RunCommand(
        "openssl dgst -sha256 -verify " + (dir() / "pub.pem").string() + " -signature " +
        (dir() / "file.bin.sig").string() + " " + (dir() / "file.bin").string() + " 2>&1");
    EXPECT_EQ(run.exit_code, 0) << run.out;
  }

  std::vector<audit::Record> KeyRecords() {
    std::vector<audit::Record> out;
    for (auto& r : Records()) {
      if (r.kind == audit::RecordKind::kKey) {
        out.push_back(std::move(r));
      }
    }
    return out;
  }
};

TEST_F(KeysApiTest, GeneratedKeySignsIsRecordedAndSurvivesRestart) {
  const std::string name = FreshName("release");
  const json ask{{"name", name}, {"algorithm", "ecdsa-p256"}, {"format", "raw"}};
  const auto generated = Admin("POST", "/v1/keys", ask.dump());
  ASSERT_EQ(generated.status, 201) << generated.body;
  const json key = Json(generated);
  EXPECT_EQ(key["name"], name);
  EXPECT_EQ(key["origin"], "admin-api");
  EXPECT_EQ(key["attributes_ok"], true);
  EXPECT_EQ(key["enabled"], true);
  EXPECT_EQ(key["hsm"], "main");
  const std::string fingerprint = key["fingerprint"];
  EXPECT_EQ(fingerprint.size(), 64u);

  const auto records = KeyRecords();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].decision, "generate");
  EXPECT_EQ(records[0].key_name, name);
  EXPECT_EQ(records[0].key_fingerprint, fingerprint);
  EXPECT_EQ(records[0].requester.uid, ::getuid());

  ExpectSignsAndVerifies(name, "signed with a generated key\n");
  EXPECT_EQ(KeyListed(name)["signatures"], 1);

  Restart();
  const json again = KeyListed(name);
  ASSERT_TRUE(again.is_object());
  EXPECT_EQ(again["fingerprint"], fingerprint);
  ExpectSignsAndVerifies(name, "and again after a restart\n");
}

TEST_F(KeysApiTest, DisabledKeySignsNothingUntilEnabledAcrossRestarts) {
  const auto disabled =
      Admin("POST", "/v1/keys/default/disable", R"({"reason": "rotating, REL-9"})");
  ASSERT_EQ(disabled.status, 200) << disabled.body;
  EXPECT_EQ(Json(disabled)["enabled"], false);
  EXPECT_EQ(Json(disabled)["status"], "disabled");

  const auto refused = Sign("a.bin", "aaa");
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(Json(refused)["code"], "key_disabled");
  EXPECT_NE(Json(refused)["message"].get<std::string>().find("rotating, REL-9"), std::string::npos)
      << refused.body;
  const auto records = Records();
  EXPECT_EQ(records.back().kind, audit::RecordKind::kDeny);
  EXPECT_NE(records.back().detail.find("key disabled"), std::string::npos);

  Restart();
  EXPECT_EQ(Sign("a.bin", "aaa").status, 403) << "still disabled after a restart";
  EXPECT_EQ(KeyListed("default")["enabled"], false);

  const auto enabled = Admin("POST", "/v1/keys/default/enable");
  ASSERT_EQ(enabled.status, 200) << enabled.body;
  EXPECT_EQ(Json(enabled)["enabled"], true);
  ExpectSignsAndVerifies("default", "enabled again\n");

  const auto key_records = KeyRecords();
  ASSERT_EQ(key_records.size(), 2u);
  EXPECT_EQ(key_records[0].decision, "disable");
  EXPECT_NE(key_records[0].detail.find("REL-9"), std::string::npos);
  EXPECT_EQ(key_records[1].decision, "enable");
  EXPECT_EQ(key_records[1].key_name, "default");
}

TEST_F(KeysApiTest, BadRequestsAreRefusedNamingTheProblem) {
  const std::string name = FreshName("dup");
  ASSERT_EQ(
      Admin("POST", "/v1/keys", json{{"name", name}, {"algorithm", "ecdsa-p256"}}.dump()).status,
      201);
  const auto twice =
      Admin("POST", "/v1/keys", json{{"name", name}, {"algorithm", "ecdsa-p256"}}.dump());
  EXPECT_EQ(twice.status, 409) << twice.body;
  EXPECT_EQ(Json(twice)["code"], "key_exists");
  EXPECT_EQ(Admin("POST", "/v1/keys", json{{"name", "x"}, {"algorithm", "dsa-1024"}}.dump()).status,
            400);
  const auto batch_rsa =
      Admin("POST", "/v1/keys",
            json{{"name", FreshName("b")}, {"algorithm", "rsa-3072"}, {"format", "batch"}}.dump());
  EXPECT_EQ(batch_rsa.status, 400) << batch_rsa.body;
  EXPECT_EQ(
      Admin("POST", "/v1/keys", json{{"name", "bad name"}, {"algorithm", "ecdsa-p256"}}.dump())
          .status,
      400);
  EXPECT_EQ(
      Admin("POST", "/v1/keys",
            json{{"name", FreshName("h")}, {"algorithm", "ecdsa-p256"}, {"hsm", "nope"}}.dump())
          .status,
      404);
  EXPECT_EQ(Admin("POST", "/v1/keys/nope/disable").status, 404);
  EXPECT_EQ(Admin("POST", "/v1/keys/default/rotate").status, 404);
  EXPECT_EQ(Admin("GET", "/v1/keys/default/disable").status, 405);
  EXPECT_EQ(KeyRecords().size(), 1u) << "only the one generated key";
}

class KeysAuditorTest : public AdminFixture {
 protected:
  std::string PolicyText() const override { return PolicyFor({"auditor"}); }
};

TEST_F(KeysAuditorTest, AnAuditorListsButChangesNothing) {
  EXPECT_EQ(Admin("GET", "/v1/keys").status, 200);
  const auto generate =
      Admin("POST", "/v1/keys", json{{"name", "x"}, {"algorithm", "ecdsa-p256"}}.dump());
  EXPECT_EQ(generate.status, 403);
  EXPECT_EQ(Json(generate)["role"], "admin");
  EXPECT_EQ(Admin("POST", "/v1/keys/default/disable").status, 403);
  EXPECT_EQ(Sign("a.bin", "aaa").status, 200);
}

}  // namespace
}  // namespace signet::admin
