// Format "batch" in the sign service end to end: a real SoftHSM token, a real audit log (LMDB), a
// real net::Server on a Unix socket and curl as the client. Every receipt the service answers is
// assembled the way a client does (the answer plus the request's own fields) and checked with
// formats::VerifyReceipt against the key the test trusts; every note signature is also checked
// with OpenSSL; the audit log is read back record by record.
//
// WARNING: SoftHSM is initialized once per process, so this file's token and service_test.cc's
// cannot both be used by one process: run `service_test --gtest_filter='Batch*'` or ctest (one
// process per test), not the whole binary unfiltered.
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/formats/formats.h"
#include "appliance/service/service.h"
#include "tests/audit/hsm_note_signer.h"
#include "tests/hsm/softhsm_token.h"
#include "tests/net/test_util.h"

namespace signet::service {
namespace {

using net::testing::Curl;
using net::testing::HttpResult;
using net::testing::ShellQuote;
using nlohmann::json;

constexpr hsm::SignSpec kEcdsaSha256{.scheme = hsm::Scheme::kEcdsa, .hash = hsm::Hash::kSha256};
constexpr const char* kHostId = "test-host";
constexpr const char* kBatchOrigin = "test-host/signet-batch/batch";

// One SoftHSM token per process (SoftHSM reads its configuration once): the audit key, the batch
// key and a raw key. Never destroyed: Logs may sign checkpoints until they close.
struct Hsm {
  hsm::testing::SoftHsmToken softhsm{"batch-test"};
  std::unique_ptr<hsm::Token> token;
  hsm::KeyHandle batch_key;
  hsm::KeyHandle raw_key;
  std::shared_ptr<audit::testing::HsmNoteSigner> note_signer;

  Hsm() {
    auto opened = hsm::Token::Open(hsm::testing::ConfigFor(softhsm, 2));
    if (!opened) {
      throw std::runtime_error("open token: " + opened.error().message());
    }
    token = std::move(*opened);
    auto audit_key = token->GenerateKey("audit", hsm::KeyType::kEcdsaP256);
    auto batch = token->GenerateKey("batch-p256", hsm::KeyType::kEcdsaP256);
    auto raw = token->GenerateKey("raw-p256", hsm::KeyType::kEcdsaP256);
    if (!audit_key || !batch || !raw) {
      throw std::runtime_error("generate keys");
    }
    batch_key = std::move(*batch);
    raw_key = std::move(*raw);
    note_signer =
        audit::testing::MakeHsmNoteSigner(*token, std::move(*audit_key), "signet.test/audit");
  }
};

Hsm& SharedHsm() {
  static Hsm* hsm = new Hsm();
  return *hsm;
}

std::string PolicyText() {
  return "[[rule]]\n"
         "name = \"batch-signers\"\n"
         "keys = [\"batch\", \"raw\"]\n"
         "principals = [\"uid:" +
         std::to_string(::getuid()) +
         "\"]\n"
         "tools = [\"signet\"]\n";
}

Bytes Sha256(std::string_view data) {
  Bytes digest(SHA256_DIGEST_LENGTH);
  SHA256(reinterpret_cast<const std::uint8_t*>(data.data()), data.size(), digest.data());
  return digest;
}

std::string Sha256Hex(std::string_view data) { return HexEncode(Sha256(data)); }

void WriteFile(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

pipeline::MerkleHash HashFromBase64(const json& value) {
  auto bytes = Base64Decode(value.get<std::string>());
  pipeline::MerkleHash hash{};
  if (!bytes || bytes->size() != hash.size()) {
    ADD_FAILURE() << "not a base64 32-byte hash: " << value;
    return hash;
  }
  std::copy(bytes->begin(), bytes->end(), hash.begin());
  return hash;
}

// An artifact as the client has it: its bytes stay on the client; the request carries name, size
// and SHA-256.
struct Artifact {
  std::string name;
  std::string content;
  json Item() const {
    return json{
        {"name", name}, {"size", content.size()}, {"digests", {{"sha256", Sha256Hex(content)}}}};
  }
};

std::vector<Artifact> MakeArtifacts(std::size_t n, const std::string& prefix) {
  std::vector<Artifact> artifacts;
  for (std::size_t i = 0; i < n; ++i) {
    artifacts.push_back(
        {.name = prefix + std::to_string(i) + ".tar.gz",
         .content = "artifact " + std::to_string(i) + std::string(100 * i + 7, 'x')});
  }
  return artifacts;
}

json Body(std::string key, const std::vector<Artifact>& artifacts) {
  json items = json::array();
  for (const Artifact& a : artifacts) {
    items.push_back(a.Item());
  }
  return json{{"key", std::move(key)},
              {"tool", {{"name", "signet"}, {"version", "0.1"}}},
              {"client_host", "ci-07"},
              {"ticket", "REL-2"},
              {"items", std::move(items)}};
}

// The leaf the service must have built for `artifact`, from the request's fields only.
formats::BatchLeaf LeafOf(const Artifact& artifact, const std::string& request_id) {
  return formats::BatchLeaf{.name = artifact.name,
                            .size = artifact.content.size(),
                            .digest_algorithm = "sha256",
                            .digest = Sha256(artifact.content),
                            .request_id = request_id};
}

// The client's note check: a signature by the trusted key under the batch origin, checked by the
// audit module's note code; returns the signed statement.
formats::NoteCheck NoteCheckFor(const hsm::PublicKey& key) {
  auto verifier = audit::MakeNoteVerifier(kBatchOrigin, key.spki_der);
  if (!verifier) {
    ADD_FAILURE() << verifier.error();
  }
  return [verifier = verifier.value_or(audit::NoteVerifier{})](
             std::string_view note) -> Result<std::string> {
    SIGNET_ASSIGN_OR_RETURN(audit::SignedNote parsed, audit::ParseNote(note));
    SIGNET_RETURN_IF_ERROR(audit::VerifyNote(parsed, verifier));
    return parsed.text;
  };
}

// Independently of the audit module: the note has exactly one signature line, under the batch
// origin, whose ECDSA signature over SHA-256(statement) OpenSSL accepts with the key's public half.
void ExpectNoteVerifiedByOpenssl(const std::string& note, const hsm::PublicKey& key) {
  auto parsed = audit::ParseNote(note);
  ASSERT_TRUE(parsed) << parsed.error();
  ASSERT_EQ(parsed->signatures.size(), 1u) << note;
  EXPECT_EQ(parsed->signatures[0].name, kBatchOrigin);
  EXPECT_TRUE(hsm::testing::Verifies(key, kEcdsaSha256, Sha256(parsed->text),
                                     parsed->signatures[0].signature))
      << note;
}

class BatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      hsm_ = &SharedHsm();
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    audit::LogOptions options = audit::testing::TestLogOptions(dir_.path());
    // No checkpoint during a test: the audit key is in the same token, and the tests count the
    // token's signatures.
    options.checkpoint_every = 1'000'000;
    options.checkpoint_interval = std::chrono::hours(1);
    auto log = audit::Log::Open(options, hsm_->note_signer);
    ASSERT_TRUE(log) << log.error();
    log_ = std::move(*log);
    ASSERT_NO_FATAL_FAILURE(StartService(ServiceOptions{.host_id = kHostId}));
  }

