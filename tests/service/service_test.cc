// The sign service end to end: a real SoftHSM token, a real audit log, a real net::Server on a
// Unix socket, curl as the client and the openssl command line as the verifier.
#include "appliance/service/service.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/audit/hsm_note_signer.h"
#include "tests/hsm/softhsm_token.h"
#include "tests/net/test_util.h"

namespace signet::service {
namespace {

using net::testing::Curl;
using net::testing::HttpResult;
using net::testing::RunCommand;
using net::testing::ShellQuote;
using nlohmann::json;

// One SoftHSM token per process (SoftHSM reads its configuration once), with the audit key and
// the signing key in it. Never destroyed: Logs may sign checkpoints until they close.
struct Hsm {
  hsm::testing::SoftHsmToken softhsm{"service-test"};
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
    auto key = token->GenerateKey("sign-p256", hsm::KeyType::kEcdsaP256);
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

std::string PolicyText() {
  const std::string uid = std::to_string(::getuid());
  return "[[rule]]\n"
         "name = \"test-signers\"\n"
         "keys = [\"default\"]\n"
         "principals = [\"uid:" +
         uid +
         "\"]\n"
         "tools = [\"signet\"]\n"
         "\n"
         "[[rule]]\n"
         "name = \"limited\"\n"
         "keys = [\"limited\"]\n"
         "principals = [\"uid:" +
         uid +
         "\"]\n"
         "rate_per_hour = 2\n"
         "\n"
         "[[rule]]\n"
         "name = \"dist-artifacts\"\n"
         "keys = [\"dist-only\"]\n"
         "principals = [\"uid:" +
         uid +
         "\"]\n"
         "artifacts = [\"dist/**.tar.gz\"]\n";
}

std::string Sha256Hex(std::string_view data) {
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const std::uint8_t*>(data.data()), data.size(), digest);
  return HexEncode(digest);
}

void WriteFile(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

json Item(const std::string& name, std::uint64_t size, const std::string& sha256) {
  return json{{"name", name}, {"size", size}, {"digests", {{"sha256", sha256}}}};
}

json Body(std::string key, json items, std::string tool = "signet") {
  return json{{"key", std::move(key)},
              {"tool", {{"name", std::move(tool)}, {"version", "0.1"}}},
              {"client_host", "ci-07"},
              {"ticket", "REL-1"},
              {"items", std::move(items)}};
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm_ = &SharedHsm();
    log_ = OpenLog(audit::testing::TestLogOptions(dir_.path()));
    auto policy = policy::Policy::Parse(PolicyText(), "test-policy");
    ASSERT_TRUE(policy) << policy.error();
    std::vector<ServiceKey> keys;
    for (const char* name : {"default", "limited", "restricted", "dist-only"}) {
      keys.push_back(ServiceKey{.name = name,
                                .token = hsm_->token.get(),
                                .key = hsm_->signing_key,
                                .spec = {.scheme = hsm::Scheme::kEcdsa, .hash = hsm::Hash::kSha256},
                                .format = "raw"});
    }
    auto service =
        SignService::Create(ServiceOptions{.host_id = "test-host", .max_items_per_request = 5},
                            std::move(keys), *policy, *log_);
    ASSERT_TRUE(service) << service.error();
    service_ = std::move(*service);
    socket_ = dir_.path() / "sign.sock";
    net::ServerOptions options;
    options.unix_listeners.push_back(net::UnixListenerOptions{.path = socket_});
    auto server = net::Server::Start(std::move(options), service_->handler());
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
  }

  void TearDown() override {
    if (server_) {
      server_->Stop(Deadline::In(std::chrono::seconds(5)));
    }
    service_.reset();
    if (log_) {
      (void)log_->Close();
    }
  }

  std::unique_ptr<audit::Log> OpenLog(const audit::LogOptions& options) {
    auto log = audit::Log::Open(options, hsm_->note_signer);
    if (!log) {
      ADD_FAILURE() << log.error();
      return nullptr;
    }
    return std::move(*log);
  }

  std::string Url(std::string_view path) const {
    return "--unix-socket " + ShellQuote(socket_.string()) + " http://localhost" +
           std::string(path);
  }

  // POSTs `body` to /v1/sign as JSON (or as raw bytes with `content_type`).
  HttpResult Post(const std::string& body, const std::string& content_type = "application/json",
                  const std::string& extra = "") {
    const auto file = dir_.path() / ("body-" + std::to_string(posts_++));
    WriteFile(file, body);
    return Curl("-X POST -H " + ShellQuote("Content-Type: " + content_type) + " --data-binary @" +
                ShellQuote(file.string()) + " " + extra + " " + Url("/v1/sign"));
  }
  HttpResult Post(const json& body) { return Post(body.dump()); }

  HttpResult Get(std::string_view path) { return Curl(Url(path)); }

  // Checks `signature` over the file at `path` with the openssl command and the key's PEM.
  bool OpensslVerifies(const std::filesystem::path& path, const Bytes& signature) {
    const auto pem = dir_.path() / "pub.pem";
    WriteFile(pem, hsm_->signing_key.public_key.pem);
    const auto sig = path.string() + ".sig";
    WriteFile(sig, std::string(signature.begin(), signature.end()));
    const auto run =
        RunCommand("openssl dgst -sha256 -verify " + ShellQuote(pem.string()) + " -signature " +
                   ShellQuote(sig) + " " + ShellQuote(path.string()) + " 2>&1");
    return run.exit_code == 0 && run.out.find("Verified OK") != std::string::npos;
  }

  net::testing::TempDir dir_;
  Hsm* hsm_ = nullptr;
  std::unique_ptr<audit::Log> log_;
  std::unique_ptr<SignService> service_;
  std::filesystem::path socket_;
  std::unique_ptr<net::Server> server_;
  int posts_ = 0;
};

TEST_F(ServiceTest, SignsItemsVerifiedByOpensslAndAuditedBeforeTheAnswer) {
  std::vector<std::string> names = {"a.tar.gz", "b.bin", "c.txt"};
  json items = json::array();
  std::vector<std::string> digests;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string content = "artifact " + names[i] + std::string(1000 * (i + 1), 'x');
    WriteFile(dir_.path() / names[i], content);
    digests.push_back(Sha256Hex(content));
    items.push_back(Item("dist/" + names[i], content.size(), digests.back()));
  }
  const HttpResult result = Post(Body("default", items));
  ASSERT_EQ(result.status, 200) << result.body;
  const json answer = json::parse(result.body);
  EXPECT_EQ(answer["key"], "default");
  EXPECT_EQ(answer["format"], "raw");
  EXPECT_EQ(answer["request_id"].get<std::string>().size(), 32u);
  ASSERT_EQ(answer["items"].size(), names.size());
  const std::uint32_t uid = ::getuid();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const json& item = answer["items"][i];
    EXPECT_EQ(item["name"], "dist/" + names[i]);
    auto signature = Base64Decode(item["signature"].get<std::string>());
    ASSERT_TRUE(signature) << signature.error();
    EXPECT_TRUE(OpensslVerifies(dir_.path() / names[i], *signature)) << names[i];

