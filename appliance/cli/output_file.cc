// A file that appears under its name only once it is whole and fsync'd.
#include "appliance/cli/internal/output_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <filesystem>

#include "appliance/cli/internal/console.h"

namespace signet::cli {
namespace {

// Writes are gathered into writes of about this size.
constexpr std::size_t kWriteBuffer = 1 << 20;

// The temporary file being written, for the signal handler to remove; empty when there is none.
// A fixed buffer: the handler may only call async-signal-safe functions (unlink, raise).
char pending_temp_path[PATH_MAX];

extern "C" void RemoveTempFileAndDie(int sig) {
  if (pending_temp_path[0] != '\0') {
    ::unlink(pending_temp_path);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

Status WriteAll(int fd, std::string_view bytes, std::string_view what) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return MakeError(ErrnoError(errno, what));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return OkStatus();
}

}  // namespace

OutputFile::OutputFile(int fd, std::string path)
    : fd_(fd), path_(std::move(path)), what_(path_.empty() ? "write to standard output" : "") {
  buffer_.reserve(kWriteBuffer);
}

OutputFile::~OutputFile() {
  if (!temp_path_.empty()) {
    pending_temp_path[0] = '\0';
    file_.Reset();
    ::unlink(temp_path_.c_str());
  }
}

std::unique_ptr<OutputFile> OutputFile::ToStdout() {
  return std::unique_ptr<OutputFile>(new OutputFile(STDOUT_FILENO, ""));
}

Result<std::unique_ptr<OutputFile>> OutputFile::ToFile(const std::string& path,
                                                       std::string_view option,
                                                       std::string_view contents, bool replace) {
  struct stat st;
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} {}: is a directory; name the file to write {} to", option,
                                 DisplayName(path), contents));
  }
  if (exists && !S_ISREG(st.st_mode)) {
    // A device, FIFO or socket (/dev/stdout, /dev/null, a pipe): written to as a shell
    // redirection would, never replaced by a rename (as root, that would replace /dev/null).
    UniqueFd special(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!special) {
      return MakeError(ErrnoError(errno, fmt::format("{} {}: open", option, DisplayName(path))));
    }
    auto writer = std::unique_ptr<OutputFile>(new OutputFile(special.get(), ""));
    writer->what_ = "write " + DisplayName(path);
    writer->special_path_ = path;
    writer->file_ = std::move(special);
    return writer;
  }
  if (exists && !replace) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        fmt::format("{} {}: exists; use --force to replace it", option, DisplayName(path)));
  }
  std::string temp = path + ".tmp.XXXXXX";
  if (temp.size() >= sizeof pending_temp_path) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} {}: the name is too long", option, DisplayName(path)));
  }
  // The signals stay blocked from before the file exists until the handler knows its name: no
  // moment has it on disk with no one to remove it.
  sigset_t signals;
  sigemptyset(&signals);
  struct sigaction action {};
  action.sa_handler = RemoveTempFileAndDie;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    sigaddset(&signals, sig);
    ::sigaction(sig, &action, nullptr);
  }
  sigset_t old_mask;
  ::sigprocmask(SIG_BLOCK, &signals, &old_mask);
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  const int create_errno = errno;
  if (fd) {
    std::copy(temp.begin(), temp.end(), pending_temp_path);
    pending_temp_path[temp.size()] = '\0';
  }
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  if (!fd) {
    return MakeError(ErrnoError(create_errno, fmt::format("{} {}: create {}", option,
                                                          DisplayName(path), DisplayName(temp))));
  }
  auto writer = std::unique_ptr<OutputFile>(new OutputFile(fd.get(), path));
  writer->temp_path_ = temp;
  writer->what_ = "write " + DisplayName(temp);
  writer->file_ = std::move(fd);
  // mkstemp makes the file 0600; give it the mode a shell redirection would.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  if (::fchmod(writer->fd_, 0666 & ~mask) != 0) {
    return MakeError(ErrnoError(errno, "chmod " + DisplayName(temp)));
  }
  return writer;
}

Status OutputFile::Write(std::string_view bytes) {
  if (buffer_.size() + bytes.size() > kWriteBuffer) {
    SIGNET_RETURN_IF_ERROR(Drain());
  }
  if (bytes.size() >= kWriteBuffer) {
    return WriteAll(fd_, bytes, what_);
  }
  buffer_.append(bytes);
  return OkStatus();
}

Status OutputFile::Drain() {
  Status written = WriteAll(fd_, buffer_, what_);
  buffer_.clear();
  return written;
}

Status OutputFile::Finish() {
  SIGNET_RETURN_IF_ERROR(Drain());
  if (path_.empty()) {
    return OkStatus();
  }
  const std::string shown = DisplayName(temp_path_);
  if (::fsync(fd_) != 0) {
    return MakeError(ErrnoError(errno, "fsync " + shown));
  }
  if (auto closed = file_.Close(); !closed) {
    return MakeError(std::move(closed).error().WithContext("close " + shown));
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return MakeError(ErrnoError(errno, fmt::format("rename {} to {}", shown, DisplayName(path_))));
  }
  temp_path_.clear();
  pending_temp_path[0] = '\0';
  // The rename itself is durable once the directory is synced. Some filesystems cannot fsync a
  // directory (EINVAL); the file's data is safe regardless.
  std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  if (parent.empty()) {
    parent = ".";
  }
  UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir && ::fsync(dir.get()) != 0 && errno != EINVAL && errno != ENOTSUP) {
    return MakeError(ErrnoError(errno, "fsync " + DisplayName(parent.string())));
  }
  return OkStatus();
}

std::string OutputFile::destination() const {
  return !special_path_.empty() ? DisplayName(special_path_)
         : path_.empty()        ? "standard output"
                                : DisplayName(path_);
}

std::string OutputFile::UnchangedNote() const {
  if (!replaces_file() || renamed()) {
    return "";
  }
  std::error_code ec;
  const bool exists = std::filesystem::exists(path_, ec);
  return fmt::format(" ({} {})", DisplayName(path_), exists ? "is unchanged" : "was not created");
}

}  // namespace signet::cli
