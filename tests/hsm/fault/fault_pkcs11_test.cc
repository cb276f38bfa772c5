// Tests of the fault-injection PKCS#11 module (fault_pkcs11.cc) against a real SoftHSM token. Every
// signature that should be good is verified with OpenSSL against the public key from CKA_EC_POINT.
#include <dlfcn.h>
#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <p11-kit/pkcs11.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/hsm/softhsm_token.h"

namespace signet::hsm::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Bytes = std::vector<std::uint8_t>;

template <auto kFree>
struct Free {
  template <class T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using EvpPkey = std::unique_ptr<EVP_PKEY, Free<&EVP_PKEY_free>>;
using EvpPkeyCtx = std::unique_ptr<EVP_PKEY_CTX, Free<&EVP_PKEY_CTX_free>>;
using EcdsaSig = std::unique_ptr<ECDSA_SIG, Free<&ECDSA_SIG_free>>;
using Asn1OctetString = std::unique_ptr<ASN1_OCTET_STRING, Free<&ASN1_OCTET_STRING_free>>;

// The module under test, loaded once per process (it keeps SoftHSM loaded for the process too).
CK_FUNCTION_LIST* FaultModule() {
  static CK_FUNCTION_LIST* const list = []() -> CK_FUNCTION_LIST* {
    void* handle = ::dlopen(SIGNET_FAULT_MODULE, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      std::fprintf(stderr, "dlopen(%s): %s\n", SIGNET_FAULT_MODULE, ::dlerror());
      return nullptr;
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
    CK_FUNCTION_LIST* result = nullptr;
    if (get_list == nullptr || get_list(&result) != CKR_OK) {
      return nullptr;
    }
    return result;
  }();
  return list;
}

Bytes Digest(int i) {
  const std::string message = "message " + std::to_string(i);
  Bytes digest(32);
  unsigned int len = 0;
  EVP_Digest(message.data(), message.size(), digest.data(), &len, EVP_sha256(), nullptr);
  return digest;
}

// CKA_EC_POINT is a DER OCTET STRING holding the uncompressed point.
EvpPkey P256PublicKey(const Bytes& ec_point) {
  const unsigned char* p = ec_point.data();
  const Asn1OctetString point(
      d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(ec_point.size())));
  if (point == nullptr) {
    return nullptr;
  }
  char group[] = "prime256v1";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(
          OSSL_PKEY_PARAM_PUB_KEY, const_cast<unsigned char*>(ASN1_STRING_get0_data(point.get())),
          static_cast<std::size_t>(ASN1_STRING_length(point.get()))),
      OSSL_PARAM_construct_end(),
  };
  const EvpPkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* pkey = nullptr;
  if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return nullptr;
  }
  return EvpPkey(pkey);
}

