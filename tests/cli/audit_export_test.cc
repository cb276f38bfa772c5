// `signet audit export`: the real binary on a real audit log (LMDB, SoftHSM audit key) that this
// process keeps open, and appends to, as signetd would. Exports are checked with the real
// `signet audit verify`, with audit::VerifyExport, and against Log::Export in process.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "appliance/audit/audit.h"
#include "run_util.h"
#include "tests/audit/hsm_note_signer.h"

namespace signet::cli::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

audit::testing::AuditKey& Key() {
  static auto* key = new audit::testing::AuditKey();
  return *key;
}

// The lines of an export, parsed.
std::vector<nlohmann::json> Lines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

// The sequence numbers of an export's record lines, in order.
std::vector<std::uint64_t> Seqs(const std::string& text) {
  std::vector<std::uint64_t> seqs;
  for (const nlohmann::json& line : Lines(text)) {
    if (line["type"] == "record") {
      seqs.push_back(line["index"].get<std::uint64_t>());
    }
  }
  return seqs;
}

std::vector<std::uint64_t> SeqsWhere(std::uint64_t n, const std::function<bool(std::uint64_t)>& p) {
  std::vector<std::uint64_t> seqs;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (p(i)) {
      seqs.push_back(i);
    }
  }
  return seqs;
}

nlohmann::json Header(const std::string& text) { return Lines(text).at(0); }

// `us` (µs since the epoch, positive) as RFC 3339 with six fractional digits, then `more_digits`,
// in the zone `offset_minutes` east of UTC ("Z" for 0).
std::string Rfc3339(std::int64_t us, int offset_minutes = 0, std::string_view more_digits = "") {
  const std::int64_t local = us + std::int64_t{offset_minutes} * 60'000'000;
  const time_t seconds = static_cast<time_t>(local / 1'000'000);
  tm parts{};
  gmtime_r(&seconds, &parts);
  const int minutes = std::abs(offset_minutes);
  const std::string zone = offset_minutes == 0
                               ? "Z"
                               : fmt::format("{}{:02}:{:02}", offset_minutes < 0 ? '-' : '+',
                                             minutes / 60, minutes % 60);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}{}{}", parts.tm_year + 1900,
                     parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec,
                     local % 1'000'000, more_digits, zone);
}

class AuditExportTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    std::filesystem::create_directory(dir() / "audit");
    options_ = audit::testing::TestLogOptions(dir() / "audit");
    options_.checkpoint_every = 1'000'000;  // checkpoints only when the test asks
    options_.checkpoint_interval = std::chrono::hours(1);
    auto log = audit::Log::Open(options_, Key().signer());
    ASSERT_TRUE(log.has_value()) << log.error();
    log_ = std::move(*log);
    Make("audit.pub.pem", Key().public_key().pem);
  }
  void TearDown() override {
    log_.reset();
    CliTest::TearDown();
  }

  // Appends records [from, from + n): in one commit, or in one commit each, a few ms apart (so
  // that their times differ).
  void Append(std::uint64_t from, std::uint64_t n, bool apart = false) {
    std::vector<audit::Record> records;
    for (std::uint64_t i = from; i < from + n; ++i) {
      records.push_back(audit::testing::SampleRecord(i));
      if (apart) {
        auto appended = log_->Append(std::move(records));
        ASSERT_TRUE(appended.has_value()) << appended.error();
        records.clear();
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
      }
    }
    if (!records.empty()) {
      auto appended = log_->Append(std::move(records));
      ASSERT_TRUE(appended.has_value()) << appended.error();
    }
  }
  // Appends records [from, from + n) and signs a checkpoint over them.
  void Grow(std::uint64_t from, std::uint64_t n, bool apart = false) {
    Append(from, n, apart);
    auto note = log_->CheckpointNow();
    ASSERT_TRUE(note.has_value()) << note.error();
  }

  std::string LogDir() const { return options_.dir.string(); }
  // Runs `signet audit export --log LOG ARGS...`.
  ProcessResult Export(const std::vector<std::string>& args, RunOptions options = {}) const {
    std::vector<std::string> all{"audit", "export", "--log", LogDir()};
    all.insert(all.end(), args.begin(), args.end());
    return Signet(all, std::move(options));
  }
  // The export `options` select, made in process.
  std::string InProcess(const audit::ExportOptions& options = {}) const {
    std::string text;
    auto exported = log_->Export(options, [&](std::string_view line) -> Status {
      text += line;
      return OkStatus();
    });
    EXPECT_TRUE(exported.has_value()) << exported.error();
    return text;
  }
  // Verifies an export in process.
  static audit::ExportSummary Verified(const std::string& text) {
    std::istringstream in(text);
    auto summary = audit::VerifyExport(in, Key().verifier());
    EXPECT_TRUE(summary.has_value()) << summary.error();
    return summary.value_or(audit::ExportSummary{});
  }
  // Files in dir() whose names contain `part`.
  std::vector<std::string> FilesWith(std::string_view part) const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir())) {
      if (entry.path().filename().string().find(part) != std::string::npos) {
        names.push_back(entry.path().filename().string());
      }
    }
    return names;
  }

  audit::LogOptions options_;
  std::unique_ptr<audit::Log> log_;
};

