// The audit log against a real LMDB environment and a real SoftHSM audit key: group commit,
// checkpoints, reopening, start-up checks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lmdb.h>

#include <atomic>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "appliance/audit/audit.h"
#include "tests/audit/hsm_note_signer.h"

namespace signet::audit {
namespace {

using testing::AuditKey;
using ::testing::HasSubstr;
using testing::SampleRecord;
using testing::TempDir;
using testing::TestLogOptions;

AuditKey& Key() {
  static AuditKey* key = new AuditKey();
  return *key;
}

std::unique_ptr<Log> OpenOrDie(const LogOptions& options) {
  auto log = Log::Open(options, Key().signer());
  if (!log) {
    ADD_FAILURE() << log.error();
    return nullptr;
  }
  return std::move(*log);
}

void AppendN(Log& log, std::uint64_t from, std::uint64_t n) {
  for (std::uint64_t i = from; i < from + n; ++i) {
    auto r = log.Append({SampleRecord(i)});
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(r->first, i);
  }
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Rewrites one value in a named database of a closed log, as an attacker with disk access would.
void PutRaw(const std::filesystem::path& dir, const char* db, std::string_view key,
            std::string_view value) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 8), 0);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0600), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  ASSERT_EQ(mdb_dbi_open(txn, db, 0, &dbi), 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

std::string SeqKey(std::uint64_t seq) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i) {
    key[i] = static_cast<char>(seq & 0xff);
    seq >>= 8;
  }
  return key;
}