  void TearDown() override {
    StopService();
    if (log_) {
      (void)log_->Close();
    }
  }

  void StopService() {
    if (server_) {
      server_->Stop(Deadline::In(std::chrono::seconds(5)));
      server_.reset();
    }
    service_.reset();
  }

  // (Re)starts the service over the fixture's log with keys "batch" (format batch) and "raw".
  void StartService(ServiceOptions options) {
    StopService();
    auto policy = policy::Policy::Parse(PolicyText(), "batch-policy");
    ASSERT_TRUE(policy) << policy.error();
    std::vector<ServiceKey> keys = {ServiceKey{.name = "batch",
                                               .token = hsm_->token.get(),
                                               .key = hsm_->batch_key,
                                               .spec = kEcdsaSha256,
                                               .format = "batch"},
                                    ServiceKey{.name = "raw",
                                               .token = hsm_->token.get(),
                                               .key = hsm_->raw_key,
                                               .spec = kEcdsaSha256,
                                               .format = "raw"}};
    auto service = SignService::Create(std::move(options), std::move(keys), *policy, *log_);
    ASSERT_TRUE(service) << service.error();
    service_ = std::move(*service);
    socket_ = dir_.path() / ("sign-" + std::to_string(starts_++) + ".sock");
    net::ServerOptions server_options;
    server_options.unix_listeners.push_back(net::UnixListenerOptions{.path = socket_});
    auto server = net::Server::Start(std::move(server_options), service_->handler());
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
  }

  // As `signet sign` posts: with the header that asks for no proofs on the request's own
  // batches (`client_builds_proofs`), or as an older client, without it.
  HttpResult Post(const json& body, bool client_builds_proofs = true) {
    const auto file = dir_.path() / ("body-" + std::to_string(posts_++));
    WriteFile(file, body.dump());
    const std::string header =
        std::string(formats::kBatchProofsHeader) + ": " + std::string(formats::kClientBuildsProofs);
    return Curl("-X POST -H 'Content-Type: application/json' " +
                (client_builds_proofs ? "-H " + ShellQuote(header) + " " : std::string()) +
                "--data-binary @" + ShellQuote(file.string()) + " --unix-socket " +
                ShellQuote(socket_.string()) + " http://localhost/v1/sign");
  }

