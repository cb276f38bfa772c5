// `signet digest` against the real coreutils tools, byte for byte.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "run_util.h"

namespace signet::cli::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::size_t kMiB = 1 << 20;

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct AlgorithmCase {
  const char* algorithm;  // signet's -a
  const char* tool;       // the coreutils tool that must print the same
};

// Names the case in test listings (ctest shows GetParam(); the default would print pointers).
void PrintTo(const AlgorithmCase& c, std::ostream* os) { *os << c.algorithm << " vs " << c.tool; }

class DigestMatchesTool : public CliTest, public ::testing::WithParamInterface<AlgorithmCase> {
 protected:
  // Runs `tool files...` and `signet digest -a ALGO extra... files...`; both must succeed and
  // print the same bytes.
  void ExpectSame(const std::vector<std::string>& files,
                  const std::vector<std::string>& extra = {}) {
    ProcessResult expected = Tool(Concat({GetParam().tool, "--"}, files));
    ASSERT_EQ(expected.exit_code, 0) << expected;
    ProcessResult actual = Signet(
        Concat(Concat({"digest", "-a", GetParam().algorithm}, extra), Concat({"--"}, files)));
    ASSERT_EQ(actual.exit_code, 0) << actual;
    EXPECT_EQ(actual.err, "");
    EXPECT_EQ(actual.out, expected.out) << "signet " << GetParam().algorithm;
  }
};

TEST_P(DigestMatchesTool, EmptyAndOneByte) { ExpectSame({Make("empty", ""), Make("one", "x")}); }

TEST_P(DigestMatchesTool, SizesAroundTheChunkSize) {
  // The default chunk is 1 MiB; files just under, at and over it are read differently (one read
  // vs several), as are multiples of the read-ahead window.
  std::vector<std::string> files;
  for (std::size_t size : {std::size_t{55}, std::size_t{64}, std::size_t{127}, std::size_t{4095},
                           std::size_t{4096}, std::size_t{4097}, kMiB - 1, kMiB, kMiB + 1,
                           2 * kMiB + 3, 4 * kMiB - 1, 4 * kMiB, 4 * kMiB + 1, 9 * kMiB + 7}) {
    files.push_back(Make("size-" + std::to_string(size), RandomBytes(size, size)));
  }
  ExpectSame(files);
}

TEST_P(DigestMatchesTool, RandomSizesWithSmallChunks) {
  std::mt19937_64 rng(20240501);
  std::vector<std::string> files;
  for (int i = 0; i < 24; ++i) {
    std::size_t size = rng() % (3 * kMiB);
    files.push_back(Make("random-" + std::to_string(i), RandomBytes(size, rng())));
  }
  SCOPED_TRACE("seed 20240501");
  ExpectSame(files);
  ExpectSame(files, {"--chunk-size", "4K"});
  ExpectSame(files, {"--chunk-size", "65537", "--jobs", "1"});
}

INSTANTIATE_TEST_SUITE_P(Coreutils, DigestMatchesTool,
                         ::testing::Values(AlgorithmCase{"sha256", "sha256sum"},
                                           AlgorithmCase{"sha384", "sha384sum"},
                                           AlgorithmCase{"sha512", "sha512sum"},
                                           AlgorithmCase{"blake2b512", "b2sum"}),
                         [](const auto& param_info) { return std::string(param_info.param.tool); });

using DigestTest = CliTest;

TEST_F(DigestTest, KeepsArgumentOrder) {
  // A big file first and many small ones after: the small ones finish first, yet lines come out
  // in argument order, as sha256sum prints them. Names are given in a shuffled order.
  std::vector<std::string> files{Make("big", RandomBytes(12 * kMiB, 1))};
  for (int i = 0; i < 300; ++i) {
    files.push_back(
        Make("small-" + std::to_string(i), RandomBytes(static_cast<std::size_t>(i) * 97, i)));
  }
  std::shuffle(files.begin() + 1, files.end(), std::mt19937_64(7));
  files.push_back(files[3]);  // a name given twice is printed twice
  ProcessResult expected = Tool(Concat({"sha256sum"}, files));
  ASSERT_EQ(expected.exit_code, 0) << expected;
  for (const char* jobs : {"0", "1", "3"}) {
    ProcessResult actual = Signet(Concat({"digest", "--jobs", jobs}, files));
    ASSERT_EQ(actual.exit_code, 0) << actual;
    EXPECT_EQ(actual.out, expected.out) << "--jobs " << jobs;
  }
}

