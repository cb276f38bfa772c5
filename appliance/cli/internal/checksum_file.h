// Private to appliance/cli: reading a checksum file for `signet digest --check`.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_CHECKSUM_FILE_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_CHECKSUM_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "appliance/base/base.h"
#include "appliance/cli/internal/checksum_format.h"

namespace signet::cli {

// Limits on what --check reads: a longer line or a larger file is refused as a whole, before any
// file is hashed, so a hostile or corrupt checksum file cannot exhaust memory.
inline constexpr std::size_t kMaxChecksumLine = 64 * 1024;                   // bytes, without "\n"
inline constexpr std::uint64_t kMaxChecksumFile = std::uint64_t{256} << 20;  // bytes

struct ChecksumFile {
  std::vector<ChecksumEntry> entries;  // the properly formatted lines, in file order
  std::uint64_t improper_lines = 0;    // lines that are neither entries, comments nor empty
};

// ReadChecksumFile reads and parses the checksum file `name` ("-" for standard input) with
// `parser`. Lines are split at "\n"; one trailing "\r" is dropped (files written on Windows);
// empty lines and lines starting with '#' are skipped, as coreutils does.
// Errors: kNotFound / kPermissionDenied / kIo (open or read failed; a directory is kIo),
// kInvalidArgument (a line longer than kMaxChecksumLine, naming its number, or a file larger than
// kMaxChecksumFile). Messages name the file.
[[nodiscard]] Result<ChecksumFile> ReadChecksumFile(const std::string& name,
                                                    ChecksumParser& parser);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_CHECKSUM_FILE_H_
