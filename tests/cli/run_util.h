// tests/cli/run_util.h: running `signet` and the coreutils tools as child processes, and a fresh
// temporary directory per test.
#ifndef SIGNET_TESTS_CLI_RUN_UTIL_H_
#define SIGNET_TESTS_CLI_RUN_UTIL_H_

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace signet::cli::testing {

// What a child process did.
struct ProcessResult {
  int exit_code = -1;      // exit status, or -1 when it was killed by a signal
  int signal = 0;          // the signal that killed it, or 0
  bool timed_out = false;  // it ran past the timeout and was killed
  std::string out;         // everything it wrote to stdout
  std::string err;         // everything it wrote to stderr (empty when stderr_fd was given)
};

std::ostream& operator<<(std::ostream& os, const ProcessResult& result);

struct RunOptions {
  std::filesystem::path cwd;  // working directory of the child; empty: inherit
  std::string stdin_data;     // written to its stdin, which is then closed
  std::string stdout_path;    // when set, stdout goes to this file instead of a pipe
  int stderr_fd = -1;         // when >= 0, the child's stderr is this descriptor (a pty)
  bool merge_stderr = false;  // stderr goes to the stdout pipe, as with `2>&1`
  std::chrono::seconds timeout{120};
};

// Options with one field set (designated initializers trip -Wmissing-field-initializers).
RunOptions WithTimeout(std::chrono::seconds timeout);
RunOptions WithStdin(std::string data);
RunOptions WithStdoutTo(std::string path);
RunOptions WithStderrFd(int fd);
RunOptions WithMergedStderr();

// Run starts argv[0] (searched in PATH when it has no '/') with exactly the arguments in `argv`
// (posix_spawn: no shell, so any bytes in names pass through) and waits for it, reading its stdout
// and stderr as it goes. A child still running after the timeout is killed.
ProcessResult Run(const std::vector<std::string>& argv, const RunOptions& options = {});

// Runs the `signet` binary under test with `args`.
ProcessResult Signet(const std::vector<std::string>& args, const RunOptions& options = {});

// Deterministic pseudo-random bytes.
std::string RandomBytes(std::size_t size, std::uint64_t seed);

// Writes `content` to `path`, replacing it.
void WriteFile(const std::filesystem::path& path, std::string_view content);
std::string ReadFile(const std::filesystem::path& path);

// Lower-case hex of the bytes of `bytes`.
std::string Hex(std::string_view bytes);

// CliTest gives each test a fresh directory (dir()), removed with its contents afterwards; child
// processes run with it as their working directory by default.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  const std::filesystem::path& dir() const { return dir_; }
  // Writes dir()/name and returns name (relative, as tools are given it).
  std::string Make(const std::string& name, std::string_view content);

  // Runs signet / a tool in dir().
  ProcessResult Signet(const std::vector<std::string>& args, RunOptions options = {}) const;
  ProcessResult Tool(const std::vector<std::string>& argv, RunOptions options = {}) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace signet::cli::testing

#endif  // SIGNET_TESTS_CLI_RUN_UTIL_H_