TEST(LogTest, AppendsGetsSequenceNumbersAndReadsBack) {
  TempDir tmp;
  auto log = OpenOrDie(TestLogOptions(tmp.path()));
  ASSERT_TRUE(log);
  std::vector<Record> batch = {SampleRecord(0), SampleRecord(1), SampleRecord(2)};
  auto range = log->Append(batch);
  ASSERT_TRUE(range) << range.error();
  EXPECT_EQ(range->first, 0u);
  EXPECT_EQ(range->count, 3u);
  auto one = log->Append({SampleRecord(3)});
  ASSERT_TRUE(one);
  EXPECT_EQ(one->first, 3u);

  auto got = log->Get(1);
  ASSERT_TRUE(got) << got.error();
  EXPECT_EQ(got->seq, 1u);
  EXPECT_EQ(got->host_id, "test-host");
  EXPECT_GT(got->time_us, 0);
  Record expected = SampleRecord(1);
  expected.seq = got->seq;
  expected.time_us = got->time_us;
  expected.host_id = got->host_id;
  EXPECT_EQ(*got, expected);
  EXPECT_EQ(log->Get(4).error().code(), ErrorCode::kNotFound);

  auto found = log->FindByDigest(testing::SampleDigest(2));
  ASSERT_TRUE(found) << found.error();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].seq, 2u);
  EXPECT_EQ(log->stats().tree_size, 4u);
  EXPECT_TRUE(log->health());
  EXPECT_TRUE(log->Close());
  // Closed: callers learn it before they ask an HSM to sign, and nothing hangs.
  EXPECT_EQ(log->health().error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(log->Append({SampleRecord(4)}).error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(log->CheckpointNow().error().code(), ErrorCode::kUnavailable);
}

// The digest index is written a group at a time, in key order: every record of a digest must be
// found (oldest first), whatever the order of the digests within and across Appends, with
// repeats in one Append and across commits, and with a second algorithm beside sha256.
TEST(LogTest, DigestIndexFindsEveryRecordOfADigest) {
  TempDir tmp;
  auto log = OpenOrDie(TestLogOptions(tmp.path()));
  ASSERT_TRUE(log);
  std::map<std::string, std::vector<std::uint64_t>> expected;  // hex digest -> seqs
  std::uint64_t seq = 0;
  for (int round = 0; round < 3; ++round) {
    std::vector<Record> records;
    for (std::uint64_t i = 0; i < 600; ++i) {
      // Digests 0..199 in a scrambled order, each three times per Append.
      const std::uint64_t d = (i * 7 + round * 13) % 200;
      Record r = SampleRecord(d);
      if (d % 5 == 0) {
        r.digests["sha512"] = testing::SampleDigest(d + 1000) + testing::SampleDigest(d + 2000);
        expected[r.digests["sha512"]].push_back(seq);
      }
      expected[r.digests["sha256"]].push_back(seq);
      records.push_back(std::move(r));
      ++seq;
    }
    auto range = log->Append(records);
    ASSERT_TRUE(range) << range.error();
  }
  ASSERT_EQ(expected.size(), 240u);
  for (const auto& [digest, seqs] : expected) {
    auto found = log->FindByDigest(digest);
    ASSERT_TRUE(found) << found.error();
    std::vector<std::uint64_t> got;
    for (const Record& r : *found) {
      got.push_back(r.seq);
    }
    EXPECT_EQ(got, seqs) << digest;
  }
  EXPECT_TRUE(log->FindByDigest(testing::SampleDigest(999))->empty());
}

// Records made one at a time, in two Records refilled in turn, are stored exactly as given, also
// when fields the records of a request usually share (requester, key, policy) change from one to
// the next (the preparer compares each record with the one before).
TEST(LogTest, RecordsMadeOneAtATimeAreStoredAsGiven) {
  TempDir tmp;
  auto log = OpenOrDie(TestLogOptions(tmp.path()));
  ASSERT_TRUE(log);
  std::vector<Record> expected;
  for (std::uint64_t i = 0; i < 50; ++i) {
    Record r = SampleRecord(i / 4);  // shared fields change every fourth record
    r.artifact_name = "dist/item-" + std::to_string(i);
    r.digests["sha256"] = testing::SampleDigest(100 + i);
    r.signature_sha256 = std::string(64, i % 3 == 0 ? 'e' : 'f');
    expected.push_back(std::move(r));
  }
  Record slots[2];
  std::promise<Result<SeqRange>> committed;
  auto submitted = log->Submit(
      expected.size(),
      [&](std::size_t i) -> Record& {
        slots[i % 2] = expected[i];
        return slots[i % 2];
      },
      [&](Result<SeqRange> r) { committed.set_value(std::move(r)); });
  ASSERT_TRUE(submitted) << submitted.error();
  auto range = committed.get_future().get();
  ASSERT_TRUE(range) << range.error();
  ASSERT_EQ(range->count, expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    auto got = log->Get(range->first + i);
    ASSERT_TRUE(got) << got.error();
    Record want = expected[i];
    want.seq = got->seq;
    want.time_us = got->time_us;
    want.host_id = got->host_id;
    EXPECT_EQ(*got, want) << i;
  }
  EXPECT_EQ(log->Submit(
                   0, [&](std::size_t) -> Record& { return slots[0]; }, [](auto) {})
                .error()
                .code(),
            ErrorCode::kInvalidArgument);
}

TEST(LogTest, RefusesBadRecordsWithoutStopping) {
  TempDir tmp;
  auto log = OpenOrDie(TestLogOptions(tmp.path()));
  ASSERT_TRUE(log);
  EXPECT_EQ(log->Append({}).error().code(), ErrorCode::kInvalidArgument);
  Record bad = SampleRecord(0);
  bad.artifact_name = std::string("a\xff", 2);
  auto refused = log->Append({bad});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(refused.error().message(), HasSubstr("artifact.name"));
  Record huge = SampleRecord(0);
  huge.detail = std::string(70 * 1024, 'x');
  EXPECT_THAT(log->Append({huge}).error().message(), HasSubstr("max_record_bytes"));
  Record not_hex = SampleRecord(0);
  not_hex.digests["sha256"] = "xyz";
  EXPECT_EQ(log->Append({not_hex}).error().code(), ErrorCode::kInvalidArgument);
  // Nothing was stored and the log still works.
  auto ok = log->Append({SampleRecord(0)});
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->first, 0u);
  EXPECT_TRUE(log->health());
}

