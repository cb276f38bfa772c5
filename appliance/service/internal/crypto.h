// appliance/service/internal/crypto.h: the OpenSSL work the service does itself.
#ifndef SIGNET_APPLIANCE_SERVICE_INTERNAL_CRYPTO_H_
#define SIGNET_APPLIANCE_SERVICE_INTERNAL_CRYPTO_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "appliance/base/base.h"
#include "hsm/hsm.h"

namespace signet::service::internal {

// Lower-case hex SHA-256 of `bytes`.
std::string Sha256Hex(std::span<const std::uint8_t> bytes);

// A public key loaded once, to check raw signatures with. Thread-safe (verification only).
class RawVerifier {
 public:
  // Errors: kInvalidArgument (not a public key, or a scheme it cannot do).
  [[nodiscard]] static Result<std::shared_ptr<const RawVerifier>> Create(
      std::span<const std::uint8_t> spki_der, hsm::SignSpec spec);
  ~RawVerifier();
  RawVerifier(const RawVerifier&) = delete;
  RawVerifier& operator=(const RawVerifier&) = delete;

  // Checks `signature` over `digest` (of spec.hash). Errors: kCrypto.
  [[nodiscard]] Status Verify(std::span<const std::uint8_t> digest,
                              std::span<const std::uint8_t> signature) const;

  struct Key;

 private:
  RawVerifier(std::unique_ptr<Key> key, hsm::SignSpec spec);
  std::unique_ptr<Key> key_;
  hsm::SignSpec spec_;
};

}  // namespace signet::service::internal

#endif  // SIGNET_APPLIANCE_SERVICE_INTERNAL_CRYPTO_H_