    auto record = log_->Get(item["seq"].get<std::uint64_t>());
    ASSERT_TRUE(record) << record.error();
    EXPECT_EQ(record->kind, audit::RecordKind::kSign);
    EXPECT_EQ(record->artifact_name, "dist/" + names[i]);
    EXPECT_EQ(record->digests.at("sha256"), digests[i]);
    EXPECT_EQ(record->key_name, "default");
    EXPECT_EQ(record->key_fingerprint, hsm_->signing_key.public_key.fingerprint);
    EXPECT_EQ(record->algorithm, "ecdsa-p256");
    EXPECT_EQ(record->format, "raw");
    EXPECT_EQ(record->requester.uid, uid);
    EXPECT_EQ(record->tool_name, "signet");
    EXPECT_EQ(record->tool_version, "0.1");
    EXPECT_EQ(record->client_host, "ci-07");
    EXPECT_EQ(record->ticket, "REL-1");
    EXPECT_EQ(record->decision, "allow");
    EXPECT_EQ(record->policy_rule, "test-signers");
    EXPECT_EQ(record->policy_version, service_->policy()->version());
    EXPECT_EQ(record->request_id, answer["request_id"]);
    EXPECT_EQ(record->signature_sha256,
              Sha256Hex(std::string(signature->begin(), signature->end())));
    EXPECT_TRUE(record->peer_pid.has_value());
  }
  // Exactly one record per item, nothing else.
  EXPECT_EQ(log_->stats().tree_size, names.size());
}

