#include "appliance/cli/internal/checksum_format.h"

#include <algorithm>

namespace signet::cli {
namespace {

// coreutils' ISWHITE: the blanks that may separate fields.
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// The tags a line may carry, longest first so that "BLAKE2b-512" is not read as "BLAKE2b".
struct Tag {
  std::string_view text;
  DigestAlgorithm algorithm;
};
constexpr Tag kTags[] = {
    {"BLAKE2b-512", DigestAlgorithm::kBlake2b512}, {"BLAKE2b", DigestAlgorithm::kBlake2b512},
    {"SHA256", DigestAlgorithm::kSha256},          {"SHA384", DigestAlgorithm::kSha384},
    {"SHA512", DigestAlgorithm::kSha512},
};

void AppendMaybeEscaped(std::string& out, std::string_view name, bool escape) {
  if (escape) {
    out += EscapeName(name);
  } else {
    out += name;
  }
}

// The file name of a line: unescaped when the line began with '\\'. nullopt for a bad escape, a
// NUL byte or an empty name.
std::optional<std::string> TakeName(std::string_view name, bool escaped) {
  std::optional<std::string> path;
  if (escaped) {
    path = UnescapeName(name);
  } else if (name.find('\0') == std::string_view::npos) {
    path = std::string(name);
  }
  if (path && path->empty()) {
    return std::nullopt;
  }
  return path;
}

}  // namespace

std::string_view DigestTag(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256:
      return "SHA256";
    case DigestAlgorithm::kSha384:
      return "SHA384";
    case DigestAlgorithm::kSha512:
      return "SHA512";
    case DigestAlgorithm::kBlake2b512:
      return "BLAKE2b";
  }
  return "UNKNOWN";
}

bool NeedsEscape(std::string_view name) {
  return name.find_first_of("\\\n\r") != std::string_view::npos;
}

std::string EscapeName(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 8);
  for (char c : name) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::optional<std::string> UnescapeName(std::string_view escaped) {
  std::string out;
  out.reserve(escaped.size());
  for (std::size_t i = 0; i < escaped.size(); ++i) {
    char c = escaped[i];
    if (c == '\0') {
      return std::nullopt;
    }
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i == escaped.size()) {
      return std::nullopt;
    }
    switch (escaped[i]) {
      case '\\':
        out += '\\';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      default:
        return std::nullopt;
    }
  }
  return out;
}

void AppendGnuLine(std::string& out, std::string_view hex, std::string_view name) {
  bool escape = NeedsEscape(name);
  if (escape) {
    out += '\\';
  }
  out += hex;
  out += "  ";
  AppendMaybeEscaped(out, name, escape);
  out += '\n';
}

void AppendTaggedLine(std::string& out, DigestAlgorithm algorithm, std::string_view hex,
                      std::string_view name) {
  bool escape = NeedsEscape(name);
  if (escape) {
    out += '\\';
  }
  out += DigestTag(algorithm);
  out += " (";
  AppendMaybeEscaped(out, name, escape);
  out += ") = ";
  out += hex;
  out += '\n';
}

void AppendCheckedName(std::string& out, std::string_view name) {
  bool escape = name.find('\n') != std::string_view::npos;
  if (escape) {
    out += '\\';
  }
  AppendMaybeEscaped(out, name, escape);
}

ChecksumParser::ChecksumParser(std::span<const DigestAlgorithm> allowed)
    : allowed_(allowed.begin(), allowed.end()) {}

std::optional<DigestAlgorithm> ChecksumParser::AlgorithmFor(std::optional<DigestAlgorithm> tag,
                                                            std::size_t hex_length) const {
  if (tag) {
    if (!allowed_.empty() && std::find(allowed_.begin(), allowed_.end(), *tag) == allowed_.end()) {
      return std::nullopt;
    }
    if (hex_length != 2 * pipeline::DigestLength(*tag)) {
      return std::nullopt;
    }
    return tag;
  }
  if (allowed_.empty()) {
    switch (hex_length) {
      case 64:
        return DigestAlgorithm::kSha256;
      case 96:
        return DigestAlgorithm::kSha384;
      case 128:
        return DigestAlgorithm::kSha512;
      default:
        return std::nullopt;
    }
  }
  // The first of the given algorithms whose digest has this length (-a order decides between
  // sha512 and blake2b512).
  for (DigestAlgorithm algorithm : allowed_) {
    if (hex_length == 2 * pipeline::DigestLength(algorithm)) {
      return algorithm;
    }
  }
  return std::nullopt;
}

