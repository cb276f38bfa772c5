// signetd --dev: the embedded default. A SoftHSM token, keys, a policy for the invoking user and a
// configuration, all under one state directory, made on first start and reused afterwards.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <system_error>
#include <vector>

#include "appliance/daemon/daemon.h"
#include "hsm/hsm.h"

extern char** environ;

namespace signet::daemon {
namespace {

constexpr const char* kTokenLabel = "signet-dev";
constexpr const char* kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";
constexpr const char* kAuditPublicKey = "audit.pub.pem";

// Writes `data` to a new file `path` with `mode` (replacing any), fsync'd.
Status WriteNewFile(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) {
    return MakeError(ErrnoError(errno, "create " + path.string()));
  }
  if (::fchmod(fd.get(), mode) != 0) {
    return MakeError(ErrnoError(errno, "chmod " + path.string()));
  }
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return MakeError(ErrnoError(errno, "write " + path.string()));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    return MakeError(ErrnoError(errno, "fsync " + path.string()));
  }
  return fd.Close();
}

// 32 hex digits from OpenSSL's RNG, in a SecureBuffer.
Result<SecureBuffer> RandomPin() {
  std::uint8_t raw[16];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    return MakeError(OpenSslError("RAND_bytes"));
  }
  SIGNET_ASSIGN_OR_RETURN(SecureBuffer pin, SecureBuffer::Allocate(2 * sizeof(raw)));
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < sizeof(raw); ++i) {
    pin.bytes()[2 * i] = static_cast<std::uint8_t>(kHex[raw[i] >> 4]);
    pin.bytes()[2 * i + 1] = static_cast<std::uint8_t>(kHex[raw[i] & 0xf]);
  }
  OPENSSL_cleanse(raw, sizeof(raw));
  return pin;
}

// Runs softhsm2-util to initialize the token. Its stdout is discarded; stderr goes to ours.
// WARNING: softhsm2-util takes the PINs only in argv, so they are visible in /proc for the
// moment it runs (on this host, to this user). Acceptable for a development token only.
Status InitToken(const SecureBuffer& so_pin, const SecureBuffer& pin) {
  std::string so(so_pin.view());
  std::string user(pin.view());
  std::vector<std::string> args = {"softhsm2-util",
                                   "--init-token",
                                   "--free",
                                   "--label",
                                   kTokenLabel,
                                   "--so-pin",
                                   so,
                                   "--pin",
                                   user};
  std::vector<char*> argv;
  for (std::string& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, "softhsm2-util", &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  OPENSSL_cleanse(so.data(), so.size());
  OPENSSL_cleanse(user.data(), user.size());
  for (std::string& arg : args) {
    OPENSSL_cleanse(arg.data(), arg.size());
  }
  if (rc != 0) {
    return MakeError(ErrnoError(rc, "run softhsm2-util (install softhsm2)"));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return MakeError(ErrnoError(errno, "wait for softhsm2-util"));
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return MakeError(ErrorCode::kHsm,
                     "softhsm2-util --init-token failed (status " + std::to_string(status) + ")");
  }
  return OkStatus();
}

Result<std::string> InvokingUser() {
  std::vector<char> buf(16384);
  passwd entry{};
  passwd* found = nullptr;
  const int rc = ::getpwuid_r(::getuid(), &entry, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) {
    return std::string();
  }
  return std::string(found->pw_name);
}

// A TOML basic string.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

Status CreateDevState(const std::filesystem::path& dir) {
  std::error_code ec;
  const auto tokens = dir / "tokens";
  if (std::filesystem::exists(tokens, ec) && !std::filesystem::is_empty(tokens, ec)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     dir.string() + " holds a token but no signetd.toml: an earlier --dev start " +
                         "stopped half-way; remove " + dir.string() + " and start again");
  }
  std::filesystem::create_directories(tokens, ec);
  if (ec) {
    return MakeError(ErrnoError(ec.value(), "create " + tokens.string()));
  }
  const auto conf = dir / "softhsm2.conf";
  SIGNET_RETURN_IF_ERROR(WriteNewFile(conf,
                                      "directories.tokendir = " + tokens.string() +
                                          "\nobjectstore.backend = file\nlog.level = ERROR\n",
                                      0600));
  ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);

  SIGNET_ASSIGN_OR_RETURN(SecureBuffer so_pin, RandomPin());
  SIGNET_ASSIGN_OR_RETURN(SecureBuffer pin, RandomPin());
  SIGNET_RETURN_IF_ERROR(WriteNewFile(dir / "so-pin", so_pin.view(), 0600));
  SIGNET_RETURN_IF_ERROR(WriteNewFile(dir / "pin", pin.view(), 0600));
  SIGNET_RETURN_IF_ERROR(InitToken(so_pin, pin));

  {
    hsm::TokenConfig token_config;
    token_config.module = kSoftHsmModule;
    token_config.token_label = kTokenLabel;
    token_config.pin_file = dir / "pin";
    token_config.sessions = 1;
    SIGNET_ASSIGN_OR_RETURN(auto token, hsm::Token::Open(token_config));
    for (const char* label : {"default", "batch", "audit"}) {
      auto key = token->GenerateKey(label, hsm::KeyType::kEcdsaP256);
      if (!key) {
        return MakeError(std::move(key).error().WithContext(std::string("generate key ") + label));
      }
      if (std::string_view(label) == "audit") {
        SIGNET_RETURN_IF_ERROR(WriteNewFile(dir / kAuditPublicKey, key->public_key.pem, 0644));
      }
    }
  }

  SIGNET_ASSIGN_OR_RETURN(const std::string user, InvokingUser());
  const std::string principal = user.empty() ? "uid:" + std::to_string(::getuid()) : "user:" + user;
  SIGNET_RETURN_IF_ERROR(WriteNewFile(
      dir / "policy.toml",
      "# signetd --dev: who may sign with which key, and who administers. This file seeds the\n"
      "# policy store on the first start; later apply changes with\n"
      "#   signet admin policy apply policy.toml   (or: kill -HUP <signetd pid>)\n"
      "[[rule]]\n"
      "name = \"dev-user\"\n"
      "description = \"the user who started signetd --dev signs with every key\"\n"
      "keys = [\"default\", \"batch\"]\n"
      "principals = [" +
          Quote(principal) +
          "]\n"
          "\n"
          "# The admin socket's roles: admin (policy, keys), approver (approvals), auditor "
          "(audit).\n"
          "[roles]\n"
          "admin = [" +
          Quote(principal) +
          "]\n"
          "approver = [" +
          Quote(principal) +
          "]\n"
          "auditor = [" +
          Quote(principal) + "]\n",
      0600));

  const std::string config =
      "# signetd --dev: the embedded default. Edit and restart `signetd --dev --state-dir " +
      dir.string() +
      "`.\n"
      "state_dir = " +
      Quote(dir.string()) +
      "\n"
      "policy_file = \"policy.toml\"\n"
      "\n"
      "[[hsm]]\n"
      "name = \"dev\"\n"
      "module = " +
      Quote(kSoftHsmModule) +
      "\n"
      "token_label = " +
      Quote(kTokenLabel) +
      "\n"
      "pin_file = \"pin\"\n"
      "# SoftHSM blocks on its token files in every C_Sign: more sessions than cores keep the\n"
      "# cores busy (on 2 cores, 4 sessions sign about a third faster than 2).\n"
      "sessions = 4\n"
      "\n"
      "[[key]]\n"
      "name = \"default\"\n"
      "hsm = \"dev\"\n"
      "algorithm = \"ecdsa-p256\"\n"
      "format = \"raw\"\n"
      "\n"
      "# Merkle batch signing: one HSM signature per batch, a FILE.receipt per artifact.\n"
      "[[key]]\n"
      "name = \"batch\"\n"
      "hsm = \"dev\"\n"
      "algorithm = \"ecdsa-p256\"\n"
      "format = \"batch\"\n"
      "\n"
      "[[key]]\n"
      "name = \"audit\"\n"
      "hsm = \"dev\"\n"
      "algorithm = \"ecdsa-p256\"\n"
      "format = \"checkpoint\"\n"
      "\n"
      "[audit]\n"
      "dir = \"audit\"\n"
      "checkpoint_file = \"checkpoints\"\n"
      "key = \"audit\"\n"
      "\n"
      "[[listen]]\n"
      "unix = \"sign.sock\"\n"
      "mode = \"0660\"\n"
      "\n"
      "# The admin socket is admin/admin.sock (directory 0750) and the policy store is state/,\n"
      "# both under state_dir; [admin] socket = ..., group = ..., store_dir = ... change them.\n";
  // Written last: its presence means the state is complete.
  return WriteNewFile(dir / "signetd.toml", config, 0600);
}