TEST_F(ServiceTest, ConcurrentClientsAllGetDistinctRecordedSignatures) {
  constexpr int kClients = 8;
  std::vector<HttpResult> results(kClients);
  std::vector<std::string> bodies;
  for (int c = 0; c < kClients; ++c) {
    json items = json::array();
    for (int i = 0; i < 3; ++i) {
      items.push_back(Item("c" + std::to_string(c) + "/" + std::to_string(i), 1,
                           Sha256Hex(std::to_string(c * 10 + i))));
    }
    bodies.push_back(Body("default", items).dump());
    WriteFile(dir_.path() / ("concurrent-" + std::to_string(c)), bodies.back());
  }
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      results[c] = Curl("-X POST -H 'Content-Type: application/json' --data-binary @" +
                        ShellQuote((dir_.path() / ("concurrent-" + std::to_string(c))).string()) +
                        " " + Url("/v1/sign"));
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  std::set<std::uint64_t> seqs;
  for (int c = 0; c < kClients; ++c) {
    ASSERT_EQ(results[c].status, 200) << results[c].body;
    const json answer = json::parse(results[c].body);
    for (const json& item : answer["items"]) {
      const std::uint64_t seq = item["seq"];
      seqs.insert(seq);
      auto record = log_->Get(seq);
      ASSERT_TRUE(record) << record.error();
      EXPECT_EQ(record->artifact_name, item["name"]);
      auto signature = Base64Decode(item["signature"].get<std::string>());
      ASSERT_TRUE(signature);
      EXPECT_EQ(record->signature_sha256,
                Sha256Hex(std::string(signature->begin(), signature->end())));
    }
  }
  EXPECT_EQ(seqs.size(), 3u * kClients);
  EXPECT_EQ(log_->stats().tree_size, 3u * kClients);
}

TEST_F(ServiceTest, CborRequestGetsCborAnswer) {
  const std::string content = "cbor artifact";
  WriteFile(dir_.path() / "c.bin", content);
  const std::vector<std::uint8_t> cbor = json::to_cbor(
      Body("default", json::array({Item("c.bin", content.size(), Sha256Hex(content))})));
  const auto out = dir_.path() / "answer.cbor";
  const HttpResult result = Post(std::string(cbor.begin(), cbor.end()), "application/cbor",
                                 "-o " + ShellQuote(out.string()));
  ASSERT_EQ(result.status, 200) << ReadFile(out);
  const std::string bytes = ReadFile(out);
  const json answer = json::from_cbor(bytes.begin(), bytes.end());
  ASSERT_EQ(answer["items"].size(), 1u);
  auto signature = Base64Decode(answer["items"][0]["signature"].get<std::string>());
  ASSERT_TRUE(signature);
  EXPECT_TRUE(OpensslVerifies(dir_.path() / "c.bin", *signature));
  EXPECT_EQ(log_->stats().tree_size, 1u);
}

// A rule that names artifact patterns: a matching name signs; any other name in the request
// makes the whole request a denial (audited), and nothing is signed.
TEST_F(ServiceTest, ArtifactNameNotAllowedIsDeniedAndAudited) {
  const HttpResult allowed =
      Post(Body("dist-only", json::array({Item("dist/app-1.0.tar.gz", 1, std::string(64, 'a'))})));
  EXPECT_EQ(allowed.status, 200) << allowed.body;
  const HttpResult refused =
      Post(Body("dist-only", json::array({Item("dist/app-1.0.tar.gz", 1, std::string(64, 'a')),
                                          Item("secrets/key.pem", 1, std::string(64, 'b'))})));
  ASSERT_EQ(refused.status, 403) << refused.body;
  const json answer = json::parse(refused.body);
  EXPECT_EQ(answer["code"], "denied");
  EXPECT_FALSE(answer.contains("items"));
  EXPECT_NE(answer["message"].get<std::string>().find("secrets/key.pem"), std::string::npos)
      << answer;
  ASSERT_EQ(log_->stats().tree_size, 2u);  // the signature, then the denial
  auto record = log_->Get(1);
  ASSERT_TRUE(record) << record.error();
  EXPECT_EQ(record->kind, audit::RecordKind::kDeny);
  EXPECT_EQ(record->key_name, "dist-only");
  EXPECT_TRUE(record->signature_sha256.empty());
}

