// Opening a token: the module, the label, the PIN and the config are each checked with a clear
// error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "hsm/hsm.h"
#include "tests/hsm/softhsm_token.h"

namespace signet::hsm {
namespace {

using testing::ConfigFor;
using ::testing::HasSubstr;
using testing::kSoftHsmModule;
using testing::SoftHsmToken;

TEST(TokenTest, OpensAndCloses) {
  SoftHsmToken token;
  auto opened = Token::Open(ConfigFor(token));
  ASSERT_TRUE(opened) << opened.error();
  EXPECT_EQ((*opened)->stats().signatures, 0u);
  EXPECT_TRUE((*opened)->CheckLogin()) << "a token that just logged in says so";
  opened->reset();
  // And again: the module is finalized and initialized anew.
  auto again = Token::Open(ConfigFor(token));
  ASSERT_TRUE(again) << again.error();
}

TEST(TokenTest, UnknownLabelListsTheTokensPresent) {
  SoftHsmToken token("real-label");
  TokenConfig config = ConfigFor(token);
  config.token_label = "no-such-token";
  auto opened = Token::Open(config);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(opened.error().message(), HasSubstr("no token labelled 'no-such-token'"));
  EXPECT_THAT(opened.error().message(), HasSubstr("'real-label'"));
}

TEST(TokenTest, WrongPinIsPermissionDenied) {
  SoftHsmToken token;
  std::ofstream(token.pin_file()) << "000000\n";
  auto opened = Token::Open(ConfigFor(token));
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_THAT(opened.error().message(), HasSubstr("CKR_PIN_INCORRECT"));
  EXPECT_THAT(opened.error().message(), HasSubstr("the PIN in the PIN file is wrong"));
  EXPECT_EQ(opened.error().domain(), ErrorDomain::kPkcs11);
}

TEST(TokenTest, PinFileReadableByOthersIsRefused) {
  SoftHsmToken token;
  ASSERT_EQ(::chmod(token.pin_file().c_str(), 0644), 0);
  auto opened = Token::Open(ConfigFor(token));
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_THAT(opened.error().message(), HasSubstr("the token's PIN file"));
  EXPECT_THAT(opened.error().message(), HasSubstr("chmod o-rwx"));
}

TEST(TokenTest, MissingModuleAndBadConfig) {
  SoftHsmToken token;
  TokenConfig config = ConfigFor(token);
  config.module = "/nonexistent/libpkcs11.so";
  auto missing = Token::Open(config);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(missing.error().message(), HasSubstr("/nonexistent/libpkcs11.so does not exist"));

  config = ConfigFor(token);
  config.module = "/usr/lib/x86_64-linux-gnu/libc.so.6";
  auto not_pkcs11 = Token::Open(config);
  ASSERT_FALSE(not_pkcs11);
  EXPECT_THAT(not_pkcs11.error().message(), HasSubstr("is not a PKCS#11 module"));

  config = ConfigFor(token);
  config.sessions = 0;
  auto zero = Token::Open(config);
  ASSERT_FALSE(zero);
  EXPECT_THAT(zero.error().message(), HasSubstr("sessions = 0 is out of range; use 1 to 64"));
}

}  // namespace
}  // namespace signet::hsm
