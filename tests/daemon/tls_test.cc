// signetd's TLS listener with client certificates, end to end: certificates made by the openssl
// command, curl as the client, the openssl command as the verifier, the audit export as the record
// of who signed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "appliance/base/base.h"
#include "tests/daemon/signetd_process.h"

namespace signet::daemon {
namespace {

using net::testing::Curl;
using net::testing::HttpResult;
using net::testing::RunCommand;
using net::testing::ShellQuote;
using nlohmann::json;
using testing::ReadFile;
using testing::SignBody;
using testing::SignItem;
using testing::WriteFile;

// A TCP port on 127.0.0.1 that was free a moment ago (0 on failure).
int FreePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  if (!fd || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    return 0;
  }
  return ntohs(addr.sin_port);
}

class TlsTest : public testing::SignetdFixture {
 protected:
  std::filesystem::path Pki() const { return logs_.path() / "pki"; }
  std::string P(const std::string& name) const { return ShellQuote((Pki() / name).string()); }

  // Runs `command` in a shell; fails the test (false) unless it exits 0.
  bool Shell(const std::string& command) {
    const auto run = RunCommand("(" + command + ") 2>&1");
    EXPECT_EQ(run.exit_code, 0) << command << "\n" << run.out;
    return run.exit_code == 0;
  }

  // A self-signed CA `name`.pem / `name`.key.
  bool MakeCa(const std::string& name, const std::string& cn) {
    return Shell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
                 P(name + ".key") + " -out " + P(name + ".pem") + " -days 2 -subj " +
                 ShellQuote("/CN=" + cn) +
                 " -addext basicConstraints=critical,CA:TRUE"
                 " -addext keyUsage=critical,keyCertSign,cRLSign");
  }

  // A certificate `name`.pem / `name`.key for `cn`, issued by CA `ca`, with extensions `ext`.
  bool MakeLeaf(const std::string& name, const std::string& cn, const std::string& ca,
                const std::string& ext) {
    WriteFile(Pki() / (name + ".ext"), ext);
    return Shell("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
                 P(name + ".key") + " -out " + P(name + ".csr") + " -subj " +
                 ShellQuote("/CN=" + cn)) &&
           Shell("openssl x509 -req -in " + P(name + ".csr") + " -CA " + P(ca + ".pem") +
                 " -CAkey " + P(ca + ".key") + " -CAcreateserial -days 2 -out " + P(name + ".pem") +
                 " -extfile " + P(name + ".ext"));
  }

  // POST /v1/sign of `body` over TLS with `client_args` (--cert/--key, or nothing).
  HttpResult PostTls(int port, const json& body, const std::string& client_args) {
    const auto body_file = logs_.path() / ("tls-body-" + std::to_string(tls_posts_++) + ".json");
    WriteFile(body_file, body.dump());
    return Curl("--cacert " + P("ca.pem") + " " + client_args +
                " -X POST -H 'Content-Type: application/json' --data-binary @" +
                ShellQuote(body_file.string()) + " https://127.0.0.1:" + std::to_string(port) +
                "/v1/sign");
  }

  int tls_posts_ = 0;
};

