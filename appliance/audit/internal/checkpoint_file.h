// appliance/audit/internal/checkpoint_file.h: the append-only file of signed checkpoints kept
// outside the LMDB directory. Private to signet::audit.
//
// Format: signed notes, each followed by one empty line (so the file is a readable sequence of
// notes, and `tail` shows the latest). Checkpoint texts hold no empty line, which keeps the
// sequence unambiguous. Every append is fdatasync'd before Append returns.
#ifndef SIGNET_APPLIANCE_AUDIT_INTERNAL_CHECKPOINT_FILE_H_
#define SIGNET_APPLIANCE_AUDIT_INTERNAL_CHECKPOINT_FILE_H_

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "appliance/base/base.h"

namespace signet::audit::internal {

class CheckpointFile {
 public:
  CheckpointFile() = default;
  // Opens `path` for appending, creating it (mode 0600, directory entry fsync'd) when missing.
  // Reads the last complete note; a torn last append (a crash mid-write: bytes after the last
  // note that start with the `origin` line) is cut off. Errors: kIo, kPermissionDenied,
  // kInvalidArgument (not a regular file, or trailing bytes that are not a checkpoint of `origin`:
  // the wrong file).
  [[nodiscard]] static Result<CheckpointFile> Open(const std::filesystem::path& path,
                                                   std::string_view origin);

  // The last complete note in the file, if any.
  const std::optional<std::string>& latest() const { return latest_; }
  // Appends `note` and an empty line, then fdatasync. Errors: kIo.
  [[nodiscard]] Status Append(std::string_view note);

 private:
  std::filesystem::path path_;
  UniqueFd fd_;
  std::optional<std::string> latest_;
};

// The last complete note in `text` and the offset just past it (0 and nothing when there is
// none). Exposed for tests.
std::pair<std::optional<std::string>, std::size_t> LastNote(std::string_view text);

}  // namespace signet::audit::internal

#endif  // SIGNET_APPLIANCE_AUDIT_INTERNAL_CHECKPOINT_FILE_H_
