// appliance/audit/internal/utf8.h: strict UTF-8 decoding shared by the record serializer and the
// signed-note parser. Private to signet::audit.
#ifndef SIGNET_APPLIANCE_AUDIT_INTERNAL_UTF8_H_
#define SIGNET_APPLIANCE_AUDIT_INTERNAL_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace signet::audit::internal {

struct Rune {
  char32_t code_point = 0;
  std::size_t length = 0;  // 0: not valid UTF-8
};

// Decodes the UTF-8 sequence at s[i] strictly (no overlong forms, surrogates or code points above
// U+10FFFF): the lead byte fixes the length and the range the second byte may take.
inline Rune DecodeRune(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(s[i + k]); };
  const std::uint8_t c = byte(0);
  if (c < 0x80) {
    return {c, 1};
  }
  std::size_t length = 0;
  std::uint8_t lo = 0x80;
  std::uint8_t hi = 0xbf;
  char32_t cp = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    length = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    length = 3;
    cp = c & 0x0f;
    lo = c == 0xe0 ? 0xa0 : 0x80;
    hi = c == 0xed ? 0x9f : 0xbf;
  } else if (c >= 0xf0 && c <= 0xf4) {
    length = 4;
    cp = c & 0x07;
    lo = c == 0xf0 ? 0x90 : 0x80;
    hi = c == 0xf4 ? 0x8f : 0xbf;
  } else {
    return {};
  }
  if (s.size() - i < length || byte(1) < lo || byte(1) > hi) {
    return {};
  }
  for (std::size_t k = 1; k < length; ++k) {
    if (byte(k) < 0x80 || byte(k) > 0xbf) {
      return {};
    }
    cp = (cp << 6) | (byte(k) & 0x3f);
  }
  return {cp, length};
}

}  // namespace signet::audit::internal

#endif  // SIGNET_APPLIANCE_AUDIT_INTERNAL_UTF8_H_
