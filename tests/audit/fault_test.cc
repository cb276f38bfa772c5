// Fail-closed: a commit that fails (I/O error, full map) fails the appends it held, stops every
// later one, and loses nothing acknowledged before it.
#include <dlfcn.h>
#include <errno.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>

#include "appliance/audit/audit.h"
#include "tests/audit/fault.h"
#include "tests/audit/hsm_note_signer.h"

namespace {
std::atomic<int> g_fail_errno{0};
std::atomic<int> g_failures{0};
}  // namespace

// Interposes libc's fdatasync for everything in this process, liblmdb included.
extern "C" int fdatasync(int fd) {
  static auto* real = reinterpret_cast<int (*)(int)>(dlsym(RTLD_NEXT, "fdatasync"));
  if (const int err = g_fail_errno.load(); err != 0) {
    g_failures.fetch_add(1);
    errno = err;
    return -1;
  }
  return real(fd);
}

namespace signet::audit {
namespace testing {
void FailFdatasync(int err) { g_fail_errno.store(err); }
int FdatasyncFailures() { return g_failures.load(); }
}  // namespace testing

namespace {

using ::testing::HasSubstr;
using testing::SampleRecord;

testing::AuditKey& Key() {
  static auto* key = new testing::AuditKey();
  return *key;
}

class FaultTest : public ::testing::Test {
 protected:
  void TearDown() override { testing::FailFdatasync(0); }
  testing::TempDir tmp_;
};

void ExpectIntact(const LogOptions& options, std::uint64_t size) {
  auto log = Log::Open(options, Key().signer());
  ASSERT_TRUE(log) << log.error();
  EXPECT_EQ((*log)->stats().tree_size, size);
  for (std::uint64_t seq = 0; seq < size; ++seq) {
    auto r = (*log)->Get(seq);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->artifact_name, SampleRecord(seq).artifact_name);
  }
  // The log works again after reopening.
  auto more = (*log)->Append({SampleRecord(size)});
  ASSERT_TRUE(more) << more.error();
  EXPECT_EQ(more->first, size);
  EXPECT_TRUE((*log)->Close());
}

TEST_F(FaultTest, AnIoErrorDuringCommitFailsItsAppendsAndStopsTheLog) {
  LogOptions options = testing::TestLogOptions(tmp_.path());
  options.checkpoint_interval = std::chrono::hours(1);
  {
    auto log = Log::Open(options, Key().signer());
    ASSERT_TRUE(log) << log.error();
    for (std::uint64_t i = 0; i < 10; ++i) {
      ASSERT_TRUE((*log)->Append({SampleRecord(i)}));
    }
    testing::FailFdatasync(EIO);
    auto failed = (*log)->Append({SampleRecord(10), SampleRecord(11)});
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().code(), ErrorCode::kUnavailable);
    EXPECT_THAT(failed.error().message(), HasSubstr("audit commit failed"));
    EXPECT_THAT(failed.error().message(), HasSubstr("Input/output error"));
    EXPECT_GE(testing::FdatasyncFailures(), 1);
    testing::FailFdatasync(0);
    // Even with the disk back, nothing more is taken until the log is reopened.
    auto refused = (*log)->Append({SampleRecord(10)});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), ErrorCode::kUnavailable);
    EXPECT_THAT(refused.error().message(), HasSubstr("reopened"));
    EXPECT_FALSE((*log)->health());
    EXPECT_TRUE((*log)->stats().failed);
    EXPECT_FALSE((*log)->CheckpointNow());
    EXPECT_FALSE((*log)->Close());
  }
  ExpectIntact(options, 10);
}

TEST_F(FaultTest, NoSpaceLeftIsReportedAsSuch) {
  LogOptions options = testing::TestLogOptions(tmp_.path());
  auto log = Log::Open(options, Key().signer());
  ASSERT_TRUE(log) << log.error();
  ASSERT_TRUE((*log)->Append({SampleRecord(0)}));
  testing::FailFdatasync(ENOSPC);
  auto failed = (*log)->Append({SampleRecord(1)});
  ASSERT_FALSE(failed);
  EXPECT_THAT(failed.error().message(), HasSubstr("No space left on device"));
  testing::FailFdatasync(0);
  EXPECT_FALSE((*log)->Close());
  log->reset();
  ExpectIntact(options, 1);
}

TEST_F(FaultTest, ConcurrentAppendsCaughtInAFailedCommitAllFail) {
  LogOptions options = testing::TestLogOptions(tmp_.path());
  auto log = Log::Open(options, Key().signer());
  ASSERT_TRUE(log) << log.error();
  testing::FailFdatasync(EIO);
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto r = (*log)->Append({SampleRecord(static_cast<std::uint64_t>(t * 20 + i))});
        (r ? ok : failed).fetch_add(1);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(ok.load(), 0);
  EXPECT_EQ(failed.load(), 160);
  testing::FailFdatasync(0);
  EXPECT_FALSE((*log)->Close());
  log->reset();
  ExpectIntact(options, 0);
}

TEST_F(FaultTest, AFullMapGrowsUpToItsMaximumThenStopsTheLogNamingTheSetting) {
  LogOptions options = testing::TestLogOptions(tmp_.path());
  options.map_size = std::size_t{1} << 20;
  options.max_map_size = std::size_t{4} << 20;
  options.checkpoint_interval = std::chrono::hours(1);
  std::uint64_t acknowledged = 0;
  {
    auto log = Log::Open(options, Key().signer());
    ASSERT_TRUE(log) << log.error();
    Status last = OkStatus();
    for (std::uint64_t i = 0; i < 100000; ++i) {
      Record r = SampleRecord(i);
      r.detail = std::string(2000, 'x');  // fill the map quickly
      auto got = (*log)->Append({r});
      if (!got) {
        last = MakeError(got.error());
        break;
      }
      ASSERT_EQ(got->first, acknowledged);
      ++acknowledged;
    }
    ASSERT_FALSE(last);
    EXPECT_EQ(last.error().code(), ErrorCode::kUnavailable);
    EXPECT_THAT(last.error().message(), HasSubstr("max_map_size"));
    // It grew past its first size before it stopped.
    EXPECT_GT(acknowledged * 2000, std::size_t{1} << 20);
    EXPECT_EQ((*log)->stats().map_size, options.max_map_size);
    auto refused = (*log)->Append({SampleRecord(0)});
    ASSERT_FALSE(refused);
    EXPECT_THAT(refused.error().message(), HasSubstr("max_map_size"));
    EXPECT_FALSE((*log)->Close());
  }
  // With a larger maximum every acknowledged record is there and appends work again.
  options.max_map_size = std::size_t{64} << 20;
  auto log = Log::Open(options, Key().signer());
  ASSERT_TRUE(log) << log.error();
  EXPECT_EQ((*log)->stats().tree_size, acknowledged);
  ASSERT_TRUE((*log)->Append({SampleRecord(acknowledged)}));
  EXPECT_TRUE((*log)->Close());
}

}  // namespace
}  // namespace signet::audit
