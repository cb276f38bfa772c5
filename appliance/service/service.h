// appliance/service/service.h: the sign service. One request runs
//   peer identity -> policy -> HSM batch (verified there) -> audit (group commit) -> answer
// over the HTTP API that signet::net serves:
//   POST /v1/sign        JSON, or CBOR with the same schema (Content-Type: application/cbor)
//   GET  /v1/keys        every key: name, algorithm, format, fingerprint, public key PEM,
//                        enabled
//   GET  /v1/keys/NAME   one key
//   GET  /v1/requests/ID a request held for approval, for its requester (admin/API.md)
//   GET  /v1/health      the audit log's health and stats, and each HSM token's stats; 200
//                        "ok", or 503 "unavailable" (the log has failed) or "degraded" (a
//                        token is not logged in (asked of the token on each call: "logged_in")
//                        or its most recent job failed less than a minute ago: "ok": false,
//                        "last_error")
//
// Caveats:
// - No record, no signature: a signature is put in a response only after the `sign` records of
//   its request are committed to the audit log. If the log cannot take them (stopped, failed,
//   queue full), the request gets 503 "audit_unavailable" and no signature. A log that already
//   reports a failure or is closing is checked before the HSM is asked, so nothing is signed then.
//   A log that fails between the check and the commit still releases nothing.
// - Refusals are audited too: unknown key (404), too many items (413), policy denial (403) or
//   rate limit (429), and HSM failures (503) each write one `deny` record, and the answer goes
//   out after it is committed. If that record cannot be committed the answer is 503
//   "audit_unavailable". Malformed requests (400) are not audited: nothing in them is reliable.
// - One key, one format: the format, scheme and hash are fixed per key by ServiceKey; a request
//   names only the key. Only format "raw" exists today (ECDSA DER, RSA PKCS#1 v1.5 or PSS over
//   the key's hash), so `openssl dgst -<hash> -verify pub.pem -signature F.sig F` checks it.
// - Signatures are verified before release by the hsm module, per the Token's VerifyPolicy (RSA
//   always; ECDSA and Ed25519 unless the operator turned verify_before_release off). The service
//   does not check them a second time.
// - Never blocks the caller: Handle parses and validates on the calling (I/O) thread, then
//   everything else continues from HSM worker and audit writer callbacks. Building the response
//   runs on the audit writer thread (it is short, but delays the next group commit by as much).
// - Lifetimes: the Tokens named in ServiceKey and the Log must outlive the SignService and every
//   request in flight. Stop the net::Server first (it waits for requests in flight), then destroy
//   the SignService, then the Log and the Tokens.
// - Batching: each request is one hsm::Token::Submit job (the token's workers take several jobs
//   per wake-up, so requests from many clients share HSM sessions) and one Log::Submit of all its
//   records (the log commits many callers' records in one transaction).
// - Thread-safe. SetPolicy swaps the policy atomically: a request uses the policy it started with.
//   Rate-limit counters survive a swap for rules that keep their names (RateLimiter::Retain).
// - Rate limiting is told apart from other denials structurally: the service runs
//   Policy::Evaluate and then RateLimiter::Charge itself (what policy::Authorize does), so 429 is
//   answered exactly when the limiter refused.
#ifndef SIGNET_APPLIANCE_SERVICE_SERVICE_H_
#define SIGNET_APPLIANCE_SERVICE_SERVICE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/base/base.h"
#include "appliance/net/net.h"
#include "appliance/policy/policy.h"
#include "hsm/hsm.h"

