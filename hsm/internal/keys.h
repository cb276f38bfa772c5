// hsm/internal/keys.h: key templates, attribute checks, public-key export, and the OpenSSL side of
// signing (DigestInfo, DER conversion, verification). Not public.
#ifndef SIGNET_HSM_INTERNAL_KEYS_H_
#define SIGNET_HSM_INTERNAL_KEYS_H_

#include <openssl/evp.h>

#include <memory>
#include <span>

#include "hsm/hsm.h"
#include "hsm/internal/p11.h"

namespace signet::hsm::internal {

using EvpPkey = std::unique_ptr<EVP_PKEY, FnDeleter<&EVP_PKEY_free>>;

// Generates a key pair on `session`. Errors: kHsm.
[[nodiscard]] Result<KeyHandle> GenerateKeyPair(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                                std::string_view label, KeyType type);

// Finds the private key labelled `label`, checks its attributes and exports its public key.
[[nodiscard]] Result<KeyHandle> FindKeyPair(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                            std::string_view label);

// Finds `key`'s private key again by its CKA_ID, after the token invalidated the handle (a new
// login on SoftHSM, a reset on other modules). The key is checked as FindKeyPair checks it, and its
// public key must be the one `key` was found with. Errors: kNotFound, kPermissionDenied, kCrypto
// (a different key now has that CKA_ID), kHsm.
[[nodiscard]] Result<std::uint64_t> RefindPrivateKey(CK_FUNCTION_LIST* fn,
                                                     CK_SESSION_HANDLE session,
                                                     const KeyHandle& key);

// Parses a SubjectPublicKeyInfo. Errors: kCrypto.
[[nodiscard]] Result<EvpPkey> ParseSpki(std::span<const std::uint8_t> spki_der);

// Which schemes a key type can sign with.
bool SchemeFits(KeyType type, Scheme scheme);

// What the HSM is asked to sign for one input: the digest (ECDSA, PSS), DigestInfo ‖ digest
// (PKCS#1 v1.5), or the message (Ed25519).
Bytes SignInput(SignSpec spec, std::span<const std::uint8_t> input);

// Turns the HSM's output into the signature Signet returns (ECDSA: raw r ‖ s to DER).
[[nodiscard]] Result<Bytes> FinishSignature(KeyType type, SignSpec spec,
                                            std::span<const std::uint8_t> raw);

// Verifies `signature` over `input` (a digest, or the Ed25519 message). Errors: kCrypto.
[[nodiscard]] Status VerifySignature(EVP_PKEY* key, SignSpec spec,
                                     std::span<const std::uint8_t> input,
                                     std::span<const std::uint8_t> signature);

}  // namespace signet::hsm::internal

#endif  // SIGNET_HSM_INTERNAL_KEYS_H_