TEST(LogTest, ManyThreadsShareCommitsAndEverySeqIsUnique) {
  TempDir tmp;
  auto log = OpenOrDie(TestLogOptions(tmp.path()));
  ASSERT_TRUE(log);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 200;
  std::vector<std::vector<std::uint64_t>> seqs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Record r = SampleRecord(static_cast<std::uint64_t>(t * kPerThread + i));
        r.request_id = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto got = log->Append({r});
        if (!got) {
          ADD_FAILURE() << got.error();
          return;
        }
        seqs[t].push_back(got->first);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  std::set<std::uint64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seqs[t].size(), static_cast<std::size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) {
      all.insert(seqs[t][i]);
      auto r = log->Get(seqs[t][i]);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->request_id, "t" + std::to_string(t) + "-" + std::to_string(i));
      if (i > 0) {
        EXPECT_GT(seqs[t][i], seqs[t][i - 1]);  // one thread's records keep their order
      }
    }
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(*all.rbegin(), static_cast<std::uint64_t>(kThreads * kPerThread - 1));
  const LogStats stats = log->stats();
  EXPECT_EQ(stats.records, static_cast<std::uint64_t>(kThreads * kPerThread));
  // Group commit: 16 threads waiting on fsync share commits.
  EXPECT_LT(stats.commits, static_cast<std::uint64_t>(kThreads * kPerThread));
  // Times never decrease along the log.
  std::int64_t last = 0;
  for (std::uint64_t seq = 0; seq < all.size(); ++seq) {
    auto r = log->Get(seq);
    ASSERT_TRUE(r);
    EXPECT_GE(r->time_us, last);
    last = r->time_us;
  }
}

TEST(LogTest, SignsCheckpointsByCountAndTimeAndOnClose) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  options.checkpoint_every = 10;
  options.checkpoint_interval = std::chrono::milliseconds(100);
  auto log = OpenOrDie(options);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->LatestCheckpoint(), "");
  AppendN(*log, 0, 10);
  // Ten records: a checkpoint by count, soon.
  for (int i = 0; i < 200 && log->stats().checkpoint_size < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(log->stats().checkpoint_size, 10u);
  AppendN(*log, 10, 3);
  // Three more: by time, after about 100 ms.
  for (int i = 0; i < 300 && log->stats().checkpoint_size < 13; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(log->stats().checkpoint_size, 13u);
  auto checkpoint = OpenCheckpoint(log->LatestCheckpoint(), Key().verifier());
  ASSERT_TRUE(checkpoint) << checkpoint.error();
  EXPECT_EQ(checkpoint->origin, "signet.test/audit");
  EXPECT_EQ(checkpoint->size, 13u);

  options.checkpoint_interval = std::chrono::hours(1);
  AppendN(*log, 13, 2);
  ASSERT_TRUE(log->Close());
  // The final checkpoint covers everything and is also the last note in the outside file.
  const std::string file = ReadFile(options.checkpoint_file);
  EXPECT_THAT(file, HasSubstr("signet.test/audit\n15\n"));
  auto reopened = OpenOrDie(options);
  ASSERT_TRUE(reopened);
  auto last = OpenCheckpoint(reopened->LatestCheckpoint(), Key().verifier());
  ASSERT_TRUE(last);
  EXPECT_EQ(last->size, 15u);
}

TEST(LogTest, CheckpointNowCoversEveryCommittedRecord) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  options.checkpoint_interval = std::chrono::hours(1);
  auto log = OpenOrDie(options);
  ASSERT_TRUE(log);
  AppendN(*log, 0, 5);
  auto note = log->CheckpointNow();
  ASSERT_TRUE(note) << note.error();
  auto checkpoint = OpenCheckpoint(*note, Key().verifier());
  ASSERT_TRUE(checkpoint);
  EXPECT_EQ(checkpoint->size, 5u);
  // No new records: the same note.
  auto again = log->CheckpointNow();
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *note);
}