std::optional<ChecksumEntry> ChecksumParser::Parse(std::string_view line) {
  std::size_t i = 0;
  while (i < line.size() && IsBlank(line[i])) {
    ++i;
  }
  bool escaped = false;
  if (i < line.size() && line[i] == '\\') {
    escaped = true;
    ++i;
  }
  std::string_view rest = line.substr(i);

  for (const Tag& tag : kTags) {
    if (rest.starts_with(tag.text)) {
      std::string_view after = rest.substr(tag.text.size());
      if (after.starts_with(' ')) {
        after.remove_prefix(1);
      }
      if (after.starts_with('(')) {
        return ParseTagged(after.substr(1), tag.algorithm, escaped);
      }
      break;  // not a tag after all; try the GNU form (it fails: a tag is not hex)
    }
  }

  std::size_t hex_length = 0;
  while (hex_length < rest.size() && IsHexDigit(rest[hex_length])) {
    ++hex_length;
  }
  if (hex_length == 0 || hex_length >= rest.size() || !IsBlank(rest[hex_length])) {
    return std::nullopt;
  }
  std::string_view hex = rest.substr(0, hex_length);
  std::size_t name_start = hex_length + 1;
  if (name_start < rest.size() && (rest[name_start] == ' ' || rest[name_start] == '*')) {
    if (bsd_reversed_ == 1) {
      // coreutils: once lines were "HEX NAME", a name starting with ' ' or '*' is just a name.
    } else {
      bsd_reversed_ = 0;
      ++name_start;
    }
  } else {
    // Refuse to mix the forms: an attacker could otherwise name a file " x" to shadow "x".
    if (bsd_reversed_ == 0) {
      return std::nullopt;
    }
    bsd_reversed_ = 1;
  }
  std::string_view name = rest.substr(name_start);

  return MakeEntry(std::nullopt, hex, name, escaped);
}

std::optional<ChecksumEntry> ChecksumParser::ParseTagged(std::string_view rest, DigestAlgorithm tag,
                                                         bool escaped) const {
  // The name ends at the last ')': BSD tools do not escape names, so '(' and ')' may be in them.
  std::size_t close = rest.rfind(')');
  if (close == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view name = rest.substr(0, close);
  std::size_t i = close + 1;
  while (i < rest.size() && IsBlank(rest[i])) {
    ++i;
  }
  if (i == rest.size() || rest[i] != '=') {
    return std::nullopt;
  }
  ++i;
  while (i < rest.size() && IsBlank(rest[i])) {
    ++i;
  }
  std::string_view hex = rest.substr(i);
  if (hex.empty() || !std::all_of(hex.begin(), hex.end(), IsHexDigit)) {
    return std::nullopt;
  }
  return MakeEntry(tag, hex, name, escaped);
}

std::optional<ChecksumEntry> ChecksumParser::MakeEntry(std::optional<DigestAlgorithm> tag,
                                                       std::string_view hex, std::string_view name,
                                                       bool escaped) const {
  std::optional<DigestAlgorithm> algorithm = AlgorithmFor(tag, hex.size());
  if (!algorithm) {
    return std::nullopt;
  }
  auto expected = HexDecode(hex);
  if (!expected) {
    return std::nullopt;
  }
  std::optional<std::string> path = TakeName(name, escaped);
  if (!path) {
    return std::nullopt;
  }
  return ChecksumEntry{std::move(*path), *algorithm, std::move(*expected)};
}

}  // namespace signet::cli
