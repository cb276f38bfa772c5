#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "hsm/internal/keys.h"

namespace signet::hsm::internal {
namespace {

using EvpPkeyCtx = std::unique_ptr<EVP_PKEY_CTX, FnDeleter<&EVP_PKEY_CTX_free>>;
using EvpMdCtx = std::unique_ptr<EVP_MD_CTX, FnDeleter<&EVP_MD_CTX_free>>;
using ParamBld = std::unique_ptr<OSSL_PARAM_BLD, FnDeleter<&OSSL_PARAM_BLD_free>>;
using Params = std::unique_ptr<OSSL_PARAM, FnDeleter<&OSSL_PARAM_free>>;
using Bignum = std::unique_ptr<BIGNUM, FnDeleter<&BN_free>>;
using EcdsaSig = std::unique_ptr<ECDSA_SIG, FnDeleter<&ECDSA_SIG_free>>;
using Bio = std::unique_ptr<BIO, FnDeleter<&BIO_free>>;

// DER of the curve OIDs (CKA_EC_PARAMS): secp256r1, secp384r1, id-Ed25519.
constexpr std::uint8_t kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr std::uint8_t kP384Oid[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
constexpr std::uint8_t kEd25519Oid[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
// PKCS#11 3.0 also names the curve as a PrintableString; SoftHSM 2.6 knows only that form.
constexpr std::uint8_t kEd25519Name[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                         'd',  's',  '2', '5', '5', '1', '9'};
constexpr std::uint8_t kRsaExponent[] = {0x01, 0x00, 0x01};

// DigestInfo prefixes of RFC 8017 §9.2, note 1.
constexpr std::uint8_t kSha256Info[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                        0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
constexpr std::uint8_t kSha384Info[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                        0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
constexpr std::uint8_t kSha512Info[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                        0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

const EVP_MD* MdFor(Hash hash) {
  switch (hash) {
    case Hash::kSha256:
      return EVP_sha256();
    case Hash::kSha384:
      return EVP_sha384();
    case Hash::kSha512:
      return EVP_sha512();
  }
  return nullptr;
}

bool Equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// ---- Attributes ---------------------------------------------------------------------------------

CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t length) {
  return CK_ATTRIBUTE{type, const_cast<void*>(value), static_cast<CK_ULONG>(length)};
}

template <class T>
CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, const T& value) {
  return Attr(type, &value, sizeof value);
}

// Finds objects of `cls` matching the extra attributes. At most 8 are returned.
Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                                  CK_OBJECT_CLASS cls, CK_ATTRIBUTE extra) {
  CK_ATTRIBUTE query[] = {Attr(CKA_CLASS, cls), extra};
  if (CK_RV rv = fn->C_FindObjectsInit(session, query, 2); rv != CKR_OK) {
    return MakeError(CkError(rv, "C_FindObjectsInit"));
  }
  std::array<CK_OBJECT_HANDLE, 8> found{};
  CK_ULONG count = 0;
  const CK_RV rv = fn->C_FindObjects(session, found.data(), found.size(), &count);
  fn->C_FindObjectsFinal(session);
  if (rv != CKR_OK) {
    return MakeError(CkError(rv, "C_FindObjects"));
  }
  return std::vector<CK_OBJECT_HANDLE>(found.begin(), found.begin() + count);
}

// Reads a variable-length attribute. Errors: kHsm (including CKR_ATTRIBUTE_SENSITIVE).
Result<Bytes> GetBytes(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                       CK_ATTRIBUTE_TYPE type, const char* name) {
  CK_ATTRIBUTE attr{type, nullptr, 0};
  if (CK_RV rv = fn->C_GetAttributeValue(session, object, &attr, 1); rv != CKR_OK) {
    return MakeError(CkError(rv, std::string("C_GetAttributeValue ") + name));
  }
  Bytes value(attr.ulValueLen);
  attr.pValue = value.data();
  if (CK_RV rv = fn->C_GetAttributeValue(session, object, &attr, 1); rv != CKR_OK) {
    return MakeError(CkError(rv, std::string("C_GetAttributeValue ") + name));
  }
  value.resize(attr.ulValueLen);
  return value;
}

// Reads a CK_BBOOL attribute; nullopt when the object does not have it.
Result<std::optional<bool>> GetBool(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                    CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                                    const char* name) {
  CK_BBOOL value = CK_FALSE;
  CK_ATTRIBUTE attr = Attr(type, value);
  const CK_RV rv = fn->C_GetAttributeValue(session, object, &attr, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || attr.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return std::optional<bool>();
  }
  if (rv != CKR_OK) {
    return MakeError(CkError(rv, std::string("C_GetAttributeValue ") + name));
  }
  return std::optional<bool>(value == CK_TRUE);
}

// ---- Public keys --------------------------------------------------------------------------------

// CKA_EC_POINT is a DER OCTET STRING around the point; a few modules return the bare point.
Bytes UnwrapPoint(Bytes point, std::size_t bare_length) {
  if (point.size() == bare_length) {
    return point;
  }
  const std::uint8_t* p = point.data();
  ASN1_OCTET_STRING* octets = d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(point.size()));
  if (octets == nullptr) {
    ERR_clear_error();
    return point;
  }
  Bytes out(ASN1_STRING_get0_data(octets),
            ASN1_STRING_get0_data(octets) + ASN1_STRING_length(octets));
  ASN1_OCTET_STRING_free(octets);
  return out;
}

Result<EvpPkey> EcPublicKey(const char* group, std::span<const std::uint8_t> point) {
  ParamBld bld(OSSL_PARAM_BLD_new());
  if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size())) {
    return MakeError(OpenSslError("building EC public key parameters"));
  }
  Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return MakeError(OpenSslError("the token's EC public key is not a valid point"));
  }
  return EvpPkey(key);
}

