// `signet audit export (--log DIR | --socket ADMIN_SOCK) ...`: streams an export of the audit log
// (audit::ExportDirectory, which opens the LMDB environment read-only next to a running signetd;
// or GET /v1/audit/export on signetd's admin socket) to standard output, or to a file that appears
// under its name only once it is complete and fsync'd.
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/cli/cli.h"
#include "appliance/cli/internal/audit_query.h"
#include "appliance/cli/internal/command.h"
#include "appliance/cli/internal/daemon_client.h"
#include "appliance/cli/internal/output_file.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kAccessHint =
    "an export opens the log read-only, but LMDB needs read access to data.mdb and write access "
    "to lock.mdb in the log directory: run it as the user signetd runs as, or as root";

constexpr std::string_view kExportFooter = R"footer(
Writes an export of the audit log as JSON Lines (the format is in Signet's sources,
appliance/audit/FORMAT.md): a header with the latest signed checkpoint, one line per record
selected with its inclusion proof in that checkpoint's tree, and an end line. With no selection it
is a full export: every record, and the verifier recomputes the root. Records committed after the latest signed checkpoint are left out
(signetd signs one shortly after records arrive). Check an export with `signet audit verify`.

Selections combine: a record is exported when it matches all of them. Ranges are half-open:
--from-seq A --to-seq B selects A <= seq < B, and --since T1 --until T2 selects T1 <= time < T2.
TIME is RFC 3339 in UTC or with an offset (2026-11-27T10:00:00Z, 2026-11-27T10:00:00.123456+01:00)
or @SECONDS (Unix time). --identity matches a user name (or user:NAME), uid:N, a certificate
subject or a certificate fingerprint; --key a key name or fingerprint; --digest an artifact's digest
under any algorithm.

With --log DIR the log is opened read-only and can be exported while signetd is running. LMDB
still needs read access to DIR/data.mdb and write access to DIR/lock.mdb: run this as the user
signetd runs as, or as root. With --socket ADMIN_SOCK signetd makes the export (GET
/v1/audit/export on its admin socket; the auditor role in its policy is needed), records that it
did before the first byte leaves, and streams it: an export of any size is fine, and one cut short
(signetd stopped, the connection lost) fails here without replacing FILE.

With -o FILE the export goes to a temporary file next to FILE, is fsync'd and renamed over FILE: an
export that fails leaves FILE as it was. A summary line goes to stderr unless --quiet.

To check a later export against this one, make the later one with --consistency-from SIZE (this
export's checkpoint size, in its summary line), or make it a full export.

Exit status: 0 exported, 1 the export failed (log missing or unreadable, no signed checkpoint yet,
a write error), 2 bad command line.

Examples:
  signet audit export --log /var/lib/signet/audit -o audit-full.jsonl
  signet audit export --socket /var/lib/signet/admin/admin.sock --key release -o release.jsonl
  signet audit export --log /var/lib/signet/audit --since 2026-11-01T00:00:00Z \
      --until 2026-12-01T00:00:00Z -o november.jsonl
  signet audit export --log /var/lib/signet/audit --digest "$(sha256sum app.tar.gz | cut -c1-64)"
  signet audit export --log /var/lib/signet/audit --from-seq 5000 --consistency-from 5000 \
      -o since-5000.jsonl)footer";

// ---- Parsing option values ---------------------------------------------------------------------

Error UsageError(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

// A sequence number: plain decimal digits (no sign, no "0x"), at most 2^64 - 1.
Result<std::uint64_t> ParseSeq(std::string_view option, std::string_view text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return MakeError(UsageError(
        fmt::format("{} '{}' is not a sequence number (a whole number 0 to 18446744073709551615)",
                    option, DisplayName(text))));
  }
  return value;
}

// ParseTimeUs (audit::ParseTimeUs) with the option's name in the error.
Result<std::int64_t> ParseTimeUs(std::string_view option, std::string_view text) {
  auto parsed = audit::ParseTimeUs(text);
  if (!parsed) {
    return MakeError(UsageError(fmt::format("{} '{}' {}; accepted: {}", option, DisplayName(text),
                                            parsed.error().message(), audit::kTimeForms)));
  }
  return parsed;
}

// ---- The summary -------------------------------------------------------------------------------

// Tally watches the lines going out for the summary line: the checkpoint (from the header) and the
// record lines' indexes. Record lines start with {"index":N, (canonical JSON, keys sorted); the
// header and end lines are parsed.
struct Tally {
  std::uint64_t records = 0;
  std::optional<std::uint64_t> first_seq;
  std::uint64_t last_seq = 0;
  std::optional<std::uint64_t> checkpoint_size;