namespace signet::service {

// A key the service signs with, and how. Not owned: `token` must outlive the service.
struct ServiceKey {
  std::string name;             // what requests and policies call it: [A-Za-z0-9._-]{1,128}
  hsm::Token* token = nullptr;  // the token that holds it
  hsm::KeyHandle key;           // from Token::FindKey or GenerateKey
  hsm::SignSpec spec;           // scheme and hash; must fit the key type
  // "raw" (ECDSA, RSA PKCS#1 v1.5 or PSS over the digest) or "batch" (an ECDSA P-256 key
  // signing Merkle batch statements as C2SP notes; appliance/formats/BATCH.md).
  std::string format = "raw";
};

struct ServiceOptions {
  std::string host_id;  // names this appliance in logs and health
  // Items per request; more is 413 "too_many_items" naming max_items_per_request.
  std::size_t max_items_per_request = 10000;
  // Distinct (rule, principal) rate counters kept (policy::RateLimiter's max_tracked).
  std::size_t max_rate_counters = policy::RateLimiter::kDefaultMaxTracked;
  // Batch keys: leaves per signed batch; a larger request is split into several batches.
  std::size_t max_batch_leaves = 65536;
  // Held requests (rules with approvals) expire this long after they were held.
  std::chrono::milliseconds approval_ttl = std::chrono::hours(24);
  // Batch keys: requests for the same key that arrive within this window are signed together
  // (their leaves share batches; each request still gets its own receipts, records and answer).
  // 0: off, each request is signed on its own at once.
  std::chrono::milliseconds batch_window{0};
};

// What the service has counted since Create (SignService::metrics): a snapshot; counters only
// grow. Counted once per POST /v1/sign, when its answer goes out (a GET /v1/sign's 405 is not
// counted), by the result the answer states:
//   "signed"        200: every item signed and recorded
//   "denied"        403 (policy), 404 (unknown key), 413 (too many items)
//   "rate_limited"  429
//   "hsm_error"     503 "hsm_unavailable" (the HSM failed and the denial was recorded)
//   "audit_error"   503 "audit_unavailable" (the log could not record the request or its denial)
//   "malformed"     400, 415: not audited
//   "internal"      any other status (500: a batch that could not be built)
//   "held"          202: held for approval (its signing, later, is not counted here)
struct ServiceMetrics {
  // A histogram as Prometheus exposes it.
  struct Histogram {
    std::vector<double> bounds;             // upper bounds (seconds), increasing
    std::vector<std::uint64_t> cumulative;  // [i]: observations <= bounds[i]
    std::uint64_t count = 0;                // every observation (the +Inf bucket)
    double sum = 0;
  };
  // Requests and their items by key, format and result. `items` counts the request's items when
  // they were read (signatures released for "signed"; items refused otherwise), 0 when the body
  // could not be parsed. Key "(unknown)" (format "") holds requests naming a key the service
  // does not have, and bodies that do not parse. Every configured key has every result (zeros
  // included); "(unknown)" only results that occurred.
  struct Outcome {
    std::string key;
    std::string format;
    std::string result;
    std::uint64_t requests = 0;
    std::uint64_t items = 0;
  };
  // Per configured key: HSM jobs that succeeded (raw keys: one per request; batch keys: one per
  // group of requests signed together) and, for batch keys, Merkle batch roots signed.
  struct Key {
    std::string name;
    std::string format;
    std::uint64_t hsm_jobs = 0;
    std::uint64_t batch_roots = 0;
  };
  std::vector<Outcome> outcomes;
  std::vector<Key> keys;
  // POST /v1/sign, from Handle to the answer, in seconds.
  Histogram sign_latency;
  // Requests answered "denied" by the policy rule that decided (404 and 413 and denials no rule
  // matched: "none"), and "rate_limited" by the rule whose limit was hit.
  std::map<std::string, std::uint64_t> denials_by_rule;
  std::map<std::string, std::uint64_t> rate_limits_by_rule;
};

// ---- Approvals ---------------------------------------------------------------------------------

// One artifact of a held request.
struct HeldItem {
  std::string name;
  std::optional<std::uint64_t> size;
  std::map<std::string, std::string> digests;  // algorithm → lower-case hex
};

// A sign request held for approval (a policy rule with approvals > 0), as it is stored.
// Statuses: "pending" (waiting for approvals), "approved" (being signed), "signed", "denied",
// "expired", "failed" (the re-check at approval time refused it, or the HSM or the log failed).
struct HeldRequest {
  std::string id;  // the request's request_id (32 hex digits): also its approval id
  std::string status = "pending";
  net::Peer requester;         // who asked, as the sign socket saw them
  std::string requester_name;  // policy::PrincipalName of the requester
  std::string key;
  std::string tool_name;
  std::string tool_version;
  std::string client_host;
  std::string ticket;
  std::vector<HeldItem> items;
  std::string rule;  // the rule that asked for approvals
  std::uint32_t approvals_required = 0;
  std::vector<audit::Approver> approvals;  // distinct approvers so far, in order
  std::int64_t created_us = 0;
  std::int64_t expires_us = 0;
  std::string reason;     // denied: the approver's reason; failed: what failed
  std::string denied_by;  // denied: who
  // signed / failed: the answer the requester collects (the POST /v1/sign answer's JSON).
  int result_status = 0;
  std::string result_body;
};

// Where held requests live (admin::StateStore is one, in LMDB). Implementations are thread-safe
// and durable: a Put is on disk when it returns.
class ApprovalStore {
 public:
  virtual ~ApprovalStore() = default;
  [[nodiscard]] virtual Status PutHeld(const HeldRequest& request) = 0;
  // Errors: kNotFound, kIo.
  [[nodiscard]] virtual Result<HeldRequest> GetHeld(std::string_view id) const = 0;
  // Every held request, oldest first.
  [[nodiscard]] virtual Result<std::vector<HeldRequest>> ListHeld() const = 0;
};

// What an approver's action came to: 200 with the request as it is now, or a refusal (status,
// code and message as the admin API answers them).
struct ApprovalOutcome {
  int status = 200;
  std::string code;
  std::string message;
  HeldRequest request;
};

// The principal the policy sees for a peer: uid, user and groups of a Unix peer; certificate
// subject and fingerprint of a TLS peer.
policy::Principal PrincipalOf(const net::Peer& peer);

// The scheme and hash a key of `type` signs with: ECDSA and Ed25519 by their type, RSA with
// `rsa_padding` "pkcs1" or "pss"; `hash` "sha256", "sha384" or "sha512". Errors: kInvalidArgument
// naming the setting.
[[nodiscard]] Result<hsm::SignSpec> MakeSignSpec(hsm::KeyType type, std::string_view hash,
                                                 std::string_view rsa_padding);

// SignService answers the sign API. Thread-safe; see the caveats above.
class SignService {
 public:
  // Checks the keys (unique valid names, a token, a scheme and hash the key type supports, a
  // known format) and the options. Errors: kInvalidArgument naming the key or option.
  // `approvals` keeps held requests; without one, a rule that needs approvals denies (saying
  // approvals are not configured). It must outlive the service.
  [[nodiscard]] static Result<std::unique_ptr<SignService>> Create(
      ServiceOptions options, std::vector<ServiceKey> keys,
      std::shared_ptr<const policy::Policy> policy, audit::Log& log,
      ApprovalStore* approvals = nullptr);
  ~SignService();
  SignService(const SignService&) = delete;
  SignService& operator=(const SignService&) = delete;

