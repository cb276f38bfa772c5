// signetd's start-up and shutdown: tokens, keys, audit log, policy, sign service, listeners.
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <map>
#include <mutex>
#include <utility>

#include "admin/admin.h"
#include "appliance/daemon/daemon.h"
#include "appliance/service/service.h"

namespace signet::daemon {
namespace {

constexpr auto kDefaultDrain = std::chrono::seconds(30);

Result<std::string> ReadPolicyText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return MakeError(ErrnoError(err, "read policy " + path.string()));
  }
  std::string text(policy::kMaxPolicyBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return MakeError(ErrorCode::kIo, "read policy " + path.string());
  }
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

// The admin socket's directory: created, or set, mode 0750 (group `gid` when given), so that
// only the owner and the group can reach the socket at all.
Status PrepareAdminDir(const std::filesystem::path& dir, std::optional<std::uint32_t> gid) {
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return MakeError(ErrnoError(errno, "create " + dir.string()));
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    return MakeError(ErrnoError(errno, "stat " + dir.string()));
  }
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, dir.string() + " is not a directory");
  }
  if (st.st_uid != ::geteuid()) {
    return MakeError(ErrorCode::kPermissionDenied,
                     dir.string() + " belongs to uid " + std::to_string(st.st_uid) +
                         ", not to signetd's; remove it or give it to signetd's user");
  }
  if (gid && ::chown(dir.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
    return MakeError(ErrnoError(errno, "chgrp " + dir.string()));
  }
  if (::chmod(dir.c_str(), 0750) != 0) {
    return MakeError(ErrnoError(errno, "chmod 0750 " + dir.string()));
  }
  return OkStatus();
}

// "HOST:PORT" or "[V6]:PORT".
Result<net::TlsListenerOptions> ParseTlsAddress(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "\"" + text + "\" is not HOST:PORT");
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const char* begin = text.data() + colon + 1;
  const char* end = text.data() + text.size();
  if (std::from_chars(begin, end, port).ptr != end || begin == end || port > 65535) {
    return MakeError(ErrorCode::kInvalidArgument, "\"" + text + "\" has no valid port");
  }
  net::TlsListenerOptions options;
  options.address = host;
  options.port = static_cast<std::uint16_t>(port);
  return options;
}

Result<std::uint32_t> GroupId(const std::string& name) {
  std::vector<char> buf(16384);
  group entry{};
  group* found = nullptr;
  const int rc = ::getgrnam_r(name.c_str(), &entry, buf.data(), buf.size(), &found);
  if (rc != 0) {
    return MakeError(ErrnoError(rc, "look up group \"" + name + "\""));
  }
  if (found == nullptr) {
    return MakeError(ErrorCode::kNotFound, "no group named \"" + name + "\"");
  }
  return static_cast<std::uint32_t>(found->gr_gid);
}

}  // namespace

struct Daemon::State {
  Config config;
  std::function<void(std::string_view)> log;
  // Destroyed in reverse: servers, admin, service, store, log, signer, tokens.
  std::map<std::string, std::unique_ptr<hsm::Token>> tokens;
  std::shared_ptr<service::HsmNoteSigner> note_signer;
  std::unique_ptr<audit::Log> audit_log;
  std::unique_ptr<admin::StateStore> store;
  std::unique_ptr<service::SignService> service;
  std::unique_ptr<admin::AdminService> admin;
  std::unique_ptr<net::Server> server;
  std::unique_ptr<net::Server> admin_server;
  bool started = false;  // the startup record was written
  bool stopped = false;

  void Say(const std::string& line) const {
    if (log) {
      log(line);
    }
  }

  // Appends one record and waits briefly; a failure is logged (the log reports it in health).
  void Record(audit::RecordKind kind, std::string detail, std::string policy_version) {
    audit::Record record;
    record.kind = kind;
    record.detail = std::move(detail);
    record.policy_version = std::move(policy_version);
    record.requester.uid = ::getuid();
    auto appended = audit_log->Append({std::move(record)}, Deadline::In(std::chrono::seconds(10)));
    if (!appended) {
      Say("audit: could not record " + std::string(audit::RecordKindName(kind)) + ": " +
          appended.error().ToString());
    }
  }
};

Daemon::Daemon(std::unique_ptr<State> state) : state_(std::move(state)) {}

