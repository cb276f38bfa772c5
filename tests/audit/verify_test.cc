// VerifyExport and VerifyConsistent on exports built by hand here (MerkleTree over canonical record
// bytes, checkpoints signed with a real SoftHSM key), independent of the Log and of export.cc:
// good exports pass, and every kind of tampering fails with its own error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "tests/audit/hsm_note_signer.h"

namespace signet::audit {

// In export_test.cc: one SoftHSM token per process.
testing::AuditKey& ExportTestKey();

namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using pipeline::MerkleHash;
using pipeline::MerkleTree;

constexpr std::int64_t kStartUs = 1'700'000'000'000'000;

testing::AuditKey& Key() { return ExportTestKey(); }
constexpr char kOrigin[] = "signet.test/audit";

// A second, independent key (Ed25519 in OpenSSL): SoftHSM tokens are one per process.
class OpenSslNoteSigner : public NoteSigner {
 public:
  explicit OpenSslNoteSigner(const std::string& name)
      : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")) {
    unsigned char* der = nullptr;
    const int length = i2d_PUBKEY(key_.get(), &der);
    Bytes spki(der, der + length);
    OPENSSL_free(der);
    verifier_ = MakeNoteVerifier(name, spki).value();
  }
  const NoteVerifier& verifier() const override { return verifier_; }
  Result<Bytes> Sign(std::span<const std::uint8_t> text) override {
    std::unique_ptr<EVP_MD_CTX, FnDeleter<&EVP_MD_CTX_free>> ctx(EVP_MD_CTX_new());
    Bytes signature(64);
    std::size_t length = signature.size();
    if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), signature.data(), &length, text.data(), text.size()) != 1) {
      return MakeError(OpenSslError("ed25519 sign"));
    }
    return signature;
  }

 private:
  std::unique_ptr<EVP_PKEY, FnDeleter<&EVP_PKEY_free>> key_;
  NoteVerifier verifier_;
};

Record MakeRecord(std::uint64_t seq, const std::string& variant = "") {
  Record record;
  record.kind = RecordKind::kSign;
  record.seq = seq;
  record.time_us = kStartUs + static_cast<std::int64_t>(seq) * 1000;
  record.host_id = "host-1";
  record.requester.user = seq % 3 == 0 ? "alice" : "bob";
  record.requester.uid = seq % 3 == 0 ? 1000 : 1001;
  record.key_name = seq % 2 == 0 ? "release" : "nightly";
  record.algorithm = "ecdsa-p256";
  record.artifact_name = "dist/app-" + std::to_string(seq) + variant + ".tar.gz";
  record.digests["sha256"] = std::string(62, 'a') + (seq < 10 ? "0" : "") + std::to_string(seq);
  record.decision = "allow";
  return record;
}

// A log of `n` records as the Log would store them.
struct TestLog {
  std::vector<std::string> records;  // canonical bytes; records[i] has seq i
  std::unique_ptr<MerkleTree> tree;
};

TestLog MakeLog(std::uint64_t n, std::optional<std::uint64_t> changed = std::nullopt) {
  TestLog log;
  std::vector<MerkleHash> leaves;
  for (std::uint64_t seq = 0; seq < n; ++seq) {
    log.records.push_back(SerializeRecord(MakeRecord(seq, changed == seq ? "-evil" : "")).value());
    leaves.push_back(pipeline::LeafHash(AsBytes(log.records.back())));
  }
  log.tree = std::make_unique<MerkleTree>(std::move(leaves));
  return log;
}

std::string SignCheckpoint(const MerkleTree& tree, NoteSigner& signer) {
  return SignNote(CheckpointText(Checkpoint{kOrigin, tree.size(), tree.Root()}), signer).value();
}

json Hashes(const std::vector<MerkleHash>& hashes) {
  json out = json::array();
  for (const MerkleHash& hash : hashes) {
    out.push_back(Base64Encode(hash));
  }
  return out;
}

