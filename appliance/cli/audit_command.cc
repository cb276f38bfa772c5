// `signet audit`: the parent of `signet audit export` (audit_export_command.cc), `signet audit
// find` (audit_find_command.cc) and
// `signet audit verify EXPORT... --key-file PUB.pem`, which checks exports of the audit log offline
// (no daemon, no LMDB) with audit::VerifyExport, then checks that the exports' checkpoints extend
// each other with audit::VerifyConsistent.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/cli/cli.h"
#include "appliance/cli/internal/audit_query.h"
#include "appliance/cli/internal/command.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
// A header holds a checkpoint note (at most kMaxNoteBytes), escaped, and some proofs.
constexpr std::size_t kMaxHeaderBytes = 4 * audit::kMaxNoteBytes;

constexpr std::string_view kVerifyFooter = R"(
Each EXPORT is what `signet audit export` wrote. Checked: the checkpoint's signature by the key in
--key-file (named --key-name, by default the checkpoint's origin line); every record's bytes and
its inclusion proof in the checkpoint's tree, or for a full export the root recomputed from all of
the records; that nothing was removed, reordered or added. With several exports, they are ordered
by checkpoint size and each must be a prefix of the next (a consistency proof the larger export
carries, or the prefix root a full export recomputes). To check an older export against a newer
one, make the newer one with `signet audit export --consistency-from SIZE` (SIZE: the older
export's checkpoint size) or as a full export.

Exit status: 0 everything verified, 1 a check failed (the first bad line and record are named),
2 bad command line.

Examples:
  signet audit verify audit-2024-06.jsonl --key-file audit.pub.pem
  signet audit verify june.jsonl july.jsonl --key-file audit.pub.pem --json)";

// One export named on the command line.
struct Checked {
  std::string path;
  audit::NoteVerifier key;
  std::optional<audit::ExportSummary> summary;  // set when it verified
};

Result<Bytes> ReadKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError(ErrnoError(errno, path));
  }
  std::string bytes;
  bytes.resize(kMaxKeyFileBytes + 1);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.bad()) {
    return MakeError(ErrnoError(errno, path));
  }
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  if (bytes.size() > kMaxKeyFileBytes) {
    return MakeError(ErrorCode::kInvalidArgument, path +
                                                      ": larger than a public key file can be (" +
                                                      std::to_string(kMaxKeyFileBytes) + " bytes)");
  }
  return Bytes(bytes.begin(), bytes.end());
}

// The checkpoint in a file's header line, not yet verified: its origin names the key by default,
// and its size says which prefix roots the other exports should report.
Result<audit::Checkpoint> PeekCheckpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError(ErrnoError(errno, path));
  }
  std::string line;
  for (std::istreambuf_iterator<char> it(in), end; it != end && *it != '\n'; ++it) {
    if (line.size() == kMaxHeaderBytes) {
      return MakeError(ErrorCode::kInvalidArgument, "line 1 is too long for an export header");
    }
    line.push_back(*it);
  }
  json header = json::parse(line, nullptr, /*allow_exceptions=*/false);
  auto note = header.is_object() ? header.find("checkpoint") : header.end();
  if (!header.is_object() || note == header.end() || !note->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "line 1 is not the header of an audit export (no \"checkpoint\")");
  }
  SIGNET_ASSIGN_OR_RETURN(audit::SignedNote signed_note,
                          audit::ParseNote(note->get_ref<const std::string&>()));
  return audit::ParseCheckpointText(signed_note.text);
}