Daemon::~Daemon() { (void)Stop(Deadline::In(kDefaultDrain)); }

Result<std::unique_ptr<Daemon>> Daemon::Start(const Config& config,
                                              std::function<void(std::string_view line)> log) {
  auto state = std::make_unique<State>();
  state->config = config;
  state->log = std::move(log);
  // Whatever fails below, `daemon` tears down what was built, in order.
  std::unique_ptr<Daemon> daemon(new Daemon(std::move(state)));
  State& s = *daemon->state_;

  for (const HsmConfig& hsm_config : config.hsms) {
    hsm::TokenConfig token_config;
    token_config.module = hsm_config.module;
    token_config.token_label = hsm_config.token_label;
    token_config.pin_file = hsm_config.pin_file;
    token_config.sessions = hsm_config.sessions;
    token_config.verify =
        hsm_config.verify_before_release ? hsm::VerifyPolicy::kAll : hsm::VerifyPolicy::kNone;
    auto token = hsm::Token::Open(token_config);
    if (!token) {
      return MakeError(std::move(token).error().WithContext("hsm " + hsm_config.name));
    }
    s.tokens.emplace(hsm_config.name, std::move(*token));
    s.Say("hsm " + hsm_config.name + ": token \"" + hsm_config.token_label + "\" open (" +
          std::to_string(hsm_config.sessions) + " sessions, " + hsm_config.module.string() + ")");
  }

  std::vector<service::ServiceKey> service_keys;
  std::optional<std::pair<hsm::Token*, hsm::KeyHandle>> audit_key;
  for (const KeyConfig& key_config : config.keys) {
    const std::string context = "key " + key_config.name;
    hsm::Token* token = s.tokens.at(key_config.hsm).get();
    const std::string label = key_config.label.empty() ? key_config.name : key_config.label;
    auto key = token->FindKey(label);
    if (!key) {
      return MakeError(std::move(key).error().WithContext(context + " (label \"" + label +
                                                          "\" in hsm " + key_config.hsm + ")"));
    }
    SIGNET_ASSIGN_OR_RETURN(const hsm::KeyType expected, hsm::ParseKeyType(key_config.algorithm));
    if (key->type != expected) {
      return MakeError(ErrorCode::kInvalidArgument, context + ": the token's key is " +
                                                        std::string(hsm::KeyTypeName(key->type)) +
                                                        ", the configuration says " +
                                                        key_config.algorithm);
    }
    s.Say(context + ": " + key_config.algorithm + ", format " + key_config.format +
          ", fingerprint " + key->public_key.fingerprint);
    if (key_config.name == config.audit.key) {
      audit_key.emplace(token, std::move(*key));
      continue;
    }
    auto spec = service::MakeSignSpec(key->type, key_config.hash, key_config.rsa_padding);
    if (!spec) {
      return MakeError(std::move(spec).error().WithContext(context));
    }
    service_keys.push_back(service::ServiceKey{.name = key_config.name,
                                               .token = token,
                                               .key = std::move(*key),
                                               .spec = *spec,
                                               .format = key_config.format});
  }
  if (!audit_key) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "audit: key \"" + config.audit.key + "\" is not a [[key]]");
  }

  auto verifier =
      audit::MakeNoteVerifier(config.audit.origin, audit_key->second.public_key.spki_der);
  if (!verifier) {
    return MakeError(std::move(verifier).error().WithContext("audit key " + config.audit.key));
  }
  s.note_signer = std::make_shared<service::HsmNoteSigner>(
      *audit_key->first, std::move(audit_key->second), std::move(*verifier));

  audit::LogOptions log_options;
  log_options.dir = config.audit.dir;
  log_options.checkpoint_file = config.audit.checkpoint_file;
  log_options.origin = config.audit.origin;
  log_options.host_id = config.host_id;
  log_options.map_size = config.audit.map_size;
  log_options.max_map_size = config.audit.max_map_size;
  log_options.checkpoint_every = config.audit.checkpoint_every;
  log_options.checkpoint_interval = config.audit.checkpoint_interval;
  auto audit_log = audit::Log::Open(log_options, s.note_signer);
  if (!audit_log) {
    return MakeError(
        std::move(audit_log).error().WithContext("audit log " + config.audit.dir.string()));
  }
  s.audit_log = std::move(*audit_log);
  s.Say("audit log " + config.audit.dir.string() + ": " +
        std::to_string(s.audit_log->stats().tree_size) + " records, checkpoints to " +
        config.audit.checkpoint_file.string() + " (origin " + config.audit.origin + ")");

  auto store = admin::StateStore::Open(config.admin.store_dir);
  if (!store) {
    return MakeError(std::move(store).error().WithContext("state store"));
  }
  s.store = std::move(*store);
  auto seed_text = ReadPolicyText(config.policy_file);
  if (!seed_text) {
    return MakeError(std::move(seed_text).error().WithContext("policy"));
  }
  auto policy =
      admin::LoadOrSeedPolicy(*s.store, *s.audit_log, *seed_text, config.policy_file.string());
  if (!policy) {
    return MakeError(std::move(policy).error().WithContext("policy"));
  }
  if (auto seed = policy::Policy::Parse(*seed_text, config.policy_file.string());
      !seed || (*seed)->version() != (*policy)->version()) {
    s.Say("note: " + config.policy_file.string() +
          " differs from the policy in force (the file only seeds the store on the first "
          "start); apply it with `signet admin policy apply " +
          config.policy_file.string() + "` or kill -HUP");
  }
  if (auto latest = s.store->LatestPolicy(); latest && *latest) {
    s.Say("policy version " + std::to_string((*latest)->number) + " (" + (*policy)->version() +
          ", " + std::to_string((*policy)->rules().size()) + " rules) from the state store " +
          config.admin.store_dir.string() + "; applied by " + (*latest)->applied_by + " from " +
          (*latest)->source);
  }
  const std::string policy_version = (*policy)->version();

  auto service = service::SignService::Create(
      service::ServiceOptions{.host_id = config.host_id,
                              .max_items_per_request = config.limits.max_items_per_request,
                              .max_batch_leaves = config.limits.max_batch_leaves,
                              .approval_ttl = config.limits.approval_ttl,
                              .batch_window = config.limits.batch_window},
      std::move(service_keys), *policy, *s.audit_log, s.store.get());
  if (!service) {
    return MakeError(std::move(service).error().WithContext("sign service"));
  }
  s.service = std::move(*service);

  std::map<std::string, hsm::Token*> token_map;
  for (const auto& [name, token] : s.tokens) {
    token_map.emplace(name, token.get());
  }
  auto admin_service =
      admin::AdminService::Create(admin::AdminOptions{.host_id = config.host_id,
                                                      .workers = config.admin.workers,
                                                      .max_exports = config.admin.max_exports},
                                  *s.store, *s.service, *s.audit_log, std::move(token_map));
  if (!admin_service) {
    return MakeError(std::move(admin_service).error().WithContext("admin service"));
  }
  s.admin = std::move(*admin_service);

  net::ServerOptions server_options;
  server_options.limits.max_body_bytes = config.limits.max_body_bytes;
  server_options.limits.max_header_bytes = config.limits.max_header_bytes;
  server_options.limits.max_connections = config.limits.max_connections;
  server_options.limits.idle_timeout = config.limits.idle_timeout;
  server_options.limits.request_timeout = config.limits.request_timeout;
  std::vector<std::string> names;
  for (const ListenConfig& listen : config.listeners) {
    if (!listen.unix_path.empty()) {
      net::UnixListenerOptions unix_options;
      unix_options.path = listen.unix_path;
      unix_options.mode = listen.mode;
      if (!listen.group.empty()) {
        auto gid = GroupId(listen.group);
        if (!gid) {
          return MakeError(
              std::move(gid).error().WithContext("listen unix:" + listen.unix_path.string()));
        }
        unix_options.group = *gid;
      }
      server_options.unix_listeners.push_back(std::move(unix_options));
      names.push_back("unix:" + listen.unix_path.string());
    } else {
      auto tls = ParseTlsAddress(listen.tls_address);
      if (!tls) {
        return MakeError(std::move(tls).error().WithContext("listen tls:" + listen.tls_address));
      }
      tls->cert_file = listen.cert_file;
      tls->key_file = listen.key_file;
      tls->ca_file = listen.ca_file;
      server_options.tls_listeners.push_back(std::move(*tls));
    }
  }
  auto say = s.log;
  auto server_options_on_error = [say](const Error& error) {
    if (say) {
      say("net: " + error.ToString());
    }
  };
  server_options.on_error = server_options_on_error;
  const std::size_t tls_count = server_options.tls_listeners.size();
  auto server = net::Server::Start(std::move(server_options), s.service->handler());
  if (!server) {
    return MakeError(std::move(server).error().WithContext("listen"));
  }
  s.server = std::move(*server);

  std::optional<std::uint32_t> admin_gid;
  if (!config.admin.group.empty()) {
    auto gid = GroupId(config.admin.group);
    if (!gid) {
      return MakeError(std::move(gid).error().WithContext("admin.group"));
    }
    admin_gid = *gid;
  }
  if (auto prepared = PrepareAdminDir(config.admin.socket.parent_path(), admin_gid); !prepared) {
    return MakeError(std::move(prepared).error().WithContext("admin socket"));
  }
  net::ServerOptions admin_options;
  admin_options.threads = 1;
  admin_options.limits.max_body_bytes = 2 * policy::kMaxPolicyBytes;
  admin_options.limits.max_connections = 64;
  admin::AdminService* admin_raw = s.admin.get();
  admin_options.unix_listeners.push_back(net::UnixListenerOptions{
      .path = config.admin.socket,
      .mode = 0660,
      .group = admin_gid,
      .accept_peer = [admin_raw](const net::Peer& peer) { return admin_raw->AcceptPeer(peer); }});
  admin_options.on_error = server_options_on_error;
  auto admin_server = net::Server::Start(std::move(admin_options), s.admin->handler());
  if (!admin_server) {
    return MakeError(std::move(admin_server).error().WithContext("admin socket"));
  }
  s.admin_server = std::move(*admin_server);
  s.Say("admin socket unix:" + config.admin.socket.string() + " (directory 0750, socket 0660" +
        (config.admin.group.empty() ? "" : ", group " + config.admin.group) +
        "; peers need a role in the policy's [roles])");
  for (std::size_t i = 0, t = 0; i < config.listeners.size(); ++i) {
    const ListenConfig& listen = config.listeners[i];
    if (!listen.unix_path.empty()) {
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(listen.mode));
      s.Say("listening on unix:" + listen.unix_path.string() + " (mode " + mode +
            (listen.group.empty() ? "" : ", group " + listen.group) + ")");
    } else if (t < tls_count) {
      s.Say("listening on tls:" + listen.tls_address + " (port " +
            std::to_string(s.server->bound_tcp_port(t)) + ", client certificates from " +
            listen.ca_file.string() + ")");
      ++t;
    }
  }
  s.Record(audit::RecordKind::kStartup, "signetd started with " + config.source.string(),
           policy_version);
  s.started = true;
  return daemon;
}

