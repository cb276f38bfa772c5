// appliance/daemon/daemon.h: signetd's configuration (TOML), its start-up and shutdown, the --dev
// embedded default, hardening and signals. It may use: service, admin.
//
// Caveats:
// - The configuration is strict: an unknown table or setting, a value of the wrong type or out of
//   range is an error naming the file, line and setting ("signetd.toml:12:1: audit.map_size: ...").
//   A typo never silently falls back to a default.
// - Sizes are integers (bytes) or strings with a binary unit ("64MiB", "16 GiB"); durations are
//   integers of milliseconds in settings ending in `_ms`.
// - Secrets are never in the file: HSM PINs are named by `pin_file` (read with ReadSecretFile,
//   which refuses files others can read).
// - Relative paths are resolved against the directory of the configuration file.
// - Daemon::Start starts threads (HSM workers, the audit writer, I/O threads). Block the signals
//   the process waits for (BlockDaemonSignals) before the first Start, so only sigwait sees them.
// - Lifetimes inside a Daemon: Stop stops the server (requests in flight finish and are recorded),
//   then the service, then closes the audit log (final checkpoint), then the tokens.
// - --dev (PrepareDevState) sets SOFTHSM2_CONF for this process: call it before any Token opens.
#ifndef SIGNET_APPLIANCE_DAEMON_DAEMON_H_
#define SIGNET_APPLIANCE_DAEMON_DAEMON_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"

