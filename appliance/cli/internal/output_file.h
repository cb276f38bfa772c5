// appliance/cli/internal/output_file.h: a file that appears under its name only once it is whole
// and fsync'd (audit_export_command.cc: -o FILE; sign_command.cc: --bundle FILE).
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_OUTPUT_FILE_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_OUTPUT_FILE_H_

#include <memory>
#include <string>
#include <string_view>

#include "appliance/base/base.h"

namespace signet::cli {

// OutputFile writes to standard output, or to FILE.tmp.XXXXXX that Finish() fsyncs and renames
// over FILE. Writes are gathered into large ones; the first failed write is returned. A temporary
// file not renamed is removed by the destructor, or by the signal handler on SIGINT, SIGTERM or
// SIGHUP. FILE naming a device, FIFO or socket (/dev/stdout, a pipe) is written in place, as a
// shell redirection would, never replaced. One per process; not thread-safe.
class OutputFile {
 public:
  static std::unique_ptr<OutputFile> ToStdout();
  // `option` and `contents` word the errors: "-o FILE: is a directory; name the file to write
  // the export to". Errors: kInvalidArgument (`path` is a directory; a name too long; a regular
  // `path` exists and `replace` is false), those of creating the temporary file.
  [[nodiscard]] static Result<std::unique_ptr<OutputFile>> ToFile(const std::string& path,
                                                                  std::string_view option,
                                                                  std::string_view contents,
                                                                  bool replace = true);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  [[nodiscard]] Status Write(std::string_view bytes);

  // Writes what is buffered; for a file, fsyncs it, renames it over its name and fsyncs the
  // directory. Errors: kIo and the like, naming the file.
  [[nodiscard]] Status Finish();

  // Whether FILE is a regular file (written to a temporary file, then renamed over it).
  bool replaces_file() const { return !path_.empty(); }
  // Whether FILE has been replaced.
  bool renamed() const { return !path_.empty() && temp_path_.empty(); }
  // The temporary file, until it is renamed (empty when FILE is written in place).
  const std::string& temp_path() const { return temp_path_; }
  // What a summary line calls the destination.
  std::string destination() const;
  // " (FILE is unchanged)" or " (FILE was not created)" for a failure before the rename; empty
  // otherwise.
  std::string UnchangedNote() const;

 private:
  OutputFile(int fd, std::string path);
  [[nodiscard]] Status Drain();

  int fd_;
  UniqueFd file_;             // the temporary file, or the special file
  std::string path_;          // FILE, when it is replaced
  std::string temp_path_;     // FILE.tmp.XXXXXX until it is renamed
  std::string what_;          // how a failed write is described
  std::string special_path_;  // FILE names a device, FIFO or socket: written in place
  std::string buffer_;
};

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_OUTPUT_FILE_H_