Result<EvpPkey> RsaPublicKey(std::span<const std::uint8_t> modulus,
                             std::span<const std::uint8_t> exponent) {
  Bignum n(BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr));
  Bignum e(BN_bin2bn(exponent.data(), static_cast<int>(exponent.size()), nullptr));
  ParamBld bld(OSSL_PARAM_BLD_new());
  if (!n || !e || !bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get())) {
    return MakeError(OpenSslError("building RSA public key parameters"));
  }
  Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return MakeError(OpenSslError("the token's RSA public key is not valid"));
  }
  return EvpPkey(key);
}

Result<PublicKey> Export(KeyType type, EVP_PKEY* key) {
  PublicKey out;
  out.type = type;
  const int length = i2d_PUBKEY(key, nullptr);
  if (length <= 0) {
    return MakeError(OpenSslError("encoding the public key"));
  }
  out.spki_der.resize(static_cast<std::size_t>(length));
  std::uint8_t* p = out.spki_der.data();
  i2d_PUBKEY(key, &p);
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
    return MakeError(OpenSslError("encoding the public key as PEM"));
  }
  char* pem = nullptr;
  const long pem_length = BIO_get_mem_data(bio.get(), &pem);
  out.pem.assign(pem, static_cast<std::size_t>(pem_length));
  std::uint8_t fingerprint[32];
  if (EVP_Digest(out.spki_der.data(), out.spki_der.size(), fingerprint, nullptr, EVP_sha256(),
                 nullptr) != 1) {
    return MakeError(OpenSslError("SHA-256 of the public key"));
  }
  out.fingerprint = HexEncode(fingerprint);
  return out;
}

