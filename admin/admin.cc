// The admin API's core: workers, routing, roles, the accept-time peer check, and records.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <utility>

#include "admin/internal/state.h"

namespace signet::admin {
namespace internal {
namespace {

using nlohmann::json;

constexpr std::array kRoles = {policy::Role::kAdmin, policy::Role::kApprover,
                               policy::Role::kAuditor};

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// Percent-decoding ('+' is a space, as forms send it); a malformed escape is kept as written.
std::string Unescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::map<std::string, std::string, std::less<>> ParseQuery(std::string_view query) {
  std::map<std::string, std::string, std::less<>> out;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    const std::size_t eq = pair.find('=');
    out[Unescape(pair.substr(0, eq))] =
        eq == std::string_view::npos ? std::string() : Unescape(pair.substr(eq + 1));
  }
  return out;
}

std::string RoleList(const std::set<policy::Role>& roles) {
  std::string out;
  for (const policy::Role role : roles) {
    out += out.empty() ? "" : ",";
    out += policy::RoleName(role);
  }
  return out;
}

void HandleHealth(State& state, Call& call) {
  // The sign socket's health answer, plus the age of the latest checkpoint.
  net::Request inner;
  inner.method = "GET";
  inner.target = "/v1/health";
  inner.request_id = call.request.request_id;
  const audit::LogStats stats = state.log.stats();
  auto respond = call.respond;
  state.service.Handle(std::move(inner), [respond, stats](net::Response response) {
    json body = json::parse(response.body, nullptr, false);
    if (body.is_object() && stats.checkpoint_size > 0) {
      const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now() - stats.checkpoint_time);
      body["audit"]["checkpoint_age_ms"] = age.count();
      response.body = body.dump();
    }
    respond(std::move(response));
  });
}

void Route(State& state, Call& call) {
  const std::string& path = call.path;
  const std::string& method = call.request.method;
  if (path == "/metrics") {
    if (method != "GET") {
      call.respond(net::JsonError(405, "method_not_allowed", "use GET /metrics"));
      return;
    }
    net::Response response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = RenderMetrics(state);
    call.respond(std::move(response));
    return;
  }
  if (path == "/v1/health") {
    if (method != "GET") {
      call.respond(net::JsonError(405, "method_not_allowed", "use GET /v1/health"));
      return;
    }
    HandleHealth(state, call);
    return;
  }
  if (path == "/v1/policy" || path.starts_with("/v1/policy/")) {
    HandlePolicy(state, call);
    return;
  }
  if (path == "/v1/approvals" || path.starts_with("/v1/approvals/")) {
    HandleApprovals(state, call);
    return;
  }
  if (path == "/v1/keys" || path.starts_with("/v1/keys/")) {
    HandleKeys(state, call);
    return;
  }
  if (path.starts_with("/v1/audit/")) {
    HandleAudit(state, call);
    return;
  }
  call.respond(net::JsonError(
      404, "not_found",
      "no such endpoint: " + method + " " + path + "; the admin API is described in admin/API.md"));
}

}  // namespace

std::set<policy::Role> RolesOf(const policy::Policy& policy, const policy::Principal& principal) {
  std::set<policy::Role> roles;
  for (const policy::Role role : kRoles) {
    if (policy.HasRole(principal, role)) {
      roles.insert(role);
    }
  }
  return roles;
}