TEST_F(DigestTest, Sha256sumCheckAcceptsTheOutput) {
  std::vector<std::string> files{Make("plain", "a"),
                                 Make("with space", "b"),
                                 Make("new\nline", "c"),
                                 Make("back\\slash", "d"),
                                 Make("carriage\rreturn", "e"),
                                 Make("latin1-\xe9\xff", "f"),
                                 Make("sub/dir/file", RandomBytes(kMiB + 5, 3))};
  ProcessResult digest = Signet(Concat({"digest"}, files));
  ASSERT_EQ(digest.exit_code, 0) << digest;
  WriteFile(dir() / "SUMS", digest.out);
  ProcessResult check = Tool({"sha256sum", "--strict", "-c", "SUMS"});
  EXPECT_EQ(check.exit_code, 0) << check;
  EXPECT_EQ(check.err, "");
}

TEST_F(DigestTest, OddNamesPrintedLikeSha256sum) {
  std::vector<std::string> files{
      Make("new\nline", "1"),       Make("back\\slash", "2"),     Make("carriage\rreturn", "3"),
      Make("all\\\n\r three", "4"), Make("tab\there", "5"),       Make(" leading space", "6"),
      Make("*star", "7"),           Make("trailing space ", "8"), Make("not-utf8-\xff\xfe", "9"),
      Make("utf8-\xc3\xa9", "10"),  Make("-dash", "11"),          Make("paren (x) = y", "12")};
  ProcessResult expected = Tool(Concat({"sha256sum", "--"}, files));
  ASSERT_EQ(expected.exit_code, 0) << expected;
  ProcessResult actual = Signet(Concat({"digest", "--"}, files));
  ASSERT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.out, expected.out);

  // The same names in tagged form, as `sha256sum --tag` prints them.
  ProcessResult tagged_expected = Tool(Concat({"sha256sum", "--tag", "--"}, files));
  ProcessResult tagged = Signet(Concat({"digest", "--tag", "--"}, files));
  ASSERT_EQ(tagged.exit_code, 0) << tagged;
  EXPECT_EQ(tagged.out, tagged_expected.out);
}

TEST_F(DigestTest, SeveralAlgorithmsPrintTaggedLinesPerFile) {
  std::vector<std::string> files{Make("a", "alpha"), Make("b\nc", RandomBytes(kMiB + 1, 5)),
                                 Make("d", "")};
  std::string expected;
  for (const std::string& file : files) {
    for (const char* tool : {"sha256sum", "sha512sum", "b2sum"}) {
      ProcessResult line = Tool({tool, "--tag", file});
      ASSERT_EQ(line.exit_code, 0) << line;
      expected += line.out;
    }
  }
  ProcessResult repeated =
      Signet(Concat({"digest", "-a", "sha256", "-a", "sha512", "-a", "blake2b"}, files));
  ASSERT_EQ(repeated.exit_code, 0) << repeated;
  EXPECT_EQ(repeated.out, expected);
  ProcessResult commas = Signet(Concat({"digest", "-a", "sha256,sha512,blake2b512"}, files));
  EXPECT_EQ(commas.out, expected);
  // A repeated algorithm counts once.
  ProcessResult twice =
      Signet(Concat({"digest", "-a", "sha256,sha512,sha256", "-a", "blake2b"}, files));
  EXPECT_EQ(twice.out, expected);
}

TEST_F(DigestTest, RecursesIntoDirectoriesInByteOrder) {
  // Entries are visited depth-first in byte order of their names ('B' < 'a' < 'b'), as a sorted
  // walk lists them; sha256sum over that list is the reference.
  std::vector<std::string> walk_order{
      "tree/B", "tree/a/1",   "tree/a/2/deep",     "tree/a/\xff-raw",
      "tree/b", "tree/b.txt", "tree/c/empty-file", "tree/z\nnl"};
  for (std::size_t i = 0; i < walk_order.size(); ++i) {
    Make(walk_order[i], RandomBytes(i * 1000 + (i == 1 ? 3 * kMiB : 0), i));
  }
  std::filesystem::create_directories(dir() / "tree/empty-dir");
  Make("loose", "loose file");
  std::vector<std::string> expected_files = walk_order;
  expected_files.push_back("loose");
  ProcessResult expected = Tool(Concat({"sha256sum"}, expected_files));
  ASSERT_EQ(expected.exit_code, 0) << expected;
  ProcessResult actual = Signet({"digest", "-r", "tree", "loose"});
  ASSERT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.out, expected.out);

  ProcessResult without_r = Signet({"digest", "tree", "loose"});
  EXPECT_EQ(without_r.exit_code, 1) << without_r;
  EXPECT_THAT(without_r.err, HasSubstr("tree"));
  EXPECT_THAT(without_r.err, HasSubstr("-r"));
}

