// audit_test's main: GoogleTest, or the crash test's child (`--crash-child DIR FD`), a process of
// its own that appends until its parent kills it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string_view>

namespace signet::audit::testing {
int CrashChildMain(const char* dir, int fd);
}  // namespace signet::audit::testing

int main(int argc, char** argv) {
  if (argc == 4 && std::string_view(argv[1]) == "--crash-child") {
    return signet::audit::testing::CrashChildMain(argv[2], std::atoi(argv[3]));
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
