// RateLimiter and Authorize: the sliding hour, principals, bounded memory, threads, reloads,
// approvals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "appliance/policy/policy.h"

namespace signet::policy {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::HasSubstr;
using Clock = RateLimiter::Clock;

const Clock::time_point kStart = Clock::time_point{} + hours(1000);

Rule Limited(std::string name, std::uint64_t rate) {
  Rule rule;
  rule.name = std::move(name);
  rule.rate_per_hour = rate;
  return rule;
}

Principal User(std::string name) { return Principal{.user = std::move(name)}; }

TEST(RateLimiterTest, SlidingHour) {
  RateLimiter limiter;
  const Rule rule = Limited("ci", 100);
  const Principal bob = User("bob");
  EXPECT_TRUE(limiter.Charge(rule, bob, 60, kStart).allowed());
  EXPECT_TRUE(limiter.Charge(rule, bob, 40, kStart + minutes(10)).allowed());
  const Verdict full = limiter.Charge(rule, bob, 1, kStart + minutes(30));
  EXPECT_EQ(full.decision, Decision::kDeny);
  EXPECT_EQ(full.rule, "ci");
  EXPECT_EQ(full.reason,
            "rate limit of rule ci: 100 signatures per hour for user:bob, 100 used, 1 requested; "
            "try again in 30 min");
  // Still inside the hour of the first charge.
  EXPECT_FALSE(limiter.Charge(rule, bob, 1, kStart + minutes(59) + seconds(59)).allowed());
  EXPECT_EQ(limiter.Used("ci", bob, kStart + minutes(59)), 100u);
  // The first minute's 60 leave the window at +60 min; the 40 from +10 min stay until +70.
  EXPECT_EQ(limiter.Used("ci", bob, kStart + minutes(60)), 40u);
  EXPECT_FALSE(limiter.Charge(rule, bob, 61, kStart + minutes(60)).allowed());
  EXPECT_TRUE(limiter.Charge(rule, bob, 60, kStart + minutes(60)).allowed());
  EXPECT_EQ(limiter.Used("ci", bob, kStart + minutes(70)), 60u);
  // Long idle: everything has left the window.
  EXPECT_EQ(limiter.Used("ci", bob, kStart + hours(5)), 0u);
  EXPECT_TRUE(limiter.Charge(rule, bob, 100, kStart + hours(5)).allowed());
}

TEST(RateLimiterTest, RetryAfterCountsWhatMustLeave) {
  RateLimiter limiter;
  const Rule rule = Limited("ci", 10);
  const Principal bob = User("bob");
  ASSERT_TRUE(limiter.Charge(rule, bob, 2, kStart).allowed());
  ASSERT_TRUE(limiter.Charge(rule, bob, 3, kStart + minutes(5)).allowed());
  ASSERT_TRUE(limiter.Charge(rule, bob, 5, kStart + minutes(20)).allowed());
  // 4 more need the first two charges (2 + 3) gone: the +5 min bucket leaves at +65.
  EXPECT_THAT(limiter.Charge(rule, bob, 4, kStart + minutes(25)).reason,
              HasSubstr("10 used, 4 requested; try again in 40 min"));
}

TEST(RateLimiterTest, PrincipalsAndRulesCountSeparately) {
  RateLimiter limiter;
  const Rule ci = Limited("ci", 10);
  const Rule nightly = Limited("nightly", 10);
  EXPECT_TRUE(limiter.Charge(ci, User("bob"), 10, kStart).allowed());
  EXPECT_FALSE(limiter.Charge(ci, User("bob"), 1, kStart).allowed());
  EXPECT_TRUE(limiter.Charge(ci, User("alice"), 10, kStart).allowed());
  EXPECT_TRUE(limiter.Charge(nightly, User("bob"), 10, kStart).allowed());
  // A uid-only peer and a certificate peer are principals of their own.
  EXPECT_TRUE(limiter.Charge(ci, Principal{.uid = 1000}, 10, kStart).allowed());
  EXPECT_TRUE(limiter.Charge(ci, Principal{.cert_subject = "CN=bob"}, 10, kStart).allowed());
  EXPECT_EQ(limiter.tracked(), 5u);
}

TEST(RateLimiterTest, RequestLargerThanTheLimitNeverFits) {
  RateLimiter limiter;
  const Verdict verdict = limiter.Charge(Limited("ci", 100), User("bob"), 101, kStart);
  EXPECT_EQ(verdict.decision, Decision::kDeny);
  EXPECT_EQ(verdict.reason,
            "rate limit of rule ci: 100 signatures per hour for user:bob; a request of 101 items "
            "can never fit: split it");
  EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(RateLimiterTest, UnlimitedRuleTracksNothing) {
  RateLimiter limiter;
  Rule rule;
  rule.name = "free";
  EXPECT_TRUE(limiter.Charge(rule, User("bob"), 1'000'000, kStart).allowed());
  EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(RateLimiterTest, ClockSteppingBackCountsInTheNewestMinute) {
  RateLimiter limiter;
  const Rule rule = Limited("ci", 10);
  ASSERT_TRUE(limiter.Charge(rule, User("bob"), 6, kStart + minutes(30)).allowed());
  ASSERT_TRUE(limiter.Charge(rule, User("bob"), 4, kStart).allowed());
  EXPECT_FALSE(limiter.Charge(rule, User("bob"), 1, kStart).allowed());
  EXPECT_EQ(limiter.Used("ci", User("bob"), kStart + minutes(89)), 10u);
  EXPECT_EQ(limiter.Used("ci", User("bob"), kStart + minutes(90)), 0u);
}

TEST(RateLimiterTest, MemoryIsBoundedAndForgetsTheLeastRecentlyCharged) {
  RateLimiter limiter(3);
  const Rule rule = Limited("ci", 10);
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_TRUE(limiter.Charge(rule, User(name), 10, kStart).allowed());
  }
  // Touch "a" (a refused charge counts as use), so "b" is the least recently charged.
  EXPECT_FALSE(limiter.Charge(rule, User("a"), 1, kStart).allowed());
  ASSERT_TRUE(limiter.Charge(rule, User("d"), 1, kStart).allowed());
  EXPECT_EQ(limiter.tracked(), 3u);
  EXPECT_EQ(limiter.Used("ci", User("b"), kStart), 0u);
  EXPECT_EQ(limiter.Used("ci", User("a"), kStart), 10u);
  EXPECT_EQ(limiter.Used("ci", User("c"), kStart), 10u);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(limiter.Charge(rule, User("u" + std::to_string(i)), 1, kStart).allowed());
  }
  EXPECT_EQ(limiter.tracked(), 3u);
}

TEST(RateLimiterTest, ThreadsNeverChargePastTheLimit) {
  RateLimiter limiter(4);
  const Rule rule = Limited("ci", 5000);
  std::atomic<std::uint64_t> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        // Spread over a few minutes and also churn other principals through the small table.
        const Clock::time_point now = kStart + minutes(i / 250);
        if (limiter.Charge(rule, User("bob"), 1 + (i % 3), now).allowed()) {
          allowed += 1 + (i % 3);
        }
        if (t == 0 && i % 10 == 0) {
          (void)limiter.Charge(rule, User("churn" + std::to_string(i % 2)), 1, now);
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(allowed.load(), 5000u);
  EXPECT_EQ(limiter.Used("ci", User("bob"), kStart + minutes(4)), 5000u);
}

constexpr std::string_view kPolicyV1 = R"(
[[rule]]
name = "ci"
keys = ["default"]
principals = ["user:bob"]
rate_per_hour = 100

[[rule]]
name = "other"
keys = ["other"]
principals = ["user:bob"]
rate_per_hour = 100
)";

constexpr std::string_view kPolicyV2 = R"(# v2: same rule names, another order
[[rule]]
name = "other"
keys = ["other"]
principals = ["user:bob"]

[[rule]]
name = "ci"
keys = ["default", "release"]
principals = ["user:bob", "user:alice"]
rate_per_hour = 120
)";

