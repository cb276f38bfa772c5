// appliance/service/internal/call.h: what service.cc and batch.cc share: the service's state, one
// sign request in flight, and the helpers that record and answer it.
#ifndef SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_
#define SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "appliance/service/internal/request.h"
#include "appliance/service/service.h"

namespace signet::service {
namespace internal {

// ---- Metrics (ServiceMetrics) ------------------------------------------------------------------

// A sign request's result, as ServiceMetrics names them (SignResultName), in that order.
enum class SignResult : std::uint8_t {
  kSigned,
  kDenied,
  kRateLimited,
  kHsmError,
  kAuditError,
  kMalformed,
  kInternal,
  kHeld,
};
inline constexpr std::size_t kSignResults = 8;
std::string_view SignResultName(SignResult result);

// The counters of one key (or of requests for no known key). Atomic: the sign path adds to them
// once per request, without a lock.
struct KeyCounters {
  std::array<std::atomic<std::uint64_t>, kSignResults> requests{};
  std::array<std::atomic<std::uint64_t>, kSignResults> items{};
  std::atomic<std::uint64_t> hsm_jobs{0};
  std::atomic<std::uint64_t> batch_roots{0};
};

// A latency histogram that the sign path adds to without a lock.
class LatencyHistogram {
 public:
  static constexpr std::array<double, 14> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1,     2.5,  5,     10,   30};
  void Observe(std::chrono::steady_clock::duration elapsed);
  // Cumulative; `count` is the sum of the buckets read, so the +Inf bucket always equals it.
  ServiceMetrics::Histogram Snapshot() const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};  // last: above all
  std::atomic<std::uint64_t> sum_ns_{0};
};

struct Metrics {
  KeyCounters unknown_key;  // requests naming no key the service has, or that did not parse
  LatencyHistogram sign_latency;
  // By rule name ("none" for ""): taken only when a denial or rate limit is answered.
  mutable std::mutex rules_mu;
  std::map<std::string, std::uint64_t, std::less<>> denials_by_rule;      // guarded by rules_mu
  std::map<std::string, std::uint64_t, std::less<>> rate_limits_by_rule;  // guarded by rules_mu
};

struct SignCall;

// Gathers the requests for one batch key that arrive within a window and signs them together
// (batch.cc), so that many small requests cost few HSM signatures. A thread of its own waits for
// the window to close (or max_leaves to be reached) and then starts the signing; the answers come
// back through the usual callbacks. Stop signs what waits, then joins the thread.
class BatchGatherer {
 public:
  BatchGatherer(std::chrono::milliseconds window, std::size_t max_leaves);
  ~BatchGatherer();
  BatchGatherer(const BatchGatherer&) = delete;
  BatchGatherer& operator=(const BatchGatherer&) = delete;

  void Add(std::shared_ptr<SignCall> call);
  void Stop();

 private:
  struct Pending;
  void Loop();

  const std::chrono::milliseconds window_;
  const std::size_t max_leaves_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::unique_ptr<Pending> pending_;  // guarded by mu_
  bool stopping_ = false;             // guarded by mu_
  std::thread thread_;
};

// One key the service signs with. Entries are never removed (a key is disabled instead), so a
// pointer to one stays valid as long as the service.
struct KeyEntry {
  ServiceKey key;
  std::unique_ptr<KeyCounters> counters = std::make_unique<KeyCounters>();
  // Batch keys: the statements' origin ("<host>/signet-batch/<key>"), which is also the note key
  // name, and the verifier of the key's notes (each signed root is checked before release).
  std::string origin;
  std::optional<audit::NoteVerifier> note_verifier;
  // Batch keys with a gathering window (ServiceOptions::batch_window > 0). Stopped by
  // ~SignService, while the state is certainly alive.
  std::unique_ptr<BatchGatherer> gatherer;
  // A disabled key signs nothing (SignService::SetKeyEnabled). The reason is guarded by
  // State::keys_mu.
  std::atomic<bool> disabled{false};
  std::string disabled_reason;
};

}  // namespace internal