  // The same as CBOR; the answer (CBOR too) is decoded into `answer`.
  HttpResult PostCbor(const json& body, json& answer) {
    const auto file = dir_.path() / ("body-" + std::to_string(posts_++));
    const std::vector<std::uint8_t> cbor = json::to_cbor(body);
    WriteFile(file, std::string(cbor.begin(), cbor.end()));
    const auto out = dir_.path() / ("answer-" + std::to_string(posts_) + ".cbor");
    const std::string header =
        std::string(formats::kBatchProofsHeader) + ": " + std::string(formats::kClientBuildsProofs);
    HttpResult result =
        Curl("-X POST -H 'Content-Type: application/cbor' -H " + ShellQuote(header) +
             " --data-binary @" + ShellQuote(file.string()) + " -o " + ShellQuote(out.string()) +
             " --unix-socket " + ShellQuote(socket_.string()) + " http://localhost/v1/sign");
    const std::string bytes = ReadFile(out);
    answer = json::from_cbor(bytes.begin(), bytes.end(), true, false);
    return result;
  }

  HttpResult Get(std::string_view path) {
    return Curl("--unix-socket " + ShellQuote(socket_.string()) + " http://localhost" +
                std::string(path));
  }

  std::uint64_t HsmSignatures() const { return hsm_->token->stats().signatures; }