TEST_F(AuditExportTest, FullExportOfAnOpenLogVerifies) {
  Grow(0, 12);
  ProcessResult exported = Export({});
  ASSERT_EQ(exported.exit_code, 0) << exported;
  EXPECT_EQ(exported.out, InProcess());
  EXPECT_EQ(exported.err,
            "signet: exported 12 records (seq 0..11) against checkpoint of size 12 to standard "
            "output\n");

  audit::ExportSummary summary = Verified(exported.out);
  EXPECT_TRUE(summary.full);
  EXPECT_EQ(summary.records, 12u);
  EXPECT_EQ(summary.checkpoint.size, 12u);

  Make("full.jsonl", exported.out);
  ProcessResult verified = Signet({"audit", "verify", "full.jsonl", "--key-file", "audit.pub.pem"});
  EXPECT_EQ(verified.exit_code, 0) << verified;
  EXPECT_THAT(verified.out, HasSubstr("full.jsonl: full log: root recomputed from 12 records: ok"));

  // The log, open all along, carries on; the next export sees the new checkpoint.
  Grow(12, 3);
  ProcessResult again = Export({"--quiet"});
  ASSERT_EQ(again.exit_code, 0) << again;
  EXPECT_EQ(again.err, "");
  EXPECT_EQ(Verified(again.out).records, 15u);
}

