#include "appliance/cli/internal/checksum_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

namespace signet::cli {
namespace {

constexpr std::size_t kReadBlock = 256 * 1024;

// Reads up to `buffer.size()` bytes, retrying on EINTR. Returns bytes read (0 at end of file).
[[nodiscard]] Result<std::size_t> ReadSome(int fd, std::span<char> buffer,
                                           const std::string& shown) {
  for (;;) {
    ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n >= 0) {
      return static_cast<std::size_t>(n);
    }
    if (errno != EINTR) {
      return MakeError(ErrnoError(errno, fmt::format("read {}", shown)));
    }
  }
}

// Handles one complete line (without its "\n").
void TakeLine(std::string_view line, ChecksumParser& parser, ChecksumFile& out) {
  if (line.starts_with('#')) {
    return;
  }
  if (line.ends_with('\r')) {
    line.remove_suffix(1);
  }
  if (line.empty()) {
    return;
  }
  if (auto entry = parser.Parse(line)) {
    out.entries.push_back(std::move(*entry));
  } else {
    ++out.improper_lines;
  }
}

}  // namespace

Result<ChecksumFile> ReadChecksumFile(const std::string& name, ChecksumParser& parser) {
  const bool is_stdin = name == "-";
  const std::string shown = is_stdin ? std::string("standard input") : name;
  UniqueFd owned;
  int fd = STDIN_FILENO;
  if (!is_stdin) {
    owned.Reset(open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!owned) {
      return MakeError(ErrnoError(errno, fmt::format("open {}", shown)));
    }
    fd = owned.get();
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    return MakeError(ErrnoError(errno, fmt::format("stat {}", shown)));
  }
  if (S_ISDIR(st.st_mode)) {
    return MakeError(ErrnoError(EISDIR, fmt::format("read {}", shown)));
  }
  auto too_large = [&] {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} is larger than {} MiB, the most --check reads; split it",
                                 shown, kMaxChecksumFile >> 20));
  };
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > kMaxChecksumFile) {
    return too_large();
  }

  ChecksumFile out;
  std::string pending;  // the start of a line whose "\n" has not been read yet
  std::vector<char> block(kReadBlock);
  std::uint64_t total = 0;
  std::uint64_t line_number = 1;
  auto line_too_long = [&] {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{}: line {} is longer than {} bytes, the most --check accepts",
                                 shown, line_number, kMaxChecksumLine));
  };
  for (;;) {
    SIGNET_ASSIGN_OR_RETURN(std::size_t n, ReadSome(fd, block, shown));
    if (n == 0) {
      break;
    }
    total += n;
    if (total > kMaxChecksumFile) {
      return too_large();  // a pipe, or a file that grew
    }
    std::string_view data(block.data(), n);
    while (!data.empty()) {
      std::size_t newline = data.find('\n');
      std::string_view piece = data.substr(0, newline);
      if (pending.size() + piece.size() > kMaxChecksumLine) {
        return line_too_long();
      }
      if (newline == std::string_view::npos) {
        pending += piece;
        break;
      }
      if (pending.empty()) {
        TakeLine(piece, parser, out);
      } else {
        pending += piece;
        TakeLine(pending, parser, out);
        pending.clear();
      }
      ++line_number;
      data.remove_prefix(newline + 1);
    }
  }
  if (!pending.empty()) {
    TakeLine(pending, parser, out);  // a last line without "\n"
  }
  return out;
}

}  // namespace signet::cli
