#include "appliance/service/internal/crypto.h"

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <utility>

namespace signet::service::internal {
namespace {

using PkeyPtr = std::unique_ptr<EVP_PKEY, FnDeleter<&EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, FnDeleter<&EVP_PKEY_CTX_free>>;

const EVP_MD* MdOf(hsm::Hash hash) {
  switch (hash) {
    case hsm::Hash::kSha256:
      return EVP_sha256();
    case hsm::Hash::kSha384:
      return EVP_sha384();
    case hsm::Hash::kSha512:
      return EVP_sha512();
  }
  return EVP_sha256();
}

}  // namespace

struct RawVerifier::Key {
  PkeyPtr pkey;
};

std::string Sha256Hex(std::span<const std::uint8_t> bytes) {
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(bytes.data(), bytes.size(), digest);
  return HexEncode(digest);
}

RawVerifier::RawVerifier(std::unique_ptr<Key> key, hsm::SignSpec spec)
    : key_(std::move(key)), spec_(spec) {}
RawVerifier::~RawVerifier() = default;

Result<std::shared_ptr<const RawVerifier>> RawVerifier::Create(
    std::span<const std::uint8_t> spki_der, hsm::SignSpec spec) {
  const unsigned char* p = spki_der.data();
  PkeyPtr pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())));
  if (!pkey) {
    return MakeError(OpenSslError("parse the key's public key"));
  }
  const int id = EVP_PKEY_get_base_id(pkey.get());
  const bool fits =
      (spec.scheme == hsm::Scheme::kEcdsa && id == EVP_PKEY_EC) ||
      ((spec.scheme == hsm::Scheme::kRsaPkcs1 || spec.scheme == hsm::Scheme::kRsaPss) &&
       id == EVP_PKEY_RSA);
  if (!fits) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "scheme " + std::string(hsm::SchemeName(spec.scheme)) +
                         " does not fit the key type, or is not a raw signature scheme");
  }
  auto key = std::make_unique<Key>();
  key->pkey = std::move(pkey);
  return std::shared_ptr<const RawVerifier>(new RawVerifier(std::move(key), spec));
}

Status RawVerifier::Verify(std::span<const std::uint8_t> digest,
                           std::span<const std::uint8_t> signature) const {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key_->pkey.get(), nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), MdOf(spec_.hash)) <= 0) {
    return MakeError(OpenSslError("set up signature verification"));
  }
  if (spec_.scheme == hsm::Scheme::kRsaPkcs1 &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) <= 0) {
    return MakeError(OpenSslError("set RSA PKCS#1 padding"));
  }
  if (spec_.scheme == hsm::Scheme::kRsaPss &&
      (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) <= 0 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), MdOf(spec_.hash)) <= 0 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) <= 0)) {
    return MakeError(OpenSslError("set RSA-PSS parameters"));
  }
  const int rc =
      EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest.data(), digest.size());
  if (rc != 1) {
    return MakeError(OpenSslError("the HSM's signature does not verify against the key"));
  }
  return OkStatus();
}

}  // namespace signet::service::internal
