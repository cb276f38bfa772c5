#include "appliance/cli/internal/json_line.h"

#include <cstdint>
#include <nlohmann/json.hpp>

namespace signet::cli {
namespace {

std::string Dump(const nlohmann::ordered_json& value) {
  // replace: a string that is not UTF-8 gets U+FFFD instead of an exception.
  return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    auto byte = static_cast<std::uint8_t>(text[i]);
    if (byte < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    std::uint32_t min = 0;
    std::uint32_t code = 0;
    if ((byte & 0xE0) == 0xC0) {
      length = 2;
      min = 0x80;
      code = byte & 0x1F;
    } else if ((byte & 0xF0) == 0xE0) {
      length = 3;
      min = 0x800;
      code = byte & 0x0F;
    } else if ((byte & 0xF8) == 0xF0) {
      length = 4;
      min = 0x10000;
      code = byte & 0x07;
    } else {
      return false;
    }
    if (n - i < length) {
      return false;
    }
    for (std::size_t k = 1; k < length; ++k) {
      auto next = static_cast<std::uint8_t>(text[i + k]);
      if ((next & 0xC0) != 0x80) {
        return false;
      }
      code = (code << 6) | (next & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

std::string JsonLine(const pipeline::FileOutcome& outcome) {
  const std::string& path = outcome.path;
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  line["path"] = path;
  if (!IsValidUtf8(path)) {
    line["path_hex"] = HexEncode(AsBytes(path));
  }
  if (outcome.digest) {
    const pipeline::FileDigest& file = *outcome.digest;
    line["size"] = file.size();
    nlohmann::ordered_json digests = nlohmann::ordered_json::object();
    for (const pipeline::Digest& digest : file.digests) {
      digests[std::string(pipeline::DigestAlgorithmName(digest.algorithm()))] = digest.Hex();
    }
    line["digests"] = std::move(digests);
  } else {
    const Error& error = outcome.digest.error();
    line["error"] = {{"code", std::string(ErrorCodeName(error.code()))},
                     {"message", error.message()}};
  }
  std::string out = Dump(line);
  out += '\n';
  return out;
}

}  // namespace signet::cli
