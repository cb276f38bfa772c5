// appliance/cli/internal/signature_files.h: writing signature files (.sig, .receipt) atomically
// and syncing the filesystems they went to (sign_command.cc, sign_collect.cc).
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_SIGNATURE_FILES_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_SIGNATURE_FILES_H_

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <span>
#include <string>

#include "appliance/base/base.h"

namespace signet::cli {

// Writes `bytes` to `path` through a temporary file in the same directory (created with `mode`
// less the umask), then renamed over `path` (`replace`) or renamed to it only if it does not exist
// (renameat2 RENAME_NOREPLACE; link and unlink on filesystems without it). Readers never see a
// partial `path`, and a failure leaves none. Not fsync'd one by one (a fsync per file made 20,000
// small signatures take ten times as long): the command syncs each filesystem it wrote to once,
// before it reports success (SyncFilesystems). Thread-safe. Errors: ErrnoError naming the file;
// kInvalidArgument when `path` exists and `replace` is false, or exists and is not a regular file.
[[nodiscard]] Status WriteAtomically(const std::string& path, std::span<const std::uint8_t> bytes,
                                     mode_t mode, bool replace);

// Flushes every filesystem that holds one of `dirs` (syncfs once per device), so that the
// signatures are on disk when the command says they are written. Errors: ErrnoError.
[[nodiscard]] Status SyncFilesystems(const std::set<std::string>& dirs);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_SIGNATURE_FILES_H_