// Writes the audit key's public half to DIR/audit.pub.pem, for `signet audit verify`.
Status ExportAuditKey(const std::filesystem::path& dir) {
  hsm::TokenConfig token_config;
  token_config.module = kSoftHsmModule;
  token_config.token_label = kTokenLabel;
  token_config.pin_file = dir / "pin";
  token_config.sessions = 1;
  SIGNET_ASSIGN_OR_RETURN(auto token, hsm::Token::Open(token_config));
  auto key = token->FindKey("audit");
  if (!key) {
    return MakeError(std::move(key).error().WithContext("find the audit key"));
  }
  return WriteNewFile(dir / kAuditPublicKey, key->public_key.pem, 0644);
}

}  // namespace

Result<DevState> PrepareDevState(const std::filesystem::path& dir) {
  std::error_code ec;
  DevState state;
  state.dir = std::filesystem::absolute(dir, ec);
  if (ec) {
    return MakeError(ErrnoError(ec.value(), "resolve " + dir.string()));
  }
  state.dir = state.dir.lexically_normal();
  if (state.dir.has_filename() == false) {
    state.dir = state.dir.parent_path();
  }
  std::filesystem::create_directories(state.dir, ec);
  if (ec) {
    return MakeError(ErrnoError(ec.value(), "create " + state.dir.string()));
  }
  if (::chmod(state.dir.c_str(), 0700) != 0) {
    return MakeError(ErrnoError(errno, "chmod 0700 " + state.dir.string()));
  }
  state.config = state.dir / "signetd.toml";
  const auto conf = state.dir / "softhsm2.conf";
  if (std::filesystem::exists(state.config, ec)) {
    ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);
    if (!std::filesystem::exists(state.dir / kAuditPublicKey, ec)) {
      SIGNET_RETURN_IF_ERROR(ExportAuditKey(state.dir));  // a state made by an older signetd
    }
    return state;
  }
  SIGNET_RETURN_IF_ERROR(CreateDevState(state.dir));
  state.created = true;
  return state;
}

}  // namespace signet::daemon