net::Response JsonResponse(int status, const json& body) {
  net::Response response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

net::Response RoleRequired(const Call& call, policy::Role role) {
  const std::string name(policy::RoleName(role));
  return JsonResponse(
      403, json{{"code", "role_required"},
                {"role", name},
                {"message", call.request.method + " " + call.path + " needs the " + name +
                                " role; " + call.who + " has " +
                                (call.roles.empty() ? "none" : RoleList(call.roles)) +
                                " (roles are the [roles] table of the policy)"}});
}

net::Response AuditUnavailable(const Error& error) {
  return net::JsonError(
      503, "audit_unavailable",
      "the audit log cannot record this action, so nothing was changed: " + error.message());
}

net::Response ErrorResponse(const Error& error) {
  int status = 500;
  switch (error.code()) {
    case ErrorCode::kInvalidArgument:
      status = 400;
      break;
    case ErrorCode::kNotFound:
      status = 404;
      break;
    case ErrorCode::kPermissionDenied:
      status = 403;
      break;
    case ErrorCode::kUnavailable:
      status = 503;
      break;
    default:
      break;
  }
  std::string code(ErrorCodeName(error.code()));
  std::replace(code.begin(), code.end(), ' ', '_');
  return net::JsonError(status, code, error.message());
}

audit::Record ActionRecord(const Call& call, audit::RecordKind kind, std::string decision,
                           std::string detail) {
  return PeerRecord(call.request.peer, call.request.request_id, kind, std::move(decision),
                    std::move(detail));
}

audit::Record PeerRecord(const net::Peer& peer, std::string request_id, audit::RecordKind kind,
                         std::string decision, std::string detail) {
  audit::Record r;
  r.kind = kind;
  r.request_id = std::move(request_id);
  r.requester.uid = peer.uid;
  r.requester.user = peer.user;
  r.requester.groups = peer.groups;
  r.peer_pid = peer.pid;
  r.decision = std::move(decision);
  r.detail = std::move(detail);
  return r;
}

Result<audit::SeqRange> Record(State& state, audit::Record record) {
  std::vector<audit::Record> records;
  records.push_back(std::move(record));
  return state.log.Append(std::move(records), Deadline::In(std::chrono::seconds(30)));
}

void RecordAnswer(State& state, const net::Peer& peer, const std::string& request_id,
                  const std::string& method, const std::string& target, net::Response& response) {
  // Only an error's body is read (for its code and message); a page of records is not parsed.
  const auto body = response.status < 400 || response.stream
                        ? nlohmann::json()
                        : nlohmann::json::parse(response.body, nullptr, false);
  const std::string code = body.is_object() ? body.value("code", std::string()) : std::string();
  const std::string message =
      body.is_object() ? body.value("message", std::string()).substr(0, 1024) : std::string();
  const std::string request = method + " " + target.substr(0, 512);
  // A refusal for a missing role is a denial; it is recorded without holding up the answer (a
  // peer cannot slow the log's writer down by asking for what it may not have).
  if (response.status == 403 && (code == "role_required" || code == "no_role")) {
    const std::string detail = request + " refused: " + message;
    std::vector<audit::Record> records;
    records.push_back(PeerRecord(peer, request_id, audit::RecordKind::kAdmin, "deny", detail));
    auto submitted = state.log.Submit(std::move(records), [](Result<audit::SeqRange> committed) {
      if (!committed) {
        spdlog::error("admin: refusal not recorded: {}", committed.error().ToString());
      }
    });
    if (!submitted) {
      spdlog::error("admin: refusal not recorded: {}", submitted.error().ToString());
    }
    return;
  }
  // Anything else is recorded before the answer leaves: no record, no answer (an error is still
  // answered, as it gives nothing away).
  std::string detail = request + " answered " + std::to_string(response.status);
  if (response.status >= 400) {
    detail += " " + code + ": " + message;
  }
  const std::string decision =
      response.status >= 400 ? "error" : (method == "GET" ? "read" : "request");
  auto committed =
      Record(state, PeerRecord(peer, request_id, audit::RecordKind::kAdmin, decision, detail));
  if (!committed) {
    spdlog::error("admin: {} {} not recorded: {}", method, target.substr(0, 512),
                  committed.error().ToString());
    if (response.status < 400) {
      response = AuditUnavailable(committed.error());
    }
  }
}

bool RunExport(State& state, std::function<void()> task) {
  {
    std::lock_guard lock(state.exports_mu);
    if (state.exports_running >= state.options.max_exports) {
      return false;
    }
    ++state.exports_running;
  }
  std::thread([&state, task = std::move(task)] {
    try {
      task();
    } catch (const std::exception& e) {
      spdlog::error("admin: audit export failed: {}", e.what());
    } catch (...) {
      spdlog::error("admin: audit export failed with a non-exception");
    }
    // The last touch of `state`: its destructor waits for exports_running to reach 0.
    std::lock_guard lock(state.exports_mu);
    --state.exports_running;
    state.exports_cv.notify_all();
  }).detach();
  return true;
}

}  // namespace internal

