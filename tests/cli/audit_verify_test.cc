// `signet audit verify`: the real binary on exports of a real audit log (LMDB, SoftHSM audit key),
// good and tampered, alone and in pairs for consistency.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "run_util.h"
#include "tests/audit/hsm_note_signer.h"

namespace signet::cli::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

audit::testing::AuditKey& Key() {
  static auto* key = new audit::testing::AuditKey();
  return *key;
}

class AuditVerifyTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    std::filesystem::create_directory(dir() / "audit");
    audit::LogOptions options = audit::testing::TestLogOptions(dir() / "audit");
    options.checkpoint_every = 1'000'000;  // checkpoints only when the test asks
    options.checkpoint_interval = std::chrono::hours(1);
    auto log = audit::Log::Open(options, Key().signer());
    ASSERT_TRUE(log.has_value()) << log.error();
    log_ = std::move(*log);
    Make("audit.pub.pem", Key().public_key().pem);
  }
  void TearDown() override {
    log_.reset();
    CliTest::TearDown();
  }

  // Appends records [from, from + n) and signs a checkpoint over them.
  void Grow(std::uint64_t from, std::uint64_t n) {
    std::vector<audit::Record> records;
    for (std::uint64_t i = from; i < from + n; ++i) {
      records.push_back(audit::testing::SampleRecord(i));
    }
    auto appended = log_->Append(std::move(records));
    ASSERT_TRUE(appended.has_value()) << appended.error();
    auto note = log_->CheckpointNow();
    ASSERT_TRUE(note.has_value()) << note.error();
  }
  // Writes the export `options` select to dir()/name; returns name.
  std::string Export(const std::string& name, const audit::ExportOptions& options = {}) {
    std::string text;
    auto exported = log_->Export(options, [&](std::string_view line) -> Status {
      text += line;
      return OkStatus();
    });
    EXPECT_TRUE(exported.has_value()) << exported.error();
    return Make(name, text);
  }
  ProcessResult Verify(std::vector<std::string> exports, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"audit", "verify"};
    args.insert(args.end(), exports.begin(), exports.end());
    args.insert(args.end(), {"--key-file", "audit.pub.pem"});
    args.insert(args.end(), extra.begin(), extra.end());
    return Signet(args);
  }

  std::unique_ptr<audit::Log> log_;
};

audit::ExportOptions Range(std::uint64_t from, std::optional<std::uint64_t> to,
                           std::vector<std::uint64_t> consistency_from = {}) {
  audit::ExportOptions options;
  options.from_seq = from;
  options.to_seq = to;
  options.consistency_from = std::move(consistency_from);
  return options;
}

TEST_F(AuditVerifyTest, GoodExportsVerifyAndSayWhatWasChecked) {
  Grow(0, 12);
  std::string full = Export("full.jsonl");
  ProcessResult checked = Verify({full});
  EXPECT_EQ(checked.exit_code, 0) << checked;
  EXPECT_THAT(checked.out, HasSubstr("full.jsonl: checkpoint: origin signet.test/audit, size 12, "
                                     "signed by signet.test/audit (key ID "));
  EXPECT_THAT(checked.out, HasSubstr("full.jsonl: full log: root recomputed from 12 records: ok"));
  EXPECT_EQ(checked.err, "");

  std::string range = Export("range.jsonl", Range(4, 7));
  ProcessResult proofs = Verify({range});
  EXPECT_EQ(proofs.exit_code, 0) << proofs;
  EXPECT_THAT(proofs.out,
              HasSubstr("range.jsonl: records: 3 verified (seq 4..6), inclusion proofs: ok"));

  // --key-name given explicitly, and --key as the alias of --key-file.
  ProcessResult named = Signet({"audit", "verify", full, "--key", "audit.pub.pem", "--key-name",
                                "signet.test/audit", "--json"});
  EXPECT_EQ(named.exit_code, 0) << named;
  nlohmann::json line = nlohmann::json::parse(named.out);
  EXPECT_EQ(line["ok"], true);
  EXPECT_EQ(line["full"], true);
  EXPECT_EQ(line["records"], 12);
  EXPECT_EQ(line["origin"], "signet.test/audit");
}

