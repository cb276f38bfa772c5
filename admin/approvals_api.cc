// Approvals: GET /v1/approvals[/ID], POST /v1/approvals/ID/approve, POST /v1/approvals/ID/deny.
#include "admin/internal/state.h"

namespace signet::admin::internal {
namespace {

using nlohmann::json;

constexpr std::size_t kListedArtifacts = 20;
constexpr std::size_t kMaxReasonBytes = 1024;

json HeldJson(const service::HeldRequest& h, bool every_item) {
  json approvals = json::array();
  for (const auto& a : h.approvals) {
    approvals.push_back(json{{"identity", a.identity}, {"time_us", a.time_us}});
  }
  json out{{"id", h.id},
           {"status", h.status},
           {"requester", h.requester_name},
           {"key", h.key},
           {"rule", h.rule},
           {"tool", h.tool_name},
           {"tool_version", h.tool_version},
           {"client_host", h.client_host},
           {"ticket", h.ticket},
           {"items", h.items.size()},
           {"approvals_required", h.approvals_required},
           {"approvals", std::move(approvals)},
           {"created_time_us", h.created_us},
           {"expires_time_us", h.expires_us}};
  if (!h.reason.empty()) {
    out["reason"] = h.reason;
  }
  if (!h.denied_by.empty()) {
    out["denied_by"] = h.denied_by;
  }
  if (every_item) {
    json items = json::array();
    for (const auto& item : h.items) {
      json i{{"name", item.name}, {"digests", item.digests}};
      if (item.size) {
        i["size"] = *item.size;
      }
      items.push_back(std::move(i));
    }
    out["artifacts"] = std::move(items);
  } else {
    json names = json::array();
    for (std::size_t i = 0; i < h.items.size() && i < kListedArtifacts; ++i) {
      names.push_back(h.items[i].name);
    }
    out["artifacts"] = std::move(names);
  }
  return out;
}

net::Response Outcome(const service::ApprovalOutcome& outcome) {
  if (outcome.status != 200) {
    return JsonResponse(outcome.status, json{{"code", outcome.code}, {"message", outcome.message}});
  }
  return JsonResponse(200, HeldJson(outcome.request, false));
}

// The service records an approval or denial it accepted (kind approval); a refused one is
// recorded with the answer, like any other request.
void RespondToDecision(Call& call, const service::ApprovalOutcome& outcome) {
  if (outcome.status == 200) {
    call.recorded->store(true);
  }
  call.respond(Outcome(outcome));
}

}  // namespace

void HandleApprovals(State& state, Call& call) {
  using policy::Role;
  const std::string& path = call.path;
  const std::string& method = call.request.method;
  if (path == "/v1/approvals") {
    if (method != "GET") {
      call.respond(net::JsonError(405, "method_not_allowed", "use GET /v1/approvals"));
      return;
    }
    if (!call.Has(Role::kApprover) && !call.Has(Role::kAdmin) && !call.Has(Role::kAuditor)) {
      call.respond(RoleRequired(call, Role::kApprover));
      return;
    }
    const auto status = call.query.find("status");
    const std::string wanted = status == call.query.end() ? "pending" : status->second;
    if (wanted != "pending" && wanted != "all") {
      call.respond(net::JsonError(400, "malformed", "status is \"pending\" or \"all\""));
      return;
    }
    auto held = state.service.HeldRequests(wanted == "pending");
    if (!held) {
      call.respond(ErrorResponse(held.error()));
      return;
    }
    json list = json::array();
    for (const auto& h : *held) {
      list.push_back(HeldJson(h, false));
    }
    call.respond(JsonResponse(200, json{{"approvals", std::move(list)}}));
    return;
  }
  const std::string rest = path.substr(std::string_view("/v1/approvals/").size());
  const std::size_t slash = rest.find('/');
  const std::string id = rest.substr(0, slash);
  const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (action.empty()) {
    if (method != "GET") {
      call.respond(net::JsonError(405, "method_not_allowed", "use GET " + path));
      return;
    }
    if (!call.Has(Role::kApprover) && !call.Has(Role::kAdmin) && !call.Has(Role::kAuditor)) {
      call.respond(RoleRequired(call, Role::kApprover));
      return;
    }
    auto held = state.service.Held(id);
    if (!held) {
      call.respond(held.error().code() == ErrorCode::kNotFound
                       ? net::JsonError(404, "unknown_approval", held.error().message())
                       : ErrorResponse(held.error()));
      return;
    }
    call.respond(JsonResponse(200, HeldJson(*held, true)));
    return;
  }
  if (action != "approve" && action != "deny") {
    call.respond(net::JsonError(
        404, "not_found",
        "no such endpoint: " + path + "; POST /v1/approvals/ID/approve or /v1/approvals/ID/deny"));
    return;
  }
  if (method != "POST") {
    call.respond(net::JsonError(405, "method_not_allowed", "use POST " + path));
    return;
  }
  if (!call.Has(Role::kApprover)) {
    call.respond(RoleRequired(call, Role::kApprover));
    return;
  }
  if (action == "approve") {
    RespondToDecision(call, state.service.Approve(id, call.request.peer));
    return;
  }
  const json body = json::parse(call.request.body, nullptr, false);
  if (!body.is_object() || !body.contains("reason") || !body["reason"].is_string() ||
      body["reason"].get<std::string>().empty()) {
    call.respond(net::JsonError(400, "malformed",
                                "a denial needs a reason: {\"reason\": \"...\"}; the requester "
                                "sees it"));
    return;
  }
  std::string reason = body["reason"].get<std::string>();
  if (reason.size() > kMaxReasonBytes) {
    call.respond(net::JsonError(400, "malformed", "the reason is at most 1024 bytes"));
    return;
  }
  RespondToDecision(call, state.service.Deny(id, call.request.peer, std::move(reason)));
}

}  // namespace signet::admin::internal
