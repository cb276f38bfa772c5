// Log::Export against a real LMDB log and a real SoftHSM audit key: what each filter selects, that
// every export verifies offline, consistency proofs, and what is never exported.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "tests/audit/hsm_note_signer.h"

namespace signet::audit {

// The SoftHSM audit key of export_test.cc and verify_test.cc: SoftHSM reads its configuration once
// per process, so a process can use only the first token it opens.
testing::AuditKey& ExportTestKey() {
  static auto* key = new testing::AuditKey();
  return *key;
}

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;
using testing::SampleDigest;
using testing::SampleRecord;

testing::AuditKey& Key() { return ExportTestKey(); }

// Every line of an export, each checked to end in "\n".
Result<std::vector<std::string>> ExportLines(const Log& log, const ExportOptions& options) {
  std::vector<std::string> lines;
  SIGNET_RETURN_IF_ERROR(log.Export(options, [&](std::string_view line) -> Status {
    EXPECT_TRUE(line.ends_with('\n')) << line;
    lines.emplace_back(line.substr(0, line.size() - 1));
    return OkStatus();
  }));
  return lines;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) {
    text += line + "\n";
  }
  return text;
}

// The indexes of the record lines.
std::vector<std::uint64_t> Seqs(const std::vector<std::string>& lines) {
  std::vector<std::uint64_t> seqs;
  for (const std::string& line : lines) {
    json object = json::parse(line);
    if (object["type"] == "record") {
      seqs.push_back(object["index"].get<std::uint64_t>());
    }
  }
  return seqs;
}

std::vector<std::uint64_t> Where(std::uint64_t n, const std::function<bool(std::uint64_t)>& keep) {
  std::vector<std::uint64_t> seqs;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (keep(i)) {
      seqs.push_back(i);
    }
  }
  return seqs;
}

class ExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_ = testing::TestLogOptions(dir_.path());
    // Checkpoints only when a test asks (and on close), so it knows what they cover.
    options_.checkpoint_every = 1'000'000;
    options_.checkpoint_interval = std::chrono::hours(1);
    auto log = Log::Open(options_, Key().signer());
    ASSERT_TRUE(log.has_value()) << log.error();
    log_ = std::move(*log);
  }

  // Appends records [from, from + n) in commits of up to 500.
  void Append(std::uint64_t from, std::uint64_t n) {
    for (std::uint64_t start = from; start < from + n; start += 500) {
      std::vector<Record> records;
      for (std::uint64_t i = start; i < std::min(from + n, start + 500); ++i) {
        records.push_back(SampleRecord(i));
      }
      auto range = log_->Append(std::move(records));
      ASSERT_TRUE(range.has_value()) << range.error();
      ASSERT_EQ(range->first, start);
    }
  }
  void Checkpoint() {
    auto note = log_->CheckpointNow();
    ASSERT_TRUE(note.has_value()) << note.error();
  }
  // Exports with `options` and verifies the result; returns the record seqs.
  std::vector<std::uint64_t> ExportedSeqs(const ExportOptions& options,
                                          ExportSummary* summary_out = nullptr) {
    auto lines = ExportLines(*log_, options);
    EXPECT_TRUE(lines.has_value()) << lines.error();
    if (!lines) {
      return {};
    }
    std::istringstream in(Join(*lines));
    auto summary = VerifyExport(in, Key().verifier());
    EXPECT_TRUE(summary.has_value()) << summary.error();
    if (summary && summary_out != nullptr) {
      *summary_out = *summary;
    }
    return Seqs(*lines);
  }

  testing::TempDir dir_;
  LogOptions options_;
  std::unique_ptr<Log> log_;
};

TEST_F(ExportTest, FullExportVerifies) {
  Append(0, 20);
  Checkpoint();
  auto lines = ExportLines(*log_, {});
  ASSERT_TRUE(lines.has_value()) << lines.error();
  ASSERT_EQ(lines->size(), 22u);
  json header = json::parse(lines->front());
  EXPECT_EQ(header["format"], "signet-audit-export/1");
  EXPECT_EQ(header["full"], true);
  EXPECT_EQ(header["filters"], json::object());
  EXPECT_EQ(header["checkpoint"], log_->LatestCheckpoint());
  EXPECT_EQ(lines->back(), R"({"records":20,"type":"end"})");
  // Each record carries its inclusion proof (so a changed one is named), and the root is
  // recomputed as well.
  EXPECT_TRUE(json::parse((*lines)[1]).contains("proof"));
  EXPECT_EQ(json::parse((*lines)[5])["record"], SerializeRecord(*log_->Get(4)).value());

  std::istringstream in(Join(*lines));
  auto summary = VerifyExport(in, Key().verifier());
  ASSERT_TRUE(summary.has_value()) << summary.error();
  EXPECT_TRUE(summary->full);
  EXPECT_EQ(summary->records, 20u);
  EXPECT_EQ(summary->checkpoint.size, 20u);

  // Without proofs: smaller, and it verifies by the root alone.
  ExportOptions no_proofs;
  no_proofs.full_proofs = false;
  auto small = ExportLines(*log_, no_proofs);
  ASSERT_TRUE(small.has_value()) << small.error();
  EXPECT_FALSE(json::parse((*small)[1]).contains("proof"));
  EXPECT_EQ(json::parse(small->front())["filters"], json::object());
  EXPECT_LT(Join(*small).size(), Join(*lines).size());
  std::istringstream small_in(Join(*small));
  auto small_summary = VerifyExport(small_in, Key().verifier());
  ASSERT_TRUE(small_summary.has_value()) << small_summary.error();
  EXPECT_EQ(small_summary->records, 20u);
}