// Verifies a CKM_ECDSA signature (r || s, 32 bytes each) of `digest`.
bool Verifies(EVP_PKEY* key, const Bytes& digest, const Bytes& signature) {
  if (signature.size() != 64) {
    return false;
  }
  EcdsaSig sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(signature.data(), 32, nullptr);
  BIGNUM* s = BN_bin2bn(signature.data() + 32, 32, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  unsigned char* der = nullptr;
  const int der_len = i2d_ECDSA_SIG(sig.get(), &der);
  const EvpPkeyCtx ctx(EVP_PKEY_CTX_new(key, nullptr));
  const bool ok = der_len > 0 && ctx != nullptr && EVP_PKEY_verify_init(ctx.get()) == 1 &&
                  EVP_PKEY_verify(ctx.get(), der, static_cast<std::size_t>(der_len), digest.data(),
                                  digest.size()) == 1;
  OPENSSL_free(der);
  return ok;
}

std::vector<std::string> ReadLines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

class FaultPkcs11Test : public ::testing::Test {
 protected:
  void SetUp() override {
    p11_ = FaultModule();
    ASSERT_NE(p11_, nullptr);
    token_ = std::make_unique<SoftHsmToken>("fault-test");
    for (const char* name : {"SIGNET_FAULT_RULES", "SIGNET_FAULT_RULES_FILE", "SIGNET_FAULT_LOG",
                             "SIGNET_FAULT_TARGET"}) {
      ::unsetenv(name);
    }
    log_ = token_->dir() / "faults.log";
    ::setenv("SIGNET_FAULT_LOG", log_.c_str(), 1);
  }

  void TearDown() override {
    if (initialized_) {
      EXPECT_EQ(p11_->C_Finalize(nullptr), CKR_OK);
    }
  }

  CK_RV Initialize(const std::string& rules) {
    ::setenv("SIGNET_FAULT_RULES", rules.c_str(), 1);
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;  // else SoftHSM does no locking at all
    const CK_RV rv = p11_->C_Initialize(&args);
    initialized_ = rv == CKR_OK;
    if (initialized_) {
      FindSlot();
    }
    return rv;
  }

  void FindSlot() {
    CK_ULONG count = 0;
    ASSERT_EQ(p11_->C_GetSlotList(CK_TRUE, nullptr, &count), CKR_OK);
    std::vector<CK_SLOT_ID> slots(count);
    ASSERT_EQ(p11_->C_GetSlotList(CK_TRUE, slots.data(), &count), CKR_OK);
    std::string label = token_->label();
    label.resize(32, ' ');
    for (const CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info{};
      ASSERT_EQ(p11_->C_GetTokenInfo(slot, &info), CKR_OK);
      if (std::string(reinterpret_cast<const char*>(info.label), 32) == label) {
        slot_ = slot;
        return;
      }
    }
    FAIL() << "no token labelled " << token_->label();
  }

  CK_RV OpenSession(CK_SESSION_HANDLE* session) {
    return p11_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                               session);
  }

  CK_RV Login(CK_SESSION_HANDLE session) {
    std::string pin = token_->pin();
    return p11_->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size());
  }

  // Generates a P-256 token key pair (token objects, so they outlive the session) into
  // private_key_ and public_key_.
  CK_RV GenerateKey(CK_SESSION_HANDLE session) {
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_BYTE p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE;
    char label[] = "fault-key";
    CK_ATTRIBUTE public_template[] = {
        {CKA_EC_PARAMS, p256_oid, sizeof(p256_oid)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_LABEL, label, sizeof(label) - 1},
    };
    CK_ATTRIBUTE private_template[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},    {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_LABEL, label, sizeof(label) - 1},
    };
    return p11_->C_GenerateKeyPair(session, &mechanism, public_template, 4, private_template, 5,
                                   &public_key_, &private_key_);
  }

  CK_RV ReadPublicKey(CK_SESSION_HANDLE session) {
    CK_ATTRIBUTE attribute{CKA_EC_POINT, nullptr, 0};
    if (const CK_RV rv = p11_->C_GetAttributeValue(session, public_key_, &attribute, 1);
        rv != CKR_OK) {
      return rv;
    }
    Bytes point(attribute.ulValueLen);
    attribute.pValue = point.data();
    if (const CK_RV rv = p11_->C_GetAttributeValue(session, public_key_, &attribute, 1);
        rv != CKR_OK) {
      return rv;
    }
    verify_key_ = P256PublicKey(point);
    return verify_key_ != nullptr ? CKR_OK : CKR_GENERAL_ERROR;
  }

  // Finds the one private key on the token into private_key_.
  void FindPrivateKey() {
    CK_OBJECT_CLASS key_class = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &key_class, sizeof(key_class)}};
    ASSERT_EQ(p11_->C_FindObjectsInit(session_, find, 1), CKR_OK);
    CK_ULONG count = 0;
    EXPECT_EQ(p11_->C_FindObjects(session_, &private_key_, 1, &count), CKR_OK);
    EXPECT_EQ(count, 1u);
    EXPECT_EQ(p11_->C_FindObjectsFinal(session_), CKR_OK);
  }

  // Initializes with `rules`, opens session_, logs in, makes a key and reads its public half.
  void Start(const std::string& rules) {
    ASSERT_EQ(Initialize(rules), CKR_OK);
    ASSERT_EQ(OpenSession(&session_), CKR_OK);
    ASSERT_EQ(Login(session_), CKR_OK);
    ASSERT_EQ(GenerateKey(session_), CKR_OK);
    ASSERT_EQ(ReadPublicKey(session_), CKR_OK);
  }

  // C_SignInit + C_Sign of `digest` with CKM_ECDSA.
  CK_RV Sign(CK_SESSION_HANDLE session, const Bytes& digest, Bytes* signature) {
    CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
    if (const CK_RV rv = p11_->C_SignInit(session, &mechanism, private_key_); rv != CKR_OK) {
      return rv;
    }
    signature->assign(256, 0);
    CK_ULONG len = signature->size();
    Bytes data = digest;
    const CK_RV rv = p11_->C_Sign(session, data.data(), data.size(), signature->data(), &len);
    signature->resize(rv == CKR_OK ? len : 0);
    return rv;
  }

  // Signs digest `i` on session_ and says whether it verified; the CK_RV if it failed.
  CK_RV SignAndVerify(int i) {
    Bytes signature;
    const CK_RV rv = Sign(session_, Digest(i), &signature);
    if (rv == CKR_OK) {
      EXPECT_TRUE(Verifies(verify_key_.get(), Digest(i), signature)) << "signature " << i;
    }
    return rv;
  }

  CK_FUNCTION_LIST* p11_ = nullptr;
  std::unique_ptr<SoftHsmToken> token_;
  std::filesystem::path log_;
  bool initialized_ = false;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE public_key_ = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE private_key_ = CK_INVALID_HANDLE;
  EvpPkey verify_key_;
};

