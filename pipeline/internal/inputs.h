// pipeline/internal/inputs.h: turning the paths a caller names into the files to hash. Not public.
#ifndef SIGNET_PIPELINE_INTERNAL_INPUTS_H_
#define SIGNET_PIPELINE_INTERNAL_INPUTS_H_

#include <tbb/task_arena.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace signet::pipeline::internal {

// Where a file is: its path, and for files found in a walked directory, that directory's open
// descriptor and the file's name in it, so that stat and open resolve one name instead of walking
// the whole path again (a large share of the kernel's work per small file). The name is the tail
// of `path` (a walk makes `path` as dir/name), so it is kept as an offset, not a second string.
struct Location {
  std::string path;  // a string, not a std::filesystem::path: that splits every path it holds
  std::shared_ptr<const UniqueFd> dir;  // may be null: then `path` is used
  std::size_t name_offset = 0;          // with `dir`: where the name within `dir` starts in `path`

  int at_fd() const;            // for *at(2) calls: dir's descriptor, or AT_FDCWD
  const char* at_name() const;  // name (with dir) or the whole path
};

// One file to hash, or one input refused before it was opened.
struct InputEntry {
  Location where;
  FileIdentity seen;           // from lstat (stat when following symlinks); valid without error
  std::optional<Error> error;  // why this input is refused (missing, FIFO, directory, ...)
  // While expanding only: the file's type bits, and whether it has been stat'ed yet.
  unsigned mode = 0;
  bool stat_done = false;
};

// ExpandInputs returns one entry per file in input order, directory entries in byte order of their
// names. Nothing is opened for reading: types come from lstat/stat, so FIFOs, sockets and devices
// are refused without blocking. The lstat calls run in parallel in `arena`.
std::vector<InputEntry> ExpandInputs(std::span<const std::filesystem::path> paths, bool recursive,
                                     bool follow_symlinks, tbb::task_arena& arena);

// Describes a file type for "is a FIFO" style messages: "a FIFO", "a socket", ...
std::string_view FileTypeName(unsigned mode);

}  // namespace signet::pipeline::internal

#endif  // SIGNET_PIPELINE_INTERNAL_INPUTS_H_
