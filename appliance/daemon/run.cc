// signetd's main: arguments, hardening, signals, start, reload on SIGHUP, drain on SIGTERM/SIGINT.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include "appliance/daemon/daemon.h"

namespace signet::daemon {
namespace {

constexpr auto kDrainTimeout = std::chrono::seconds(30);

void Say(std::string_view line) {
  std::fprintf(stderr, "signetd: %.*s\n", static_cast<int>(line.size()), line.data());
  std::fflush(stderr);
}

constexpr const char* kUsage =
    "usage: signetd --config FILE\n"
    "       signetd --dev [--state-dir DIR]   (default DIR: ./.signet)\n";

struct Args {
  std::filesystem::path config;
  bool dev = false;
  std::filesystem::path state_dir = ".signet";
  bool help = false;
};

Result<Args> ParseArgs(int argc, char** argv) {
  Args args;
  bool state_dir_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string_view name) -> Result<std::string> {
      if (i + 1 >= argc) {
        return MakeError(ErrorCode::kInvalidArgument, std::string(name) + " needs a value");
      }
      return std::string(argv[++i]);
    };
    if (arg == "--config") {
      SIGNET_ASSIGN_OR_RETURN(args.config, value(arg));
    } else if (arg.starts_with("--config=")) {
      args.config = std::string(arg.substr(9));
    } else if (arg == "--dev") {
      args.dev = true;
    } else if (arg == "--state-dir") {
      SIGNET_ASSIGN_OR_RETURN(args.state_dir, value(arg));
      state_dir_given = true;
    } else if (arg.starts_with("--state-dir=")) {
      args.state_dir = std::string(arg.substr(12));
      state_dir_given = true;
    } else if (arg == "--help" || arg == "-h") {
      args.help = true;
    } else {
      return MakeError(ErrorCode::kInvalidArgument,
                       "unknown argument \"" + std::string(arg) + "\"");
    }
  }
  if (args.help) {
    return args;
  }
  if (args.dev == !args.config.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "give exactly one of --config FILE or --dev");
  }
  if (state_dir_given && !args.dev) {
    return MakeError(ErrorCode::kInvalidArgument, "--state-dir goes with --dev");
  }
  return args;
}

void PrintDevHelp(const DevState& dev) {
  const std::string dir = dev.dir.string();
  const std::string text =
      "signetd: --dev state in " + dir + (dev.created ? " (created now)" : " (reused)") + "\n" +
      "  configuration  " + dir + "/signetd.toml\n" + "  policy         " + dir +
      "/policy.toml seeds the policy store " + dir + "/state\n" +
      "  token          SoftHSM \"signet-dev\" in " + dir + "/tokens (SOFTHSM2_CONF=" + dir +
      "/softhsm2.conf), PINs in " + dir + "/pin and " + dir + "/so-pin\n" + "  audit log      " +
      dir + "/audit, checkpoints in " + dir + "/checkpoints, public key " + dir +
      "/audit.pub.pem\n" + "  sign socket    " + dir + "/sign.sock\n" + "  admin socket   " + dir +
      "/admin/admin.sock (roles in the policy's [roles])\n" + "try:\n" + "  curl --unix-socket " +
      dir + "/sign.sock http://localhost/v1/keys\n" + "  signet sign --socket " + dir +
      "/sign.sock --key default FILE\n" + "  signet sign --socket " + dir +
      "/sign.sock --key batch FILE...   (receipts)\n" + "  signet admin policy show --socket " +
      dir + "/admin/admin.sock\n" + "  curl --unix-socket " + dir +
      "/admin/admin.sock http://localhost/metrics\n" + "  signet audit export --log " + dir +
      "/audit -o audit.jsonl && signet audit verify " + "audit.jsonl --key-file " + dir +
      "/audit.pub.pem\n";
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
}

int Run(int argc, char** argv) {
  if (auto blocked = BlockDaemonSignals(); !blocked) {
    Say(blocked.error().ToString());
    return 1;
  }
  if (auto hardened = Harden(); !hardened) {
    Say(hardened.error().ToString());
    return 1;
  }
  auto args = ParseArgs(argc, argv);
  if (!args) {
    Say(args.error().message());
    std::fputs(kUsage, stderr);
    return 1;
  }
  if (args->help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::filesystem::path config_path = args->config;
  if (args->dev) {
    auto dev = PrepareDevState(args->state_dir);
    if (!dev) {
      Say("--dev: " + dev.error().ToString());
      return 1;
    }
    config_path = dev->config;
    PrintDevHelp(*dev);
  }
  auto config = LoadConfig(config_path);
  if (!config) {
    Say(config.error().message());
    return 1;
  }
  auto daemon = Daemon::Start(*config, Say);
  if (!daemon) {
    Say("refusing to start: " + daemon.error().ToString());
    return 1;
  }
  Say("ready (pid " + std::to_string(::getpid()) + ")");

  sigset_t wanted;
  sigemptyset(&wanted);
  sigaddset(&wanted, SIGTERM);
  sigaddset(&wanted, SIGINT);
  sigaddset(&wanted, SIGHUP);
  for (;;) {
    int sig = 0;
    if (const int rc = ::sigwait(&wanted, &sig); rc != 0) {
      Say(ErrnoError(rc, "sigwait").ToString());
      break;
    }
    if (sig == SIGHUP) {
      auto version = (*daemon)->ReloadPolicy();
      if (version) {
        Say("policy reloaded (version " + *version + ")");
      } else {
        Say("policy not reloaded, kept the previous policy: " + version.error().message());
      }
      continue;
    }
    Say(std::string(sig == SIGTERM ? "SIGTERM" : "SIGINT") +
        ": draining (requests in flight finish, up to 30 s)");
    break;
  }
  auto stopped = (*daemon)->Stop(Deadline::In(kDrainTimeout));
  daemon->reset();
  if (!stopped) {
    Say("stopped with an error: " + stopped.error().ToString());
    return 1;
  }
  Say("stopped");
  return 0;
}

}  // namespace

Status BlockDaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  if (const int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    return MakeError(ErrorCode::kInternal, "pthread_sigmask: " + ErrnoError(rc, "").message());
  }
  // Writes to a closed socket return EPIPE instead of killing the daemon.
  if (::signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    return MakeError(ErrorCode::kInternal, "ignore SIGPIPE");
  }
  return OkStatus();
}

Status Harden() {
  // Undumpable: no core files and no ptrace by other processes of the same user (PIN, sessions).
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return MakeError(ErrorCode::kInternal, "prctl(PR_SET_DUMPABLE, 0) failed");
  }
  const rlimit no_core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) {
    return MakeError(ErrorCode::kInternal, "setrlimit(RLIMIT_CORE, 0) failed");
  }
  // Everything signetd creates is private; the sockets get their configured mode explicitly.
  ::umask(077);
  return OkStatus();
}

int DaemonMain(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    Say(std::string("internal error: ") + e.what());
    return 1;
  }
}

}  // namespace signet::daemon
