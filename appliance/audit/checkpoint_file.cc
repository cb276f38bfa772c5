// The checkpoint file outside the LMDB directory: see internal/checkpoint_file.h.
#include "appliance/audit/internal/checkpoint_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <utility>

namespace signet::audit::internal {
namespace {

// Only the tail is read at open: a checkpoint a second for years is still a bounded read.
constexpr off_t kTailBytes = 256 * 1024;

Status FsyncDir(const std::filesystem::path& dir) {
  UniqueFd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) {
    return MakeError(ErrnoError(errno, "fsync directory " + dir.string()));
  }
  return OkStatus();
}

}  // namespace

std::pair<std::optional<std::string>, std::size_t> LastNote(std::string_view text) {
  // A note is: text lines, an empty line, signature lines ("— "), an empty line. Walk line by
  // line and remember the last note whose terminating empty line was seen.
  std::optional<std::string> last;
  std::size_t last_end = 0;
  std::size_t note_start = 0;
  enum class Part { kText, kSignatures } part = Part::kText;
  bool have_signature = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) {
      break;  // a torn line
    }
    const std::string_view line = text.substr(pos, nl - pos);
    const std::size_t next = nl + 1;
    if (part == Part::kText) {
      if (line.empty()) {
        part = Part::kSignatures;
        have_signature = false;
      }
    } else if (line.empty()) {
      if (have_signature) {
        last = std::string(text.substr(note_start, nl - note_start));
        last_end = next;
      }
      note_start = next;
      part = Part::kText;
    } else if (line.starts_with("\xE2\x80\x94 ")) {
      have_signature = true;
    } else {
      // Not a signature line: resynchronise on the next note.
      part = Part::kText;
      note_start = next;
    }
    pos = next;
  }
  return {std::move(last), last_end};
}

Result<CheckpointFile> CheckpointFile::Open(const std::filesystem::path& path,
                                            std::string_view origin) {
  CheckpointFile file;
  file.path_ = path;
  file.fd_.Reset(::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!file.fd_) {
    return MakeError(ErrnoError(errno, "open checkpoint file " + path.string()));
  }
  struct stat st;
  if (::fstat(file.fd_.get(), &st) != 0) {
    return MakeError(ErrnoError(errno, "stat checkpoint file " + path.string()));
  }
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "checkpoint file " + path.string() + " is not a regular file");
  }
  if (st.st_size == 0) {
    SIGNET_RETURN_IF_ERROR(FsyncDir(path.parent_path()));
    return file;
  }
  const off_t start = st.st_size > kTailBytes ? st.st_size - kTailBytes : 0;
  std::string tail(static_cast<std::size_t>(st.st_size - start), '\0');
  std::size_t got = 0;
  while (got < tail.size()) {
    const ssize_t n = ::pread(file.fd_.get(), tail.data() + got, tail.size() - got,
                              start + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return MakeError(ErrnoError(n == 0 ? EIO : errno, "read checkpoint file " + path.string()));
    }
    got += static_cast<std::size_t>(n);
  }
  auto [note, end] = LastNote(tail);
  file.latest_ = std::move(note);
  // Cut a torn append (bytes after the last complete note), so the next note starts cleanly; but
  // only when they are the start of one of our checkpoints, never someone else's file.
  const off_t complete = start + static_cast<off_t>(end);
  if (complete < st.st_size) {
    const std::string_view rest = std::string_view(tail).substr(end);
    const std::string first_line = std::string(origin) + "\n";
    const bool ours = rest.size() < first_line.size()
                          ? std::string_view(first_line).starts_with(rest)
                          : rest.starts_with(first_line);
    if (!ours || (!file.latest_ && start > 0)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "checkpoint file " + path.string() +
                           " ends with bytes that are not a signed checkpoint of \"" +
                           std::string(origin) + "\"; is checkpoint_file the right file?");
    }
    spdlog::warn("checkpoint file {}: cutting {} bytes of a torn append", path.string(),
                 st.st_size - complete);
    if (::ftruncate(file.fd_.get(), complete) != 0 || ::fdatasync(file.fd_.get()) != 0) {
      return MakeError(ErrnoError(errno, "cut the torn end of " + path.string()));
    }
  }
  return file;
}

Status CheckpointFile::Append(std::string_view note) {
  std::string data(note);
  data.push_back('\n');
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd_.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return MakeError(ErrnoError(errno, "append to checkpoint file " + path_.string()));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd_.get()) != 0) {
    return MakeError(ErrnoError(errno, "fdatasync checkpoint file " + path_.string()));
  }
  latest_ = std::string(note);
  return OkStatus();
}

}  // namespace signet::audit::internal
