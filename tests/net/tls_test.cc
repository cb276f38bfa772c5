// signet::net over TLS 1.3 with client certificates; certificates made by the openssl CLI.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "appliance/net/net.h"
#include "tests/net/test_util.h"

namespace signet::net {
namespace {

using testing::Curl;
using testing::EchoHandler;
using testing::RunCommand;
using testing::ShellQuote;
using testing::TempDir;
using json = nlohmann::json;

// Makes a CA, a server certificate for 127.0.0.1, a client certificate from that CA and one from
// another CA, once for the whole suite (key generation is the slow part).
class TlsServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_.emplace();
    const std::string d = ShellQuote(dir_->path().string());
    std::ofstream(dir_->path() / "server.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    std::ofstream(dir_->path() / "client.ext")
        << "subjectAltName=DNS:ci.example.com,URI:spiffe://example.org/ci,email:ci@example.org\n"
           "extendedKeyUsage=clientAuth\n";
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    std::string script =
        "set -e; cd " + d + "; exec 2>openssl.log;" +
        // Two CAs.
        "openssl req -x509 " + key +
        " -keyout ca.key -out ca.pem -days 2 -subj '/CN=Signet Test CA';" + "openssl req -x509 " +
        key + " -keyout other.key -out other.pem -days 2 -subj '/CN=Other CA';" +
        // Server and client certificates.
        "openssl req " + key + " -keyout server.key -out server.csr -subj '/CN=localhost';" +
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
        "-CAcreateserial -days 2 -extfile server.ext -out server.pem;" +
        "openssl req " + key +
        " -keyout client.key -out client.csr -subj '/O=Example/CN=ci-runner-1';" +
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
        "-CAcreateserial -days 2 -extfile client.ext -out client.pem;" +
        "openssl req " + key + " -keyout rogue.key -out rogue.csr -subj '/CN=ci-runner-1';" +
        "openssl x509 -req -in rogue.csr -CA other.pem -CAkey other.key "
        "-CAcreateserial -days 2 -extfile client.ext -out rogue.pem;";
    auto result = RunCommand("sh -c " + ShellQuote(script));
    ASSERT_EQ(result.exit_code, 0) << "openssl failed; see " << dir_->path() / "openssl.log";
  }
  static void TearDownTestSuite() { dir_.reset(); }

  std::string File(const std::string& name) const {
    return ShellQuote((dir_->path() / name).string());
  }

  void StartServer(Handler handler = EchoHandler()) {
    ServerOptions options;
    TlsListenerOptions tls;
    tls.address = "127.0.0.1";
    tls.port = 0;
    tls.cert_file = dir_->path() / "server.pem";
    tls.key_file = dir_->path() / "server.key";
    tls.ca_file = dir_->path() / "ca.pem";
    options.tls_listeners.push_back(tls);
    auto server = Server::Start(std::move(options), [this, handler](Request r, Responder respond) {
      ++handled_;
      handler(std::move(r), std::move(respond));
    });
    ASSERT_TRUE(server.has_value()) << server.error();
    server_ = std::move(*server);
    port_ = server_->bound_tcp_port(0);
    ASSERT_NE(port_, 0);
  }

  std::string Url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/echo"; }

  static inline std::optional<TempDir> dir_;  // the suite's certificates
  std::unique_ptr<Server> server_;
  std::uint16_t port_ = 0;
  std::atomic<int> handled_{0};
};

TEST_F(TlsServerTest, GoodClientCertificateIsIdentified) {
  StartServer();
  auto r = Curl("--cacert " + File("ca.pem") + " --cert " + File("client.pem") + " --key " +
                File("client.key") + " --data-binary signed " + ShellQuote(Url()));
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["body"], "signed");
  const json& peer = j["peer"];
  EXPECT_EQ(peer["kind"], "tls");
  EXPECT_EQ(peer["cert_subject"], "CN=ci-runner-1,O=Example");
  auto sans = peer["cert_sans"].get<std::vector<std::string>>();
  EXPECT_EQ(sans, (std::vector<std::string>{"DNS:ci.example.com", "URI:spiffe://example.org/ci",
                                            "email:ci@example.org"}));
  EXPECT_EQ(std::string(peer["address"]).rfind("127.0.0.1:", 0), 0u) << peer["address"];

