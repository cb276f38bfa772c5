// The admin state store: one LMDB environment with named databases (keys big-endian, so LMDB's
// byte order is numeric):
//   policy  number (8 bytes) → JSON {"version", "text", "source", "applied_by", "time_us",
//                                     "comment"}                                   (MDB_APPEND)
//   keys    name → JSON KeyDefinition
//   held    request id → JSON service::HeldRequest
//   meta    "format" → "1"
// Durable settings only (no NOSYNC, NOMETASYNC, MAPASYNC, WRITEMAP): a commit is on disk when it
// returns.
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>

#include "admin/admin.h"

namespace signet::admin {
namespace {

using nlohmann::json;

constexpr std::size_t kMapSize = std::size_t{1} << 30;  // sparse; policies are at most 1 MiB
constexpr std::string_view kFormat = "1";

Error LmdbError(int rc, std::string_view what) {
  return Error(rc == ENOENT   ? ErrorCode::kNotFound
               : rc == EACCES ? ErrorCode::kPermissionDenied
                              : ErrorCode::kIo,
               "admin state store: " + std::string(what) + ": " + mdb_strerror(rc),
               ErrorDomain::kLmdb, rc);
}

std::array<std::uint8_t, 8> BigEndian(std::uint64_t n) {
  std::array<std::uint8_t, 8> out{};
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n & 0xff);
    n >>= 8;
  }
  return out;
}

std::uint64_t FromBigEndian(const MDB_val& val) {
  std::uint64_t n = 0;
  const auto* bytes = static_cast<const std::uint8_t*>(val.mv_data);
  for (std::size_t i = 0; i < val.mv_size && i < 8; ++i) {
    n = (n << 8) | bytes[i];
  }
  return n;
}

MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

// A transaction, aborted unless committed.
class Txn {
 public:
  Txn() = default;
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() {
    if (txn_ != nullptr) {
      mdb_txn_abort(txn_);
    }
  }
  Status Begin(MDB_env* env, bool read_only) {
    const int rc = mdb_txn_begin(env, nullptr, read_only ? MDB_RDONLY : 0, &txn_);
    if (rc != 0) {
      txn_ = nullptr;
      return MakeError(LmdbError(rc, "begin transaction"));
    }
    return OkStatus();
  }
  Status Commit() {
    const int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    if (rc != 0) {
      return MakeError(LmdbError(rc, "commit"));
    }
    return OkStatus();
  }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
};

// A read-only cursor, closed when destroyed.
class Cursor {
 public:
  Cursor() = default;
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor() {
    if (cursor_ != nullptr) {
      mdb_cursor_close(cursor_);
    }
  }
  Status Open(MDB_txn* txn, MDB_dbi dbi) {
    const int rc = mdb_cursor_open(txn, dbi, &cursor_);
    if (rc != 0) {
      cursor_ = nullptr;
      return MakeError(LmdbError(rc, "open cursor"));
    }
    return OkStatus();
  }
  MDB_cursor* get() const { return cursor_; }

 private:
  MDB_cursor* cursor_ = nullptr;
};

json VersionJson(const PolicyVersion& v, bool with_text) {
  json out{{"version", v.version},
           {"source", v.source},
           {"applied_by", v.applied_by},
           {"time_us", v.time_us},
           {"comment", v.comment}};
  if (with_text) {
    out["text"] = v.text;
  }
  return out;
}

Result<PolicyVersion> ParseVersion(std::uint64_t number, const MDB_val& val, bool with_text) {
  const json j = json::parse(static_cast<const char*>(val.mv_data),
                             static_cast<const char*>(val.mv_data) + val.mv_size, nullptr, false);
  if (!j.is_object()) {
    return MakeError(ErrorCode::kInternal, "admin state store: policy version " +
                                               std::to_string(number) + " is not JSON");
  }
  PolicyVersion v;
  v.number = number;
  try {
    v.version = j.at("version").get<std::string>();
    v.source = j.value("source", "");
    v.applied_by = j.value("applied_by", "");
    v.time_us = j.value("time_us", std::int64_t{0});
    v.comment = j.value("comment", "");
    if (with_text) {
      v.text = j.at("text").get<std::string>();
    }
  } catch (const json::exception& e) {
    return MakeError(ErrorCode::kInternal, "admin state store: policy version " +
                                               std::to_string(number) + ": " + e.what());
  }
  return v;
}