TEST_F(ServiceTest, PrincipalWithoutRuleIsDeniedAndAudited) {
  const HttpResult result =
      Post(Body("restricted", json::array({Item("x", 1, std::string(64, 'a'))})));
  ASSERT_EQ(result.status, 403) << result.body;
  const json answer = json::parse(result.body);
  EXPECT_EQ(answer["code"], "denied");
  EXPECT_NE(answer["message"].get<std::string>().find("no rule lets"), std::string::npos) << answer;
  EXPECT_EQ(answer["rule"], "");
  EXPECT_FALSE(answer.contains("items"));
  ASSERT_EQ(log_->stats().tree_size, 1u);
  auto record = log_->Get(0);
  ASSERT_TRUE(record) << record.error();
  EXPECT_EQ(record->kind, audit::RecordKind::kDeny);
  EXPECT_EQ(record->decision, "deny");
  EXPECT_EQ(record->detail, answer["message"]);
  EXPECT_EQ(record->key_name, "restricted");
  EXPECT_EQ(record->requester.uid, ::getuid());
  EXPECT_EQ(record->artifact_name, "x");
  EXPECT_TRUE(record->signature_sha256.empty());
}

TEST_F(ServiceTest, RuleThatRefusesIsNamed) {
  const HttpResult result =
      Post(Body("default", json::array({Item("x", 1, std::string(64, 'a'))}), "curl-by-hand"));
  ASSERT_EQ(result.status, 403) << result.body;
  const json answer = json::parse(result.body);
  EXPECT_EQ(answer["rule"], "test-signers");
  auto record = log_->Get(0);
  ASSERT_TRUE(record) << record.error();
  EXPECT_EQ(record->kind, audit::RecordKind::kDeny);
  EXPECT_EQ(record->policy_rule, "test-signers");
  EXPECT_EQ(record->tool_name, "curl-by-hand");
}

TEST_F(ServiceTest, RateLimitIs429) {
  const json items =
      json::array({Item("a", 1, std::string(64, 'a')), Item("b", 1, std::string(64, 'b'))});
  ASSERT_EQ(Post(Body("limited", items)).status, 200);
  const HttpResult result =
      Post(Body("limited", json::array({Item("c", 1, std::string(64, 'c'))})));
  ASSERT_EQ(result.status, 429) << result.body;
  const json answer = json::parse(result.body);
  EXPECT_EQ(answer["code"], "rate_limited");
  EXPECT_EQ(answer["rule"], "limited");
  auto record = log_->Get(2);
  ASSERT_TRUE(record) << record.error();
  EXPECT_EQ(record->kind, audit::RecordKind::kDeny);
}

TEST_F(ServiceTest, UnknownKeyIs404AndAudited) {
  const HttpResult result = Post(Body("nope", json::array({Item("x", 1, std::string(64, 'a'))})));
  ASSERT_EQ(result.status, 404) << result.body;
  EXPECT_EQ(json::parse(result.body)["code"], "unknown_key");
  auto record = log_->Get(0);
  ASSERT_TRUE(record) << record.error();
  EXPECT_EQ(record->kind, audit::RecordKind::kDeny);
  EXPECT_EQ(record->key_name, "nope");
}

