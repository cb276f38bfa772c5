// Unit tests of the client's internal pieces: line formats, the checksum-line parser, option
// parsing, UTF-8 checks, the reorderer and the progress line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "appliance/cli/internal/checksum_format.h"
#include "appliance/cli/internal/json_line.h"
#include "appliance/cli/internal/ordered_run.h"
#include "appliance/cli/internal/parse.h"
#include "appliance/cli/internal/progress.h"

namespace signet::cli {
namespace {

using pipeline::DigestAlgorithm;
using ::testing::HasSubstr;

const std::string kHex64(64, 'a');

TEST(EscapeTest, RoundTripsAndMatchesCoreutilsRules) {
  EXPECT_FALSE(NeedsEscape("plain name\t*"));
  EXPECT_TRUE(NeedsEscape("a\\b"));
  EXPECT_TRUE(NeedsEscape("a\nb"));
  EXPECT_TRUE(NeedsEscape("a\rb"));
  EXPECT_EQ(EscapeName("a\\b\nc\rd"), "a\\\\b\\nc\\rd");
  for (std::string name : {"", "x", "a\\b\nc\rd", "\\\\n", "\xff\n"}) {
    EXPECT_EQ(UnescapeName(EscapeName(name)), name);
  }
  EXPECT_EQ(UnescapeName("bad\\t"), std::nullopt);
  EXPECT_EQ(UnescapeName("trailing\\"), std::nullopt);
  EXPECT_EQ(UnescapeName(std::string_view("nul\0", 4)), std::nullopt);
}

TEST(LineTest, GnuAndTaggedLines) {
  std::string out;
  AppendGnuLine(out, "ab", "f");
  AppendGnuLine(out, "ab", "n\nl");
  AppendTaggedLine(out, DigestAlgorithm::kSha384, "cd", "x y");
  AppendTaggedLine(out, DigestAlgorithm::kBlake2b512, "ef", "b\\s");
  EXPECT_EQ(out, "ab  f\n\\ab  n\\nl\nSHA384 (x y) = cd\n\\BLAKE2b (b\\\\s) = ef\n");
  std::string checked;
  AppendCheckedName(checked, "a\\b\rc");  // no '\n': shown raw
  checked += '|';
  AppendCheckedName(checked, "a\\b\nc");
  EXPECT_EQ(checked, "a\\b\rc|\\a\\\\b\\nc");
}

TEST(ChecksumParserTest, GnuForms) {
  ChecksumParser parser({});
  auto text = parser.Parse(kHex64 + "  name with  spaces ");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->path, "name with  spaces ");
  EXPECT_EQ(text->algorithm, DigestAlgorithm::kSha256);
  EXPECT_EQ(text->expected, Bytes(32, 0xaa));
  auto binary = parser.Parse(kHex64 + " *bin");
  ASSERT_TRUE(binary);
  EXPECT_EQ(binary->path, "bin");
  auto escaped = parser.Parse("\\" + kHex64 + "  a\\nb\\\\c");
  ASSERT_TRUE(escaped);
  EXPECT_EQ(escaped->path, "a\nb\\c");
  EXPECT_FALSE(parser.Parse("\\" + kHex64 + "  bad\\q"));
  EXPECT_FALSE(parser.Parse(kHex64 + "  "));                   // no name
  EXPECT_FALSE(parser.Parse(std::string(63, 'a') + "  odd"));  // not a known length
  EXPECT_FALSE(parser.Parse(kHex64 + "x  name"));              // hex runs into a letter
  EXPECT_FALSE(parser.Parse(kHex64 + "name"));                 // no blank
  // The first line chose the GNU form: a one-blank line is now refused.
  EXPECT_FALSE(parser.Parse(kHex64 + " reversed"));
  EXPECT_EQ(parser.Parse(std::string(96, 'B') + "\t f")->algorithm, DigestAlgorithm::kSha384);
  EXPECT_EQ(parser.Parse(std::string(128, '0') + "  f")->algorithm, DigestAlgorithm::kSha512);
}

TEST(ChecksumParserTest, ReversedBsdFormWhenFirst) {
  ChecksumParser parser({});
  auto first = parser.Parse(kHex64 + " name");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->path, "name");
  auto second = parser.Parse(kHex64 + "  spaced");  // now the second blank is part of the name
  ASSERT_TRUE(second);
  EXPECT_EQ(second->path, " spaced");
}

