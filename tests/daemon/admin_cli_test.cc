// `signet admin` against the real signetd --dev: policy show, validate, apply, versions and
// explain over the real admin socket, checked against real sign requests; stats; the errors a user
// meets (no socket, nothing listening, no permission, no role) and usage errors.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/daemon/signetd_process.h"

namespace signet::daemon {
namespace {

using net::testing::HttpResult;
using net::testing::RunCommand;
using net::testing::ShellQuote;
using nlohmann::json;
using testing::ReadFile;
using testing::WriteFile;

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class AdminCliTest : public testing::SignetdFixture {
 protected:
  std::filesystem::path AdminSocket() const { return State() / "admin" / "admin.sock"; }

  // `[prefix] signet ARGS` (each argument quoted), stdout and stderr captured apart.
  CliRun Signet(const std::vector<std::string>& args, const std::string& prefix = "") {
    const std::filesystem::path err = logs_.path() / ("err" + std::to_string(runs_++));
    std::string command = prefix + ShellQuote(SIGNET_BINARY);
    for (const std::string& arg : args) {
      command += " " + ShellQuote(arg);
    }
    const auto result = RunCommand(command + " 2>" + ShellQuote(err.string()));
    return CliRun{result.exit_code, result.out, ReadFile(err)};
  }

  // `signet admin ARGS --socket AdminSocket()`.
  CliRun Admin(std::vector<std::string> args, const std::string& prefix = "") {
    args.insert(args.begin(), "admin");
    args.push_back("--socket");
    args.push_back(AdminSocket().string());
    return Signet(args, prefix);
  }

  // `signet sign --key default` of one file through the sign socket (tool "signet").
  CliRun SignetSign(const std::string& name, const std::string& content) {
    const auto file = logs_.path() / name;
    WriteFile(file, content);
    return Signet({"sign", "--socket", Socket().string(), "--key", "default", file.string()});
  }

  int runs_ = 0;
};

// The dev policy's principal: the one string in its first `principals = [...]`.
std::string DevPrincipal(const std::string& policy) {
  std::smatch match;
  static const std::regex kPrincipal(R"re(principals = \["([^"]+)"\])re");
  EXPECT_TRUE(std::regex_search(policy, match, kPrincipal)) << policy;
  return match.size() > 1 ? match[1].str() : "";
}

// The 1-based number of the first line of `text` that contains `needle`.
int LineOf(const std::string& text, const std::string& needle) {
  const std::size_t at = text.find(needle);
  return at == std::string::npos
             ? -1
             : 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

TEST_F(AdminCliTest, ShowValidateApplyVersionsExplainAndStats) {
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  const std::string v1_text = ReadFile(State() / "policy.toml");
  const std::string principal = DevPrincipal(v1_text);

  // show: version 1, who and when, then the text.
  CliRun show = Admin({"policy", "show"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("version  1\n"), std::string::npos) << show.out;
  EXPECT_TRUE(
      std::regex_search(show.out, std::regex(R"(\napplied  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ by )")))
      << show.out;
  EXPECT_NE(show.out.find("\nsource   "), std::string::npos) << show.out;
  EXPECT_TRUE(show.out.ends_with("\n\n" + v1_text)) << show.out;
  CliRun show_json = Admin({"policy", "show", "--json"});
  ASSERT_EQ(show_json.exit_code, 0) << show_json.err;
  const json v1 = json::parse(show_json.out);
  EXPECT_EQ(v1["number"], 1);
  EXPECT_EQ(v1["text"], v1_text);
  EXPECT_NE(show.out.find("sha256   " + v1["version"].get<std::string>() + "\n"), std::string::npos)
      << show.out;

  // Before any change, `signet sign` (tool "signet") may sign.
  CliRun signed_before = SignetSign("before.txt", "signed under version 1\n");
  ASSERT_EQ(signed_before.exit_code, 0) << signed_before.err;

  // validate of a broken file: FILE:LINE:COL, exit 1, the policy in force unchanged.
  const auto bad = logs_.path() / "bad.toml";
  const std::string bad_text = v1_text + "\n[[rule]]\nname = \"broken\"\nkeys = 7\n";
  WriteFile(bad, bad_text);
  CliRun invalid = Admin({"policy", "validate", bad.string()});
  EXPECT_EQ(invalid.exit_code, 1) << invalid.out << invalid.err;
  // Every problem the parser names, one a line, in the file the user gave.
  EXPECT_TRUE(invalid.err.starts_with(bad.string() + ":" +
                                      std::to_string(LineOf(bad_text, "name = \"broken\"") - 1) +
                                      ":1: rule broken has no principals\n"))
      << invalid.err;
  EXPECT_NE(invalid.err.find("\n" + bad.string() + ":" +
                             std::to_string(LineOf(bad_text, "keys = 7")) + ":8: keys must be "),
            std::string::npos)
      << invalid.err;
  EXPECT_NE(invalid.err.find("is not a valid policy"), std::string::npos) << invalid.err;
  CliRun bad_apply = Admin({"policy", "apply", bad.string()});
  EXPECT_EQ(bad_apply.exit_code, 1);
  EXPECT_TRUE(bad_apply.err.starts_with(bad.string() + ":")) << bad_apply.err;
  EXPECT_NE(bad_apply.err.find("the policy in force is unchanged"), std::string::npos)
      << bad_apply.err;
  EXPECT_EQ(json::parse(Admin({"policy", "show", "--json"}).out)["number"], 1);

  // Version 2 lets only the tool "signet-test" sign.
  const auto v2_file = logs_.path() / "v2.toml";
  std::string v2_text = v1_text;
  const std::size_t principals = v2_text.find("principals = [");
  ASSERT_NE(principals, std::string::npos);
  v2_text.insert(v2_text.find('\n', principals) + 1, "tools = [\"signet-test\"]\n");
  WriteFile(v2_file, v2_text);
  CliRun valid = Admin({"policy", "validate", v2_file.string()});
  ASSERT_EQ(valid.exit_code, 0) << valid.err;
  EXPECT_NE(valid.out.find(": valid (sha256 "), std::string::npos) << valid.out;
  EXPECT_NE(valid.out.find("rules changed: dev-user"), std::string::npos) << valid.out;
  CliRun valid_json = Admin({"policy", "validate", v2_file.string(), "--json"});
  ASSERT_EQ(valid_json.exit_code, 0) << valid_json.err;
  EXPECT_EQ(json::parse(valid_json.out)["changes"]["rules_changed"], json::array({"dev-user"}));

  CliRun applied = Admin({"policy", "apply", v2_file.string(), "--comment", "only signet-test"});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_NE(applied.out.find("as policy version 2 (sha256 "), std::string::npos) << applied.out;
  EXPECT_NE(applied.out.find("rules changed: dev-user"), std::string::npos) << applied.out;

  // It takes effect: the allowed tool signs, `signet sign` is now refused.
  const HttpResult allowed =
      PostSign(testing::SignBody(json::array({testing::SignItem("a.txt", "allowed\n")})));
  EXPECT_EQ(allowed.status, 200) << allowed.body;
  CliRun refused = SignetSign("after.txt", "refused under version 2\n");
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_NE(refused.err.find("dev-user"), std::string::npos) << refused.err;

  // Applying it again changes nothing.
  CliRun again = Admin({"policy", "apply", v2_file.string()});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("no change"), std::string::npos) << again.out;

  // versions: newest first, with the comment.
  CliRun versions = Admin({"policy", "versions"});
  ASSERT_EQ(versions.exit_code, 0) << versions.err;
  EXPECT_TRUE(std::regex_search(
      versions.out,
      std::regex(
          R"(^VERSION  APPLIED \(UTC\) +BY +SOURCE +SHA256 +COMMENT\n +2  \d{4}-[^\n]*only signet-test\n +1  \d{4}-[^\n]*\n$)")))
      << versions.out;
  CliRun versions_json = Admin({"policy", "versions", "--json"});
  ASSERT_EQ(versions_json.exit_code, 0) << versions_json.err;
  const json listed = json::parse(versions_json.out)["versions"];
  ASSERT_EQ(listed.size(), 2u) << versions_json.out;
  EXPECT_EQ(listed[0]["number"], 2);
  EXPECT_EQ(listed[0]["comment"], "only signet-test");
  EXPECT_EQ(listed[1]["version"], v1["version"]);

  // explain agrees with the requests above.
  CliRun deny = Admin({"policy", "explain", "--principal", principal, "--key", "default", "--tool",
                       "signet", "--artifact", "after.txt"});
  ASSERT_EQ(deny.exit_code, 0) << deny.err;
  EXPECT_TRUE(deny.out.starts_with("decision   deny\nrule       dev-user\nreason     "))
      << deny.out;
  CliRun allow = Admin({"policy", "explain", "--principal", principal, "--key", "default", "--tool",
                        "signet-test", "--artifact", "a.txt", "--json"});
  ASSERT_EQ(allow.exit_code, 0) << allow.err;
  const json verdict = json::parse(allow.out);
  EXPECT_EQ(verdict["decision"], "allow");
  EXPECT_EQ(verdict["rule"], "dev-user");
  EXPECT_EQ(verdict["policy_version"], listed[0]["version"]);

  // stats: health and the signatures counted above.
  (void)WaitForCheckpoint();
  CliRun stats = Admin({"stats"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_TRUE(stats.out.starts_with("status      ok")) << stats.out;
  EXPECT_TRUE(std::regex_search(
      stats.out,
      std::regex(
          R"(\naudit       \d+ records, latest checkpoint covers \d+, [0-9.]+ (s|min) old\n)")))
      << stats.out;
  EXPECT_TRUE(std::regex_search(
      stats.out, std::regex(R"(\ntoken       \S+: \d+ signatures, 0 failed jobs\n)")))
      << stats.out;
  EXPECT_TRUE(std::regex_search(stats.out, std::regex(R"(\n +default +signed +2\n)"))) << stats.out;
  EXPECT_TRUE(std::regex_search(stats.out, std::regex(R"(\n +default +denied +1\n)"))) << stats.out;
  CliRun stats_json = Admin({"stats", "--json"});
  ASSERT_EQ(stats_json.exit_code, 0) << stats_json.err;
  const json both = json::parse(stats_json.out);
  EXPECT_EQ(both["health"]["status"], "ok");
  ASSERT_TRUE(both["metrics"].contains("signet_signatures_total")) << stats_json.out;
  double signed_items = 0;
  for (const json& sample : both["metrics"]["signet_signatures_total"]) {
    if (sample["labels"]["key"] == "default" && sample["labels"]["result"] == "signed") {
      signed_items += sample["value"].get<double>();
    }
  }
  EXPECT_EQ(signed_items, 2);
}

// The keys endpoints (admin/API.md, "Keys"): generate, list, disable (sign requests refused),
// enable (they sign again), and a name that is taken.
TEST_F(AdminCliTest, KeysGenerateListDisableEnable) {
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  CliRun generated =
      Admin({"keys", "generate", "release-2027", "--algorithm", "ecdsa-p256", "--format", "raw"});
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_TRUE(generated.out.starts_with(
      "generated key release-2027: ecdsa-p256, format raw, enabled, fingerprint "))
      << generated.out;
  CliRun taken =
      Admin({"keys", "generate", "release-2027", "--algorithm", "ecdsa-p256", "--format", "raw"});
  EXPECT_EQ(taken.exit_code, 1);
  EXPECT_TRUE(taken.err.starts_with("signet: admin keys generate: ")) << taken.err;
  EXPECT_NE(taken.err.find("(key_exists)"), std::string::npos) << taken.err;

  CliRun listed = Admin({"keys", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_TRUE(std::regex_search(
      listed.out,
      std::regex(R"re(\nrelease-2027 +ecdsa-p256 +raw +enabled +admin-api +0 +[0-9a-f]{64}\n)re")))
      << listed.out;
  CliRun listed_json = Admin({"keys", "list", "--json"});
  ASSERT_EQ(listed_json.exit_code, 0) << listed_json.err;
  EXPECT_EQ(json::parse(listed_json.out)["keys"].size(), 3u) << listed_json.out;

  CliRun disabled = Admin({"keys", "disable", "default", "--reason", "rotating"});
  ASSERT_EQ(disabled.exit_code, 0) << disabled.err;
  EXPECT_NE(disabled.out.find("key default: ecdsa-p256, format raw, disabled"), std::string::npos)
      << disabled.out;
  CliRun refused = SignetSign("disabled.txt", "a disabled key signs nothing\n");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("key_disabled"), std::string::npos) << refused.err;
  CliRun enabled = Admin({"keys", "enable", "default"});
  ASSERT_EQ(enabled.exit_code, 0) << enabled.err;
  EXPECT_NE(enabled.out.find("enabled"), std::string::npos) << enabled.out;
  CliRun signs = SignetSign("enabled.txt", "signs again\n");
  EXPECT_EQ(signs.exit_code, 0) << signs.err;

  CliRun unknown = Admin({"keys", "disable", "no-such-key"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("(unknown_key)"), std::string::npos) << unknown.err;
}

TEST_F(AdminCliTest, MissingSocketNothingListeningAndUsageErrors) {
  const auto missing = logs_.path() / "nowhere" / "admin.sock";
  CliRun no_socket = Signet({"admin", "policy", "show", "--socket", missing.string()});
  EXPECT_EQ(no_socket.exit_code, 1);
  EXPECT_TRUE(no_socket.err.starts_with("signet: admin policy show: no admin socket at " +
                                        missing.string() + "; is signetd running"))
      << no_socket.err;
  CliRun from_env =
      Signet({"admin", "stats"}, "SIGNET_ADMIN_SOCKET=" + ShellQuote(missing.string()) + " ");
  EXPECT_EQ(from_env.exit_code, 1);
  EXPECT_NE(from_env.err.find("no admin socket at " + missing.string()), std::string::npos)
      << from_env.err;

  // A socket file left by a signetd that stopped: nothing listens.
  const auto stale = logs_.path() / "stale.sock";
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, stale.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  CliRun not_listening = Signet({"admin", "keys", "list", "--socket", stale.string()});
  EXPECT_EQ(not_listening.exit_code, 1);
  EXPECT_NE(not_listening.err.find("nothing is listening on " + stale.string()), std::string::npos)
      << not_listening.err;

  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"admin"},
           {"admin", "policy"},
           {"admin", "policy", "frobnicate"},
           {"admin", "policy", "validate"},
           {"admin", "policy", "explain", "--key", "default"},
           {"admin", "policy", "show", "--socket", ""},
           {"admin", "keys", "generate", "k1", "--algorithm", "ecdsa-p256"},
           {"admin", "keys", "disable", "../../v1/policy"},
           {"admin", "stats", "--bogus"},
       }) {
    CliRun usage = Signet(args);
    EXPECT_EQ(usage.exit_code, 2) << args.size() << " " << usage.err;
    EXPECT_FALSE(usage.err.empty());
  }
  CliRun help = Signet({"admin", "policy", "apply", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--comment"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("$SIGNET_ADMIN_SOCKET"), std::string::npos) << help.out;
}

TEST_F(AdminCliTest, AnotherUserIsToldAboutPermissionsThenRoles) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to run signet as another uid";
  }
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);
  const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  for (const auto& dir : {state_.path(), State()}) {
    ASSERT_EQ(::chmod(dir.c_str(), 0755), 0) << dir;
  }
  // The admin directory is 0750: another user cannot reach the socket at all.
  CliRun denied = Admin({"policy", "show"}, as_nobody);
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_NE(denied.err.find("permission denied reaching " + AdminSocket().string()),
            std::string::npos)
      << denied.err;
  EXPECT_NE(denied.err.find("[admin] group"), std::string::npos) << denied.err;

  // Reachable, but the policy gives uid 65534 no role: disconnected without an answer.
  ASSERT_EQ(::chmod(AdminSocket().parent_path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(AdminSocket().c_str(), 0666), 0);
  CliRun no_role = Admin({"policy", "show"}, as_nobody);
  EXPECT_EQ(no_role.exit_code, 1);
  EXPECT_TRUE(no_role.err.starts_with("signet: admin policy show: signetd at " +
                                      AdminSocket().string() +
                                      " closed the connection without an answer: your user may "
                                      "hold no role in the policy's [roles]"))
      << no_role.err;
  EXPECT_NE(no_role.err.find("uid 65534"), std::string::npos) << no_role.err;
  // The owner still gets an answer.
  EXPECT_EQ(Admin({"policy", "show"}).exit_code, 0);
}

}  // namespace
}  // namespace signet::daemon
