#include "appliance/service/internal/crypto.h"

#include <openssl/sha.h>

namespace signet::service::internal {

std::string Sha256Hex(std::span<const std::uint8_t> bytes) {
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(bytes.data(), bytes.size(), digest);
  return HexEncode(digest);
}

}  // namespace signet::service::internal