SignRequest Request(std::string user, std::string key, std::size_t items) {
  return SignRequest{
      .principal = User(std::move(user)), .key = std::move(key), .tool = "signet", .items = items};
}

TEST(AuthorizeTest, ChargesOnlyWhatThePolicyAllows) {
  auto policy = Policy::Parse(kPolicyV1, "v1");
  ASSERT_TRUE(policy.has_value()) << policy.error();
  RateLimiter limiter;
  const Verdict denied = Authorize(**policy, limiter, Request("eve", "default", 5), kStart);
  EXPECT_EQ(denied.reason, "no rule lets user:eve sign with key default");
  EXPECT_EQ(limiter.tracked(), 0u);
  const Verdict allowed = Authorize(**policy, limiter, Request("bob", "default", 80), kStart);
  EXPECT_TRUE(allowed.allowed());
  EXPECT_EQ(allowed.reason, "allowed by rule ci");
  const Verdict limited = Authorize(**policy, limiter, Request("bob", "default", 30), kStart);
  EXPECT_EQ(limited.decision, Decision::kDeny);
  EXPECT_EQ(limited.rule, "ci");
  EXPECT_THAT(limited.reason, HasSubstr("80 used, 30 requested"));
}

TEST(AuthorizeTest, NeedsApprovalIsReturnedUncharged) {
  auto policy = Policy::Parse(R"(
[[rule]]
name = "release"
keys = ["release"]
principals = ["user:bob"]
rate_per_hour = 10
approvals = 1
)",
                              "p");
  ASSERT_TRUE(policy.has_value()) << policy.error();
  RateLimiter limiter;
  const Verdict held = Authorize(**policy, limiter, Request("bob", "release", 5), kStart);
  EXPECT_EQ(held.decision, Decision::kNeedsApproval);
  EXPECT_EQ(held.rule, "release");
  EXPECT_EQ(limiter.tracked(), 0u);
  EXPECT_EQ(limiter.Used("release", User("bob"), kStart), 0u);
}

TEST(AuthorizeTest, ReloadKeepsCountersOfRulesWithTheSameName) {
  auto v1 = Policy::Parse(kPolicyV1, "v1");
  auto v2 = Policy::Parse(kPolicyV2, "v2");
  ASSERT_TRUE(v1.has_value() && v2.has_value());
  RateLimiter limiter;
  ASSERT_TRUE(Authorize(**v1, limiter, Request("bob", "default", 80), kStart).allowed());
  ASSERT_TRUE(Authorize(**v1, limiter, Request("bob", "other", 10), kStart).allowed());
  EXPECT_EQ(limiter.tracked(), 2u);

  // After the reload "ci" allows 120 an hour: bob has 40 left, not 120.
  limiter.Retain(**v2);
  EXPECT_EQ(limiter.tracked(), 1u);  // "other" has no rate limit any more
  EXPECT_FALSE(Authorize(**v2, limiter, Request("bob", "release", 41), kStart).allowed());
  EXPECT_TRUE(Authorize(**v2, limiter, Request("bob", "release", 40), kStart).allowed());
  EXPECT_TRUE(Authorize(**v2, limiter, Request("alice", "default", 120), kStart).allowed());

  // A policy without "ci" drops its counters.
  auto v3 = Policy::Parse("", "v3");
  ASSERT_TRUE(v3.has_value());
  limiter.Retain(**v3);
  EXPECT_EQ(limiter.tracked(), 0u);
}

}  // namespace
}  // namespace signet::policy