TEST_F(AuditExportTest, RecordsAfterTheLatestCheckpointAreLeftOut) {
  Grow(0, 5);
  Append(5, 3);  // committed, not yet under a signed checkpoint
  ProcessResult exported = Export({});
  ASSERT_EQ(exported.exit_code, 0) << exported;
  EXPECT_THAT(Seqs(exported.out), ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(exported.err,
              HasSubstr("exported 5 records (seq 0..4) against checkpoint of size 5"));
  audit::ExportSummary summary = Verified(exported.out);
  EXPECT_TRUE(summary.full);
  EXPECT_EQ(summary.checkpoint.size, 5u);

  // Even a range reaching past them stops at the checkpoint.
  ProcessResult range = Export({"--from-seq", "3", "--to-seq", "100"});
  ASSERT_EQ(range.exit_code, 0) << range;
  EXPECT_THAT(Seqs(range.out), ElementsAre(3, 4));
}

TEST_F(AuditExportTest, SequenceRangesAreHalfOpen) {
  Grow(0, 20);
  ProcessResult range = Export({"--from-seq", "4", "--to-seq", "9"});
  ASSERT_EQ(range.exit_code, 0) << range;
  EXPECT_THAT(Seqs(range.out), ElementsAre(4, 5, 6, 7, 8));
  audit::ExportOptions options;
  options.from_seq = 4;
  options.to_seq = 9;
  EXPECT_EQ(range.out, InProcess(options));
  EXPECT_THAT(range.err, HasSubstr("exported 5 records (seq 4..8) against checkpoint of size 20"));
  Make("range.jsonl", range.out);
  ProcessResult verified =
      Signet({"audit", "verify", "range.jsonl", "--key-file", "audit.pub.pem"});
  EXPECT_EQ(verified.exit_code, 0) << verified;
  EXPECT_THAT(verified.out, HasSubstr("records: 5 verified (seq 4..8), inclusion proofs: ok"));

  EXPECT_THAT(Seqs(Export({"--from-seq", "17"}).out), ElementsAre(17, 18, 19));
  EXPECT_THAT(Seqs(Export({"--to-seq", "3"}).out), ElementsAre(0, 1, 2));
  EXPECT_THAT(Seqs(Export({"--from-seq", "18", "--to-seq", "19"}).out), ElementsAre(18));

  ProcessResult none = Export({"--from-seq", "7", "--to-seq", "7"});
  ASSERT_EQ(none.exit_code, 0) << none;
  EXPECT_THAT(Seqs(none.out), IsEmpty());
  EXPECT_EQ(none.err,
            "signet: exported 0 records against checkpoint of size 20 to standard output\n");
  EXPECT_EQ(Verified(none.out).records, 0u);
}

TEST_F(AuditExportTest, FiltersSelectExactlyTheMatchingRecords) {
  constexpr std::uint64_t kN = 20;
  Grow(0, kN);
  struct Case {
    std::vector<std::string> args;
    std::function<bool(std::uint64_t)> matches;
  };
  const std::string upper_digest = [] {
    std::string hex = audit::testing::SampleDigest(7);
    for (char& c : hex) {
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return hex;
  }();
  // SampleRecord(i): key "default" (fingerprint aa...) for even i, "release" (bb...) for odd i;
  // user alice/bob/carol with uid 1000/1001/1002 for i % 3 == 0/1/2.
  const std::vector<Case> cases = {
      {{"--digest", audit::testing::SampleDigest(7)}, [](auto i) { return i == 7; }},
      {{"--digest", upper_digest}, [](auto i) { return i == 7; }},
      {{"--digest", audit::testing::SampleDigest(7), "--from-seq", "8"},
       [](auto) { return false; }},
      {{"--key", "release"}, [](auto i) { return i % 2 == 1; }},
      {{"--key", std::string(64, 'a')}, [](auto i) { return i % 2 == 0; }},
      {{"--key", std::string(64, 'B')}, [](auto i) { return i % 2 == 1; }},
      {{"--key", "nobody"}, [](auto) { return false; }},
      {{"--identity", "bob"}, [](auto i) { return i % 3 == 1; }},
      {{"--identity", "user:alice"}, [](auto i) { return i % 3 == 0; }},
      {{"--identity", "uid:1002"}, [](auto i) { return i % 3 == 2; }},
      {{"--key", "default", "--identity", "alice"}, [](auto i) { return i % 6 == 0; }},
      {{"--identity", "carol", "--from-seq", "5", "--to-seq", "15"},
       [](auto i) { return i % 3 == 2 && i >= 5 && i < 15; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{}", fmt::join(c.args, " ")));
    ProcessResult exported = Export(c.args);
    ASSERT_EQ(exported.exit_code, 0) << exported;
    const std::vector<std::uint64_t> expected = SeqsWhere(kN, c.matches);
    EXPECT_EQ(Seqs(exported.out), expected);
    audit::ExportSummary summary = Verified(exported.out);
    EXPECT_FALSE(summary.full);
    EXPECT_EQ(summary.records, expected.size());
    EXPECT_THAT(exported.err, HasSubstr(fmt::format("exported {} record", expected.size())));
  }
  // The filters are in the header, as given.
  nlohmann::json header = Header(Export({"--key", "release", "--identity", "uid:1001"}).out);
  EXPECT_EQ(header["filters"]["key"], "release");
  EXPECT_EQ(header["filters"]["identity"], "uid:1001");
}

TEST_F(AuditExportTest, TimeBoundsAreHalfOpenInEveryAcceptedForm) {
  constexpr std::uint64_t kN = 12;
  Grow(0, kN, /*apart=*/true);
  std::vector<std::int64_t> times;
  for (std::uint64_t i = 0; i < kN; ++i) {
    auto record = log_->Get(i);
    ASSERT_TRUE(record.has_value()) << record.error();
    times.push_back(record->time_us);
    if (i > 0) {
      ASSERT_LT(times[i - 1], times[i]) << "records committed apart should have distinct times";
    }
  }

  ProcessResult utc = Export({"--since", Rfc3339(times[3]), "--until", Rfc3339(times[8])});
  ASSERT_EQ(utc.exit_code, 0) << utc;
  EXPECT_THAT(Seqs(utc.out), ElementsAre(3, 4, 5, 6, 7));
  EXPECT_EQ(Header(utc.out)["filters"]["from_time_us"], times[3]);
  EXPECT_EQ(Header(utc.out)["filters"]["to_time_us"], times[8]);
  EXPECT_EQ(Verified(utc.out).records, 5u);

  // The same instants with offsets east and west of UTC give the same export.
  ProcessResult offsets =
      Export({"--since", Rfc3339(times[3], 60), "--until", Rfc3339(times[8], -(9 * 60 + 30))});
  ASSERT_EQ(offsets.exit_code, 0) << offsets;
  EXPECT_EQ(offsets.out, utc.out);

  // Lower-case 't' and 'z' are RFC 3339 too.
  std::string lower = Rfc3339(times[3]);
  lower[10] = 't';
  lower.back() = 'z';
  EXPECT_THAT(Seqs(Export({"--since", lower}).out), ElementsAre(3, 4, 5, 6, 7, 8, 9, 10, 11));

  // Finer than a µs: 1 ns after record 3's time excludes it; 1 ns before includes it.
  EXPECT_THAT(Seqs(Export({"--since", Rfc3339(times[3], 0, "001")}).out),
              ElementsAre(4, 5, 6, 7, 8, 9, 10, 11));
  EXPECT_THAT(Seqs(Export({"--since", Rfc3339(times[3] - 1, 0, "999")}).out),
              ElementsAre(3, 4, 5, 6, 7, 8, 9, 10, 11));
  EXPECT_THAT(Seqs(Export({"--until", Rfc3339(times[3], 0, "001")}).out), ElementsAre(0, 1, 2, 3));

  // @SECONDS: whole Unix seconds.
  const std::int64_t since_s = times[2] / 1'000'000;
  const std::int64_t until_s = times[9] / 1'000'000 + 1;
  ProcessResult unix_time =
      Export({"--since", fmt::format("@{}", since_s), "--until", fmt::format("@{}", until_s)});
  ASSERT_EQ(unix_time.exit_code, 0) << unix_time;
  EXPECT_EQ(Seqs(unix_time.out), SeqsWhere(kN, [&](std::uint64_t i) {
              return times[i] >= since_s * 1'000'000 && times[i] < until_s * 1'000'000;
            }));

  // Bounds that hold no record, and bounds combined with a sequence range.
  EXPECT_THAT(Seqs(Export({"--since", Rfc3339(times[4]), "--until", Rfc3339(times[4])}).out),
              IsEmpty());
  EXPECT_THAT(Seqs(Export({"--since", "@1", "--until", "@2"}).out), IsEmpty());
  EXPECT_THAT(Seqs(Export({"--since", Rfc3339(times[2]), "--to-seq", "5"}).out),
              ElementsAre(2, 3, 4));
}

TEST_F(AuditExportTest, ConsistencyWithAnOlderExport) {
  Grow(0, 10);
  ProcessResult older = Export({"-o", "old.jsonl"});
  ASSERT_EQ(older.exit_code, 0) << older;
  EXPECT_THAT(older.err, HasSubstr("against checkpoint of size 10 to old.jsonl"));
  Grow(10, 7);
  ProcessResult newer = Export({"--from-seq", "15", "--consistency-from", "10", "-o", "new.jsonl"});
  ASSERT_EQ(newer.exit_code, 0) << newer;

  ProcessResult verified =
      Signet({"audit", "verify", "old.jsonl", "new.jsonl", "--key-file", "audit.pub.pem"});
  EXPECT_EQ(verified.exit_code, 0) << verified;
  EXPECT_THAT(verified.out, HasSubstr("consistency old.jsonl (size 10) → new.jsonl (size 17): ok"));

  // Repeatable; without the proof the pair cannot be checked.
  ProcessResult two =
      Export({"--from-seq", "16", "--consistency-from", "3", "--consistency-from", "10"});
  ASSERT_EQ(two.exit_code, 0) << two;
  EXPECT_EQ(Header(two.out)["consistency"].size(), 2u);
  ProcessResult bare = Export({"--from-seq", "16", "-o", "bare.jsonl"});
  ASSERT_EQ(bare.exit_code, 0) << bare;
  EXPECT_EQ(Signet({"audit", "verify", "old.jsonl", "bare.jsonl", "--key-file", "audit.pub.pem"})
                .exit_code,
            1);

  // A size past the checkpoint is the log's to refuse: exit 1, the reason given.
  ProcessResult past = Export({"--consistency-from", "50"});
  EXPECT_EQ(past.exit_code, 1) << past;
  EXPECT_THAT(past.err, StartsWith("signet: "));
  EXPECT_THAT(past.err,
              HasSubstr("--consistency-from 50 is past the latest signed checkpoint (size 17)"));
  EXPECT_EQ(past.out, "");
}

TEST_F(AuditExportTest, OutputFileIsReplacedOnlyByACompleteExport) {
  Grow(0, 6);
  Make("out.jsonl", "an earlier export\n");
  ProcessResult exported = Export({"-o", "out.jsonl"});
  ASSERT_EQ(exported.exit_code, 0) << exported;
  EXPECT_EQ(exported.out, "");
  EXPECT_EQ(exported.err,
            "signet: exported 6 records (seq 0..5) against checkpoint of size 6 to out.jsonl\n");
  EXPECT_EQ(ReadFile(dir() / "out.jsonl"), InProcess());
  EXPECT_THAT(FilesWith(".tmp."), IsEmpty());
  // The mode a shell redirection would give, not mkstemp's 0600.
  const mode_t mask = umask(0);
  umask(mask);
  struct stat st;
  ASSERT_EQ(stat((dir() / "out.jsonl").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask);

  // A failed export leaves the file as it was, and no temporary file.
  Make("out.jsonl", "an earlier export\n");
  ProcessResult failed = Export({"-o", "out.jsonl", "--consistency-from", "99"});
  EXPECT_EQ(failed.exit_code, 1) << failed;
  EXPECT_EQ(ReadFile(dir() / "out.jsonl"), "an earlier export\n");
  EXPECT_THAT(FilesWith(".tmp."), IsEmpty());

  // --output, and an absolute name.
  const std::string absolute = (dir() / "abs.jsonl").string();
  ProcessResult long_form = Export({"--output", absolute, "-q"});
  ASSERT_EQ(long_form.exit_code, 0) << long_form;
  EXPECT_EQ(long_form.err, "");
  EXPECT_EQ(ReadFile(absolute), InProcess());

  std::filesystem::create_directory(dir() / "outdir");
  ProcessResult directory = Export({"-o", "outdir"});
  EXPECT_EQ(directory.exit_code, 1) << directory;
  EXPECT_THAT(directory.err, HasSubstr("signet: -o outdir: is a directory"));
  EXPECT_THAT(FilesWith(".tmp."), IsEmpty());

  ProcessResult nowhere = Export({"-o", "missing/out.jsonl"});
  EXPECT_EQ(nowhere.exit_code, 1) << nowhere;
  EXPECT_THAT(nowhere.err, HasSubstr("No such file or directory"));
}

TEST_F(AuditExportTest, ASpecialFileIsWrittenToNotReplaced) {
  // -o naming a FIFO (or a device such as /dev/null) writes into it as a shell redirection does;
  // a rename over it would replace it with a regular file (as root, even /dev/null).
  Grow(0, 6);
  const std::filesystem::path fifo = dir() / "export.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string script = R"(cat "$2" > "$3" & "$0" audit export --log "$1" -o "$2"; rc=$?; )"
                             R"(wait; echo "rc=$rc" >&2)";
  ProcessResult run = Tool({"sh", "-c", script, SIGNET_BINARY, LogDir(), fifo.string(),
                            (dir() / "copy.jsonl").string()});
  EXPECT_THAT(run.err, HasSubstr("rc=0")) << run;
  EXPECT_THAT(run.err, HasSubstr("to " + fifo.string())) << run;
  struct stat st;
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO is still a FIFO";
  EXPECT_EQ(ReadFile(dir() / "copy.jsonl"), InProcess());
  EXPECT_THAT(FilesWith(".tmp."), IsEmpty());
}

TEST_F(AuditExportTest, WriteErrorsFailTheExport) {
  Grow(0, 300);  // an export larger than a pipe's buffer: its write blocks until the reader goes
  ProcessResult full = Export({}, WithStdoutTo("/dev/full"));
  EXPECT_EQ(full.exit_code, 1) << full;
  EXPECT_THAT(full.err, HasSubstr("signet: write to standard output: No space left on device"));
  EXPECT_THAT(full.err, Not(HasSubstr("exported")));

  // A reader that goes away (`| true`, which reads nothing): EPIPE is reported. SIGPIPE is put
  // back to its default for the child (this test process ignores it), as a shell would have it.
  const std::string script =
      R"({ env --default-signal=PIPE "$0" audit export --log "$1"; echo "rc=$?" >&2; } | true)";
  ProcessResult pipe = Tool({"sh", "-c", script, SIGNET_BINARY, LogDir()});
  EXPECT_THAT(pipe.err, HasSubstr("signet: write to standard output: Broken pipe")) << pipe;
  EXPECT_THAT(pipe.err, HasSubstr("rc=1")) << pipe;
}

TEST_F(AuditExportTest, NoSignedCheckpointYet) {
  ProcessResult empty = Export({"-o", "out.jsonl"});
  EXPECT_EQ(empty.exit_code, 1) << empty;
  EXPECT_THAT(empty.err, StartsWith("signet: "));
  EXPECT_THAT(empty.err, HasSubstr("no signed checkpoint"));
  EXPECT_FALSE(std::filesystem::exists(dir() / "out.jsonl"));
  EXPECT_THAT(FilesWith(".tmp."), IsEmpty());

  Append(0, 3);  // records, but none signed yet
  ProcessResult unsigned_records = Export({});
  EXPECT_EQ(unsigned_records.exit_code, 1) << unsigned_records;
  EXPECT_THAT(unsigned_records.err, HasSubstr("no signed checkpoint"));
  EXPECT_EQ(unsigned_records.out, "");
}

TEST_F(AuditExportTest, WhatIsNotALogIsRefusedClearly) {
  std::filesystem::create_directory(dir() / "empty");
  ProcessResult empty = Signet({"audit", "export", "--log", "empty"});
  EXPECT_EQ(empty.exit_code, 1) << empty;
  EXPECT_EQ(empty.err,
            "signet: empty is not a Signet audit log (no data.mdb): --log names the directory "
            "signetd keeps its audit log in\n");
  // LMDB was not let loose on it (it would have created lock.mdb).
  EXPECT_TRUE(std::filesystem::is_empty(dir() / "empty"));

  ProcessResult missing = Signet({"audit", "export", "--log", "absent"});
  EXPECT_EQ(missing.exit_code, 1) << missing;
  EXPECT_THAT(missing.err, HasSubstr("signet: absent: No such file or directory"));

  Make("file", "x");
  ProcessResult file = Signet({"audit", "export", "--log", "file"});
  EXPECT_EQ(file.exit_code, 1) << file;
  EXPECT_THAT(file.err, HasSubstr("signet: file is not a directory"));

  Make("junk/data.mdb", std::string(8192, 'j'));
  ProcessResult junk = Signet({"audit", "export", "--log", "junk"});
  EXPECT_EQ(junk.exit_code, 1) << junk;
  EXPECT_THAT(junk.err, StartsWith("signet: "));
  EXPECT_THAT(junk.err, HasSubstr("junk"));
  EXPECT_EQ(junk.out, "");
}

// A user who may read data.mdb but not write lock.mdb (LMDB's reader table) is told whom to run as.
TEST_F(AuditExportTest, PermissionDeniedSaysWhoMayExport) {
  Grow(0, 2);
  const std::filesystem::path lock = options_.dir / "lock.mdb";
  const std::filesystem::path data = options_.dir / "data.mdb";
  namespace fs = std::filesystem;
  ProcessResult denied;
  if (geteuid() == 0) {
    // Root may write anything: run as nobody, with everything but lock.mdb readable to it.
    if (!fs::exists("/usr/bin/setpriv")) {
      GTEST_SKIP() << "running as root without setpriv: cannot drop privileges";
    }
    for (const fs::path& path : {dir(), dir() / "audit", options_.dir}) {
      fs::permissions(path, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec |
                                fs::perms::group_read | fs::perms::others_read);
    }
    fs::permissions(data, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                              fs::perms::others_read);
    denied = Tool({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   SIGNET_BINARY, "audit", "export", "--log", LogDir()});
  } else {
    // The owner, with lock.mdb made read-only (this process's Log keeps its open descriptor).
    fs::permissions(lock, fs::perms::owner_read);
    denied = Export({});
    fs::permissions(lock, fs::perms::owner_read | fs::perms::owner_write);
  }
  EXPECT_EQ(denied.exit_code, 1) << denied;
  EXPECT_THAT(denied.err, StartsWith("signet: open audit log " + LogDir()));
  EXPECT_THAT(denied.err, HasSubstr("Permission denied"));
  EXPECT_THAT(denied.err, HasSubstr("write access to lock.mdb"));
  EXPECT_THAT(denied.err, HasSubstr("run it as the user signetd runs as, or as root"));
  EXPECT_EQ(denied.out, "");
}

TEST_F(AuditExportTest, BadCommandLinesAreUsageErrors) {
  Grow(0, 2);
  const std::vector<std::string> bad_times = {
      "yesterday",
      "2026-11-27",
      "2026-11-27T10:00:00",
      "2026-11-27 10:00:00Z",
      "2026-11-27T10:00Z",
      "2026-02-30T10:00:00Z",
      "2026-11-27T24:00:00Z",
      "2026-11-27T10:00:60Z",
      "2026-11-27T10:00:00+1:00",
      "2026-11-27T10:00:00+01",
      "2026-11-27T10:00:00.Z",
      "2026-11-27T10:00:00.1234567891Z",
      "2026-11-27T10:00:00ZZ",
      "1795773600",
      "@",
      "@12x",
      "@+5",
      "@99999999999999999999",
      "",
  };
  for (const std::string& time : bad_times) {
    for (const char* option : {"--since", "--until"}) {
      SCOPED_TRACE(fmt::format("{} '{}'", option, time));
      ProcessResult bad = Export({option, time});
      EXPECT_EQ(bad.exit_code, 2) << bad;
      EXPECT_THAT(bad.err, StartsWith(fmt::format("signet audit export: {} '", option)));
      EXPECT_THAT(bad.err,
                  HasSubstr("accepted: RFC 3339 in UTC or with an offset (2026-11-27T10:00:00Z, "
                            "2026-11-27T10:00:00.123456+01:00) or @SECONDS"));
      EXPECT_EQ(bad.out, "");
    }
  }
  ProcessResult no_zone = Export({"--since", "2026-11-27T10:00:00"});
  EXPECT_THAT(no_zone.err, HasSubstr("has no time zone (add Z for UTC"));

  // Accepted forms at the edges of the grammar.
  for (const char* good :
       {"2026-11-27T10:00:00Z", "2026-11-27T10:00:00.1Z", "2024-02-29T23:59:59.999999999-23:59",
        "1970-01-01T00:00:00+00:00", "@0", "@-86400", "@1795773600"}) {
    SCOPED_TRACE(good);
    ProcessResult ok = Export({"--since", good, "-q"});
    EXPECT_EQ(ok.exit_code, 0) << ok;
  }

  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--from-seq", "-1"}, "--from-seq '-1' is not a sequence number"},
      {{"--from-seq", "0x10"}, "--from-seq '0x10' is not a sequence number"},
      {{"--to-seq", "18446744073709551616"}, "--to-seq '18446744073709551616' is not a sequence"},
      {{"--from-seq", "9", "--to-seq", "3"}, "--from-seq 9 is past --to-seq 3"},
      {{"--since", "@20", "--until", "@10"}, "--since @20 is after --until @10"},
      {{"--digest", "xyz"}, "--digest 'xyz' is not a hex digest"},
      {{"--digest", ""}, "--digest '' is not a hex digest"},
      {{"--consistency-from", "ten"}, "--consistency-from 'ten' is not a sequence number"},
      {{"-o", ""}, "-o needs a file name"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{}", fmt::join(c.args, " ")));
    ProcessResult bad = Export(c.args);
    EXPECT_EQ(bad.exit_code, 2) << bad;
    EXPECT_THAT(bad.err, HasSubstr("signet audit export: " + c.message));
    EXPECT_THAT(bad.err, HasSubstr("Run with --help"));
  }
  EXPECT_EQ(Signet({"audit", "export"}).exit_code, 2);  // no --log
  EXPECT_EQ(Export({"stray"}).exit_code, 2);

  // A digest of no known length is the log's to refuse.
  ProcessResult odd_length = Export({"--digest", "abcd"});
  EXPECT_EQ(odd_length.exit_code, 1) << odd_length;
  EXPECT_THAT(odd_length.err, HasSubstr("--digest: 4 hex digits fit no digest algorithm"));
}

TEST_F(AuditExportTest, HelpSaysWhatTheExportNeeds) {
  ProcessResult help = Signet({"audit", "export", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help;
  EXPECT_THAT(help.out, HasSubstr("write access to DIR/lock.mdb"));
  EXPECT_THAT(help.out, HasSubstr("Ranges are half-open"));
  EXPECT_THAT(help.out, HasSubstr("(exclusive)"));
  EXPECT_THAT(help.out, HasSubstr("@SECONDS"));
  ProcessResult audit = Signet({"audit", "--help"});
  EXPECT_EQ(audit.exit_code, 0) << audit;
  EXPECT_THAT(audit.out, HasSubstr("export"));
  EXPECT_THAT(audit.out, HasSubstr("verify"));
}

// signetd keeps appending and signing checkpoints (growing the LMDB map past its first size) while
// exports run; every export is complete and verifies against the checkpoint it names.
TEST_F(AuditExportTest, ExportsWhileTheLogIsBeingWritten) {
  // A first map of 256 KiB, which the writer's 1,024 records outgrow three times (8,000 records
  // grow the tests' usual 4 MiB map twice), at an eighth of the cost to export and verify.
  log_.reset();
  options_.map_size = std::size_t{256} << 10;
  auto reopened = audit::Log::Open(options_, Key().signer());
  ASSERT_TRUE(reopened.has_value()) << reopened.error();
  log_ = std::move(*reopened);
  Grow(0, 50);
  std::atomic<bool> writing{true};
  std::atomic<std::uint64_t> appended{50};
  std::thread writer([&] {
    std::uint64_t next = 50;
    for (int batch = 0; batch < 16; ++batch) {
      std::vector<audit::Record> records;
      for (int i = 0; i < 64; ++i) {
        records.push_back(audit::testing::SampleRecord(next++));
      }
      auto done = log_->Append(std::move(records));
      ASSERT_TRUE(done.has_value()) << done.error();
      auto note = log_->CheckpointNow();
      ASSERT_TRUE(note.has_value()) << note.error();
      appended.store(next);
    }
    writing.store(false);
  });
  // Exports back to back for as long as the writer writes (at least four). Each is verified once
  // the writer is done, so that the exports, not their verification, meet the writes.
  std::vector<ProcessResult> exports;
  while (exports.size() < 4 || (writing.load() && exports.size() < 16)) {
    exports.push_back(Export({"-q"}));
  }
  writer.join();
  EXPECT_GT(log_->stats().map_size, options_.map_size) << "the map never grew";
  std::uint64_t last_size = 0;
  for (const ProcessResult& exported : exports) {
    ASSERT_EQ(exported.exit_code, 0) << exported;
    audit::ExportSummary summary = Verified(exported.out);
    EXPECT_TRUE(summary.full);
    EXPECT_EQ(summary.records, summary.checkpoint.size);
    EXPECT_GE(summary.checkpoint.size, last_size);
    last_size = summary.checkpoint.size;
  }
  ProcessResult last = Export({"--from-seq", "40", "--to-seq", "60", "-q"});
  ASSERT_EQ(last.exit_code, 0) << last;
  EXPECT_EQ(Seqs(last.out), SeqsWhere(60, [](std::uint64_t i) { return i >= 40; }));
  EXPECT_GE(Verified(last.out).checkpoint.size, appended.load());
}

}  // namespace
}  // namespace signet::cli::testing