json PeerJson(const net::Peer& p) {
  json out{{"kind", p.kind == net::Peer::Kind::kUnix ? "unix" : "tls"},
           {"uid", p.uid},
           {"gid", p.gid},
           {"user", p.user},
           {"gids", p.gids},
           {"groups", p.groups},
           {"cert_subject", p.cert_subject},
           {"cert_sans", p.cert_sans},
           {"cert_fingerprint", p.cert_fingerprint},
           {"address", p.address}};
  if (p.pid) {
    out["pid"] = *p.pid;
  }
  return out;
}

net::Peer PeerFrom(const json& j) {
  net::Peer p;
  p.kind = j.value("kind", "unix") == "unix" ? net::Peer::Kind::kUnix : net::Peer::Kind::kTls;
  if (j.contains("pid")) {
    p.pid = j.at("pid").get<std::int64_t>();
  }
  p.uid = j.value("uid", std::uint32_t{0});
  p.gid = j.value("gid", std::uint32_t{0});
  p.user = j.value("user", "");
  p.gids = j.value("gids", std::vector<std::uint32_t>{});
  p.groups = j.value("groups", std::vector<std::string>{});
  p.cert_subject = j.value("cert_subject", "");
  p.cert_sans = j.value("cert_sans", std::vector<std::string>{});
  p.cert_fingerprint = j.value("cert_fingerprint", "");
  p.address = j.value("address", "");
  return p;
}

json HeldJson(const service::HeldRequest& h) {
  json items = json::array();
  for (const auto& item : h.items) {
    json i{{"name", item.name}, {"digests", item.digests}};
    if (item.size) {
      i["size"] = *item.size;
    }
    items.push_back(std::move(i));
  }
  json approvals = json::array();
  for (const auto& a : h.approvals) {
    approvals.push_back(json{{"identity", a.identity}, {"time_us", a.time_us}});
  }
  return json{{"status", h.status},
              {"requester", PeerJson(h.requester)},
              {"requester_name", h.requester_name},
              {"key", h.key},
              {"tool_name", h.tool_name},
              {"tool_version", h.tool_version},
              {"client_host", h.client_host},
              {"ticket", h.ticket},
              {"items", std::move(items)},
              {"rule", h.rule},
              {"approvals_required", h.approvals_required},
              {"approvals", std::move(approvals)},
              {"created_us", h.created_us},
              {"expires_us", h.expires_us},
              {"reason", h.reason},
              {"denied_by", h.denied_by},
              {"result_status", h.result_status},
              {"result_body", h.result_body}};
}

