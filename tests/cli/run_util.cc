#include "run_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace signet::cli::testing {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    throw std::system_error(errno, std::generic_category(), what);
  }
}

struct Pipe {
  int read = -1;
  int write = -1;
  Pipe() {
    int fds[2];
    Check(pipe2(fds, O_CLOEXEC) == 0, "pipe2");
    read = fds[0];
    write = fds[1];
  }
};

void CloseFd(int& fd) {
  if (fd >= 0) {
    close(fd);
    fd = -1;
  }
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const ProcessResult& result) {
  return os << "exit " << result.exit_code << " signal " << result.signal
            << (result.timed_out ? " TIMED OUT" : "") << "\n--- stdout:\n"
            << result.out << "\n--- stderr:\n"
            << result.err;
}

RunOptions WithTimeout(std::chrono::seconds timeout) {
  RunOptions options;
  options.timeout = timeout;
  return options;
}

RunOptions WithStdin(std::string data) {
  RunOptions options;
  options.stdin_data = std::move(data);
  return options;
}

RunOptions WithStdoutTo(std::string path) {
  RunOptions options;
  options.stdout_path = std::move(path);
  return options;
}

RunOptions WithStderrFd(int fd) {
  RunOptions options;
  options.stderr_fd = fd;
  return options;
}

RunOptions WithMergedStderr() {
  RunOptions options;
  options.merge_stderr = true;
  return options;
}

ProcessResult Run(const std::vector<std::string>& argv, const RunOptions& options) {
  // A child that exits before reading all of its stdin must not kill the test with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  Pipe in;
  Pipe out;
  Pipe err;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.read, STDIN_FILENO);
  if (options.stdout_path.empty()) {
    posix_spawn_file_actions_adddup2(&actions, out.write, STDOUT_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, options.stdout_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  if (options.merge_stderr) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_adddup2(
        &actions, options.stderr_fd >= 0 ? options.stderr_fd : err.write, STDERR_FILENO);
  }
  if (!options.cwd.empty()) {
    posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
  }
  std::vector<char*> args;
  for (const std::string& arg : argv) {
    args.push_back(const_cast<char*>(arg.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  CloseFd(in.read);
  CloseFd(out.write);
  CloseFd(err.write);
  if (rc != 0) {
    errno = rc;
    Check(false, "posix_spawnp");
  }
  if (!options.stdout_path.empty()) {
    CloseFd(out.read);
  }
  if (options.stderr_fd >= 0) {
    CloseFd(err.read);
  }

  ProcessResult result;
  std::size_t written = 0;
  if (options.stdin_data.empty()) {
    CloseFd(in.write);
  } else {
    fcntl(in.write, F_SETFL, O_NONBLOCK);
  }
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  char buffer[65536];
  while (out.read >= 0 || err.read >= 0 || in.write >= 0) {
    pollfd fds[3];
    int n = 0;
    if (out.read >= 0) {
      fds[n++] = {out.read, POLLIN, 0};
    }
    if (err.read >= 0) {
      fds[n++] = {err.read, POLLIN, 0};
    }
    if (in.write >= 0) {
      fds[n++] = {in.write, POLLOUT, 0};
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    int ready = poll(fds, n, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    Check(ready >= 0, "poll");
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) {
        continue;
      }
      if (fds[i].fd == in.write) {
        ssize_t w = write(in.write, options.stdin_data.data() + written,
                          options.stdin_data.size() - written);
        if (w > 0) {
          written += static_cast<std::size_t>(w);
        }
        if (w < 0 && errno != EAGAIN) {
          CloseFd(in.write);  // EPIPE: the child stopped reading
        } else if (written == options.stdin_data.size()) {
          CloseFd(in.write);
        }
        continue;
      }
      ssize_t r = read(fds[i].fd, buffer, sizeof buffer);
      if (r <= 0) {
        if (fds[i].fd == out.read) {
          CloseFd(out.read);
        } else {
          CloseFd(err.read);
        }
        continue;
      }
      (fds[i].fd == out.read ? result.out : result.err).append(buffer, static_cast<std::size_t>(r));
    }
  }
  CloseFd(in.write);
  CloseFd(out.read);
  CloseFd(err.read);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    Check(errno == EINTR, "waitpid");
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

ProcessResult Signet(const std::vector<std::string>& args, const RunOptions& options) {
  std::vector<std::string> argv{SIGNET_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::Run(argv, options);
}

std::string RandomBytes(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t word = rng();
    std::memcpy(bytes.data() + i, &word, 8);
  }
  for (; i < size; ++i) {
    bytes[i] = static_cast<char>(rng());
  }
  return bytes;
}

void WriteFile(const std::filesystem::path& path, std::string_view content) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!file) {
    throw std::runtime_error("cannot write " + path.string());
  }
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream content;
  content << file.rdbuf();
  return content.str();
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex += kDigits[c >> 4];
    hex += kDigits[c & 15];
  }
  return hex;
}

void CliTest::SetUp() {
  std::string pattern = (std::filesystem::temp_directory_path() / "signet-cli-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
  dir_ = pattern;
}

void CliTest::TearDown() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string CliTest::Make(const std::string& name, std::string_view content) {
  std::filesystem::path path = dir_ / name;
  std::filesystem::create_directories(path.parent_path());
  WriteFile(path, content);
  return name;
}

ProcessResult CliTest::Signet(const std::vector<std::string>& args, RunOptions options) const {
  if (options.cwd.empty()) {
    options.cwd = dir_;
  }
  return testing::Signet(args, options);
}

ProcessResult CliTest::Tool(const std::vector<std::string>& argv, RunOptions options) const {
  if (options.cwd.empty()) {
    options.cwd = dir_;
  }
  return testing::Run(argv, options);
}

}  // namespace signet::cli::testing