AdminService::AdminService(std::shared_ptr<State> state) : state_(std::move(state)) {}

AdminService::~AdminService() {
  {
    std::lock_guard lock(state_->queue_mu);
    state_->stopping = true;
  }
  state_->queue_cv.notify_all();
  for (std::thread& worker : state_->workers) {
    worker.join();
  }
  // An export still streaming stops at its next write once the admin socket's server has stopped
  // (signetd stops it first).
  std::unique_lock lock(state_->exports_mu);
  state_->exports_cv.wait(lock, [this] { return state_->exports_running == 0; });
}

Result<std::unique_ptr<AdminService>> AdminService::Create(
    AdminOptions options, StateStore& store, service::SignService& service, audit::Log& log,
    std::map<std::string, hsm::Token*> tokens) {
  if (options.workers == 0 || options.workers > 16) {
    return MakeError(ErrorCode::kInvalidArgument, "admin workers must be 1 to 16");
  }
  if (options.max_exports == 0 || options.max_exports > 16) {
    return MakeError(ErrorCode::kInvalidArgument, "admin max_exports must be 1 to 16");
  }
  if (options.max_records_page == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "max_records_page must be at least 1");
  }
  auto state = std::make_shared<State>(std::move(options), store, service, log, std::move(tokens));
  if (auto restored = internal::RestoreKeys(*state); !restored) {
    return MakeError(std::move(restored).error().WithContext("restore the stored keys"));
  }
  for (unsigned i = 0; i < state->options.workers; ++i) {
    state->workers.emplace_back([raw = state.get()] {
      for (;;) {
        std::function<void()> task;
        {
          std::unique_lock lock(raw->queue_mu);
          raw->queue_cv.wait(lock, [raw] { return raw->stopping || !raw->queue.empty(); });
          if (raw->queue.empty()) {
            return;  // stopping, and nothing left to answer
          }
          task = std::move(raw->queue.front());
          raw->queue.pop_front();
        }
        task();
      }
    });
  }
  return std::unique_ptr<AdminService>(new AdminService(std::move(state)));
}

bool AdminService::AcceptPeer(const net::Peer& peer) {
  const auto policy = state_->service.policy();
  const policy::Principal principal = internal::PrincipalOf(peer);
  if (!internal::RolesOf(*policy, principal).empty()) {
    return true;
  }
  const std::string who = policy::PrincipalName(principal);
  // One record per uid per minute: a peer that reconnects in a loop must not fill the log. The
  // attempts in between are counted and named in the next record (and logged every time).
  std::uint64_t suppressed = 0;
  {
    std::lock_guard lock(state_->refusals_mu);
    const auto now = std::chrono::steady_clock::now();
    auto& entry = state_->refusals[peer.uid];
    if (entry.last_recorded.time_since_epoch().count() != 0 &&
        now - entry.last_recorded < std::chrono::minutes(1)) {
      ++entry.suppressed;
      spdlog::warn(
          "admin socket: {} (uid {}) holds no role; disconnected (recorded at most once "
          "a minute)",
          who, peer.uid);
      return false;
    }
    if (state_->refusals.size() > 4096) {
      state_->refusals.clear();  // bounded: forget old peers rather than grow
    }
    suppressed = entry.suppressed;
    state_->refusals[peer.uid] = {now, 0};
  }
  const std::string detail =
      "admin socket: " + who + " (uid " + std::to_string(peer.uid) + ", pid " +
      (peer.pid ? std::to_string(*peer.pid) : "?") +
      ") holds no role (admin, approver, auditor) in policy " + policy->version().substr(0, 12) +
      "; disconnected" +
      (suppressed > 0 ? " (" + std::to_string(suppressed) +
                            " earlier attempts in the last minute were not recorded)"
                      : "");
  spdlog::warn("{}", detail);
  audit::Record r;
  r.kind = audit::RecordKind::kAdmin;
  r.requester.uid = peer.uid;
  r.requester.user = peer.user;
  r.requester.groups = peer.groups;
  r.peer_pid = peer.pid;
  r.peer_address = peer.address;
  r.decision = "deny";
  r.policy_version = policy->version();
  r.detail = detail;
  std::vector<audit::Record> records;
  records.push_back(std::move(r));
  // On an I/O thread: submit, never wait.
  auto submitted = state_->log.Submit(std::move(records), [](Result<audit::SeqRange> committed) {
    if (!committed) {
      spdlog::error("admin socket: refused peer not recorded: {}", committed.error().ToString());
    }
  });
  if (!submitted) {
    spdlog::error("admin socket: refused peer not recorded: {}", submitted.error().ToString());
  }
  return false;
}

