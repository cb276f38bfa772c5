// `signet digest --check` against `sha256sum -c`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cctype>
#include <string>
#include <vector>

#include "run_util.h"

namespace signet::cli::testing {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class CheckTest : public CliTest {
 protected:
  // Writes a checksum file SUMS from `tool`'s output over `files`.
  void SumsFrom(const std::vector<std::string>& tool_and_flags,
                const std::vector<std::string>& files, const std::string& name = "SUMS") {
    ProcessResult sums = Tool(Concat(tool_and_flags, Concat({"--"}, files)));
    ASSERT_EQ(sums.exit_code, 0) << sums;
    WriteFile(dir() / name, sums.out);
  }
};

TEST_F(CheckTest, AllOkMatchesSha256sum) {
  std::vector<std::string> files{Make("a", "1"), Make("b", RandomBytes(3 << 20, 1)),
                                 Make("c d", "")};
  ProcessResult sums = Signet(Concat({"digest"}, files));
  WriteFile(dir() / "SUMS", sums.out);
  ProcessResult expected = Tool({"sha256sum", "-c", "SUMS"});
  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.out, expected.out);
  EXPECT_EQ(actual.out, "a: OK\nb: OK\nc d: OK\n");
  EXPECT_EQ(actual.err, "");
  EXPECT_EQ(Signet({"digest", "-c", "SUMS"}).out, expected.out);
}

TEST_F(CheckTest, MismatchIsFailed) {
  std::vector<std::string> files{Make("a", "1"), Make("b", "2"), Make("c", "3")};
  SumsFrom({"sha256sum"}, files);
  Make("b", "changed");
  Make("c", "changed too");
  ProcessResult expected = Tool({"sha256sum", "-c", "SUMS"});
  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_EQ(actual.out, expected.out);
  EXPECT_EQ(actual.out, "a: OK\nb: FAILED\nc: FAILED\n");
  EXPECT_EQ(actual.err, "signet: WARNING: 2 computed checksums did NOT match\n");
}

TEST_F(CheckTest, MissingFileIsFailedOpenOrRead) {
  std::vector<std::string> files{Make("a", "1"), Make("gone", "2")};
  SumsFrom({"sha256sum"}, files);
  std::filesystem::remove(dir() / "gone");
  ProcessResult expected = Tool({"sha256sum", "-c", "SUMS"});
  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_EQ(actual.out, expected.out);
  EXPECT_EQ(actual.out, "a: OK\ngone: FAILED open or read\n");
  EXPECT_EQ(actual.err,
            "signet: gone: No such file or directory\n"
            "signet: WARNING: 1 listed file could not be read\n");
}

// With stderr and stdout on one pipe (`2>&1`), messages come where sha256sum puts them.
TEST_F(CheckTest, MergedOutputInterleavesLikeSha256sum) {
  std::vector<std::string> files{Make("a", "1"), Make("gone", "2"), Make("b", "3"),
                                 Make("gone too", "4"), Make("c", "5")};
  SumsFrom({"sha256sum"}, files);
  std::filesystem::remove(dir() / "gone");
  std::filesystem::remove(dir() / "gone too");
  Make("b", "changed");
  WriteFile(dir() / "SUMS", ReadFile(dir() / "SUMS") + "garbage\n");
  ProcessResult expected = Tool({"sha256sum", "-c", "SUMS"}, WithMergedStderr());
  ProcessResult actual = Signet({"digest", "--check", "SUMS"}, WithMergedStderr());
  EXPECT_EQ(actual.exit_code, 1);
  std::string want = expected.out;
  for (std::size_t at; (at = want.find("sha256sum: ")) != std::string::npos;) {
    want.replace(at, 11, "signet: ");
  }
  for (std::size_t at; (at = want.find("'gone too'")) != std::string::npos;) {
    want.replace(at, 10, "gone too");  // coreutils quotes names with spaces in messages
  }
  EXPECT_EQ(actual.out, want);
}

