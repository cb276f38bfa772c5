#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pipeline/pipeline.h"

namespace signet::pipeline {
namespace {

using ::testing::HasSubstr;

TEST(DigestTest, ParsesAlgorithmNames) {
  EXPECT_EQ(ParseDigestAlgorithm("sha256").value(), DigestAlgorithm::kSha256);
  EXPECT_EQ(ParseDigestAlgorithm("SHA-256").value(), DigestAlgorithm::kSha256);
  EXPECT_EQ(ParseDigestAlgorithm("sha384").value(), DigestAlgorithm::kSha384);
  EXPECT_EQ(ParseDigestAlgorithm("Sha512").value(), DigestAlgorithm::kSha512);
  EXPECT_EQ(ParseDigestAlgorithm("blake2b").value(), DigestAlgorithm::kBlake2b512);
  EXPECT_EQ(ParseDigestAlgorithm("blake2b-512").value(), DigestAlgorithm::kBlake2b512);
  for (DigestAlgorithm a : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha384,
                            DigestAlgorithm::kSha512, DigestAlgorithm::kBlake2b512}) {
    EXPECT_EQ(ParseDigestAlgorithm(DigestAlgorithmName(a)).value(), a);
  }
}

TEST(DigestTest, RefusesUnknownAndWeakAlgorithms) {
  for (std::string_view name : {"md5", "sha1", "sha-1", "", "sha256 "}) {
    auto r = ParseDigestAlgorithm(name);
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(r.error().message(), HasSubstr("use one of sha256, sha384, sha512, blake2b512"));
  }
}

// FIPS 180-2 appendix examples ("abc") and RFC 7693 appendix A (BLAKE2b-512 of "abc").
TEST(DigestTest, KnownAnswers) {
  const auto abc = AsBytes("abc");
  EXPECT_EQ(DigestBytes(DigestAlgorithm::kSha256, abc)->Hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(DigestBytes(DigestAlgorithm::kSha384, abc)->Hex(),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
            "8086072ba1e7cc2358baeca134c825a7");
  EXPECT_EQ(DigestBytes(DigestAlgorithm::kSha512, abc)->Hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(DigestBytes(DigestAlgorithm::kBlake2b512, abc)->Hex(),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
            "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923");
  EXPECT_EQ(DigestBytes(DigestAlgorithm::kSha256, {})->Hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(DigestTest, MakeChecksLength) {
  const std::uint8_t bytes[32] = {};
  auto ok = Digest::Make(DigestAlgorithm::kSha256, bytes);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->bytes().size(), 32u);
  EXPECT_EQ(DigestLength(DigestAlgorithm::kSha384), 48u);
  auto bad = Digest::Make(DigestAlgorithm::kSha512, bytes);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(bad.error().message(), HasSubstr("a sha512 digest is 64 bytes, not 32"));
}

TEST(DigestTest, ParsesBackends) {
  EXPECT_EQ(ParseIoBackend("auto").value(), IoBackend::kAuto);
  EXPECT_EQ(ParseIoBackend("io_uring").value(), IoBackend::kIoUring);
  EXPECT_EQ(ParseIoBackend("pread").value(), IoBackend::kPread);
  auto bad = ParseIoBackend("mmap");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(), HasSubstr("use auto, io_uring or pread"));
}

}  // namespace
}  // namespace signet::pipeline