  // Handles one request (a net::Handler). Returns at once; `respond` is called exactly once,
  // possibly from another thread.
  void Handle(net::Request request, net::Responder respond);
  // A net::Handler that forwards to Handle. The service must outlive the Server using it.
  net::Handler handler();

  // Swaps the policy for requests that start from now on. `policy` must not be null.
  void SetPolicy(std::shared_ptr<const policy::Policy> policy);
  std::shared_ptr<const policy::Policy> policy() const;

  // Adds a key while serving (keys generated through the admin API), with Create's checks.
  // Errors: kInvalidArgument (those checks; a key of that name exists).
  [[nodiscard]] Status AddKey(ServiceKey key);
  // Disables or enables the key `name`. A disabled key signs nothing: requests naming it get 403
  // "key_disabled" with `reason` (and a `deny` record); requests already past that check finish.
  // Errors: kNotFound.
  [[nodiscard]] Status SetKeyEnabled(std::string_view name, bool enabled, std::string reason = {});

  // A key as the service holds it.
  struct KeyState {
    std::string name;
    std::string algorithm;  // "ecdsa-p256", ...
    std::string scheme;
    std::string hash;
    std::string format;
    std::string fingerprint;  // lower-case hex SHA-256 of the SubjectPublicKeyInfo
    std::string public_key_pem;
    bool enabled = true;
    std::string disabled_reason;
    const hsm::Token* token = nullptr;
  };
  // Every key, by name.
  std::vector<KeyState> Keys() const;

  // Held requests, oldest first (`pending_only`: those still waiting). A pending request past its
  // expiry is shown as "expired" (the sweeper records it within a few seconds).
  [[nodiscard]] Result<std::vector<HeldRequest>> HeldRequests(bool pending_only) const;
  [[nodiscard]] Result<HeldRequest> Held(std::string_view id) const;
  // An approval by `approver` (the admin API checked the approver role): refused when it is the
  // requester, when the rule's approvers do not name them, twice by the same approver, or when the
  // request no longer waits. The M-th approval re-checks the request against the policy in force
  // and signs it (asynchronously: the status becomes "approved", then "signed" or "failed").
  // Every approval is recorded before it counts. Blocks on the audit log: not for I/O threads.
  ApprovalOutcome Approve(std::string_view id, const net::Peer& approver);
  // Refuses a held request for good, with a reason (recorded).
  ApprovalOutcome Deny(std::string_view id, const net::Peer& approver, std::string reason);

  // The counters (ServiceMetrics). Cheap enough for a scrape every second: it takes one mutex
  // the sign path holds only when it answers a denial or a rate limit.
  ServiceMetrics metrics() const;

  struct State;

 private:
  explicit SignService(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

// HsmNoteSigner signs the audit log's checkpoint notes with a key in an HSM: an ECDSA key signs
// SHA-256 of the note text (C2SP signed-note type 0x02), an Ed25519 key the text itself (0x01).
// `verifier` is audit::MakeNoteVerifier of the key's public half under the note key name. The
// token must outlive the signer. Thread-safe (Token::Sign is).
class HsmNoteSigner final : public audit::NoteSigner {
 public:
  HsmNoteSigner(hsm::Token& token, hsm::KeyHandle key, audit::NoteVerifier verifier);
  const audit::NoteVerifier& verifier() const override { return verifier_; }
  [[nodiscard]] Result<Bytes> Sign(std::span<const std::uint8_t> text) override;
  const hsm::KeyHandle& key() const { return key_; }

 private:
  hsm::Token& token_;
  hsm::KeyHandle key_;
  audit::NoteVerifier verifier_;
};

}  // namespace signet::service

#endif  // SIGNET_APPLIANCE_SERVICE_SERVICE_H_
