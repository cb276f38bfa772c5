// `signet audit find FILE...|--digest HEX (--socket ADMIN_SOCK | --log DIR) [--json]`: who signed
// this, when, with which key, approved by whom. Hashes each FILE with SHA-256 (the pipeline), then
// asks for the records of that digest: from signetd's admin API (GET /v1/audit/records?digest=,
// the auditor role) or from the log directory opened read-only (audit::RecordsInDirectory). Prints
// one line per sign or deny record.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/cli/cli.h"
#include "appliance/cli/internal/audit_query.h"
#include "appliance/cli/internal/command.h"
#include "appliance/cli/internal/daemon_client.h"
#include "pipeline/pipeline.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::size_t kPage = 1000;
// Records looked at per digest, all pages together (an artifact signed this often is a bug).
constexpr std::size_t kMaxRecordsPerDigest = 100000;
constexpr std::size_t kMaxTargets = 10000;

constexpr std::string_view kFindFooter = R"footer(
Answers "who signed this, when, with which key, approved by whom" from the audit log. Each FILE is
hashed with SHA-256 where it is; --digest takes a digest in hex (sha256, sha384, sha512 or
blake2b512). Each sign or deny record of that digest is one line:

  FILE  TIME  KIND DECISION  key NAME  by REQUESTER  tool NAME VERSION  host HOST  approved by ...  seq N

TIME is the commit time (RFC 3339, UTC). REQUESTER is the Unix user and uid, or the client
certificate's subject. Tool and host are what the client declared. With --json, one JSON object per
record: {"target", "digest", "time", "record"} where "record" is the audit record itself.

The log is reached through signetd's admin socket (--socket, needs the auditor role), or read from
its directory (--log, read-only, while signetd runs; needs signetd's user or root). Records
committed but not yet under a signed checkpoint are shown too; `signet audit export --digest HEX`
gives the same records with proofs.

Exit status: 0 a record was found for every target, 1 some target has none (or a failure), 2 bad
command line.

Examples:
  signet audit find dist/app-1.2.tar.gz --socket /var/lib/signet/admin/admin.sock
  signet audit find --digest 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 \
      --log /var/lib/signet/audit --json)footer";

// What to look for: a file's SHA-256, or a digest given.
struct Target {
  std::string label;  // the file name, or the digest as given
  std::string hex;    // lower-case
  bool file = false;
};

// A source of record pages: the admin API or the log directory.
using PageSource = std::function<Result<audit::RecordPage>(const audit::ExportOptions&)>;

class AuditFindCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  // Errors: kInvalidArgument naming the option.
  [[nodiscard]] Status Validate() const;
  // Hashes the files; prints each failure. False when one failed.
  bool HashFiles(Console& console, std::vector<Target>& targets);
  [[nodiscard]] Result<PageSource> MakeSource();
  // Prints the sign and deny records of `target`; returns how many. Errors: the source's.
  [[nodiscard]] Result<std::size_t> Find(Console& console, const PageSource& source,
                                         const Target& target);

  std::vector<std::string> files_;
  std::vector<std::string> digests_;
  std::string socket_;
  std::string log_dir_;
  bool json_ = false;
  CLI::Option* socket_option_ = nullptr;
  CLI::Option* log_option_ = nullptr;
  std::unique_ptr<DaemonClient> client_;
};

CLI::App* AuditFindCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "find", "Who signed a file (or digest), when, with which key, approved by whom");
  app->add_option("FILE", files_, "Files to look up (hashed with SHA-256)");
  app->add_option("--digest", digests_, "A digest to look up, in hex; repeatable")
      ->type_name("HEX")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  socket_option_ = app->add_option("--socket", socket_,
                                   "signetd's admin socket (admin.sock; needs the auditor role)")
                       ->type_name("ADMIN_SOCK");
  log_option_ = app->add_option("--log", log_dir_,
                                "The audit log's directory, read directly (signetd's user or root)")
                    ->type_name("DIR");
  app->add_flag("--json", json_, "One JSON object per record");
  app->footer(std::string(kFindFooter));
  return app;
}

