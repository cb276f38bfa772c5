// The real signetd binary: --dev on a fresh state dir, curl as the client, the openssl command as
// the verifier, SIGHUP with a broken policy, SIGTERM drains, a restart reuses token, keys and log.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/daemon/signetd_process.h"

namespace signet::daemon {
namespace {

using net::testing::HttpResult;
using nlohmann::json;
using testing::ReadFile;
using testing::Signetd;
using testing::WriteFile;

class SignetdTest : public testing::SignetdFixture {};

TEST_F(SignetdTest, DevSignsReloadsDrainsAndRestartsOnTheSameState) {
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);

  // The state dir: private, with PINs 0600 and the configuration the user can read and edit.
  EXPECT_EQ(std::filesystem::status(State()).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_all);
  EXPECT_EQ(std::filesystem::status(State() / "pin").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(ReadFile(State() / "pin").size(), 32u);
  EXPECT_TRUE(std::filesystem::exists(State() / "so-pin"));
  EXPECT_TRUE(std::filesystem::exists(State() / "signetd.toml"));
  EXPECT_NE(daemon->log().find("curl --unix-socket " + Socket().string()), std::string::npos)
      << daemon->log();

  const HttpResult keys = Get("/v1/keys");
  ASSERT_EQ(keys.status, 200) << keys.body;
  const json listed = json::parse(keys.body)["keys"];
  // "default" (raw) and "batch"; the audit key signs checkpoints only and is not listed.
  ASSERT_EQ(listed.size(), 2u) << keys.body;
  EXPECT_EQ(listed[0]["name"], "batch");
  EXPECT_EQ(listed[0]["format"], "batch");
  EXPECT_EQ(listed[1]["name"], "default");
  EXPECT_EQ(listed[1]["format"], "raw");
  EXPECT_TRUE(std::filesystem::exists(State() / "audit.pub.pem"));
  const HttpResult one = Get("/v1/keys/default");
  ASSERT_EQ(one.status, 200) << one.body;
  const std::string pem = json::parse(one.body)["public_key_pem"];
  const std::string fingerprint = json::parse(one.body)["fingerprint"];

  HttpResult signed_result = SignAndVerify("a.txt", "the first artifact\n", pem);
  ASSERT_EQ(signed_result.status, 200) << signed_result.body;

  // SIGHUP with a broken policy: the error names the line, the previous policy stays.
  const std::string good_policy = ReadFile(State() / "policy.toml");
  WriteFile(State() / "policy.toml", good_policy + "\n[[rule]]\nname = \"broken\"\nkeys = 7\n");
  ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
  ASSERT_TRUE(daemon->WaitForLog("kept the previous policy")) << daemon->log();
  EXPECT_NE(daemon->log().find("policy.toml:"), std::string::npos) << daemon->log();
  signed_result = SignAndVerify("b.txt", "signed under the kept policy\n", pem);
  EXPECT_EQ(signed_result.status, 200) << signed_result.body;

  // A good policy that names no rule for the user: reloaded, and signing is denied.
  WriteFile(State() / "policy.toml",
            "[[rule]]\nname = \"nobody\"\nkeys = [\"default\"]\nprincipals = [\"uid:999999\"]\n");
  ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
  ASSERT_TRUE(daemon->WaitForLog("policy reloaded (version ")) << daemon->log();
  EXPECT_EQ(SignAndVerify("c.txt", "denied\n", pem).status, 403);
  WriteFile(State() / "policy.toml", good_policy);
  ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
  ASSERT_TRUE(daemon->WaitForLog("policy reloaded (version ", 2)) << daemon->log();
  EXPECT_EQ(SignAndVerify("d.txt", "allowed again\n", pem).status, 200);

  // SIGTERM drains and exits 0; the final checkpoint is in the checkpoint file.
  ASSERT_EQ(::kill(daemon->pid(), SIGTERM), 0);
  EXPECT_EQ(daemon->Wait(std::chrono::seconds(40)), 0) << daemon->log();
  EXPECT_FALSE(std::filesystem::exists(Socket()));
  const auto checkpoints_after_first = std::filesystem::file_size(State() / "checkpoints");
  EXPECT_GT(checkpoints_after_first, 0u);

  // A restart reuses the token, the keys and the audit log.
  daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  EXPECT_NE(daemon->log().find("reused"), std::string::npos) << daemon->log();
  const HttpResult again = Get("/v1/keys/default");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(json::parse(again.body)["fingerprint"], fingerprint);
  EXPECT_EQ(SignAndVerify("e.txt", "after the restart\n", pem).status, 200);
  ASSERT_EQ(::kill(daemon->pid(), SIGINT), 0);
  EXPECT_EQ(daemon->Wait(std::chrono::seconds(40)), 0) << daemon->log();
  EXPECT_GT(std::filesystem::file_size(State() / "checkpoints"), checkpoints_after_first);
}

// signetd's threads carry names (so that `top -H`, a profile or a core dump tells them apart).
TEST_F(SignetdTest, ThreadsAreNamedForWhatTheyDo) {
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  std::multiset<std::string> names;
  const std::filesystem::path tasks =
      std::filesystem::path("/proc") / std::to_string(daemon->pid()) / "task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::string name = ReadFile(task.path() / "comm");
    while (!name.empty() && name.back() == '\n') {
      name.pop_back();
    }
    names.insert(name);
  }
  for (const char* expected :
       {"audit-writer", "audit-checkpt", "audit-deliver", "net-io", "hsm-worker"}) {
    EXPECT_GE(names.count(expected), 1u) << expected;
  }
}

// The whole flow with the real client: `signet sign -r` over a directory, every signature checked
// with the openssl command, and exactly one `sign` record per signature naming the file, its
// digest, the key, who asked (uid and user) and the tool.
TEST_F(SignetdTest, SignetSignsADirectoryAndEverySignatureHasItsRecord) {
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  const std::string pem = DefaultPem();
  ASSERT_FALSE(pem.empty());
  const auto pub = logs_.path() / "default.pub.pem";
  WriteFile(pub, pem);
  const auto dir = logs_.path() / "artifacts";
  std::filesystem::create_directories(dir / "sub");
  std::map<std::string, std::string> contents;
  for (int i = 0; i < 300; ++i) {
    const auto path = dir / (i % 3 == 0 ? "sub" : ".") / ("a" + std::to_string(i) + ".bin");
    const std::string content = "artifact " + std::to_string(i) + std::string(i * 7, 'x');
    WriteFile(path, content);
    contents[path.lexically_normal().string()] = content;
  }
  const auto run = net::testing::RunCommand(
      std::string(SIGNET_BINARY) + " sign --socket " + net::testing::ShellQuote(Socket().string()) +
      " --key default --batch-size 32 -r " + net::testing::ShellQuote(dir.string()) + " 2>&1");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("signed 300 files with key default (format raw)"), std::string::npos)
      << run.out;
  // Every signature, checked by the openssl command (one shell loop, one process per file).
  const auto verified = net::testing::RunCommand(
      "cd " + net::testing::ShellQuote(dir.string()) +
      " && find . -name '*.bin' | while read -r f; do openssl dgst -sha256 -verify " +
      net::testing::ShellQuote(pub.string()) +
      " -signature \"$f.sig\" \"$f\" || echo \"BAD $f\"; done 2>&1 | sort | uniq -c");
  EXPECT_EQ(verified.out, "    300 Verified OK\n") << verified.out;

