// Keys: generated inside the token as sign-only and non-extractable, found by label, refused when
// any attribute would let them leave the token or do more than sign, exported as SPKI/PEM.
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <p11-kit/pkcs11.h>

#include <fstream>
#include <string>
#include <vector>

#include "hsm/hsm.h"
#include "tests/hsm/softhsm_token.h"

namespace signet::hsm {
namespace {

using testing::ConfigFor;
using ::testing::HasSubstr;
using testing::kSoftHsmModule;
using testing::RunCommand;
using testing::SoftHsmToken;

std::unique_ptr<Token> OpenToken(const SoftHsmToken& token) {
  auto opened = Token::Open(ConfigFor(token));
  EXPECT_TRUE(opened) << opened.error();
  return opened ? std::move(*opened) : nullptr;
}

// Talks PKCS#11 to SoftHSM directly, bypassing Signet: to make keys Signet must refuse, and to
// check what a made key allows.
class RawPkcs11 {
 public:
  explicit RawPkcs11(const SoftHsmToken& token) {
    lib_ = ::dlopen(kSoftHsmModule, RTLD_NOW | RTLD_LOCAL);
    auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(lib_, "C_GetFunctionList"));
    EXPECT_EQ(get(&fn_), CKR_OK);
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    EXPECT_EQ(fn_->C_Initialize(&args), CKR_OK);
    CK_SLOT_ID slots[8];
    CK_ULONG count = 8;
    EXPECT_EQ(fn_->C_GetSlotList(CK_TRUE, slots, &count), CKR_OK);
    EXPECT_GE(count, 1u);
    EXPECT_EQ(fn_->C_OpenSession(slots[0], CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                 &session_),
              CKR_OK);
    std::string pin = token.pin();
    EXPECT_EQ(
        fn_->C_Login(session_, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size()),
        CKR_OK);
  }
  ~RawPkcs11() {
    fn_->C_CloseSession(session_);
    fn_->C_Finalize(nullptr);
    ::dlclose(lib_);
  }

  // An EC P-256 key pair with the given private-key booleans (unwrap is always off; SoftHSM turns
  // decrypt and unwrap on unless told).
  CK_OBJECT_HANDLE MakeEcKey(const std::string& label, CK_BBOOL sensitive, CK_BBOOL extractable,
                             CK_BBOOL derive, CK_BBOOL decrypt = CK_FALSE,
                             CK_BBOOL unwrap = CK_FALSE) {
    static const CK_BYTE kP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &yes, 1},
        {CKA_EC_PARAMS, const_cast<CK_BYTE*>(kP256), sizeof kP256},
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
        {CKA_ID, const_cast<char*>(label.data()), label.size()},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &yes, 1},
        {CKA_SIGN, &yes, 1},
        {CKA_SENSITIVE, &sensitive, 1},
        {CKA_EXTRACTABLE, &extractable, 1},
        {CKA_DERIVE, &derive, 1},
        {CKA_DECRYPT, &decrypt, 1},
        {CKA_UNWRAP, &unwrap, 1},
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
        {CKA_ID, const_cast<char*>(label.data()), label.size()},
    };
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE pub_key = 0;
    CK_OBJECT_HANDLE priv_key = 0;
    EXPECT_EQ(fn_->C_GenerateKeyPair(session_, &mechanism, pub, std::size(pub), priv,
                                     std::size(priv), &pub_key, &priv_key),
              CKR_OK);
    return priv_key;
  }

  void SetBool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, CK_BBOOL value) {
    CK_ATTRIBUTE attr{type, &value, 1};
    EXPECT_EQ(fn_->C_SetAttributeValue(session_, object, &attr, 1), CKR_OK);
  }

  CK_OBJECT_HANDLE FindPrivate(const std::string& label) {
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE query[] = {{CKA_CLASS, &cls, sizeof cls},
                            {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
    EXPECT_EQ(fn_->C_FindObjectsInit(session_, query, 2), CKR_OK);
    CK_OBJECT_HANDLE found = 0;
    CK_ULONG count = 0;
    EXPECT_EQ(fn_->C_FindObjects(session_, &found, 1, &count), CKR_OK);
    fn_->C_FindObjectsFinal(session_);
    EXPECT_EQ(count, 1u);
    return found;
  }

  CK_RV GetAttribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE attr{type, nullptr, 0};
    return fn_->C_GetAttributeValue(session_, object, &attr, 1);
  }

  bool GetBool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE attr{type, &value, 1};
    EXPECT_EQ(fn_->C_GetAttributeValue(session_, object, &attr, 1), CKR_OK);
    return value == CK_TRUE;
  }

 private:
  void* lib_ = nullptr;
  CK_FUNCTION_LIST* fn_ = nullptr;
  CK_SESSION_HANDLE session_ = 0;
};

