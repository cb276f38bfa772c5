// The admin state store (a real LMDB environment) and seeding the policy from it.
#include <gtest/gtest.h>

#include "admin/admin.h"
#include "tests/admin/admin_fixture.h"
#include "tests/net/test_util.h"

namespace signet::admin {
namespace {

PolicyVersion Version(std::string text, std::string by) {
  PolicyVersion v;
  v.version = "v-" + text;
  v.text = std::move(text);
  v.source = "test";
  v.applied_by = std::move(by);
  v.time_us = 1234;
  v.comment = "c";
  return v;
}

TEST(StateStoreTest, VersionsAreNumberedKeptAcrossReopenAndListedNewestFirst) {
  net::testing::TempDir dir;
  {
    auto store = StateStore::Open(dir.path() / "state");
    ASSERT_TRUE(store) << store.error();
    auto latest = (*store)->LatestPolicy();
    ASSERT_TRUE(latest) << latest.error();
    EXPECT_FALSE(latest->has_value());
    EXPECT_EQ((*store)->AddPolicy(Version("one", "user:a")).value_or(0), 1u);
    EXPECT_EQ((*store)->AddPolicy(Version("two", "user:b")).value_or(0), 2u);
  }
  auto store = StateStore::Open(dir.path() / "state");
  ASSERT_TRUE(store) << store.error();
  auto latest = (*store)->LatestPolicy();
  ASSERT_TRUE(latest && latest->has_value());
  EXPECT_EQ((*latest)->number, 2u);
  EXPECT_EQ((*latest)->text, "two");
  EXPECT_EQ((*latest)->applied_by, "user:b");
  auto first = (*store)->Policy(1);
  ASSERT_TRUE(first) << first.error();
  EXPECT_EQ(first->text, "one");
  EXPECT_EQ(first->version, "v-one");
  auto missing = (*store)->Policy(3);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  auto versions = (*store)->PolicyVersions();
  ASSERT_TRUE(versions) << versions.error();
  ASSERT_EQ(versions->size(), 2u);
  EXPECT_EQ((*versions)[0].number, 2u);
  EXPECT_EQ((*versions)[1].number, 1u);
  EXPECT_TRUE((*versions)[0].text.empty()) << "the list leaves the texts out";
}

TEST(StateStoreTest, AStoreOfAnotherFormatIsRefusedNamingIt) {
  net::testing::TempDir dir;
  ASSERT_TRUE(StateStore::Open(dir.path() / "state"));
  const std::string path = (dir.path() / "state").string();
  // Rewrite the format marker with the LMDB tools, as a newer signetd would have written it.
  const auto run = net::testing::RunCommand("printf 'format\\n2\\n' | mdb_load -T -s meta " +
                                            net::testing::ShellQuote(path) + " 2>&1");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  auto store = StateStore::Open(dir.path() / "state");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message().find("format \"2\""), std::string::npos) << store.error();
}

}  // namespace
}  // namespace signet::admin
