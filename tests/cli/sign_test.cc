// `signet sign`: the real binary against a real sign service in the test process (SoftHSM key,
// LMDB audit log, net::Server on a Unix socket). Every signature is checked with the `openssl`
// command and against its audit record.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/net/net.h"
#include "appliance/service/service.h"
#include "pipeline/pipeline.h"
#include "run_util.h"
#include "tests/audit/hsm_note_signer.h"
#include "tests/hsm/softhsm_token.h"
#include "tests/net/test_util.h"

namespace signet::cli::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// The audit key, and a signing key in the same shared SoftHSM token (SoftHSM reads its
// configuration once per process). Never destroyed: Logs may sign checkpoints until they close.
struct Keys {
  audit::testing::AuditKey audit;
  std::unique_ptr<hsm::Token> token;
  hsm::KeyHandle signing_key;

  Keys() {
    auto opened = hsm::Token::Open(hsm::testing::ConfigFor(audit::testing::AuditKey::token(), 2));
    if (!opened) {
      throw std::runtime_error("open token: " + opened.error().message());
    }
    token = std::move(*opened);
    auto key = token->GenerateKey("sign-cli-p256", hsm::KeyType::kEcdsaP256);
    if (!key) {
      throw std::runtime_error("generate key: " + key.error().message());
    }
    signing_key = std::move(*key);
  }
};

Keys& SharedKeys() {
  static auto* keys = new Keys();
  return *keys;
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
         "name = \"other-tools-only\"\n"
         "keys = [\"restricted\"]\n"
         "principals = [\"uid:" +
         uid +
         "\"]\n"
         "tools = [\"not-signet\"]\n";
}

std::string Sha256Hex(std::string_view data) {
  auto digest = pipeline::DigestBytes(pipeline::DigestAlgorithm::kSha256, AsBytes(data));
  return digest ? digest->Hex() : "";
}

std::vector<json> JsonLines(const std::string& out) {
  std::vector<json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(json::parse(line));
  }
  return lines;
}

class SignTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    keys_ = &SharedKeys();
    std::filesystem::create_directory(server_dir_.path() / "audit");
    auto log = audit::Log::Open(audit::testing::TestLogOptions(server_dir_.path() / "audit"),
                                keys_->audit.signer());
    ASSERT_TRUE(log) << log.error();
    log_ = std::move(*log);
    auto policy = policy::Policy::Parse(PolicyText(), "test-policy");
    ASSERT_TRUE(policy) << policy.error();
    std::vector<service::ServiceKey> keys;
    for (const char* name : {"default", "restricted"}) {
      keys.push_back(
          service::ServiceKey{.name = name,
                              .token = keys_->token.get(),
                              .key = keys_->signing_key,
                              .spec = {.scheme = hsm::Scheme::kEcdsa, .hash = hsm::Hash::kSha256},
                              .format = "raw"});
    }
    auto service = service::SignService::Create(service::ServiceOptions{.host_id = "test-host"},
                                                std::move(keys), *policy, *log_);
    ASSERT_TRUE(service) << service.error();
    service_ = std::move(*service);
    socket_ = (server_dir_.path() / "sign.sock").string();
    net::ServerOptions options;
    options.unix_listeners.push_back(net::UnixListenerOptions{.path = socket_});
    auto server = net::Server::Start(std::move(options), service_->handler());
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
    Make("pub.pem", keys_->signing_key.public_key.pem);
  }

  void TearDown() override {
    if (server_) {
      server_->Stop(Deadline::In(std::chrono::seconds(5)));
    }
    server_.reset();
    service_.reset();
    if (log_) {
      (void)log_->Close();
    }
    log_.reset();
    CliTest::TearDown();
  }

  ProcessResult Sign(std::vector<std::string> args, const std::string& key = "default") {
    std::vector<std::string> argv{"sign", "--socket", socket_, "--key", key};
    argv.insert(argv.end(), args.begin(), args.end());
    return Signet(argv);
  }

  // `openssl dgst -sha256 -verify pub.pem -signature SIG FILE` accepts the signature.
  bool OpensslVerifies(const std::string& file, const std::string& sig) const {
    ProcessResult run =
        Tool({"openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", sig, file},
             WithMergedStderr());
    return run.exit_code == 0 && run.out.find("Verified OK") != std::string::npos;
  }

  // The `sign` record at `seq` is for `file` (as named), with its digest and this signature.
  void ExpectAudited(std::uint64_t seq, const std::string& file, const std::string& sig) {
    auto record = log_->Get(seq);
    ASSERT_TRUE(record) << record.error();
    EXPECT_EQ(record->kind, audit::RecordKind::kSign);
    EXPECT_EQ(record->artifact_name, file);
    EXPECT_EQ(record->digests["sha256"], Sha256Hex(ReadFile(dir() / file)));
    EXPECT_EQ(record->signature_sha256, Sha256Hex(ReadFile(dir() / sig)));
    EXPECT_EQ(record->tool_name, "signet");
    EXPECT_EQ(record->requester.uid, ::getuid());
  }

  Keys* keys_ = nullptr;
  net::testing::TempDir server_dir_;  // short path: the socket lives here
  std::unique_ptr<audit::Log> log_;
  std::unique_ptr<service::SignService> service_;
  std::unique_ptr<net::Server> server_;
  std::string socket_;
};

