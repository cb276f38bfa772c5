// Recovery rules, through the fault-injection module (tests/hsm/fault): it forwards every call to
// the real SoftHSM and fails the calls a rule names. A lost session is reopened (and logged in
// again) and the signature retried at most 3 times; anything else fails the job with the CK_RV
// named; a corrupted signature is never returned; a job never returns a partial result.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <future>
#include <sstream>

#include "hsm/hsm.h"
#include "tests/hsm/softhsm_token.h"

namespace signet::hsm {
namespace {

using ::testing::HasSubstr;
using testing::Random;
using testing::SoftHsmToken;
using testing::Verifies;

// A token whose keys are made through the real module, then used through the fault module with
// `rules` (SIGNET_FAULT_RULES syntax: FUNCTION:WHEN:ACTION;...).
class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TokenConfig config = Config(testing::kSoftHsmModule);
    auto maker = Token::Open(config);
    ASSERT_TRUE(maker) << maker.error();
    auto ec = (*maker)->GenerateKey("ec", KeyType::kEcdsaP256);
    auto rsa = (*maker)->GenerateKey("rsa", KeyType::kRsa3072);
    ASSERT_TRUE(ec && rsa);
    ec_ = *ec;
    rsa_ = *rsa;
  }

  TokenConfig Config(const std::filesystem::path& module, unsigned sessions = 1) const {
    TokenConfig config;
    config.module = module;
    config.token_label = token_.label();
    config.pin_file = token_.pin_file();
    config.sessions = sessions;
    return config;
  }

  // Opens the token through the fault module with `rules`; the keys are looked up again there.
  std::unique_ptr<Token> OpenWithFaults(const std::string& rules,
                                        VerifyPolicy verify = VerifyPolicy::kAll,
                                        unsigned sessions = 1) {
    log_ = token_.dir() / "faults.log";
    std::filesystem::remove(log_);
    ::setenv("SIGNET_FAULT_TARGET", testing::kSoftHsmModule, 1);
    ::setenv("SIGNET_FAULT_RULES", rules.c_str(), 1);
    ::setenv("SIGNET_FAULT_LOG", log_.c_str(), 1);
    TokenConfig config = Config(SIGNET_FAULT_MODULE, sessions);
    config.verify = verify;
    auto opened = Token::Open(config);
    EXPECT_TRUE(opened) << opened.error();
    if (!opened) {
      return nullptr;
    }
    auto ec = (*opened)->FindKey("ec");
    auto rsa = (*opened)->FindKey("rsa");
    EXPECT_TRUE(ec && rsa);
    if (ec && rsa) {
      ec_ = *ec;
      rsa_ = *rsa;
    }
    return std::move(*opened);
  }

  int FaultsInjected() const {
    std::ifstream in(log_);
    int lines = 0;
    for (std::string line; std::getline(in, line);) {
      ++lines;
    }
    return lines;
  }

  SoftHsmToken token_;
  KeyHandle ec_;
  KeyHandle rsa_;
  std::filesystem::path log_;
};

std::vector<Bytes> Digests(int n) {
  std::vector<Bytes> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(Random(32));
  }
  return out;
}

// Each CK_RV after which a session is dead: one failure is retried on a new session and the job
// succeeds, whole and correct.
class LostSessionTest : public RecoveryTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(LostSessionTest, OneFailureIsRecovered) {
  auto hsm = OpenWithFaults(std::string("C_Sign:5:") + GetParam());
  ASSERT_TRUE(hsm);
  const std::vector<Bytes> digests = Digests(10);
  auto signatures = hsm->Sign(ec_, {Scheme::kEcdsa, Hash::kSha256}, digests);
  ASSERT_TRUE(signatures) << signatures.error();
  ASSERT_EQ(signatures->size(), digests.size());
  for (std::size_t i = 0; i < digests.size(); ++i) {
    EXPECT_TRUE(
        Verifies(ec_.public_key, {Scheme::kEcdsa, Hash::kSha256}, digests[i], (*signatures)[i]))
        << i;
  }
  EXPECT_EQ(FaultsInjected(), 1);
  EXPECT_EQ(hsm->stats().retries, 1u);
  EXPECT_EQ(hsm->stats().sessions_reopened, 1u);
}

INSTANTIATE_TEST_SUITE_P(Rvs, LostSessionTest,
                         ::testing::Values("CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED",
                                           "CKR_USER_NOT_LOGGED_IN", "CKR_DEVICE_ERROR",
                                           "CKR_DEVICE_REMOVED", "CKR_TOKEN_NOT_PRESENT"));

TEST_F(RecoveryTest, GenuineLogoutIsRecoveredByLoggingInAgain) {
  auto hsm = OpenWithFaults("C_Sign:2:logout");
  ASSERT_TRUE(hsm);
  const std::vector<Bytes> digests = Digests(4);
  auto signatures = hsm->Sign(ec_, {Scheme::kEcdsa, Hash::kSha256}, digests);
  ASSERT_TRUE(signatures) << signatures.error();
  for (std::size_t i = 0; i < digests.size(); ++i) {
    EXPECT_TRUE(
        Verifies(ec_.public_key, {Scheme::kEcdsa, Hash::kSha256}, digests[i], (*signatures)[i]));
  }
  EXPECT_EQ(hsm->stats().sessions_reopened, 1u);
}

