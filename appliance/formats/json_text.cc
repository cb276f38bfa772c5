// JSON text as nlohmann writes it (formats.h), without building nlohmann objects.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <string>

#include "appliance/formats/formats.h"

namespace signet::formats {
namespace {

constexpr std::uint64_t kHighBits = 0x8080808080808080ull;
constexpr std::uint64_t kOnes = 0x0101010101010101ull;

std::uint64_t Load8(const char* p) {
  std::uint64_t word;
  std::memcpy(&word, p, sizeof word);
  return word;
}

// Whether any byte of `word` is below 0x20, '"' or '\\' (or past 0x7F, which the caller then
// looks at byte by byte): the bytes a JSON string may not hold as they are.
bool MayNeedEscape(std::uint64_t word) {
  const std::uint64_t control = (word - kOnes * 0x20) & ~word;
  const std::uint64_t quote = ((word ^ (kOnes * '"')) - kOnes) & ~(word ^ (kOnes * '"'));
  const std::uint64_t backslash = ((word ^ (kOnes * '\\')) - kOnes) & ~(word ^ (kOnes * '\\'));
  return ((control | quote | backslash | word) & kHighBits) != 0;
}

// Appends `text`, known to be UTF-8, as a JSON string.
void AppendUtf8JsonString(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t i = 0;
  while (i < text.size()) {
    // Copy the longest run that needs no escaping in one append (bytes past 0x7F are UTF-8,
    // checked by the caller, and dump() copies them as they are); eight bytes at a time while
    // none of them needs a look.
    std::size_t run = i;
    while (run + 8 <= text.size() && !MayNeedEscape(Load8(text.data() + run))) {
      run += 8;
    }
    while (run < text.size()) {
      const auto c = static_cast<unsigned char>(text[run]);
      if (c < 0x20 || c == '"' || c == '\\') {
        break;
      }
      ++run;
    }
    out.append(text.data() + i, run - i);
    if (run == text.size()) {
      break;
    }
    const auto c = static_cast<unsigned char>(text[run]);
    out.push_back('\\');
    switch (c) {
      case '"':
      case '\\':
        out.push_back(static_cast<char>(c));
        break;
      case '\b':
        out.push_back('b');
        break;
      case '\f':
        out.push_back('f');
        break;
      case '\n':
        out.push_back('n');
        break;
      case '\r':
        out.push_back('r');
        break;
      case '\t':
        out.push_back('t');
        break;
      default:
        out.append("u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xf]);
    }
    i = run + 1;
  }
  out.push_back('"');
}

}  // namespace

bool IsUtf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    // ASCII, eight bytes at a time.
    while (i + 8 <= n && (Load8(s.data() + i) & kHighBits) == 0) {
      i += 8;
    }
    if (i == n) {
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) {
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += len;
  }
  return true;
}

void AppendJsonString(std::string& out, std::string_view text) {
  if (!IsUtf8(text)) {
    out.append(nlohmann::json(std::string(text))
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  AppendUtf8JsonString(out, text);
}

bool AppendJsonStringIfUtf8(std::string& out, std::string_view text) {
  if (!IsUtf8(text)) {
    return false;
  }
  AppendUtf8JsonString(out, text);
  return true;
}

}  // namespace signet::formats
