// Signature files on disk: atomic writes and one sync per filesystem.
#include "appliance/cli/internal/signature_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>

#include "appliance/cli/internal/console.h"

namespace signet::cli {

Status WriteAtomically(const std::string& path, std::span<const std::uint8_t> bytes, mode_t mode,
                       bool replace) {
  static std::atomic<std::uint64_t> counter{0};
  // Once per process, not a system call per file. (After a fork the child's names may repeat its
  // parent's: O_EXCL refuses those, and the next counter value is tried.)
  static const pid_t pid = ::getpid();
  std::string temp;
  UniqueFd fd;
  for (int attempt = 0; !fd; ++attempt) {
    temp = fmt::format("{}.tmp.{}.{}", path, pid, counter.fetch_add(1));
    fd = UniqueFd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    if (!fd && (errno != EEXIST || attempt == 100)) {
      return MakeError(ErrnoError(errno, temp));
    }
  }
  auto fail = [&](int err, const std::string& what) {
    ::unlink(temp.c_str());
    return MakeError(ErrnoError(err, what));
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return fail(errno, temp);
    }
    done += static_cast<std::size_t>(n);
  }
  if (auto closed = fd.Close(); !closed) {
    ::unlink(temp.c_str());
    return MakeError(closed.error());
  }
  auto exists = [&] {
    ::unlink(temp.c_str());
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} exists; use --force", DisplayName(path)));
  };
  if (replace) {
    // --force replaces a signature file, never a device, FIFO or socket of that name.
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      ::unlink(temp.c_str());
      return MakeError(
          ErrorCode::kInvalidArgument,
          fmt::format("{} exists and is not a regular file; not replaced", DisplayName(path)));
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      return fail(errno, path);
    }
    return OkStatus();
  }
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) {
    return OkStatus();
  }
  if (errno == EEXIST) {
    return exists();
  }
  if (errno != EINVAL && errno != ENOSYS) {
    return fail(errno, path);
  }
  // A filesystem without RENAME_NOREPLACE: link (which refuses an existing name), then unlink.
  if (::link(temp.c_str(), path.c_str()) != 0) {
    if (errno == EEXIST) {
      return exists();
    }
    return fail(errno, path);
  }
  ::unlink(temp.c_str());
  return OkStatus();
}

Status SyncFilesystems(const std::set<std::string>& dirs) {
  std::set<dev_t> done;
  for (const std::string& dir : dirs) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0) {
      return MakeError(ErrnoError(errno, "sync " + DisplayName(dir)));
    }
    if (!done.insert(st.st_dev).second) {
      continue;
    }
    if (::syncfs(fd.get()) != 0) {
      return MakeError(ErrnoError(errno, "sync the filesystem of " + DisplayName(dir)));
    }
  }
  return OkStatus();
}

}  // namespace signet::cli