TEST_F(SignTest, SignaturesVerifyWithOpensslAndEachHasOneAuditRecord) {
  std::filesystem::create_directory(dir() / "sub");
  const std::vector<std::string> files = {Make("a.tar.gz", RandomBytes(100'000, 1)),
                                          Make("sub/b.bin", RandomBytes(3 << 20, 2)),
                                          Make("empty", "")};
  ProcessResult result = Sign({"--json", files[0], files[1], files[2]});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 3 files with key default (format raw)")) << result;
  EXPECT_THAT(result.err, HasSubstr("0 failed"));
  const std::vector<json> lines = JsonLines(result.out);
  ASSERT_EQ(lines.size(), 3u) << result;
  std::set<std::uint64_t> seqs;
  for (const json& line : lines) {
    ASSERT_TRUE(line["ok"].get<bool>()) << line;
    EXPECT_TRUE(line["error"].is_null()) << line;
    const std::string path = line["path"];
    const std::string sig = line["signature_path"];
    EXPECT_EQ(sig, path + ".sig");
    EXPECT_TRUE(OpensslVerifies(path, sig)) << path;
    const auto seq = line["seq"].get<std::uint64_t>();
    seqs.insert(seq);
    ExpectAudited(seq, path, sig);
  }
  EXPECT_EQ(seqs.size(), 3u);
  EXPECT_EQ(log_->stats().tree_size, 3u);  // exactly one record per signature
  // Signatures are public files: 0666 less the umask; no temporary file is left behind.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  for (const std::string& file : files) {
    EXPECT_EQ(std::filesystem::status(dir() / (file + ".sig")).permissions() &
                  std::filesystem::perms::all,
              static_cast<std::filesystem::perms>(0666 & ~mask))
        << file;
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir())) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

TEST_F(SignTest, ExistingSignatureIsKeptAndNotSignedWithoutForce) {
  const std::string a = Make("a.txt", "artifact a");
  const std::string b = Make("b.txt", "artifact b");
  Make("a.txt.sig", "old signature");
  ProcessResult result = Sign({a, b});
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_THAT(result.err, HasSubstr("a.txt.sig exists; use --force")) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 1 file with key default"));
  EXPECT_THAT(result.err, HasSubstr("1 failed"));
  EXPECT_EQ(ReadFile(dir() / "a.txt.sig"), "old signature");
  EXPECT_TRUE(OpensslVerifies(b, "b.txt.sig"));
  ASSERT_EQ(log_->stats().tree_size, 1u);  // nothing was signed for a.txt
  EXPECT_EQ(log_->Get(0)->artifact_name, "b.txt");

  result = Sign({"--force", a});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_TRUE(OpensslVerifies(a, "a.txt.sig"));
  EXPECT_EQ(log_->stats().tree_size, 2u);
  // No temporary files are left behind.
  for (const auto& entry : std::filesystem::directory_iterator(dir())) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr(".tmp."))) << entry;
  }
}

TEST_F(SignTest, OutDirMirrorsRelativePaths) {
  std::filesystem::create_directories(dir() / "dist/x");
  const std::string a = Make("dist/x/a.bin", RandomBytes(5000, 3));
  const std::string b = Make("b.bin", RandomBytes(10, 4));
  ProcessResult result = Sign({"--out-dir", "sigs", "--json", a, b});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_TRUE(OpensslVerifies(a, "sigs/dist/x/a.bin.sig"));
  EXPECT_TRUE(OpensslVerifies(b, "sigs/b.bin.sig"));
  EXPECT_FALSE(std::filesystem::exists(dir() / "dist/x/a.bin.sig"));
  for (const json& line : JsonLines(result.out)) {
    ExpectAudited(line["seq"], line["path"], line["signature_path"]);
  }

  // Mirroring refuses paths that would lead out of DIR, before anything is sent.
  result = Sign({"--out-dir", "sigs", (dir() / b).string()});
  EXPECT_EQ(result.exit_code, 2) << result;
  EXPECT_THAT(result.err, HasSubstr("absolute"));
  result = Sign({"--out-dir", "sigs", "../x"});
  EXPECT_EQ(result.exit_code, 2) << result;
  EXPECT_THAT(result.err, HasSubstr("'..'"));
  EXPECT_EQ(log_->stats().tree_size, 2u);
}