Result<std::string> Daemon::ReloadPolicy() {
  State& s = *state_;
  if (s.stopped) {
    return MakeError(ErrorCode::kUnavailable, "signetd is stopping");
  }
  SIGNET_ASSIGN_OR_RETURN(const std::string text, ReadPolicyText(s.config.policy_file));
  SIGNET_ASSIGN_OR_RETURN(admin::PolicyVersion applied,
                          s.admin->ApplyPolicy(text, s.config.policy_file.string(),
                                               "signetd (SIGHUP)", "re-read the policy file"));
  return applied.version;
}

Status Daemon::Stop(Deadline deadline) {
  State& s = *state_;
  if (s.stopped) {
    return OkStatus();
  }
  s.stopped = true;
  if (s.admin_server) {
    s.admin_server->Stop(deadline);
    s.admin_server.reset();
  }
  if (s.server) {
    s.server->Stop(deadline);
    s.server.reset();
  }
  s.admin.reset();
  std::string policy_version;
  if (s.service) {
    policy_version = s.service->policy()->version();
  }
  s.service.reset();
  s.store.reset();
  Status closed = OkStatus();
  if (s.audit_log) {
    if (s.started) {
      s.Record(audit::RecordKind::kShutdown, "signetd stopped", policy_version);
    }
    closed = s.audit_log->Close();
    const auto stats = s.audit_log->stats();
    s.audit_log.reset();
    s.Say("audit log closed: " + std::to_string(stats.tree_size) + " records" +
          (closed ? "" : " (" + closed.error().ToString() + ")"));
  }
  s.note_signer.reset();
  s.tokens.clear();
  return closed;
}

}  // namespace signet::daemon