TEST_F(FaultPkcs11Test, FunctionListIsCompleteV240) {
  EXPECT_EQ(p11_->version.major, 2);
  EXPECT_EQ(p11_->version.minor, 40);
  // Every member after `version` is a function pointer; none may be missing.
  const auto* first = reinterpret_cast<const unsigned char*>(&p11_->C_Initialize);
  const auto* end = reinterpret_cast<const unsigned char*>(p11_) + sizeof(CK_FUNCTION_LIST);
  int count = 0;
  for (const unsigned char* p = first; p < end; p += sizeof(void*), ++count) {
    void* fn = nullptr;
    std::copy_n(p, sizeof(fn), reinterpret_cast<unsigned char*>(&fn));
    EXPECT_NE(fn, nullptr) << "function #" << count;
  }
  EXPECT_EQ(count, 68);
}

TEST_F(FaultPkcs11Test, CallsBeforeInitializeFailCleanly) {
  CK_INFO info{};
  EXPECT_EQ(p11_->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
}

TEST_F(FaultPkcs11Test, WithoutRulesEverythingWorks) {
  ASSERT_NO_FATAL_FAILURE(Start(""));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(SignAndVerify(i), CKR_OK);
  }
  Bytes signature;
  ASSERT_EQ(Sign(session_, Digest(1), &signature), CKR_OK);
  EXPECT_FALSE(Verifies(verify_key_.get(), Digest(2), signature));  // the check can fail
  EXPECT_FALSE(std::filesystem::exists(log_));
}

TEST_F(FaultPkcs11Test, NthCallOnly) {
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:2:CKR_DEVICE_ERROR"));
  EXPECT_EQ(SignAndVerify(1), CKR_OK);
  // The injected failure ends the operation on the real token, so C_SignInit works next time.
  EXPECT_EQ(SignAndVerify(2), CKR_DEVICE_ERROR);
  EXPECT_EQ(SignAndVerify(3), CKR_OK);
  EXPECT_EQ(SignAndVerify(4), CKR_OK);
  EXPECT_THAT(ReadLines(log_), ElementsAre("C_Sign #2 -> CKR_DEVICE_ERROR"));
}

