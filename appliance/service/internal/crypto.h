// appliance/service/internal/crypto.h: the OpenSSL work the service does itself.
#ifndef SIGNET_APPLIANCE_SERVICE_INTERNAL_CRYPTO_H_
#define SIGNET_APPLIANCE_SERVICE_INTERNAL_CRYPTO_H_

#include <cstdint>
#include <span>
#include <string>

#include "appliance/base/base.h"

namespace signet::service::internal {

// Lower-case hex SHA-256 of `bytes`.
std::string Sha256Hex(std::span<const std::uint8_t> bytes);

}  // namespace signet::service::internal

#endif  // SIGNET_APPLIANCE_SERVICE_INTERNAL_CRYPTO_H_