TEST(LogTest, ReopensWhereItLeftOffWithoutRehashing) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 300);
    ASSERT_TRUE(log->Close());
  }
  auto log = OpenOrDie(options);
  ASSERT_TRUE(log);
  AppendN(*log, 300, 5);
  ASSERT_TRUE(log->Close());
  auto reopened = OpenOrDie(options);
  ASSERT_TRUE(reopened);
  auto checkpoint = OpenCheckpoint(reopened->LatestCheckpoint(), Key().verifier());
  ASSERT_TRUE(checkpoint);
  EXPECT_EQ(checkpoint->size, 305u);
  // The checkpoint's root is the RFC 6962 root of the stored records' bytes.
  std::vector<pipeline::MerkleHash> leaves;
  for (std::uint64_t seq = 0; seq < 305; ++seq) {
    auto r = reopened->Get(seq);
    ASSERT_TRUE(r);
    auto bytes = SerializeRecord(*r);
    ASSERT_TRUE(bytes);
    leaves.push_back(pipeline::LeafHash(AsBytes(*bytes)));
  }
  EXPECT_EQ(pipeline::TreeHash(leaves), checkpoint->root);
}

TEST(LogTest, OpenRefusesARolledBackDirectory) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  const auto copy = tmp.path() / "old-copy";
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 20);
    ASSERT_TRUE(log->Close());
  }
  std::filesystem::copy(options.dir, copy);
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 20, 10);
    ASSERT_TRUE(log->Close());
  }
  std::filesystem::remove_all(options.dir);
  std::filesystem::copy(copy, options.dir);
  auto refused = Log::Open(options, Key().signer());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInternal);
  EXPECT_THAT(refused.error().message(), HasSubstr("rollback"));
  EXPECT_THAT(refused.error().message(), HasSubstr("holds 20 records"));
  EXPECT_THAT(refused.error().message(), HasSubstr("size 30"));
}

TEST(LogTest, OpenRefusesATamperedTail) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 20);
    ASSERT_TRUE(log->Close());
  }
  Record changed = SampleRecord(19);
  auto original = Log::Open(options, Key().signer());
  ASSERT_TRUE(original);
  auto stored = (*original)->Get(19);
  ASSERT_TRUE(stored);
  ASSERT_TRUE((*original)->Close());
  original->reset();
  changed = *stored;
  changed.requester.user = "mallory";
  auto bytes = SerializeRecord(changed);
  ASSERT_TRUE(bytes);
  PutRaw(options.dir, "records", SeqKey(19), *bytes);
  auto refused = Log::Open(options, Key().signer());
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("tampered: audit record 19"));
}

// Open does not re-hash old records (that is what keeps it fast on a large log), so a record
// changed deep inside LMDB is found by the next export's offline verification instead.
TEST(LogTest, ARecordChangedDeepInTheLogFailsVerificationOfTheExport) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 400);
    ASSERT_TRUE(log->Close());
  }
  Record changed;
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    auto stored = log->Get(5);
    ASSERT_TRUE(stored);
    changed = *stored;
    ASSERT_TRUE(log->Close());
  }
  changed.artifact_name = "dist/innocent.tar.gz";
  auto bytes = SerializeRecord(changed);
  ASSERT_TRUE(bytes);
  PutRaw(options.dir, "records", SeqKey(5), *bytes);

  auto log = OpenOrDie(options);
  ASSERT_TRUE(log);
  for (const bool full : {true, false}) {
    ExportOptions export_options;
    if (!full) {
      export_options.to_seq = 10;
    }
    std::stringstream exported;
    ASSERT_TRUE(log->Export(export_options, [&](std::string_view line) {
      exported << line;
      return OkStatus();
    }));
    auto verified = VerifyExport(exported, Key().verifier());
    ASSERT_FALSE(verified) << (full ? "full" : "range") << " export verified";
    EXPECT_EQ(verified.error().code(), ErrorCode::kCrypto);
    if (!full) {
      EXPECT_THAT(verified.error().message(), HasSubstr("seq 5"));
    }
  }
}

TEST(LogTest, OpenRefusesAReplacedCheckpoint) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  Checkpoint latest;
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 6);
    ASSERT_TRUE(log->Close());
    auto opened = OpenCheckpoint(log->LatestCheckpoint(), Key().verifier());
    ASSERT_TRUE(opened);
    latest = *opened;
  }
  // A checkpoint for a different root, signed by a key of the attacker's under the same name.
  AuditKey forger;
  Checkpoint forged = latest;
  forged.root[0] ^= 1;
  auto note = SignNote(CheckpointText(forged), *forger.signer());
  ASSERT_TRUE(note);
  PutRaw(options.dir, "checkpoints", SeqKey(latest.size), *note);
  auto refused = Log::Open(options, Key().signer());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(refused.error().message(), HasSubstr("the latest checkpoint in"));
}