// What an export holds; `seqs` empty with `full` means every record.
struct Spec {
  Spec() = default;
  static Spec FullWithProofs() {
    Spec spec;
    spec.full_proofs = true;
    return spec;
  }
  Spec(bool is_full, std::vector<std::uint64_t> record_seqs, json record_filters,
       std::vector<std::uint64_t> from = {})
      : full(is_full),
        seqs(std::move(record_seqs)),
        filters(std::move(record_filters)),
        consistency_from(std::move(from)) {}

  bool full = true;
  std::vector<std::uint64_t> seqs;
  json filters = json::object();
  std::vector<std::uint64_t> consistency_from;
  bool full_proofs = false;  // a full export's record lines carry proofs too
};

std::vector<std::string> ExportLines(const TestLog& log, const std::string& note, Spec spec) {
  json consistency = json::array();
  for (std::uint64_t from : spec.consistency_from) {
    consistency.push_back({{"from", from}, {"proof", Hashes(*log.tree->ConsistencyProof(from))}});
  }
  std::vector<std::string> lines;
  lines.push_back(json{
      {"type", "header"},
      {"format", "signet-audit-export/1"},
      {"checkpoint", note},
      {"consistency", consistency},
      {"filters", spec.filters},
      {"full",
       spec.full}}.dump());
  if (spec.full) {
    for (std::uint64_t seq = 0; seq < log.records.size(); ++seq) {
      spec.seqs.push_back(seq);
    }
  }
  for (std::uint64_t seq : spec.seqs) {
    json line{{"type", "record"}, {"index", seq}, {"record", log.records[seq]}};
    if (!spec.full || spec.full_proofs) {
      line["proof"] = Hashes(*log.tree->InclusionProof(seq));
    }
    lines.push_back(line.dump());
  }
  lines.push_back(json{{"type", "end"}, {"records", spec.seqs.size()}}.dump());
  return lines;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) {
    text += line + "\n";
  }
  return text;
}

// `line` with one field set to `value`, still canonical.
std::string Edit(const std::string& line, const std::string& field, json value) {
  json object = json::parse(line);
  object[field] = std::move(value);
  return object.dump();
}

Result<ExportSummary> Verify(const std::string& text, const NoteVerifier& key,
                             const VerifyOptions& options = {}) {
  std::istringstream in(text);
  return VerifyExport(in, key, options);
}

class VerifyTest : public ::testing::Test {
 protected:
  VerifyTest() : log_(MakeLog(7)), note_(SignCheckpoint(*log_.tree, *Key().signer())) {}

  const NoteVerifier& key() const { return Key().verifier(); }
  std::vector<std::string> Full() const { return ExportLines(log_, note_, Spec{}); }
  // seqs 2, 3, 4 with inclusion proofs: lines 2, 3, 4; the end line is 5.
  std::vector<std::string> Range() const {
    return ExportLines(log_, note_, Spec{false, {2, 3, 4}, {{"from_seq", 2}, {"to_seq", 5}}, {}});
  }
  void ExpectError(const std::vector<std::string>& lines, ErrorCode code,
                   const std::string& message) const {
    auto summary = Verify(Join(lines), key());
    ASSERT_FALSE(summary.has_value()) << "verified: " << Join(lines);
    EXPECT_EQ(summary.error().code(), code) << summary.error();
    EXPECT_THAT(summary.error().message(), HasSubstr(message));
  }

  TestLog log_;
  std::string note_;
};

TEST_F(VerifyTest, GoodFullExportVerifies) {
  auto summary = Verify(Join(Full()), key(), VerifyOptions{1 << 20, {0, 3, 7, 9}});
  ASSERT_TRUE(summary.has_value()) << summary.error();
  EXPECT_TRUE(summary->full);
  EXPECT_EQ(summary->records, 7u);
  EXPECT_EQ(summary->first_seq, 0u);
  EXPECT_EQ(summary->last_seq, 6u);
  EXPECT_EQ(summary->checkpoint, (Checkpoint{kOrigin, 7, log_.tree->Root()}));
  EXPECT_EQ(summary->checkpoint_note, note_);
  // Prefix roots at the sizes asked for that the export reaches.
  ASSERT_EQ(summary->prefix_roots.size(), 3u);
  EXPECT_EQ(summary->prefix_roots.at(0), pipeline::EmptyTreeHash());
  EXPECT_EQ(summary->prefix_roots.at(3), MakeLog(3).tree->Root());
  EXPECT_EQ(summary->prefix_roots.at(7), log_.tree->Root());
}