// Reads the public half of the key pair with CKA_ID `id` and works out the key type.
Result<PublicKey> ReadPublicKey(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                std::span<const std::uint8_t> id, CK_KEY_TYPE key_type) {
  SIGNET_ASSIGN_OR_RETURN(
      auto found, FindObjects(fn, session, CKO_PUBLIC_KEY, Attr(CKA_ID, id.data(), id.size())));
  if (found.size() != 1) {
    return MakeError(ErrorCode::kNotFound,
                     "the key pair's public key (same CKA_ID as the private key) is " +
                         std::string(found.empty() ? "missing" : "not unique") +
                         " on the token; Signet needs exactly one to export and verify with");
  }
  const CK_OBJECT_HANDLE object = found.front();
  if (key_type == CKK_RSA) {
    SIGNET_ASSIGN_OR_RETURN(Bytes n, GetBytes(fn, session, object, CKA_MODULUS, "CKA_MODULUS"));
    SIGNET_ASSIGN_OR_RETURN(
        Bytes e, GetBytes(fn, session, object, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT"));
    while (!n.empty() && n.front() == 0) {
      n.erase(n.begin());
    }
    KeyType type;
    if (n.size() * 8 == 3072) {
      type = KeyType::kRsa3072;
    } else if (n.size() * 8 == 4096) {
      type = KeyType::kRsa4096;
    } else {
      return MakeError(ErrorCode::kInvalidArgument,
                       "RSA keys of " + std::to_string(n.size() * 8) +
                           " bits are not used; make an RSA-3072 or RSA-4096 key");
    }
    SIGNET_ASSIGN_OR_RETURN(EvpPkey key, RsaPublicKey(n, e));
    return Export(type, key.get());
  }
  SIGNET_ASSIGN_OR_RETURN(Bytes params,
                          GetBytes(fn, session, object, CKA_EC_PARAMS, "CKA_EC_PARAMS"));
  SIGNET_ASSIGN_OR_RETURN(Bytes point, GetBytes(fn, session, object, CKA_EC_POINT, "CKA_EC_POINT"));
  if (key_type == CKK_EC_EDWARDS) {
    if (!Equal(params, kEd25519Oid) && !Equal(params, kEd25519Name)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "EdDSA keys on curves other than Ed25519 are not used");
    }
    const Bytes raw = UnwrapPoint(std::move(point), 32);
    EvpPkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()));
    if (!key) {
      return MakeError(OpenSslError("the token's Ed25519 public key is not valid"));
    }
    return Export(KeyType::kEd25519, key.get());
  }
  if (key_type == CKK_EC && Equal(params, kP256Oid)) {
    SIGNET_ASSIGN_OR_RETURN(EvpPkey key, EcPublicKey("P-256", UnwrapPoint(std::move(point), 65)));
    return Export(KeyType::kEcdsaP256, key.get());
  }
  if (key_type == CKK_EC && Equal(params, kP384Oid)) {
    SIGNET_ASSIGN_OR_RETURN(EvpPkey key, EcPublicKey("P-384", UnwrapPoint(std::move(point), 97)));
    return Export(KeyType::kEcdsaP384, key.get());
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "the key is on a curve Signet does not use; make an ECDSA P-256/P-384 or "
                   "Ed25519 key");
}

// Refuses a private key that could leave the token or do more than sign.
Status CheckPrivateKey(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                       std::string_view label) {
  struct Rule {
    CK_ATTRIBUTE_TYPE type;
    const char* name;
    bool required;    // the value the key must have
    bool missing_ok;  // an absent attribute counts as the required value
  };
  static constexpr Rule kRules[] = {
      {CKA_SIGN, "CKA_SIGN", true, false},
      {CKA_SENSITIVE, "CKA_SENSITIVE", true, false},
      {CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false, false},
      {CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", true, false},
      {CKA_DECRYPT, "CKA_DECRYPT", false, true},
      {CKA_UNWRAP, "CKA_UNWRAP", false, true},
      {CKA_DERIVE, "CKA_DERIVE", false, true},
      {CKA_ALWAYS_AUTHENTICATE, "CKA_ALWAYS_AUTHENTICATE", false, true},
  };
  for (const Rule& rule : kRules) {
    SIGNET_ASSIGN_OR_RETURN(std::optional<bool> value,
                            GetBool(fn, session, object, rule.type, rule.name));
    if (!value && rule.missing_ok) {
      continue;
    }
    if (!value || *value != rule.required) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "key '" + std::string(label) + "' is refused: " + rule.name + " is " +
                           (value ? (*value ? "true" : "false") : "missing") +
                           " (Signet uses only keys generated in the HSM as sign-only, "
                           "sensitive and never extractable; generate a new key with Signet)");
    }
  }
  return OkStatus();
}

}  // namespace

Result<EvpPkey> ParseSpki(std::span<const std::uint8_t> spki_der) {
  const std::uint8_t* p = spki_der.data();
  EvpPkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())));
  if (!key) {
    return MakeError(OpenSslError("parsing a SubjectPublicKeyInfo"));
  }
  return key;
}

Result<KeyHandle> FindKeyPair(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                              std::string_view label) {
  SIGNET_ASSIGN_OR_RETURN(auto found, FindObjects(fn, session, CKO_PRIVATE_KEY,
                                                  Attr(CKA_LABEL, label.data(), label.size())));
  if (found.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "no private key labelled '" + std::string(label) + "' on the token");
  }
  if (found.size() > 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "more than one private key is labelled '" + std::string(label) +
                         "'; labels must be unique for Signet to know which key signs");
  }
  const CK_OBJECT_HANDLE object = found.front();
  SIGNET_RETURN_IF_ERROR(CheckPrivateKey(fn, session, object, label));
  CK_KEY_TYPE key_type = 0;
  CK_ATTRIBUTE type_attr = Attr(CKA_KEY_TYPE, key_type);
  if (CK_RV rv = fn->C_GetAttributeValue(session, object, &type_attr, 1); rv != CKR_OK) {
    return MakeError(CkError(rv, "C_GetAttributeValue CKA_KEY_TYPE"));
  }
  SIGNET_ASSIGN_OR_RETURN(Bytes id, GetBytes(fn, session, object, CKA_ID, "CKA_ID"));
  SIGNET_ASSIGN_OR_RETURN(PublicKey public_key, ReadPublicKey(fn, session, id, key_type));
  KeyHandle handle;
  handle.label = std::string(label);
  handle.type = public_key.type;
  handle.id = std::move(id);
  handle.private_object = object;
  handle.public_key = std::move(public_key);
  return handle;
}