TEST_F(FaultPkcs11Test, NthCallAndLater) {
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:3+:CKR_DEVICE_REMOVED"));
  EXPECT_EQ(SignAndVerify(1), CKR_OK);
  EXPECT_EQ(SignAndVerify(2), CKR_OK);
  for (int i = 3; i <= 6; ++i) {
    EXPECT_EQ(SignAndVerify(i), CKR_DEVICE_REMOVED) << i;
  }
  EXPECT_EQ(ReadLines(log_).size(), 4u);
}

TEST_F(FaultPkcs11Test, Range) {
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:2-3:CKR_GENERAL_ERROR"));
  EXPECT_EQ(SignAndVerify(1), CKR_OK);
  EXPECT_EQ(SignAndVerify(2), CKR_GENERAL_ERROR);
  EXPECT_EQ(SignAndVerify(3), CKR_GENERAL_ERROR);
  EXPECT_EQ(SignAndVerify(4), CKR_OK);
}

TEST_F(FaultPkcs11Test, EveryKthCall) {
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:every:2:CKR_FUNCTION_FAILED"));
  for (int i = 1; i <= 6; ++i) {
    EXPECT_EQ(SignAndVerify(i), i % 2 == 0 ? CKR_FUNCTION_FAILED : CKR_OK) << i;
  }
  EXPECT_THAT(ReadLines(log_),
              ElementsAre("C_Sign #2 -> CKR_FUNCTION_FAILED", "C_Sign #4 -> CKR_FUNCTION_FAILED",
                          "C_Sign #6 -> CKR_FUNCTION_FAILED"));
}

TEST_F(FaultPkcs11Test, HexActionAndFirstMatchingRuleWins) {
  ASSERT_NO_FATAL_FAILURE(Start(" C_Sign:2:0x80000123 ;C_Sign:1+:CKR_SESSION_CLOSED;"));
  EXPECT_EQ(SignAndVerify(1), CKR_SESSION_CLOSED);
  EXPECT_EQ(SignAndVerify(2), CKR_VENDOR_DEFINED | 0x123);
  EXPECT_EQ(SignAndVerify(3), CKR_SESSION_CLOSED);
  EXPECT_THAT(ReadLines(log_),
              ElementsAre("C_Sign #1 -> CKR_SESSION_CLOSED", "C_Sign #2 -> 0x80000123",
                          "C_Sign #3 -> CKR_SESSION_CLOSED"));
}