  // Checks a 200 batch answer to a request of `artifacts` with batches of at most `max_leaves`:
  // every item's receipt (assembled from the answer and the request) verifies against the batch
  // key, every note is signed by it (OpenSSL), each statement is about exactly its batch of the
  // request's artifacts, and the audit log holds, from seq 0 on, per batch one `batch` record and
  // then one `sign` record per leaf, at the seqs the answer names. Returns the statements.
  std::vector<formats::BatchStatement> CheckBatchAnswer(const json& answer,
                                                        const std::vector<Artifact>& artifacts,
                                                        std::size_t max_leaves) {
    std::vector<formats::BatchStatement> statements;
    const hsm::PublicKey& key = hsm_->batch_key.public_key;
    EXPECT_EQ(answer["key"], "batch");
    EXPECT_EQ(answer["format"], "batch");
    EXPECT_EQ(answer["key_fingerprint"], key.fingerprint);
    const std::string request_id = answer["request_id"].get<std::string>();
    EXPECT_EQ(request_id.size(), 32u);
    const std::size_t expect_batches = (artifacts.size() + max_leaves - 1) / max_leaves;
    const json& batches = answer["batches"];
    const json& items = answer["items"];
    EXPECT_EQ(batches.size(), expect_batches) << answer;
    EXPECT_EQ(items.size(), artifacts.size()) << answer;
    if (batches.size() != expect_batches || items.size() != artifacts.size()) {
      return statements;
    }
    const formats::NoteCheck check = NoteCheckFor(key);
    std::set<std::string> batch_ids;
    std::uint64_t next_seq = 0;
    for (std::size_t b = 0; b < batches.size(); ++b) {
      SCOPED_TRACE("batch " + std::to_string(b));
      const json& batch = batches[b];
      const std::size_t first = b * max_leaves;
      const std::size_t size = std::min(max_leaves, artifacts.size() - first);
      const std::string batch_id = batch["batch_id"].get<std::string>();
      const std::string note = batch["note"].get<std::string>();
      batch_ids.insert(batch_id);
      EXPECT_EQ(batch["tree_size"], size);
      ExpectNoteVerifiedByOpenssl(note, key);

      // The statement is about exactly this batch of the request's artifacts, in order.
      auto text = check(note);
      EXPECT_TRUE(text) << text.error();
      if (!text) {
        return statements;
      }
      auto statement = formats::ParseBatchStatement(*text);
      EXPECT_TRUE(statement) << statement.error();
      if (!statement) {
        return statements;
      }
      EXPECT_EQ(statement->origin, kBatchOrigin);
      EXPECT_EQ(statement->tree_size, size);
      EXPECT_EQ(statement->batch_id, batch_id);
      std::vector<pipeline::MerkleHash> leaf_hashes;
      for (std::size_t i = first; i < first + size; ++i) {
        auto hash = formats::BatchLeafHash(LeafOf(artifacts[i], request_id));
        EXPECT_TRUE(hash) << hash.error();
        leaf_hashes.push_back(hash.value_or(pipeline::MerkleHash{}));
      }
      EXPECT_EQ(statement->root, pipeline::TreeHash(leaf_hashes));
      // A batch of this request's leaves alone: no proofs in the answer.
      EXPECT_EQ(batch["inclusion_proofs"], false) << batch;
      const pipeline::MerkleTree tree(leaf_hashes);
      EXPECT_EQ(tree.Root(), statement->root);
      const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
      EXPECT_LE(statement->time, now);
      EXPECT_GT(statement->time, now - 300);

      // The batch record comes first, then its leaves.
      EXPECT_EQ(batch["seq"], next_seq);
      auto batch_record = log_->Get(batch["seq"].get<std::uint64_t>());
      EXPECT_TRUE(batch_record) << batch_record.error();
      if (batch_record) {
        EXPECT_EQ(batch_record->kind, audit::RecordKind::kBatch);
        EXPECT_EQ(batch_record->request_id, request_id);
        EXPECT_EQ(batch_record->key_name, "batch");
        EXPECT_EQ(batch_record->key_fingerprint, key.fingerprint);
        EXPECT_EQ(batch_record->format, "batch");
        EXPECT_EQ(batch_record->decision, "allow");
        EXPECT_EQ(batch_record->policy_rule, "batch-signers");
        EXPECT_EQ(batch_record->requester.uid, ::getuid());
        EXPECT_TRUE(batch_record->batch.has_value());
        if (batch_record->batch) {
          EXPECT_EQ(batch_record->batch->id, batch_id);
          EXPECT_EQ(batch_record->batch->tree_size, size);
          EXPECT_EQ(batch_record->batch->root, Base64Encode(statement->root));
          EXPECT_EQ(batch_record->batch->note, note);
          EXPECT_FALSE(batch_record->batch->leaf_index.has_value());
        }
      }
      ++next_seq;

      for (std::size_t i = 0; i < size; ++i) {
        SCOPED_TRACE("leaf " + std::to_string(i));
        const Artifact& artifact = artifacts[first + i];
        const json& item = items[first + i];
        EXPECT_EQ(item["name"], artifact.name);
        EXPECT_EQ(item["batch"], b);
        EXPECT_EQ(item["leaf_index"], i);
        EXPECT_FALSE(item.contains("signature")) << item;

        // The receipt a client writes: its own leaf fields, the note, and the proof derived from
        // the tree of its own leaves (the batch is all this request's: the answer carries no
        // proofs, BATCH.md "The sign answer").
        formats::Receipt receipt;
        receipt.leaf = LeafOf(artifact, request_id);
        receipt.leaf_hash = leaf_hashes[i];
        EXPECT_FALSE(item.contains("leaf_hash")) << item;
        EXPECT_FALSE(item.contains("inclusion_proof")) << item;
        receipt.leaf_index = item["leaf_index"].get<std::uint64_t>();
        receipt.tree_size = batch["tree_size"].get<std::uint64_t>();
        receipt.batch_id = batch_id;
        auto proof = tree.InclusionProof(i);
        EXPECT_TRUE(proof) << proof.error();
        receipt.inclusion_proof = proof.value_or(std::vector<pipeline::MerkleHash>{});
        receipt.note = note;
        receipt.key_fingerprint = answer["key_fingerprint"].get<std::string>();
        receipt.seq = item["seq"].get<std::uint64_t>();
        const formats::ReceiptVerdict verdict = formats::VerifyReceipt(
            receipt, artifact.content.size(), Sha256(artifact.content), key.fingerprint, check);
        EXPECT_TRUE(verdict.ok()) << formats::ReceiptFailureName(verdict.failure) << ": "
                                  << verdict.message;
        // The receipt binds the file: another file's digest does not pass.
        const formats::ReceiptVerdict other =
            formats::VerifyReceipt(receipt, artifact.content.size(), Sha256(artifact.content + "!"),
                                   key.fingerprint, check);
        EXPECT_EQ(other.failure, formats::ReceiptFailure::kFileChanged);

        EXPECT_EQ(item["seq"], next_seq);
        auto record = log_->Get(item["seq"].get<std::uint64_t>());
        EXPECT_TRUE(record) << record.error();
        if (record) {
          EXPECT_EQ(record->kind, audit::RecordKind::kSign);
          EXPECT_EQ(record->request_id, request_id);
          EXPECT_EQ(record->key_name, "batch");
          EXPECT_EQ(record->format, "batch");
          EXPECT_EQ(record->artifact_name, artifact.name);
          EXPECT_EQ(record->artifact_size, artifact.content.size());
          EXPECT_EQ(record->digests.at("sha256"), Sha256Hex(artifact.content));
          EXPECT_EQ(record->signature_sha256, Sha256Hex(note));
          EXPECT_EQ(record->decision, "allow");
          EXPECT_TRUE(record->batch.has_value());
          if (record->batch) {
            EXPECT_EQ(record->batch->id, batch_id);
            EXPECT_EQ(record->batch->leaf_index, i);
          }
        }
        ++next_seq;
      }
      statements.push_back(*statement);
    }
    EXPECT_EQ(batch_ids.size(), expect_batches) << "batch ids are not distinct";
    // Nothing else was recorded.
    EXPECT_EQ(log_->stats().tree_size, artifacts.size() + expect_batches);
    return statements;
  }

