// Helpers for daemon_test: the real signetd (and signet) binaries as child processes, a fixture
// that owns a state dir, signs through curl and reads the audit log with `signet audit export`.
//
// Caveats:
// - Children inherit the test's environment plus the "NAME=VALUE" overrides they are given; the
//   test process's own environment is left alone.
// - A ChildProcess that is still running when destroyed gets SIGKILL.
// - ExportAudit exports only records covered by a signed checkpoint (signetd signs one about a
//   second after records arrive): call WaitForCheckpoint first while signetd runs.
#ifndef SIGNET_TESTS_DAEMON_SIGNETD_PROCESS_H_
#define SIGNET_TESTS_DAEMON_SIGNETD_PROCESS_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tests/net/test_util.h"

namespace signet::daemon::testing {

std::string ReadFile(const std::filesystem::path& path);
void WriteFile(const std::filesystem::path& path, std::string_view data);
// Writes `data` to a temporary file next to `path`, then renames it over `path`.
void ReplaceFile(const std::filesystem::path& path, std::string_view data);
std::string Sha256Hex(std::string_view data);

// Checks a DER ECDSA/RSA signature over SHA-256(`data`) with the PEM public key, in process
// (OpenSSL's EVP_DigestVerify). For many files; single checks use the openssl command.
bool VerifySha256Signature(const std::string& pem, std::string_view data, std::string_view sig);

// A child process whose stdout goes to `out` and stderr to `err` (to `out` when `err` is empty).
class ChildProcess {
 public:
  ChildProcess(std::string binary, std::vector<std::string> args, std::filesystem::path out,
               std::filesystem::path err = {}, const std::vector<std::string>& env = {});
  virtual ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // What it wrote to `out` so far.
  std::string log() const { return ReadFile(out_); }

  // The exit status once it exited within `timeout` (128 + signal when killed); -1 if it is still
  // running or was never started.
  int Wait(std::chrono::milliseconds timeout);
  bool Running();
  // Waits until `out` holds `text` `occurrences` times (true) or `timeout` passes.
  bool WaitForLog(std::string_view text, std::size_t occurrences = 1,
                  std::chrono::seconds timeout = std::chrono::seconds(30));

 private:
  std::filesystem::path out_;
  pid_t pid_ = -1;
};

// signetd (SIGNETD_BINARY) with `args`; stdout and stderr go to `log`.
class Signetd : public ChildProcess {
 public:
  Signetd(std::vector<std::string> args, std::filesystem::path log,
          const std::vector<std::string>& env = {})
      : ChildProcess(SIGNETD_BINARY, std::move(args), std::move(log), {}, env) {}
};

// One item of a sign request: {name, size, digests: {sha256}} for `content`.
nlohmann::json SignItem(const std::string& name, std::string_view content);
// A sign request for key "default" from tool "signet-test".
nlohmann::json SignBody(nlohmann::json items);

// A fresh state dir (State()) and a log dir (logs_) per test, signetd started on it.
class SignetdFixture : public ::testing::Test {
 protected:
  std::filesystem::path State() const { return state_.path() / "s"; }
  std::filesystem::path Socket() const { return State() / "sign.sock"; }

  // `signetd --dev --state-dir State()`, once its socket answers /v1/health (null on failure,
  // with the reason added as a test failure).
  std::unique_ptr<Signetd> StartDev();
  // `signetd --config CONFIG` with `env` overrides, once Socket() answers.
  std::unique_ptr<Signetd> StartConfig(const std::filesystem::path& config,
                                       const std::vector<std::string>& env);
  // Makes the --dev state (start, SIGTERM, exit 0) so that a --config copy of it can be started.
  // Returns false (with a test failure) if that did not work.
  bool MakeDevState();
  // SOFTHSM2_CONF=State()/softhsm2.conf, for --config starts on the dev state.
  std::string SoftHsmEnv() const;

  net::testing::HttpResult Get(std::string_view path) const;
  // POST /v1/sign of `body` as JSON on Socket().
  net::testing::HttpResult PostSign(const nlohmann::json& body) const;
  // The default key's public key (PEM) from GET /v1/keys/default.
  std::string DefaultPem() const;

  // Signs `content` (written to a file) with key "default"; returns the HTTP result and, on 200,
  // checks the signature with `openssl dgst -sha256 -verify` against `pem`.
  net::testing::HttpResult SignAndVerify(const std::string& name, const std::string& content,
                                         const std::string& pem);
  // Checks that `signature` (raw bytes) over `content` verifies with the openssl command.
  void ExpectOpensslVerifies(const std::string& name, const std::string& content,
                             std::string_view signature, const std::string& pem);

  // GET /v1/health until its audit checkpoint covers the whole tree and the tree stops growing
  // for `quiet`; returns the last health answer (empty on timeout, with a test failure).
  nlohmann::json WaitForCheckpoint(std::chrono::milliseconds quiet = std::chrono::milliseconds(0));
  // `signet audit export --log State()/audit`: the records (each line's "record" parsed), in
  // order. Adds a test failure and returns what it has when the export fails.
  std::vector<nlohmann::json> ExportAudit();

  net::testing::TempDir state_;
  net::testing::TempDir logs_;
  int starts_ = 0;
  int exports_ = 0;
  mutable int posts_ = 0;
};

}  // namespace signet::daemon::testing

#endif  // SIGNET_TESTS_DAEMON_SIGNETD_PROCESS_H_
