// Private to appliance/cli: the shape every `signet` subcommand has, so that main.cc only lists
// them. A subcommand lives in its own files and adds itself with a MakeXxxCommand() factory.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_COMMAND_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_COMMAND_H_

#include <CLI/CLI.hpp>
#include <memory>

#include "appliance/cli/internal/console.h"

namespace signet::cli {

// Command is one subcommand: it declares its options on a CLI11 subcommand, then runs once the
// command line has been parsed. Not thread-safe; used by main only.
class Command {
 public:
  virtual ~Command() = default;

  // Adds the subcommand and its options to `parent` and returns it. The returned App and the
  // variables its options write to must outlive parsing: they belong to this Command.
  virtual CLI::App* Register(CLI::App& parent) = 0;

  // Runs the parsed command and returns the process exit status (kExitOk, kExitFailed,
  // kExitUsage). Output goes through `console` only.
  virtual int Run(Console& console) = 0;
};

// `signet digest`: hashes files, or checks a checksum file (digest_command.cc).
std::unique_ptr<Command> MakeDigestCommand();
// `signet audit`: `export` and `verify` (audit_command.cc).
std::unique_ptr<Command> MakeAuditCommand();
// `signet audit export`: exports the audit log read-only (audit_export_command.cc). Registered
// under `signet audit` by MakeAuditCommand's command, not by main.
std::unique_ptr<Command> MakeAuditExportCommand();
// `signet verify`: checks raw detached signatures locally with a public key (verify_command.cc).
std::unique_ptr<Command> MakeVerifyCommand();
// `signet sign`: has signetd sign the files' digests, writing FILE.sig (sign_command.cc).
std::unique_ptr<Command> MakeSignCommand();
// `signet keys list|show`: the keys signetd signs with (keys_command.cc).
std::unique_ptr<Command> MakeKeysCommand();
// `signet admin policy|keys|stats`: the admin socket (admin_command.cc).
std::unique_ptr<Command> MakeAdminCommand();

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_COMMAND_H_
