// Fuzzes the strict hex and base64 decoders: no crash, and whatever decodes re-encodes to the
// exact input (so each byte string has exactly one accepted encoding).
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "appliance/base/base.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto bytes = signet::Base64Decode(text); bytes) {
    if (signet::Base64Encode(*bytes) != text) {
      std::abort();
    }
  }
  if (auto bytes = signet::HexDecode(text); bytes) {
    const std::string again = signet::HexEncode(*bytes);
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(text[i])) != again[i]) {
        std::abort();
      }
    }
  }
  return 0;
}
