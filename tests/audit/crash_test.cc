// Crash test: a child process appends from several threads and reports every acknowledged
// sequence number through a pipe; the parent kills it with SIGKILL at a random moment, then opens
// the log (start-up checks), finds every acknowledged record, and verifies a full export.
// SIGNET_AUDIT_CRASH_CYCLES sets the number of cycles (default 50; 1000 for the long run).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <sstream>
#include <thread>

#include "appliance/audit/audit.h"
#include "tests/audit/hsm_note_signer.h"

extern char** environ;

namespace signet::audit::testing {

// One acknowledgement, written whole (it is smaller than PIPE_BUF, so writes never interleave).
struct Ack {
  std::uint64_t first;
  std::uint64_t count;
  std::uint64_t thread;
  std::uint64_t n;
};

std::string RequestId(std::uint64_t cycle, std::uint64_t thread, std::uint64_t n) {
  return "c" + std::to_string(cycle) + "-t" + std::to_string(thread) + "-" + std::to_string(n);
}

LogOptions CrashLogOptions(const std::filesystem::path& root) {
  LogOptions options = TestLogOptions(root);
  options.checkpoint_every = 64;  // checkpoints are being written when the kill comes, too
  options.checkpoint_interval = std::chrono::milliseconds(20);
  return options;
}

int CrashChildMain(const char* dir, int fd) {
  const char* label = std::getenv("SIGNET_CRASH_TOKEN_LABEL");
  const char* pin_file = std::getenv("SIGNET_CRASH_PIN_FILE");
  const char* cycle_text = std::getenv("SIGNET_CRASH_CYCLE");
  if (label == nullptr || pin_file == nullptr || cycle_text == nullptr) {
    return 3;
  }
  const std::uint64_t cycle = std::strtoull(cycle_text, nullptr, 10);
  hsm::TokenConfig config;
  config.module = hsm::testing::kSoftHsmModule;
  config.token_label = label;
  config.pin_file = pin_file;
  config.sessions = 1;
  auto token = hsm::Token::Open(config);
  if (!token) {
    std::fprintf(stderr, "child: %s\n", token.error().ToString().c_str());
    return 4;
  }
  const char* key_label = std::getenv("SIGNET_CRASH_KEY_LABEL");
  if (key_label == nullptr) {
    return 3;
  }
  auto key = (*token)->FindKey(key_label);
  if (!key) {
    return 5;
  }
  auto signer = MakeHsmNoteSigner(**token, *key, "signet.test/audit");
  auto log = Log::Open(CrashLogOptions(dir), signer);
  if (!log) {
    std::fprintf(stderr, "child: %s\n", log.error().ToString().c_str());
    return 6;
  }
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t * 7919 + cycle);
      for (std::uint64_t n = 0;; ++n) {
        std::vector<Record> records(1 + rng() % 4, SampleRecord(n));
        for (Record& r : records) {
          r.request_id = RequestId(cycle, t, n);
        }
        auto range = (*log)->Append(std::move(records));
        if (!range) {
          std::fprintf(stderr, "child: %s\n", range.error().ToString().c_str());
          std::_Exit(7);
        }
        const Ack ack{range->first, range->count, t, n};
        if (::write(fd, &ack, sizeof(ack)) != static_cast<ssize_t>(sizeof(ack))) {
          std::_Exit(8);
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();  // never: the parent kills this process
  }
  return 0;
}

namespace {

int Cycles() {
  const char* text = std::getenv("SIGNET_AUDIT_CRASH_CYCLES");
  return text == nullptr ? 50 : std::atoi(text);
}

// Runs one child and kills it after `kill_after` of acknowledged appends; returns its acks.
std::vector<Ack> RunAndKill(const std::filesystem::path& dir,
                            std::chrono::milliseconds kill_after) {
  int fds[2];
  if (::pipe2(fds, 0) != 0) {
    ADD_FAILURE() << "pipe";
    return {};
  }
  const std::string fd_text = std::to_string(fds[1]);
  const std::string dir_text = dir.string();
  std::vector<char*> argv = {
      const_cast<char*>("/proc/self/exe"), const_cast<char*>("--crash-child"),
      const_cast<char*>(dir_text.c_str()), const_cast<char*>(fd_text.c_str()), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    ADD_FAILURE() << "posix_spawn: " << std::strerror(rc);
    return {};
  }
  std::vector<Ack> acks;
  std::string partial;
  auto read_some = [&](int timeout_ms) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) {
      return true;
    }
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0) {
      return false;  // EOF: the child is gone
    }
    partial.append(buf, static_cast<std::size_t>(n));
    while (partial.size() >= sizeof(Ack)) {
      Ack ack;
      std::memcpy(&ack, partial.data(), sizeof(ack));
      acks.push_back(ack);
      partial.erase(0, sizeof(Ack));
    }
    return true;
  };
  // Wait for the first acknowledgement (the child has opened the token and the log), then let it
  // run for kill_after.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool alive = true;
  while (acks.empty() && alive && std::chrono::steady_clock::now() < give_up) {
    alive = read_some(100);
  }
  const auto kill_at = std::chrono::steady_clock::now() + kill_after;
  while (alive && std::chrono::steady_clock::now() < kill_at) {
    alive = read_some(5);
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  while (read_some(1000)) {
  }
  ::close(fds[0]);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child ended on its own (status " << status << ") before it was killed";
  return acks;
}