TEST(ChecksumParserTest, TaggedForms) {
  ChecksumParser parser({});
  auto sha = parser.Parse("SHA256 (a (b) = c) = " + kHex64);
  ASSERT_TRUE(sha);
  EXPECT_EQ(sha->path, "a (b) = c");
  auto tight = parser.Parse("SHA256(x)=" + kHex64);
  ASSERT_TRUE(tight);
  EXPECT_EQ(tight->path, "x");
  auto blake = parser.Parse("BLAKE2b (f) = " + std::string(128, 'c'));
  ASSERT_TRUE(blake);
  EXPECT_EQ(blake->algorithm, DigestAlgorithm::kBlake2b512);
  EXPECT_TRUE(parser.Parse("BLAKE2b-512 (f) = " + std::string(128, 'c')));
  auto escaped = parser.Parse("\\SHA512 (n\\nl) = " + std::string(128, '1'));
  ASSERT_TRUE(escaped);
  EXPECT_EQ(escaped->path, "n\nl");
  EXPECT_FALSE(parser.Parse("SHA256 (f) = " + std::string(128, 'a')));  // wrong length for tag
  EXPECT_FALSE(parser.Parse("SHA256 (f) = " + kHex64 + " "));           // trailing junk
  EXPECT_FALSE(parser.Parse("SHA256 (f) " + kHex64));                   // no '='
  EXPECT_FALSE(parser.Parse("MD5 (f) = " + std::string(32, 'a')));
  EXPECT_FALSE(parser.Parse("BLAKE2b-256 (f) = " + kHex64));
}

TEST(ChecksumParserTest, AllowedAlgorithmsDecide) {
  std::vector<DigestAlgorithm> blake{DigestAlgorithm::kBlake2b512};
  ChecksumParser parser(blake);
  EXPECT_EQ(parser.Parse(std::string(128, 'a') + "  f")->algorithm, DigestAlgorithm::kBlake2b512);
  EXPECT_FALSE(parser.Parse(kHex64 + "  f"));  // no allowed algorithm has 64
  EXPECT_FALSE(parser.Parse("SHA512 (f) = " + std::string(128, 'a')));  // tag not allowed
  std::vector<DigestAlgorithm> both{DigestAlgorithm::kSha512, DigestAlgorithm::kBlake2b512};
  EXPECT_EQ(ChecksumParser(both).Parse(std::string(128, 'a') + "  f")->algorithm,
            DigestAlgorithm::kSha512);
}

TEST(ParseTest, ByteSizes) {
  EXPECT_EQ(ParseByteSize("4096"), 4096u);
  EXPECT_EQ(ParseByteSize("64K"), 65536u);
  EXPECT_EQ(ParseByteSize("64kib"), 65536u);
  EXPECT_EQ(ParseByteSize("1M"), 1u << 20);
  EXPECT_EQ(ParseByteSize("2GiB"), std::uint64_t{2} << 30);
  for (const char* bad : {"", "K", "1.5M", "-1", "+1", " 1", "1 M", "1T", "0x10", "99999999999G"}) {
    EXPECT_FALSE(ParseByteSize(bad)) << bad;
  }
  EXPECT_EQ(ParseChunkSize("4K"), 4096u);
  EXPECT_EQ(ParseChunkSize("64M"), std::size_t{64} << 20);
  EXPECT_THAT(ParseChunkSize("4095").error().message(), HasSubstr("--chunk-size"));
  EXPECT_FALSE(ParseChunkSize("65M"));
}