  // The fingerprint is what `openssl x509 -fingerprint -sha256` prints, as lower-case hex.
  auto fp = RunCommand("openssl x509 -noout -fingerprint -sha256 -in " + File("client.pem"));
  ASSERT_EQ(fp.exit_code, 0);
  std::string expected = fp.out.substr(fp.out.find('=') + 1);
  expected.erase(std::remove_if(expected.begin(), expected.end(),
                                [](char c) { return c == ':' || c == '\n'; }),
                 expected.end());
  std::transform(expected.begin(), expected.end(), expected.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_EQ(peer["cert_fingerprint"], expected);
}

TEST_F(TlsServerTest, KeepAliveOverTls) {
  StartServer();
  auto r = Curl("--cacert " + File("ca.pem") + " --cert " + File("client.pem") + " --key " +
                File("client.key") + " " + ShellQuote(Url()) + " " + ShellQuote(Url()));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(handled_.load(), 2);
}

TEST_F(TlsServerTest, NoClientCertificateFails) {
  StartServer();
  auto r = Curl("--cacert " + File("ca.pem") + " " + ShellQuote(Url()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.status, 200);
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(TlsServerTest, ClientCertificateFromAnotherCaFails) {
  StartServer();
  auto r = Curl("--cacert " + File("ca.pem") + " --cert " + File("rogue.pem") + " --key " +
                File("rogue.key") + " " + ShellQuote(Url()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.status, 200);
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(TlsServerTest, Tls12ClientIsRefused) {
  StartServer();
  auto r = Curl("--tls-max 1.2 --cacert " + File("ca.pem") + " --cert " + File("client.pem") +
                " --key " + File("client.key") + " " + ShellQuote(Url()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(handled_.load(), 0);
  // And the server is still fine for a TLS 1.3 client.
  auto ok = Curl("--cacert " + File("ca.pem") + " --cert " + File("client.pem") + " --key " +
                 File("client.key") + " " + ShellQuote(Url()));
  EXPECT_EQ(ok.status, 200);
}

TEST_F(TlsServerTest, MissingCertificateFileIsNotFound) {
  ServerOptions options;
  TlsListenerOptions tls;
  tls.cert_file = dir_->path() / "nope.pem";
  tls.key_file = dir_->path() / "server.key";
  tls.ca_file = dir_->path() / "ca.pem";
  options.tls_listeners.push_back(tls);
  auto server = Server::Start(std::move(options), EchoHandler());
  ASSERT_FALSE(server.has_value());
  EXPECT_EQ(server.error().code(), ErrorCode::kNotFound);
}

TEST_F(TlsServerTest, MismatchedKeyIsCryptoError) {
  ServerOptions options;
  TlsListenerOptions tls;
  tls.cert_file = dir_->path() / "server.pem";
  tls.key_file = dir_->path() / "client.key";
  tls.ca_file = dir_->path() / "ca.pem";
  options.tls_listeners.push_back(tls);
  auto server = Server::Start(std::move(options), EchoHandler());
  ASSERT_FALSE(server.has_value());
  EXPECT_EQ(server.error().code(), ErrorCode::kCrypto) << server.error();
}

TEST_F(TlsServerTest, PortInUseIsUnavailable) {
  StartServer();
  ServerOptions options;
  TlsListenerOptions tls;
  tls.port = port_;
  tls.cert_file = dir_->path() / "server.pem";
  tls.key_file = dir_->path() / "server.key";
  tls.ca_file = dir_->path() / "ca.pem";
  options.tls_listeners.push_back(tls);
  auto second = Server::Start(std::move(options), EchoHandler());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(second.error().message().find("address in use"), std::string::npos) << second.error();
}

TEST_F(TlsServerTest, AStreamedBodyArrivesWholeOverTls) {
  constexpr std::size_t kPieces = 128;  // 8 MiB: eight times the window
  constexpr std::size_t kPiece = 64 * 1024;
  std::mutex mu;
  std::vector<std::thread> workers;
  StartServer([&](Request, Responder respond) {
    std::lock_guard lock(mu);
    workers.emplace_back([respond = std::move(respond)] {
      Response response;
      response.content_type = "text/plain";
      response.stream = [](const BodyWriter& write) -> Status {
        for (std::size_t i = 0; i < kPieces; ++i) {
          if (!write(std::string(kPiece, static_cast<char>('a' + i % 26)))) {
            return MakeError(ErrorCode::kUnavailable, "the client went away");
          }
        }
        return OkStatus();
      };
      respond(std::move(response));
    });
  });
  const std::string out = (dir_->path() / "streamed").string();
  auto run = RunCommand("curl -sS --max-time 30 --cacert " + File("ca.pem") + " --cert " +
                        File("client.pem") + " --key " + File("client.key") + " -o " +
                        ShellQuote(out) + " " + ShellQuote(Url()));
  ASSERT_EQ(run.exit_code, 0);
  std::ifstream in(out, std::ios::binary);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(body.size(), kPieces * kPiece);
  for (std::size_t i = 0; i < kPieces; ++i) {
    ASSERT_EQ(body.substr(i * kPiece, kPiece), std::string(kPiece, static_cast<char>('a' + i % 26)))
        << "piece " << i;
  }
  server_->Stop(Deadline::In(std::chrono::seconds(5)));
  std::lock_guard lock(mu);
  for (auto& worker : workers) {
    worker.join();
  }
}

}  // namespace
}  // namespace signet::net