Status AuditFindCommand::Validate() const {
  if (files_.empty() && digests_.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "name a FILE or give --digest HEX");
  }
  if (files_.size() + digests_.size() > kMaxTargets) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("at most {} files and digests at a time", kMaxTargets));
  }
  if ((socket_option_->count() > 0) == (log_option_->count() > 0)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "give --socket ADMIN_SOCK (signetd's admin socket) or --log DIR (the audit "
                     "log's directory), one of them");
  }
  if ((socket_option_->count() > 0 && socket_.empty()) ||
      (log_option_->count() > 0 && log_dir_.empty())) {
    return MakeError(ErrorCode::kInvalidArgument, "--socket and --log need a path");
  }
  for (const std::string& digest : digests_) {
    auto raw = HexDecode(digest);
    const std::size_t n = raw ? raw->size() : 0;
    if (n != 32 && n != 48 && n != 64) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("--digest '{}' is not a hex digest (64 hex digits for sha256, "
                                   "96 for sha384, 128 for sha512 or blake2b512)",
                                   DisplayName(digest.substr(0, 140))));
    }
  }
  return OkStatus();
}

bool AuditFindCommand::HashFiles(Console& console, std::vector<Target>& targets) {
  if (files_.empty()) {
    return true;
  }
  pipeline::HashOptions options;
  options.follow_symlinks = true;  // only read: a link names the artifact as well as its target
  auto hasher = pipeline::Hasher::Create(options);
  if (!hasher) {
    console.Error(hasher.error().message());
    return false;
  }
  std::vector<std::filesystem::path> paths(files_.begin(), files_.end());
  std::map<std::uint64_t, Target> done;  // by ordinal: input order
  bool ok = true;
  hasher->Run(paths, [&](pipeline::FileOutcome outcome) {
    if (!outcome.digest) {
      const std::string& name = outcome.path;
      const std::string& message = outcome.digest.error().message();
      console.Error(DisplayName(message.starts_with(name) ? message : name + ": " + message));
      ok = false;
      return;
    }
    done[outcome.ordinal] = Target{outcome.path, outcome.digest->digests.front().Hex(),
                                   /*file=*/true};
  });
  for (auto& [ordinal, target] : done) {
    targets.push_back(std::move(target));
  }
  return ok;
}

Result<PageSource> AuditFindCommand::MakeSource() {
  if (log_option_->count() > 0) {
    return PageSource([dir = log_dir_](const audit::ExportOptions& filter) {
      auto page = audit::RecordsInDirectory(dir, filter, kPage);
      if (!page) {
        return Result<audit::RecordPage>(
            MakeError(page.error().WithContext("audit log " + DisplayName(dir))));
      }
      return page;
    });
  }
  Endpoint endpoint;
  endpoint.socket = socket_;
  SIGNET_ASSIGN_OR_RETURN(client_, DaemonClient::Connect(endpoint));
  return PageSource([this](const audit::ExportOptions& filter) -> Result<audit::RecordPage> {
    const std::string target =
        "/v1/audit/records?" + AuditFilterQuery(filter) + "&limit=" + std::to_string(kPage);
    SIGNET_ASSIGN_OR_RETURN(HttpAnswer answer, client_->Get(target));
    if (answer.status != 200) {
      return MakeError(ErrorCode::kUnavailable, DescribeRefusal(answer));
    }
    const json body = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("records") || !body["records"].is_array() ||
        !body.contains("next_seq")) {
      return MakeError(ErrorCode::kUnavailable,
                       "signetd's answer to GET /v1/audit/records is not a page of records");
    }
    audit::RecordPage page;
    for (const json& record : body["records"]) {
      if (!record.is_object() || !record.contains("seq") || !record["seq"].is_number_unsigned()) {
        return MakeError(ErrorCode::kUnavailable, "signetd answered a record without a seq");
      }
      page.records.push_back(
          audit::StoredRecord{record["seq"].get<std::uint64_t>(),
                              record.dump(-1, ' ', false, json::error_handler_t::replace)});
    }
    if (body["next_seq"].is_number_unsigned()) {
      page.next_seq = body["next_seq"].get<std::uint64_t>();
    }
    return page;
  });
}