Result<std::uint64_t> RefindPrivateKey(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                       const KeyHandle& key) {
  SIGNET_ASSIGN_OR_RETURN(auto found, FindObjects(fn, session, CKO_PRIVATE_KEY,
                                                  Attr(CKA_ID, key.id.data(), key.id.size())));
  if (found.size() != 1) {
    return MakeError(ErrorCode::kNotFound, "key '" + key.label + "' is no longer on the token");
  }
  SIGNET_RETURN_IF_ERROR(CheckPrivateKey(fn, session, found.front(), key.label));
  CK_KEY_TYPE key_type = 0;
  CK_ATTRIBUTE type_attr = Attr(CKA_KEY_TYPE, key_type);
  if (CK_RV rv = fn->C_GetAttributeValue(session, found.front(), &type_attr, 1); rv != CKR_OK) {
    return MakeError(CkError(rv, "C_GetAttributeValue CKA_KEY_TYPE"));
  }
  SIGNET_ASSIGN_OR_RETURN(PublicKey public_key, ReadPublicKey(fn, session, key.id, key_type));
  if (public_key.spki_der != key.public_key.spki_der) {
    return MakeError(ErrorCode::kCrypto, "key '" + key.label +
                                             "' was replaced on the token: its CKA_ID now names "
                                             "a key with another public key");
  }
  return static_cast<std::uint64_t>(found.front());
}

Result<KeyHandle> GenerateKeyPair(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                  std::string_view label, KeyType type) {
  SIGNET_ASSIGN_OR_RETURN(auto existing, FindObjects(fn, session, CKO_PRIVATE_KEY,
                                                     Attr(CKA_LABEL, label.data(), label.size())));
  if (!existing.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a key labelled '" + std::string(label) +
                         "' exists already on the token; choose another label");
  }
  std::array<std::uint8_t, 16> id{};
  if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) {
    return MakeError(OpenSslError("random CKA_ID"));
  }
  const CK_BBOOL yes = CK_TRUE;
  const CK_BBOOL no = CK_FALSE;
  const CK_ULONG bits = type == KeyType::kRsa4096 ? 4096 : 3072;
  std::vector<CK_ATTRIBUTE> pub = {
      Attr(CKA_TOKEN, yes),
      Attr(CKA_PRIVATE, no),
      Attr(CKA_VERIFY, yes),
      Attr(CKA_ENCRYPT, no),
      Attr(CKA_WRAP, no),
      Attr(CKA_DERIVE, no),
      Attr(CKA_LABEL, label.data(), label.size()),
      Attr(CKA_ID, id.data(), id.size()),
  };
  // The private key signs and does nothing else, and never leaves the token.
  std::vector<CK_ATTRIBUTE> priv = {
      Attr(CKA_TOKEN, yes),
      Attr(CKA_PRIVATE, yes),
      Attr(CKA_SENSITIVE, yes),
      Attr(CKA_EXTRACTABLE, no),
      Attr(CKA_SIGN, yes),
      Attr(CKA_DECRYPT, no),
      Attr(CKA_UNWRAP, no),
      Attr(CKA_DERIVE, no),
      Attr(CKA_SIGN_RECOVER, no),
      Attr(CKA_LABEL, label.data(), label.size()),
      Attr(CKA_ID, id.data(), id.size()),
  };
  CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  std::span<const std::uint8_t> curve;
  switch (type) {
    case KeyType::kEcdsaP256:
      curve = kP256Oid;
      break;
    case KeyType::kEcdsaP384:
      curve = kP384Oid;
      break;
    case KeyType::kEd25519:
      mechanism.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
      curve = kEd25519Oid;
      break;
    case KeyType::kRsa3072:
    case KeyType::kRsa4096:
      mechanism.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
      pub.push_back(Attr(CKA_MODULUS_BITS, bits));
      pub.push_back(Attr(CKA_PUBLIC_EXPONENT, kRsaExponent, sizeof kRsaExponent));
      break;
  }
  if (!curve.empty()) {
    pub.push_back(Attr(CKA_EC_PARAMS, curve.data(), curve.size()));
  }
  CK_OBJECT_HANDLE pub_object = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE priv_object = CK_INVALID_HANDLE;
  CK_RV rv = fn->C_GenerateKeyPair(session, &mechanism, pub.data(), pub.size(), priv.data(),
                                   priv.size(), &pub_object, &priv_object);
  if (type == KeyType::kEd25519 &&
      (rv == CKR_CURVE_NOT_SUPPORTED || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
       rv == CKR_DOMAIN_PARAMS_INVALID)) {
    // Modules that predate PKCS#11 3.0's OID form (SoftHSM 2.6) name the curve instead.
    pub.back() = Attr(CKA_EC_PARAMS, kEd25519Name, sizeof kEd25519Name);
    rv = fn->C_GenerateKeyPair(session, &mechanism, pub.data(), pub.size(), priv.data(),
                               priv.size(), &pub_object, &priv_object);
  }
  if (rv != CKR_OK) {
    return MakeError(CkError(rv, "C_GenerateKeyPair " + std::string(KeyTypeName(type))));
  }
  return FindKeyPair(fn, session, label);
}