struct SignService::State {
  ServiceOptions options;
  // Keys by name; AddKey inserts while requests read, hence the lock (shared on the sign path).
  mutable std::shared_mutex keys_mu;
  std::map<std::string, std::unique_ptr<internal::KeyEntry>, std::less<>> keys;  // keys_mu
  audit::Log& log;
  policy::RateLimiter limiter;
  mutable std::mutex policy_mu;
  std::shared_ptr<const policy::Policy> policy;
  internal::Metrics metrics;
  // Held requests (rules with approvals); null: approvals are not configured. approvals_mu
  // serializes approvals, denials and expiry of held requests (never held while signing).
  ApprovalStore* approvals = nullptr;
  std::mutex approvals_mu;
  // The expiry sweeper (approvals.cc): wakes every so often, expires pending requests past due.
  std::mutex sweeper_mu;
  std::condition_variable sweeper_cv;
  bool sweeper_stopping = false;  // guarded by sweeper_mu
  std::thread sweeper;

  State(ServiceOptions o, audit::Log& l)
      : options(std::move(o)), log(l), limiter(options.max_rate_counters) {}

  std::shared_ptr<const policy::Policy> CurrentPolicy() const {
    std::lock_guard lock(policy_mu);
    return policy;
  }
  // The key named `name`, or nullptr.
  const internal::KeyEntry* FindKey(std::string_view name) const {
    std::shared_lock lock(keys_mu);
    const auto it = keys.find(name);
    return it == keys.end() ? nullptr : it->second.get();
  }
};

namespace internal {

using State = SignService::State;

// One POST /v1/sign in flight. Shared by the callbacks that carry it along.
struct SignCall {
  std::shared_ptr<State> state;
  const KeyEntry* key = nullptr;  // null when the key is unknown
  std::shared_ptr<const policy::Policy> policy;
  net::Peer peer;
  std::string request_id;
  SignBody envelope;
  std::vector<SignItem> items;
  bool cbor = false;
  policy::Verdict verdict;
  // Counts the answer in State::metrics (once), then sends it: see CountingResponder.
  net::Responder respond;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::atomic<bool> counted{false};
  // A held request signed after its approvals: who approved (the sign records carry them).
  std::vector<audit::Approver> approvers;
};

// Wraps `respond` so that the first answer sent through it is counted in the state's metrics
// (result by status, key, items, latency since `call->started`, rule) before it goes out. Holds
// `call` weakly (the call owns the result); an answer sent after the call is gone is not counted.
net::Responder CountingResponder(const std::shared_ptr<SignCall>& call, net::Responder respond);

net::Response JsonResponse(int status, const nlohmann::json& body);
// JSON, or CBOR when the request was CBOR.
net::Response Encode(int status, const nlohmann::json& body, bool cbor);
net::Response AuditUnavailable(const Error& error);

// The requester fields of a record: uid, user, groups and pid of a Unix peer; certificate subject,
// fingerprint and address of a TLS peer.
void SetRequester(audit::Record& r, const net::Peer& peer);
// The fields every record of `call` shares.
audit::Record BaseRecord(const SignCall& call, audit::RecordKind kind);
// Writes one `deny` record for `call` and sends `answer` once it is durable (503 if it cannot
// be written).
void DenyAfterAudit(const std::shared_ptr<SignCall>& call, std::string decision, std::string rule,
                    std::string detail, net::Response answer);
// Records the HSM failure as a denial and answers 503 "hsm_unavailable".
void FailHsm(const std::shared_ptr<SignCall>& call, const Error& error);

// From the policy decision on (service.cc): refuses a disabled key, evaluates the policy (holding
// the request when its rule needs approvals, approvals.cc), charges rate limits, and signs.
// `call` has its key and checked items.
void DecideAndSign(const std::shared_ptr<SignCall>& call);
// Holds `call` for approval (approvals.cc): records it (`approval`, decision "hold"), stores it,
// and answers 202. Without an approval store, denies saying approvals are not configured.
void Hold(const std::shared_ptr<SignCall>& call);
// Starts and stops the expiry sweeper (approvals.cc); Stop joins it.
void StartSweeper(const std::shared_ptr<State>& state);
void StopSweeper(State& state);
// GET /v1/requests/ID on the sign socket (approvals.cc).
void HandleRequestStatus(const State& state, const net::Request& request, std::string_view id,
                         net::Responder& respond);

// Format "batch" (batch.cc): builds the leaves, splits them into batches of at most
// ServiceOptions::max_batch_leaves, has the HSM sign each batch's statement, records a `batch`
// record per batch and one `sign` record per artifact, and answers once they are durable. With a
// gathering window for the key, the request first waits in its BatchGatherer.
void SignBatches(const std::shared_ptr<SignCall>& call);

}  // namespace internal
}  // namespace signet::service

#endif  // SIGNET_APPLIANCE_SERVICE_INTERNAL_CALL_H_