TEST_F(DigestTest, BackendsGiveIdenticalOutput) {
  std::vector<std::string> files;
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, kMiB - 1, kMiB + 1, 5 * kMiB + 3}) {
    files.push_back(Make("f" + std::to_string(size), RandomBytes(size, size + 11)));
  }
  ProcessResult expected = Tool(Concat({"sha256sum"}, files));
  ProcessResult pread = Signet(Concat({"digest", "--backend", "pread"}, files));
  ASSERT_EQ(pread.exit_code, 0) << pread;
  EXPECT_EQ(pread.out, expected.out);
  ProcessResult automatic =
      Signet(Concat({"digest", "--backend", "auto", "--chunk-size", "64K"}, files));
  ASSERT_EQ(automatic.exit_code, 0) << automatic;
  EXPECT_EQ(automatic.out, expected.out);
  ProcessResult uring =
      Signet(Concat({"digest", "--backend", "io_uring", "--chunk-size", "64K"}, files));
  if (uring.exit_code == 1 && uring.out.empty() &&
      uring.err.find("io_uring") != std::string::npos) {
    GTEST_SKIP() << "io_uring is not available here: " << uring.err;
  }
  ASSERT_EQ(uring.exit_code, 0) << uring;
  EXPECT_EQ(uring.out, expected.out);
  ProcessResult uring_default = Signet(Concat({"digest", "--backend", "io_uring"}, files));
  EXPECT_EQ(uring_default.out, expected.out);
}

TEST_F(DigestTest, ManyFilesInArgumentOrder) {
  std::vector<std::string> files;
  std::mt19937_64 rng(99);
  for (int i = 0; i < 3000; ++i) {
    files.push_back(Make("m" + std::to_string(i), RandomBytes(rng() % 9000, i)));
  }
  std::shuffle(files.begin(), files.end(), rng);
  ProcessResult expected = Tool(Concat({"sha256sum"}, files));
  ProcessResult actual = Signet(Concat({"digest"}, files));
  ASSERT_EQ(actual.exit_code, 0) << actual.err;
  EXPECT_EQ(actual.out, expected.out);
}

TEST_F(DigestTest, JsonLinesParseAndMatch) {
  std::vector<std::string> files{Make("a", "alpha"), Make("big", RandomBytes(2 * kMiB + 1, 4)),
                                 Make("raw-\xff\xfe", "r"), Make("new\nline \"q\"", "n")};
  ProcessResult actual = Signet({"digest", "--json", "-a", "sha256,sha512", files[0], files[1],
                                 "missing", files[2], files[3]});
  EXPECT_EQ(actual.exit_code, 1) << actual;
  EXPECT_THAT(actual.err, HasSubstr("missing"));

  std::vector<nlohmann::json> lines;
  std::size_t start = 0;
  while (start < actual.out.size()) {
    std::size_t end = actual.out.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "the last line has no newline";
    lines.push_back(nlohmann::json::parse(actual.out.substr(start, end - start)));
    start = end + 1;
  }
  ASSERT_EQ(lines.size(), 5u) << actual.out;

  auto digest_of = [&](const char* tool, const std::string& file) {
    ProcessResult r = Tool({tool, file});
    return r.out.substr(r.out.find_first_not_of('\\'),
                        r.out.find(' ') - r.out.find_first_not_of('\\'));
  };
  const std::vector<std::string> in_order{files[0], files[1], "missing", files[2], files[3]};
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const nlohmann::json& line = lines[i];
    SCOPED_TRACE(line.dump());
    if (in_order[i] == "missing") {
      EXPECT_EQ(line["path"], "missing");
      EXPECT_EQ(line["error"]["code"], "not found");
      EXPECT_THAT(line["error"]["message"].get<std::string>(), HasSubstr("No such file"));
      EXPECT_FALSE(line.contains("digests"));
      continue;
    }
    const std::string& file = in_order[i];
    EXPECT_EQ(line["size"].get<std::uint64_t>(), std::filesystem::file_size(dir() / file));
    EXPECT_EQ(line["digests"]["sha256"], digest_of("sha256sum", file));
    EXPECT_EQ(line["digests"]["sha512"], digest_of("sha512sum", file));
    if (file == files[2]) {
      EXPECT_EQ(line["path_hex"], Hex(file));
      EXPECT_EQ(line["path"], "raw-\xef\xbf\xbd\xef\xbf\xbd");  // U+FFFD twice
    } else {
      EXPECT_EQ(line["path"], file);
      EXPECT_FALSE(line.contains("path_hex"));
    }
  }
}

TEST_F(DigestTest, NoProgressWhenStderrIsNotATerminal) {
  // Long enough (several algorithms over 256 MiB of a sparse file) that a progress line would be
  // drawn on a terminal.
  Make("sparse", "");
  std::filesystem::resize_file(dir() / "sparse", 256 * kMiB);
  ProcessResult actual =
      Signet({"digest", "--jobs", "1", "-a", "sha256,sha384,sha512,blake2b", "sparse"});
  ASSERT_EQ(actual.exit_code, 0) << actual;
  EXPECT_EQ(actual.err, "");
}

}  // namespace
}  // namespace signet::cli::testing
