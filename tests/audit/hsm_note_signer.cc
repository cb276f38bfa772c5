#include "tests/audit/hsm_note_signer.h"

#include <openssl/sha.h>

#include <stdlib.h>

#include <atomic>
#include <stdexcept>
#include <utility>

namespace signet::audit::testing {

std::shared_ptr<HsmNoteSigner> MakeHsmNoteSigner(hsm::Token& token, hsm::KeyHandle key,
                                                 std::string_view name) {
  auto verifier = MakeNoteVerifier(name, key.public_key.spki_der);
  if (!verifier) {
    throw std::runtime_error("note verifier: " + verifier.error().message());
  }
  return std::make_shared<HsmNoteSigner>(token, std::move(key), std::move(*verifier));
}

namespace {

struct SharedToken {
  hsm::testing::SoftHsmToken token{"audit-test"};
  std::unique_ptr<hsm::Token> open;
  std::atomic<int> keys{0};
  SharedToken() {
    auto opened = hsm::Token::Open(hsm::testing::ConfigFor(token, 1));
    if (!opened) {
      throw std::runtime_error("open token: " + opened.error().message());
    }
    open = std::move(*opened);
  }
};

// Never destroyed: Logs in static fixtures may sign until the process exits.
SharedToken& Shared() {
  static SharedToken* shared = new SharedToken();
  return *shared;
}

}  // namespace

AuditKey::AuditKey(hsm::KeyType type, std::string name) {
  SharedToken& shared = Shared();
  const std::string label = "audit-" + std::to_string(shared.keys.fetch_add(1));
  auto key = shared.open->GenerateKey(label, type);
  if (!key) {
    throw std::runtime_error("generate audit key: " + key.error().message());
  }
  signer_ = MakeHsmNoteSigner(*shared.open, std::move(*key), name);
}

AuditKey::~AuditKey() = default;

const hsm::testing::SoftHsmToken& AuditKey::token() { return Shared().token; }

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "signet-audit-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

LogOptions TestLogOptions(const std::filesystem::path& root) {
  LogOptions options;
  options.dir = root / "log";
  options.checkpoint_file = root / "checkpoints";
  options.origin = "signet.test/audit";
  options.host_id = "test-host";
  options.map_size = std::size_t{4} << 20;
  options.max_map_size = std::size_t{1} << 30;
  options.checkpoint_every = 1000;
  options.checkpoint_interval = std::chrono::milliseconds(200);
  return options;
}

std::string SampleDigest(std::uint64_t i) {
  const std::string name = "artifact-" + std::to_string(i);
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const std::uint8_t*>(name.data()), name.size(), digest);
  return HexEncode(digest);
}

Record SampleRecord(std::uint64_t i) {
  Record r;
  r.kind = RecordKind::kSign;
  r.request_id = "req-" + std::to_string(i / 16);
  r.client_host = "ci-runner-07.build.example.com";
  r.tool_name = "signet";
  r.tool_version = "0.1.0";
  r.requester.uid = 1000 + static_cast<std::uint32_t>(i % 3);
  r.requester.user = i % 3 == 0 ? "alice" : (i % 3 == 1 ? "bob" : "carol");
  r.requester.groups = {"release", "build"};
  r.peer_pid = 4242;
  r.key_name = i % 2 == 0 ? "default" : "release";
  r.key_fingerprint = std::string(64, i % 2 == 0 ? 'a' : 'b');
  r.algorithm = "ecdsa-p256";
  r.format = "raw";
  r.artifact_name = "dist/pkg-" + std::to_string(i) + ".tar.gz";
  r.artifact_size = 4096 + i;
  r.digests["sha256"] = SampleDigest(i);
  r.signature_sha256 = std::string(64, 'c');
  r.decision = "allow";
  r.policy_rule = "release-builds";
  r.policy_version = std::string(64, 'd');
  return r;
}

}  // namespace signet::audit::testing