TEST_F(VerifyTest, GoodProofExportsVerify) {
  auto range = Verify(Join(Range()), key());
  ASSERT_TRUE(range.has_value()) << range.error();
  EXPECT_FALSE(range->full);
  EXPECT_EQ(range->records, 3u);
  EXPECT_EQ(range->first_seq, 2u);
  EXPECT_EQ(range->last_seq, 4u);

  // A key filter: records 0, 2, 4, 6 are signed with "release"; not contiguous.
  auto keyed = Verify(
      Join(ExportLines(log_, note_, Spec{false, {0, 2, 4, 6}, {{"key", "release"}}})), key());
  ASSERT_TRUE(keyed.has_value()) << keyed.error();
  EXPECT_EQ(keyed->records, 4u);

  // A filter that selected nothing is a valid, empty export.
  auto none =
      Verify(Join(ExportLines(log_, note_, Spec{false, {}, {{"identity", "carol"}}})), key());
  ASSERT_TRUE(none.has_value()) << none.error();
  EXPECT_EQ(none->records, 0u);
  EXPECT_FALSE(none->first_seq.has_value());
}

TEST_F(VerifyTest, ChangedRecordIsCaught) {
  auto flip = [](std::vector<std::string> lines, std::size_t at) {
    std::size_t pos = lines[at].find("app-");
    lines[at][pos] = 'b';  // "bpp-": still canonical JSON, another record
    return lines;
  };
  ExpectError(flip(Range(), 2), ErrorCode::kCrypto,
              "line 3 (seq 3): inclusion proof does not lead to the checkpoint root: the record "
              "was changed, or the proof");
  ExpectError(flip(Full(), 4), ErrorCode::kCrypto,
              "line 9: the root recomputed from 7 records does not match the checkpoint root: a "
              "record was changed (an export with inclusion proofs, the default, names it)");
  // A full export with proofs (what Log::Export writes by default) names the changed record.
  const auto full_with_proofs = ExportLines(log_, note_, Spec::FullWithProofs());
  ASSERT_TRUE(Verify(Join(full_with_proofs), key()).has_value());
  ExpectError(flip(full_with_proofs, 4), ErrorCode::kCrypto,
              "line 5 (seq 3): inclusion proof does not lead to the checkpoint root: the record "
              "was changed, or the proof");
}

TEST_F(VerifyTest, AFullExportHasProofsOnEveryRecordLineOrOnNone) {
  auto lines = ExportLines(log_, note_, Spec::FullWithProofs());
  json third = json::parse(lines[3]);
  third.erase("proof");
  lines[3] = third.dump();
  ExpectError(lines, ErrorCode::kInvalidArgument,
              "line 4 (seq 2): no inclusion proof (\"proof\"), but the lines before it carry one");
  lines = Full();
  lines[2] = ExportLines(log_, note_, Spec::FullWithProofs())[2];
  ExpectError(lines, ErrorCode::kInvalidArgument,
              "line 3 (seq 1): carries an inclusion proof, but the lines before it do not");
}

TEST_F(VerifyTest, DeletedRecordLineIsCaught) {
  auto full = Full();
  full.erase(full.begin() + 3);  // seq 2
  ExpectError(full, ErrorCode::kInvalidArgument, "line 4 (seq 3): expected seq 2");

  auto range = Range();
  range.erase(range.begin() + 2);  // seq 3
  ExpectError(range, ErrorCode::kInvalidArgument,
              "line 3 (seq 4): expected seq 3 next: records were removed");
  range = Range();
  range.erase(range.begin() + 1);  // seq 2, the first of the range
  ExpectError(range, ErrorCode::kInvalidArgument, "line 2 (seq 3): expected seq 2 first");
}