TEST_F(AuditVerifyTest, TamperedExportFailsNamingLineAndSeq) {
  Grow(0, 12);
  std::string text = ReadFile(dir() / Export("range.jsonl", Range(4, 8)));
  std::size_t at = text.find("dist/pkg-6.tar.gz");
  ASSERT_NE(at, std::string::npos);
  text[at + 5] = 'P';
  Make("range.jsonl", text);
  ProcessResult tampered = Verify({"range.jsonl"});
  EXPECT_EQ(tampered.exit_code, 1) << tampered;
  EXPECT_THAT(tampered.err,
              HasSubstr("signet: range.jsonl: line 4 (seq 6): inclusion proof does not lead to the "
                        "checkpoint root"));
  EXPECT_THAT(tampered.out, Not(HasSubstr("records:")));

  // A full export with a record line removed.
  std::string full = ReadFile(dir() / Export("full.jsonl"));
  std::size_t seq2 = full.find("{\"index\":2,");
  full.erase(seq2, full.find('\n', seq2) + 1 - seq2);
  Make("full.jsonl", full);
  ProcessResult removed = Verify({"full.jsonl"});
  EXPECT_EQ(removed.exit_code, 1) << removed;
  EXPECT_THAT(removed.err, HasSubstr("full.jsonl: line 4 (seq 3): expected seq 2"));

  // Truncated: the end line is gone.
  std::string whole = ReadFile(dir() / Export("whole.jsonl"));
  Make("cut.jsonl", whole.substr(0, whole.rfind("{\"records\"")));
  ProcessResult cut = Verify({"cut.jsonl"});
  EXPECT_EQ(cut.exit_code, 1) << cut;
  EXPECT_THAT(cut.err, HasSubstr("cut.jsonl: export is truncated: no end line"));
}

TEST_F(AuditVerifyTest, KeyProblemsAreClear) {
  Grow(0, 3);
  std::string full = Export("full.jsonl");
  ProcessResult missing = Signet({"audit", "verify", full, "--key-file", "nope.pem"});
  EXPECT_EQ(missing.exit_code, 1) << missing;
  EXPECT_THAT(missing.err, HasSubstr("signet: nope.pem: No such file or directory"));

  Make("garbage.pem", "not a key\n");
  ProcessResult garbage = Signet({"audit", "verify", full, "--key-file", "garbage.pem"});
  EXPECT_EQ(garbage.exit_code, 1) << garbage;
  EXPECT_THAT(garbage.err, HasSubstr("signet: garbage.pem: not a"));

  ProcessResult wrong_name = Verify({full}, {"--key-name", "other.example/audit"});
  EXPECT_EQ(wrong_name.exit_code, 1) << wrong_name;
  EXPECT_THAT(wrong_name.err, HasSubstr("full.jsonl: line 1: checkpoint"));

  // Usage errors: no key, no export, a name that cannot be a key name.
  ProcessResult no_key = Signet({"audit", "verify", full});
  EXPECT_EQ(no_key.exit_code, 2) << no_key;
  EXPECT_THAT(no_key.err, HasSubstr("--key-file"));
  EXPECT_EQ(Signet({"audit", "verify", "--key-file", "audit.pub.pem"}).exit_code, 2);
  EXPECT_EQ(Verify({full}, {"--key-name", "has space"}).exit_code, 2);
  EXPECT_EQ(Signet({"audit"}).exit_code, 2);

  ProcessResult no_file = Verify({"absent.jsonl"});
  EXPECT_EQ(no_file.exit_code, 1) << no_file;
  EXPECT_THAT(no_file.err, HasSubstr("absent.jsonl: No such file or directory"));
}

TEST_F(AuditVerifyTest, ExportsAreCheckedForConsistency) {
  Grow(0, 10);
  std::string older = Export("older.jsonl");
  Grow(10, 7);
  std::string with_proof = Export("newer.jsonl", Range(15, std::nullopt, {10}));
  std::string without = Export("bare.jsonl", Range(15, std::nullopt));
  std::string full = Export("newer-full.jsonl");

  // Given newest first: ordered by checkpoint size before the pairs are checked.
  ProcessResult proved = Verify({with_proof, older});
  EXPECT_EQ(proved.exit_code, 0) << proved;
  EXPECT_THAT(proved.out,
              HasSubstr("consistency older.jsonl (size 10) → newer.jsonl (size 17): ok"));

  // A full newer export proves it by its prefix root.
  ProcessResult by_root = Verify({older, full});
  EXPECT_EQ(by_root.exit_code, 0) << by_root;
  EXPECT_THAT(by_root.out,
              HasSubstr("consistency older.jsonl (size 10) → newer-full.jsonl (size 17): ok"));

  ProcessResult no_proof = Verify({older, without});
  EXPECT_EQ(no_proof.exit_code, 1) << no_proof;
  EXPECT_THAT(no_proof.err, HasSubstr("consistency older.jsonl (size 10) → bare.jsonl (size 17)"));
  EXPECT_THAT(no_proof.err, HasSubstr("signet audit export --consistency-from 10"));
  // Each export still verified on its own.
  EXPECT_THAT(no_proof.out, HasSubstr("bare.jsonl: records: 2 verified (seq 15..16)"));
}

}  // namespace
}  // namespace signet::cli::testing
