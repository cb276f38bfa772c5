#include <array>
#include <cstdio>
#include <string>

#include "appliance/base/base.h"

namespace signet {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::uint8_t kInvalid = 0xff;

constexpr std::array<std::uint8_t, 256> MakeHexTable() {
  std::array<std::uint8_t, 256> table{};
  table.fill(kInvalid);
  for (int i = 0; i < 10; ++i) {
    table['0' + i] = static_cast<std::uint8_t>(i);
  }
  for (int i = 0; i < 6; ++i) {
    table['a' + i] = static_cast<std::uint8_t>(10 + i);
    table['A' + i] = static_cast<std::uint8_t>(10 + i);
  }
  return table;
}

constexpr std::array<std::uint8_t, 256> MakeBase64Table() {
  std::array<std::uint8_t, 256> table{};
  table.fill(kInvalid);
  for (int i = 0; i < 64; ++i) {
    table[static_cast<std::uint8_t>(kBase64Alphabet[i])] = static_cast<std::uint8_t>(i);
  }
  return table;
}

constexpr auto kHexTable = MakeHexTable();
constexpr auto kBase64Table = MakeBase64Table();

// Shows a character in an error message: printable ASCII as 'c', anything else as \xNN.
std::string Describe(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) {
    return std::string("'") + c + "'";
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02x", u);
  return buf;
}

tl::unexpected<Error> BadCharacter(std::string_view what, char c, std::size_t offset) {
  return MakeError(ErrorCode::kInvalidArgument, std::string(what) + ": invalid character " +
                                                    Describe(c) + " at offset " +
                                                    std::to_string(offset));
}

}  // namespace

std::string HexEncode(std::span<const std::uint8_t> bytes) {
  std::string out;
  AppendHex(out, bytes);
  return out;
}

void AppendHex(std::string& out, std::span<const std::uint8_t> bytes) {
  const std::size_t at = out.size();
  out.resize(at + bytes.size() * 2);
  char* to = out.data() + at;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    to[2 * i] = kHexDigits[bytes[i] >> 4];
    to[2 * i + 1] = kHexDigits[bytes[i] & 0x0f];
  }
}

Result<Bytes> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "hex: odd length " + std::to_string(hex.size()) +
                                                      " (each byte is two hex digits)");
  }
  Bytes out(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const std::uint8_t hi = kHexTable[static_cast<unsigned char>(hex[i])];
    if (hi == kInvalid) {
      return BadCharacter("hex", hex[i], i);
    }
    const std::uint8_t lo = kHexTable[static_cast<unsigned char>(hex[i + 1])];
    if (lo == kInvalid) {
      return BadCharacter("hex", hex[i + 1], i + 1);
    }
    out[i / 2] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return out;
}

std::string Base64Encode(std::span<const std::uint8_t> bytes) {
  std::string out;
  AppendBase64(out, bytes);
  return out;
}

void AppendBase64(std::string& out, std::span<const std::uint8_t> bytes) {
  const std::size_t at = out.size();
  out.resize(at + (bytes.size() + 2) / 3 * 4, '=');
  char* to = out.data() + at;
  std::size_t i = 0;
  std::size_t o = 0;
  for (; i + 3 <= bytes.size(); i += 3, o += 4) {
    const std::uint32_t v =
        std::uint32_t{bytes[i]} << 16 | std::uint32_t{bytes[i + 1]} << 8 | bytes[i + 2];
    to[o] = kBase64Alphabet[v >> 18];
    to[o + 1] = kBase64Alphabet[(v >> 12) & 0x3f];
    to[o + 2] = kBase64Alphabet[(v >> 6) & 0x3f];
    to[o + 3] = kBase64Alphabet[v & 0x3f];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {  // the tail: one or two bytes, padded with '=' already in place
    std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    if (rest == 2) {
      v |= std::uint32_t{bytes[i + 1]} << 8;
      to[o + 2] = kBase64Alphabet[(v >> 6) & 0x3f];
    }
    to[o] = kBase64Alphabet[v >> 18];
    to[o + 1] = kBase64Alphabet[(v >> 12) & 0x3f];
  }
}

Result<Bytes> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "base64: length " + std::to_string(text.size()) +
                         " is not a multiple of 4 (padded base64 expected)");
  }
  std::size_t padding = 0;
  if (!text.empty() && text.back() == '=') {
    padding = text[text.size() - 2] == '=' ? 2 : 1;
  }
  const std::size_t data_chars = text.size() - padding;
  Bytes out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < data_chars; ++i) {
    const char c = text[i];
    const std::uint8_t v = kBase64Table[static_cast<unsigned char>(c)];
    if (v == kInvalid) {
      if (c == '=') {
        return MakeError(ErrorCode::kInvalidArgument, "base64: padding '=' at offset " +
                                                          std::to_string(i) + " is not at the end");
      }
      return BadCharacter("base64", c, i);
    }
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>(acc >> bits));
      acc &= (1u << bits) - 1;
    }
  }
  // Left-over bits must be zero, or two encodings would decode to the same bytes.
  if (acc != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "base64: non-zero bits after the last byte at offset " +
                         std::to_string(data_chars - 1) + " (not canonical base64)");
  }
  return out;
}

}  // namespace signet
