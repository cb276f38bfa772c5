// Approvals: holding a request whose rule needs approvals, approving and denying it, expiring it,
// signing it once approved, and GET /v1/requests/ID for the requester.
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <utility>

#include "appliance/service/internal/call.h"

namespace signet::service {
namespace internal {
namespace {

using nlohmann::json;

std::int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json ApprovalsJson(const std::vector<audit::Approver>& approvals) {
  json out = json::array();
  for (const auto& a : approvals) {
    out.push_back(json{{"identity", a.identity}, {"time_us", a.time_us}});
  }
  return out;
}

// The status a reader sees: a pending request past its expiry is expired, recorded or not.
std::string EffectiveStatus(const HeldRequest& held) {
  return held.status == "pending" && NowUs() > held.expires_us ? "expired" : held.status;
}

// A record about held request `held` (its requester, key and rule), not of a sign call.
audit::Record HeldRecord(const HeldRequest& held, std::string decision, std::string detail) {
  audit::Record r;
  r.kind = audit::RecordKind::kApproval;
  r.request_id = held.id;
  r.ticket = held.ticket;
  r.client_host = held.client_host;
  r.tool_name = held.tool_name;
  r.tool_version = held.tool_version;
  SetRequester(r, held.requester);
  r.key_name = held.key;
  r.policy_rule = held.rule;
  r.approvers = held.approvals;
  r.decision = std::move(decision);
  r.detail = std::move(detail);
  return r;
}

Result<audit::SeqRange> Append(State& state, audit::Record record) {
  std::vector<audit::Record> records;
  records.push_back(std::move(record));
  return state.log.Append(std::move(records), Deadline::In(std::chrono::seconds(30)));
}

ApprovalOutcome Refuse(int status, std::string code, std::string message, HeldRequest held = {}) {
  return ApprovalOutcome{.status = status,
                         .code = std::move(code),
                         .message = std::move(message),
                         .request = std::move(held)};
}

// Records and stores the expiry of a pending request past due. Call with approvals_mu held.
void ExpireIfDue(State& state, HeldRequest& held) {
  if (held.status != "pending" || NowUs() <= held.expires_us) {
    return;
  }
  auto recorded = Append(
      state, HeldRecord(held, "expire",
                        "held request expired with " + std::to_string(held.approvals.size()) +
                            " of " + std::to_string(held.approvals_required) + " approvals"));
  if (!recorded) {
    spdlog::error("held request {}: expiry not recorded: {}", held.id, recorded.error().ToString());
    return;  // tried again by the next sweep; readers see it expired meanwhile
  }
  held.status = "expired";
  if (auto stored = state.approvals->PutHeld(held); !stored) {
    spdlog::error("held request {}: expiry not stored: {}", held.id, stored.error().ToString());
  }
}

// Signs an approved request: the call is rebuilt from what was stored, and its answer (200 or a
// refusal) is stored for the requester to collect.
void StartSigning(const std::shared_ptr<State>& state, const HeldRequest& held) {
  auto call = std::make_shared<SignCall>();
  call->state = state;
  call->peer = held.requester;
  call->request_id = held.id;
  call->envelope.key = held.key;
  call->envelope.tool_name = held.tool_name;
  call->envelope.tool_version = held.tool_version;
  call->envelope.client_host = held.client_host;
  call->envelope.ticket = held.ticket;
  call->envelope.item_count = held.items.size();
  for (const HeldItem& item : held.items) {
    call->items.push_back(SignItem{.name = item.name, .size = item.size, .digests = item.digests});
  }
  call->approvers = held.approvals;
  call->policy = state->CurrentPolicy();
  ApprovalStore* store = state->approvals;
  const std::string id = held.id;
  call->respond = CountingResponder(call, [store, id](net::Response response) {
    auto current = store->GetHeld(id);
    if (!current) {
      spdlog::error("held request {}: result not stored: {}", id, current.error().ToString());
      return;
    }
    current->result_status = response.status;
    current->result_body = response.body;
    if (response.status == 200) {
      current->status = "signed";
    } else {
      current->status = "failed";
      const json body = json::parse(response.body, nullptr, false);
      current->reason = body.is_object() ? body.value("message", response.body) : response.body;
    }
    if (auto stored = store->PutHeld(*current); !stored) {
      spdlog::error("held request {}: result not stored: {}", id, stored.error().ToString());
    }
    spdlog::info("held request {}: {}", id, current->status);
  });
  call->key = state->FindKey(held.key);
  if (call->key == nullptr) {
    DenyAfterAudit(
        call, "deny", held.rule, "unknown key",
        net::JsonError(404, "unknown_key", "the key \"" + held.key + "\" no longer exists"));
    return;
  }
  if (auto health = state->log.health(); !health) {
    call->respond(AuditUnavailable(health.error()));
    return;
  }
  DecideAndSign(call);
}

}  // namespace

void Hold(const std::shared_ptr<SignCall>& call) {
  State& state = *call->state;
  const policy::Verdict& v = call->verdict;
  if (state.approvals == nullptr) {
    const std::string message = v.reason + "; approvals are not configured on this signetd";
    DenyAfterAudit(
        call, "deny", v.rule, message,
        JsonResponse(403, json{{"code", "denied"}, {"message", message}, {"rule", v.rule}}));
    return;
  }
  HeldRequest held;
  held.id = call->request_id;
  held.requester = call->peer;
  held.requester_name = policy::PrincipalName(PrincipalOf(call->peer));
  held.key = call->envelope.key;
  held.tool_name = call->envelope.tool_name;
  held.tool_version = call->envelope.tool_version;
  held.client_host = call->envelope.client_host;
  held.ticket = call->envelope.ticket;
  for (const SignItem& item : call->items) {
    held.items.push_back(HeldItem{.name = item.name, .size = item.size, .digests = item.digests});
  }
  held.rule = v.rule;
  held.approvals_required = v.approvals;
  held.created_us = NowUs();
  held.expires_us =
      held.created_us +
      std::chrono::duration_cast<std::chrono::microseconds>(state.options.approval_ttl).count();

  audit::Record r = BaseRecord(*call, audit::RecordKind::kApproval);
  r.decision = "hold";
  r.policy_rule = v.rule;
  r.detail = "held for approval: " + v.reason;
  if (!call->items.empty()) {
    r.artifact_name = call->items.front().name;
    r.artifact_size = call->items.front().size;
    r.digests = call->items.front().digests;
  }
  std::vector<audit::Record> records;
  records.push_back(std::move(r));
  auto shared = std::make_shared<HeldRequest>(std::move(held));
  // The record first (no record, no change), then the store, then the answer. Both run on the
  // log's writer thread: a held request is rare, and its store write is one short transaction.
  auto submitted =
      state.log.Submit(std::move(records), [call, shared](Result<audit::SeqRange> committed) {
        if (!committed) {
          call->respond(AuditUnavailable(committed.error()));
          return;
        }
        if (auto stored = call->state->approvals->PutHeld(*shared); !stored) {
          spdlog::error("request {}: held but not stored: {}", call->request_id,
                        stored.error().ToString());
          call->respond(net::JsonError(
              503, "approval_store_unavailable",
              "the request could not be held for approval: " + stored.error().message()));
          return;
        }
        const HeldRequest& h = *shared;
        spdlog::info("request {} held for {} approvals (rule {}, key {}, {})", h.id,
                     h.approvals_required, h.rule, h.key, h.requester_name);
        call->respond(
            Encode(202,
                   json{{"status", "pending"},
                        {"approval_id", h.id},
                        {"request_id", h.id},
                        {"key", h.key},
                        {"rule", h.rule},
                        {"approvals_required", h.approvals_required},
                        {"approvals", json::array()},
                        {"expires_time_us", h.expires_us},
                        {"message", call->verdict.reason + "; held as " + h.id +
                                        ": an approver runs `signet admin approvals approve " +
                                        h.id + "`, then collect with GET /v1/requests/" + h.id}},
                   call->cbor));
      });
  if (!submitted) {
    call->respond(AuditUnavailable(submitted.error()));
  }
}

void HandleRequestStatus(const State& state, const net::Request& request, std::string_view id,
                         net::Responder& respond) {
  if (state.approvals == nullptr) {
    respond(net::JsonError(404, "unknown_request", "approvals are not configured"));
    return;
  }
  auto held = state.approvals->GetHeld(id);
  if (!held) {
    if (held.error().code() == ErrorCode::kNotFound) {
      respond(net::JsonError(404, "unknown_request",
                             "no held request " + std::string(id).substr(0, 64)));
    } else {
      respond(net::JsonError(500, "internal", held.error().message()));
    }
    return;
  }
  const std::string asker = policy::PrincipalName(PrincipalOf(request.peer));
  if (asker != held->requester_name) {
    respond(net::JsonError(403, "not_yours",
                           "request " + held->id + " was made by " + held->requester_name +
                               "; only they can collect it"));
    return;
  }
  const std::string status = EffectiveStatus(*held);
  json body;
  if (status == "signed") {
    body = json::parse(held->result_body, nullptr, false);
    if (!body.is_object()) {
      body = json::object();
    }
  } else if (status == "failed") {
    const json result = json::parse(held->result_body, nullptr, false);
    body = json{{"code", result.is_object() ? result.value("code", "failed") : "failed"},
                {"message", held->reason}};
  } else if (status == "denied") {
    body = json{{"reason", held->reason}, {"denied_by", held->denied_by}};
  }
  body["status"] = status;
  body["approval_id"] = held->id;
  body["approvals_required"] = held->approvals_required;
  body["approvals"] = ApprovalsJson(held->approvals);
  body["expires_time_us"] = held->expires_us;
  net::Response response;
  response.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  respond(std::move(response));
}

void StartSweeper(const std::shared_ptr<State>& state) {
  const auto interval = std::clamp<std::chrono::milliseconds>(
      std::chrono::duration_cast<std::chrono::milliseconds>(state->options.approval_ttl / 10),
      std::chrono::milliseconds(100), std::chrono::seconds(30));
  State* raw = state.get();
  // The thread holds a raw pointer: StopSweeper joins it before the state can go.
  state->sweeper = std::thread([raw, interval] {
    (void)::pthread_setname_np(::pthread_self(), "approval-sweep");
    std::unique_lock lock(raw->sweeper_mu);
    while (!raw->sweeper_cv.wait_for(lock, interval, [raw] { return raw->sweeper_stopping; })) {
      lock.unlock();
      auto held = raw->approvals->ListHeld();
      if (held) {
        for (HeldRequest& h : *held) {
          if (h.status == "pending" && NowUs() > h.expires_us) {
            std::lock_guard approvals_lock(raw->approvals_mu);
            auto fresh = raw->approvals->GetHeld(h.id);
            if (fresh) {
              ExpireIfDue(*raw, *fresh);
            }
          }
        }
      }
      lock.lock();
    }
  });
}

void StopSweeper(State& state) {
  {
    std::lock_guard lock(state.sweeper_mu);
    state.sweeper_stopping = true;
  }
  state.sweeper_cv.notify_all();
  if (state.sweeper.joinable()) {
    state.sweeper.join();
  }
}

}  // namespace internal

Result<std::vector<HeldRequest>> SignService::HeldRequests(bool pending_only) const {
  if (state_->approvals == nullptr) {
    return std::vector<HeldRequest>{};
  }
  SIGNET_ASSIGN_OR_RETURN(std::vector<HeldRequest> all, state_->approvals->ListHeld());
  std::vector<HeldRequest> out;
  for (HeldRequest& h : all) {
    h.status = internal::EffectiveStatus(h);
    if (!pending_only || h.status == "pending") {
      out.push_back(std::move(h));
    }
  }
  return out;
}

Result<HeldRequest> SignService::Held(std::string_view id) const {
  if (state_->approvals == nullptr) {
    return MakeError(ErrorCode::kNotFound, "approvals are not configured");
  }
  SIGNET_ASSIGN_OR_RETURN(HeldRequest held, state_->approvals->GetHeld(id));
  held.status = internal::EffectiveStatus(held);
  return held;
}

ApprovalOutcome SignService::Approve(std::string_view id, const net::Peer& approver) {
  using internal::Refuse;
  State& state = *state_;
  if (state.approvals == nullptr) {
    return Refuse(404, "unknown_approval", "approvals are not configured");
  }
  std::unique_lock lock(state.approvals_mu);
  auto held = state.approvals->GetHeld(id);
  if (!held) {
    return held.error().code() == ErrorCode::kNotFound
               ? Refuse(404, "unknown_approval",
                        "no held request " + std::string(id).substr(0, 64) +
                            "; signet admin approvals list shows them")
               : Refuse(500, "internal", held.error().message());
  }
  internal::ExpireIfDue(state, *held);
  if (held->status != "pending") {
    return Refuse(409, "not_pending",
                  "request " + held->id + " is " + held->status + ", not pending", *held);
  }
  const policy::Principal who = PrincipalOf(approver);
  const std::string name = policy::PrincipalName(who);
  const bool same_uid = approver.kind == net::Peer::Kind::kUnix &&
                        held->requester.kind == net::Peer::Kind::kUnix &&
                        approver.uid == held->requester.uid;
  if (name == held->requester_name || same_uid) {
    return Refuse(
        403, "self_approval",
        name + " made request " + held->id + " and cannot approve it; another approver must",
        *held);
  }
  const auto policy = state.CurrentPolicy();
  const policy::Rule* rule = policy->FindRule(held->rule);
  // The approver role always, and the rule's approvers when it names them (MayApprove).
  const bool may = policy->HasRole(who, policy::Role::kApprover) &&
                   (rule == nullptr || policy->MayApprove(*rule, who));
  if (!may) {
    std::string named;
    if (rule != nullptr) {
      for (const auto& p : rule->approvers) {
        named += (named.empty() ? "" : ", ") + p.ToString();
      }
    }
    return Refuse(403, "not_an_approver",
                  name + " may not approve under rule " + held->rule +
                      " (approvers: " + (named.empty() ? "the approver role" : named) + ")",
                  *held);
  }
  if (std::any_of(held->approvals.begin(), held->approvals.end(),
                  [&](const audit::Approver& a) { return a.identity == name; })) {
    return Refuse(409, "already_approved",
                  name + " already approved request " + held->id + "; another approver must",
                  *held);
  }
  HeldRequest next = *held;
  next.approvals.push_back(audit::Approver{.identity = name, .time_us = internal::NowUs()});
  const bool complete = next.approvals.size() >= next.approvals_required;
  if (complete) {
    next.status = "approved";
  }
  auto recorded = internal::Append(
      state, internal::HeldRecord(next, "approve",
                                  "approval " + std::to_string(next.approvals.size()) + " of " +
                                      std::to_string(next.approvals_required) + " by " + name));
  if (!recorded) {
    return Refuse(
        503, "audit_unavailable",
        "the approval could not be recorded, so it does not count: " + recorded.error().message(),
        *held);
  }
  if (auto stored = state.approvals->PutHeld(next); !stored) {
    return Refuse(500, "approval_store_unavailable",
                  "the approval was recorded but not stored: " + stored.error().message(), *held);
  }
  lock.unlock();
  spdlog::info("request {}: approval {} of {} by {}", next.id, next.approvals.size(),
               next.approvals_required, name);
  if (complete) {
    internal::StartSigning(state_, next);
  }
  ApprovalOutcome done;
  done.request = std::move(next);
  return done;
}

ApprovalOutcome SignService::Deny(std::string_view id, const net::Peer& approver,
                                  std::string reason) {
  using internal::Refuse;
  State& state = *state_;
  if (state.approvals == nullptr) {
    return Refuse(404, "unknown_approval", "approvals are not configured");
  }
  std::lock_guard lock(state.approvals_mu);
  auto held = state.approvals->GetHeld(id);
  if (!held) {
    return held.error().code() == ErrorCode::kNotFound
               ? Refuse(404, "unknown_approval", "no held request " + std::string(id).substr(0, 64))
               : Refuse(500, "internal", held.error().message());
  }
  internal::ExpireIfDue(state, *held);
  if (held->status != "pending") {
    return Refuse(409, "not_pending",
                  "request " + held->id + " is " + held->status + ", not pending", *held);
  }
  const std::string name = policy::PrincipalName(PrincipalOf(approver));
  HeldRequest next = *held;
  next.status = "denied";
  next.reason = std::move(reason);
  next.denied_by = name;
  auto recorded = internal::Append(
      state, internal::HeldRecord(next, "deny", "denied by " + name + ": " + next.reason));
  if (!recorded) {
    return Refuse(
        503, "audit_unavailable",
        "the denial could not be recorded, so nothing changed: " + recorded.error().message(),
        *held);
  }
  if (auto stored = state.approvals->PutHeld(next); !stored) {
    return Refuse(500, "approval_store_unavailable",
                  "the denial was recorded but not stored: " + stored.error().message(), *held);
  }
  spdlog::info("request {}: denied by {}: {}", next.id, name, next.reason);
  ApprovalOutcome done;
  done.request = std::move(next);
  return done;
}

}  // namespace signet::service