  void See(std::string_view line) {
    constexpr std::string_view kRecordPrefix = R"({"index":)";
    if (line.starts_with(kRecordPrefix)) {
      std::uint64_t seq = 0;
      const char* begin = line.data() + kRecordPrefix.size();
      if (std::from_chars(begin, line.data() + line.size(), seq).ec == std::errc()) {
        ++records;
        first_seq = first_seq.value_or(seq);
        last_seq = seq;
      }
      return;
    }
    json object = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!object.is_object() || object.find("type") == object.end() || object["type"] != "header") {
      return;
    }
    auto note = object.find("checkpoint");
    if (note == object.end() || !note->is_string()) {
      return;
    }
    // Not verified (that is `signet audit verify`'s job): only read for its size.
    auto parsed = audit::ParseNote(note->get_ref<const std::string&>());
    if (parsed) {
      if (auto checkpoint = audit::ParseCheckpointText(parsed->text)) {
        checkpoint_size = checkpoint->size;
      }
    }
  }

  std::string Summary(std::string_view destination) const {
    std::string text = fmt::format("exported {} record{}", records, records == 1 ? "" : "s");
    if (first_seq) {
      text += fmt::format(" (seq {}..{})", *first_seq, last_seq);
    }
    if (checkpoint_size) {
      text += fmt::format(" against checkpoint of size {}", *checkpoint_size);
    }
    return text + fmt::format(" to {}", destination);
  }
};

// ---- The command -------------------------------------------------------------------------------

class AuditExportCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  // Turns the option strings into ExportOptions. Errors: kInvalidArgument naming the option.
  [[nodiscard]] Result<audit::ExportOptions> Validate() const;
  // Refuses a --log that is not an LMDB environment before LMDB opens it (LMDB would create
  // lock.mdb in any directory). Errors: kNotFound, kInvalidArgument, kPermissionDenied, kIo.
  [[nodiscard]] Status CheckLogDirectory() const;
  // The message for a failure of ExportDirectory, naming the log and saying what to do.
  std::string Explain(const Error& error) const;

  // With --socket: fetches the export from signetd into `writer`. Errors: the connection's,
  // kUnavailable (signetd refused: its message), those of `writer`.
  [[nodiscard]] Status FetchExport(const audit::ExportOptions& options, Tally& tally,
                                   OutputFile& writer, std::optional<Error>& write_error);

  std::string log_dir_;
  std::string socket_;
  std::string from_seq_;
  std::string to_seq_;
  std::string since_;
  std::string until_;
  std::string key_;
  std::string identity_;
  std::string digest_;
  std::vector<std::string> consistency_from_;
  std::string output_;
  bool quiet_ = false;
  bool no_proofs_ = false;

  CLI::Option* log_option_ = nullptr;
  CLI::Option* socket_option_ = nullptr;
  CLI::Option* from_seq_option_ = nullptr;
  CLI::Option* to_seq_option_ = nullptr;
  CLI::Option* since_option_ = nullptr;
  CLI::Option* until_option_ = nullptr;
  CLI::Option* digest_option_ = nullptr;
  CLI::Option* output_option_ = nullptr;
};

CLI::App* AuditExportCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "export",
      "Export the audit log with proofs against its latest signed checkpoint (read-only, also "
      "while signetd runs)");
  log_option_ =
      app->add_option("--log", log_dir_,
                      "The audit log's directory (holding data.mdb); needs read access to "
                      "data.mdb and write access to lock.mdb: run as signetd's user or root")
          ->type_name("DIR");
  socket_option_ =
      app->add_option("--socket", socket_,
                      "Export through signetd's admin socket instead (admin.sock; needs the "
                      "auditor role)")
          ->type_name("ADMIN_SOCK");
  from_seq_option_ =
      app->add_option("--from-seq", from_seq_, "First sequence number to export (inclusive)")
          ->type_name("N");
  to_seq_option_ =
      app->add_option("--to-seq", to_seq_, "Sequence number to stop before (exclusive)")
          ->type_name("N");
  since_option_ = app->add_option("--since", since_,
                                  "Records committed at or after TIME (inclusive): RFC 3339 "
                                  "(2026-11-27T10:00:00Z, ...+01:00) or @SECONDS")
                      ->type_name("TIME");
  until_option_ = app->add_option("--until", until_, "Records committed before TIME (exclusive)")
                      ->type_name("TIME");
  app->add_option("--key", key_, "Records made with this key (name or hex SHA-256 fingerprint)")
      ->type_name("NAME_OR_FINGERPRINT");
  app->add_option("--identity", identity_,
                  "Records requested by: a user name (or user:NAME), uid:N, a certificate subject "
                  "or fingerprint")
      ->type_name("ID");
  digest_option_ =
      app->add_option("--digest", digest_,
                      "Records of the artifact with this digest (hex; sha256, sha384, sha512 or "
                      "blake2b512)")
          ->type_name("HEX");
  app->add_option("--consistency-from", consistency_from_,
                  "Carry a consistency proof from the checkpoint of this size (an earlier "
                  "export's) to this export's; repeatable")
      ->type_name("N")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  output_option_ =
      app->add_option("-o,--output", output_,
                      "Write to FILE (atomically: a temporary file renamed once complete) instead "
                      "of standard output")
          ->type_name("FILE");
  app->add_flag("--no-proofs", no_proofs_,
                "A full export without each record's inclusion proof: about half the size, but a "
                "changed record is then found only as a wrong root, not named");
  app->add_flag("-q,--quiet", quiet_, "No summary line on stderr");
  app->footer(std::string(kExportFooter));
  return app;
}