TEST_F(FaultPkcs11Test, OtherFunctions) {
  ASSERT_EQ(Initialize("C_OpenSession:2:CKR_SESSION_COUNT;C_Login:1:CKR_PIN_INCORRECT;"
                       "C_GenerateKeyPair:1:CKR_DEVICE_MEMORY;C_FindObjectsInit:1:"
                       "CKR_TOKEN_NOT_PRESENT;C_GetAttributeValue:1:CKR_DEVICE_REMOVED;"
                       "C_SignInit:1:CKR_USER_NOT_LOGGED_IN"),
            CKR_OK);
  ASSERT_EQ(OpenSession(&session_), CKR_OK);
  CK_SESSION_HANDLE second = CK_INVALID_HANDLE;
  EXPECT_EQ(OpenSession(&second), CKR_SESSION_COUNT);
  EXPECT_EQ(second, CK_INVALID_HANDLE);
  EXPECT_EQ(Login(session_), CKR_PIN_INCORRECT);
  CK_SESSION_INFO info{};
  ASSERT_EQ(p11_->C_GetSessionInfo(session_, &info), CKR_OK);
  EXPECT_EQ(info.state, CKS_RW_PUBLIC_SESSION);  // the failed login never reached the token
  ASSERT_EQ(Login(session_), CKR_OK);
  EXPECT_EQ(GenerateKey(session_), CKR_DEVICE_MEMORY);
  ASSERT_EQ(GenerateKey(session_), CKR_OK);

  CK_OBJECT_CLASS key_class = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE find[] = {{CKA_CLASS, &key_class, sizeof(key_class)}};
  EXPECT_EQ(p11_->C_FindObjectsInit(session_, find, 1), CKR_TOKEN_NOT_PRESENT);
  ASSERT_EQ(p11_->C_FindObjectsInit(session_, find, 1), CKR_OK);
  CK_OBJECT_HANDLE found = CK_INVALID_HANDLE;
  CK_ULONG found_count = 0;
  EXPECT_EQ(p11_->C_FindObjects(session_, &found, 1, &found_count), CKR_OK);
  EXPECT_EQ(found_count, 1u);
  EXPECT_EQ(found, private_key_);
  EXPECT_EQ(p11_->C_FindObjectsFinal(session_), CKR_OK);

  EXPECT_EQ(ReadPublicKey(session_), CKR_DEVICE_REMOVED);
  ASSERT_EQ(ReadPublicKey(session_), CKR_OK);
  EXPECT_EQ(SignAndVerify(1), CKR_USER_NOT_LOGGED_IN);
  EXPECT_EQ(SignAndVerify(2), CKR_OK);
  EXPECT_THAT(ReadLines(log_), ElementsAre("C_OpenSession #2 -> CKR_SESSION_COUNT",
                                           "C_Login #1 -> CKR_PIN_INCORRECT",
                                           "C_GenerateKeyPair #1 -> CKR_DEVICE_MEMORY",
                                           "C_FindObjectsInit #1 -> CKR_TOKEN_NOT_PRESENT",
                                           "C_GetAttributeValue #1 -> CKR_DEVICE_REMOVED",
                                           "C_SignInit #1 -> CKR_USER_NOT_LOGGED_IN"));
}

TEST_F(FaultPkcs11Test, CorruptFlipsABitOfAReturnedSignatureOnly) {
  // Call 1 is a length query: no signature to corrupt, so nothing happens and nothing is logged.
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:1-2:corrupt"));
  CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
  ASSERT_EQ(p11_->C_SignInit(session_, &mechanism, private_key_), CKR_OK);
  Bytes digest = Digest(1);
  CK_ULONG len = 0;
  ASSERT_EQ(p11_->C_Sign(session_, digest.data(), digest.size(), nullptr, &len), CKR_OK);
  ASSERT_EQ(len, 64u);
  Bytes signature(len);
  ASSERT_EQ(p11_->C_Sign(session_, digest.data(), digest.size(), signature.data(), &len), CKR_OK);
  ASSERT_EQ(len, 64u);
  EXPECT_FALSE(Verifies(verify_key_.get(), digest, signature));
  signature[32] ^= 0x10;  // the bit the module flipped
  EXPECT_TRUE(Verifies(verify_key_.get(), digest, signature));
  EXPECT_EQ(SignAndVerify(3), CKR_OK);
  EXPECT_THAT(ReadLines(log_), ElementsAre("C_Sign #2 -> corrupt"));
}

TEST_F(FaultPkcs11Test, LogoutLogsTheTokenOutForReal) {
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:2:logout"));
  EXPECT_EQ(SignAndVerify(1), CKR_OK);
  EXPECT_EQ(SignAndVerify(2), CKR_USER_NOT_LOGGED_IN);
  CK_SESSION_INFO info{};
  ASSERT_EQ(p11_->C_GetSessionInfo(session_, &info), CKR_OK);
  EXPECT_EQ(info.state, CKS_RW_PUBLIC_SESSION);
  // What SoftHSM does next, by itself: the private key's handle died with the login, for good.
  EXPECT_EQ(SignAndVerify(3), CKR_OBJECT_HANDLE_INVALID);
  ASSERT_EQ(Login(session_), CKR_OK);
  EXPECT_EQ(SignAndVerify(4), CKR_OBJECT_HANDLE_INVALID);
  ASSERT_NO_FATAL_FAILURE(FindPrivateKey());
  EXPECT_EQ(SignAndVerify(5), CKR_OK);
  EXPECT_THAT(ReadLines(log_),
              ElementsAre("C_Sign #2 -> logout (C_Logout: CKR_OK), CKR_USER_NOT_LOGGED_IN"));
}

