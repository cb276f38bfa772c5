// Approvals from the client side (admin/API.md, "Approvals") against the real signetd --dev: a
// rule with `approvals = M` holds `signet sign` (exit 3, nothing written); `signet admin approvals
// list|show|approve|deny`; self-approval refused; approvals by other uids (setpriv, so root only)
// let `signet sign --wait` write signatures that openssl verifies; a denial ends the wait with
// its reason; --wait-timeout ends it with the ID; `signet sign --collect ID` writes the signatures
// of a request held by an earlier run once it is approved, refusing a file changed since.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/daemon/signetd_process.h"

namespace signet::daemon {
namespace {

using net::testing::RunCommand;
using net::testing::ShellQuote;
using nlohmann::json;
using testing::ReadFile;
using testing::WriteFile;

constexpr char kAsApprover1[] = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
constexpr char kAsApprover2[] = "setpriv --reuid=65533 --regid=65533 --clear-groups ";

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class ApprovalsCliTest : public testing::SignetdFixture {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "approvals need a second identity: the test approves as uids 65534 and "
                      "65533 through setpriv, which needs root";
    }
  }

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

  // `[prefix] signet admin approvals ARGS --socket AdminSocket()`.
  CliRun Approvals(std::vector<std::string> args, const std::string& prefix = "") {
    args.insert(args.begin(), {"admin", "approvals"});
    args.push_back("--socket");
    args.push_back(AdminSocket().string());
    return Signet(args, prefix);
  }

  // `signet sign --socket Socket() --key default ARGS`.
  std::vector<std::string> SignArgs(const std::vector<std::string>& args) const {
    std::vector<std::string> all = {"sign", "--socket", Socket().string(), "--key", "default"};
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }

  // A file under the log dir with `content`; its path.
  std::string File(const std::string& name, const std::string& content) {
    const auto path = logs_.path() / name;
    WriteFile(path, content);
    return path.string();
  }