TEST_F(ServiceTest, MalformedRequestsAre400) {
  const std::string good_digest(64, 'a');
  struct Case {
    std::string body;
    std::string expect;
  };
  json unknown_field = Body("default", json::array({Item("x", 1, good_digest)}));
  unknown_field["colour"] = "blue";
  json sha1 = Body(
      "default",
      json::array({json{{"name", "x"},
                        {"digests", {{"sha1", std::string(40, 'a')}, {"sha256", good_digest}}}}}));
  json no_sha256 =
      Body("default",
           json::array({json{{"name", "x"}, {"digests", {{"sha512", std::string(128, 'a')}}}}}));
  const std::vector<Case> cases = {
      {"{not json", "not valid JSON"},
      {"[1,2]", "must be an object"},
      {unknown_field.dump(), "unknown field(s)"},
      {Body("default", json::array({Item("x", 1, std::string(62, 'a'))})).dump(), "64 hex digits"},
      {Body("default", json::array({Item("x", 1, std::string(64, 'g'))})).dump(), "items[0]"},
      {Body("default", json::array()).dump(), "empty"},
      {sha1.dump(), "sha1 is refused"},
      {no_sha256.dump(), "no sha256 digest"},
      {Body("default", json::array({Item(std::string(4097, 'n'), 1, good_digest)})).dump(),
       "longer than 4096"},
      {"{\"key\":\"default\",\"tool\":{\"name\":\"signet\"},\"items\":[{\"name\":\"\xff\","
       "\"digests\":{\"sha256\":\"" +
           good_digest + "\"}}]}",
       "JSON"},
  };
  for (const Case& c : cases) {
    const HttpResult result = Post(c.body);
    EXPECT_EQ(result.status, 400) << c.body.substr(0, 200) << " -> " << result.body;
    EXPECT_NE(result.body.find(c.expect), std::string::npos)
        << c.body.substr(0, 200) << " -> " << result.body;
  }
  EXPECT_EQ(log_->stats().tree_size, 0u);
}

TEST_F(ServiceTest, TooManyItemsIs413) {
  json items = json::array();
  for (int i = 0; i < 6; ++i) {
    items.push_back(Item("x" + std::to_string(i), 1, std::string(64, 'a')));
  }
  const HttpResult result = Post(Body("default", items));
  ASSERT_EQ(result.status, 413) << result.body;
  const json answer = json::parse(result.body);
  EXPECT_EQ(answer["code"], "too_many_items");
  EXPECT_EQ(answer["limit"], "max_items_per_request");
}

TEST_F(ServiceTest, ClosedAuditLogIs503WithoutSignatures) {
  ASSERT_TRUE(log_->Close());
  const auto before = hsm_->token->stats().signatures;
  const HttpResult result =
      Post(Body("default", json::array({Item("x", 1, std::string(64, 'a'))})));
  ASSERT_EQ(result.status, 503) << result.body;
  EXPECT_EQ(json::parse(result.body)["code"], "audit_unavailable");
  EXPECT_EQ(result.body.find("signature\":"), std::string::npos);
  // A closed log is caught before the HSM is asked: nothing was signed.
  EXPECT_EQ(hsm_->token->stats().signatures, before);
}

TEST_F(ServiceTest, FullAuditLogIs503WithoutSignatures) {
  // A log whose map cannot grow: the first commit that needs more fails, and the log with it.
  server_->Stop(Deadline::In(std::chrono::seconds(5)));
  service_.reset();
  ASSERT_TRUE(log_->Close());
  net::testing::TempDir small_dir;
  audit::LogOptions options = audit::testing::TestLogOptions(small_dir.path());
  options.map_size = std::size_t{256} << 10;
  options.max_map_size = std::size_t{256} << 10;
  log_ = OpenLog(options);
  ASSERT_NE(log_, nullptr);
  auto policy = policy::Policy::Parse(PolicyText(), "test-policy");
  ASSERT_TRUE(policy);
  auto service =
      SignService::Create(ServiceOptions{.host_id = "test-host", .max_items_per_request = 10000},
                          {ServiceKey{.name = "default",
                                      .token = hsm_->token.get(),
                                      .key = hsm_->signing_key,
                                      .spec = {},
                                      .format = "raw"}},
                          *policy, *log_);
  ASSERT_TRUE(service) << service.error();
  service_ = std::move(*service);
  socket_ = small_dir.path() / "sign.sock";
  net::ServerOptions server_options;
  server_options.unix_listeners.push_back(net::UnixListenerOptions{.path = socket_});
  auto server = net::Server::Start(std::move(server_options), service_->handler());
  ASSERT_TRUE(server) << server.error();
  server_ = std::move(*server);

  json items = json::array();
  for (int i = 0; i < 2000; ++i) {
    items.push_back(
        Item("dist/" + std::string(200, 'p') + std::to_string(i), 1, Sha256Hex(std::to_string(i))));
  }
  const HttpResult result = Post(Body("default", items));
  ASSERT_EQ(result.status, 503) << result.body.substr(0, 500);
  EXPECT_EQ(json::parse(result.body)["code"], "audit_unavailable");
  EXPECT_EQ(result.body.find("signature\":"), std::string::npos);
  // The log stays failed: later requests are refused before the HSM is asked.
  const auto before = hsm_->token->stats().signatures;
  const HttpResult again = Post(Body("default", json::array({Item("x", 1, std::string(64, 'a'))})));
  EXPECT_EQ(again.status, 503) << again.body;
  EXPECT_EQ(hsm_->token->stats().signatures, before);
  const HttpResult health = Get("/v1/health");
  EXPECT_EQ(health.status, 503) << health.body;
  // Closing reports the failure; the fixture's TearDown closes again harmlessly.
  (void)log_->Close();
  server_->Stop(Deadline::In(std::chrono::seconds(5)));
  server_.reset();
}

