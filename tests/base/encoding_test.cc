#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "appliance/base/base.h"

namespace signet {
namespace {

using ::testing::HasSubstr;

Bytes B(std::initializer_list<int> v) {
  Bytes out;
  for (int x : v) {
    out.push_back(static_cast<std::uint8_t>(x));
  }
  return out;
}

TEST(HexTest, EncodesLowerCase) {
  EXPECT_EQ(HexEncode({}), "");
  EXPECT_EQ(HexEncode(B({0x00, 0x01, 0xab, 0xff})), "0001abff");
}

TEST(HexTest, DecodesBothCases) {
  EXPECT_EQ(HexDecode("").value(), Bytes{});
  EXPECT_EQ(HexDecode("0001abff").value(), B({0x00, 0x01, 0xab, 0xff}));
  EXPECT_EQ(HexDecode("ABFF").value(), B({0xab, 0xff}));
}

TEST(HexTest, RejectsOddLength) {
  auto r = HexDecode("abc");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("odd length 3"));
}

TEST(HexTest, RejectsBadCharacterNamingOffset) {
  auto high = HexDecode("00g0");
  ASSERT_FALSE(high);
  EXPECT_EQ(high.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(high.error().message(), HasSubstr("invalid character 'g' at offset 2"));

  auto low = HexDecode("000z");
  ASSERT_FALSE(low);
  EXPECT_THAT(low.error().message(), HasSubstr("'z' at offset 3"));
}

TEST(HexTest, RejectsPrefixSpacesAndControlBytes) {
  EXPECT_FALSE(HexDecode("0x00"));
  EXPECT_FALSE(HexDecode("00 1"));
  auto r = HexDecode(std::string_view("0\n", 2));
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("\\x0a at offset 1"));
  auto high_bit = HexDecode("\xc3\xa9");
  ASSERT_FALSE(high_bit);
  EXPECT_THAT(high_bit.error().message(), HasSubstr("\\xc3 at offset 0"));
}

// RFC 4648 section 10 test vectors.
TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(AsBytes(plain)), encoded) << plain;
    auto decoded = Base64Decode(encoded);
    ASSERT_TRUE(decoded) << decoded.error();
    EXPECT_EQ(std::string(decoded->begin(), decoded->end()), plain);
  }
}

TEST(Base64Test, UsesStandardAlphabetForHighValues) {
  EXPECT_EQ(Base64Encode(B({0xfb, 0xff, 0xbf})), "+/+/");
  EXPECT_EQ(Base64Decode("+/+/").value(), B({0xfb, 0xff, 0xbf}));
}

TEST(Base64Test, RoundTripsRandomBytes) {
  std::mt19937 rng(42);
  for (std::size_t n = 0; n < 200; ++n) {
    Bytes data(n);
    for (auto& b : data) {
      b = static_cast<std::uint8_t>(rng());
    }
    auto decoded = Base64Decode(Base64Encode(data));
    ASSERT_TRUE(decoded) << decoded.error();
    EXPECT_EQ(*decoded, data);
  }
}

TEST(Base64Test, RejectsLengthNotMultipleOfFour) {
  for (std::string_view bad : {"Z", "Zg", "Zg=", "Zm9vY"}) {
    auto r = Base64Decode(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(r.error().message(), HasSubstr("not a multiple of 4"));
  }
}

TEST(Base64Test, RejectsInvalidCharacterNamingOffset) {
  auto r = Base64Decode("Zm9*");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("invalid character '*' at offset 3"));
  // URL-safe characters are not standard base64.
  auto url = Base64Decode("-_8=");
  ASSERT_FALSE(url);
  EXPECT_THAT(url.error().message(), HasSubstr("'-' at offset 0"));
  // Whitespace is refused, not skipped.
  auto space = Base64Decode("Zm9v\nYmFy");
  ASSERT_FALSE(space);
  auto nul = Base64Decode(std::string_view("Zm\0v", 4));
  ASSERT_FALSE(nul);
  EXPECT_THAT(nul.error().message(), HasSubstr("\\x00 at offset 2"));
}

TEST(Base64Test, RejectsPaddingInTheMiddle) {
  for (std::string_view bad : {"Zg==Zg==", "Z=9v", "====", "A==="}) {
    auto r = Base64Decode(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.error().message(), HasSubstr("is not at the end")) << bad;
  }
}

TEST(Base64Test, RejectsNonCanonicalTrailingBits) {
  // "Zh==" decodes to 'f' with non-zero left-over bits; only "Zg==" is canonical.
  auto one = Base64Decode("Zh==");
  ASSERT_FALSE(one);
  EXPECT_THAT(one.error().message(), HasSubstr("not canonical"));
  auto two = Base64Decode("Zm9=");
  ASSERT_FALSE(two);
  EXPECT_THAT(two.error().message(), HasSubstr("not canonical"));
}

}  // namespace
}  // namespace signet
