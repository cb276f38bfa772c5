// Private to appliance/cli: stdout, stderr and the progress line, shared by threads.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_CONSOLE_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_CONSOLE_H_

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>

#include "appliance/base/base.h"

namespace signet::cli {

// Console owns the process's stdout and stderr. Thread-safe: every method may be called from any
// thread (the hasher's callback threads, the progress thread, main).
//
// - stdout gets a 1 MiB buffer and is flushed only when the buffer fills, unless it is a terminal
//   (then per line), so 20,000 lines cost a handful of write(2)s.
// - Messages to stderr first flush stdout, so that `2>&1` keeps lines in order, and first erase
//   the progress line, so that a message never lands in the middle of it.
// - The progress line is drawn only when stderr is a terminal; otherwise ShowProgress()
//   does nothing.
//
// WARNING: construct one Console, before anything writes to stdout (setvbuf must come first).
class Console {
 public:
  Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  bool stdout_is_tty() const { return stdout_tty_; }
  bool stderr_is_tty() const { return stderr_tty_; }

  // Writes `bytes` to stdout (buffered).
  void Out(std::string_view bytes);
  // Writes "signet: " + `message` + "\n" to stderr.
  void Error(std::string_view message);
  // Writes `line` (which should end in "\n") to stderr as is.
  void Err(std::string_view line);

  // Replaces the progress line with `text` (no newline; cut to the terminal's width). No-op when
  // stderr is not a terminal.
  void ShowProgress(std::string_view text);
  // Erases the progress line, if one is shown.
  void ClearProgress();

  // Flushes stdout and reports whether every write to it succeeded. Errors: kIo naming errno.
  [[nodiscard]] Status Flush();

 private:
  void ClearProgressLocked();

  std::mutex mu_;
  bool stdout_tty_ = false;
  bool stderr_tty_ = false;
  bool progress_shown_ = false;
  int write_errno_ = 0;  // the first failed write to stdout
  std::size_t columns_ = 80;
};

// DisplayName makes a file name safe for a one-line message on stderr: control characters become
// C escapes (\n, \r, \t, \xHH); everything else, including bytes that are not UTF-8, stays as is.
std::string DisplayName(std::string_view name);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_CONSOLE_H_