TEST_F(VerifyTest, SwappedRecordLinesAreCaught) {
  auto full = Full();
  std::swap(full[2], full[3]);  // seq 1 and seq 2
  ExpectError(full, ErrorCode::kInvalidArgument, "line 3 (seq 2): expected seq 1");
  // Even where the filter allows gaps, order is fixed.
  auto keyed = ExportLines(log_, note_, Spec{false, {0, 2, 4, 6}, {{"key", "release"}}});
  std::swap(keyed[2], keyed[3]);
  ExpectError(keyed, ErrorCode::kInvalidArgument,
              "line 4 (seq 2): comes after seq 4: record lines were reordered");
}

TEST_F(VerifyTest, TruncatedExportIsCaught) {
  auto lines = Full();
  lines.pop_back();
  ExpectError(lines, ErrorCode::kInvalidArgument, "export is truncated: no end line");
  lines.pop_back();  // and the last record
  ExpectError(lines, ErrorCode::kInvalidArgument, "export is truncated: no end line");

  // The last records dropped, the end line kept: its count disagrees.
  lines = Full();
  lines.erase(lines.end() - 3, lines.end() - 1);
  ExpectError(lines, ErrorCode::kInvalidArgument,
              "line 7: the end line counts 7 records but the export holds 5");
  // ... and with the count fixed too: a full export must reach the checkpoint's size.
  lines.back() = R"({"records":5,"type":"end"})";
  ExpectError(lines, ErrorCode::kInvalidArgument,
              "a full export of the checkpoint of size 7 holds only 5 records");
  // A range export must reach the end of its range.
  lines = Range();
  lines.erase(lines.end() - 2);
  lines.back() = R"({"records":2,"type":"end"})";
  ExpectError(lines, ErrorCode::kInvalidArgument, "records were removed at the end");
  // An empty input is not an export.
  ExpectError({}, ErrorCode::kInvalidArgument, "no header line");
}

TEST_F(VerifyTest, AnotherSignedCheckpointIsCaught) {
  // A validly signed checkpoint of another tree of the same size (record 4 differs).
  TestLog other = MakeLog(7, 4);
  std::string other_note = SignCheckpoint(*other.tree, *Key().signer());
  auto full = ExportLines(log_, other_note, Spec{});
  ExpectError(full, ErrorCode::kCrypto, "does not match the checkpoint root");
  auto range =
      ExportLines(log_, other_note, Spec{false, {2, 3, 4}, {{"from_seq", 2}, {"to_seq", 5}}, {}});
  ExpectError(range, ErrorCode::kCrypto, "line 2 (seq 2): inclusion proof does not lead");
  // A smaller valid checkpoint: the records past it are not covered.
  std::string small_note = SignCheckpoint(*MakeLog(3).tree, *Key().signer());
  ExpectError(ExportLines(log_, small_note, Spec{}), ErrorCode::kInvalidArgument,
              "line 5 (seq 3): seq 3 is not covered by the checkpoint (size 3)");
}

TEST_F(VerifyTest, CheckpointByAnotherKeyIsRefused) {
  // Same key name, another key: the key ID differs, so there is no signature by our key.
  OpenSslNoteSigner other(kOrigin);
  std::string forged = SignCheckpoint(*log_.tree, other);
  auto refused = Verify(Join(ExportLines(log_, forged, Spec{})), key());
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kNotFound) << refused.error();
  EXPECT_THAT(refused.error().message(), HasSubstr("line 1: checkpoint"));
  // It does verify with that other key: the export itself is fine.
  EXPECT_TRUE(Verify(Join(ExportLines(log_, forged, Spec{})), other.verifier()).has_value());
}

TEST_F(VerifyTest, WrongKeyIsRefused) {
  OpenSslNoteSigner other(kOrigin);
  auto wrong_key = Verify(Join(Full()), other.verifier());
  ASSERT_FALSE(wrong_key.has_value());
  EXPECT_EQ(wrong_key.error().code(), ErrorCode::kNotFound) << wrong_key.error();
  // The right key under another name.
  auto renamed = MakeNoteVerifier("other.example/audit", Key().public_key().spki_der).value();
  auto wrong_name = Verify(Join(Full()), renamed);
  ASSERT_FALSE(wrong_name.has_value());
  EXPECT_EQ(wrong_name.error().code(), ErrorCode::kNotFound) << wrong_name.error();
  EXPECT_THAT(wrong_name.error().message(), HasSubstr("line 1: checkpoint"));
}