Result<service::HeldRequest> HeldFrom(std::string id, const MDB_val& val) {
  const json j = json::parse(static_cast<const char*>(val.mv_data),
                             static_cast<const char*>(val.mv_data) + val.mv_size, nullptr, false);
  if (!j.is_object()) {
    return MakeError(ErrorCode::kInternal,
                     "admin state store: held request " + id + " is not JSON");
  }
  service::HeldRequest h;
  h.id = std::move(id);
  try {
    h.status = j.at("status").get<std::string>();
    h.requester = PeerFrom(j.at("requester"));
    h.requester_name = j.value("requester_name", "");
    h.key = j.value("key", "");
    h.tool_name = j.value("tool_name", "");
    h.tool_version = j.value("tool_version", "");
    h.client_host = j.value("client_host", "");
    h.ticket = j.value("ticket", "");
    for (const json& i : j.at("items")) {
      service::HeldItem item;
      item.name = i.value("name", "");
      if (i.contains("size")) {
        item.size = i.at("size").get<std::uint64_t>();
      }
      item.digests = i.value("digests", std::map<std::string, std::string>{});
      h.items.push_back(std::move(item));
    }
    h.rule = j.value("rule", "");
    h.approvals_required = j.value("approvals_required", std::uint32_t{0});
    for (const json& a : j.at("approvals")) {
      h.approvals.push_back(audit::Approver{.identity = a.value("identity", ""),
                                            .time_us = a.value("time_us", std::int64_t{0})});
    }
    h.created_us = j.value("created_us", std::int64_t{0});
    h.expires_us = j.value("expires_us", std::int64_t{0});
    h.reason = j.value("reason", "");
    h.denied_by = j.value("denied_by", "");
    h.result_status = j.value("result_status", 0);
    h.result_body = j.value("result_body", "");
  } catch (const json::exception& e) {
    return MakeError(ErrorCode::kInternal,
                     "admin state store: held request " + h.id + ": " + e.what());
  }
  return h;
}

}  // namespace

struct StateStore::Impl {
  MDB_env* env = nullptr;
  MDB_dbi policy_dbi = 0;
  MDB_dbi keys_dbi = 0;
  MDB_dbi held_dbi = 0;
  MDB_dbi meta_dbi = 0;
  std::mutex write_mu;  // one writer at a time (LMDB would block; this keeps numbering simple)

  ~Impl() {
    if (env != nullptr) {
      mdb_env_close(env);
    }
  }
};

StateStore::StateStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateStore::~StateStore() = default;

Result<std::unique_ptr<StateStore>> StateStore::Open(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return MakeError(ErrnoError(errno, "create admin state store " + dir.string()));
  }
  auto impl = std::make_unique<Impl>();
  if (const int rc = mdb_env_create(&impl->env); rc != 0) {
    impl->env = nullptr;
    return MakeError(LmdbError(rc, "mdb_env_create"));
  }
  if (const int rc = mdb_env_set_maxdbs(impl->env, 8); rc != 0) {
    return MakeError(LmdbError(rc, "mdb_env_set_maxdbs"));
  }
  if (const int rc = mdb_env_set_mapsize(impl->env, kMapSize); rc != 0) {
    return MakeError(LmdbError(rc, "mdb_env_set_mapsize"));
  }
  if (const int rc = mdb_env_open(impl->env, dir.c_str(), MDB_NOTLS, 0600); rc != 0) {
    return MakeError(LmdbError(rc, "open " + dir.string()));
  }
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl->env, false));
  if (const int rc = mdb_dbi_open(txn.get(), "policy", MDB_CREATE, &impl->policy_dbi); rc != 0) {
    return MakeError(LmdbError(rc, "open database policy"));
  }
  if (const int rc = mdb_dbi_open(txn.get(), "keys", MDB_CREATE, &impl->keys_dbi); rc != 0) {
    return MakeError(LmdbError(rc, "open database keys"));
  }
  if (const int rc = mdb_dbi_open(txn.get(), "held", MDB_CREATE, &impl->held_dbi); rc != 0) {
    return MakeError(LmdbError(rc, "open database held"));
  }
  if (const int rc = mdb_dbi_open(txn.get(), "meta", MDB_CREATE, &impl->meta_dbi); rc != 0) {
    return MakeError(LmdbError(rc, "open database meta"));
  }
  MDB_val key = Val("format");
  MDB_val value{};
  const int rc = mdb_get(txn.get(), impl->meta_dbi, &key, &value);
  if (rc == MDB_NOTFOUND) {
    MDB_val format = Val(kFormat);
    if (const int put = mdb_put(txn.get(), impl->meta_dbi, &key, &format, 0); put != 0) {
      return MakeError(LmdbError(put, "write format"));
    }
  } else if (rc != 0) {
    return MakeError(LmdbError(rc, "read format"));
  } else if (std::string_view(static_cast<const char*>(value.mv_data), value.mv_size) != kFormat) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "admin state store " + dir.string() + " has format \"" +
                         std::string(static_cast<const char*>(value.mv_data), value.mv_size) +
                         "\"; this signetd reads format " + std::string(kFormat));
  }
  SIGNET_RETURN_IF_ERROR(txn.Commit());
  int dead = 0;
  (void)mdb_reader_check(impl->env, &dead);
  return std::unique_ptr<StateStore>(new StateStore(std::move(impl)));
}