std::string Requester(const audit::Identity& who) {
  if (!who.user.empty()) {
    return who.uid ? fmt::format("{} (uid {})", who.user, *who.uid) : who.user;
  }
  if (who.uid) {
    return fmt::format("uid {}", *who.uid);
  }
  if (!who.cert_subject.empty()) {
    return fmt::format("\"{}\"", who.cert_subject);
  }
  return who.cert_fingerprint.empty() ? "?" : "cert " + who.cert_fingerprint;
}

std::string Line(const Target& target, const audit::Record& r) {
  std::string line = fmt::format("{}  {}  {} {}", target.label, FormatTimeUs(r.time_us),
                                 audit::RecordKindName(r.kind), r.decision);
  line += fmt::format("  key {}", r.key_name.empty() ? "?" : r.key_name);
  line += fmt::format("  by {}", Requester(r.requester));
  if (!r.tool_name.empty()) {
    line +=
        fmt::format("  tool {}{}", r.tool_name, r.tool_version.empty() ? "" : " " + r.tool_version);
  }
  if (!r.client_host.empty()) {
    line += fmt::format("  host {}", r.client_host);
  }
  if (!r.approvers.empty()) {
    std::string names;
    for (const audit::Approver& approver : r.approvers) {
      names += (names.empty() ? "" : ", ") + approver.identity;
    }
    line += "  approved by " + names;
  }
  line += fmt::format("  seq {}", r.seq);
  if (r.kind == audit::RecordKind::kDeny && !r.detail.empty()) {
    line += "  reason: " + r.detail;
  }
  return DisplayName(line) + "\n";
}

Result<std::size_t> AuditFindCommand::Find(Console& console, const PageSource& source,
                                           const Target& target) {
  audit::ExportOptions filter;
  filter.digest = target.hex;
  std::size_t found = 0;
  std::size_t looked = 0;
  for (;;) {
    SIGNET_ASSIGN_OR_RETURN(audit::RecordPage page, source(filter));
    for (const audit::StoredRecord& stored : page.records) {
      auto record = audit::ParseRecord(stored.bytes);
      if (!record) {
        return MakeError(record.error().WithContext(fmt::format("record {}", stored.seq)));
      }
      if (record->kind != audit::RecordKind::kSign && record->kind != audit::RecordKind::kDeny) {
        continue;
      }
      ++found;
      if (json_) {
        json line{{"target", target.label},
                  {"digest", target.hex},
                  {"time", FormatTimeUs(record->time_us)},
                  {"record", json::parse(stored.bytes, nullptr, false)}};
        console.Out(line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
      } else {
        console.Out(Line(target, *record));
      }
    }
    looked += page.records.size();
    if (!page.next_seq || looked >= kMaxRecordsPerDigest) {
      return found;
    }
    filter.from_seq = *page.next_seq;
  }
}

int AuditFindCommand::Run(Console& console) {
  if (auto valid = Validate(); !valid) {
    console.Err(fmt::format("signet audit find: {}\nRun with --help for more information.\n",
                            valid.error().message()));
    return kExitUsage;
  }
  std::vector<Target> targets;
  bool ok = HashFiles(console, targets);
  for (const std::string& digest : digests_) {
    targets.push_back(Target{digest, HexEncode(*HexDecode(digest)), /*file=*/false});
  }
  auto source = MakeSource();
  if (!source) {
    console.Error(source.error().message());
    return kExitFailed;
  }
  for (const Target& target : targets) {
    auto found = Find(console, *source, target);
    if (!found) {
      console.Error(DisplayName(found.error().message()));
      return kExitFailed;  // the source failed: the next target would fail alike
    }
    if (*found == 0) {
      console.Error(DisplayName(fmt::format(
          "{}: no sign or deny record of digest {} in the audit log", target.label, target.hex)));
      ok = false;
    }
  }
  if (auto flushed = console.Flush(); !flushed) {
    console.Error(flushed.error().message());
    return kExitFailed;
  }
  return ok ? kExitOk : kExitFailed;
}

}  // namespace

std::unique_ptr<Command> MakeAuditFindCommand() { return std::make_unique<AuditFindCommand>(); }

}  // namespace signet::cli
