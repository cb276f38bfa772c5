#include "tests/daemon/signetd_process.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "appliance/base/base.h"

extern char** environ;

namespace signet::daemon::testing {

using net::testing::Curl;
using net::testing::HttpResult;
using net::testing::RunCommand;
using net::testing::ShellQuote;
using nlohmann::json;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteFile(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

void ReplaceFile(const std::filesystem::path& path, std::string_view data) {
  const auto temp = path.string() + ".tmp";
  WriteFile(temp, data);
  std::filesystem::rename(temp, path);
}

std::string Sha256Hex(std::string_view data) {
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const std::uint8_t*>(data.data()), data.size(), digest);
  return HexEncode(digest);
}

bool VerifySha256Signature(const std::string& pem, std::string_view data, std::string_view sig) {
  using Bio = std::unique_ptr<BIO, FnDeleter<&BIO_free>>;
  using Pkey = std::unique_ptr<EVP_PKEY, FnDeleter<&EVP_PKEY_free>>;
  using MdCtx = std::unique_ptr<EVP_MD_CTX, FnDeleter<&EVP_MD_CTX_free>>;
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Pkey key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  MdCtx ctx(EVP_MD_CTX_new());
  if (!key || !ctx ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

// ---- ChildProcess -------------------------------------------------------------------------------

ChildProcess::ChildProcess(std::string binary, std::vector<std::string> args,
                           std::filesystem::path out, std::filesystem::path err,
                           const std::vector<std::string>& env)
    : out_(std::move(out)) {
  args.insert(args.begin(), binary);
  std::vector<char*> argv;
  for (std::string& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  // The test's environment less the names `env` sets, then `env`.
  std::set<std::string> overridden;
  for (const std::string& entry : env) {
    overridden.insert(entry.substr(0, entry.find('=')));
  }
  std::vector<std::string> entries;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    if (!overridden.contains(entry.substr(0, entry.find('=')))) {
      entries.push_back(entry);
    }
  }
  entries.insert(entries.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (std::string& entry : entries) {
    envp.push_back(entry.data());
  }
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (err.empty()) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
  }
  const int rc = ::posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    ADD_FAILURE() << "posix_spawn " << binary << ": " << std::strerror(rc);
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    (void)Wait(std::chrono::seconds(10));
  }
}

int ChildProcess::Wait(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() > end) {
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

bool ChildProcess::Running() {
  if (pid_ > 0) {
    (void)Wait(std::chrono::milliseconds(0));
  }
  return pid_ > 0;
}

bool ChildProcess::WaitForLog(std::string_view text, std::size_t occurrences,
                              std::chrono::seconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    const std::string text_now = log();
    std::size_t found = 0;
    for (std::size_t at = text_now.find(text); at != std::string::npos;
         at = text_now.find(text, at + 1)) {
      ++found;
    }
    if (found >= occurrences) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// ---- Requests -----------------------------------------------------------------------------------

json SignItem(const std::string& name, std::string_view content) {
  return json{
      {"name", name}, {"size", content.size()}, {"digests", {{"sha256", Sha256Hex(content)}}}};
}

json SignBody(json items) {
  return json{{"key", "default"},
              {"tool", {{"name", "signet-test"}, {"version", "0.1"}}},
              {"client_host", "test-host"},
              {"items", std::move(items)}};
}

// ---- SignetdFixture -----------------------------------------------------------------------------

namespace {

// Waits up to 30 s for `daemon` to answer GET /v1/health on `socket`; null (and a failure) if not.
std::unique_ptr<Signetd> WhenServing(std::unique_ptr<Signetd> daemon,
                                     const std::filesystem::path& socket) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < end) {
    if (!daemon->Running()) {
      ADD_FAILURE() << "signetd exited early:\n" << daemon->log();
      return nullptr;
    }
    if (std::filesystem::exists(socket) &&
        Curl("--unix-socket " + ShellQuote(socket.string()) + " http://x/v1/health").status ==
            200) {
      return daemon;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "signetd did not answer within 30 s:\n" << daemon->log();
  return nullptr;
}

}  // namespace

std::unique_ptr<Signetd> SignetdFixture::StartDev() {
  return WhenServing(
      std::make_unique<Signetd>(std::vector<std::string>{"--dev", "--state-dir", State().string()},
                                logs_.path() / ("signetd-" + std::to_string(starts_++) + ".log")),
      Socket());
}

std::unique_ptr<Signetd> SignetdFixture::StartConfig(const std::filesystem::path& config,
                                                     const std::vector<std::string>& env) {
  return WhenServing(std::make_unique<Signetd>(
                         std::vector<std::string>{"--config", config.string()},
                         logs_.path() / ("signetd-" + std::to_string(starts_++) + ".log"), env),
                     Socket());
}

bool SignetdFixture::MakeDevState() {
  auto daemon = StartDev();
  if (daemon == nullptr) {
    return false;
  }
  if (::kill(daemon->pid(), SIGTERM) != 0) {
    ADD_FAILURE() << "kill: " << std::strerror(errno);
    return false;
  }
  const int status = daemon->Wait(std::chrono::seconds(40));
  EXPECT_EQ(status, 0) << daemon->log();
  return status == 0;
}

std::string SignetdFixture::SoftHsmEnv() const {
  return "SOFTHSM2_CONF=" + (State() / "softhsm2.conf").string();
}

HttpResult SignetdFixture::Get(std::string_view path) const {
  return Curl("--unix-socket " + ShellQuote(Socket().string()) + " http://x" + std::string(path));
}

HttpResult SignetdFixture::PostSign(const json& body) const {
  const auto body_file = logs_.path() / ("body-" + std::to_string(posts_++) + ".json");
  WriteFile(body_file, body.dump());
  return Curl("-X POST -H 'Content-Type: application/json' --data-binary @" +
              ShellQuote(body_file.string()) + " --unix-socket " + ShellQuote(Socket().string()) +
              " http://x/v1/sign");
}

std::string SignetdFixture::DefaultPem() const {
  const HttpResult key = Get("/v1/keys/default");
  EXPECT_EQ(key.status, 200) << key.body;
  const json parsed = json::parse(key.body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("public_key_pem")) {
    ADD_FAILURE() << "no public_key_pem in " << key.body;
    return "";
  }
  return parsed["public_key_pem"].get<std::string>();
}

void SignetdFixture::ExpectOpensslVerifies(const std::string& name, const std::string& content,
                                           std::string_view signature, const std::string& pem) {
  const auto file = logs_.path() / name;
  WriteFile(file, content);
  const auto sig = file.string() + ".sig";
  WriteFile(sig, signature);
  const auto pem_file = logs_.path() / "default.pem";
  WriteFile(pem_file, pem);
  const auto run =
      RunCommand("openssl dgst -sha256 -verify " + ShellQuote(pem_file.string()) + " -signature " +
                 ShellQuote(sig) + " " + ShellQuote(file.string()) + " 2>&1");
  EXPECT_EQ(run.exit_code, 0) << name << ": " << run.out;
  EXPECT_NE(run.out.find("Verified OK"), std::string::npos) << name << ": " << run.out;
}

HttpResult SignetdFixture::SignAndVerify(const std::string& name, const std::string& content,
                                         const std::string& pem) {
  const json body = {{"key", "default"},
                     {"tool", {{"name", "signet"}, {"version", "0.1"}}},
                     {"items", json::array({{{"name", name},
                                             {"size", content.size()},
                                             {"digests", {{"sha256", Sha256Hex(content)}}}}})}};
  HttpResult result = PostSign(body);
  if (result.status != 200) {
    return result;
  }
  const json answer = json::parse(result.body);
  auto signature = Base64Decode(answer["items"][0]["signature"].get<std::string>());
  EXPECT_TRUE(signature) << result.body;
  if (!signature) {
    return result;
  }
  ExpectOpensslVerifies(name, content, std::string(signature->begin(), signature->end()), pem);
  return result;
}

json SignetdFixture::WaitForCheckpoint(std::chrono::milliseconds quiet) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::uint64_t last_size = UINT64_MAX;
  auto stable_since = std::chrono::steady_clock::now();
  std::string last_body;
  while (std::chrono::steady_clock::now() < end) {
    const HttpResult health = Get("/v1/health");
    last_body = health.body;
    const json parsed = json::parse(health.body, nullptr, /*allow_exceptions=*/false);
    if (health.status == 200 && parsed.is_object() && parsed.contains("audit")) {
      const auto tree = parsed["audit"].value("tree_size", std::uint64_t{0});
      const auto checkpoint = parsed["audit"].value("checkpoint_size", std::uint64_t{0});
      const auto now = std::chrono::steady_clock::now();
      if (tree != last_size) {
        last_size = tree;
        stable_since = now;
      }
      if (checkpoint >= tree && now - stable_since >= quiet) {
        return parsed;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "the audit checkpoint did not catch up within 30 s; last health: " << last_body;
  return json();
}

std::vector<json> SignetdFixture::ExportAudit() {
  const auto out = logs_.path() / ("export-" + std::to_string(exports_++) + ".jsonl");
  const auto run = RunCommand(std::string(SIGNET_BINARY) + " audit export -q --log " +
                              ShellQuote((State() / "audit").string()) + " -o " +
                              ShellQuote(out.string()) + " 2>&1");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  std::vector<json> records;
  std::istringstream lines(ReadFile(out));
  bool ended = false;
  for (std::string line; std::getline(lines, line);) {
    const json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_object()) {
      ADD_FAILURE() << "export line is not JSON: " << line;
      continue;
    }
    if (parsed.value("type", "") == "end") {
      ended = true;
    }
    if (parsed.value("type", "") != "record") {
      continue;
    }
    records.push_back(json::parse(parsed.value("record", ""), nullptr, false));
  }
  EXPECT_TRUE(ended) << "export without its end line: " << out;
  return records;
}

}  // namespace signet::daemon::testing