TEST_F(CheckTest, ImproperlyFormattedLinesAreCountedNotFatal) {
  std::string good = Tool({"sha256sum", Make("a", "1")}).out;
  WriteFile(dir() / "SUMS", "garbage\n" + good + "0123  short-hex\n# a comment\n\n");
  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.out, "a: OK\n");
  EXPECT_EQ(actual.err, "signet: WARNING: 2 lines are improperly formatted\n");
  EXPECT_EQ(actual.out, Tool({"sha256sum", "-c", "SUMS"}).out);
}

TEST_F(CheckTest, NoProperLineFails) {
  WriteFile(dir() / "SUMS", "garbage\nmore garbage\n");
  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_EQ(actual.out, "");
  EXPECT_EQ(actual.err, "signet: SUMS: no properly formatted checksum lines found\n");
  WriteFile(dir() / "EMPTY", "");
  EXPECT_EQ(Signet({"digest", "--check", "EMPTY"}).exit_code, 1);
}

TEST_F(CheckTest, AcceptsEveryCoreutilsForm) {
  std::vector<std::string> files{Make("a", "1"), Make("b (x) = y", RandomBytes(70000, 2)),
                                 Make("new\nline", "3"), Make("back\\slash", "4")};
  std::string sums;
  for (const std::vector<std::string>& tool :
       std::vector<std::vector<std::string>>{{"sha256sum"},
                                             {"sha256sum", "--binary"},
                                             {"sha256sum", "--tag"},
                                             {"sha384sum"},
                                             {"sha512sum", "--tag"},
                                             {"b2sum", "--tag"}}) {
    ProcessResult r = Tool(Concat(tool, Concat({"--"}, files)));
    ASSERT_EQ(r.exit_code, 0) << r;
    sums += r.out;
  }
  // Windows line ends, upper-case hex, leading blanks.
  std::string a_line = Tool({"sha256sum", "a"}).out;
  a_line.pop_back();
  sums += a_line + "\r\n";
  std::string upper = a_line;
  for (std::size_t i = 0; i < 64; ++i) {
    upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[i])));
  }
  sums += "  " + upper + "\n";
  WriteFile(dir() / "SUMS", sums);

  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.err, "");
  std::string one_round = "a: OK\nb (x) = y: OK\n\\new\\nline: OK\nback\\slash: OK\n";
  std::string expected;
  for (int i = 0; i < 6; ++i) {
    expected += one_round;
  }
  expected += "a: OK\na: OK\n";
  EXPECT_EQ(actual.out, expected);
}

TEST_F(CheckTest, UntaggedBlake2NeedsTheAlgorithm) {
  std::vector<std::string> files{Make("a", "1")};
  SumsFrom({"b2sum"}, files);
  // 128 hex digits without a tag read as SHA-512: the check fails...
  ProcessResult guessed = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(guessed.exit_code, 1) << guessed;
  EXPECT_EQ(guessed.out, "a: FAILED\n");
  // ...and passes when told.
  ProcessResult told = Signet({"digest", "-a", "blake2b512", "--check", "SUMS"});
  EXPECT_EQ(told.exit_code, 0) << told;
  EXPECT_EQ(told.out, "a: OK\n");
}