TEST(CrashTest, EveryAcknowledgedRecordSurvivesSigkill) {
  AuditKey key;
  TempDir tmp;
  ::setenv("SIGNET_CRASH_TOKEN_LABEL", AuditKey::token().label().c_str(), 1);
  ::setenv("SIGNET_CRASH_PIN_FILE", AuditKey::token().pin_file().c_str(), 1);
  ::setenv("SIGNET_CRASH_KEY_LABEL", key.label().c_str(), 1);
  const LogOptions options = CrashLogOptions(tmp.path());
  std::mt19937_64 rng(std::random_device{}());
  std::uint64_t last_size = 0;
  std::uint64_t total_acked = 0;
  const int cycles = Cycles();
  for (int cycle = 0; cycle < cycles; ++cycle) {
    ::setenv("SIGNET_CRASH_CYCLE", std::to_string(cycle).c_str(), 1);
    const auto kill_after = std::chrono::milliseconds(rng() % 150);
    const std::vector<Ack> acks = RunAndKill(tmp.path(), kill_after);
    ASSERT_FALSE(acks.empty()) << "cycle " << cycle << ": the child acknowledged nothing";
    total_acked += acks.size();

    auto log = Log::Open(options, key.signer());
    ASSERT_TRUE(log) << "cycle " << cycle << ": " << log.error();
    const std::uint64_t size = (*log)->stats().tree_size;
    ASSERT_GE(size, last_size) << "cycle " << cycle;
    for (const Ack& ack : acks) {
      ASSERT_LE(ack.first + ack.count, size) << "cycle " << cycle << ": acknowledged seq missing";
      for (std::uint64_t seq = ack.first; seq < ack.first + ack.count; ++seq) {
        auto record = (*log)->Get(seq);
        ASSERT_TRUE(record) << "cycle " << cycle << " seq " << seq << ": " << record.error();
        ASSERT_EQ(record->request_id, RequestId(cycle, ack.thread, ack.n))
            << "cycle " << cycle << " seq " << seq;
      }
    }
    ASSERT_TRUE((*log)->Close());
    last_size = size;
  }

  // After all the kills the whole log still verifies offline.
  auto log = Log::Open(options, key.signer());
  ASSERT_TRUE(log) << log.error();
  ASSERT_TRUE((*log)->CheckpointNow());
  std::stringstream exported;
  ASSERT_TRUE((*log)->Export({}, [&](std::string_view line) {
    exported << line;
    return OkStatus();
  }));
  auto summary = VerifyExport(exported, key.verifier());
  ASSERT_TRUE(summary) << summary.error();
  EXPECT_TRUE(summary->full);
  EXPECT_EQ(summary->records, (*log)->stats().tree_size);
  EXPECT_GE(summary->records, total_acked);
  ASSERT_TRUE((*log)->Close());
}

}  // namespace
}  // namespace signet::audit::testing
