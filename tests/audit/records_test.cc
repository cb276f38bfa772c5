// Log::Records and Log::ConsistencyProof against a real LMDB log and a real SoftHSM audit key:
// pages and their continuation, each filter (the export's), the bound on records scanned per call,
// records no checkpoint covers yet, and consistency proofs checked with pipeline's verifier.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "pipeline/pipeline.h"
#include "tests/audit/hsm_note_signer.h"

namespace signet::audit {

testing::AuditKey& ExportTestKey();  // export_test.cc

namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::SampleDigest;
using testing::SampleRecord;

std::vector<std::uint64_t> Where(std::uint64_t n, const std::function<bool(std::uint64_t)>& keep) {
  std::vector<std::uint64_t> seqs;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (keep(i)) {
      seqs.push_back(i);
    }
  }
  return seqs;
}

class RecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_ = testing::TestLogOptions(dir_.path());
    options_.checkpoint_every = 1'000'000;
    options_.checkpoint_interval = std::chrono::hours(1);
    auto log = Log::Open(options_, ExportTestKey().signer());
    ASSERT_TRUE(log.has_value()) << log.error();
    log_ = std::move(*log);
  }

  // Appends SampleRecord(i) for i in [from, from + n) in commits of up to `per_commit`.
  void Append(std::uint64_t from, std::uint64_t n, std::uint64_t per_commit = 500) {
    for (std::uint64_t start = from; start < from + n; start += per_commit) {
      std::vector<Record> records;
      for (std::uint64_t i = start; i < std::min(from + n, start + per_commit); ++i) {
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

  // Every page of `filter` (`limit` each), following next_seq; the seqs, each record checked.
  std::vector<std::uint64_t> AllSeqs(ExportOptions filter, std::size_t limit,
                                     int* pages_out = nullptr) {
    std::vector<std::uint64_t> seqs;
    int pages = 0;
    for (;;) {
      auto page = log_->Records(filter, limit);
      EXPECT_TRUE(page.has_value()) << page.error();
      if (!page) {
        break;
      }
      ++pages;
      EXPECT_LE(page->records.size(), limit);
      for (const StoredRecord& stored : page->records) {
        auto record = ParseRecord(stored.bytes);
        EXPECT_TRUE(record.has_value()) << record.error();
        if (record) {
          EXPECT_EQ(record->seq, stored.seq);
          EXPECT_EQ(SerializeRecord(*record).value_or(""), stored.bytes);
        }
        EXPECT_TRUE(seqs.empty() || seqs.back() < stored.seq);
        seqs.push_back(stored.seq);
      }
      if (!page->next_seq) {
        break;
      }
      EXPECT_GE(*page->next_seq, filter.from_seq);
      filter.from_seq = *page->next_seq;
      if (pages > 10000) {
        ADD_FAILURE() << "next_seq does not end";
        break;
      }
    }
    if (pages_out != nullptr) {
      *pages_out = pages;
    }
    return seqs;
  }

  testing::TempDir dir_;
  LogOptions options_;
  std::unique_ptr<Log> log_;
};

TEST_F(RecordsTest, PagesFollowNextSeqToTheEnd) {
  Append(0, 50);
  auto first = log_->Records({}, 20);
  ASSERT_TRUE(first.has_value()) << first.error();
  ASSERT_EQ(first->records.size(), 20u);
  EXPECT_EQ(first->records.front().seq, 0u);
  EXPECT_EQ(first->records.back().seq, 19u);
  EXPECT_EQ(first->next_seq, 20u);
  auto stored = log_->Get(7);
  ASSERT_TRUE(stored.has_value()) << stored.error();
  EXPECT_EQ(first->records[7].bytes, SerializeRecord(*stored).value());

  ExportOptions rest;
  rest.from_seq = 40;
  auto last = log_->Records(rest, 20);
  ASSERT_TRUE(last.has_value()) << last.error();
  ASSERT_EQ(last->records.size(), 10u);
  EXPECT_EQ(last->next_seq, std::nullopt);

  int pages = 0;
  EXPECT_THAT(AllSeqs({}, 20, &pages), ElementsAreArray(Where(50, [](auto) { return true; })));
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(AllSeqs({}, 50), ElementsAreArray(Where(50, [](auto) { return true; })));
}

TEST_F(RecordsTest, CoversRecordsNoCheckpointSignedYet) {
  Append(0, 30);
  Checkpoint();
  Append(30, 20);
  EXPECT_EQ(AllSeqs({}, 1000).size(), 50u);
  // The export stops at the checkpoint; record pages do not.
  std::size_t exported = 0;
  ASSERT_TRUE(log_->Export({},
                           [&](std::string_view line) -> Status {
                             exported += line.starts_with(R"({"index":)") ? 1 : 0;
                             return OkStatus();
                           })
                  .has_value());
  EXPECT_EQ(exported, 30u);
}

TEST_F(RecordsTest, EachFilterSelectsWhatTheExportWould) {
  Append(0, 120);
  ExportOptions key;
  key.key = "release";
  EXPECT_THAT(AllSeqs(key, 7), ElementsAreArray(Where(120, [](auto i) { return i % 2 == 1; })));
  key.key = std::string(64, 'A');  // a fingerprint, any case
  EXPECT_THAT(AllSeqs(key, 100), ElementsAreArray(Where(120, [](auto i) { return i % 2 == 0; })));

  ExportOptions identity;
  identity.identity = "bob";
  EXPECT_THAT(AllSeqs(identity, 9),
              ElementsAreArray(Where(120, [](auto i) { return i % 3 == 1; })));
  identity.identity = "uid:1002";
  EXPECT_THAT(AllSeqs(identity, 9),
              ElementsAreArray(Where(120, [](auto i) { return i % 3 == 2; })));

  ExportOptions digest;
  digest.digest = SampleDigest(77);
  EXPECT_THAT(AllSeqs(digest, 5), ElementsAreArray({77u}));
  std::ranges::transform(digest.digest, digest.digest.begin(), ::toupper);
  EXPECT_THAT(AllSeqs(digest, 5), ElementsAreArray({77u}));
  digest.digest = std::string(64, '0');
  EXPECT_TRUE(AllSeqs(digest, 5).empty());

  ExportOptions range;
  range.from_seq = 10;
  range.to_seq = 31;
  range.key = "default";
  range.identity = "alice";
  EXPECT_THAT(AllSeqs(range, 2), ElementsAreArray(Where(120, [](auto i) {
                return i >= 10 && i < 31 && i % 2 == 0 && i % 3 == 0;
              })));
}

TEST_F(RecordsTest, DigestFilterUsesTheIndexAndContinues) {
  // The same artifact signed five times among others.
  for (std::uint64_t round = 0; round < 5; ++round) {
    std::vector<Record> records;
    for (std::uint64_t i = 0; i < 40; ++i) {
      records.push_back(SampleRecord(i == 3 ? 1000 : round * 40 + i));
    }
    ASSERT_TRUE(log_->Append(std::move(records)).has_value());
  }
  ExportOptions digest;
  digest.digest = SampleDigest(1000);
  auto page = log_->Records(digest, 2);
  ASSERT_TRUE(page.has_value()) << page.error();
  ASSERT_EQ(page->records.size(), 2u);
  EXPECT_EQ(page->records[0].seq, 3u);
  EXPECT_EQ(page->records[1].seq, 43u);
  EXPECT_EQ(page->next_seq, 83u);  // exactly the next match: the index knows it
  EXPECT_THAT(AllSeqs(digest, 2), ElementsAreArray({3u, 43u, 83u, 123u, 163u}));
  digest.to_seq = 100;
  EXPECT_THAT(AllSeqs(digest, 2), ElementsAreArray({3u, 43u, 83u}));
}

TEST_F(RecordsTest, TimeBoundsAreHalfOpen) {
  Append(0, 40, /*per_commit=*/4);  // ten commits, ten distinct times at least
  std::vector<std::int64_t> times;
  for (std::uint64_t seq = 0; seq < 40; ++seq) {
    auto record = log_->Get(seq);
    ASSERT_TRUE(record.has_value()) << record.error();
    times.push_back(record->time_us);
  }
  ExportOptions window;
  window.from_time_us = times[8];
  window.to_time_us = times[28];
  const auto expected = Where(40, [&](auto i) {
    return times[i] >= *window.from_time_us && times[i] < *window.to_time_us;
  });
  ASSERT_FALSE(expected.empty());
  EXPECT_THAT(AllSeqs(window, 3), ElementsAreArray(expected));
  window.identity = "carol";
  EXPECT_THAT(AllSeqs(window, 3), ElementsAreArray(Where(40, [&](auto i) {
                return i % 3 == 2 && times[i] >= *window.from_time_us &&
                       times[i] < *window.to_time_us;
              })));
}

TEST_F(RecordsTest, AFilterThatMatchesNothingStopsAfterTheScanBound) {
  Append(0, 100'005, /*per_commit=*/8192);
  ExportOptions nobody;
  nobody.identity = "mallory";
  auto page = log_->Records(nobody, 10);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_TRUE(page->records.empty());
  EXPECT_EQ(page->next_seq, 100'000u);
  nobody.from_seq = *page->next_seq;
  page = log_->Records(nobody, 10);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_TRUE(page->records.empty());
  EXPECT_EQ(page->next_seq, std::nullopt);
}

TEST_F(RecordsTest, RefusesBadLimitsAndFilters) {
  Append(0, 3);
  auto expect_invalid = [&](const ExportOptions& filter, std::size_t limit,
                            std::string_view message) {
    auto page = log_->Records(filter, limit);
    ASSERT_FALSE(page.has_value());
    EXPECT_EQ(page.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(page.error().message(), HasSubstr(message));
  };
  expect_invalid({}, 0, "limit 0");
  expect_invalid({}, kMaxRecordsLimit + 1, "limit");
  ExportOptions backwards;
  backwards.from_seq = 5;
  backwards.to_seq = 4;
  expect_invalid(backwards, 10, "from_seq 5 is past to_seq 4");
  ExportOptions times;
  times.from_time_us = 10;
  times.to_time_us = 9;
  expect_invalid(times, 10, "from_time_us");
  ExportOptions not_hex;
  not_hex.digest = "xyz";
  expect_invalid(not_hex, 10, "digest");
  ExportOptions odd_length;
  odd_length.digest = "abcd";
  expect_invalid(odd_length, 10, "fit no digest algorithm");
  ExportOptions proofs;
  proofs.consistency_from = {1};
  expect_invalid(proofs, 10, "consistency_from");
  // Past the end is an empty last page, not an error.
  ExportOptions past;
  past.from_seq = 1000;
  auto page = log_->Records(past, 10);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_TRUE(page->records.empty());
  EXPECT_EQ(page->next_seq, std::nullopt);
}

TEST_F(RecordsTest, ConsistencyProofsVerify) {
  auto none = log_->ConsistencyProof(1, 1);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), ErrorCode::kUnavailable);

  Append(0, 37);
  Checkpoint();
  Append(37, 5);  // committed, not signed
  auto opened = OpenCheckpoint(log_->LatestCheckpoint(), ExportTestKey().verifier());
  ASSERT_TRUE(opened.has_value()) << opened.error();
  ASSERT_EQ(opened->size, 37u);

  auto page = log_->Records({}, 100);
  ASSERT_TRUE(page.has_value()) << page.error();
  std::vector<pipeline::MerkleHash> leaves;
  for (const StoredRecord& stored : page->records) {
    leaves.push_back(pipeline::LeafHash(std::span(
        reinterpret_cast<const std::uint8_t*>(stored.bytes.data()), stored.bytes.size())));
  }
  auto root_of = [&](std::uint64_t size) {
    return pipeline::TreeHash(std::span(leaves).first(size));
  };
  ASSERT_EQ(root_of(37), opened->root);
  for (std::uint64_t from = 1; from <= 37; ++from) {
    for (std::uint64_t to : {from, std::uint64_t{37}, std::min<std::uint64_t>(37, from + 3)}) {
      auto proof = log_->ConsistencyProof(from, to);
      ASSERT_TRUE(proof.has_value()) << from << "→" << to << ": " << proof.error();
      EXPECT_TRUE(
          pipeline::VerifyConsistency(from, to, root_of(from), root_of(to), *proof).has_value())
          << from << "→" << to;
      if (from < to) {
        // A proof for other roots fails.
        EXPECT_FALSE(
            pipeline::VerifyConsistency(from, to, root_of(to), root_of(to), *proof).has_value())
            << from << "→" << to;
      }
    }
  }

  for (auto [from, to, message] :
       {std::tuple{0, 5, "at least 1"}, std::tuple{6, 5, "past to 5"},
        std::tuple{5, 38, "past the latest signed checkpoint (size 37)"}}) {
    auto proof = log_->ConsistencyProof(from, to);
    ASSERT_FALSE(proof.has_value()) << from << "→" << to;
    EXPECT_EQ(proof.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(proof.error().message(), HasSubstr(message));
  }
}

TEST_F(RecordsTest, RecordsInDirectoryReadsAClosedLog) {
  Append(0, 25);
  ASSERT_TRUE(log_->Close().has_value());
  log_.reset();
  ExportOptions digest;
  digest.digest = SampleDigest(11);
  auto page = RecordsInDirectory(options_.dir, digest, 10);
  ASSERT_TRUE(page.has_value()) << page.error();
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0].seq, 11u);
  auto missing = RecordsInDirectory(dir_.path() / "nothing-here", {}, 10);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace signet::audit