TEST_F(SignTest, RecursiveSkipsSignaturesFoundInDirectories) {
  std::filesystem::create_directories(dir() / "rel");
  Make("rel/a", "a");
  Make("rel/b", "b");
  ProcessResult result = Sign({"-r", "rel"});
  ASSERT_EQ(result.exit_code, 0) << result;
  result = Sign({"-r", "--force", "rel"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 2 files"));
  EXPECT_FALSE(std::filesystem::exists(dir() / "rel/a.sig.sig"));
  EXPECT_TRUE(OpensslVerifies("rel/a", "rel/a.sig"));
}

TEST_F(SignTest, PolicyDenialFailsEveryFileNamingTheRule) {
  const std::string a = Make("a.txt", "artifact a");
  ProcessResult result = Sign({"--json", a}, "restricted");
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_THAT(result.err, HasSubstr("other-tools-only")) << result;
  EXPECT_THAT(result.err, HasSubstr("403")) << result;
  const std::vector<json> lines = JsonLines(result.out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_FALSE(lines[0]["ok"].get<bool>());
  EXPECT_THAT(lines[0]["error"].get<std::string>(), HasSubstr("other-tools-only"));
  EXPECT_FALSE(std::filesystem::exists(dir() / "a.txt.sig"));
}

TEST_F(SignTest, UnknownKeyFails) {
  const std::string a = Make("a.txt", "artifact a");
  ProcessResult result = Sign({a}, "nope");
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_THAT(result.err, HasSubstr("no key named \"nope\"")) << result;
}

TEST_F(SignTest, NoSocketSaysWhereItLooked) {
  const std::string a = Make("a.txt", "artifact a");
  const std::string missing = (dir() / "missing.sock").string();
  ::setenv("SIGNET_SOCKET", missing.c_str(), 1);
  ProcessResult result = Signet({"sign", "--key", "default", a});
  ::unsetenv("SIGNET_SOCKET");
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_THAT(result.err, HasSubstr("signet: no signetd socket found")) << result;
  EXPECT_THAT(result.err, HasSubstr(missing));
  EXPECT_THAT(result.err, HasSubstr("./.signet/sign.sock"));
  EXPECT_THAT(result.err, HasSubstr("/run/signet/sign.sock"));

  result = Signet({"sign", "--socket", missing, "--key", "default", a});
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_THAT(result.err, HasSubstr(missing));
  EXPECT_FALSE(std::filesystem::exists(dir() / "a.txt.sig"));
}

TEST_F(SignTest, ThreeHundredFilesInBatchesOfFifty) {
  std::vector<std::string> args{"--batch-size", "50", "--json"};
  for (int i = 0; i < 300; ++i) {
    args.push_back(Make("f" + std::to_string(i), RandomBytes(100 + i, 100 + i)));
  }
  ProcessResult result = Sign(args);
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 300 files"));
  const std::vector<json> lines = JsonLines(result.out);
  ASSERT_EQ(lines.size(), 300u);
  EXPECT_EQ(log_->stats().tree_size, 300u);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    ASSERT_TRUE(lines[i]["ok"].get<bool>()) << lines[i];
    if (i % 25 == 0) {
      EXPECT_TRUE(OpensslVerifies(lines[i]["path"], lines[i]["signature_path"])) << lines[i];
      ExpectAudited(lines[i]["seq"], lines[i]["path"], lines[i]["signature_path"]);
    }
  }
  for (int i = 0; i < 300; ++i) {
    EXPECT_TRUE(std::filesystem::exists(dir() / ("f" + std::to_string(i) + ".sig"))) << i;
  }
}

TEST_F(SignTest, BadOptionsAreUsageErrors) {
  const std::string a = Make("a.txt", "artifact a");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--batch-size", "0", a}, "--batch-size"},
      {{"--requests", "0", a}, "--requests '0': expected a number from 1 to 64"},
      {{"--requests", "65", a}, "--requests"},
      {{"--jobs", "x", a}, "--jobs"},
      {{"--url", "https://h:1", a}, "give --socket or --url, not both"},
  };
  for (const Case& c : cases) {
    ProcessResult result = Sign(c.args);
    EXPECT_EQ(result.exit_code, 2) << result;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << result;
  }
  // Without --socket: the URL's shape and the TLS files are checked before anything is sent.
  const std::vector<Case> url_cases = {
      {{"--url", "http://h:1", a}, "expected https://HOST:PORT"},
      {{"--url", "https://h:1/v1", a}, "expected https://HOST:PORT"},
      {{"--url", "https://h:1", a}, "--url needs --cert, --cert-key and --cacert"},
      {{"--cert", "c.pem", a}, "go with --url"},
  };
  for (const Case& c : url_cases) {
    std::vector<std::string> argv{"sign", "--key", "default"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    ProcessResult result = Signet(argv);
    EXPECT_EQ(result.exit_code, 2) << result;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << result;
  }
  EXPECT_FALSE(std::filesystem::exists(dir() / "a.txt.sig"));
  EXPECT_EQ(log_->stats().tree_size, 0u);
}

// One request in flight or many, small batches: every file is signed once, recorded once, and its
// record is the one its line names.
TEST_F(SignTest, RequestsInFlightEachFileSignedAndRecordedOnce) {
  std::vector<std::string> args{"--batch-size", "7", "--requests", "8", "--jobs", "2", "--json"};
  for (int i = 0; i < 200; ++i) {
    args.push_back(Make("r" + std::to_string(i), RandomBytes(64, 500 + i)));
  }
  ProcessResult result = Sign(args);
  ASSERT_EQ(result.exit_code, 0) << result;
  const std::vector<json> lines = JsonLines(result.out);
  ASSERT_EQ(lines.size(), 200u);
  std::set<std::uint64_t> seqs;
  for (const json& line : lines) {
    ASSERT_TRUE(line["ok"].get<bool>()) << line;
    EXPECT_TRUE(seqs.insert(line["seq"].get<std::uint64_t>()).second) << line;
    ExpectAudited(line["seq"], line["path"], line["signature_path"]);
  }
  EXPECT_EQ(log_->stats().tree_size, 200u);
  EXPECT_TRUE(OpensslVerifies(lines[0]["path"], lines[0]["signature_path"]));
  EXPECT_TRUE(OpensslVerifies(lines[199]["path"], lines[199]["signature_path"]));
}

TEST_F(SignTest, KeysListAndShow) {
  ProcessResult list = Signet({"keys", "list", "--socket", socket_});
  ASSERT_EQ(list.exit_code, 0) << list;
  EXPECT_THAT(list.out, HasSubstr("NAME"));
  EXPECT_THAT(list.out, HasSubstr("default     ecdsa-p256  raw     " +
                                  keys_->signing_key.public_key.fingerprint));
  EXPECT_THAT(list.out, HasSubstr("restricted  ecdsa-p256  raw"));

  ProcessResult listed_json = Signet({"keys", "list", "--socket", socket_, "--json"});
  ASSERT_EQ(listed_json.exit_code, 0) << listed_json;
  EXPECT_EQ(json::parse(listed_json.out)["keys"].size(), 2u);

  ProcessResult pem = Signet({"keys", "show", "default", "--pem", "--socket", socket_});
  ASSERT_EQ(pem.exit_code, 0) << pem;
  EXPECT_EQ(pem.out, keys_->signing_key.public_key.pem);

  ProcessResult shown = Signet({"keys", "show", "default", "--socket", socket_});
  ASSERT_EQ(shown.exit_code, 0) << shown;
  EXPECT_THAT(shown.out, HasSubstr("fingerprint: " + keys_->signing_key.public_key.fingerprint));
  EXPECT_THAT(shown.out, HasSubstr("format:      raw"));
  EXPECT_THAT(shown.out, HasSubstr("-----BEGIN PUBLIC KEY-----"));

  ProcessResult unknown = Signet({"keys", "show", "nope", "--socket", socket_});
  EXPECT_EQ(unknown.exit_code, 1) << unknown;
  EXPECT_THAT(unknown.err, HasSubstr("no key named \"nope\""));
  ProcessResult bad_name = Signet({"keys", "show", "../x", "--socket", socket_});
  EXPECT_EQ(bad_name.exit_code, 2) << bad_name;
  ProcessResult no_daemon = Signet({"keys", "list", "--socket", (dir() / "missing.sock").string()});
  EXPECT_EQ(no_daemon.exit_code, 1) << no_daemon;
  EXPECT_THAT(no_daemon.err, HasSubstr("missing.sock"));
}

}  // namespace
}  // namespace signet::cli::testing