TEST_F(ExportTest, SeqRangeSelectsItsRecordsWithProofs) {
  Append(0, 20);
  Checkpoint();
  ExportOptions range;
  range.from_seq = 5;
  range.to_seq = 9;
  ExportSummary summary;
  EXPECT_THAT(ExportedSeqs(range, &summary), ElementsAre(5, 6, 7, 8));
  EXPECT_FALSE(summary.full);
  auto lines = ExportLines(*log_, range);
  ASSERT_TRUE(lines.has_value());
  EXPECT_EQ(json::parse(lines->front())["filters"], (json{{"from_seq", 5}, {"to_seq", 9}}));
  EXPECT_TRUE(json::parse((*lines)[1]).contains("proof"));

  ExportOptions open_ended;
  open_ended.from_seq = 17;
  EXPECT_THAT(ExportedSeqs(open_ended), ElementsAre(17, 18, 19));
  ExportOptions past_end;
  past_end.from_seq = 30;
  EXPECT_TRUE(ExportedSeqs(past_end).empty());
}

TEST_F(ExportTest, KeyAndIdentityFiltersSelectTheirRecords) {
  Append(0, 30);
  Checkpoint();
  ExportOptions by_name;
  by_name.key = "release";
  EXPECT_EQ(ExportedSeqs(by_name), Where(30, [](auto i) { return i % 2 == 1; }));
  ExportOptions by_fingerprint;
  by_fingerprint.key = std::string(64, 'A');  // fingerprints match whatever the case
  EXPECT_EQ(ExportedSeqs(by_fingerprint), Where(30, [](auto i) { return i % 2 == 0; }));

  ExportOptions user;
  user.identity = "alice";
  EXPECT_EQ(ExportedSeqs(user), Where(30, [](auto i) { return i % 3 == 0; }));
  ExportOptions prefixed;
  prefixed.identity = "user:bob";
  EXPECT_EQ(ExportedSeqs(prefixed), Where(30, [](auto i) { return i % 3 == 1; }));
  ExportOptions uid;
  uid.identity = "uid:1002";
  EXPECT_EQ(ExportedSeqs(uid), Where(30, [](auto i) { return i % 3 == 2; }));

  // Filters combine: carol's records signed with "release", from seq 10.
  ExportOptions both;
  both.identity = "carol";
  both.key = "release";
  both.from_seq = 10;
  EXPECT_EQ(ExportedSeqs(both), Where(30, [](auto i) { return i >= 10 && i % 6 == 5; }));
  ExportOptions nobody;
  nobody.identity = "mallory";
  EXPECT_TRUE(ExportedSeqs(nobody).empty());
}

