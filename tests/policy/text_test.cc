// Globs and message quoting (internal, but every rule leans on them).
#include <gtest/gtest.h>

#include <string>

#include "appliance/policy/internal/text.h"

namespace signet::policy::internal {
namespace {

TEST(GlobTest, PlainMatchesWholeName) {
  EXPECT_TRUE(GlobMatch("release-*", "release-2024", GlobSyntax::kPlain));
  EXPECT_TRUE(GlobMatch("release-*", "release-", GlobSyntax::kPlain));
  EXPECT_FALSE(GlobMatch("release-*", "xrelease-1", GlobSyntax::kPlain));
  EXPECT_FALSE(GlobMatch("release", "release2", GlobSyntax::kPlain));
  EXPECT_TRUE(GlobMatch("a?c", "abc", GlobSyntax::kPlain));
  EXPECT_FALSE(GlobMatch("a?c", "ac", GlobSyntax::kPlain));
  EXPECT_TRUE(GlobMatch("*", "a/b", GlobSyntax::kPlain));
}

TEST(GlobTest, Sets) {
  EXPECT_TRUE(GlobMatch("v[0-9]", "v7", GlobSyntax::kPlain));
  EXPECT_FALSE(GlobMatch("v[0-9]", "vx", GlobSyntax::kPlain));
  EXPECT_TRUE(GlobMatch("v[!0-9]", "vx", GlobSyntax::kPlain));
  EXPECT_TRUE(GlobMatch("v[^0-9]", "vx", GlobSyntax::kPlain));
  EXPECT_TRUE(GlobMatch("[]]", "]", GlobSyntax::kPlain));
  EXPECT_TRUE(GlobMatch("[a-]", "-", GlobSyntax::kPlain));
  EXPECT_TRUE(GlobMatch("\\*", "*", GlobSyntax::kPlain));
  EXPECT_FALSE(GlobMatch("\\*", "x", GlobSyntax::kPlain));
}

TEST(GlobTest, PathSeparatorAndDoubleStar) {
  EXPECT_TRUE(GlobMatch("dist/*.tar.gz", "dist/a.tar.gz", GlobSyntax::kPath));
  EXPECT_FALSE(GlobMatch("dist/*.tar.gz", "dist/sub/a.tar.gz", GlobSyntax::kPath));
  EXPECT_TRUE(GlobMatch("dist/**.tar.gz", "dist/sub/a.tar.gz", GlobSyntax::kPath));
  EXPECT_FALSE(GlobMatch("dist/?", "dist//", GlobSyntax::kPath));
  EXPECT_FALSE(GlobMatch("dist/[/]", "dist//", GlobSyntax::kPath));
  // No '/' in the glob: it matches the last component.
  EXPECT_TRUE(GlobMatch("*.rpm", "out/el9/x.rpm", GlobSyntax::kPath));
  EXPECT_TRUE(GlobMatch("*.rpm", "x.rpm", GlobSyntax::kPath));
  EXPECT_FALSE(GlobMatch("*.rpm", "x.rpm/y", GlobSyntax::kPath));
}

TEST(GlobTest, SubjectStarStopsAtComma) {
  EXPECT_TRUE(GlobMatch("CN=builder-*", "CN=builder-7", GlobSyntax::kSubject));
  EXPECT_FALSE(GlobMatch("CN=builder-*", "CN=builder-7,O=Evil", GlobSyntax::kSubject));
  EXPECT_TRUE(GlobMatch("CN=builder-*,O=Example", "CN=builder-7,O=Example", GlobSyntax::kSubject));
}

TEST(GlobTest, CheckRefusesMalformed) {
  EXPECT_TRUE(CheckGlob("a[bc]*").has_value());
  auto unclosed = CheckGlob("ab[cd");
  ASSERT_FALSE(unclosed.has_value());
  EXPECT_EQ(unclosed.error().message(), "unclosed '[' at offset 2");
  EXPECT_FALSE(CheckGlob("ab\\").has_value());
  EXPECT_FALSE(CheckGlob("[z-a]").has_value());
  EXPECT_FALSE(GlobMatch("ab[cd", "ab[cd", GlobSyntax::kPlain));
}

TEST(GlobTest, HostileNameIsLinear) {
  // A backtracking matcher takes exponential time here.
  const std::string name(4000, 'a');
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*a*a*a*a*b", name, GlobSyntax::kPlain));
  EXPECT_FALSE(GlobMatch("**a**a**a**a**a**a**a**b", name, GlobSyntax::kPath));
}

TEST(PrintableTest, EscapesControlQuotesAndBadUtf8) {
  EXPECT_EQ(Printable("plain"), "plain");
  EXPECT_EQ(Printable("a\nb\x1b"), "a\\nb\\x1b");
  EXPECT_EQ(Quoted("it's"), "'it\\'s'");
  EXPECT_EQ(Printable("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(Printable("\xff\xc3"), "\\xff\\xc3");
  EXPECT_EQ(Printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  const std::string cut = Printable(std::string(1000, 'x'));
  EXPECT_EQ(cut, std::string(200, 'x') + "...");
}

}  // namespace
}  // namespace signet::policy::internal