namespace signet::daemon {

// [[hsm]]: one PKCS#11 token.
struct HsmConfig {
  std::string name;
  std::filesystem::path module = "/usr/lib/softhsm/libsofthsm2.so";
  std::string token_label;
  std::filesystem::path pin_file;
  unsigned sessions = 2;
  bool verify_before_release = true;  // ECDSA and Ed25519 (RSA always)
};

// [[key]]: a key in an HSM, bound to one format (one key, one format).
struct KeyConfig {
  std::string name;             // what clients ask for
  std::string hsm;              // an [[hsm]] name
  std::string label;            // CKA_LABEL in the token (default: name)
  std::string algorithm;        // "ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096", "ed25519"
  std::string format;           // "raw", "batch" (Merkle batch receipts), "checkpoint" (audit)
  std::string hash = "sha256";  // digest the signature covers: sha256, sha384, sha512
  std::string rsa_padding = "pkcs1";  // "pkcs1" or "pss" (RSA keys only)
};

// [audit]
struct AuditConfig {
  std::filesystem::path dir;
  std::filesystem::path checkpoint_file;
  std::string origin;  // default: "<host_id>/audit"
  std::string key;     // a [[key]] of format "checkpoint"
  std::size_t map_size = std::size_t{64} << 20;
  std::size_t max_map_size = std::size_t{16} << 30;
  std::uint64_t checkpoint_every = 10000;
  std::chrono::milliseconds checkpoint_interval{1000};
};

// [[listen]]: a Unix socket (`unix`) or TLS on TCP (`tls` = "HOST:PORT", with cert, key, ca).
struct ListenConfig {
  std::filesystem::path unix_path;
  std::uint32_t mode = 0660;
  std::string group;  // owner group of the socket (default: the daemon's)
  std::string tls_address;
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  std::filesystem::path ca_file;  // client certificates must chain to it
};

// [limits]
struct LimitsConfig {
  std::size_t max_body_bytes = std::size_t{16} << 20;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_items_per_request = 10000;
  std::size_t max_batch_leaves = 65536;  // batch keys: leaves per signed batch
  // Batch keys: requests arriving within this window are signed together (0: off).
  std::chrono::milliseconds batch_window{0};
  // Requests held for approval expire this long after they were held.
  std::chrono::milliseconds approval_ttl{std::chrono::hours(24)};
  std::size_t max_connections = 256;
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds request_timeout{300000};
};

// [admin]: the admin socket and the state store (policy versions, key definitions).
struct AdminConfig {
  // Default: <state_dir>/admin/admin.sock. Its directory is created (or set) mode 0750 and the
  // socket is mode 0660, both owned by `group` when given: group members reach the socket, and
  // the policy's [roles] decide what they may do.
  std::filesystem::path socket;
  std::string group;
  std::filesystem::path store_dir;  // default: <state_dir>/state
  unsigned workers = 2;             // threads that run admin requests
  unsigned max_exports = 2;         // audit exports streaming at once (each on its own thread)
};

struct Config {
  std::filesystem::path source;  // the file it was read from
  std::filesystem::path state_dir = "/var/lib/signet";
  std::string host_id;  // default: the host name
  std::vector<HsmConfig> hsms;
  std::vector<KeyConfig> keys;
  AuditConfig audit;
  std::vector<ListenConfig> listeners;
  LimitsConfig limits;
  AdminConfig admin;
  // Seeds the policy store on the first start; later the newest stored version is in force
  // (apply new versions through the admin API, or kill -HUP to apply this file again).
  std::filesystem::path policy_file;
};

// Parses a configuration. `source` names it in errors and anchors relative paths. Errors:
// kInvalidArgument ("FILE:LINE:COL: setting: what is wrong"), with cross-checks: every key names a
// known HSM, names and labels are unique, the audit key exists and has format "checkpoint", at
// least one listener.
[[nodiscard]] Result<Config> ParseConfig(std::string_view toml_text,
                                         const std::filesystem::path& source);
// Reads (at most 1 MiB) and parses `path`. Errors: those of ParseConfig, kNotFound, kIo.
[[nodiscard]] Result<Config> LoadConfig(const std::filesystem::path& path);

// "64MiB", "16 GiB", "4096" → bytes. Errors: kInvalidArgument.
[[nodiscard]] Result<std::size_t> ParseSize(std::string_view text);

// ---- Start-up -----------------------------------------------------------------------------------

// A running signetd: the tokens, keys, audit log, policy, sign service and listeners of a Config.
// Start and Stop are called from one thread (main); ReloadPolicy too.
class Daemon {
 public:
  // Opens every [[hsm]], finds every [[key]] (refusing a missing or refused key by name), opens the
  // audit log with the audit key, reads the policy file, creates the sign service and binds the
  // listeners. Writes one line per piece through `log`. Errors: whatever piece failed, named
  // ("key release: ...", "policy: FILE:LINE:COL: ...", "listen unix:PATH: ...").
  [[nodiscard]] static Result<std::unique_ptr<Daemon>> Start(
      const Config& config, std::function<void(std::string_view line)> log);
  // Stop(Deadline::In(30s)), ignoring its error.
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Re-reads the policy file and applies it as a new policy version (stored and recorded as the
  // admin API's PUT /v1/policy would). On success the service uses it for requests that start
  // from now on and its version is returned; on failure (errors with line numbers) the previous
  // policy stays.
  [[nodiscard]] Result<std::string> ReloadPolicy();

  // Stops accepting, lets requests in flight finish until `deadline` (they are recorded), closes
  // the audit log (final checkpoint) and the tokens. Idempotent. Errors: the audit log's Close.
  [[nodiscard]] Status Stop(Deadline deadline);

  struct State;

 private:
  explicit Daemon(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// What --dev created or found.
struct DevState {
  std::filesystem::path dir;     // absolute
  std::filesystem::path config;  // DIR/signetd.toml
  bool created = false;          // true on first start
};

// The --dev embedded default under `dir` (made absolute, created 0700). On first start: a SoftHSM
// configuration and token "signet-dev" (random PINs in DIR/pin and DIR/so-pin, 0600), keys
// "default" (raw), "batch" (Merkle batch receipts) and "audit" (checkpoint), a policy letting the
// invoking user sign with "default" and "batch", the audit key's public half in DIR/audit.pub.pem
// (0644, for `signet audit verify`), and DIR/signetd.toml describing it all. Later starts reuse
// DIR/signetd.toml (and write DIR/audit.pub.pem if a state made by an older signetd lacks it).
// Either way sets SOFTHSM2_CONF to DIR/softhsm2.conf for this process. Errors: kIo, kHsm,
// kInvalidArgument (a half-made state dir, naming what to remove).
[[nodiscard]] Result<DevState> PrepareDevState(const std::filesystem::path& dir);

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in threads it starts later), and
// ignores SIGPIPE. Errors: kInternal.
[[nodiscard]] Status BlockDaemonSignals();

// Makes the process undumpable (PR_SET_DUMPABLE 0), sets RLIMIT_CORE to 0 and the umask to 077.
// Errors: kInternal naming the call that failed.
[[nodiscard]] Status Harden();

// signetd's main: `--config FILE` or `--dev [--state-dir DIR]`. Returns the exit status.
int DaemonMain(int argc, char** argv);

}  // namespace signet::daemon

#endif  // SIGNET_APPLIANCE_DAEMON_DAEMON_H_