  net::testing::TempDir dir_;
  Hsm* hsm_ = nullptr;
  std::unique_ptr<audit::Log> log_;
  std::unique_ptr<SignService> service_;
  std::filesystem::path socket_;
  std::unique_ptr<net::Server> server_;
  int posts_ = 0;
  int starts_ = 0;
};

TEST_F(BatchTest, FiveItemsOneSignatureEveryReceiptVerifiesAndIsAudited) {
  const std::vector<Artifact> artifacts = MakeArtifacts(5, "dist/five-");
  const std::uint64_t before = HsmSignatures();
  const HttpResult result = Post(Body("batch", artifacts));
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(HsmSignatures(), before + 1) << "one HSM signature per batch";
  const json answer = json::parse(result.body);
  const auto statements = CheckBatchAnswer(answer, artifacts, 65536);
  ASSERT_EQ(statements.size(), 1u);
  EXPECT_EQ(statements[0].tree_size, 5u);
  EXPECT_EQ(statements[0].batch_id, answer["batches"][0]["batch_id"]);
  EXPECT_EQ(log_->stats().tree_size, 6u);

  // The health endpoint reports the same count.
  const HttpResult health = Get("/v1/health");
  ASSERT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(json::parse(health.body)["hsm"][0]["signatures"], HsmSignatures());
}

TEST_F(BatchTest, CborRequestGetsTheSameAnswerInCbor) {
  const std::vector<Artifact> artifacts = MakeArtifacts(7, "dist/cbor-");
  json answer;
  const HttpResult result = PostCbor(Body("batch", artifacts), answer);
  ASSERT_EQ(result.status, 200) << answer.dump();
  ASSERT_FALSE(answer.is_discarded());
  const auto statements = CheckBatchAnswer(answer, artifacts, 65536);
  ASSERT_EQ(statements.size(), 1u);
  EXPECT_EQ(answer["batches"][0]["inclusion_proofs"], false);
  EXPECT_EQ(log_->stats().tree_size, 8u);
}

TEST_F(BatchTest, LargeRequestIsSplitIntoBatchesOfMaxBatchLeaves) {
  ASSERT_NO_FATAL_FAILURE(StartService(ServiceOptions{.host_id = kHostId, .max_batch_leaves = 3}));
  const std::vector<Artifact> artifacts = MakeArtifacts(7, "dist/split-");
  const std::uint64_t before = HsmSignatures();
  const HttpResult result = Post(Body("batch", artifacts));
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(HsmSignatures(), before + 3) << "one HSM signature per batch";
  const json answer = json::parse(result.body);
  const auto statements = CheckBatchAnswer(answer, artifacts, 3);
  ASSERT_EQ(statements.size(), 3u);
  EXPECT_EQ(statements[0].tree_size, 3u);
  EXPECT_EQ(statements[1].tree_size, 3u);
  EXPECT_EQ(statements[2].tree_size, 1u);
  // Leaf indices restart in each batch.
  std::vector<std::uint64_t> leaf_indices;
  for (const json& item : answer["items"]) {
    leaf_indices.push_back(item["leaf_index"].get<std::uint64_t>());
  }
  EXPECT_EQ(leaf_indices, (std::vector<std::uint64_t>{0, 1, 2, 0, 1, 2, 0}));
  // The log, in order: batch, its leaves, batch, its leaves, ...
  std::vector<audit::RecordKind> kinds;
  for (std::uint64_t seq = 0; seq < log_->stats().tree_size; ++seq) {
    auto record = log_->Get(seq);
    ASSERT_TRUE(record) << record.error();
    kinds.push_back(record->kind);
  }
  using audit::RecordKind;
  EXPECT_EQ(kinds, (std::vector<RecordKind>{
                       RecordKind::kBatch, RecordKind::kSign, RecordKind::kSign, RecordKind::kSign,
                       RecordKind::kBatch, RecordKind::kSign, RecordKind::kSign, RecordKind::kSign,
                       RecordKind::kBatch, RecordKind::kSign}));
  // Metrics: one HSM job, three roots, seven items signed in one request.
  const ServiceMetrics metrics = service_->metrics();
  bool found = false;
  for (const auto& key : metrics.keys) {
    if (key.name == "batch") {
      found = true;
      EXPECT_EQ(key.format, "batch");
      EXPECT_EQ(key.hsm_jobs, 1u);
      EXPECT_EQ(key.batch_roots, 3u);
    }
  }
  EXPECT_TRUE(found);
  for (const auto& outcome : metrics.outcomes) {
    if (outcome.key == "batch" && outcome.result == "signed") {
      EXPECT_EQ(outcome.requests, 1u);
      EXPECT_EQ(outcome.items, 7u);
    }
  }
}

TEST_F(BatchTest, SingleItemBatchHasEmptyProofAndRootIsTheLeafHash) {
  const std::vector<Artifact> artifacts = MakeArtifacts(1, "dist/one-");
  const std::uint64_t before = HsmSignatures();
  const HttpResult result = Post(Body("batch", artifacts));
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(HsmSignatures(), before + 1);
  const json answer = json::parse(result.body);
  const auto statements = CheckBatchAnswer(answer, artifacts, 65536);
  ASSERT_EQ(statements.size(), 1u);
  EXPECT_EQ(statements[0].tree_size, 1u);
  EXPECT_EQ(answer["batches"][0]["tree_size"], 1);
  ASSERT_EQ(answer["items"].size(), 1u);
  // The client derives the (empty) proof: the answer carries none.
  EXPECT_EQ(answer["batches"][0]["inclusion_proofs"], false);
  EXPECT_FALSE(answer["items"][0].contains("inclusion_proof"));
  auto leaf_hash =
      formats::BatchLeafHash(LeafOf(artifacts[0], answer["request_id"].get<std::string>()));
  ASSERT_TRUE(leaf_hash) << leaf_hash.error();
  EXPECT_EQ(statements[0].root, *leaf_hash);
  auto proof = pipeline::MerkleTree({*leaf_hash}).InclusionProof(0);
  ASSERT_TRUE(proof) << proof.error();
  EXPECT_TRUE(proof->empty());
}

TEST_F(BatchTest, AClientThatDoesNotAskGetsEveryProof) {
  // An older client sends no X-Signet-Batch-Proofs header and reads each item's proof.
  const std::vector<Artifact> artifacts = MakeArtifacts(5, "dist/old-client-");
  const HttpResult result = Post(Body("batch", artifacts), /*client_builds_proofs=*/false);
  ASSERT_EQ(result.status, 200) << result.body;
  const json answer = json::parse(result.body);
  ASSERT_EQ(answer["batches"].size(), 1u);
  const json& batch = answer["batches"][0];
  EXPECT_EQ(batch["inclusion_proofs"], true);
  const std::string request_id = answer["request_id"].get<std::string>();
  std::vector<pipeline::MerkleHash> leaves;
  for (const Artifact& artifact : artifacts) {
    auto hash = formats::BatchLeafHash(LeafOf(artifact, request_id));
    ASSERT_TRUE(hash) << hash.error();
    leaves.push_back(*hash);
  }
  const pipeline::MerkleHash root = pipeline::TreeHash(leaves);
  ASSERT_EQ(answer["items"].size(), artifacts.size());
  for (std::size_t i = 0; i < artifacts.size(); ++i) {
    const json& item = answer["items"][i];
    ASSERT_TRUE(item.contains("inclusion_proof")) << item;
    EXPECT_EQ(item["leaf_hash"], Base64Encode(leaves[i]));
    std::vector<pipeline::MerkleHash> proof;
    for (const json& hash : item["inclusion_proof"]) {
      auto raw = Base64Decode(hash.get<std::string>());
      ASSERT_TRUE(raw && raw->size() == 32) << hash;
      pipeline::MerkleHash node{};
      std::copy(raw->begin(), raw->end(), node.begin());
      proof.push_back(node);
    }
    EXPECT_TRUE(pipeline::VerifyInclusion(leaves[i], item["leaf_index"].get<std::uint64_t>(),
                                          leaves.size(), proof, root))
        << "leaf " << i;
  }
}

TEST_F(BatchTest, ItemWithoutSizeIs400AndNothingIsRecordedOrSigned) {
  json body = Body("batch", MakeArtifacts(3, "dist/nosize-"));
  body["items"][1].erase("size");
  const std::uint64_t before = HsmSignatures();
  const HttpResult result = Post(body);
  ASSERT_EQ(result.status, 400) << result.body;
  const json answer = json::parse(result.body);
  EXPECT_EQ(answer["code"], "malformed");
  EXPECT_NE(answer["message"].get<std::string>().find("items[1].size"), std::string::npos)
      << answer;
  EXPECT_FALSE(answer.contains("batches"));
  EXPECT_FALSE(answer.contains("items"));
  EXPECT_EQ(HsmSignatures(), before);
  EXPECT_EQ(log_->stats().tree_size, 0u);
}

TEST_F(BatchTest, RawAndBatchKeysSideBySideEachAnswerTheirOwnFormat) {
  const std::vector<Artifact> artifacts = MakeArtifacts(2, "dist/side-");

  const HttpResult batch = Post(Body("batch", artifacts));
  ASSERT_EQ(batch.status, 200) << batch.body;
  EXPECT_EQ(batch.body.find("\"signature\""), std::string::npos) << batch.body;
  const json batch_answer = json::parse(batch.body);
  EXPECT_EQ(batch_answer["format"], "batch");
  CheckBatchAnswer(batch_answer, artifacts, 65536);

  const std::uint64_t raw_seq = log_->stats().tree_size;
  const HttpResult raw = Post(Body("raw", artifacts));
  ASSERT_EQ(raw.status, 200) << raw.body;
  const json raw_answer = json::parse(raw.body);
  EXPECT_EQ(raw_answer["format"], "raw");
  EXPECT_FALSE(raw_answer.contains("batches"));
  ASSERT_EQ(raw_answer["items"].size(), artifacts.size());
  for (std::size_t i = 0; i < artifacts.size(); ++i) {
    const json& item = raw_answer["items"][i];
    EXPECT_FALSE(item.contains("leaf_hash")) << item;
    EXPECT_FALSE(item.contains("inclusion_proof")) << item;
    ASSERT_TRUE(item.contains("signature")) << item;
    auto signature = Base64Decode(item["signature"].get<std::string>());
    ASSERT_TRUE(signature) << signature.error();
    EXPECT_TRUE(hsm::testing::Verifies(hsm_->raw_key.public_key, kEcdsaSha256,
                                       Sha256(artifacts[i].content), *signature));
    // Not a signature by the batch key.
    EXPECT_FALSE(hsm::testing::Verifies(hsm_->batch_key.public_key, kEcdsaSha256,
                                        Sha256(artifacts[i].content), *signature));
    auto record = log_->Get(item["seq"].get<std::uint64_t>());
    ASSERT_TRUE(record) << record.error();
    EXPECT_EQ(record->seq, raw_seq + i);
    EXPECT_EQ(record->format, "raw");
    EXPECT_EQ(record->key_fingerprint, hsm_->raw_key.public_key.fingerprint);
    EXPECT_FALSE(record->batch.has_value());
  }

  // A request cannot pick another format than its key's.
  json ask_raw = Body("batch", artifacts);
  ask_raw["format"] = "raw";
  const std::uint64_t tree_size = log_->stats().tree_size;
  const HttpResult refused = Post(ask_raw);
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(refused.body.find("\"signature\""), std::string::npos) << refused.body;
  EXPECT_EQ(log_->stats().tree_size, tree_size);

  // GET /v1/keys names each key's format.
  const HttpResult keys = Get("/v1/keys");
  ASSERT_EQ(keys.status, 200) << keys.body;
  std::map<std::string, std::string> formats;
  const json listed = json::parse(keys.body);
  for (const json& key : listed["keys"]) {
    formats[key["name"].get<std::string>()] = key["format"].get<std::string>();
  }
  EXPECT_EQ(formats, (std::map<std::string, std::string>{{"batch", "batch"}, {"raw", "raw"}}));
}

// With a gathering window, concurrent requests for the batch key share one HSM signature, and
// each gets only its own receipts: leaves built from its own request id, proofs into the shared
// tree, its own batch and sign records at the seqs its answer names.
TEST_F(BatchTest, ConcurrentRequestsInTheWindowShareABatchWithSeparateReceipts) {
  ASSERT_NO_FATAL_FAILURE(StartService(
      ServiceOptions{.host_id = kHostId, .batch_window = std::chrono::milliseconds(1500)}));
  constexpr int kRequests = 4;
  std::vector<std::vector<Artifact>> artifacts;
  std::vector<json> bodies;
  for (int r = 0; r < kRequests; ++r) {
    artifacts.push_back(MakeArtifacts(3, "job-" + std::to_string(r) + "/pkg-"));
    bodies.push_back(Body("batch", artifacts.back()));
  }
  const std::uint64_t before = HsmSignatures();
  std::vector<HttpResult> results(kRequests);
  {
    std::vector<std::jthread> clients;
    for (int r = 0; r < kRequests; ++r) {
      const auto file = dir_.path() / ("window-body-" + std::to_string(r));
      WriteFile(file, bodies[r].dump());
      clients.emplace_back([&, r, file] {
        results[r] = Curl("-X POST -H 'Content-Type: application/json' --data-binary @" +
                          ShellQuote(file.string()) + " --unix-socket " +
                          ShellQuote(socket_.string()) + " http://localhost/v1/sign");
      });
    }
  }
  EXPECT_EQ(HsmSignatures(), before + 1) << "the window's requests were not signed together";
  const hsm::PublicKey& key = hsm_->batch_key.public_key;
  const formats::NoteCheck check = NoteCheckFor(key);
  std::set<std::string> batch_ids;
  std::set<std::uint64_t> seqs;
  std::set<std::uint64_t> leaf_indices;
  for (int r = 0; r < kRequests; ++r) {
    SCOPED_TRACE("request " + std::to_string(r));
    ASSERT_EQ(results[r].status, 200) << results[r].body;
    const json answer = json::parse(results[r].body);
    const std::string request_id = answer["request_id"].get<std::string>();
    ASSERT_EQ(answer["batches"].size(), 1u) << answer;
    ASSERT_EQ(answer["items"].size(), 3u) << answer;
    const json& batch = answer["batches"][0];
    EXPECT_EQ(batch["tree_size"], 3 * kRequests);
    // The batch is shared: its client has only its own leaves, so the answer carries the proofs.
    EXPECT_EQ(batch["inclusion_proofs"], true) << batch;
    batch_ids.insert(batch["batch_id"].get<std::string>());
    auto batch_record = log_->Get(batch["seq"].get<std::uint64_t>());
    ASSERT_TRUE(batch_record) << batch_record.error();
    EXPECT_EQ(batch_record->kind, audit::RecordKind::kBatch);
    EXPECT_EQ(batch_record->request_id, request_id);
    seqs.insert(batch["seq"].get<std::uint64_t>());
    for (std::size_t i = 0; i < 3; ++i) {
      const json& item = answer["items"][i];
      EXPECT_EQ(item["name"], artifacts[r][i].name) << "another request's item";
      formats::Receipt receipt;
      receipt.leaf = LeafOf(artifacts[r][i], request_id);
      receipt.leaf_hash = HashFromBase64(item["leaf_hash"]);
      receipt.leaf_index = item["leaf_index"].get<std::uint64_t>();
      receipt.tree_size = batch["tree_size"].get<std::uint64_t>();
      receipt.batch_id = batch["batch_id"].get<std::string>();
      for (const json& hash : item["inclusion_proof"]) {
        receipt.inclusion_proof.push_back(HashFromBase64(hash));
      }
      receipt.note = batch["note"].get<std::string>();
      receipt.key_fingerprint = answer["key_fingerprint"].get<std::string>();
      const formats::ReceiptVerdict verdict =
          formats::VerifyReceipt(receipt, artifacts[r][i].content.size(),
                                 Sha256(artifacts[r][i].content), key.fingerprint, check);
      EXPECT_TRUE(verdict.ok()) << formats::ReceiptFailureName(verdict.failure) << ": "
                                << verdict.message;
      // Another request's id in the leaf does not verify: the leaf is this request's own.
      formats::Receipt foreign = receipt;
      foreign.leaf.request_id = std::string(32, '0');
      foreign.leaf_hash = *formats::BatchLeafHash(foreign.leaf);
      EXPECT_EQ(formats::VerifyReceipt(foreign, artifacts[r][i].content.size(),
                                       Sha256(artifacts[r][i].content), key.fingerprint, check)
                    .failure,
                formats::ReceiptFailure::kProofWrong);
      EXPECT_TRUE(leaf_indices.insert(receipt.leaf_index).second) << "a leaf given twice";
      const std::uint64_t seq = item["seq"].get<std::uint64_t>();
      EXPECT_TRUE(seqs.insert(seq).second) << "a seq given twice";
      auto record = log_->Get(seq);
      ASSERT_TRUE(record) << record.error();
      EXPECT_EQ(record->kind, audit::RecordKind::kSign);
      EXPECT_EQ(record->request_id, request_id);
      EXPECT_EQ(record->artifact_name, artifacts[r][i].name);
      ASSERT_TRUE(record->batch.has_value());
      EXPECT_EQ(record->batch->id, receipt.batch_id);
      EXPECT_EQ(record->batch->leaf_index, receipt.leaf_index);
    }
  }
  EXPECT_EQ(batch_ids.size(), 1u);
  EXPECT_EQ(leaf_indices.size(), 3u * kRequests);
  EXPECT_EQ(log_->stats().tree_size, 4u * kRequests);  // per request: a batch record, 3 signs
}

TEST_F(BatchTest, ClosedAuditLogIs503WithoutReceipts) {
  ASSERT_TRUE(log_->Close());
  const std::uint64_t before = HsmSignatures();
  const HttpResult result = Post(Body("batch", MakeArtifacts(3, "dist/closed-")));
  ASSERT_EQ(result.status, 503) << result.body;
  const json answer = json::parse(result.body);
  EXPECT_EQ(answer["code"], "audit_unavailable");
  for (const char* field :
       {"batches", "items", "note", "inclusion_proof", "leaf_hash", "signature", "batch_id"}) {
    EXPECT_EQ(result.body.find("\"" + std::string(field) + "\""), std::string::npos)
        << field << " in " << result.body;
  }
  EXPECT_EQ(result.body.find("signet-batch"), std::string::npos) << result.body;
  // A closed log is caught before the HSM is asked: nothing was signed.
  EXPECT_EQ(HsmSignatures(), before);
}

}  // namespace
}  // namespace signet::service