TEST_F(FaultPkcs11Test, CloseMakesTheTokenRefuseTheSession) {
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:1:close"));
  EXPECT_EQ(SignAndVerify(1), CKR_SESSION_HANDLE_INVALID);  // from SoftHSM itself
  CK_SESSION_INFO info{};
  EXPECT_EQ(p11_->C_GetSessionInfo(session_, &info), CKR_SESSION_HANDLE_INVALID);
  // Closing the last session logged the token out (and killed the key's handle): a new session
  // logs in again, finds the key and signs.
  ASSERT_EQ(OpenSession(&session_), CKR_OK);
  ASSERT_EQ(Login(session_), CKR_OK);
  ASSERT_NO_FATAL_FAILURE(FindPrivateKey());
  EXPECT_EQ(SignAndVerify(2), CKR_OK);
  EXPECT_THAT(ReadLines(log_), ElementsAre("C_Sign #1 -> close (C_CloseSession: CKR_OK)"));
}

TEST_F(FaultPkcs11Test, MalformedRuleFailsInitialize) {
  for (const std::string rule : {"C_Sign",
                                 "C_Sign:2",
                                 "C_Sign:2:",
                                 ":2:CKR_DEVICE_ERROR",
                                 "C_Nope:1:CKR_DEVICE_ERROR",
                                 "C_Initialize:1:CKR_DEVICE_ERROR",
                                 "C_Sign:0:CKR_DEVICE_ERROR",
                                 "C_Sign:x:CKR_DEVICE_ERROR",
                                 "C_Sign:-1:CKR_DEVICE_ERROR",
                                 "C_Sign:+:CKR_DEVICE_ERROR",
                                 "C_Sign:3-2:CKR_DEVICE_ERROR",
                                 "C_Sign:1-:CKR_DEVICE_ERROR",
                                 "C_Sign:every:0:CKR_DEVICE_ERROR",
                                 "C_Sign:every:CKR_DEVICE_ERROR",
                                 "C_Sign:1:2:CKR_DEVICE_ERROR",
                                 "C_Sign:1:CKR_NOPE",
                                 "C_Sign:1:CKR_OK",
                                 "C_Sign:1:0x",
                                 "C_Sign:1:0x0",
                                 "C_Sign:1:0xg",
                                 "C_Sign:1:ckr_device_error",
                                 "C_Login:1:corrupt",
                                 "C_SignInit:1:logout",
                                 "C_Sign:99999999999999999999:CKR_DEVICE_ERROR"}) {
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(Initialize("C_Sign:1:CKR_DEVICE_ERROR;" + rule), CKR_ARGUMENTS_BAD) << rule;
    EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("bad rule '" + rule + "'"));
  }
  // A failed C_Initialize leaves the module ready for a good one.
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:1:CKR_DEVICE_ERROR"));
  EXPECT_EQ(SignAndVerify(1), CKR_DEVICE_ERROR);
  EXPECT_EQ(SignAndVerify(2), CKR_OK);
}