Result<std::optional<PolicyVersion>> StateStore::LatestPolicy() const {
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, true));
  Cursor cursor;
  SIGNET_RETURN_IF_ERROR(cursor.Open(txn.get(), impl_->policy_dbi));
  MDB_val key{};
  MDB_val value{};
  const int rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_LAST);
  if (rc == MDB_NOTFOUND) {
    return std::optional<PolicyVersion>();
  }
  if (rc != 0) {
    return MakeError(LmdbError(rc, "read the latest policy"));
  }
  SIGNET_ASSIGN_OR_RETURN(PolicyVersion v, ParseVersion(FromBigEndian(key), value, true));
  return std::optional<PolicyVersion>(std::move(v));
}

Result<PolicyVersion> StateStore::Policy(std::uint64_t number) const {
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, true));
  auto be = BigEndian(number);
  MDB_val key{be.size(), be.data()};
  MDB_val value{};
  const int rc = mdb_get(txn.get(), impl_->policy_dbi, &key, &value);
  if (rc == MDB_NOTFOUND) {
    return MakeError(ErrorCode::kNotFound, "no policy version " + std::to_string(number) +
                                               "; GET /v1/policy/versions lists them");
  }
  if (rc != 0) {
    return MakeError(LmdbError(rc, "read policy version " + std::to_string(number)));
  }
  return ParseVersion(number, value, true);
}

Result<std::vector<PolicyVersion>> StateStore::PolicyVersions() const {
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, true));
  Cursor cursor;
  SIGNET_RETURN_IF_ERROR(cursor.Open(txn.get(), impl_->policy_dbi));
  std::vector<PolicyVersion> out;
  MDB_val key{};
  MDB_val value{};
  for (int rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_LAST); rc != MDB_NOTFOUND;
       rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_PREV)) {
    if (rc != 0) {
      return MakeError(LmdbError(rc, "list policy versions"));
    }
    SIGNET_ASSIGN_OR_RETURN(PolicyVersion v, ParseVersion(FromBigEndian(key), value, false));
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::uint64_t> StateStore::AddPolicy(PolicyVersion version) {
  std::lock_guard lock(impl_->write_mu);
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, false));
  std::uint64_t number = 1;
  {
    Cursor cursor;
    SIGNET_RETURN_IF_ERROR(cursor.Open(txn.get(), impl_->policy_dbi));
    MDB_val key{};
    MDB_val value{};
    const int rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_LAST);
    if (rc == 0) {
      number = FromBigEndian(key) + 1;
    } else if (rc != MDB_NOTFOUND) {
      return MakeError(LmdbError(rc, "read the latest policy"));
    }
  }
  if (number > kMaxPolicyVersions) {
    return MakeError(ErrorCode::kInvalidArgument, "the admin state store holds " +
                                                      std::to_string(kMaxPolicyVersions) +
                                                      " policy versions, its maximum");
  }
  const std::string bytes = VersionJson(version, true).dump();
  auto be = BigEndian(number);
  MDB_val key{be.size(), be.data()};
  MDB_val value = Val(bytes);
  if (const int rc = mdb_put(txn.get(), impl_->policy_dbi, &key, &value, MDB_APPEND); rc != 0) {
    return MakeError(LmdbError(rc, "store policy version " + std::to_string(number)));
  }
  SIGNET_RETURN_IF_ERROR(txn.Commit());
  return number;
}

