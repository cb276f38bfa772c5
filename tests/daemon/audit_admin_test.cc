// The audit log as an auditor meets it, against the real signetd --dev and the real signet client:
// 10,000 files signed with `signet sign` (CI's ASan run signs fewer: SIGNET_AUDIT_ADMIN_FILES), the
// log exported through the admin socket and read directly from LMDB, each export verified offline
// with only the audit public key, a tampered copy refused naming the record, and `signet audit
// find` answering who signed a file.
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "tests/daemon/signetd_process.h"

namespace signet::daemon {
namespace {

using net::testing::RunCommand;
using net::testing::ShellQuote;
using nlohmann::json;
using testing::ReadFile;
using testing::Sha256Hex;
using testing::WriteFile;

// How many files are signed: 10,000 unless SIGNET_AUDIT_ADMIN_FILES says otherwise. CI's ASan run
// signs 2,000 (still eight of `signet sign`'s batches of 256), where everything runs several times
// slower and the code paths are the same; the README's run keeps 10,000. At least 100, so that the
// record tampered with lies among the sign records.
int Files() {
  const char* text = std::getenv("SIGNET_AUDIT_ADMIN_FILES");
  return text == nullptr || *text == '\0' ? 10000 : std::max(100, std::atoi(text));
}

// A directory of its own for many small files, on tmpfs (/dev/shm) when there is one: deleting
// 20,000 files from a disk shared with other jobs has taken over a minute. Removed with its files.
class ScratchDir {
 public:
  explicit ScratchDir(const std::filesystem::path& fallback) {
    const std::filesystem::path base =
        std::filesystem::is_directory("/dev/shm") ? std::filesystem::path("/dev/shm") : fallback;
    std::string templ = (base / "signet-audit-XXXXXX").string();
    path_ =
        ::mkdtemp(templ.data()) != nullptr ? std::filesystem::path(templ) : fallback / "scratch";
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// One record of an export: its line number (1-based, the header is line 1), the line itself, and
// the record parsed.
struct ExportLine {
  std::size_t line_no = 0;
  std::string text;
  json record;
};

class AuditAdminTest : public testing::SignetdFixture {
 protected:
  std::filesystem::path AdminSocket() const { return State() / "admin" / "admin.sock"; }
  std::filesystem::path AuditKey() const { return State() / "audit.pub.pem"; }

  // `signet ARGS` (each argument quoted), stdout and stderr captured apart.
  CliRun Signet(const std::vector<std::string>& args) {
    const std::filesystem::path err = logs_.path() / ("err" + std::to_string(runs_++));
    std::string command = ShellQuote(SIGNET_BINARY);
    for (const std::string& arg : args) {
      command += " " + ShellQuote(arg);
    }
    const auto result = RunCommand(command + " 2>" + ShellQuote(err.string()));
    return CliRun{result.exit_code, result.out, ReadFile(err)};
  }

  CliRun Verify(const std::filesystem::path& file) {
    return Signet({"audit", "verify", file.string(), "--key-file", AuditKey().string()});
  }

  int runs_ = 0;
};

// The export's record lines, in order.
std::vector<ExportLine> RecordLines(const std::string& text) {
  std::vector<ExportLine> lines;
  std::istringstream in(text);
  std::size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    const json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_object() || parsed.value("type", "") != "record") {
      continue;
    }
    lines.push_back(
        ExportLine{line_no, line, json::parse(parsed.value("record", ""), nullptr, false)});
  }
  return lines;
}

// `text` with one byte changed inside the record on line `line_no`: the first digit of its
// artifact size. The line stays valid, canonical JSON, the record a well-formed one.
std::string TamperArtifactSize(const std::string& text, std::size_t line_no) {
  std::size_t start = 0;
  for (std::size_t n = 1; n < line_no; ++n) {
    start = text.find('\n', start) + 1;
  }
  const std::string marker = R"(\"size\":)";
  const std::size_t at = text.find(marker, start);
  if (at == std::string::npos || at > text.find('\n', start) ||
      !(text[at + marker.size()] >= '1' && text[at + marker.size()] <= '9')) {
    ADD_FAILURE() << "line " << line_no << " has no artifact size: " << text.substr(start, 400);
    return text;
  }
  std::string tampered = text;
  char& digit = tampered[at + marker.size()];
  digit = digit == '9' ? '8' : static_cast<char>(digit + 1);
  return tampered;
}

TEST_F(AuditAdminTest, ThousandsOfSignaturesExportVerifyTamperAndFind) {
  auto daemon = StartDev();
  ASSERT_NE(daemon, nullptr);

  // 10,000 small files (see Files()), each with content of its own, signed through the sign socket.
  const int file_count = Files();
  const ScratchDir scratch(logs_.path());
  const auto dist = scratch.path() / "dist";
  std::filesystem::create_directories(dist);
  std::vector<std::filesystem::path> files;
  for (int i = 0; i < file_count; ++i) {
    files.push_back(dist / ("pkg-" + std::to_string(i) + ".bin"));
    WriteFile(files.back(), "artifact " + std::to_string(i) + "\n");
  }
  const CliRun signed_all =
      Signet({"sign", "--socket", Socket().string(), "--key", "default", "-r", dist.string()});
  ASSERT_EQ(signed_all.exit_code, 0) << signed_all.err;
  ASSERT_TRUE(std::filesystem::exists(files[file_count / 2].string() + ".sig"));
  const json health = WaitForCheckpoint();
  ASSERT_TRUE(health.is_object());
  const auto tree = health["audit"]["tree_size"].get<std::uint64_t>();
  ASSERT_GT(tree, static_cast<std::uint64_t>(file_count));

  // Through the admin socket (the auditor role): a full export that verifies offline.
  const auto via_socket = logs_.path() / "audit.jsonl";
  const CliRun exported =
      Signet({"audit", "export", "--socket", AdminSocket().string(), "-o", via_socket.string()});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const CliRun verified = Verify(via_socket);
  ASSERT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  std::smatch count;
  ASSERT_TRUE(std::regex_search(
      verified.out, count, std::regex(R"(: full log: root recomputed from (\d+) records: ok\n)")))
      << verified.out;
  EXPECT_GE(std::stoull(count[1].str()), tree) << verified.out;
  EXPECT_NE(verified.out.find(": checkpoint: origin "), std::string::npos) << verified.out;

  const std::string text = ReadFile(via_socket);
  const std::vector<ExportLine> lines = RecordLines(text);
  ASSERT_GE(lines.size(), static_cast<std::size_t>(file_count));
  // A sign record in the middle, and the file it names.
  std::size_t middle = lines.size() / 2;
  while (middle < lines.size() && lines[middle].record.value("kind", "") != "sign") {
    ++middle;
  }
  ASSERT_LT(middle, lines.size());
  const ExportLine& target = lines[middle];
  const auto seq = target.record["seq"].get<std::uint64_t>();
  ASSERT_EQ(target.line_no, seq + 2);  // the header is line 1, seq 0 line 2

  // The same record changed by one byte: the full export carries each record's inclusion proof
  // (the default), so the verifier names the changed record by its line and seq.
  const auto tampered_full = logs_.path() / "tampered-full.jsonl";
  WriteFile(tampered_full, TamperArtifactSize(text, target.line_no));
  const CliRun refused_full = Verify(tampered_full);
  EXPECT_EQ(refused_full.exit_code, 1) << refused_full.out << refused_full.err;
  EXPECT_NE(refused_full.err.find(tampered_full.string() + ": line " +
                                  std::to_string(target.line_no) + " (seq " + std::to_string(seq) +
                                  "): inclusion proof does not lead to the checkpoint root: the "
                                  "record was changed"),
            std::string::npos)
      << refused_full.err;

  // Exported with --no-proofs (about half the size), the change is found only as a root that
  // does not match, on the end line.
  const auto lean = logs_.path() / "lean.jsonl";
  const CliRun exported_lean = Signet(
      {"audit", "export", "--socket", AdminSocket().string(), "--no-proofs", "-o", lean.string()});
  ASSERT_EQ(exported_lean.exit_code, 0) << exported_lean.err;
  const std::string lean_text = ReadFile(lean);
  EXPECT_EQ(lean_text.find("\"proof\""), std::string::npos);
  EXPECT_LT(lean_text.size(), text.size());
  ASSERT_EQ(Verify(lean).exit_code, 0);
  const auto tampered_lean = logs_.path() / "tampered-lean.jsonl";
  WriteFile(tampered_lean, TamperArtifactSize(lean_text, target.line_no));
  const CliRun refused_lean = Verify(tampered_lean);
  EXPECT_EQ(refused_lean.exit_code, 1) << refused_lean.out << refused_lean.err;
  EXPECT_NE(refused_lean.err.find("does not match the checkpoint root: a record was changed (an "
                                  "export with inclusion proofs, the default, names it)"),
            std::string::npos)
      << refused_lean.err;

  // A sequence-range export carries an inclusion proof per record: the changed record is named by
  // its line and seq.
  const auto ranged = logs_.path() / "ranged.jsonl";
  const CliRun exported_range =
      Signet({"audit", "export", "--socket", AdminSocket().string(), "--to-seq",
              std::to_string(lines.size()), "-o", ranged.string()});
  ASSERT_EQ(exported_range.exit_code, 0) << exported_range.err;
  const CliRun verified_range = Verify(ranged);
  ASSERT_EQ(verified_range.exit_code, 0) << verified_range.out << verified_range.err;
  EXPECT_NE(
      verified_range.out.find(": records: " + std::to_string(lines.size()) + " verified (seq 0.." +
                              std::to_string(lines.size() - 1) + "), inclusion proofs: ok\n"),
      std::string::npos)
      << verified_range.out;
  const auto tampered_range = logs_.path() / "tampered-range.jsonl";
  WriteFile(tampered_range, TamperArtifactSize(ReadFile(ranged), target.line_no));
  const CliRun refused_range = Verify(tampered_range);
  EXPECT_EQ(refused_range.exit_code, 1) << refused_range.out << refused_range.err;
  EXPECT_NE(refused_range.err.find(tampered_range.string() + ": line " +
                                   std::to_string(target.line_no) + " (seq " + std::to_string(seq) +
                                   "): inclusion proof does not lead to "
                                   "the checkpoint root: the record was changed"),
            std::string::npos)
      << refused_range.err;

  // Who signed the file of that record: key, requester, seq.
  const std::string name = target.record["artifact"]["name"].get<std::string>();
  const std::filesystem::path signed_file = std::filesystem::absolute(std::filesystem::path(name));
  ASSERT_EQ(target.record["artifact"]["digests"]["sha256"], Sha256Hex(ReadFile(signed_file)))
      << name;
  const CliRun found =
      Signet({"audit", "find", signed_file.string(), "--socket", AdminSocket().string()});
  ASSERT_EQ(found.exit_code, 0) << found.out << found.err;
  const passwd* me = ::getpwuid(::geteuid());
  ASSERT_NE(me, nullptr);
  EXPECT_NE(found.out.find("  sign allow  key default  by " + std::string(me->pw_name) + " (uid " +
                           std::to_string(::geteuid()) + ")  tool signet "),
            std::string::npos)
      << found.out;
  EXPECT_TRUE(found.out.ends_with("  seq " + std::to_string(seq) + "\n")) << found.out;
  const auto unsigned_file = logs_.path() / "never-signed.txt";
  WriteFile(unsigned_file, "nobody signed this\n");
  const CliRun not_found =
      Signet({"audit", "find", unsigned_file.string(), "--socket", AdminSocket().string()});
  EXPECT_EQ(not_found.exit_code, 1) << not_found.out;
  EXPECT_EQ(not_found.out, "");
  EXPECT_NE(not_found.err.find(unsigned_file.string() + ": no sign or deny record of digest " +
                               Sha256Hex("nobody signed this\n")),
            std::string::npos)
      << not_found.err;

  // Read directly from LMDB while signetd runs: an export that verifies too, and holds the same
  // records (and the admin export records the socket exports added, once a checkpoint covers
  // them).
  (void)WaitForCheckpoint();
  const auto via_log = logs_.path() / "audit-log.jsonl";
  const CliRun exported_log =
      Signet({"audit", "export", "--log", (State() / "audit").string(), "-o", via_log.string()});
  ASSERT_EQ(exported_log.exit_code, 0) << exported_log.err;
  const CliRun verified_log = Verify(via_log);
  ASSERT_EQ(verified_log.exit_code, 0) << verified_log.out << verified_log.err;
  const std::vector<ExportLine> log_lines = RecordLines(ReadFile(via_log));
  ASSERT_GE(log_lines.size(), lines.size() + 2);
  EXPECT_EQ(log_lines[middle].record, target.record);  // (the proofs differ: a later checkpoint)
  std::size_t exports_recorded = 0;
  for (std::size_t i = lines.size(); i < log_lines.size(); ++i) {
    const json& record = log_lines[i].record;
    if (record.value("kind", "") == "admin" && record.value("decision", "") == "export") {
      ++exports_recorded;
    }
  }
  EXPECT_EQ(exports_recorded, 3u);

  // A clean stop: the drain signs a final checkpoint and exits 0.
  ASSERT_EQ(::kill(daemon->pid(), SIGTERM), 0);
  EXPECT_EQ(daemon->Wait(std::chrono::seconds(40)), 0) << daemon->log();
}

}  // namespace
}  // namespace signet::daemon
