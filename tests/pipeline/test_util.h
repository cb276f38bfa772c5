// tests/pipeline/test_util.h: helpers shared by the pipeline tests.
#ifndef SIGNET_TESTS_PIPELINE_TEST_UTIL_H_
#define SIGNET_TESTS_PIPELINE_TEST_UTIL_H_

#include <filesystem>
#include <string>
#include <string_view>

namespace signet::pipeline::testing {

// A fresh directory under /tmp, removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Writes `content` to path()/name (creating parent directories) and returns the path.
  std::filesystem::path Write(const std::string& name, std::string_view content) const;

 private:
  std::filesystem::path path_;
};

// Runs a coreutils checksum tool (sha256sum, sha384sum, sha512sum, b2sum) on `path` and returns
// the hex digest it prints. `path` must not need shell quoting.
std::string CoreutilsDigest(const std::string& tool, const std::filesystem::path& path);

// Deterministic pseudo-random bytes.
std::string RandomBytes(std::size_t size, unsigned seed);

// Runs this test binary again as a child in "child mode" (see main.cc): `child` names the check to
// run, `arg` is passed to it. With `drop_to_nobody`, the child runs as uid/gid 65534. Returns the
// child's exit status (0: its checks passed), or -1 when it could not be run.
int RunChild(const std::string& child, const std::string& arg, bool drop_to_nobody);

// The checks a child runs (defined in hasher_test.cc); returns the exit status.
int ChildMain(std::string_view child, const char* arg);

}  // namespace signet::pipeline::testing

#endif  // SIGNET_TESTS_PIPELINE_TEST_UTIL_H_
