// The audit endpoints through the admin socket (records, export, checkpoint, consistency) against
// a real log with real sign records, and the real `signet audit find` / `signet audit export
// --socket` against the same socket.
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/admin/admin_fixture.h"
#include "tests/net/test_util.h"

#ifndef SIGNET_BINARY
#error "SIGNET_BINARY must name the signet client (tests/admin/CMakeLists.txt)"
#endif

namespace signet::admin {
namespace {

using net::testing::HttpResult;
using net::testing::RunCommand;
using net::testing::ShellQuote;
using nlohmann::json;
using testing::AdminFixture;
using testing::PolicyFor;

std::string Sha256Hex(std::string_view content) {
  std::uint8_t raw[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const std::uint8_t*>(content.data()), content.size(), raw);
  return HexEncode(raw);
}

std::string Content(int i) { return "artifact content " + std::to_string(i); }

void WriteFile(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string Rfc3339(std::int64_t time_us) {
  using std::chrono::microseconds;
  const std::chrono::sys_time<microseconds> time{microseconds(time_us)};
  const auto day = std::chrono::floor<std::chrono::days>(time);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss<microseconds> clock{time - day};
  char text[64];
  std::snprintf(
      text, sizeof text, "%04d-%02u-%02uT%02ld:%02ld:%02ld.%06ldZ", static_cast<int>(date.year()),
      static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
      static_cast<long>(clock.hours().count()), static_cast<long>(clock.minutes().count()),
      static_cast<long>(clock.seconds().count()), static_cast<long>(clock.subseconds().count()));
  return text;
}

class AuditApiTest : public AdminFixture {
 protected:
  // Signs artifacts a<from>..a<to-1> (one request each).
  void SignSome(int from, int to) {
    for (int i = from; i < to; ++i) {
      const HttpResult signed_one = Sign("dist/a" + std::to_string(i), Content(i));
      ASSERT_EQ(signed_one.status, 200) << signed_one.body;
    }
  }
  std::string CheckpointNow() {
    auto note = log().CheckpointNow();
    EXPECT_TRUE(note) << note.error();
    return note ? *note : std::string();
  }
  audit::NoteVerifier Verifier() const {
    const std::string pem = AuditPublicKeyPem();
    auto verifier = audit::MakeNoteVerifier(
        AuditOrigin(), std::span(reinterpret_cast<const std::uint8_t*>(pem.data()), pem.size()));
    EXPECT_TRUE(verifier) << verifier.error();
    return *verifier;
  }
  // GET /v1/audit/records?QUERY, every page (following next_seq); the seqs, each record checked
  // against the log.
  std::vector<std::uint64_t> AllSeqs(const std::string& query, int* pages_out = nullptr) {
    std::vector<std::uint64_t> seqs;
    std::string from;
    int pages = 0;
    // Each page is a read, and recorded: after Freeze(), the range ends where the log ended
    // then, so those records stay out (unless the query bounds it itself).
    const std::string bounded =
        frozen_ && query.find("to_seq=") == std::string::npos
            ? query + (query.empty() ? "" : "&") + "to_seq=" + std::to_string(*frozen_)
            : query;
    for (; pages < 1000; ++pages) {
      const HttpResult page = Admin("GET", "/v1/audit/records?" + bounded + from);
      EXPECT_EQ(page.status, 200) << page.body;
      const json body = Json(page);
      if (!body.is_object() || !body["records"].is_array()) {
        ADD_FAILURE() << page.body;
        break;
      }
      for (const json& record : body["records"]) {
        const std::uint64_t seq = record["seq"];
        auto stored = log().Get(seq);
        EXPECT_TRUE(stored) << stored.error();
        EXPECT_EQ(record.dump(), audit::SerializeRecord(*stored).value_or("?"));
        seqs.push_back(seq);
      }
      if (body["next_seq"].is_null()) {
        ++pages;
        break;
      }
      from = "&from_seq=" + std::to_string(body["next_seq"].get<std::uint64_t>());
    }
    if (pages_out != nullptr) {
      *pages_out = pages;
    }
    return seqs;
  }
  // The log's size now: AllSeqs and SeqsWhere see only the records before it from here on.
  void Freeze() { frozen_ = Records().size(); }
  std::vector<std::uint64_t> SeqsWhere(const std::function<bool(const audit::Record&)>& keep) {
    std::vector<std::uint64_t> seqs;
    for (const audit::Record& record : Records()) {
      if (frozen_ && record.seq >= *frozen_) {
        break;
      }
      if (keep(record)) {
        seqs.push_back(record.seq);
      }
    }
    return seqs;
  }
  std::string Signet(const std::string& args, int* exit_code) {
    const auto result = RunCommand(ShellQuote(SIGNET_BINARY) + " " + args);
    *exit_code = result.exit_code;
    return result.out;
  }

  std::optional<std::uint64_t> frozen_;
};

TEST_F(AuditApiTest, RecordsArePagedInSeqOrder) {
  SignSome(0, 7);
  Freeze();
  const auto all = SeqsWhere([](const audit::Record&) { return true; });
  ASSERT_GE(all.size(), 8u);  // the policy seed and seven sign records
  int pages = 0;
  EXPECT_EQ(AllSeqs("", &pages), all);
  EXPECT_EQ(pages, 1);
  EXPECT_EQ(AllSeqs("limit=3", &pages), all);
  EXPECT_EQ(pages, static_cast<int>((all.size() + 2) / 3));

  const HttpResult first = Admin("GET", "/v1/audit/records?limit=2");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(Json(first)["records"].size(), 2u);
  EXPECT_EQ(Json(first)["next_seq"], 2);
}

TEST_F(AuditApiTest, EachFilterSelects) {
  SignSome(0, 6);
  Freeze();
  EXPECT_EQ(AllSeqs("digest=" + Sha256Hex(Content(4))),
            SeqsWhere([](const audit::Record& r) { return r.artifact_name == "dist/a4"; }));
  EXPECT_EQ(AllSeqs("digest=" + Sha256Hex(Content(4))).size(), 1u);
  EXPECT_EQ(AllSeqs("key=default&limit=2"),
            SeqsWhere([](const audit::Record& r) { return r.key_name == "default"; }));
  EXPECT_EQ(AllSeqs("identity=uid:" + std::to_string(::getuid())),
            SeqsWhere([](const audit::Record& r) { return r.requester.uid == ::getuid(); }));
  EXPECT_TRUE(AllSeqs("identity=nobody-at-all").empty());
  EXPECT_EQ(AllSeqs("from_seq=2&to_seq=4"), (std::vector<std::uint64_t>{2, 3}));

  const auto records = Records();
  ASSERT_GE(records.size(), 6u);
  const std::int64_t from = records[2].time_us;
  const std::int64_t to = records[5].time_us;
  const auto in_window =
      SeqsWhere([&](const audit::Record& r) { return r.time_us >= from && r.time_us < to; });
  ASSERT_FALSE(in_window.empty());
  // µs, and RFC 3339 (escaped: '+' would be a space in a query).
  EXPECT_EQ(AllSeqs("from_time=" + std::to_string(from) + "&to_time=" + std::to_string(to)),
            in_window);
  EXPECT_EQ(AllSeqs("from_time=" + Rfc3339(from) + "&to_time=" + Rfc3339(to)), in_window);
}

TEST_F(AuditApiTest, BadParametersAreNamed) {
  SignSome(0, 1);
  for (const auto& [query, name] :
       std::vector<std::pair<std::string, std::string>>{{"limit=0", "limit"},
                                                        {"limit=1001", "limit"},
                                                        {"from_seq=abc", "from_seq"},
                                                        {"from_seq=5&to_seq=4", "to_seq"},
                                                        {"from_time=yesterday", "from_time"},
                                                        {"to_time=2026-13-01T00:00:00Z", "to_time"},
                                                        {"digest=xyz", "digest"},
                                                        {"digest=abcd", "digest"},
                                                        {"since=1", "since"}}) {
    const HttpResult answer = Admin("GET", "/v1/audit/records?" + query);
    EXPECT_EQ(answer.status, 400) << query << ": " << answer.body;
    EXPECT_NE(Json(answer)["message"].get<std::string>().find(name), std::string::npos)
        << query << ": " << answer.body;
  }
  for (const std::string path :
       {"/v1/audit/records", "/v1/audit/export", "/v1/audit/checkpoint", "/v1/audit/consistency"}) {
    EXPECT_EQ(Admin("POST", path, "{}").status, 405) << path;
  }
  EXPECT_EQ(Admin("GET", "/v1/audit/nothing").status, 404);
}

TEST_F(AuditApiTest, ExportVerifiesAndIsRecorded) {
  SignSome(0, 4);
  const std::string note = CheckpointNow();
  const std::uint64_t size = audit::OpenCheckpoint(note, Verifier())->size;

  const HttpResult full = Admin("GET", "/v1/audit/export");
  ASSERT_EQ(full.status, 200) << full.body;
  EXPECT_NE(full.headers.find("application/jsonl"), std::string::npos) << full.headers;
  {
    std::istringstream in(full.body);
    auto summary = audit::VerifyExport(in, Verifier());
    ASSERT_TRUE(summary) << summary.error();
    EXPECT_TRUE(summary->full);
    EXPECT_EQ(summary->records, size);
  }
  // Recorded: an admin record, decision export, the filters in its detail, by this peer.
  const auto records = Records();
  ASSERT_FALSE(records.empty());
  const audit::Record& recorded = records.back();
  EXPECT_EQ(recorded.kind, audit::RecordKind::kAdmin);
  EXPECT_EQ(recorded.decision, "export");
  EXPECT_NE(recorded.detail.find("filters {}"), std::string::npos) << recorded.detail;
  EXPECT_EQ(recorded.requester.uid, ::getuid());

  // A filtered export, with consistency proofs, verifies too; its filters are recorded.
  const std::string digest = Sha256Hex(Content(2));
  const HttpResult filtered =
      Admin("GET", "/v1/audit/export?digest=" + digest + "&consistency_from=1,2");
  ASSERT_EQ(filtered.status, 200) << filtered.body;
  std::istringstream in(filtered.body);
  auto summary = audit::VerifyExport(in, Verifier());
  ASSERT_TRUE(summary) << summary.error();
  EXPECT_FALSE(summary->full);
  EXPECT_EQ(summary->records, 1u);
  EXPECT_EQ(summary->consistency.size(), 2u);
  EXPECT_NE(Records().back().detail.find(digest), std::string::npos);

  // The real `signet audit verify` accepts it.
  WriteFile(dir() / "full.jsonl", full.body);
  WriteFile(dir() / "audit.pub.pem", AuditPublicKeyPem());
  int exit_code = -1;
  const std::string out =
      Signet("audit verify " + ShellQuote((dir() / "full.jsonl").string()) + " --key-file " +
                 ShellQuote((dir() / "audit.pub.pem").string()),
             &exit_code);
  EXPECT_EQ(exit_code, 0) << out;
  EXPECT_NE(out.find("full log: root recomputed"), std::string::npos) << out;

  EXPECT_EQ(Admin("GET", "/v1/audit/export?consistency_from=1,x").status, 400);
  EXPECT_EQ(Admin("GET", "/v1/audit/export?limit=5").status, 400);  // records only
}

TEST_F(AuditApiTest, CheckpointAndConsistencyVerify) {
  SignSome(0, 3);
  const std::string older = CheckpointNow();
  SignSome(3, 8);
  const std::string newer = CheckpointNow();
  auto old_checkpoint = audit::OpenCheckpoint(older, Verifier());
  auto new_checkpoint = audit::OpenCheckpoint(newer, Verifier());
  ASSERT_TRUE(old_checkpoint && new_checkpoint);
  ASSERT_LT(old_checkpoint->size, new_checkpoint->size);

  const HttpResult shown = Admin("GET", "/v1/audit/checkpoint");
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_NE(shown.headers.find("text/plain"), std::string::npos);
  EXPECT_EQ(shown.body, log().LatestCheckpoint());
  auto opened = audit::OpenCheckpoint(shown.body, Verifier());
  ASSERT_TRUE(opened) << opened.error();
  EXPECT_EQ(*opened, *new_checkpoint);

  const std::uint64_t m = old_checkpoint->size;
  const std::uint64_t n = new_checkpoint->size;
  const HttpResult answer =
      Admin("GET", "/v1/audit/consistency?from=" + std::to_string(m) + "&to=" + std::to_string(n));
  ASSERT_EQ(answer.status, 200) << answer.body;
  const json body = Json(answer);
  EXPECT_EQ(body["from"], m);
  EXPECT_EQ(body["to"], n);
  std::vector<pipeline::MerkleHash> proof;
  for (const json& hash : body["proof"]) {
    auto raw = Base64Decode(hash.get<std::string>());
    ASSERT_TRUE(raw && raw->size() == 32) << hash;
    pipeline::MerkleHash h;
    std::copy(raw->begin(), raw->end(), h.begin());
    proof.push_back(h);
  }
  EXPECT_TRUE(pipeline::VerifyConsistency(m, n, old_checkpoint->root, new_checkpoint->root, proof));
  EXPECT_FALSE(
      pipeline::VerifyConsistency(m, n, new_checkpoint->root, new_checkpoint->root, proof));

  const HttpResult past = Admin("GET", "/v1/audit/consistency?from=1&to=" + std::to_string(n + 1));
  EXPECT_EQ(past.status, 400) << past.body;
  EXPECT_NE(past.body.find("latest signed checkpoint"), std::string::npos) << past.body;
  EXPECT_EQ(Admin("GET", "/v1/audit/consistency?from=0&to=1").status, 400);
  const HttpResult missing = Admin("GET", "/v1/audit/consistency?from=1");
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(Json(missing)["message"].get<std::string>().find("to:"), std::string::npos);
}

TEST_F(AuditApiTest, AStalledExportHoldsNoWorkerAndOneTooManyIsRefused) {
  // About 5 MB of export: more than the server's window (net::kStreamWindowBytes) and the
  // socket's buffers together. In few large records (1,000 of 4 KiB rather than 8,000 of 400
  // bytes): the stall is a matter of bytes, while each record costs an inclusion proof in the
  // export, a verification, and a read each time the test counts the log's exports.
  for (int batch = 0; batch < 4; ++batch) {
    std::vector<audit::Record> records(250);
    for (audit::Record& record : records) {
      record.kind = audit::RecordKind::kAdmin;
      record.decision = "filler";
      record.detail = std::string(4096, 'x');
    }
    ASSERT_TRUE(log().Append(std::move(records), Deadline::In(std::chrono::seconds(30))));
  }
  CheckpointNow();
  // A second AdminService on the same parts: one worker, one export at a time, its own socket.
  AdminOptions options{.host_id = "test-host"};
  options.workers = 1;
  options.max_exports = 1;
  auto small = AdminService::Create(options, store(), service(), log(), {});
  ASSERT_TRUE(small) << small.error();
  const auto socket = dir() / "small.sock";
  net::ServerOptions server_options;
  server_options.unix_listeners.push_back(net::UnixListenerOptions{.path = socket});
  auto server = net::Server::Start(std::move(server_options), (*small)->handler());
  ASSERT_TRUE(server) << server.error();
  const std::string curl = "--max-time 10 --unix-socket " + ShellQuote(socket.string()) + " ";
  const auto exports = [&] {
    return SeqsWhere([](const audit::Record& r) { return r.decision == "export"; }).size();
  };

  // An auditor's export that nobody reads: it is recorded before its first byte, then waits.
  UniqueFd stalled = net::testing::ConnectUnix(socket);
  ASSERT_TRUE(stalled);
  ASSERT_TRUE(
      net::testing::SendAll(stalled.get(), "GET /v1/audit/export HTTP/1.1\r\nHost: x\r\n\r\n"));
  for (int i = 0; i < 500 && exports() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(exports(), 1u);

  // The one worker still answers; a second export is refused, naming the limit.
  const HttpResult policy = net::testing::Curl(curl + "http://localhost/v1/policy");
  EXPECT_EQ(policy.status, 200) << policy.body;
  const HttpResult refused = net::testing::Curl(curl + "http://localhost/v1/audit/export");
  EXPECT_EQ(refused.status, 503) << refused.body;
  const json body = json::parse(refused.body, nullptr, false);
  EXPECT_EQ(body["code"], "too_many_exports");
  EXPECT_EQ(body["limit"], "max_exports");
  EXPECT_EQ(exports(), 1u);

  // The stalled reader goes away; the next export streams whole and verifies.
  stalled.Reset();
  HttpResult whole;
  for (int i = 0; i < 100; ++i) {
    whole = net::testing::Curl(curl + "http://localhost/v1/audit/export");
    if (whole.status != 503) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(whole.status, 200) << whole.body.substr(0, 300);
  EXPECT_NE(whole.headers.find("Transfer-Encoding: chunked"), std::string::npos) << whole.headers;
  EXPECT_GT(whole.body.size(), 4'000'000u);
  std::istringstream in(whole.body);
  auto summary = audit::VerifyExport(in, Verifier());
  ASSERT_TRUE(summary) << summary.error();
  EXPECT_TRUE(summary->full);
  EXPECT_EQ(exports(), 2u);
  (*server)->Stop(Deadline::In(std::chrono::seconds(5)));
}

TEST_F(AuditApiTest, AnExportThatCannotBeRecordedSendsNothing) {
  SignSome(0, 2);
  CheckpointNow();
  ASSERT_TRUE(log().Close());
  const HttpResult refused = Admin("GET", "/v1/audit/export");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(Json(refused)["code"], "audit_unavailable");
  EXPECT_EQ(refused.body.find("\"type\":\"header\""), std::string::npos);
}

TEST_F(AuditApiTest, ReadsAreRecordedBeforeTheyAreAnswered) {
  const std::size_t before = Records().size();
  ASSERT_EQ(Admin("GET", "/v1/policy").status, 200);
  auto records = Records();
  ASSERT_EQ(records.size(), before + 1);
  EXPECT_EQ(records.back().kind, audit::RecordKind::kAdmin);
  EXPECT_EQ(records.back().decision, "read");
  EXPECT_EQ(records.back().detail, "GET /v1/policy answered 200");
  EXPECT_EQ(records.back().requester.uid, ::getuid());

  // Monitoring is not recorded (a scrape every few seconds would fill the log).
  ASSERT_EQ(Admin("GET", "/metrics").status, 200);
  ASSERT_EQ(Admin("GET", "/v1/health").status, 200);
  EXPECT_EQ(Records().size(), before + 1);

  // An error is recorded with its code and message.
  ASSERT_EQ(Admin("GET", "/v1/audit/records?limit=0").status, 400);
  records = Records();
  ASSERT_EQ(records.size(), before + 2);
  EXPECT_EQ(records.back().decision, "error");
  EXPECT_NE(records.back().detail.find("GET /v1/audit/records?limit=0 answered 400 "
                                       "invalid_argument: limit"),
            std::string::npos)
      << records.back().detail;

  // No record, no answer: with the log closed, a read is refused.
  ASSERT_TRUE(log().Close());
  const HttpResult refused = Admin("GET", "/v1/keys");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(Json(refused)["code"], "audit_unavailable");
}

TEST_F(AuditApiTest, SignetAuditFindNamesWhoSignedAFile) {
  SignSome(0, 3);
  WriteFile(dir() / "a1", Content(1));
  WriteFile(dir() / "unsigned", "never signed");
  const std::string admin = ShellQuote(admin_socket().string());
  const std::string file = ShellQuote((dir() / "a1").string());
  const auto signed_one =
      SeqsWhere([](const audit::Record& r) { return r.artifact_name == "dist/a1"; });
  ASSERT_EQ(signed_one.size(), 1u);
  const audit::Record record = *log().Get(signed_one[0]);

  int exit_code = -1;
  std::string out = Signet("audit find " + file + " --socket " + admin, &exit_code);
  EXPECT_EQ(exit_code, 0) << out;
  EXPECT_NE(out.find((dir() / "a1").string()), std::string::npos) << out;
  EXPECT_NE(out.find("sign allow"), std::string::npos) << out;
  EXPECT_NE(out.find("key default"), std::string::npos) << out;
  EXPECT_NE(out.find("tool signet 1"), std::string::npos) << out;
  EXPECT_NE(out.find("uid " + std::to_string(::getuid())), std::string::npos) << out;
  EXPECT_NE(out.find("seq " + std::to_string(record.seq)), std::string::npos) << out;
  EXPECT_NE(out.find(Rfc3339(record.time_us)), std::string::npos) << out;

  // The same from the log directory, as JSON; and by digest.
  out = Signet("audit find --digest " + Sha256Hex(Content(1)) + " --log " +
                   ShellQuote((dir() / "log").string()) + " --json",
               &exit_code);
  EXPECT_EQ(exit_code, 0) << out;
  const json line = json::parse(out, nullptr, false);
  ASSERT_TRUE(line.is_object()) << out;
  EXPECT_EQ(line["record"]["seq"], record.seq);
  EXPECT_EQ(line["record"].dump(), audit::SerializeRecord(record).value());
  EXPECT_EQ(line["digest"], Sha256Hex(Content(1)));

  // Not signed: exit 1. Bad command lines: exit 2.
  out = Signet("audit find " + ShellQuote((dir() / "unsigned").string()) + " --socket " + admin,
               &exit_code);
  EXPECT_EQ(exit_code, 1) << out;
  EXPECT_TRUE(out.empty()) << out;
  Signet("audit find " + file, &exit_code);
  EXPECT_EQ(exit_code, 2);
  Signet("audit find --digest abc --socket " + admin, &exit_code);
  EXPECT_EQ(exit_code, 2);
  Signet("audit find --socket " + admin, &exit_code);
  EXPECT_EQ(exit_code, 2);
}

TEST_F(AuditApiTest, SignetAuditExportThroughTheAdminSocket) {
  SignSome(0, 5);
  CheckpointNow();
  const std::string admin = ShellQuote(admin_socket().string());
  const auto out_file = dir() / "export.jsonl";
  int exit_code = -1;
  std::string out =
      Signet("audit export --socket " + admin + " -o " + ShellQuote(out_file.string()), &exit_code);
  ASSERT_EQ(exit_code, 0) << out;
  {
    std::ifstream in(out_file, std::ios::binary);
    auto summary = audit::VerifyExport(in, Verifier());
    ASSERT_TRUE(summary) << summary.error();
    EXPECT_TRUE(summary->full);
  }
  EXPECT_EQ(Records().back().decision, "export");

  // Filters travel as query parameters (times as µs).
  const auto records = Records();
  out = Signet("audit export --socket " + admin + " --digest " + Sha256Hex(Content(3)) +
                   " --since @0 --consistency-from 2 -o " + ShellQuote(out_file.string()),
               &exit_code);
  ASSERT_EQ(exit_code, 0) << out;
  std::ifstream in(out_file, std::ios::binary);
  auto summary = audit::VerifyExport(in, Verifier());
  ASSERT_TRUE(summary) << summary.error();
  EXPECT_EQ(summary->records, 1u);
  EXPECT_EQ(summary->consistency.count(2), 1u);

  // A refusal is reported with signetd's message; --log and --socket are exclusive.
  out = Signet("audit export --socket " + admin + " --consistency-from 100000 -o " +
                   ShellQuote((dir() / "never.jsonl").string()),
               &exit_code);
  EXPECT_EQ(exit_code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir() / "never.jsonl"));
  Signet("audit export --socket " + admin + " --log " + ShellQuote((dir() / "log").string()),
         &exit_code);
  EXPECT_EQ(exit_code, 2);
}

// What `signet audit export --socket` does with an export that stops early: a stand-in for
// signetd (python3 on a Unix socket) sends the first lines of a real export and then closes the
// connection, without the final chunk ("cut") or with it but without the end line ("short").
TEST_F(AuditApiTest, AnExportCutShortFailsAndLeavesTheFileAsItWas) {
  SignSome(0, 3);
  CheckpointNow();
  const HttpResult real = Admin("GET", "/v1/audit/export");
  ASSERT_EQ(real.status, 200) << real.body;
  const std::size_t third_line = real.body.find('\n', real.body.find('\n') + 1);
  ASSERT_NE(third_line, std::string::npos);
  WriteFile(dir() / "partial.jsonl", real.body.substr(0, third_line + 1));
  WriteFile(dir() / "fake.py", R"py(
import socket, sys
path, body_file, mode, ready = sys.argv[1:5]
body = open(body_file, 'rb').read()
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(1)
open(ready, 'w').close()
conn, _ = server.accept()
request = b''
while b'\r\n\r\n' not in request:
    more = conn.recv(4096)
    if not more:
        break
    request += more
conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/jsonl\r\n'
             b'Transfer-Encoding: chunked\r\n\r\n')
conn.sendall(b'%x\r\n' % len(body) + body + b'\r\n')
if mode == 'short':
    conn.sendall(b'0\r\n\r\n')
conn.close()
)py");
  const auto out_file = dir() / "export.jsonl";
  for (const std::string mode : {"cut", "short"}) {
    SCOPED_TRACE(mode);
    const auto socket = dir() / (mode + ".sock");
    const auto ready = dir() / (mode + ".ready");
    RunCommand("timeout 30 python3 " + ShellQuote((dir() / "fake.py").string()) + " " +
               ShellQuote(socket.string()) + " " + ShellQuote((dir() / "partial.jsonl").string()) +
               " " + mode + " " + ShellQuote(ready.string()) + " >/dev/null 2>&1 &");
    for (int i = 0; i < 1000 && !std::filesystem::exists(ready); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(std::filesystem::exists(ready)) << "the stand-in server did not start";
    WriteFile(out_file, "the previous export\n");
    int exit_code = -1;
    const std::string out = Signet("audit export --socket " + ShellQuote(socket.string()) + " -o " +
                                       ShellQuote(out_file.string()) + " 2>&1",
                                   &exit_code);
    EXPECT_EQ(exit_code, 1) << out;
    EXPECT_NE(out.find(mode == "cut" ? "was cut short" : "is truncated (no end line)"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("export.jsonl is unchanged"), std::string::npos) << out;
    std::ifstream in(out_file);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "the previous export\n");
  }
}

// A peer without the auditor role.
class AuditApiNoAuditorTest : public AdminFixture {
 protected:
  std::string PolicyText() const override { return PolicyFor({"admin", "approver"}); }
};

TEST_F(AuditApiNoAuditorTest, EveryEndpointNeedsTheAuditorRole) {
  ASSERT_TRUE(log().CheckpointNow());
  for (const std::string path : {"/v1/audit/records", "/v1/audit/export", "/v1/audit/checkpoint",
                                 "/v1/audit/consistency?from=1&to=1"}) {
    const HttpResult answer = Admin("GET", path);
    EXPECT_EQ(answer.status, 403) << path << ": " << answer.body;
    EXPECT_EQ(Json(answer)["code"], "role_required") << answer.body;
    EXPECT_EQ(Json(answer)["role"], "auditor") << answer.body;
  }
  int exit_code = -1;
  const auto result =
      RunCommand(ShellQuote(SIGNET_BINARY) + " audit find --digest " + std::string(64, 'a') +
                 " --socket " + ShellQuote(admin_socket().string()));
  exit_code = result.exit_code;
  EXPECT_EQ(exit_code, 1);
}

}  // namespace
}  // namespace signet::admin