TEST_F(TlsTest, ClientCertificateFromTheConfiguredCaSignsAndIsRecorded) {
  std::filesystem::create_directories(Pki());
  const std::string client_ext = "extendedKeyUsage=clientAuth\n";
  ASSERT_TRUE(MakeCa("ca", "Signet Test CA"));
  ASSERT_TRUE(MakeLeaf("server", "localhost", "ca",
                       "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"));
  ASSERT_TRUE(MakeLeaf("client", "ci-runner", "ca", client_ext));
  ASSERT_TRUE(MakeLeaf("intruder", "intruder", "ca", client_ext));
  // Another CA and a client certificate with the very same subject.
  ASSERT_TRUE(MakeCa("other-ca", "Other CA"));
  ASSERT_TRUE(MakeLeaf("other-client", "ci-runner", "other-ca", client_ext));
  const auto fingerprint_run =
      RunCommand("openssl x509 -in " + P("client.pem") + " -outform DER | openssl dgst -sha256 -r");
  ASSERT_EQ(fingerprint_run.exit_code, 0);
  const std::string client_fingerprint = fingerprint_run.out.substr(0, 64);

  ASSERT_TRUE(MakeDevState());
  const int port = FreePort();
  ASSERT_NE(port, 0);
  std::string config = ReadFile(State() / "signetd.toml");
  const std::string policy_line = "policy_file = \"policy.toml\"";
  const auto at = config.find(policy_line);
  ASSERT_NE(at, std::string::npos) << config;
  config.replace(at, policy_line.size(), "policy_file = \"tls-policy.toml\"");
  // A fresh policy store, so that tls-policy.toml seeds it (the dev state's store already holds
  // the dev policy, which would stay in force).
  config += "\n[admin]\nstore_dir = \"tls-state\"\n";
  config += "\n[[listen]]\ntls = \"127.0.0.1:" + std::to_string(port) + "\"\ncert = \"" +
            (Pki() / "server.pem").string() + "\"\nkey = \"" + (Pki() / "server.key").string() +
            "\"\nca = \"" + (Pki() / "ca.pem").string() + "\"\n";
  WriteFile(State() / "tls.toml", config);
  WriteFile(State() / "tls-policy.toml",
            ReadFile(State() / "policy.toml") +
                "\n[[rule]]\nname = \"ci-runner\"\nkeys = [\"default\"]\n"
                "principals = [\"cert-subject:CN=ci-runner\"]\n");
  auto daemon = StartConfig(State() / "tls.toml", {SoftHsmEnv()});
  ASSERT_NE(daemon, nullptr);
  const std::string pem = DefaultPem();
  ASSERT_FALSE(pem.empty());

  // The trusted client: signed, and the signature verifies.
  const std::string content = "built by the CI runner\n";
  const HttpResult signed_result =
      PostTls(port, SignBody(json::array({SignItem("tls-ci/app.bin", content)})),
              "--cert " + P("client.pem") + " --key " + P("client.key"));
  ASSERT_EQ(signed_result.status, 200)
      << "curl exit " << signed_result.exit_code << ": " << signed_result.body << "\n"
      << daemon->log();
  const json answer = json::parse(signed_result.body);
  auto signature = Base64Decode(answer["items"][0].value("signature", ""));
  ASSERT_TRUE(signature) << signed_result.body;
  ExpectOpensslVerifies("tls-app.bin", content, std::string(signature->begin(), signature->end()),
                        pem);

  // A certificate from the right CA whose subject no rule names: denied by policy.
  const HttpResult intruder =
      PostTls(port, SignBody(json::array({SignItem("tls-intruder/app.bin", "x\n")})),
              "--cert " + P("intruder.pem") + " --key " + P("intruder.key"));
  EXPECT_EQ(intruder.status, 403) << intruder.body;

  // No client certificate, or one from another CA (same subject): no answer at all.
  const HttpResult anonymous =
      PostTls(port, SignBody(json::array({SignItem("tls-nocert/app.bin", "y\n")})), "");
  EXPECT_NE(anonymous.status, 200) << anonymous.body;
  EXPECT_NE(anonymous.exit_code, 0) << "HTTP " << anonymous.status << ": " << anonymous.body;
  const HttpResult foreign =
      PostTls(port, SignBody(json::array({SignItem("tls-otherca/app.bin", "z\n")})),
              "--cert " + P("other-client.pem") + " --key " + P("other-client.key"));
  EXPECT_NE(foreign.status, 200) << foreign.body;
  EXPECT_NE(foreign.exit_code, 0) << "HTTP " << foreign.status << ": " << foreign.body;

  // The Unix socket still works next to TLS.
  EXPECT_EQ(SignAndVerify("unix-next-to-tls.txt", "over the Unix socket\n", pem).status, 200);

  // The signet client over TLS: `keys show --pem` and `sign --url` with the trusted certificate.
  const std::string tls_args = " --url https://127.0.0.1:" + std::to_string(port) + " --cert " +
                               P("client.pem") + " --cert-key " + P("client.key") + " --cacert " +
                               P("ca.pem");
  const auto shown =
      RunCommand(std::string(SIGNET_BINARY) + " keys show default --pem" + tls_args + " 2>&1");
  EXPECT_EQ(shown.exit_code, 0) << shown.out;
  EXPECT_EQ(shown.out, pem);
  const auto files = logs_.path() / "signet-over-tls";
  std::filesystem::create_directories(files);
  for (int i = 0; i < 3; ++i) {
    WriteFile(files / ("f" + std::to_string(i)), "signed by signet over TLS " + std::to_string(i));
  }
  const auto client_run = RunCommand(std::string(SIGNET_BINARY) + " sign --key default -r" +
                                     tls_args + " " + ShellQuote(files.string()) + " 2>&1");
  EXPECT_EQ(client_run.exit_code, 0) << client_run.out;
  WriteFile(logs_.path() / "default.pub.pem", pem);
  for (int i = 0; i < 3; ++i) {
    const std::string file = (files / ("f" + std::to_string(i))).string();
    const auto verified = RunCommand(
        "openssl dgst -sha256 -verify " + ShellQuote((logs_.path() / "default.pub.pem").string()) +
        " -signature " + ShellQuote(file + ".sig") + " " + ShellQuote(file) + " 2>&1");
    EXPECT_EQ(verified.out, "Verified OK\n") << file;
  }
  // The other CA's certificate: signet fails, says why, and writes nothing.
  WriteFile(files / "refused", "not to be signed\n");
  const auto refused_run =
      RunCommand(std::string(SIGNET_BINARY) + " sign --key default --url https://127.0.0.1:" +
                 std::to_string(port) + " --cert " + P("other-client.pem") + " --cert-key " +
                 P("other-client.key") + " --cacert " + P("ca.pem") + " " +
                 ShellQuote((files / "refused").string()) + " 2>&1");
  EXPECT_EQ(refused_run.exit_code, 1) << refused_run.out;
  EXPECT_NE(refused_run.out.find("talking to signetd at https://127.0.0.1:"), std::string::npos)
      << refused_run.out;
  EXPECT_FALSE(std::filesystem::exists(files / "refused.sig"));

  // The audit log names the certificate that signed.
  ASSERT_FALSE(WaitForCheckpoint().is_null());
  const std::vector<json> records = ExportAudit();
  int ci_signs = 0;
  int signet_tls_signs = 0;
  int intruder_denials = 0;
  int unix_signs = 0;
  for (const json& r : records) {
    const std::string name =
        r.contains("artifact") ? r["artifact"].value("name", "") : std::string();
    const std::string kind = r.value("kind", "");
    if (name == "tls-ci/app.bin" && kind == "sign") {
      ++ci_signs;
      EXPECT_EQ(r["requester"].value("cert_subject", ""), "CN=ci-runner") << r.dump();
      EXPECT_EQ(r["requester"].value("cert_fingerprint", ""), client_fingerprint) << r.dump();
      EXPECT_TRUE(r["peer"].value("address", "").starts_with("127.0.0.1")) << r.dump();
      EXPECT_EQ(r["policy"].value("rule", ""), "ci-runner") << r.dump();
      EXPECT_EQ(r["artifact"]["digests"].value("sha256", ""), testing::Sha256Hex(content));
    } else if (name == "tls-intruder/app.bin") {
      EXPECT_EQ(kind, "deny") << r.dump();
      EXPECT_EQ(r["requester"].value("cert_subject", ""), "CN=intruder") << r.dump();
      ++intruder_denials;
    } else if (name.starts_with("tls-nocert/") || name.starts_with("tls-otherca/")) {
      ADD_FAILURE() << "a record for a client without a trusted certificate: " << r.dump();
    } else if (name.starts_with((files / "f").string()) && kind == "sign") {
      EXPECT_EQ(r["requester"].value("cert_subject", ""), "CN=ci-runner") << r.dump();
      EXPECT_EQ(r["request"]["tool"].value("name", ""), "signet") << r.dump();
      ++signet_tls_signs;
    } else if (name.starts_with((files / "refused").string())) {
      ADD_FAILURE() << "a record for a client without a trusted certificate: " << r.dump();
    } else if (name == "unix-next-to-tls.txt" && kind == "sign") {
      ++unix_signs;
    }
  }
  EXPECT_EQ(ci_signs, 1);
  EXPECT_EQ(intruder_denials, 1);
  EXPECT_EQ(unix_signs, 1);
  EXPECT_EQ(signet_tls_signs, 3);

  ASSERT_EQ(::kill(daemon->pid(), SIGTERM), 0);
  EXPECT_EQ(daemon->Wait(std::chrono::seconds(40)), 0) << daemon->log();
}

}  // namespace
}  // namespace signet::daemon