TEST_F(RecoveryTest, GenuinelyClosedSessionIsReopened) {
  auto hsm = OpenWithFaults("C_Sign:3:close");
  ASSERT_TRUE(hsm);
  auto signatures = hsm->Sign(ec_, {Scheme::kEcdsa, Hash::kSha256}, Digests(5));
  ASSERT_TRUE(signatures) << signatures.error();
  EXPECT_EQ(signatures->size(), 5u);
  EXPECT_EQ(hsm->stats().sessions_reopened, 1u);
}

TEST_F(RecoveryTest, PersistentFailureFailsTheWholeJobAfterThreeRetries) {
  auto hsm = OpenWithFaults("C_Sign:3+:CKR_DEVICE_REMOVED");
  ASSERT_TRUE(hsm);
  auto signatures = hsm->Sign(ec_, {Scheme::kEcdsa, Hash::kSha256}, Digests(10));
  ASSERT_FALSE(signatures) << "a partial or wrong result was returned";
  EXPECT_EQ(signatures.error().code(), ErrorCode::kHsm);
  EXPECT_THAT(signatures.error().message(), HasSubstr("CKR_DEVICE_REMOVED"));
  EXPECT_THAT(signatures.error().message(), HasSubstr("after 3 retries"));
  EXPECT_EQ(hsm->stats().retries, 3u);
  EXPECT_EQ(hsm->stats().jobs_failed, 1u);
  EXPECT_EQ(FaultsInjected(), 4);  // the first try and three retries
}

TEST_F(RecoveryTest, OtherErrorsFailAtOnceNamingTheRv) {
  auto hsm = OpenWithFaults("C_Sign:1:CKR_GENERAL_ERROR");
  ASSERT_TRUE(hsm);
  auto signatures = hsm->Sign(ec_, {Scheme::kEcdsa, Hash::kSha256}, Digests(3));
  ASSERT_FALSE(signatures);
  EXPECT_THAT(signatures.error().message(), HasSubstr("C_Sign with key 'ec': CKR_GENERAL_ERROR"));
  EXPECT_EQ(signatures.error().native_code(), 0x5);
  EXPECT_EQ(hsm->stats().retries, 0u);
  EXPECT_EQ(hsm->stats().consecutive_failures, 1u);
  EXPECT_THAT(hsm->stats().last_error, HasSubstr("CKR_GENERAL_ERROR"));
  // The token keeps working for the next job, and says so.
  EXPECT_TRUE(hsm->Sign(ec_, {Scheme::kEcdsa, Hash::kSha256}, Digests(3)));
  EXPECT_EQ(hsm->stats().consecutive_failures, 0u);
  EXPECT_THAT(hsm->stats().last_error, HasSubstr("CKR_GENERAL_ERROR"));
}

// A job split over two sessions whose one part fails: the caller gets the error once, and no
// signature of the part that succeeded.
TEST_F(RecoveryTest, AFailedPartFailsTheWholeSplitJobOnce) {
  auto hsm = OpenWithFaults("C_Sign:40:CKR_GENERAL_ERROR", VerifyPolicy::kAll, 2);
  ASSERT_TRUE(hsm);
  std::atomic<int> calls{0};
  std::promise<Result<Signatures>> result;
  ASSERT_TRUE(
      hsm->Submit(ec_, {Scheme::kEcdsa, Hash::kSha256}, Digests(100), [&](Result<Signatures> r) {
        if (calls.fetch_add(1) == 0) {
          result.set_value(std::move(r));
        }
      }));
  auto signatures = result.get_future().get();
  ASSERT_FALSE(signatures) << "a partial result was returned";
  EXPECT_THAT(signatures.error().message(), HasSubstr("CKR_GENERAL_ERROR"));
  hsm.reset();  // drains: a second callback would have run by now
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(FaultsInjected(), 1);
}

TEST_F(RecoveryTest, CorruptedSignatureIsNeverReturned) {
  auto hsm = OpenWithFaults("C_Sign:2:corrupt");
  ASSERT_TRUE(hsm);
  auto signatures = hsm->Sign(ec_, {Scheme::kEcdsa, Hash::kSha256}, Digests(3));
  ASSERT_FALSE(signatures);
  EXPECT_EQ(signatures.error().code(), ErrorCode::kCrypto);
  EXPECT_THAT(signatures.error().message(), HasSubstr("does not verify"));
}

TEST_F(RecoveryTest, RsaIsVerifiedEvenWithVerificationOff) {
  auto hsm = OpenWithFaults("C_Sign:1:corrupt", VerifyPolicy::kNone);
  ASSERT_TRUE(hsm);
  auto signatures = hsm->Sign(rsa_, {Scheme::kRsaPkcs1, Hash::kSha256}, Digests(1));
  ASSERT_FALSE(signatures) << "a corrupted RSA signature was released";
  EXPECT_EQ(signatures.error().code(), ErrorCode::kCrypto);
}

}  // namespace
}  // namespace signet::hsm