Result<audit::ExportOptions> AuditExportCommand::Validate() const {
  audit::ExportOptions options;
  if ((log_option_->count() > 0) == (socket_option_->count() > 0)) {
    return MakeError(UsageError(
        "give --log DIR (the audit log's directory) or --socket ADMIN_SOCK (signetd's admin "
        "socket), one of them"));
  }
  if (log_option_->count() > 0 && log_dir_.empty()) {
    return MakeError(UsageError("--log needs the audit log's directory"));
  }
  if (socket_option_->count() > 0 && socket_.empty()) {
    return MakeError(UsageError("--socket needs the admin socket's path"));
  }
  if (from_seq_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(options.from_seq, ParseSeq("--from-seq", from_seq_));
  }
  if (to_seq_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(options.to_seq, ParseSeq("--to-seq", to_seq_));
    if (options.from_seq > *options.to_seq) {
      return MakeError(UsageError(fmt::format(
          "--from-seq {} is past --to-seq {} (the range is [from, to): --to-seq is exclusive)",
          options.from_seq, *options.to_seq)));
    }
  }
  if (since_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(options.from_time_us, ParseTimeUs("--since", since_));
  }
  if (until_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(options.to_time_us, ParseTimeUs("--until", until_));
    if (options.from_time_us && *options.from_time_us > *options.to_time_us) {
      return MakeError(UsageError(
          fmt::format("--since {} is after --until {}", DisplayName(since_), DisplayName(until_))));
    }
  }
  options.key = key_;
  options.identity = identity_;
  if (digest_option_->count() > 0) {
    if (auto hex = HexDecode(digest_); !hex || hex->empty()) {
      return MakeError(
          UsageError(fmt::format("--digest '{}' is not a hex digest{}", DisplayName(digest_),
                                 hex ? std::string() : ": " + DisplayName(hex.error().message()))));
    }
    options.digest = digest_;
  }
  for (const std::string& size : consistency_from_) {
    SIGNET_ASSIGN_OR_RETURN(std::uint64_t from, ParseSeq("--consistency-from", size));
    options.consistency_from.push_back(from);
  }
  options.full_proofs = !no_proofs_;
  if (output_option_->count() > 0 && output_.empty()) {
    return MakeError(UsageError("-o needs a file name"));
  }
  return options;
}

Status AuditExportCommand::CheckLogDirectory() const {
  const std::string shown = DisplayName(log_dir_);
  struct stat st;
  if (::stat(log_dir_.c_str(), &st) != 0) {
    return MakeError(ErrnoError(errno, shown));
  }
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     shown +
                         " is not a directory: --log names the directory of the audit log "
                         "(the one holding data.mdb)");
  }
  const std::string data = (std::filesystem::path(log_dir_) / "data.mdb").string();
  if (::stat(data.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return MakeError(ErrorCode::kNotFound,
                       shown +
                           " is not a Signet audit log (no data.mdb): --log names the "
                           "directory signetd keeps its audit log in");
    }
    return MakeError(ErrnoError(errno, DisplayName(data)));
  }
  return OkStatus();
}

std::string AuditExportCommand::Explain(const Error& error) const {
  std::string message = DisplayName(error.message());
  // The log names ExportOptions fields ("consistency_from 50 is past ..."); say the options.
  constexpr std::pair<std::string_view, std::string_view> kOptionNames[] = {
      {"consistency_from", "--consistency-from"},
      {"digest", "--digest"},
      {"from_seq", "--from-seq"},
      {"to_seq", "--to-seq"},
      {"from_time_us", "--since"},
      {"to_time_us", "--until"}};
  for (const auto& [field, option] : kOptionNames) {
    if (error.code() == ErrorCode::kInvalidArgument && message.starts_with(field) &&
        message.size() > field.size() &&
        (message[field.size()] == ' ' || message[field.size()] == ':')) {
      message.replace(0, field.size(), option);
      break;
    }
  }
  const std::string shown = DisplayName(log_dir_);
  if (message.find(shown) == std::string::npos) {
    message = shown + ": " + message;
  }
  if (error.code() == ErrorCode::kPermissionDenied) {
    message += fmt::format(" ({})", kAccessHint);
  }
  return message;
}

