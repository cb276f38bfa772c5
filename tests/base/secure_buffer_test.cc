#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <type_traits>

#include "appliance/base/base.h"

namespace signet {
namespace {

using ::testing::HasSubstr;

static_assert(!std::is_copy_constructible_v<SecureBuffer>);
static_assert(!std::is_copy_assignable_v<SecureBuffer>);
static_assert(std::is_nothrow_move_constructible_v<SecureBuffer>);

bool AllZero(std::span<const std::uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

TEST(SecureBufferTest, AllocatesZeroedBytes) {
  auto buffer = SecureBuffer::Allocate(100, SecureBuffer::Lock::kNone);
  ASSERT_TRUE(buffer) << buffer.error();
  EXPECT_EQ(buffer->size(), 100u);
  EXPECT_TRUE(AllZero(buffer->bytes()));
  EXPECT_FALSE(buffer->locked());
}

TEST(SecureBufferTest, EmptyAllocationHoldsNothing) {
  auto buffer = SecureBuffer::Allocate(0);
  ASSERT_TRUE(buffer);
  EXPECT_TRUE(buffer->empty());
  EXPECT_EQ(buffer->view(), "");
}

TEST(SecureBufferTest, RefusesHugeSecrets) {
  auto buffer = SecureBuffer::Allocate(2u << 20);
  ASSERT_FALSE(buffer);
  EXPECT_EQ(buffer.error().code(), ErrorCode::kInvalidArgument);
}

TEST(SecureBufferTest, CopyOfHoldsTheBytes) {
  auto buffer = SecureBuffer::CopyOf(AsBytes("1234"));
  ASSERT_TRUE(buffer);
  EXPECT_EQ(buffer->view(), "1234");
}

TEST(SecureBufferTest, WipeZeroesEveryByte) {
  auto buffer = SecureBuffer::CopyOf(AsBytes("correct horse battery staple"));
  ASSERT_TRUE(buffer);
  buffer->Wipe();
  EXPECT_EQ(buffer->size(), 28u);
  EXPECT_TRUE(AllZero(buffer->bytes()));
}

TEST(SecureBufferTest, TruncateWipesTheCutOffBytes) {
  auto buffer = SecureBuffer::CopyOf(AsBytes("secret\n"));
  ASSERT_TRUE(buffer);
  // The mapping stays ours after Truncate, so the bytes past the new end may be inspected.
  const std::uint8_t* data = buffer->bytes().data();
  buffer->Truncate(6);
  EXPECT_EQ(buffer->view(), "secret");
  EXPECT_EQ(data[6], 0);
  buffer->Truncate(2);
  EXPECT_EQ(buffer->view(), "se");
  EXPECT_TRUE(AllZero({data + 2, 5}));
  buffer->Truncate(10);  // growing is a no-op
  EXPECT_EQ(buffer->size(), 2u);
}

TEST(SecureBufferTest, MoveLeavesTheSourceEmpty) {
  auto buffer = SecureBuffer::CopyOf(AsBytes("pin"));
  ASSERT_TRUE(buffer);
  const std::uint8_t* data = buffer->bytes().data();
  SecureBuffer moved(std::move(*buffer));
  EXPECT_TRUE(buffer->empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(moved.view(), "pin");
  EXPECT_EQ(moved.bytes().data(), data);  // moved, not copied: no second copy of the secret

  SecureBuffer assigned;
  assigned = std::move(moved);
  EXPECT_TRUE(moved.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(assigned.view(), "pin");
}

TEST(SecureBufferTest, RequiredLockLocksThePages) {
  // Root (and any process with CAP_IPC_LOCK or a memlock limit of a page) can lock one page.
  auto buffer = SecureBuffer::Allocate(32, SecureBuffer::Lock::kRequired);
  if (!buffer) {
    EXPECT_EQ(buffer.error().code(), ErrorCode::kUnavailable);
    EXPECT_THAT(buffer.error().message(), HasSubstr("RLIMIT_MEMLOCK"));
    GTEST_SKIP() << "mlock not permitted here: " << buffer.error();
  }
  EXPECT_TRUE(buffer->locked());
}

TEST(SecureBufferTest, ExcludedFromCoreDumps) {
  auto buffer = SecureBuffer::CopyOf(AsBytes("pin"));
  ASSERT_TRUE(buffer);
  // /proc/self/smaps flags the mapping "dd" (do not dump).
  const auto address = reinterpret_cast<std::uintptr_t>(buffer->bytes().data());
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_mapping = false;
  bool found = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t start = 0;
    std::uintptr_t end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &start, &end) == 2) {
      in_mapping = start <= address && address < end;
    } else if (in_mapping && line.rfind("VmFlags:", 0) == 0) {
      EXPECT_THAT(line, HasSubstr(" dd"));
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

class ReadSecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/signet-secret-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path Write(const std::string& name, std::string_view content,
                              mode_t mode = 0600) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << content;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(ReadSecretFileTest, ReadsAndDropsOneTrailingNewline) {
  EXPECT_EQ(ReadSecretFile(Write("a", "1234\n")).value().view(), "1234");
  EXPECT_EQ(ReadSecretFile(Write("b", "1234\r\n")).value().view(), "1234");
  EXPECT_EQ(ReadSecretFile(Write("c", "1234")).value().view(), "1234");
  EXPECT_EQ(ReadSecretFile(Write("d", "12 34\n\n")).value().view(), "12 34\n");
}

TEST_F(ReadSecretFileTest, AcceptsExactlyMaxSize) {
  EXPECT_EQ(ReadSecretFile(Write("a", "12345678"), 8).value().view(), "12345678");
}

TEST_F(ReadSecretFileTest, RefusesTooLarge) {
  auto r = ReadSecretFile(Write("a", "123456789"), 8);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("larger than 8 bytes"));
}

TEST_F(ReadSecretFileTest, RefusesEmpty) {
  for (std::string_view content : {"", "\n"}) {
    auto r = ReadSecretFile(Write("a", content));
    ASSERT_FALSE(r);
    EXPECT_THAT(r.error().message(), HasSubstr("is empty"));
  }
}

TEST_F(ReadSecretFileTest, RefusesFilesOthersCanRead) {
  const auto path = Write("a", "1234", 0604);
  auto r = ReadSecretFile(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_THAT(r.error().message(), HasSubstr("chmod o-rwx " + path.string()));
  // Group-readable is fine: a service group may share the PIN file.
  EXPECT_TRUE(ReadSecretFile(Write("b", "1234", 0640)));
}

TEST_F(ReadSecretFileTest, RefusesMissingFileAndDirectories) {
  auto missing = ReadSecretFile(dir_ / "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(missing.error().message(), HasSubstr("nope"));

  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  auto directory = ReadSecretFile(dir_);
  ASSERT_FALSE(directory);
  EXPECT_THAT(directory.error().message(), HasSubstr("not a regular file"));
}

TEST_F(ReadSecretFileTest, NeverBlocksOnAFifo) {
  const auto path = dir_ / "fifo";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto r = ReadSecretFile(path);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("not a regular file"));
}

}  // namespace
}  // namespace signet