TEST_F(VerifyTest, MalformedLinesAreRefused) {
  auto lines = Full();
  lines[2].insert(1, " ");  // valid JSON, not canonical
  ExpectError(lines, ErrorCode::kInvalidArgument, "line 3 is not in canonical form");
  lines = Full();
  lines.push_back(lines[1]);
  ExpectError(lines, ErrorCode::kInvalidArgument, "line 10: a line after the end line");
  lines = Full();
  lines[0] = Edit(lines[0], "format", "signet-audit-export/2");
  ExpectError(lines, ErrorCode::kInvalidArgument, "line 1: format \"signet-audit-export/2\"");
  lines = Full();
  lines[0] = Edit(lines[0], "full", false);
  ExpectError(lines, ErrorCode::kInvalidArgument, "line 1: the header says not full");
  lines = Range();
  lines[2] = Edit(lines[2], "proof", json::array());
  ExpectError(lines, ErrorCode::kInvalidArgument, "line 3 (seq 3): inclusion proof:");
  lines = Full();
  lines.insert(lines.begin() + 1, "");
  ExpectError(lines, ErrorCode::kInvalidArgument, "line 2 is empty");

  auto too_long = Verify(Join(Full()), key(), VerifyOptions{100, {}});
  ASSERT_FALSE(too_long.has_value());
  EXPECT_THAT(too_long.error().message(), HasSubstr("line 1 is longer than 100 bytes"));
}

TEST_F(VerifyTest, RecordsMustMatchTheirIndexAndFilters) {
  // Leaf 3 of this tree holds a record that says it is seq 4: the proof is fine, the seq is not.
  TestLog log = MakeLog(7);
  Record misnumbered = MakeRecord(4);
  log.records[3] = SerializeRecord(misnumbered).value();
  std::vector<MerkleHash> leaves;
  for (const std::string& bytes : log.records) {
    leaves.push_back(pipeline::LeafHash(AsBytes(bytes)));
  }
  log.tree = std::make_unique<MerkleTree>(std::move(leaves));
  std::string note = SignCheckpoint(*log.tree, *Key().signer());
  ExpectError(ExportLines(log, note, Spec{false, {3}, {{"from_seq", 3}, {"to_seq", 4}}, {}}),
              ErrorCode::kInvalidArgument, "line 2 (seq 3): the record says it is seq 4");

  // A record that the export's filter would not select was slipped in (with a valid proof).
  ExpectError(ExportLines(log_, note_, Spec{false, {0, 1, 2}, {{"key", "release"}}}),
              ErrorCode::kInvalidArgument,
              "line 3 (seq 1): the record does not match the export's key filter");
  ExpectError(ExportLines(log_, note_, Spec{false, {0, 1}, {{"identity", "alice"}}}),
              ErrorCode::kInvalidArgument, "line 3 (seq 1): the record does not match");
  ExpectError(
      ExportLines(
          log_, note_,
          Spec{
              false, {2, 3}, {{"from_time_us", kStartUs + 2000}, {"to_time_us", kStartUs + 3000}}}),
      ErrorCode::kInvalidArgument, "line 3 (seq 3): the record's time is outside");
}

// ---- Consistency -------------------------------------------------------------------------------

class ConsistencyTest : public VerifyTest {
 protected:
  ConsistencyTest()
      : older_log_(MakeLog(5)),
        newer_log_(MakeLog(9)),
        older_(Verify(Join(ExportLines(older_log_,
                                       SignCheckpoint(*older_log_.tree, *Key().signer()), Spec{})),
                      key())
                   .value()),
        newer_note_(SignCheckpoint(*newer_log_.tree, *Key().signer())) {}

  ExportSummary Newer(const Spec& spec, const TestLog& log, const std::string& note,
                      std::vector<std::uint64_t> roots_at = {}) const {
    auto summary = Verify(Join(ExportLines(log, note, spec)), key(),
                          VerifyOptions{1 << 20, std::move(roots_at)});
    EXPECT_TRUE(summary.has_value()) << summary.error();
    return summary.value();
  }