TEST_F(ExportTest, DigestFilterSelectsItsRecords) {
  Append(0, 30);
  // Artifact 7 signed again later, as seq 30.
  auto again = log_->Append({SampleRecord(7)});
  ASSERT_TRUE(again.has_value()) << again.error();
  ASSERT_EQ(again->first, 30u);
  Checkpoint();
  ExportOptions digest;
  digest.digest = SampleDigest(7);
  EXPECT_THAT(ExportedSeqs(digest), ElementsAre(7, 30));
  std::string upper = SampleDigest(12);
  for (char& c : upper) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  digest.digest = upper;
  EXPECT_THAT(ExportedSeqs(digest), ElementsAre(12));
  digest.digest = std::string(64, '0');
  EXPECT_TRUE(ExportedSeqs(digest).empty());
  // The digest filter within a range leaves out what is outside it.
  digest.digest = SampleDigest(7);
  digest.from_seq = 8;
  EXPECT_THAT(ExportedSeqs(digest), ElementsAre(30));

  ExportOptions bad;
  bad.digest = "xyz";
  auto not_hex = ExportLines(*log_, bad);
  ASSERT_FALSE(not_hex.has_value());
  EXPECT_EQ(not_hex.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(not_hex.error().message(), HasSubstr("digest"));
  bad.digest = "abcd";
  auto no_algorithm = ExportLines(*log_, bad);
  ASSERT_FALSE(no_algorithm.has_value());
  EXPECT_THAT(no_algorithm.error().message(), HasSubstr("fit no digest algorithm"));
}

TEST_F(ExportTest, TimeRangeSelectsItsRecords) {
  for (std::uint64_t i = 0; i < 12; ++i) {
    Append(i, 1);  // a commit each: times from the clock, never decreasing
  }
  Checkpoint();
  std::vector<std::int64_t> times;
  for (std::uint64_t i = 0; i < 12; ++i) {
    times.push_back(log_->Get(i).value().time_us);
  }
  ExportOptions range;
  range.from_time_us = times[3];
  range.to_time_us = times[8];
  EXPECT_EQ(ExportedSeqs(range),
            Where(12, [&](auto i) { return times[i] >= times[3] && times[i] < times[8]; }));
  ExportOptions after;
  after.from_time_us = times[11] + 1;
  EXPECT_TRUE(ExportedSeqs(after).empty());
  ExportOptions before;
  before.to_time_us = times[0];
  EXPECT_TRUE(ExportedSeqs(before).empty());
}

TEST_F(ExportTest, BadOptionsAreRefused) {
  Append(0, 3);
  Checkpoint();
  ExportOptions seqs;
  seqs.from_seq = 5;
  seqs.to_seq = 3;
  auto reversed = ExportLines(*log_, seqs);
  ASSERT_FALSE(reversed.has_value());
  EXPECT_EQ(reversed.error().code(), ErrorCode::kInvalidArgument);
  ExportOptions times;
  times.from_time_us = 10;
  times.to_time_us = 5;
  EXPECT_FALSE(ExportLines(*log_, times).has_value());
  ExportOptions consistency;
  consistency.consistency_from = {2, 99};
  auto past = ExportLines(*log_, consistency);
  ASSERT_FALSE(past.has_value());
  EXPECT_EQ(past.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(past.error().message(), HasSubstr("consistency_from 99"));
}

TEST_F(ExportTest, ConsistencyProofsLinkExports) {
  Append(0, 10);
  Checkpoint();
  ExportSummary older;
  ExportedSeqs({}, &older);
  ASSERT_EQ(older.checkpoint.size, 10u);

  Append(10, 7);
  Checkpoint();
  ExportOptions newer_options;
  newer_options.from_seq = 15;
  newer_options.consistency_from = {10, 0, 10};
  ExportSummary newer;
  EXPECT_THAT(ExportedSeqs(newer_options, &newer), ElementsAre(15, 16));
  ASSERT_EQ(newer.checkpoint.size, 17u);
  EXPECT_EQ(newer.consistency.size(), 2u);  // sizes 0 and 10, once each
  EXPECT_TRUE(VerifyConsistent(older, newer).has_value());

  ExportOptions no_proof;
  no_proof.from_seq = 15;
  ExportSummary bare;
  ExportedSeqs(no_proof, &bare);
  auto missing = VerifyConsistent(older, bare);
  ASSERT_FALSE(missing.has_value());
  EXPECT_THAT(missing.error().message(), HasSubstr("--consistency-from 10"));
}

TEST_F(ExportTest, RecordsPastTheLatestCheckpointAreNotExported) {
  Append(0, 10);
  Checkpoint();
  Append(10, 5);  // committed, not yet covered by a signature
  ExportSummary summary;
  EXPECT_EQ(ExportedSeqs({}, &summary), Where(10, [](auto) { return true; }));
  EXPECT_EQ(summary.checkpoint.size, 10u);
  ExportOptions tail;
  tail.from_seq = 8;
  EXPECT_THAT(ExportedSeqs(tail), ElementsAre(8, 9));
}

TEST_F(ExportTest, ExportOfAnEmptyLogFailsClearly) {
  auto lines = ExportLines(*log_, {});
  ASSERT_FALSE(lines.has_value());
  EXPECT_EQ(lines.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(lines.error().message(), HasSubstr("the log has no signed checkpoint yet"));
}

TEST_F(ExportTest, SinkErrorsStopTheExport) {
  Append(0, 5);
  Checkpoint();
  int calls = 0;
  auto status = log_->Export({}, [&](std::string_view) -> Status {
    return ++calls == 3 ? MakeError(ErrorCode::kIo, "disk full") : OkStatus();
  });
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().message(), "disk full");
  EXPECT_EQ(calls, 3);
}

TEST_F(ExportTest, LongExportsSpanManyReadViews) {
  Append(0, 2600);  // more than two pages of 1024 records
  Checkpoint();
  ExportSummary full;
  EXPECT_EQ(ExportedSeqs({}, &full).size(), 2600u);
  EXPECT_TRUE(full.full);
  ExportOptions across;
  across.from_seq = 1000;
  across.to_seq = 2100;
  std::vector<std::uint64_t> seqs = ExportedSeqs(across);
  ASSERT_EQ(seqs.size(), 1100u);
  EXPECT_EQ(seqs.front(), 1000u);
  EXPECT_EQ(seqs.back(), 2099u);
  ExportOptions sparse;
  sparse.key = "release";  // every other record, scanned page by page
  EXPECT_EQ(ExportedSeqs(sparse).size(), 1300u);
}

}  // namespace
}  // namespace signet::audit