void AdminService::Handle(net::Request request, net::Responder respond) {
  auto call = std::make_shared<internal::Call>();
  const std::size_t q = request.target.find('?');
  call->path = request.target.substr(0, q);
  if (q != std::string::npos) {
    call->query = internal::ParseQuery(std::string_view(request.target).substr(q + 1));
  }
  call->request = std::move(request);
  call->respond = std::move(respond);
  State* state = state_.get();
  {
    std::lock_guard lock(state->queue_mu);
    if (state->stopping) {
      call->respond(net::JsonError(503, "unavailable", "signetd is stopping"));
      return;
    }
    state->queue.push_back([state, call] {
      // Roles are read again per request: a policy applied since the connection was accepted
      // counts (a peer who lost every role is refused here).
      const auto policy = state->service.policy();
      const policy::Principal principal = internal::PrincipalOf(call->request.peer);
      // Count every answer by endpoint group and status, for GET /metrics.
      std::string group = "other";
      for (const char* known : {"policy", "keys", "approvals", "audit", "health"}) {
        if (call->path.starts_with(std::string("/v1/") + known)) {
          group = known;
        }
      }
      if (call->path == "/metrics") {
        group = "metrics";
      }
      call->respond = [state, group, peer = call->request.peer, method = call->request.method,
                       target = call->request.target, request_id = call->request.request_id,
                       recorded = call->recorded,
                       respond = std::move(call->respond)](net::Response r) {
        if (group != "metrics" && group != "health" && !recorded->load()) {
          internal::RecordAnswer(*state, peer, request_id, method, target, r);
        }
        const auto count = [state, group](int status) {
          std::lock_guard count_lock(state->requests_mu);
          ++state->requests[{group, status}];
        };
        if (!r.stream) {
          count(r.status);
          respond(std::move(r));
          return;
        }
        // A streamed answer is counted once it has ended: its refusal, if it gave one, counts.
        int status = r.status;
        if (r.refuse_stream) {
          r.refuse_stream = [&status, refuse = std::move(r.refuse_stream)](const Error& error) {
            net::Response refusal = refuse(error);
            status = refusal.status;
            return refusal;
          };
        }
        respond(std::move(r));  // returns when the body has been produced
        count(status);
      };
      call->roles = internal::RolesOf(*policy, principal);
      call->who = policy::PrincipalName(principal);
      if (call->roles.empty()) {
        call->respond(
            net::JsonError(403, "no_role", call->who + " holds no role in the current policy"));
        return;
      }
      try {
        internal::Route(*state, *call);
      } catch (const std::exception& e) {
        spdlog::error("admin request {}: {}", call->request.request_id, e.what());
        call->respond(net::JsonError(500, "internal", e.what()));
      }
    });
  }
  state->queue_cv.notify_one();
}

net::Handler AdminService::handler() {
  return [this](net::Request request, net::Responder respond) {
    Handle(std::move(request), std::move(respond));
  };
}

}  // namespace signet::admin
