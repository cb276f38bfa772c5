#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include <cerrno>

#include "appliance/base/base.h"

namespace signet {
namespace {

using ::testing::HasSubstr;

Result<int> ParsePositive(int v) {
  if (v <= 0) {
    return MakeError(ErrorCode::kInvalidArgument, "must be positive, got " + std::to_string(v));
  }
  return v;
}

Result<int> Doubled(int v) {
  SIGNET_ASSIGN_OR_RETURN(int parsed, ParsePositive(v));
  return parsed * 2;
}

Status Check(int v) {
  SIGNET_RETURN_IF_ERROR(ParsePositive(v));
  return OkStatus();
}

TEST(ErrorTest, CarriesCodeMessageAndNativeCode) {
  Error e(ErrorCode::kHsm, "C_Sign failed", ErrorDomain::kPkcs11, 0xB3);
  EXPECT_EQ(e.code(), ErrorCode::kHsm);
  EXPECT_EQ(e.message(), "C_Sign failed");
  EXPECT_EQ(e.domain(), ErrorDomain::kPkcs11);
  EXPECT_EQ(e.native_code(), 0xB3);
  EXPECT_EQ(e.ToString(), "hsm error: C_Sign failed (CK_RV 0xb3)");
}

TEST(ErrorTest, ToStringWithoutNativeCode) {
  EXPECT_EQ(Error(ErrorCode::kNotFound, "key 'release' is not configured").ToString(),
            "not found: key 'release' is not configured");
}

TEST(ErrorTest, WithContextPrefixesMessageAndKeepsTheRest) {
  const Error e(ErrorCode::kIo, "disk full", ErrorDomain::kLmdb, -30792);
  const Error wrapped = e.WithContext("audit commit");
  EXPECT_EQ(wrapped.message(), "audit commit: disk full");
  EXPECT_EQ(wrapped.code(), ErrorCode::kIo);
  EXPECT_EQ(wrapped.native_code(), -30792);
  EXPECT_EQ(e.message(), "disk full");  // the const& overload copies
  EXPECT_EQ(wrapped.ToString(), "i/o error: audit commit: disk full (lmdb rc -30792)");
}

TEST(ErrorTest, EveryCodeHasAName) {
  for (int c = static_cast<int>(ErrorCode::kInvalidArgument);
       c <= static_cast<int>(ErrorCode::kInternal); ++c) {
    EXPECT_NE(ErrorCodeName(static_cast<ErrorCode>(c)), "unknown") << c;
  }
  EXPECT_EQ(ErrorCodeName(static_cast<ErrorCode>(200)), "unknown");
}

TEST(ErrorTest, ErrnoErrorMapsCodes) {
  EXPECT_EQ(ErrnoError(ENOENT, "open").code(), ErrorCode::kNotFound);
  EXPECT_EQ(ErrnoError(EACCES, "open").code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(ErrnoError(ETIMEDOUT, "connect").code(), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(ErrnoError(ENOSPC, "write").code(), ErrorCode::kUnavailable);
  EXPECT_EQ(ErrnoError(EINVAL, "lseek").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrnoError(EIO, "read").code(), ErrorCode::kIo);
  const Error e = ErrnoError(ENOENT, "open dist/a.tar");
  EXPECT_EQ(e.domain(), ErrorDomain::kErrno);
  EXPECT_EQ(e.native_code(), ENOENT);
  EXPECT_EQ(e.ToString(), "not found: open dist/a.tar: No such file or directory (errno 2)");
}

TEST(ErrorTest, MacrosPropagateErrorsAndValues) {
  EXPECT_EQ(Doubled(21).value(), 42);
  auto bad = Doubled(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(bad.error().message(), HasSubstr("got -1"));
  EXPECT_TRUE(Check(1));
  EXPECT_FALSE(Check(0));
}

TEST(ErrorTest, OpenSslErrorDrainsTheQueueIntoTheMessage) {
  ERR_clear_error();
  ERR_raise(ERR_LIB_EVP, EVP_R_BAD_DECRYPT);
  ERR_raise(ERR_LIB_EVP, EVP_R_UNSUPPORTED_ALGORITHM);
  const Error e = OpenSslError("decrypting");
  EXPECT_EQ(e.code(), ErrorCode::kCrypto);
  EXPECT_EQ(e.domain(), ErrorDomain::kOpenSsl);
  EXPECT_NE(e.native_code(), 0);
  EXPECT_THAT(e.message(), HasSubstr("decrypting: "));
  EXPECT_THAT(e.message(), HasSubstr("bad decrypt"));
  EXPECT_THAT(e.message(), HasSubstr("unsupported algorithm"));
  EXPECT_EQ(ERR_peek_error(), 0u);  // drained: the next failure starts clean
  EXPECT_EQ(OpenSslError("nothing queued").message(), "nothing queued");
}

}  // namespace
}  // namespace signet