TEST_F(ServiceTest, ListsKeysWithFingerprintAndPem) {
  const HttpResult all = Get("/v1/keys");
  ASSERT_EQ(all.status, 200) << all.body;
  const json keys = json::parse(all.body)["keys"];
  ASSERT_EQ(keys.size(), 4u);
  bool found = false;
  for (const json& key : keys) {
    if (key["name"] == "default") {
      found = true;
      EXPECT_EQ(key["fingerprint"], hsm_->signing_key.public_key.fingerprint);
      EXPECT_EQ(key["public_key_pem"], hsm_->signing_key.public_key.pem);
      EXPECT_EQ(key["algorithm"], "ecdsa-p256");
      EXPECT_EQ(key["format"], "raw");
    }
  }
  EXPECT_TRUE(found);
  const HttpResult one = Get("/v1/keys/default");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(json::parse(one.body)["fingerprint"], hsm_->signing_key.public_key.fingerprint);
  EXPECT_EQ(Get("/v1/keys/nope").status, 404);
}

TEST_F(ServiceTest, HealthReportsAuditAndHsm) {
  const HttpResult result = Get("/v1/health");
  ASSERT_EQ(result.status, 200) << result.body;
  const json health = json::parse(result.body);
  EXPECT_EQ(health["status"], "ok");
  EXPECT_EQ(health["audit"]["ok"], true);
  ASSERT_EQ(health["hsm"].size(), 1u);
  EXPECT_EQ(health["hsm"][0]["keys"].size(), 4u);
  EXPECT_EQ(health["hsm"][0]["ok"], true);
  EXPECT_EQ(health["hsm"][0]["consecutive_failures"], 0);
  EXPECT_FALSE(health["hsm"][0].contains("last_error"));
}

TEST_F(ServiceTest, UnknownEndpointAndMethod) {
  EXPECT_EQ(Get("/v2/sign").status, 404);
  EXPECT_EQ(Get("/v1/sign").status, 405);
}

// The (requests, items) ServiceMetrics holds for `key` and `result`; nullopt when it has no entry.
std::optional<std::pair<std::uint64_t, std::uint64_t>> Outcome(const ServiceMetrics& m,
                                                               std::string_view key,
                                                               std::string_view result) {
  for (const auto& o : m.outcomes) {
    if (o.key == key && o.result == result) {
      return std::make_pair(o.requests, o.items);
    }
  }
  return std::nullopt;
}

