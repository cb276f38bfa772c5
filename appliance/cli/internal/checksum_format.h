// Private to appliance/cli: the checksum line formats of GNU coreutils 9.1 (`sha256sum`, `b2sum`,
// with and without --tag), written and parsed byte for byte as coreutils does.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_CHECKSUM_FORMAT_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_CHECKSUM_FORMAT_H_

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"
#include "pipeline/pipeline.h"

namespace signet::cli {

using pipeline::DigestAlgorithm;

// The BSD tag coreutils prints with --tag: "SHA256", "SHA384", "SHA512", "BLAKE2b".
std::string_view DigestTag(DigestAlgorithm algorithm);

// Whether coreutils escapes `name` in an output line: it holds '\\', '\n' or '\r'.
bool NeedsEscape(std::string_view name);
// Escapes '\\' as "\\\\", '\n' as "\\n", '\r' as "\\r"; every other byte stays as is.
std::string EscapeName(std::string_view name);
// Reverses EscapeName. nullopt when `escaped` holds a '\\' followed by anything else, a trailing
// lone '\\', or a NUL byte: coreutils then calls the line improperly formatted.
std::optional<std::string> UnescapeName(std::string_view escaped);

// Appends "HEX  NAME\n", or "\\HEX  ESCAPED\n" when NeedsEscape(name): what `sha256sum` prints.
void AppendGnuLine(std::string& out, std::string_view hex, std::string_view name);
// Appends "TAG (NAME) = HEX\n" (with the same '\\' prefix and escaping): what `--tag` prints.
void AppendTaggedLine(std::string& out, DigestAlgorithm algorithm, std::string_view hex,
                      std::string_view name);
// Appends NAME as `sha256sum -c` shows it in "NAME: OK": prefixed with '\\' and escaped only when
// it holds a '\n' (coreutils 9.1 leaves '\\' and '\r' alone there unless a '\n' is present).
void AppendCheckedName(std::string& out, std::string_view name);

// One properly formatted line of a checksum file.
struct ChecksumEntry {
  std::string path;  // unescaped
  DigestAlgorithm algorithm = DigestAlgorithm::kSha256;
  Bytes expected;  // DigestLength(algorithm) bytes
};

// ChecksumParser parses the lines of one checksum file the way `sha256sum -c` does:
//   [blanks][\]HEX(blank)(' '|'*')NAME     GNU; '*' is binary mode, which means nothing here
//   [blanks][\]HEX(blank)NAME               "reversed BSD" (`md5 -r`), only if the first line was
//   [blanks][\]TAG[ ](NAME)[blanks]=[blanks]HEX   BSD tagged; the name ends at the last ')'
// A leading '\\' means NAME is escaped (see UnescapeName). Hex may be upper or lower case.
//
// The algorithm of a line: its tag, else the one given that has the hex's length, else, when none
// is given, the hex length (64 sha256, 96 sha384, 128 sha512). BLAKE2b-512 has the length of
// SHA-512, so an untagged b2sum line needs `-a blake2b512`. A tag not among those given, or a
// length that fits none, makes the line improperly formatted. Not thread-safe (it keeps the
// GNU/reversed-BSD choice made by the first line, as coreutils does).
class ChecksumParser {
 public:
  // `allowed`: the algorithms named with -a; empty means "deduce from each line".
  explicit ChecksumParser(std::span<const DigestAlgorithm> allowed);

  // Parses one line without its "\n" (a trailing "\r" is the caller's to strip). nullopt when the
  // line is improperly formatted.
  std::optional<ChecksumEntry> Parse(std::string_view line);

 private:
  std::optional<DigestAlgorithm> AlgorithmFor(std::optional<DigestAlgorithm> tag,
                                              std::size_t hex_length) const;
  std::optional<ChecksumEntry> ParseTagged(std::string_view rest, DigestAlgorithm tag,
                                           bool escaped) const;
  // The entry for a line's parts, once its form is known; nullopt when they do not make one.
  std::optional<ChecksumEntry> MakeEntry(std::optional<DigestAlgorithm> tag, std::string_view hex,
                                         std::string_view name, bool escaped) const;

  std::vector<DigestAlgorithm> allowed_;
  int bsd_reversed_ = -1;  // -1: not yet known, 0: GNU lines, 1: reversed BSD lines
};

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_CHECKSUM_FORMAT_H_
