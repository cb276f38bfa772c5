#include "tests/admin/admin_fixture.h"

#include <openssl/sha.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

#include "tests/audit/hsm_note_signer.h"
#include "tests/hsm/softhsm_token.h"

namespace signet::admin::testing {
namespace {

using net::testing::Curl;
using net::testing::HttpResult;
using net::testing::ShellQuote;
using nlohmann::json;

// One SoftHSM token per process (SoftHSM reads its configuration once): the audit key and the
// signing key. Never destroyed: logs may sign checkpoints until they close.
struct Hsm {
  hsm::testing::SoftHsmToken softhsm{"admin-test"};
  std::unique_ptr<hsm::Token> token;
  hsm::KeyHandle signing_key;
  std::shared_ptr<audit::testing::HsmNoteSigner> note_signer;

  Hsm() {
    auto opened = hsm::Token::Open(hsm::testing::ConfigFor(softhsm, 2));
    if (!opened) {
      throw std::runtime_error("open token: " + opened.error().message());
    }
    token = std::move(*opened);
    auto audit_key = token->GenerateKey("audit", hsm::KeyType::kEcdsaP256);
    auto key = token->GenerateKey("default", hsm::KeyType::kEcdsaP256);
    if (!audit_key || !key) {
      throw std::runtime_error("generate keys");
    }
    signing_key = std::move(*key);
    note_signer =
        audit::testing::MakeHsmNoteSigner(*token, std::move(*audit_key), "signet.test/audit");
  }
};

Hsm& SharedHsm() {
  static Hsm* hsm = new Hsm();
  return *hsm;
}

void WriteFile(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

}  // namespace

std::string SelfPrincipal() { return "uid:" + std::to_string(::getuid()); }

std::string PolicyFor(const std::vector<std::string>& roles) {
  std::string text = "[[rule]]\nname = \"self\"\nkeys = [\"default\"]\nprincipals = [\"" +
                     SelfPrincipal() + "\"]\ntools = [\"signet\"]\n\n[roles]\n";
  for (const std::string& role : roles) {
    text += role + " = [\"" + SelfPrincipal() + "\"]\n";
  }
  return text;
}

std::string AdminFixture::PolicyText() const { return PolicyFor({"admin", "approver", "auditor"}); }

void AdminFixture::SetUp() {
  admin_socket_ = dir() / "admin.sock";
  sign_socket_ = dir() / "sign.sock";
  Start();
}

void AdminFixture::TearDown() { Stop(); }

void AdminFixture::Start() {
  Hsm& hsm = SharedHsm();
  auto log = audit::Log::Open(audit::testing::TestLogOptions(dir()), hsm.note_signer);
  ASSERT_TRUE(log) << log.error();
  log_ = std::move(*log);
  auto store = StateStore::Open(dir() / "state");
  ASSERT_TRUE(store) << store.error();
  store_ = std::move(*store);
  auto policy = LoadOrSeedPolicy(*store_, *log_, PolicyText(), "test-policy.toml");
  ASSERT_TRUE(policy) << policy.error();
  std::vector<service::ServiceKey> keys;
  keys.push_back(
      service::ServiceKey{.name = "default",
                          .token = hsm.token.get(),
                          .key = hsm.signing_key,
                          .spec = {.scheme = hsm::Scheme::kEcdsa, .hash = hsm::Hash::kSha256},
                          .format = "raw"});
  auto service = service::SignService::Create(
      service::ServiceOptions{.host_id = "test-host", .approval_ttl = approval_ttl_},
      std::move(keys), *policy, *log_, store_.get());
  ASSERT_TRUE(service) << service.error();
  service_ = std::move(*service);
  auto admin = AdminService::Create(AdminOptions{.host_id = "test-host"}, *store_, *service_, *log_,
                                    {{"main", hsm.token.get()}});
  ASSERT_TRUE(admin) << admin.error();
  admin_ = std::move(*admin);

  net::ServerOptions sign_options;
  sign_options.unix_listeners.push_back(net::UnixListenerOptions{.path = sign_socket_});
  auto sign_server = net::Server::Start(std::move(sign_options), service_->handler());
  ASSERT_TRUE(sign_server) << sign_server.error();
  sign_server_ = std::move(*sign_server);

  net::ServerOptions admin_options;
  AdminService* raw = admin_.get();
  admin_options.unix_listeners.push_back(net::UnixListenerOptions{
      .path = admin_socket_,
      .accept_peer = [raw](const net::Peer& peer) { return raw->AcceptPeer(peer); }});
  auto admin_server = net::Server::Start(std::move(admin_options), admin_->handler());
  ASSERT_TRUE(admin_server) << admin_server.error();
  admin_server_ = std::move(*admin_server);
}

void AdminFixture::Stop() {
  for (auto* server : {&admin_server_, &sign_server_}) {
    if (*server) {
      (*server)->Stop(Deadline::In(std::chrono::seconds(5)));
      server->reset();
    }
  }
  admin_.reset();
  service_.reset();
  store_.reset();
  if (log_) {
    EXPECT_TRUE(log_->Close());
    log_.reset();
  }
}

void AdminFixture::Restart() {
  Stop();
  Start();
}

HttpResult AdminFixture::Admin(std::string_view method, std::string_view path,
                               std::string_view body, std::string_view extra_args) {
  std::string args = "-X " + std::string(method) + " ";
  if (!body.empty() || method == "POST" || method == "PUT") {
    const auto file = dir() / ("body-" + std::to_string(bodies_++));
    WriteFile(file, body);
    args += "--data-binary @" + ShellQuote(file.string()) + " ";
  }
  args += std::string(extra_args) + " --unix-socket " + ShellQuote(admin_socket_.string()) + " " +
          ShellQuote("http://localhost" + std::string(path));
  return Curl(args);
}

json AdminFixture::Json(const HttpResult& result) {
  return json::parse(result.body, nullptr, false);
}

HttpResult AdminFixture::SignSocketGet(std::string_view path) {
  return Curl("--unix-socket " + ShellQuote(sign_socket_.string()) + " " +
              ShellQuote("http://localhost" + std::string(path)));
}

HttpResult AdminFixture::Sign(std::string_view name, std::string_view content,
                              std::string_view tool, std::string_view key) {
  std::uint8_t raw[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const std::uint8_t*>(content.data()), content.size(), raw);
  const std::string digest = HexEncode(raw);
  const json body{
      {"key", key},
      {"tool", {{"name", tool}, {"version", "1"}}},
      {"items",
       json::array(
           {{{"name", name}, {"size", content.size()}, {"digests", {{"sha256", digest}}}}})}};
  const auto file = dir() / ("body-" + std::to_string(bodies_++));
  WriteFile(file, body.dump());
  return Curl("-X POST -H 'Content-Type: application/json' --data-binary @" +
              ShellQuote(file.string()) + " --unix-socket " + ShellQuote(sign_socket_.string()) +
              " http://localhost/v1/sign");
}

std::vector<audit::Record> AdminFixture::Records() {
  std::vector<audit::Record> out;
  const std::uint64_t size = log_->stats().tree_size;
  for (std::uint64_t seq = 0; seq < size; ++seq) {
    auto record = log_->Get(seq);
    EXPECT_TRUE(record) << record.error();
    if (record) {
      out.push_back(std::move(*record));
    }
  }
  return out;
}

std::string AdminFixture::AuditPublicKeyPem() const {
  return SharedHsm().note_signer->key().public_key.pem;
}

}  // namespace signet::admin::testing