TEST_F(ServiceTest, MetricsCountEveryAnswerByKeyResultAndRule) {
  const ServiceMetrics before = service_->metrics();
  EXPECT_EQ(before.sign_latency.count, 0u);
  // Every configured key has every result, at zero.
  EXPECT_EQ(before.outcomes.size(), 4u * 8u);
  EXPECT_EQ(Outcome(before, "default", "signed"), std::make_pair(0ul, 0ul));
  EXPECT_EQ(Outcome(before, "(unknown)", "denied"), std::nullopt);

  for (int i = 0; i < 3; ++i) {
    const json items =
        json::array({Item("a" + std::to_string(i), 1, Sha256Hex("a" + std::to_string(i))),
                     Item("b" + std::to_string(i), 1, Sha256Hex("b" + std::to_string(i)))});
    ASSERT_EQ(Post(Body("default", items)).status, 200);
  }
  const json one = json::array({Item("x", 1, std::string(64, 'a'))});
  ASSERT_EQ(Post(Body("default", one, "curl-by-hand")).status, 403);
  ASSERT_EQ(Post(Body("limited", json::array({Item("a", 1, std::string(64, 'a')),
                                              Item("b", 1, std::string(64, 'b'))})))
                .status,
            200);
  ASSERT_EQ(Post(Body("limited", one)).status, 429);
  ASSERT_EQ(Post(Body("nope", one)).status, 404);
  json six = json::array();
  for (int i = 0; i < 6; ++i) {
    six.push_back(Item("f" + std::to_string(i), 1, std::string(64, 'c')));
  }
  ASSERT_EQ(Post(Body("default", six)).status, 413);
  ASSERT_EQ(Post(std::string("{")).status, 400);
  ASSERT_EQ(Post(std::string("x"), "text/plain").status, 415);
  ASSERT_EQ(Get("/v1/sign").status, 405);  // not a sign request: not counted

  const ServiceMetrics m = service_->metrics();
  EXPECT_EQ(Outcome(m, "default", "signed"), std::make_pair(3ul, 6ul));
  EXPECT_EQ(Outcome(m, "default", "denied"), std::make_pair(2ul, 7ul));  // 403 and 413
  EXPECT_EQ(Outcome(m, "limited", "signed"), std::make_pair(1ul, 2ul));
  EXPECT_EQ(Outcome(m, "limited", "rate_limited"), std::make_pair(1ul, 1ul));
  EXPECT_EQ(Outcome(m, "(unknown)", "denied"), std::make_pair(1ul, 1ul));
  EXPECT_EQ(Outcome(m, "(unknown)", "malformed"), std::make_pair(2ul, 0ul));
  std::uint64_t requests = 0;
  for (const auto& o : m.outcomes) {
    requests += o.requests;
    if (o.key != "(unknown)") {
      EXPECT_EQ(o.format, "raw");
    }
  }
  EXPECT_EQ(requests, 10u);
  EXPECT_EQ(m.denials_by_rule,
            (std::map<std::string, std::uint64_t>{{"test-signers", 1}, {"none", 2}}));
  EXPECT_EQ(m.rate_limits_by_rule, (std::map<std::string, std::uint64_t>{{"limited", 1}}));
  for (const auto& k : m.keys) {
    EXPECT_EQ(k.hsm_jobs, k.name == "default" ? 3u : k.name == "limited" ? 1u : 0u) << k.name;
    EXPECT_EQ(k.batch_roots, 0u);
  }

  const ServiceMetrics::Histogram& h = m.sign_latency;
  EXPECT_EQ(h.count, 10u);
  EXPECT_GT(h.sum, 0.0);
  ASSERT_EQ(h.bounds.size(), h.cumulative.size());
  for (std::size_t i = 1; i < h.cumulative.size(); ++i) {
    EXPECT_LT(h.bounds[i - 1], h.bounds[i]);
    EXPECT_LE(h.cumulative[i - 1], h.cumulative[i]);
  }
  EXPECT_EQ(h.cumulative.back(), 10u);  // all under 30 s

  // The audit log's histograms count the commits that held records: 9 records (6 + 2 signed,
  // 403, 429, 404, 413 denied; malformed ones are not audited) in `commits` commits.
  const audit::LogStats stats = log_->stats();
  EXPECT_EQ(stats.records, 6u + 2u + 4u);
  EXPECT_EQ(stats.records_per_commit.count, stats.commits);
  EXPECT_EQ(stats.records_per_commit.sum, static_cast<double>(stats.records));
  EXPECT_EQ(stats.commit_latency_seconds.count, stats.commits);
  EXPECT_GT(stats.commit_latency_seconds.sum, 0.0);
  EXPECT_EQ(stats.records_per_commit.cumulative.back(), stats.commits);
  EXPECT_EQ(stats.records_per_commit.cumulative.front(), 4u);  // the denials: 1 record each
}

TEST_F(ServiceTest, MetricsCountAuditFailures) {
  ASSERT_TRUE(log_->Close());
  ASSERT_EQ(Post(Body("default", json::array({Item("x", 1, std::string(64, 'a'))}))).status, 503);
  const ServiceMetrics m = service_->metrics();
  EXPECT_EQ(Outcome(m, "default", "audit_error"), std::make_pair(1ul, 1ul));
  EXPECT_EQ(Outcome(m, "default", "hsm_error"), std::make_pair(0ul, 0ul));
}

}  // namespace
}  // namespace signet::service
