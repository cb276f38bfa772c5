// pipeline_test's main: GoogleTest, or a child mode used by tests that need a process of their own
// (a dropped uid, a seccomp filter) before any thread exists.
#include <gtest/gtest.h>

#include <string_view>

#include "tests/pipeline/test_util.h"

int main(int argc, char** argv) {
  constexpr std::string_view kChild = "--signet-child=";
  if (argc == 3 && std::string_view(argv[1]).starts_with(kChild)) {
    return signet::pipeline::testing::ChildMain(std::string_view(argv[1]).substr(kChild.size()),
                                                argv[2]);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
