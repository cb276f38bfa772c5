// Per-file errors: reported on stderr naming the file, the other files still hashed, exit 1.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "run_util.h"

namespace signet::cli::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using ErrorsTest = CliTest;

TEST_F(ErrorsTest, SymlinksAreRefusedUnlessFollowed) {
  Make("a", "first");
  std::filesystem::create_symlink("a", dir() / "link");
  ProcessResult refused = Signet({"digest", "link"});
  EXPECT_EQ(refused.exit_code, 1) << refused;
  EXPECT_THAT(refused.err, HasSubstr("link is a symbolic link"));
  EXPECT_THAT(refused.err, HasSubstr("signet digest -L follows them"));

  // With -L the link's target is hashed under the link's name, as sha256sum does.
  ProcessResult followed = Signet({"digest", "-L", "link"});
  EXPECT_EQ(followed.exit_code, 0) << followed;
  EXPECT_EQ(followed.out, Tool({"sha256sum", "link"}).out);
}

TEST_F(ErrorsTest, BadFilesAreReportedAndTheOthersHashed) {
  Make("a", "first");
  Make("b", "second");
  Make("dir/inside", "x");
  ASSERT_EQ(mkfifo((dir() / "fifo").c_str(), 0600), 0);
  std::filesystem::create_symlink("a", dir() / "link");

  // The FIFO has no writer: opening it for reading would block forever. It must be refused.
  ProcessResult actual = Signet({"digest", "a", "missing", "dir", "fifo", "link", "b"},
                                WithTimeout(std::chrono::seconds(30)));
  ASSERT_FALSE(actual.timed_out) << actual;
  EXPECT_EQ(actual.exit_code, 1) << actual;
  ProcessResult expected = Tool({"sha256sum", "a", "b"});
  EXPECT_EQ(actual.out, expected.out);

  // One line per failure, each naming its file, in argument order.
  std::vector<std::string> lines;
  for (std::size_t start = 0, end; (end = actual.err.find('\n', start)) != std::string::npos;
       start = end + 1) {
    lines.push_back(actual.err.substr(start, end - start));
  }
  ASSERT_EQ(lines.size(), 4u) << actual.err;
  EXPECT_THAT(lines[0], HasSubstr("signet: missing: No such file or directory"));
  EXPECT_THAT(lines[1], HasSubstr("dir is a directory"));
  EXPECT_THAT(lines[2], HasSubstr("fifo is a FIFO"));
  EXPECT_THAT(lines[3], HasSubstr("link"));
  for (const std::string& line : lines) {
    EXPECT_THAT(line, ::testing::StartsWith("signet: "));
  }
}

TEST_F(ErrorsTest, MergedOutputInterleavesLikeSha256sum) {
  std::vector<std::string> files{Make("a", "1"), "missing", Make("b", RandomBytes(3 << 20, 1)),
                                 "missing2", Make("c", "3")};
  std::vector<std::string> tool{"sha256sum"};
  tool.insert(tool.end(), files.begin(), files.end());
  std::vector<std::string> signet{"digest"};
  signet.insert(signet.end(), files.begin(), files.end());
  ProcessResult expected = Tool(tool, WithMergedStderr());
  ProcessResult actual = Signet(signet, WithMergedStderr());
  EXPECT_EQ(actual.exit_code, 1);
  std::string want = expected.out;
  for (std::size_t at; (at = want.find("sha256sum: ")) != std::string::npos;) {
    want.replace(at, 11, "signet: ");
  }
  EXPECT_EQ(actual.out, want);
}

TEST_F(ErrorsTest, AllFilesFineExitsZeroWithQuietStderr) {
  Make("a", "x");
  ProcessResult actual = Signet({"digest", "a"});
  EXPECT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.err, "");
}

TEST_F(ErrorsTest, FifoInsideATreeDoesNotBlock) {
  Make("tree/a", "x");
  ASSERT_EQ(mkfifo((dir() / "tree/b-fifo").c_str(), 0600), 0);
  Make("tree/c", "y");
  ProcessResult actual = Signet({"digest", "-r", "tree"}, WithTimeout(std::chrono::seconds(30)));
  ASSERT_FALSE(actual.timed_out) << actual;
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_EQ(actual.out, Tool({"sha256sum", "tree/a", "tree/c"}).out);
  EXPECT_THAT(actual.err, HasSubstr("tree/b-fifo is a FIFO"));
}

TEST_F(ErrorsTest, ControlCharactersInNamesAreEscapedOnStderr) {
  ProcessResult actual = Signet({"digest", "gone\nwith\x1b[31mred"});
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_THAT(actual.err, HasSubstr("gone\\nwith\\x1b[31mred"));
  EXPECT_THAT(actual.err, Not(HasSubstr("\x1b")));
}

TEST_F(ErrorsTest, WriteErrorOnStdoutIsReported) {
  Make("a", "x");
  ProcessResult actual = Signet({"digest", "a"}, WithStdoutTo("/dev/full"));
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_THAT(actual.err, HasSubstr("write to standard output"));
}

}  // namespace
}  // namespace signet::cli::testing