  TestLog older_log_;
  TestLog newer_log_;
  ExportSummary older_;
  std::string newer_note_;
};

TEST_F(ConsistencyTest, ProofOrPrefixRootShowsTheOlderTreeIsAPrefix) {
  Spec with_proof{false, {7, 8}, {{"from_seq", 7}}, {0, 5}};
  ExportSummary newer = Newer(with_proof, newer_log_, newer_note_);
  ASSERT_EQ(newer.consistency.size(), 2u);
  EXPECT_TRUE(VerifyConsistent(older_, newer).has_value());
  // A full newer export proves it by recomputing the prefix root.
  ExportSummary full = Newer(Spec{}, newer_log_, newer_note_, {5});
  EXPECT_TRUE(VerifyConsistent(older_, full).has_value());
  // Equal checkpoints are consistent; a summary with itself too.
  EXPECT_TRUE(VerifyConsistent(older_, older_).has_value());

  // Without a proof: says how to get one.
  ExportSummary bare = Newer(Spec{false, {7, 8}, {{"from_seq", 7}}, {}}, newer_log_, newer_note_);
  auto missing = VerifyConsistent(older_, bare);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(missing.error().message(),
              HasSubstr("carries no consistency proof from size 5: export it again with "
                        "consistency_from 5 (signet audit export --consistency-from 5)"));
  ExportSummary full_without_root = Newer(Spec{}, newer_log_, newer_note_);
  EXPECT_FALSE(VerifyConsistent(older_, full_without_root).has_value());

  // Out of order is the caller's mistake.
  auto reversed = VerifyConsistent(newer, older_);
  ASSERT_FALSE(reversed.has_value());
  EXPECT_EQ(reversed.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(ConsistencyTest, ARewrittenLogIsCaught) {
  // The newer tree changed record 2, inside the older checkpoint: a fork.
  TestLog forked = MakeLog(9, 2);
  std::string forked_note = SignCheckpoint(*forked.tree, *Key().signer());
  ExportSummary with_proof = Newer(Spec{false, {8}, {{"from_seq", 8}}, {5}}, forked, forked_note);
  auto by_proof = VerifyConsistent(older_, with_proof);
  ASSERT_FALSE(by_proof.has_value());
  EXPECT_EQ(by_proof.error().code(), ErrorCode::kCrypto) << by_proof.error();
  EXPECT_THAT(
      by_proof.error().message(),
      HasSubstr(
          "the checkpoint of size 5 is not a prefix of the one of size 9: the log was rewritten"));

  ExportSummary full = Newer(Spec{}, forked, forked_note, {5});
  auto by_root = VerifyConsistent(older_, full);
  ASSERT_FALSE(by_root.has_value());
  EXPECT_EQ(by_root.error().code(), ErrorCode::kCrypto) << by_root.error();

  // Two different checkpoints of one size.
  TestLog same_size = MakeLog(5, 1);
  ExportSummary twin = Newer(Spec{}, same_size, SignCheckpoint(*same_size.tree, *Key().signer()));
  auto forked_twin = VerifyConsistent(older_, twin);
  ASSERT_FALSE(forked_twin.has_value());
  EXPECT_EQ(forked_twin.error().code(), ErrorCode::kCrypto) << forked_twin.error();
}

TEST_F(ConsistencyTest, ATamperedProofIsCaught) {
  auto lines = ExportLines(newer_log_, newer_note_, Spec{false, {8}, {{"from_seq", 8}}, {5}});
  json header = json::parse(lines[0]);
  header["consistency"][0]["proof"][0] = Base64Encode(pipeline::EmptyTreeHash());
  lines[0] = header.dump();
  auto newer = Verify(Join(lines), key());
  ASSERT_TRUE(newer.has_value())
      << newer.error();  // the proof is only checked against an older root
  auto consistent = VerifyConsistent(older_, *newer);
  ASSERT_FALSE(consistent.has_value());
  EXPECT_EQ(consistent.error().code(), ErrorCode::kCrypto) << consistent.error();
}

}  // namespace
}  // namespace signet::audit