// "[a-z0-9...]" names as C2SP allows them: not empty, no space or '+', no control character.
bool ValidKeyName(std::string_view name) {
  return !name.empty() && std::ranges::none_of(name, [](char c) {
    return c == ' ' || c == '+' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

std::string KeyId(std::uint32_t id) { return fmt::format("{:08x}", id); }

class AuditCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  int RunVerify(Console& console);
  // Verifies one export; prints what was checked or the first failure. True when it verified.
  bool VerifyOne(Console& console, Checked& checked, const audit::VerifyOptions& options);
  void CheckPair(Console& console, const Checked& older, const Checked& newer, bool* ok);

  std::unique_ptr<Command> export_command_ = MakeAuditExportCommand();
  std::unique_ptr<Command> find_command_ = MakeAuditFindCommand();
  CLI::App* export_ = nullptr;
  CLI::App* find_ = nullptr;
  CLI::App* verify_ = nullptr;
  std::vector<std::string> exports_;
  std::string key_file_;
  std::string key_name_;
  bool json_ = false;
};

CLI::App* AuditCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "audit",
      "Export the tamper-evident audit log, verify exports offline, find who signed a file");
  app->require_subcommand(1, 1);
  export_ = export_command_->Register(*app);
  find_ = find_command_->Register(*app);
  verify_ = app->add_subcommand(
      "verify",
      "Verify audit log exports offline against the audit public key, and that they "
      "extend each other");
  verify_->add_option("EXPORT", exports_, "Export files (JSON Lines) to verify")->required();
  verify_
      ->add_option("--key-file,--key", key_file_,
                   "The audit key's public key (PEM or DER SubjectPublicKeyInfo)")
      ->type_name("FILE")
      ->required();
  verify_
      ->add_option("--key-name", key_name_,
                   "The key name in the checkpoints' signature lines (default: each "
                   "checkpoint's origin line)")
      ->type_name("NAME");
  verify_->add_flag("--json", json_, "One JSON object per export and per consistency check");
  verify_->footer(std::string(kVerifyFooter));
  return app;
}

int AuditCommand::Run(Console& console) {
  if (export_->parsed()) {
    return export_command_->Run(console);
  }
  if (find_->parsed()) {
    return find_command_->Run(console);
  }
  if (verify_->parsed()) {
    return RunVerify(console);
  }
  return kExitUsage;  // unreachable: require_subcommand(1, 1)
}

int AuditCommand::RunVerify(Console& console) {
  if (!key_name_.empty() && !ValidKeyName(key_name_)) {
    console.Err(
        fmt::format("signet audit verify: --key-name '{}' is not a key name (no spaces, "
                    "'+' or control characters)\nRun with --help for more information.\n",
                    DisplayName(key_name_)));
    return kExitUsage;
  }
  auto key = ReadKeyFile(key_file_);
  if (!key) {
    console.Error(DisplayName(key.error().message()));
    return kExitFailed;
  }
  // The key itself once, under a name that is surely valid: a later failure is the name's.
  if (auto usable = audit::MakeNoteVerifier("signet", *key); !usable) {
    console.Error(DisplayName(key_file_ + ": " + usable.error().message()));
    return kExitFailed;
  }

  bool ok = true;
  std::vector<Checked> checked;
  std::vector<std::uint64_t> sizes;  // of every export: prefix roots a full export reports
  for (const std::string& path : exports_) {
    auto peeked = PeekCheckpoint(path);
    if (!peeked) {
      // Without a readable header there is neither a default key name nor anything to verify.
      const std::string& message = peeked.error().message();
      console.Error(DisplayName(message.starts_with(path) ? message : path + ": " + message));
      ok = false;
      continue;
    }
    const std::string name = key_name_.empty() ? peeked->origin : key_name_;
    auto verifier = audit::MakeNoteVerifier(name, *key);
    if (!verifier) {
      console.Error(DisplayName(
          key_name_.empty()
              ? fmt::format("{}: the checkpoint's origin '{}' cannot name a key: {} (name the "
                            "key with --key-name)",
                            path, name, verifier.error().message())
              : fmt::format("--key-name '{}': {}", name, verifier.error().message())));
      ok = false;
      continue;
    }
    sizes.push_back(peeked->size);
    checked.push_back(Checked{path, std::move(*verifier), std::nullopt});
  }

  audit::VerifyOptions options;
  options.roots_at = sizes;
  for (Checked& one : checked) {
    ok = VerifyOne(console, one, options) && ok;
  }

  // Consistency among the exports that verified, smallest checkpoint first.
  std::vector<const Checked*> good;
  for (const Checked& one : checked) {
    if (one.summary) {
      good.push_back(&one);
    }
  }
  std::ranges::stable_sort(good, {}, [](const Checked* c) { return c->summary->checkpoint.size; });
  for (std::size_t i = 1; i < good.size(); ++i) {
    CheckPair(console, *good[i - 1], *good[i], &ok);
  }

  if (auto flushed = console.Flush(); !flushed) {
    console.Error(flushed.error().message());
    return kExitFailed;
  }
  return ok ? kExitOk : kExitFailed;
}