TEST(KeysTest, GeneratesEveryTypeSignOnlyAndNeverExtractable) {
  SoftHsmToken token;
  std::vector<std::string> fingerprints;
  {
    auto hsm = OpenToken(token);
    ASSERT_TRUE(hsm);
    for (KeyType type :
         {KeyType::kEcdsaP256, KeyType::kEcdsaP384, KeyType::kRsa3072, KeyType::kEd25519}) {
      const std::string label = std::string(KeyTypeName(type));
      auto made = hsm->GenerateKey(label, type);
      ASSERT_TRUE(made) << made.error();
      EXPECT_EQ(made->type, type);
      EXPECT_EQ(made->label, label);
      EXPECT_EQ(made->id.size(), 16u);
      EXPECT_EQ(made->public_key.fingerprint.size(), 64u);
      auto found = hsm->FindKey(label);
      ASSERT_TRUE(found) << found.error();
      EXPECT_EQ(found->public_key.spki_der, made->public_key.spki_der);
      EXPECT_EQ(found->public_key.fingerprint, made->public_key.fingerprint);
      fingerprints.push_back(found->public_key.fingerprint);

      // The PEM is what OpenSSL reads, and its fingerprint is the SHA-256 of the DER.
      const auto pem = token.dir() / (label + ".pem");
      std::ofstream(pem) << found->public_key.pem;
      std::string out;
      ASSERT_EQ(RunCommand("openssl pkey -pubin -in " + pem.string() +
                               " -outform DER | openssl dgst -sha256 -r",
                           &out),
                0)
          << out;
      EXPECT_EQ(out.substr(0, 64), found->public_key.fingerprint);
    }
  }
  // Bypassing Signet: the private keys cannot be read out and may only sign.
  RawPkcs11 raw(token);
  for (const char* label : {"ecdsa-p256", "ecdsa-p384", "rsa-3072", "ed25519"}) {
    const CK_OBJECT_HANDLE key = raw.FindPrivate(label);
    EXPECT_EQ(raw.GetAttribute(key, CKA_VALUE) == CKR_OK ||
                  raw.GetAttribute(key, CKA_PRIVATE_EXPONENT) == CKR_OK,
              false)
        << label;
    EXPECT_TRUE(raw.GetBool(key, CKA_SENSITIVE)) << label;
    EXPECT_FALSE(raw.GetBool(key, CKA_EXTRACTABLE)) << label;
    EXPECT_TRUE(raw.GetBool(key, CKA_NEVER_EXTRACTABLE)) << label;
    EXPECT_TRUE(raw.GetBool(key, CKA_SIGN)) << label;
    EXPECT_FALSE(raw.GetBool(key, CKA_DECRYPT)) << label;
    EXPECT_FALSE(raw.GetBool(key, CKA_UNWRAP)) << label;
    EXPECT_FALSE(raw.GetBool(key, CKA_DERIVE)) << label;
  }
}

TEST(KeysTest, DuplicateLabelAndMissingKey) {
  SoftHsmToken token;
  auto hsm = OpenToken(token);
  ASSERT_TRUE(hsm);
  ASSERT_TRUE(hsm->GenerateKey("release", KeyType::kEcdsaP256));
  auto again = hsm->GenerateKey("release", KeyType::kEcdsaP256);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(again.error().message(), HasSubstr("exists already"));
  auto missing = hsm->FindKey("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(missing.error().message(), HasSubstr("no private key labelled 'nope'"));
}

TEST(KeysTest, RefusesKeysThatCouldLeaveTheTokenOrDoMoreThanSign) {
  SoftHsmToken token;
  {
    RawPkcs11 raw(token);
    raw.MakeEcKey("extractable", CK_TRUE, CK_TRUE, CK_FALSE);
    raw.MakeEcKey("not-sensitive", CK_FALSE, CK_FALSE, CK_FALSE);
    raw.MakeEcKey("derive", CK_TRUE, CK_FALSE, CK_TRUE);
    raw.MakeEcKey("decrypt", CK_TRUE, CK_FALSE, CK_FALSE, CK_TRUE);
    raw.MakeEcKey("unwrap", CK_TRUE, CK_FALSE, CK_FALSE, CK_FALSE, CK_TRUE);
    // Extractable once, then locked: CKA_NEVER_EXTRACTABLE stays false for ever.
    const CK_OBJECT_HANDLE was = raw.MakeEcKey("was-extractable", CK_TRUE, CK_TRUE, CK_FALSE);
    raw.SetBool(was, CKA_EXTRACTABLE, CK_FALSE);
    raw.MakeEcKey("good", CK_TRUE, CK_FALSE, CK_FALSE);
  }
  auto hsm = OpenToken(token);
  ASSERT_TRUE(hsm);
  const std::pair<const char*, const char*> refused[] = {
      {"extractable", "CKA_EXTRACTABLE is true"},
      {"not-sensitive", "CKA_SENSITIVE is false"},
      {"derive", "CKA_DERIVE is true"},
      {"decrypt", "CKA_DECRYPT is true"},
      {"unwrap", "CKA_UNWRAP is true"},
      {"was-extractable", "CKA_NEVER_EXTRACTABLE is false"},
  };
  for (const auto& [label, why] : refused) {
    auto found = hsm->FindKey(label);
    ASSERT_FALSE(found) << label;
    EXPECT_EQ(found.error().code(), ErrorCode::kPermissionDenied) << label;
    EXPECT_THAT(found.error().message(), HasSubstr(why)) << label;
    EXPECT_THAT(found.error().message(), HasSubstr(label));
  }
  EXPECT_TRUE(hsm->FindKey("good"));
}

TEST(KeysTest, ParsesKeyTypes) {
  EXPECT_EQ(ParseKeyType("ecdsa-p256").value(), KeyType::kEcdsaP256);
  EXPECT_EQ(ParseKeyType("ed25519").value(), KeyType::kEd25519);
  auto bad = ParseKeyType("rsa-1024");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(), HasSubstr("use ecdsa-p256, ecdsa-p384, rsa-3072"));
}

}  // namespace
}  // namespace signet::hsm