TEST_F(CheckTest, AlgorithmOptionRestrictsTags) {
  std::vector<std::string> files{Make("a", "1")};
  SumsFrom({"sha256sum", "--tag"}, files);
  ProcessResult actual = Signet({"digest", "-a", "sha512", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_THAT(actual.err, HasSubstr("no properly formatted checksum lines found"));
}

TEST_F(CheckTest, ChecksSignetsOwnMultiAlgorithmOutput) {
  std::vector<std::string> files{Make("a", "1"), Make("b", RandomBytes(2 << 20, 9))};
  ProcessResult sums = Signet(Concat({"digest", "-a", "sha256,sha384,sha512,blake2b"}, files));
  WriteFile(dir() / "SUMS", sums.out);
  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.out, "a: OK\na: OK\na: OK\na: OK\nb: OK\nb: OK\nb: OK\nb: OK\n");
}

TEST_F(CheckTest, OddNamesShownLikeSha256sum) {
  std::vector<std::string> files{Make("new\nline", "1"),        Make("back\\slash", "2"),
                                 Make("carriage\rreturn", "3"), Make("both\\\n", "4"),
                                 Make("raw-\xff", "5"),         Make("tab\t", "6")};
  SumsFrom({"sha256sum"}, files);
  Make("raw-\xff", "changed");
  ProcessResult expected = Tool({"sha256sum", "-c", "SUMS"});
  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_EQ(actual.out, expected.out);
}

TEST_F(CheckTest, ReadsStandardInput) {
  std::vector<std::string> files{Make("a", "1"), Make("b", "2")};
  std::string sums = Tool({"sha256sum", "a", "b"}).out;
  ProcessResult actual = Signet({"digest", "--check", "-"}, WithStdin(sums));
  EXPECT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.out, "a: OK\nb: OK\n");
  ProcessResult garbage = Signet({"digest", "--check", "-"}, WithStdin("nothing here\n"));
  EXPECT_EQ(garbage.exit_code, 1);
  EXPECT_EQ(garbage.err, "signet: standard input: no properly formatted checksum lines found\n");
}

TEST_F(CheckTest, RefusesOverlongLines) {
  std::string sums = Tool({"sha256sum", Make("a", "1")}).out;
  sums += std::string(64 * 1024 + 1, 'x') + "\n";
  WriteFile(dir() / "SUMS", sums);
  ProcessResult actual = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_EQ(actual.out, "");  // refused as a whole: nothing was checked
  EXPECT_THAT(actual.err, HasSubstr("SUMS: line 2 is longer than 65536 bytes"));
  // Exactly 64 KiB is still a line (an improperly formatted one).
  sums = Tool({"sha256sum", "a"}).out + std::string(64 * 1024, 'x') + "\n";
  WriteFile(dir() / "SUMS", sums);
  ProcessResult at_limit = Signet({"digest", "--check", "SUMS"});
  EXPECT_EQ(at_limit.exit_code, 0) << at_limit;
  EXPECT_EQ(at_limit.out, "a: OK\n");
}

TEST_F(CheckTest, RefusesHugeChecksumFiles) {
  WriteFile(dir() / "SUMS", "");
  std::filesystem::resize_file(dir() / "SUMS", std::uintmax_t{300} << 20);  // sparse
  ProcessResult actual =
      Signet({"digest", "--check", "SUMS"}, WithTimeout(std::chrono::seconds(20)));
  ASSERT_FALSE(actual.timed_out);
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_THAT(actual.err, HasSubstr("SUMS is larger than 256 MiB"));
}

TEST_F(CheckTest, MissingOrUnreadableChecksumFile) {
  ProcessResult missing = Signet({"digest", "--check", "nope"});
  EXPECT_EQ(missing.exit_code, 1) << missing;
  EXPECT_THAT(missing.err, HasSubstr("nope: No such file or directory"));
  std::filesystem::create_directory(dir() / "adir");
  ProcessResult directory = Signet({"digest", "--check", "adir"});
  EXPECT_EQ(directory.exit_code, 1) << directory;
  EXPECT_THAT(directory.err, HasSubstr("adir"));
}

TEST_F(CheckTest, DirectoryAndFifoListedAreFailedOpenOrRead) {
  std::string hex(64, '0');
  Make("sub/x", "1");
  ASSERT_EQ(mkfifo((dir() / "fifo").c_str(), 0600), 0);
  WriteFile(dir() / "SUMS", hex + "  sub\n" + hex + "  fifo\n");
  ProcessResult actual =
      Signet({"digest", "--check", "SUMS"}, WithTimeout(std::chrono::seconds(30)));
  ASSERT_FALSE(actual.timed_out);
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_EQ(actual.out, "sub: FAILED open or read\nfifo: FAILED open or read\n");
  EXPECT_THAT(actual.err, HasSubstr("WARNING: 2 listed files could not be read"));
}

}  // namespace
}  // namespace signet::cli::testing