  ASSERT_FALSE(WaitForCheckpoint().is_null());
  std::map<std::string, int> records_per_file;
  for (const json& r : ExportAudit()) {
    if (r.value("kind", "") != "sign") {
      continue;
    }
    const std::string name = r["artifact"].value("name", "");
    ++records_per_file[name];
    const auto it = contents.find(std::filesystem::path(name).lexically_normal().string());
    ASSERT_NE(it, contents.end()) << r.dump();
    EXPECT_EQ(r["artifact"]["digests"].value("sha256", ""), testing::Sha256Hex(it->second));
    EXPECT_EQ(r["artifact"].value("size", -1), static_cast<int>(it->second.size()));
    EXPECT_EQ(r["key"].value("name", ""), "default");
    EXPECT_EQ(r["requester"].value("uid", -1), static_cast<int>(::getuid()));
    EXPECT_FALSE(r["requester"].value("user", "").empty()) << r.dump();
    EXPECT_EQ(r["request"]["tool"].value("name", ""), "signet");
    EXPECT_EQ(r.value("signature_sha256", ""),
              testing::Sha256Hex(ReadFile(std::filesystem::path(name).string() + ".sig")))
        << name;
  }
  EXPECT_EQ(records_per_file.size(), 300u);
  for (const auto& [name, count] : records_per_file) {
    EXPECT_EQ(count, 1) << name;
  }
  ASSERT_EQ(::kill(daemon->pid(), SIGTERM), 0);
  EXPECT_EQ(daemon->Wait(std::chrono::seconds(40)), 0) << daemon->log();
}

TEST_F(SignetdTest, BadConfigExitsOneNamingFileAndLine) {
  const auto config = logs_.path() / "bad.toml";
  WriteFile(config,
            "policy_file = \"policy.toml\"\n"
            "[[hsm]]\n"
            "name = \"main\"\n"
            "token_label = \"signet\"\n"
            "pin_file = \"pin\"\n"
            "sessions = \"many\"\n");
  Signetd daemon({"--config", config.string()}, logs_.path() / "bad.log");
  EXPECT_EQ(daemon.Wait(std::chrono::seconds(30)), 1);
  EXPECT_NE(daemon.log().find("signetd: " + config.string() + ":6:"), std::string::npos)
      << daemon.log();
}

TEST_F(SignetdTest, MissingKeyRefusesToStartNamingIt) {
  // Make a --dev state, then point a configuration at a key the token does not hold.
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  ASSERT_EQ(::kill(daemon->pid(), SIGTERM), 0);
  ASSERT_EQ(daemon->Wait(std::chrono::seconds(40)), 0) << daemon->log();
  std::string text = ReadFile(State() / "signetd.toml");
  text +=
      "\n[[key]]\nname = \"release\"\nhsm = \"dev\"\nalgorithm = \"ecdsa-p256\"\n"
      "format = \"raw\"\n";
  WriteFile(State() / "missing.toml", text);
  // --config does not set SOFTHSM2_CONF (--dev does): the environment names the token store.
  ::setenv("SOFTHSM2_CONF", (State() / "softhsm2.conf").c_str(), 1);
  Signetd refused({"--config", (State() / "missing.toml").string()}, logs_.path() / "m.log");
  EXPECT_EQ(refused.Wait(std::chrono::seconds(30)), 1) << refused.log();
  EXPECT_NE(refused.log().find("key release"), std::string::npos) << refused.log();
  EXPECT_FALSE(std::filesystem::exists(Socket()));
}

}  // namespace
}  // namespace signet::daemon