bool AuditCommand::VerifyOne(Console& console, Checked& checked,
                             const audit::VerifyOptions& options) {
  const std::string& path = checked.path;
  std::ifstream in(path, std::ios::binary);
  Result<audit::ExportSummary> summary =
      in ? audit::VerifyExport(in, checked.key, options) : MakeError(ErrnoError(errno, path));
  if (!summary) {
    const Error& error = summary.error();
    console.Error(DisplayName(error.message().starts_with(path) ? error.message()
                                                                : path + ": " + error.message()));
    if (json_) {
      console.Out(
          json{{"type", "export"},
               {"file", path},
               {"ok", false},
               {"error", {{"code", ErrorCodeName(error.code())}, {"message", error.message()}}}}
              .dump(-1, ' ', false, json::error_handler_t::replace) +
          "\n");
    }
    return false;
  }
  const audit::ExportSummary& s = *summary;
  const audit::Checkpoint& cp = s.checkpoint;
  if (json_) {
    json line{{"type", "export"},
              {"file", path},
              {"ok", true},
              {"origin", cp.origin},
              {"size", cp.size},
              {"root", Base64Encode(cp.root)},
              {"key_name", checked.key.name},
              {"key_id", KeyId(checked.key.key_id)},
              {"full", s.full},
              {"records", s.records}};
    if (s.first_seq) {
      line["first_seq"] = *s.first_seq;
      line["last_seq"] = *s.last_seq;
    }
    console.Out(line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
  } else {
    const std::string shown = DisplayName(path);
    std::string text = fmt::format(
        "{}: checkpoint: origin {}, size {}, signed by {} (key ID {}): ok\n", shown,
        DisplayName(cp.origin), cp.size, DisplayName(checked.key.name), KeyId(checked.key.key_id));
    if (s.full) {
      text += fmt::format("{}: full log: root recomputed from {} records: ok\n", shown, s.records);
    } else if (s.records == 0) {
      text += fmt::format("{}: records: none (the export's filters selected none)\n", shown);
    } else {
      text += fmt::format("{}: records: {} verified (seq {}..{}), inclusion proofs: ok\n", shown,
                          s.records, *s.first_seq, *s.last_seq);
    }
    console.Out(text);
  }
  checked.summary = std::move(*summary);
  return true;
}

void AuditCommand::CheckPair(Console& console, const Checked& older, const Checked& newer,
                             bool* ok) {
  const std::uint64_t m = older.summary->checkpoint.size;
  const std::uint64_t n = newer.summary->checkpoint.size;
  const std::string what = fmt::format("consistency {} (size {}) → {} (size {})",
                                       DisplayName(older.path), m, DisplayName(newer.path), n);
  Status consistent = audit::VerifyConsistent(*older.summary, *newer.summary);
  if (json_) {
    json line{{"type", "consistency"},
              {"older", older.path},
              {"newer", newer.path},
              {"from", m},
              {"to", n},
              {"ok", consistent.has_value()}};
    if (!consistent) {
      line["error"] = {{"code", ErrorCodeName(consistent.error().code())},
                       {"message", consistent.error().message()}};
    }
    console.Out(line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
  }
  if (!consistent) {
    console.Error(fmt::format("{}: {}", what, consistent.error().message()));
    *ok = false;
    return;
  }
  if (!json_) {
    console.Out(what + ": ok\n");
  }
}

}  // namespace

std::unique_ptr<Command> MakeAuditCommand() { return std::make_unique<AuditCommand>(); }

}  // namespace signet::cli
