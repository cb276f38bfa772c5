// admin/internal/state.h: what the admin API's files share: the service's state, one request in
// flight (Call), and the helpers that check roles, record actions and answer.
//   admin.cc       workers, routing, roles, AcceptPeer, records
//   policy_api.cc  /v1/policy...
//   keys_api.cc    /v1/keys...
//   approvals_api.cc /v1/approvals...
//   audit_api.cc   /v1/audit/...
//   metrics.cc     /metrics
#ifndef SIGNET_ADMIN_INTERNAL_STATE_H_
#define SIGNET_ADMIN_INTERNAL_STATE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "admin/admin.h"

namespace signet::admin {

struct AdminService::State {
  AdminOptions options;
  StateStore& store;
  service::SignService& service;
  audit::Log& log;
  std::map<std::string, hsm::Token*> tokens;
  // Keys generated through the admin API that could not be served at start (the HSM no longer
  // has them, ...), by name: the reason. Set by Create, read-only afterwards.
  std::map<std::string, std::string> unloaded_keys;

  // Refused peers by uid: when one was last recorded, and attempts since (AcceptPeer).
  struct Refusals {
    std::chrono::steady_clock::time_point last_recorded{};
    std::uint64_t suppressed = 0;
  };
  std::mutex refusals_mu;
  std::map<std::uint32_t, Refusals> refusals;  // guarded by refusals_mu

  // Admin requests answered, by (endpoint group, status): GET /metrics shows them.
  std::mutex requests_mu;
  std::map<std::pair<std::string, int>, std::uint64_t> requests;  // guarded by requests_mu

  // Serializes changes (policy apply, key changes) so that versions are numbered in the order
  // they take effect.
  std::mutex change_mu;

  // The workers and their queue.
  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<std::function<void()>> queue;  // guarded by queue_mu
  bool stopping = false;                    // guarded by queue_mu
  std::vector<std::thread> workers;

  // Audit exports streaming now, each on a detached thread of its own (RunExport); the destructor
  // waits for them.
  std::mutex exports_mu;
  std::condition_variable exports_cv;
  unsigned exports_running = 0;  // guarded by exports_mu

  State(AdminOptions o, StateStore& st, service::SignService& sv, audit::Log& l,
        std::map<std::string, hsm::Token*> t)
      : options(std::move(o)), store(st), service(sv), log(l), tokens(std::move(t)) {}
};

namespace internal {

using State = AdminService::State;

// One admin request on a worker.
struct Call : std::enable_shared_from_this<Call> {
  net::Request request;
  std::string path;  // the target without its query
  // The query's parameters, percent-decoded (a name given twice keeps the last value).
  std::map<std::string, std::string, std::less<>> query;
  std::set<policy::Role> roles;  // the peer's roles under the current policy
  std::string who;               // policy::PrincipalName of the peer: "user:alice", "uid:1000"
  net::Responder respond;
  // Set by a handler that recorded what it did (a change, an export). Every other answer is
  // recorded by `respond` itself before it leaves (kind admin, decision read, request or error),
  // except /metrics and /v1/health.
  std::shared_ptr<std::atomic<bool>> recorded = std::make_shared<std::atomic<bool>>(false);

  bool Has(policy::Role role) const { return roles.contains(role); }
};

using service::PrincipalOf;
std::set<policy::Role> RolesOf(const policy::Policy& policy, const policy::Principal& principal);

net::Response JsonResponse(int status, const nlohmann::json& body);
// 403 {"code": "role_required", "role": ..., "message": ...}.
net::Response RoleRequired(const Call& call, policy::Role role);
net::Response AuditUnavailable(const Error& error);
// An Error as a response: kInvalidArgument 400, kNotFound 404, kPermissionDenied 403,
// kUnavailable 503, others 500; {"code": the code's name with '_', "message": ...}.
net::Response ErrorResponse(const Error& error);

// A record of an admin action by `call`'s peer (requester, request id, pid).
audit::Record ActionRecord(const Call& call, audit::RecordKind kind, std::string decision,
                           std::string detail);
audit::Record PeerRecord(const net::Peer& peer, std::string request_id, audit::RecordKind kind,
                         std::string decision, std::string detail);
// Records the answer `response` to a request no handler recorded (Call::recorded), before it
// leaves: kind admin, decision "read" (a GET), "request" or "error", with method, target and
// status in `detail`. A refusal for a missing role is decision "deny", submitted without waiting.
// When the record cannot be committed, a successful answer becomes 503 audit_unavailable.
void RecordAnswer(State& state, const net::Peer& peer, const std::string& request_id,
                  const std::string& method, const std::string& target, net::Response& response);
// Runs `task` on a detached thread of its own, counted in State::exports_running; false (and
// `task` not run) when options.max_exports are running already.
[[nodiscard]] bool RunExport(State& state, std::function<void()> task);
// Appends `record` and waits for the commit (workers may block). Errors: those of Log::Append.
[[nodiscard]] Result<audit::SeqRange> Record(State& state, audit::Record record);

// audit_api.cc: GET /v1/audit/records, /v1/audit/export, /v1/audit/checkpoint,
// /v1/audit/consistency. `call.path` starts with "/v1/audit/". Needs the auditor role.
void HandleAudit(State& state, Call& call);

// policy_api.cc: /v1/policy, /v1/policy/validate, /v1/policy/versions[/N], /v1/policy/explain.
void HandlePolicy(State& state, Call& call);

// keys_api.cc: GET/POST /v1/keys, POST /v1/keys/NAME/disable|enable.
void HandleKeys(State& state, Call& call);
// keys_api.cc: serves the keys generated through the admin API and disables the keys stored as
// disabled (AdminService::Create). A stored key that cannot be loaded is logged and listed, not
// served. Errors: the store's.
[[nodiscard]] Status RestoreKeys(State& state);

// approvals_api.cc: GET /v1/approvals[/ID], POST /v1/approvals/ID/approve|deny.
void HandleApprovals(State& state, Call& call);

// metrics.cc: the Prometheus text exposition (format 0.0.4) of every metric.
std::string RenderMetrics(State& state);

}  // namespace internal
}  // namespace signet::admin

#endif  // SIGNET_ADMIN_INTERNAL_STATE_H_