TEST(LogTest, OpenRefusesANodeThatNoLongerGivesTheSignedRoot) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 8);
    ASSERT_TRUE(log->Close());
  }
  // Node (level 3, index 0) — the root of the 8 leaves — has key last leaf 7, level 3.
  std::string key = SeqKey(7);
  key.push_back('\x03');
  PutRaw(options.dir, "nodes", key, std::string(32, 'x'));
  auto refused = Log::Open(options, Key().signer());
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("tampered"));
}

TEST(LogTest, OpenRefusesAMissingCheckpointFileAndAWrongKeyOrOrigin) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 3);
    ASSERT_TRUE(log->CheckpointNow());
    AppendN(*log, 3, 5);
    ASSERT_TRUE(log->Close());  // a second checkpoint, at size 5
  }
  {
    LogOptions other = options;
    other.origin = "signet.test/other";
    auto refused = Log::Open(other, Key().signer());
    ASSERT_FALSE(refused);
    EXPECT_THAT(refused.error().message(), HasSubstr("origin"));
  }
  {
    AuditKey other_key(hsm::KeyType::kEcdsaP256);
    auto refused = Log::Open(options, other_key.signer());
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), ErrorCode::kNotFound);
  }
  std::filesystem::remove(options.checkpoint_file);
  auto refused = Log::Open(options, Key().signer());
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(),
              HasSubstr("is missing or empty but the audit log has 2 signed checkpoints"));
}

// SIGKILL between the first checkpoint's LMDB commit and its append to the file leaves an empty
// file beside one stored checkpoint: the log opens and writes that checkpoint to the file.
TEST(LogTest, AnEmptyCheckpointFileBesideTheOnlyCheckpointIsRepaired) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  std::string note;
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 3);
    ASSERT_TRUE(log->Close());
    note = log->LatestCheckpoint();
  }
  ASSERT_FALSE(note.empty());
  std::filesystem::resize_file(options.checkpoint_file, 0);
  auto log = Log::Open(options, Key().signer());
  ASSERT_TRUE(log) << log.error();
  EXPECT_EQ(ReadFile(options.checkpoint_file), note + "\n");
  ASSERT_TRUE((*log)->Close());
}

TEST(LogTest, OptionsAreChecked) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  options.checkpoint_file = options.dir / "checkpoints";
  EXPECT_THAT(Log::Open(options, Key().signer()).error().message(), HasSubstr("outside"));
  options = TestLogOptions(tmp.path());
  EXPECT_EQ(Log::Open(options, nullptr).error().code(), ErrorCode::kInvalidArgument);
  options.max_map_size = options.map_size - 1;
  EXPECT_THAT(Log::Open(options, Key().signer()).error().message(), HasSubstr("max_map_size"));
}

TEST(LogTest, ATornCheckpointFileAppendIsCutAndTheLogOpens) {
  TempDir tmp;
  LogOptions options = TestLogOptions(tmp.path());
  {
    auto log = OpenOrDie(options);
    ASSERT_TRUE(log);
    AppendN(*log, 0, 3);
    ASSERT_TRUE(log->Close());
  }
  const std::string before = ReadFile(options.checkpoint_file);
  {
    std::ofstream out(options.checkpoint_file, std::ios::app | std::ios::binary);
    out << "signet.test/audit\n4\nAAAA";
  }
  auto log = OpenOrDie(options);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->Close());
  EXPECT_THAT(ReadFile(options.checkpoint_file), ::testing::StartsWith(before));
  // Foreign bytes at the end are not cut: the path is probably wrong.
  {
    std::ofstream out(options.checkpoint_file, std::ios::app | std::ios::binary);
    out << "root:x:0:0:root:/root:/bin/bash\n";
  }
  EXPECT_THAT(Log::Open(options, Key().signer()).error().message(),
              HasSubstr("is checkpoint_file the right file"));
}

}  // namespace
}  // namespace signet::audit