bool SchemeFits(KeyType type, Scheme scheme) {
  switch (type) {
    case KeyType::kEcdsaP256:
    case KeyType::kEcdsaP384:
      return scheme == Scheme::kEcdsa;
    case KeyType::kRsa3072:
    case KeyType::kRsa4096:
      return scheme == Scheme::kRsaPkcs1 || scheme == Scheme::kRsaPss;
    case KeyType::kEd25519:
      return scheme == Scheme::kEd25519;
  }
  return false;
}

Bytes SignInput(SignSpec spec, std::span<const std::uint8_t> input) {
  if (spec.scheme != Scheme::kRsaPkcs1) {
    return Bytes(input.begin(), input.end());
  }
  std::span<const std::uint8_t> prefix = kSha256Info;
  if (spec.hash == Hash::kSha384) {
    prefix = kSha384Info;
  } else if (spec.hash == Hash::kSha512) {
    prefix = kSha512Info;
  }
  Bytes out(prefix.begin(), prefix.end());
  out.insert(out.end(), input.begin(), input.end());
  return out;
}

Result<Bytes> FinishSignature(KeyType type, SignSpec spec, std::span<const std::uint8_t> raw) {
  if (spec.scheme != Scheme::kEcdsa) {
    return Bytes(raw.begin(), raw.end());
  }
  const std::size_t half = type == KeyType::kEcdsaP384 ? 48 : 32;
  if (raw.size() != 2 * half) {
    return MakeError(ErrorCode::kCrypto, "the HSM returned an ECDSA signature of " +
                                             std::to_string(raw.size()) + " bytes, not " +
                                             std::to_string(2 * half));
  }
  EcdsaSig sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return MakeError(OpenSslError("building the ECDSA signature"));
  }
  const int length = i2d_ECDSA_SIG(sig.get(), nullptr);
  Bytes der(static_cast<std::size_t>(length));
  std::uint8_t* p = der.data();
  i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

Status VerifySignature(EVP_PKEY* key, SignSpec spec, std::span<const std::uint8_t> input,
                       std::span<const std::uint8_t> signature) {
  if (spec.scheme == Scheme::kEd25519) {
    EvpMdCtx ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key) != 1 ||
        EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), input.data(),
                         input.size()) != 1) {
      return MakeError(OpenSslError("the HSM's Ed25519 signature does not verify"));
    }
    return OkStatus();
  }
  EvpPkeyCtx ctx(EVP_PKEY_CTX_new(key, nullptr));
  bool ok = ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
            EVP_PKEY_CTX_set_signature_md(ctx.get(), MdFor(spec.hash)) == 1;
  if (ok && spec.scheme == Scheme::kRsaPkcs1) {
    ok = EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1;
  } else if (ok && spec.scheme == Scheme::kRsaPss) {
    ok = EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), MdFor(spec.hash)) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), static_cast<int>(HashLength(spec.hash))) == 1;
  }
  if (!ok || EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), input.data(),
                             input.size()) != 1) {
    return MakeError(OpenSslError("the HSM's " + std::string(SchemeName(spec.scheme)) +
                                  " signature does not verify against the key's public key"));
  }
  return OkStatus();
}

}  // namespace signet::hsm::internal