  // Starts signetd --dev and applies its policy with the dev rule needing `approvals` approvals
  // from the requester or uids 65534 and 65533 (the requester is named so that its refusal is
  // self_approval, not not_an_approver); gives those uids the approver role and lets them reach
  // the admin socket. Returns the daemon (null with a test failure when something failed).
  std::unique_ptr<testing::Signetd> StartWithApprovals(int approvals) {
    auto daemon = StartDev();
    if (daemon == nullptr) {
      return nullptr;
    }
    std::string policy = ReadFile(State() / "policy.toml");
    std::smatch match;
    static const std::regex kPrincipals(R"re(\nprincipals = \["([^"]+)"\]\n)re");
    if (!std::regex_search(policy, match, kPrincipals)) {
      ADD_FAILURE() << "no principals line in the dev policy:\n" << policy;
      return nullptr;
    }
    const std::string principal = match[1].str();
    const std::string approvers = "[\"" + principal + "\", \"uid:65534\", \"uid:65533\"]";
    policy.insert(static_cast<std::size_t>(match.position(0) + match.length(0)),
                  "approvals = " + std::to_string(approvals) + "\napprovers = " + approvers + "\n");
    const std::string role = "\napprover = [\"" + principal + "\"]\n";
    const std::size_t at = policy.find(role);
    if (at == std::string::npos) {
      ADD_FAILURE() << "no approver role in the dev policy:\n" << policy;
      return nullptr;
    }
    policy.replace(at, role.size(), "\napprover = " + approvers + "\n");
    const auto file = logs_.path() / "approvals.toml";
    WriteFile(file, policy);
    const CliRun applied =
        Signet({"admin", "policy", "apply", file.string(), "--socket", AdminSocket().string()});
    if (applied.exit_code != 0) {
      ADD_FAILURE() << "policy apply: " << applied.err << "\n" << policy;
      return nullptr;
    }
    for (const auto& dir : {state_.path(), State(), AdminSocket().parent_path()}) {
      EXPECT_EQ(::chmod(dir.c_str(), 0755), 0) << dir;
    }
    EXPECT_EQ(::chmod(AdminSocket().c_str(), 0666), 0);
    return daemon;
  }

  // The default key's public key, as `signet keys show default --pem` prints it.
  std::string PublicKeyFile() {
    const CliRun pem = Signet({"keys", "show", "default", "--pem", "--socket", Socket().string()});
    EXPECT_EQ(pem.exit_code, 0) << pem.err;
    EXPECT_NE(pem.out.find("BEGIN PUBLIC KEY"), std::string::npos) << pem.out;
    const auto path = logs_.path() / "default.pub.pem";
    WriteFile(path, pem.out);
    return path.string();
  }

  void ExpectVerifies(const std::string& file, const std::string& pem_file) {
    const auto run =
        RunCommand("openssl dgst -sha256 -verify " + ShellQuote(pem_file) + " -signature " +
                   ShellQuote(file + ".sig") + " " + ShellQuote(file) + " 2>&1");
    EXPECT_EQ(run.exit_code, 0) << file << ": " << run.out;
    EXPECT_NE(run.out.find("Verified OK"), std::string::npos) << file << ": " << run.out;
  }

  int runs_ = 0;
};

// The ID in "held for approval: ID (rule R needs M approval[s])"; empty when there is none.
std::string HeldId(const std::string& text, int approvals) {
  std::smatch match;
  const std::regex held("held for approval: ([A-Za-z0-9._-]+) \\(rule dev-user needs " +
                        std::to_string(approvals) + " approvals?\\)");
  return std::regex_search(text, match, held) ? match[1].str() : "";
}

bool Exists(const std::string& path) { return std::filesystem::exists(path); }

TEST_F(ApprovalsCliTest, HeldListShowSelfApprovalThenTwoApprovalsAndWait) {
  auto daemon = StartWithApprovals(2);
  ASSERT_NE(daemon, nullptr);
  const std::string pem = PublicKeyFile();

  // Without --wait: held, exit 3, nothing written, and what to do.
  const std::string a = File("a.txt", "held a\n");
  const std::string b = File("b.txt", "held b\n");
  const CliRun held = Signet(SignArgs({a, b}));
  EXPECT_EQ(held.exit_code, 3) << held.out << held.err;
  const std::string id = HeldId(held.err, 2);
  ASSERT_FALSE(id.empty()) << held.err;
  EXPECT_NE(held.err.find("signet admin approvals approve " + id), std::string::npos) << held.err;
  EXPECT_NE(held.err.find("--wait"), std::string::npos) << held.err;
  EXPECT_NE(held.err.find("; 0 failed; 2 held for approval"), std::string::npos) << held.err;
  EXPECT_EQ(held.out, "");
  EXPECT_FALSE(Exists(a + ".sig"));
  EXPECT_FALSE(Exists(b + ".sig"));

  // --json: one line per held file, naming the ID.
  const std::string c = File("c.txt", "held c\n");
  const CliRun held_json = Signet(SignArgs({"--json", c}));
  EXPECT_EQ(held_json.exit_code, 3) << held_json.err;
  const json line = json::parse(held_json.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(line.is_object()) << held_json.out;
  EXPECT_EQ(line["ok"], false);
  EXPECT_EQ(line["path"], c);
  EXPECT_EQ(line["approval_id"], HeldId(held_json.err, 2)) << held_json.err;

  // list: both pending, oldest first, 0 of 2 approvals.
  const CliRun list = Approvals({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(list.out.starts_with("ID ")) << list.out;
  EXPECT_NE(list.out.find("APPROVALS  EXPIRES IN\n"), std::string::npos) << list.out;
  EXPECT_TRUE(std::regex_search(
      list.out, std::regex("\n" + id + " +\\S+ +default +dev-user +2 +0/2 +(23h\\d\\dm|1d0h)\n")))
      << list.out;
  const CliRun list_json = Approvals({"list", "--json"});
  ASSERT_EQ(list_json.exit_code, 0) << list_json.err;
  const json listed = json::parse(list_json.out)["approvals"];
  ASSERT_EQ(listed.size(), 2u) << list_json.out;
  EXPECT_EQ(listed[0]["id"], id);
  EXPECT_EQ(listed[0]["status"], "pending");

  // show: every artifact with its digest.
  const CliRun show = Approvals({"show", id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(
      show.out.starts_with("id         " + id + "\nstatus     pending (0 of 2 approvals)\n"))
      << show.out;
  EXPECT_NE(show.out.find("\nrule       dev-user\n"), std::string::npos) << show.out;
  for (const auto& [path, content] : {std::pair{a, "held a\n"}, std::pair{b, "held b\n"}}) {
    EXPECT_NE(show.out.find("  " + path + "  "), std::string::npos) << show.out;
    EXPECT_NE(show.out.find("sha256:" + testing::Sha256Hex(content)), std::string::npos)
        << show.out;
  }

  // The requester may not approve their own request.
  const CliRun self = Approvals({"approve", id});
  EXPECT_EQ(self.exit_code, 1) << self.out;
  EXPECT_TRUE(self.err.starts_with("signet: admin approvals approve: ")) << self.err;
  EXPECT_NE(self.err.find("(self_approval)"), std::string::npos) << self.err;
  EXPECT_NE(self.err.find("ask another approver"), std::string::npos) << self.err;
  EXPECT_NE(self.err.find("signet admin approvals approve " + id), std::string::npos) << self.err;

  // --wait, started before anyone approves: it waits, then writes verifiable signatures.
  const std::string w1 = File("w1.txt", "waited for 1\n");
  const std::string w2 = File("w2.txt", "waited for 2\n");
  testing::ChildProcess waiting(SIGNET_BINARY,
                                SignArgs({"--wait", "--wait-timeout", "120", w1, w2}),
                                logs_.path() / "wait.log");
  ASSERT_TRUE(waiting.WaitForLog("waiting for approval of ")) << waiting.log();
  const std::string wait_id = HeldId(waiting.log(), 2);
  ASSERT_FALSE(wait_id.empty()) << waiting.log();
  EXPECT_NE(waiting.log().find("waiting for approval of " + wait_id + ": 0 of 2 approvals"),
            std::string::npos)
      << waiting.log();

  const CliRun first = Approvals({"approve", wait_id}, kAsApprover1);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, wait_id + ": approved 1 of 2; waiting for 1 more\n");
  EXPECT_TRUE(waiting.WaitForLog("waiting for approval of " + wait_id + ": 1 of 2 approvals"))
      << waiting.log();
  const CliRun again = Approvals({"approve", wait_id}, kAsApprover1);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("(already_approved)"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("each approver counts once"), std::string::npos) << again.err;

  const CliRun second = Approvals({"approve", wait_id}, kAsApprover2);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_TRUE(
      std::regex_match(second.out, std::regex(wait_id + ": approved 2 of 2: (signing|signed)\n")))
      << second.out;
  ASSERT_EQ(waiting.Wait(std::chrono::seconds(60)), 0) << waiting.log();
  EXPECT_NE(waiting.log().find("signed " + w1 + " -> " + w1 + ".sig (seq "), std::string::npos)
      << waiting.log();
  ExpectVerifies(w1, pem);
  ExpectVerifies(w2, pem);

  // The first request still waits; --all shows the signed one too.
  const CliRun all = Approvals({"list", "--all", "--json"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  bool seen_signed = false;
  const json every = json::parse(all.out);
  for (const json& approval : every["approvals"]) {
    if (approval["id"] == wait_id) {
      seen_signed = true;
      EXPECT_EQ(approval["status"], "signed") << all.out;
      EXPECT_EQ(approval["approvals"].size(), 2u) << all.out;
    }
    if (approval["id"] == id) {
      EXPECT_EQ(approval["status"], "pending") << all.out;
    }
  }
  EXPECT_TRUE(seen_signed) << all.out;
  const CliRun all_table = Approvals({"list", "--all"});
  ASSERT_EQ(all_table.exit_code, 0) << all_table.err;
  EXPECT_TRUE(
      std::regex_search(all_table.out, std::regex("\n" + wait_id + " +signed +.* 2/2 +-\n")))
      << all_table.out;
  const CliRun late = Approvals({"approve", wait_id}, kAsApprover1);
  EXPECT_EQ(late.exit_code, 1);
  EXPECT_NE(late.err.find("(not_pending)"), std::string::npos) << late.err;
}

TEST_F(ApprovalsCliTest, DenialEndsTheWaitWithItsReasonAndTimeoutNamesTheId) {
  auto daemon = StartWithApprovals(1);
  ASSERT_NE(daemon, nullptr);

  const std::string d = File("d.txt", "to be denied\n");
  testing::ChildProcess waiting(SIGNET_BINARY, SignArgs({"--wait", d}),
                                logs_.path() / "deny-wait.log");
  ASSERT_TRUE(waiting.WaitForLog("waiting for approval of ")) << waiting.log();
  const std::string id = HeldId(waiting.log(), 1);
  ASSERT_FALSE(id.empty()) << waiting.log();

  const CliRun no_reason = Approvals({"deny", id}, kAsApprover1);
  EXPECT_EQ(no_reason.exit_code, 2) << no_reason.err;
  const CliRun denied = Approvals({"deny", id, "--reason", "not a release build"}, kAsApprover1);
  ASSERT_EQ(denied.exit_code, 0) << denied.err;
  EXPECT_NE(denied.out.find(id + ": denied"), std::string::npos) << denied.out;
  ASSERT_EQ(waiting.Wait(std::chrono::seconds(60)), 1) << waiting.log();
  EXPECT_NE(waiting.log().find(d + ": denied by "), std::string::npos) << waiting.log();
  EXPECT_NE(waiting.log().find("not a release build"), std::string::npos) << waiting.log();
  EXPECT_FALSE(Exists(d + ".sig"));

  const CliRun approve_denied = Approvals({"approve", id}, kAsApprover1);
  EXPECT_EQ(approve_denied.exit_code, 1);
  EXPECT_NE(approve_denied.err.find("(not_pending)"), std::string::npos) << approve_denied.err;
  const CliRun show = Approvals({"show", id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("status     denied\n"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("reason     not a release build"), std::string::npos) << show.out;

  // Nobody approves within --wait-timeout: exit 1, the ID named, nothing written.
  const std::string t = File("t.txt", "nobody approves\n");
  const CliRun timed_out = Signet(SignArgs({"--wait", "--wait-timeout", "1", t}));
  EXPECT_EQ(timed_out.exit_code, 1) << timed_out.err;
  const std::string timeout_id = HeldId(timed_out.err, 1);
  ASSERT_FALSE(timeout_id.empty()) << timed_out.err;
  EXPECT_NE(timed_out.err.find("held request " + timeout_id + " is still pending after 1 s"),
            std::string::npos)
      << timed_out.err;
  EXPECT_FALSE(Exists(t + ".sig"));

  const CliRun unknown = Approvals({"approve", "no-such-request"}, kAsApprover1);
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("(unknown_approval)"), std::string::npos) << unknown.err;
}

TEST_F(ApprovalsCliTest, CollectWritesTheSignaturesOfAnApprovedRequest) {
  auto daemon = StartWithApprovals(1);
  ASSERT_NE(daemon, nullptr);
  const std::string pem = PublicKeyFile();

  // Held without --wait: exit 3, and the message says how to collect the signatures later.
  const std::string a = File("ca.txt", "collect a\n");
  const std::string b = File("cb.txt", "collect b\n");
  const CliRun held = Signet(SignArgs({a, b}));
  ASSERT_EQ(held.exit_code, 3) << held.err;
  const std::string id = HeldId(held.err, 1);
  ASSERT_FALSE(id.empty()) << held.err;
  EXPECT_NE(held.err.find("signet admin approvals approve " + id), std::string::npos) << held.err;
  EXPECT_NE(held.err.find("`signet sign --collect " + id + " ... FILES`"), std::string::npos)
      << held.err;

  // Collected before anyone approved: still held (exit 3), nothing written, nothing sent.
  const CliRun early = Signet(SignArgs({"--collect", id, a, b}));
  EXPECT_EQ(early.exit_code, 3) << early.err;
  EXPECT_NE(early.err.find("held for approval: " + id +
                           " (0 of 1 approvals); nothing written "
                           "for its 2 files"),
            std::string::npos)
      << early.err;
  EXPECT_NE(early.err.find("; 0 failed; 2 held for approval"), std::string::npos) << early.err;
  EXPECT_EQ(early.out, "");
  EXPECT_FALSE(Exists(a + ".sig"));
  const CliRun listed = Approvals({"list", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_EQ(json::parse(listed.out)["approvals"].size(), 1u) << listed.out;

  const CliRun approved = Approvals({"approve", id}, kAsApprover1);
  ASSERT_EQ(approved.exit_code, 0) << approved.err;

  // The same files, in another order: matched by name, checked, written.
  const CliRun collected = Signet(SignArgs({"--collect", id, b, a}));
  ASSERT_EQ(collected.exit_code, 0) << collected.out << collected.err;
  EXPECT_NE(collected.out.find("signed " + a + " -> " + a + ".sig (seq "), std::string::npos)
      << collected.out;
  EXPECT_NE(collected.out.find("signed " + b + " -> " + b + ".sig (seq "), std::string::npos)
      << collected.out;
  ExpectVerifies(a, pem);
  ExpectVerifies(b, pem);

  // Collected again: the signatures are kept without --force, replaced with it.
  const std::string kept = ReadFile(a + ".sig");
  ASSERT_EQ(::truncate((b + ".sig").c_str(), 0), 0);
  const CliRun again = Signet(SignArgs({"--collect", id, a, b}));
  EXPECT_EQ(again.exit_code, 1) << again.err;
  EXPECT_NE(again.err.find(a + ": " + a + ".sig exists; use --force"), std::string::npos)
      << again.err;
  EXPECT_EQ(ReadFile(a + ".sig"), kept);
  EXPECT_EQ(ReadFile(b + ".sig"), "");
  const CliRun forced = Signet(SignArgs({"--collect", id, "--force", a, b}));
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  ExpectVerifies(b, pem);

  // Not the files of the request: each difference named, nothing written.
  const std::string other = File("cother.txt", "never sent\n");
  const CliRun mismatch = Signet(SignArgs({"--collect", id, "--force", a, other}));
  EXPECT_EQ(mismatch.exit_code, 1) << mismatch.err;
  EXPECT_NE(mismatch.err.find("the files do not match held request " + id + ": nothing written"),
            std::string::npos)
      << mismatch.err;
  EXPECT_NE(mismatch.err.find(other + ": not in held request " + id), std::string::npos)
      << mismatch.err;
  EXPECT_NE(mismatch.err.find("held request " + id + " signed " + b +
                              ", which is not among the files given"),
            std::string::npos)
      << mismatch.err;
  EXPECT_FALSE(Exists(other + ".sig"));

  // A file changed after the request was made: its signature is over the old contents, so it
  // does not verify over the new digest and nothing is written; restored, it is collected.
  const std::string m = File("cm.txt", "as sent\n");
  const CliRun held_m = Signet(SignArgs({m}));
  ASSERT_EQ(held_m.exit_code, 3) << held_m.err;
  const std::string id_m = HeldId(held_m.err, 1);
  ASSERT_FALSE(id_m.empty()) << held_m.err;
  ASSERT_EQ(Approvals({"approve", id_m}, kAsApprover1).exit_code, 0);
  WriteFile(m, "changed after the request\n");
  const CliRun changed = Signet(SignArgs({"--collect", id_m, m}));
  EXPECT_EQ(changed.exit_code, 1) << changed.err;
  EXPECT_NE(changed.err.find(m + ": the signature does not match the file as it is now"),
            std::string::npos)
      << changed.err;
  EXPECT_NE(changed.err.find("changed since it was sent for signing"), std::string::npos)
      << changed.err;
  EXPECT_FALSE(Exists(m + ".sig"));
  WriteFile(m, "as sent\n");
  const CliRun restored = Signet(SignArgs({"--collect", id_m, m}));
  EXPECT_EQ(restored.exit_code, 0) << restored.err;
  ExpectVerifies(m, pem);

  // A batch key: each receipt is assembled from the answer and the file's digest now, and checked
  // before it is written, as for a 200 answer; a changed file fails that check.
  const std::vector<std::string> batch_key = {"sign", "--socket", Socket().string(), "--key",
                                              "batch"};
  auto batch_args = [&](std::vector<std::string> args) {
    args.insert(args.begin(), batch_key.begin(), batch_key.end());
    return args;
  };
  const std::string r = File("cr.txt", "a receipt after approval\n");
  const CliRun held_r = Signet(batch_args({r}));
  ASSERT_EQ(held_r.exit_code, 3) << held_r.err;
  const std::string id_r = HeldId(held_r.err, 1);
  ASSERT_FALSE(id_r.empty()) << held_r.err;
  ASSERT_EQ(Approvals({"approve", id_r}, kAsApprover1).exit_code, 0);
  WriteFile(r, "changed\n");
  const CliRun changed_r = Signet(batch_args({"--collect", id_r, r}));
  EXPECT_EQ(changed_r.exit_code, 1) << changed_r.err;
  EXPECT_NE(changed_r.err.find(r + ": signetd's receipt does not check out"), std::string::npos)
      << changed_r.err;
  EXPECT_NE(changed_r.err.find("if the file changed since it was sent for signing"),
            std::string::npos)
      << changed_r.err;
  EXPECT_FALSE(Exists(r + ".receipt"));
  const CliRun wrong_key = Signet(SignArgs({"--collect", id_r, r}));
  EXPECT_EQ(wrong_key.exit_code, 1) << wrong_key.err;
  EXPECT_NE(wrong_key.err.find("was signed with key batch, not default: run with --key batch"),
            std::string::npos)
      << wrong_key.err;
  WriteFile(r, "a receipt after approval\n");
  const CliRun receipt = Signet(batch_args({"--collect", id_r, r}));
  ASSERT_EQ(receipt.exit_code, 0) << receipt.err;
  const CliRun batch_pem =
      Signet({"keys", "show", "batch", "--pem", "--socket", Socket().string()});
  ASSERT_EQ(batch_pem.exit_code, 0) << batch_pem.err;
  WriteFile(logs_.path() / "batch.pub.pem", batch_pem.out);
  const CliRun verified =
      Signet({"verify", "--key-file", (logs_.path() / "batch.pub.pem").string(), r});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  EXPECT_EQ(verified.out, r + ": OK\n");

  // An ID signetd does not know: exit 1, said plainly.
  const CliRun unknown = Signet(SignArgs({"--collect", "no-such-request", a}));
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no held request no-such-request on this signetd"), std::string::npos)
      << unknown.err;
  EXPECT_NE(unknown.err.find("unknown_request"), std::string::npos) << unknown.err;

  // Denied: exit 1 with the reason.
  const std::string d = File("cd.txt", "to be denied\n");
  const CliRun held_d = Signet(SignArgs({d}));
  const std::string id_d = HeldId(held_d.err, 1);
  ASSERT_FALSE(id_d.empty()) << held_d.err;
  ASSERT_EQ(Approvals({"deny", id_d, "--reason", "not a release"}, kAsApprover1).exit_code, 0);
  const CliRun denied = Signet(SignArgs({"--collect", id_d, d}));
  EXPECT_EQ(denied.exit_code, 1) << denied.err;
  EXPECT_NE(denied.err.find(d + ": denied by "), std::string::npos) << denied.err;
  EXPECT_NE(denied.err.find("not a release (held request " + id_d + ")"), std::string::npos)
      << denied.err;
  EXPECT_FALSE(Exists(d + ".sig"));

  // --wait: polls until an approver approves, then writes.
  const std::string w = File("cw.txt", "collected after waiting\n");
  const CliRun held_w = Signet(SignArgs({w}));
  const std::string id_w = HeldId(held_w.err, 1);
  ASSERT_FALSE(id_w.empty()) << held_w.err;
  testing::ChildProcess waiting(SIGNET_BINARY,
                                SignArgs({"--collect", id_w, "--wait", "--wait-timeout", "120", w}),
                                logs_.path() / "collect-wait.log");
  ASSERT_TRUE(waiting.WaitForLog("waiting for approval of " + id_w + ": 0 of 1 approvals"))
      << waiting.log();
  ASSERT_EQ(Approvals({"approve", id_w}, kAsApprover1).exit_code, 0);
  ASSERT_EQ(waiting.Wait(std::chrono::seconds(60)), 0) << waiting.log();
  ExpectVerifies(w, pem);
}

// Usage errors need no daemon (and no root); the test fixture's SetUp skips without root, so
// these run as a plain test.
TEST(ApprovalsCliUsage, BadCommandLinesExitTwo) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"admin", "approvals"},
           {"admin", "approvals", "show"},
           {"admin", "approvals", "approve", "../../v1/policy"},
           {"admin", "approvals", "approve", ".."},
           {"admin", "approvals", "deny", "abc"},
           {"admin", "approvals", "deny", "abc", "--reason", ""},
           {"admin", "approvals", "list", "--bogus"},
           {"sign", "--key", "default", "--wait-timeout", "5", "f"},
           {"sign", "--key", "default", "--wait", "--wait-timeout", "0", "f"},
           // --collect sends no request: how requests are sent does not apply.
           {"sign", "--key", "default", "--collect", "abc", "--requests", "2", "f"},
           {"sign", "--key", "default", "--collect", "abc", "--batch-size", "10", "f"},
           {"sign", "--key", "default", "--collect", "../v1/keys", "f"},
           {"sign", "--key", "default", "--collect", "", "f"},
           {"sign", "--key", "default", "--collect", "abc", "--wait-timeout", "5", "f"},
       }) {
    std::string command = ShellQuote(SIGNET_BINARY);
    for (const std::string& arg : args) {
      command += " " + ShellQuote(arg);
    }
    EXPECT_EQ(RunCommand(command + " 2>/dev/null").exit_code, 2) << command;
  }
  const auto help = RunCommand(ShellQuote(SIGNET_BINARY) + " sign --help");
  EXPECT_NE(help.out.find("3 some files are held for approval"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--collect ID"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace signet::daemon