TEST_F(FaultPkcs11Test, CountsAreExactUnderConcurrentSigning) {
  constexpr int kThreads = 4;
  constexpr int kSignsPerThread = 25;
  ASSERT_NO_FATAL_FAILURE(Start("C_Sign:every:5:CKR_DEVICE_ERROR"));
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
      if (OpenSession(&session) != CKR_OK) {
        other += kSignsPerThread;
        return;
      }
      for (int i = 0; i < kSignsPerThread; ++i) {
        const Bytes digest = Digest(t * 1000 + i);
        Bytes signature;
        const CK_RV rv = Sign(session, digest, &signature);
        if (rv == CKR_OK && Verifies(verify_key_.get(), digest, signature)) {
          ++ok;
        } else if (rv == CKR_DEVICE_ERROR) {
          ++failed;
        } else {
          ++other;
        }
      }
      p11_->C_CloseSession(session);
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  constexpr int kCalls = kThreads * kSignsPerThread;
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(failed.load(), kCalls / 5);
  EXPECT_EQ(ok.load(), kCalls - kCalls / 5);
  std::set<std::string> lines;
  for (const std::string& line : ReadLines(log_)) {
    EXPECT_TRUE(lines.insert(line).second) << line;
  }
  std::set<std::string> want;
  for (int call = 5; call <= kCalls; call += 5) {
    want.insert("C_Sign #" + std::to_string(call) + " -> CKR_DEVICE_ERROR");
  }
  EXPECT_EQ(lines, want);
}

TEST_F(FaultPkcs11Test, RulesFileChangesRulesAndRestartsCounts) {
  const std::filesystem::path rules = token_->dir() / "rules";
  const auto write_rules = [&](const std::string& text) {
    const std::filesystem::path tmp = token_->dir() / "rules.tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, rules);
  };
  ::setenv("SIGNET_FAULT_RULES_FILE", rules.c_str(), 1);
  ASSERT_NO_FATAL_FAILURE(Start(""));  // no file yet: no rules
  EXPECT_EQ(SignAndVerify(1), CKR_OK);

  write_rules("C_Sign:1+:CKR_DEVICE_REMOVED\nC_SignInit:every:100:CKR_DEVICE_ERROR\n");
  EXPECT_EQ(SignAndVerify(2), CKR_DEVICE_REMOVED);
  EXPECT_EQ(SignAndVerify(3), CKR_DEVICE_REMOVED);

  write_rules("C_Sign:2:CKR_DEVICE_ERROR");
  EXPECT_EQ(SignAndVerify(4), CKR_OK);  // counting restarted
  EXPECT_EQ(SignAndVerify(5), CKR_DEVICE_ERROR);
  EXPECT_EQ(SignAndVerify(6), CKR_OK);

  std::filesystem::remove(rules);
  EXPECT_EQ(SignAndVerify(7), CKR_OK);
  EXPECT_EQ(SignAndVerify(8), CKR_OK);
  EXPECT_THAT(ReadLines(log_),
              ElementsAre("C_Sign #1 -> CKR_DEVICE_REMOVED", "C_Sign #2 -> CKR_DEVICE_REMOVED",
                          "C_Sign #2 -> CKR_DEVICE_ERROR"));
}

TEST_F(FaultPkcs11Test, RulesFileWithBadRuleFailsInitialize) {
  const std::filesystem::path rules = token_->dir() / "rules";
  std::ofstream(rules) << "C_Sign:1:CKR_DEVICE_ERROR\nC_Sign:every:x:CKR_DEVICE_ERROR\n";
  ::setenv("SIGNET_FAULT_RULES_FILE", rules.c_str(), 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Initialize(""), CKR_ARGUMENTS_BAD);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(),
              HasSubstr("bad rule 'C_Sign:every:x:CKR_DEVICE_ERROR' in " + rules.string()));
}

TEST_F(FaultPkcs11Test, RulesAndRulesFileTogetherFailInitialize) {
  ::setenv("SIGNET_FAULT_RULES_FILE", (token_->dir() / "rules").c_str(), 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Initialize("C_Sign:1:CKR_DEVICE_ERROR"), CKR_ARGUMENTS_BAD);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("not both"));
}

}  // namespace
}  // namespace signet::hsm::testing
