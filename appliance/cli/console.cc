#include "appliance/cli/internal/console.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace signet::cli {
namespace {

constexpr std::size_t kStdoutBuffer = 1 << 20;
// stdout's buffer. glibc ignores setvbuf's size when it allocates the buffer itself, so give it
// one. Static storage: stdio flushes stdout during exit(), after every Console is gone. Pages are
// only touched (and counted in RSS) as output fills them.
char stdout_buffer[kStdoutBuffer];

// Erases the current terminal line: back to column 0, clear to the end of the line.
constexpr std::string_view kEraseLine = "\r\033[K";

void WriteStderr(std::string_view bytes) { std::fwrite(bytes.data(), 1, bytes.size(), stderr); }

}  // namespace

Console::Console()
    : stdout_tty_(isatty(STDOUT_FILENO) == 1), stderr_tty_(isatty(STDERR_FILENO) == 1) {
  // stdout: a big buffer when it goes to a file or a pipe, line by line on a terminal. stderr stays
  // unbuffered. Nothing has been written yet, so setvbuf is allowed here.
  if (stdout_tty_) {
    std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
  } else {
    std::setvbuf(stdout, stdout_buffer, _IOFBF, kStdoutBuffer);
  }
  if (stderr_tty_) {
    winsize size{};
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
      columns_ = size.ws_col;
    }
  }
}

void Console::Out(std::string_view bytes) {
  std::lock_guard lock(mu_);
  if (progress_shown_ && stdout_tty_) {
    ClearProgressLocked();
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size() && write_errno_ == 0) {
    write_errno_ = errno != 0 ? errno : EIO;
  }
}

void Console::Error(std::string_view message) { Err(fmt::format("signet: {}\n", message)); }

void Console::Err(std::string_view line) {
  std::lock_guard lock(mu_);
  ClearProgressLocked();
  std::fflush(stdout);
  WriteStderr(line);
}

void Console::ShowProgress(std::string_view text) {
  if (!stderr_tty_) {
    return;
  }
  std::lock_guard lock(mu_);
  // A line as wide as the terminal would wrap, and "\r" would then erase only its last row.
  if (columns_ > 1 && text.size() > columns_ - 1) {
    text = text.substr(0, columns_ - 1);
  }
  if (stdout_tty_) {
    std::fflush(stdout);
  }
  WriteStderr(fmt::format("{}{}", kEraseLine, text));
  progress_shown_ = true;
}

void Console::ClearProgress() {
  std::lock_guard lock(mu_);
  ClearProgressLocked();
}

void Console::ClearProgressLocked() {
  if (progress_shown_) {
    WriteStderr(kEraseLine);
    progress_shown_ = false;
  }
}

Status Console::Flush() {
  std::lock_guard lock(mu_);
  errno = 0;
  if (std::fflush(stdout) != 0 && write_errno_ == 0) {
    write_errno_ = errno != 0 ? errno : EIO;
  }
  if (write_errno_ == 0 && std::ferror(stdout) != 0) {
    write_errno_ = EIO;
  }
  if (write_errno_ != 0) {
    return MakeError(ErrnoError(write_errno_, "write to standard output"));
  }
  return OkStatus();
}

std::string DisplayName(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (byte < 0x20 || byte == 0x7f) {
          out += fmt::format("\\x{:02x}", byte);
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace signet::cli