TEST(ParseTest, JobsAlgorithmsBackends) {
  EXPECT_EQ(ParseJobs("0"), 0u);
  EXPECT_EQ(ParseJobs("256"), 256u);
  EXPECT_FALSE(ParseJobs("257"));
  EXPECT_FALSE(ParseJobs("-1"));
  EXPECT_FALSE(ParseJobs("1e3"));
  EXPECT_THAT(ParseJobs("x").error().message(), HasSubstr("--jobs"));

  std::vector<std::string> values{"sha512,SHA256", "sha512", "blake2b"};
  auto algorithms = ParseAlgorithms(values);
  ASSERT_TRUE(algorithms);
  EXPECT_EQ(*algorithms,
            (std::vector<DigestAlgorithm>{DigestAlgorithm::kSha512, DigestAlgorithm::kSha256,
                                          DigestAlgorithm::kBlake2b512}));
  EXPECT_EQ(*ParseAlgorithms({}), std::vector<DigestAlgorithm>{DigestAlgorithm::kSha256});
  std::vector<std::string> bad{"sha1"};
  EXPECT_THAT(ParseAlgorithms(bad).error().message(), HasSubstr("--algorithm"));
  EXPECT_EQ(ParseBackend("uring"), pipeline::IoBackend::kIoUring);
  EXPECT_THAT(ParseBackend("x").error().message(), HasSubstr("--backend"));
}

TEST(Utf8Test, AcceptsWellFormedOnly) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));              // stray continuation
}

TEST(ReordererTest, EmitsInOrdinalOrder) {
  std::vector<std::uint64_t> seen;
  Reorderer reorderer([&](pipeline::FileOutcome outcome) { seen.push_back(outcome.ordinal); });
  for (std::uint64_t ordinal : {3, 1, 0, 2, 6, 4, 5}) {
    reorderer.Add(pipeline::FileOutcome{ordinal, "f", MakeError(ErrorCode::kIo, "x")});
  }
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(reorderer.pending(), 0u);
  reorderer.Add(pipeline::FileOutcome{9, "f", MakeError(ErrorCode::kIo, "x")});
  EXPECT_EQ(reorderer.pending(), 1u);
  reorderer.Flush();  // ordinals 7 and 8 never came: 9 is still emitted
  EXPECT_EQ(seen.back(), 9u);
}

TEST(ProgressTest, FormatsCountsRateAndEta) {
  using std::chrono::seconds;
  std::string line = FormatProgress({5, 20, 500'000'000, 2'000'000'000, std::nullopt}, seconds(1));
  EXPECT_EQ(line, "signet: 5/20 files, 500.0 MB/2.00 GB, 500 MB/s, ETA 0:03");
  std::string early = FormatProgress({0, 0, 0, 0, std::nullopt}, seconds(0));
  EXPECT_EQ(early, "signet: 0 files, 0 B, 0 MB/s");
  ProgressSnapshot signing{5, 20, 500'000'000, 2'000'000'000, std::nullopt};
  signing.signatures = 4;
  EXPECT_EQ(FormatProgress(signing, seconds(2)),
            "signet: 5/20 files, 500.0 MB/2.00 GB, 250 MB/s, 4 signed (2/s), ETA 0:06");
}

TEST(JsonLineTest, OkAndError) {
  auto digest = pipeline::DigestBytes(DigestAlgorithm::kSha256, AsBytes("abc"));
  ASSERT_TRUE(digest);
  pipeline::FileDigest file{"a\"b", {0, 0, 3, 0}, {*digest}};
  std::string ok = JsonLine(pipeline::FileOutcome{0, "a\"b", file});
  EXPECT_EQ(ok,
            "{\"path\":\"a\\\"b\",\"size\":3,\"digests\":{\"sha256\":"
            "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}}\n");
  std::string error = JsonLine(
      pipeline::FileOutcome{1, "\xff", MakeError(ErrorCode::kNotFound, "\xff: No such file")});
  EXPECT_EQ(error,
            "{\"path\":\"\xef\xbf\xbd\",\"path_hex\":\"ff\",\"error\":{\"code\":\"not found\","
            "\"message\":\"\xef\xbf\xbd: No such file\"}}\n");
}

}  // namespace
}  // namespace signet::cli