Result<std::vector<KeyDefinition>> StateStore::Keys() const {
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, true));
  Cursor cursor;
  SIGNET_RETURN_IF_ERROR(cursor.Open(txn.get(), impl_->keys_dbi));
  std::vector<KeyDefinition> out;
  MDB_val key{};
  MDB_val value{};
  for (int rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_FIRST); rc != MDB_NOTFOUND;
       rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_NEXT)) {
    if (rc != 0) {
      return MakeError(LmdbError(rc, "list keys"));
    }
    const std::string name(static_cast<const char*>(key.mv_data), key.mv_size);
    const json j =
        json::parse(static_cast<const char*>(value.mv_data),
                    static_cast<const char*>(value.mv_data) + value.mv_size, nullptr, false);
    if (!j.is_object()) {
      return MakeError(ErrorCode::kInternal, "admin state store: key \"" + name + "\" is not JSON");
    }
    KeyDefinition k;
    k.name = name;
    k.origin = j.value("origin", "");
    k.hsm = j.value("hsm", "");
    k.label = j.value("label", "");
    k.algorithm = j.value("algorithm", "");
    k.format = j.value("format", "");
    k.hash = j.value("hash", "sha256");
    k.rsa_padding = j.value("rsa_padding", "pkcs1");
    k.fingerprint = j.value("fingerprint", "");
    k.enabled = j.value("enabled", true);
    k.disabled_reason = j.value("disabled_reason", "");
    k.changed_by = j.value("changed_by", "");
    k.time_us = j.value("time_us", std::int64_t{0});
    out.push_back(std::move(k));
  }
  return out;
}

Status StateStore::PutKey(const KeyDefinition& k) {
  if (k.name.empty() || k.name.size() > 128) {
    return MakeError(ErrorCode::kInvalidArgument, "a key name is 1 to 128 characters");
  }
  std::lock_guard lock(impl_->write_mu);
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, false));
  MDB_stat stat{};
  if (const int rc = mdb_stat(txn.get(), impl_->keys_dbi, &stat); rc != 0) {
    return MakeError(LmdbError(rc, "count keys"));
  }
  MDB_val key = Val(k.name);
  MDB_val existing{};
  const int found = mdb_get(txn.get(), impl_->keys_dbi, &key, &existing);
  if (found == MDB_NOTFOUND && stat.ms_entries >= kMaxKeyDefinitions) {
    return MakeError(ErrorCode::kInvalidArgument, "the admin state store holds " +
                                                      std::to_string(kMaxKeyDefinitions) +
                                                      " key definitions, its maximum");
  }
  const std::string bytes = json{
      {"origin", k.origin},
      {"hsm", k.hsm},
      {"label", k.label},
      {"algorithm", k.algorithm},
      {"format", k.format},
      {"hash", k.hash},
      {"rsa_padding", k.rsa_padding},
      {"fingerprint", k.fingerprint},
      {"enabled", k.enabled},
      {"disabled_reason", k.disabled_reason},
      {"changed_by", k.changed_by},
      {"time_us", k.time_us}}.dump();
  MDB_val value = Val(bytes);
  if (const int rc = mdb_put(txn.get(), impl_->keys_dbi, &key, &value, 0); rc != 0) {
    return MakeError(LmdbError(rc, "store key " + k.name));
  }
  return txn.Commit();
}

Status StateStore::PutHeld(const service::HeldRequest& request) {
  if (request.id.empty() || request.id.size() > 128) {
    return MakeError(ErrorCode::kInvalidArgument, "a held request id is 1 to 128 characters");
  }
  std::lock_guard lock(impl_->write_mu);
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, false));
  MDB_val key = Val(request.id);
  MDB_val existing{};
  if (mdb_get(txn.get(), impl_->held_dbi, &key, &existing) == MDB_NOTFOUND) {
    MDB_stat stat{};
    if (const int rc = mdb_stat(txn.get(), impl_->held_dbi, &stat); rc != 0) {
      return MakeError(LmdbError(rc, "count held requests"));
    }
    if (stat.ms_entries >= kMaxHeldRequests) {
      return MakeError(ErrorCode::kInvalidArgument, "the admin state store holds " +
                                                        std::to_string(kMaxHeldRequests) +
                                                        " held requests, its maximum");
    }
  }
  const std::string bytes = HeldJson(request).dump(-1, ' ', false, json::error_handler_t::replace);
  MDB_val value = Val(bytes);
  if (const int rc = mdb_put(txn.get(), impl_->held_dbi, &key, &value, 0); rc != 0) {
    return MakeError(LmdbError(rc, "store held request " + request.id));
  }
  return txn.Commit();
}