int AuditExportCommand::Run(Console& console) {
  auto options = Validate();
  if (!options) {
    console.Err(fmt::format("signet audit export: {}\nRun with --help for more information.\n",
                            options.error().message()));
    return kExitUsage;
  }
  const bool remote = socket_option_->count() > 0;
  if (auto usable = remote ? OkStatus() : CheckLogDirectory(); !usable) {
    console.Error(Explain(usable.error()));
    return kExitFailed;
  }
  std::unique_ptr<OutputFile> writer;
  if (output_option_->count() > 0) {
    auto file = OutputFile::ToFile(output_, "-o", "the export");
    if (!file) {
      console.Error(file.error().message());
      return kExitFailed;
    }
    writer = std::move(*file);
  } else {
    // A reader that goes away (`| head`) is a write error (EPIPE), reported, not a silent death.
    ::signal(SIGPIPE, SIG_IGN);
    writer = OutputFile::ToStdout();
  }

  Tally tally;
  std::optional<Error> write_error;  // the sink's own failure, told apart from the log's
  Status exported = remote ? FetchExport(*options, tally, *writer, write_error)
                           : audit::ExportDirectory(log_dir_, *options, [&](std::string_view line) {
                               tally.See(line);
                               Status written = writer->Write(line);
                               if (!written) {
                                 write_error = written.error();
                               }
                               return written;
                             });
  if (exported) {
    if (Status finished = writer->Finish(); !finished) {
      write_error = finished.error();
      exported = std::move(finished);
    }
  }
  if (!exported) {
    std::string message = write_error ? write_error->message()
                          : remote    ? DisplayName(exported.error().message())
                                      : Explain(exported.error());
    console.Error(message + writer->UnchangedNote());
    return kExitFailed;
  }
  if (!quiet_) {
    console.Error(tally.Summary(writer->destination()));
  }
  return kExitOk;
}

Status AuditExportCommand::FetchExport(const audit::ExportOptions& options, Tally& tally,
                                       OutputFile& writer, std::optional<Error>& write_error) {
  Endpoint endpoint;
  endpoint.socket = socket_;
  SIGNET_ASSIGN_OR_RETURN(auto client, DaemonClient::Connect(endpoint));
  const std::string query = AuditFilterQuery(options);
  // The export streams: each whole line goes to the writer as it arrives.
  const std::size_t max_line_bytes = audit::VerifyOptions{}.max_line_bytes;
  std::string partial;
  std::string last_line;
  const auto sink = [&](std::string_view piece) -> bool {
    while (!piece.empty()) {
      const std::size_t nl = piece.find('\n');
      if (nl == std::string_view::npos) {
        partial.append(piece);
        if (partial.size() > max_line_bytes) {
          write_error =
              Error(ErrorCode::kInvalidArgument,
                    fmt::format("signetd's export has a line longer than {} bytes (the verifier's "
                                "limit): not an export",
                                max_line_bytes));
          return false;
        }
        return true;
      }
      partial.append(piece.substr(0, nl + 1));
      piece.remove_prefix(nl + 1);
      tally.See(partial);
      if (Status written = writer.Write(partial); !written) {
        write_error = written.error();
        return false;
      }
      last_line = std::move(partial);
      partial.clear();
    }
    return true;
  };
  auto answer = client->GetStreamed("/v1/audit/export" + (query.empty() ? "" : "?" + query), sink);
  if (write_error) {
    return MakeError(*write_error);
  }
  if (!answer) {
    return MakeError(answer.error());
  }
  if (answer->status != 200) {
    return MakeError(ErrorCode::kUnavailable, DescribeRefusal(*answer));
  }
  // It must end with its end line, or it was cut short.
  if (!partial.empty() || !last_line.starts_with(R"({"records":)")) {
    return MakeError(
        ErrorCode::kUnavailable,
        fmt::format("signetd's export from {} is truncated (no end line)", DisplayName(socket_)));
  }
  return OkStatus();
}

}  // namespace

std::unique_ptr<Command> MakeAuditExportCommand() { return std::make_unique<AuditExportCommand>(); }

}  // namespace signet::cli
