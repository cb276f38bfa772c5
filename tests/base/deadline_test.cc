#include <gtest/gtest.h>

#include <climits>

#include "appliance/base/base.h"

namespace signet {
namespace {

using namespace std::chrono_literals;
using Clock = Deadline::Clock;

const Clock::time_point kNow = Clock::time_point(1000s);

TEST(DeadlineTest, InAddsTimeout) {
  const Deadline d = Deadline::In(250ms, kNow);
  EXPECT_EQ(d.when(), kNow + 250ms);
  EXPECT_FALSE(d.IsNever());
  EXPECT_FALSE(d.Expired(kNow));
  EXPECT_FALSE(d.Expired(kNow + 249ms));
  EXPECT_TRUE(d.Expired(kNow + 250ms));
  EXPECT_EQ(d.Remaining(kNow), 250ms);
  EXPECT_EQ(d.Remaining(kNow + 100ms), 150ms);
  EXPECT_EQ(d.Remaining(kNow + 1s), Clock::duration::zero());
}

TEST(DeadlineTest, NeverNeverExpires) {
  const Deadline d = Deadline::Never();
  EXPECT_TRUE(d.IsNever());
  EXPECT_FALSE(d.Expired(Clock::time_point::max() - 1ns));
  EXPECT_EQ(d.Remaining(kNow), Clock::duration::max());
  EXPECT_EQ(d.PollTimeoutMs(kNow), -1);
}

TEST(DeadlineTest, HugeTimeoutSaturatesToNever) {
  EXPECT_TRUE(Deadline::In(Clock::duration::max(), kNow).IsNever());
  // Near the end of the clock's range, even a modest timeout must not wrap around.
  EXPECT_TRUE(Deadline::In(2h, Clock::time_point(Clock::duration::max() - 1h)).IsNever());
  EXPECT_FALSE(Deadline::In(30min, Clock::time_point(Clock::duration::max() - 1h)).IsNever());
}

TEST(DeadlineTest, NegativeTimeoutIsAlreadyExpired) {
  EXPECT_TRUE(Deadline::In(-1ms, kNow).Expired(kNow));
  const Deadline far_past = Deadline::In(Clock::duration::min(), kNow);
  EXPECT_TRUE(far_past.Expired(kNow));
  EXPECT_EQ(far_past.when(), Clock::time_point::min() + kNow.time_since_epoch());
  EXPECT_EQ(far_past.PollTimeoutMs(kNow), 0);
  // Below the clock's range it saturates instead of wrapping around to the far future.
  const Clock::time_point before_epoch(-1s);
  const Deadline saturated = Deadline::In(Clock::duration::min(), before_epoch);
  EXPECT_EQ(saturated.when(), Clock::time_point::min());
  EXPECT_TRUE(saturated.Expired(before_epoch));
}

TEST(DeadlineTest, PollTimeoutRoundsUp) {
  EXPECT_EQ(Deadline::In(1ns, kNow).PollTimeoutMs(kNow), 1);
  EXPECT_EQ(Deadline::In(1ms, kNow).PollTimeoutMs(kNow), 1);
  EXPECT_EQ(Deadline::In(1001us, kNow).PollTimeoutMs(kNow), 2);
  EXPECT_EQ(Deadline::In(0ms, kNow).PollTimeoutMs(kNow), 0);
  EXPECT_EQ(Deadline::In(24h * 365 * 100, kNow).PollTimeoutMs(kNow), INT_MAX);
}

TEST(DeadlineTest, OrdersAndPicksTheEarliest) {
  const Deadline a = Deadline::In(1s, kNow);
  const Deadline b = Deadline::In(2s, kNow);
  EXPECT_LT(a, b);
  EXPECT_LT(b, Deadline::Never());
  EXPECT_EQ(Deadline::Earliest(a, b), a);
  EXPECT_EQ(Deadline::Earliest(b, a), a);
  EXPECT_EQ(Deadline::Earliest(Deadline::Never(), b), b);
  EXPECT_EQ(Deadline::At(kNow + 1s), a);
}

TEST(DeadlineTest, RealClockOverloadsAgree) {
  const Deadline d = Deadline::In(1h);
  EXPECT_FALSE(d.Expired());
  EXPECT_GT(d.Remaining(), 59min);
  EXPECT_LE(d.Remaining(), 1h);
  EXPECT_TRUE(Deadline::In(-1s).Expired());
}

}  // namespace
}  // namespace signet
