// admin/admin.h: the admin plane. The admin socket's API (admin/API.md): policy lifecycle, keys,
// approvals, audit access, metrics and health, for peers in the policy's roles; and the state
// store (LMDB) that keeps policy versions and key definitions across restarts.
//
// Caveats:
// - Peers are checked at accept time (AdminService::AcceptPeer, the socket's accept_peer
//   predicate): a peer in none of the current policy's [roles] is disconnected before a byte is
//   read, logged, and recorded as an `admin` deny record (at most one per uid per minute; the
//   next record counts the attempts in between). Each endpoint then checks the roles it
//   needs (403 "role_required").
// - Every change is an audit record committed before the change takes effect and before the
//   answer; if the log cannot take it, nothing changes and the answer is 503 "audit_unavailable".
// - Admin requests run on the service's own worker threads (AdminOptions::workers), never on the
//   I/O threads: they may block on LMDB, the HSM or the audit log.
// - Lifetimes: the SignService, Log, StateStore and Tokens must outlive the AdminService. Stop the
//   net::Server that serves it first, then destroy the AdminService.
// - The store is one LMDB environment per directory per process (an LMDB rule), durable settings.
#ifndef SIGNET_ADMIN_ADMIN_H_
#define SIGNET_ADMIN_ADMIN_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/base/base.h"
#include "appliance/net/net.h"
#include "appliance/policy/policy.h"
#include "appliance/service/service.h"
#include "hsm/hsm.h"

namespace signet::admin {

// ---- The state store ---------------------------------------------------------------------------

// One applied policy version.
struct PolicyVersion {
  std::uint64_t number = 0;  // 1, 2, ...
  std::string version;       // lower-case hex SHA-256 of the text (policy::Policy::version)
  std::string text;
  std::string source;      // "file:/etc/signet/policy.toml", "admin-api", ...
  std::string applied_by;  // "user:alice", "signetd" (a seed or SIGHUP)
  std::int64_t time_us = 0;
  std::string comment;
};

inline constexpr std::size_t kMaxPolicyVersions = 100000;

// A key's definition as the admin plane keeps it: every key generated through the admin API, and
// the enabled state of keys from the configuration's [[key]] tables.
struct KeyDefinition {
  std::string name;
  std::string origin;     // "admin-api" (generated through it) or "config" (a [[key]])
  std::string hsm;        // the [[hsm]] that holds it (admin-api keys)
  std::string label;      // its CKA_LABEL there (admin-api keys)
  std::string algorithm;  // "ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096"
  std::string format;     // "raw" or "batch"
  std::string hash = "sha256";
  std::string rsa_padding = "pkcs1";
  std::string fingerprint;  // lower-case hex SHA-256 of the SubjectPublicKeyInfo
  bool enabled = true;
  std::string disabled_reason;
  std::string changed_by;  // who generated, disabled or enabled it last
  std::int64_t time_us = 0;
};

inline constexpr std::size_t kMaxKeyDefinitions = 10000;
inline constexpr std::size_t kMaxHeldRequests = 100000;

// StateStore keeps what the admin API changes: policy versions (all of them, numbered), key
// definitions and requests held for approval. Thread-safe.
class StateStore final : public service::ApprovalStore {
 public:
  // Opens or creates the LMDB environment in `dir` (created 0700). Errors: kInvalidArgument (a
  // store of an unknown format), kPermissionDenied, kIo.
  [[nodiscard]] static Result<std::unique_ptr<StateStore>> Open(const std::filesystem::path& dir);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // The newest version, or nullopt for an empty store. Errors: kIo.
  [[nodiscard]] Result<std::optional<PolicyVersion>> LatestPolicy() const;
  // Version `number`. Errors: kNotFound, kIo.
  [[nodiscard]] Result<PolicyVersion> Policy(std::uint64_t number) const;
  // Every version, newest first, without their texts. Errors: kIo.
  [[nodiscard]] Result<std::vector<PolicyVersion>> PolicyVersions() const;
  // Stores `version` as the next number (its `number` is ignored) and returns that number;
  // committed and fsync'd on return. Errors: kInvalidArgument (kMaxPolicyVersions reached), kIo.
  [[nodiscard]] Result<std::uint64_t> AddPolicy(PolicyVersion version);

  // Every key definition, by name. Errors: kIo.
  [[nodiscard]] Result<std::vector<KeyDefinition>> Keys() const;
  // Stores (adds or replaces) the definition of `key.name`; committed and fsync'd on return.
  // Errors: kInvalidArgument (kMaxKeyDefinitions reached), kIo.
  [[nodiscard]] Status PutKey(const KeyDefinition& key);

  // Held requests (service::ApprovalStore), kept after they are decided (the history approvers
  // and auditors read). Errors: kInvalidArgument (kMaxHeldRequests reached), kIo.
  [[nodiscard]] Status PutHeld(const service::HeldRequest& request) override;
  [[nodiscard]] Result<service::HeldRequest> GetHeld(std::string_view id) const override;
  [[nodiscard]] Result<std::vector<service::HeldRequest>> ListHeld() const override;

  struct Impl;

 private:
  explicit StateStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The policy signetd starts with: the newest stored version, or, for an empty store, `seed_text`
// parsed as `seed_source`, stored as version 1 and recorded in `log` (a `policy` record, decision
// "seed"). Errors: those of Policy::Parse (naming the source and line), of the store and the log.
[[nodiscard]] Result<std::shared_ptr<const policy::Policy>> LoadOrSeedPolicy(
    StateStore& store, audit::Log& log, std::string_view seed_text, std::string_view seed_source);

// ---- The admin API -----------------------------------------------------------------------------

struct AdminOptions {
  std::string host_id;
  unsigned workers = 2;  // threads that run admin requests: 1 to 16
  // Audit exports stream from threads of their own (a slow reader holds no worker): at most this
  // many at once (1 to 16); one more is answered 503 too_many_exports.
  unsigned max_exports = 2;
  std::size_t max_records_page = 1000;
};

// AdminService answers the admin API (admin/API.md). Thread-safe.
class AdminService {
 public:
  // `tokens` are the HSMs keys may be generated in, by [[hsm]] name. Errors: kInvalidArgument.
  [[nodiscard]] static Result<std::unique_ptr<AdminService>> Create(
      AdminOptions options, StateStore& store, service::SignService& service, audit::Log& log,
      std::map<std::string, hsm::Token*> tokens);
  // Waits for requests in flight on the workers, then stops them.
  ~AdminService();
  AdminService(const AdminService&) = delete;
  AdminService& operator=(const AdminService&) = delete;

  // The admin socket's accept_peer predicate: true when `peer` holds a role in the current
  // policy. A refusal is logged and recorded (without waiting for the commit).
  bool AcceptPeer(const net::Peer& peer);
  // Handles one request (a net::Handler): queues it for a worker and returns.
  void Handle(net::Request request, net::Responder respond);
  net::Handler handler();

  // Applies `text` as a new policy version (what PUT /v1/policy does), for SIGHUP: recorded with
  // `applied_by` and `source`. Returns the stored version; unchanged text returns the current one
  // without storing. Errors: kInvalidArgument (parse errors with line numbers), the store's,
  // kUnavailable (the audit log).
  [[nodiscard]] Result<PolicyVersion> ApplyPolicy(std::string_view text, std::string source,
                                                  std::string applied_by, std::string comment);

  struct State;

 private:
  explicit AdminService(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace signet::admin

#endif  // SIGNET_ADMIN_ADMIN_H_
