// signet: the Signet client. Each subcommand is a Command in files of its own (see
// internal/command.h); this file only lists them, parses the command line and runs the one asked
// for. The only place in the client where exceptions are caught.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <memory>
#include <utility>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/command.h"
#include "appliance/cli/internal/console.h"

#ifndef SIGNET_VERSION
#error "SIGNET_VERSION must be defined by the build (appliance/cli/CMakeLists.txt)"
#endif

int main(int argc, char** argv) {
  using signet::cli::Command;
  try {
    // Library warnings (e.g. "io_uring is blocked; hashing with pread") go to stderr: stdout is
    // for digests, byte-compatible with sha256sum.
    spdlog::set_default_logger(spdlog::stderr_color_mt("signet"));
    spdlog::set_pattern("signet: %l: %v");

    CLI::App app("signet: hash artifacts where they are, and sign them with keys held in an HSM",
                 "signet");
    app.set_version_flag("--version", "signet " SIGNET_VERSION);
    app.require_subcommand(1, 1);
    app.footer("Run 'signet COMMAND --help' for a command's options.");

    // One line per subcommand.
    std::vector<std::unique_ptr<Command>> commands;
    commands.push_back(signet::cli::MakeDigestCommand());
    commands.push_back(signet::cli::MakeSignCommand());
    commands.push_back(signet::cli::MakeKeysCommand());
    commands.push_back(signet::cli::MakeAuditCommand());
    commands.push_back(signet::cli::MakeVerifyCommand());
    commands.push_back(signet::cli::MakeAdminCommand());

    std::vector<std::pair<CLI::App*, Command*>> registered;
    registered.reserve(commands.size());
    for (auto& command : commands) {
      registered.emplace_back(command->Register(app), command.get());
    }

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      // --help and --version are "errors" with exit code 0; everything else is a usage error.
      return app.exit(e) == 0 ? signet::cli::kExitOk : signet::cli::kExitUsage;
    }

    signet::cli::Console console;  // after parsing: help text may have gone to stdout already
    for (auto& [subcommand, command] : registered) {
      if (subcommand->parsed()) {
        return command->Run(console);
      }
    }
    return signet::cli::kExitUsage;  // unreachable: require_subcommand(1, 1)
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "signet: internal error: %s\n", e.what());
    return signet::cli::kExitFailed;
  }
}
