// Private to appliance/cli: `signet digest`, split into option handling (digest_command.cc),
// hashing files (hash_command.cc) and checking a checksum file (check_command.cc).
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_DIGEST_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_DIGEST_H_

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "appliance/base/base.h"
#include "appliance/cli/internal/console.h"
#include "pipeline/pipeline.h"

namespace signet::cli {

// The validated command line of `signet digest`.
struct DigestSettings {
  pipeline::HashOptions hash;                // algorithms (distinct, -a order), threads, chunk, ...
  bool algorithms_given = false;             // -a was used (--check then trusts only those)
  bool tag = false;                          // BSD tagged lines even for one algorithm
  bool json = false;                         // one JSON object per file
  std::vector<std::filesystem::path> paths;  // PATH... in argument order
  std::optional<std::string> check_file;     // --check FILE ("-": standard input)
};

// RunHash prints the digests of settings.paths. Returns the exit status.
int RunHash(const DigestSettings& settings, Console& console);
// RunCheck verifies settings.check_file. Returns the exit status.
int RunCheck(const DigestSettings& settings, Console& console);

// MakeHasher creates the hasher for `options`. Errors: those of Hasher::Create, with the options
// at fault named (--jobs and --chunk-size, or --backend).
[[nodiscard]] Result<pipeline::Hasher> MakeHasher(const pipeline::HashOptions& options);

// ReportSetupError prints `error` (a bad option, or a refusal before any file was read) and
// returns the exit status it calls for: kExitUsage for kInvalidArgument, kExitFailed otherwise.
int ReportSetupError(Console& console, const Error& error);

// ReportFileError prints "signet: NAME: MESSAGE" for a file that could not be hashed (just
// "signet: MESSAGE" when the message already starts with the name), control characters escaped.
void ReportFileError(Console& console, const std::filesystem::path& path, const Error& error);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_DIGEST_H_
