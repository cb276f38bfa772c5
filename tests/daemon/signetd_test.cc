// The real signetd binary: --dev on a fresh state dir, curl as the client, the openssl command as
// the verifier, SIGHUP with a broken policy, SIGTERM drains, a restart reuses token, keys and log.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "appliance/base/base.h"
#include "tests/net/test_util.h"

extern char** environ;

namespace signet::daemon {
namespace {

using net::testing::Curl;
using net::testing::HttpResult;
using net::testing::RunCommand;
using net::testing::ShellQuote;
using net::testing::TempDir;
using nlohmann::json;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteFile(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string Sha256Hex(std::string_view data) {
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const std::uint8_t*>(data.data()), data.size(), digest);
  return HexEncode(digest);
}

// A signetd child process whose stdout and stderr go to `log`.
class Signetd {
 public:
  Signetd(std::vector<std::string> args, std::filesystem::path log) : log_(std::move(log)) {
    args.insert(args.begin(), SIGNETD_BINARY);
    std::vector<char*> argv;
    for (std::string& arg : args) {
      argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int rc = ::posix_spawn(&pid_, SIGNETD_BINARY, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      ADD_FAILURE() << "posix_spawn signetd: " << rc;
    }
  }
  ~Signetd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      (void)Wait(std::chrono::seconds(10));
    }
  }

  pid_t pid() const { return pid_; }
  std::string log() const { return ReadFile(log_); }

  // The exit status once it exited within `timeout`; -1 if it is still running (or was killed).
  int Wait(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() > end) {
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  bool Running() {
    if (pid_ > 0) {
      (void)Wait(std::chrono::milliseconds(0));
    }
    return pid_ > 0;
  }

  // Waits until the log holds `text` (true) or `timeout` passes.
  bool WaitForLog(std::string_view text, std::size_t occurrences = 1,
                  std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      const std::string text_now = log();
      std::size_t found = 0;
      for (std::size_t at = text_now.find(text); at != std::string::npos;
           at = text_now.find(text, at + 1)) {
        ++found;
      }
      if (found >= occurrences) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
};

class SignetdTest : public ::testing::Test {
 protected:
  std::filesystem::path State() const { return state_.path() / "s"; }
  std::filesystem::path Socket() const { return State() / "sign.sock"; }

  std::unique_ptr<Signetd> StartDev() {
    auto daemon = std::make_unique<Signetd>(
        std::vector<std::string>{"--dev", "--state-dir", State().string()},
        logs_.path() / ("signetd-" + std::to_string(starts_++) + ".log"));
    // Up to 30 s for the socket to answer.
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < end) {
      if (!daemon->Running()) {
        ADD_FAILURE() << "signetd exited early:\n" << daemon->log();
        return nullptr;
      }
      if (std::filesystem::exists(Socket()) && Get("/v1/health").status == 200) {
        return daemon;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "signetd did not answer within 30 s:\n" << daemon->log();
    return nullptr;
  }

  HttpResult Get(std::string_view path) const {
    return Curl("--unix-socket " + ShellQuote(Socket().string()) + " http://x" + std::string(path));
  }

  // Signs `content` (written to a file) with key "default"; returns the HTTP result and, on 200,
  // checks the signature with `openssl dgst -sha256 -verify` against `pem`.
  HttpResult SignAndVerify(const std::string& name, const std::string& content,
                           const std::string& pem) {
    const auto file = logs_.path() / name;
    WriteFile(file, content);
    const json body = {{"key", "default"},
                       {"tool", {{"name", "signet"}, {"version", "0.1"}}},
                       {"items", json::array({{{"name", name},
                                               {"size", content.size()},
                                               {"digests", {{"sha256", Sha256Hex(content)}}}}})}};
    const auto body_file = logs_.path() / (name + ".json");
    WriteFile(body_file, body.dump());
    HttpResult result = Curl("-X POST -H 'Content-Type: application/json' --data-binary @" +
                             ShellQuote(body_file.string()) + " --unix-socket " +
                             ShellQuote(Socket().string()) + " http://x/v1/sign");
    if (result.status != 200) {
      return result;
    }
    const json answer = json::parse(result.body);
    auto signature = Base64Decode(answer["items"][0]["signature"].get<std::string>());
    EXPECT_TRUE(signature) << result.body;
    if (!signature) {
      return result;
    }
    const auto sig = file.string() + ".sig";
    WriteFile(sig, std::string(signature->begin(), signature->end()));
    const auto pem_file = logs_.path() / "default.pem";
    WriteFile(pem_file, pem);
    const auto run =
        RunCommand("openssl dgst -sha256 -verify " + ShellQuote(pem_file.string()) +
                   " -signature " + ShellQuote(sig) + " " + ShellQuote(file.string()) + " 2>&1");
    EXPECT_EQ(run.exit_code, 0) << run.out;
    EXPECT_NE(run.out.find("Verified OK"), std::string::npos) << run.out;
    return result;
  }

  TempDir state_;
  TempDir logs_;
  int starts_ = 0;
};

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
  ASSERT_EQ(listed.size(), 1u) << keys.body;  // the audit key signs checkpoints only
  EXPECT_EQ(listed[0]["name"], "default");
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