Result<service::HeldRequest> StateStore::GetHeld(std::string_view id) const {
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, true));
  MDB_val key = Val(id);
  MDB_val value{};
  const int rc = mdb_get(txn.get(), impl_->held_dbi, &key, &value);
  if (rc == MDB_NOTFOUND) {
    return MakeError(ErrorCode::kNotFound, "no held request " + std::string(id.substr(0, 64)));
  }
  if (rc != 0) {
    return MakeError(LmdbError(rc, "read held request"));
  }
  return HeldFrom(std::string(id), value);
}

Result<std::vector<service::HeldRequest>> StateStore::ListHeld() const {
  Txn txn;
  SIGNET_RETURN_IF_ERROR(txn.Begin(impl_->env, true));
  Cursor cursor;
  SIGNET_RETURN_IF_ERROR(cursor.Open(txn.get(), impl_->held_dbi));
  std::vector<service::HeldRequest> out;
  MDB_val key{};
  MDB_val value{};
  for (int rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_FIRST); rc != MDB_NOTFOUND;
       rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_NEXT)) {
    if (rc != 0) {
      return MakeError(LmdbError(rc, "list held requests"));
    }
    SIGNET_ASSIGN_OR_RETURN(
        service::HeldRequest h,
        HeldFrom(std::string(static_cast<const char*>(key.mv_data), key.mv_size), value));
    out.push_back(std::move(h));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.created_us < b.created_us; });
  return out;
}

Result<std::shared_ptr<const policy::Policy>> LoadOrSeedPolicy(StateStore& store, audit::Log& log,
                                                               std::string_view seed_text,
                                                               std::string_view seed_source) {
  SIGNET_ASSIGN_OR_RETURN(std::optional<PolicyVersion> latest, store.LatestPolicy());
  if (latest) {
    auto parsed =
        policy::Policy::Parse(latest->text, "policy version " + std::to_string(latest->number));
    if (!parsed) {
      // The store only ever holds texts that parsed: a refusal here means a signetd whose parser
      // is stricter than the one that stored it.
      return MakeError(parsed.error().WithContext(
          "the stored policy no longer parses; apply a fixed policy with an older signetd, or "
          "move the state store aside to seed again from the policy file"));
    }
    return parsed;
  }
  SIGNET_ASSIGN_OR_RETURN(auto parsed, policy::Policy::Parse(seed_text, seed_source));
  audit::Record record;
  record.kind = audit::RecordKind::kPolicy;
  record.decision = "seed";
  record.policy_version = parsed->version();
  record.requester.uid = ::getuid();
  record.detail = "policy version 1 seeded from " + std::string(seed_source);
  std::vector<audit::Record> records;
  records.push_back(std::move(record));
  // No record, no change: the seed is recorded before it is stored.
  SIGNET_RETURN_IF_ERROR(log.Append(std::move(records), Deadline::In(std::chrono::seconds(30))));
  PolicyVersion version;
  version.version = parsed->version();
  version.text = parsed->text();
  version.source = "file:" + std::string(seed_source);
  version.applied_by = "signetd";
  version.time_us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  version.comment = "seeded from the configuration's policy_file";
  SIGNET_RETURN_IF_ERROR(store.AddPolicy(std::move(version)));
  return parsed;
}

}  // namespace signet::admin
