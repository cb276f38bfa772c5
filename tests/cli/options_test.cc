// The command line: help, version, usage errors (exit 2, naming the option), the progress line.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "run_util.h"

namespace signet::cli::testing {
namespace {

using ::testing::HasSubstr;

using OptionsTest = CliTest;

TEST_F(OptionsTest, HelpAndVersion) {
  ProcessResult help = Signet({"--help"});
  EXPECT_EQ(help.exit_code, 0) << help;
  EXPECT_THAT(help.out, HasSubstr("digest"));
  ProcessResult digest_help = Signet({"digest", "--help"});
  EXPECT_EQ(digest_help.exit_code, 0) << digest_help;
  for (const char* option : {"--algorithm", "--recursive", "--jobs", "--backend", "--chunk-size",
                             "--json", "--check", "sha256sum", "Exit status"}) {
    EXPECT_THAT(digest_help.out, HasSubstr(option));
  }
  ProcessResult version = Signet({"--version"});
  EXPECT_EQ(version.exit_code, 0) << version;
  EXPECT_THAT(version.out, ::testing::MatchesRegex("signet [0-9]+\\.[0-9]+\\.[0-9]+\n"));
}

struct BadUsage {
  std::vector<std::string> args;
  const char* message;  // what stderr must say
};

TEST_F(OptionsTest, BadValuesExitTwoNamingTheOption) {
  Make("a", "x");
  const std::vector<BadUsage> cases{
      {{"digest", "-a", "md5", "a"}, "--algorithm: unknown digest algorithm 'md5'"},
      {{"digest", "-a", "sha256,", "a"}, "--algorithm"},
      {{"digest", "--jobs", "abc", "a"}, "--jobs: 'abc'"},
      {{"digest", "--jobs", "-1", "a"}, "--jobs: '-1'"},
      {{"digest", "--jobs", "100000", "a"}, "--jobs: '100000'"},
      {{"digest", "--chunk-size", "100", "a"}, "--chunk-size: 100 is out of range"},
      {{"digest", "--chunk-size", "1G", "a"}, "--chunk-size: 1G is out of range"},
      {{"digest", "--chunk-size", "lots", "a"}, "--chunk-size: 'lots' is not a size"},
      {{"digest", "--chunk-size", "99999999999999999999", "a"}, "--chunk-size"},
      {{"digest", "--backend", "mmap", "a"}, "--backend: unknown I/O backend 'mmap'"},
      {{"digest", "--jobs", "256", "--chunk-size", "64M", "a"}, "--jobs and --chunk-size"},
      {{"digest"}, "no PATH given"},
      {{"digest", "--json", "--tag", "a"}, "--json and --tag"},
      {{"digest", "--check", "SUMS", "a"}, "give no PATH arguments"},
      {{"digest", "--check", "SUMS", "-r"}, "--check cannot be combined"},
      {{"digest", "--check"}, "--check"},
      {{"digest", "--frobnicate", "a"}, "--frobnicate"},
      {{}, "A subcommand is required"},
      {{"sign"}, "--key is required"},
      {{"frobnicate"}, "subcommand"},
  };
  for (const BadUsage& bad : cases) {
    ProcessResult actual = Signet(bad.args);
    std::string shown;
    for (const auto& arg : bad.args) {
      shown += arg + " ";
    }
    EXPECT_EQ(actual.exit_code, 2) << shown << "\n" << actual;
    EXPECT_THAT(actual.err, HasSubstr(bad.message)) << shown;
    EXPECT_EQ(actual.out, "") << shown;
  }
}

TEST_F(OptionsTest, GoodValuesAreAccepted) {
  Make("a", "x");
  std::string expected = Tool({"sha256sum", "a"}).out;
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"digest", "--jobs", "0", "a"},
           {"digest", "-j", "2", "a"},
           {"digest", "--chunk-size", "4096", "a"},
           {"digest", "--chunk-size", "64MiB", "--jobs", "2", "a"},
           {"digest", "--chunk-size", "1m", "a"},
           {"digest", "-a", "SHA-256", "a"},
           {"digest", "--backend", "pread", "a"},
       }) {
    ProcessResult actual = Signet(args);
    EXPECT_EQ(actual.exit_code, 0) << actual;
    EXPECT_EQ(actual.out, expected);
  }
}

// Opens a pseudo-terminal; returns {master, slave} or {-1, -1}.
std::pair<int, int> OpenPty() {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    return {-1, -1};
  }
  const char* name = ptsname(master);
  int slave = name != nullptr ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
  if (slave < 0) {
    close(master);
    return {-1, -1};
  }
  return {master, slave};
}

TEST_F(OptionsTest, ProgressOnlyOnATerminalAndClearedAtTheEnd) {
  auto [master, slave] = OpenPty();
  if (master < 0) {
    GTEST_SKIP() << "no pseudo-terminal available";
  }
  // Long enough (four algorithms over a 256 MiB sparse file, one thread) for several redraws.
  Make("sparse", "");
  std::filesystem::resize_file(dir() / "sparse", std::uintmax_t{256} << 20);
  ProcessResult actual = Signet({"digest", "--jobs", "1", "--backend", "pread", "-a",
                                 "sha256,sha384,sha512,blake2b", "sparse"},
                                WithStderrFd(slave));
  close(slave);
  std::string tty;
  char buffer[4096];
  for (;;) {
    pollfd fd{master, POLLIN, 0};
    if (poll(&fd, 1, 200) <= 0) {
      break;
    }
    ssize_t n = read(master, buffer, sizeof buffer);
    if (n <= 0) {
      break;
    }
    tty.append(buffer, static_cast<std::size_t>(n));
  }
  close(master);
  ASSERT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(std::count(actual.out.begin(), actual.out.end(), '\n'), 4) << actual.out;
  EXPECT_THAT(tty, HasSubstr("signet: "));
  EXPECT_THAT(tty, HasSubstr("files"));
  EXPECT_THAT(tty, HasSubstr("MB/s"));
  // The last thing written erases the line, leaving the terminal clean.
  EXPECT_TRUE(tty.ends_with("\r\033[K")) << ::testing::PrintToString(tty);
}

}  // namespace
}  // namespace signet::cli::testing
