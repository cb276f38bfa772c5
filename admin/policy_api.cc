// The policy lifecycle: GET /v1/policy, POST /v1/policy/validate, PUT /v1/policy,
// GET /v1/policy/versions[/N], POST /v1/policy/explain; and AdminService::ApplyPolicy (SIGHUP).
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <regex>
#include <utility>

#include "admin/internal/state.h"

namespace signet::admin {
namespace internal {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxExplainArtifacts = 10000;

std::int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json VersionJson(const PolicyVersion& v) {
  json out{{"number", v.number},         {"version", v.version}, {"source", v.source},
           {"applied_by", v.applied_by}, {"time_us", v.time_us}, {"comment", v.comment}};
  if (!v.text.empty()) {
    out["text"] = v.text;
  }
  return out;
}

// A rule's settings as one comparable value.
json RuleJson(const policy::Rule& rule) {
  json principals = json::array();
  for (const auto& p : rule.principals) {
    principals.push_back(p.ToString());
  }
  return json{{"description", rule.description},
              {"keys", rule.keys},
              {"principals", std::move(principals)},
              {"tools", rule.tools},
              {"artifacts", rule.artifacts},
              {"max_items", rule.max_items},
              {"rate_per_hour", rule.rate_per_hour ? json(*rule.rate_per_hour) : json(nullptr)},
              {"approvals", rule.approvals}};
}

// What applying `next` over `current` changes: rules by name, and roles.
json Changes(const policy::Policy& current, const policy::Policy& next) {
  json added = json::array();
  json removed = json::array();
  json changed = json::array();
  for (const policy::Rule& rule : next.rules()) {
    const policy::Rule* old = current.FindRule(rule.name);
    if (old == nullptr) {
      added.push_back(rule.name);
    } else if (RuleJson(*old) != RuleJson(rule)) {
      changed.push_back(rule.name);
    }
  }
  for (const policy::Rule& rule : current.rules()) {
    if (next.FindRule(rule.name) == nullptr) {
      removed.push_back(rule.name);
    }
  }
  // Rule order decides too: same rules in another order is a change.
  std::vector<std::string> old_order;
  std::vector<std::string> new_order;
  for (const auto& r : current.rules()) {
    old_order.push_back(r.name);
  }
  for (const auto& r : next.rules()) {
    new_order.push_back(r.name);
  }
  json roles_changed = json::array();
  for (const policy::Role role :
       {policy::Role::kAdmin, policy::Role::kApprover, policy::Role::kAuditor}) {
    if (current.RoleMembers(role) != next.RoleMembers(role)) {
      roles_changed.push_back(std::string(policy::RoleName(role)));
    }
  }
  const bool reordered = added.empty() && removed.empty() && old_order != new_order;
  const bool unchanged = current.version() == next.version();
  return json{{"rules_added", std::move(added)},           {"rules_removed", std::move(removed)},
              {"rules_changed", std::move(changed)},       {"rules_reordered", reordered},
              {"roles_changed", std::move(roles_changed)}, {"unchanged", unchanged}};
}

std::string ChangeSummary(const json& changes) {
  if (changes.at("unchanged").get<bool>()) {
    return "no change";
  }
  std::string out;
  auto list = [&](const char* what, const json& names) {
    if (names.empty()) {
      return;
    }
    out += out.empty() ? "" : "; ";
    out += what;
    out += ": ";
    for (std::size_t i = 0; i < names.size(); ++i) {
      out += (i == 0 ? "" : ", ") + names[i].get<std::string>();
    }
  };
  list("rules added", changes.at("rules_added"));
  list("rules removed", changes.at("rules_removed"));
  list("rules changed", changes.at("rules_changed"));
  list("roles changed", changes.at("roles_changed"));
  if (changes.at("rules_reordered").get<bool>()) {
    out += out.empty() ? "rules reordered" : "; rules reordered";
  }
  return out.empty() ? "text changed (comments or layout)" : out;
}

// 422 for a policy that does not parse, with the line and column the message names.
net::Response InvalidPolicy(const Error& error) {
  json body{{"valid", false}, {"code", "invalid_policy"}, {"message", error.message()}};
  static const std::regex kWhere(R"(^[^:\n]*:(\d+):(\d+):)");
  std::smatch match;
  const std::string& message = error.message();
  if (std::regex_search(message, match, kWhere)) {
    body["line"] = std::stoi(match[1].str());
    body["column"] = std::stoi(match[2].str());
  }
  return JsonResponse(422, body);
}

struct Applied {
  PolicyVersion version;
  json changes;
  bool unchanged = false;
};

// Parses, records, stores and swaps in `text`, in that order: the record is durable before the
// version is stored, and the version is stored before any request uses it.
Result<Applied> Apply(State& state, std::string_view text, std::string source,
                      std::string applied_by, std::string comment, audit::Record record) {
  SIGNET_ASSIGN_OR_RETURN(auto next, policy::Policy::Parse(text, source));
  std::lock_guard lock(state.change_mu);
  const auto current = state.service.policy();
  Applied applied;
  applied.changes = Changes(*current, *next);
  if (current->version() == next->version()) {
    SIGNET_ASSIGN_OR_RETURN(auto latest, state.store.LatestPolicy());
    if (latest) {
      latest->text.clear();
      applied.version = std::move(*latest);
    }
    applied.unchanged = true;
    return applied;
  }
  const std::string summary = ChangeSummary(applied.changes);
  record.kind = audit::RecordKind::kPolicy;
  record.decision = "apply";
  record.policy_version = next->version();
  record.detail = "policy applied by " + applied_by + " from " + source + " (replaces " +
                  current->version() + "): " + summary + (comment.empty() ? "" : "; " + comment);
  SIGNET_RETURN_IF_ERROR(Record(state, std::move(record)));
  PolicyVersion version;
  version.version = next->version();
  version.text = next->text();
  version.source = std::move(source);
  version.applied_by = std::move(applied_by);
  version.time_us = NowUs();
  version.comment = std::move(comment);
  auto number = state.store.AddPolicy(version);
  if (!number) {
    // Recorded as applied but not stored: say so in the log too, and keep the old policy.
    audit::Record failed;
    failed.kind = audit::RecordKind::kPolicy;
    failed.decision = "apply-failed";
    failed.policy_version = next->version();
    failed.detail = "the policy recorded just before was not stored and is not in force: " +
                    number.error().message();
    (void)Record(state, std::move(failed));
    return MakeError(number.error().WithContext("store the policy"));
  }
  version.number = *number;
  state.service.SetPolicy(std::move(next));
  version.text.clear();
  applied.version = std::move(version);
  spdlog::info("policy version {} ({}) applied by {}: {}", applied.version.number,
               applied.version.version, applied.version.applied_by, summary);
  return applied;
}

void Show(State& state, Call& call) {
  auto latest = state.store.LatestPolicy();
  if (!latest) {
    call.respond(ErrorResponse(latest.error()));
    return;
  }
  const auto current = state.service.policy();
  json body;
  if (*latest && (*latest)->version == current->version()) {
    body = VersionJson(**latest);
  } else {
    // Only before a store exists (tests that run the service without one).
    body = json{{"version", current->version()}, {"source", current->source_name()}};
  }
  body["text"] = current->text();
  call.respond(JsonResponse(200, body));
}

void Validate(State& state, Call& call) {
  auto next = policy::Policy::Parse(call.request.body, "admin-api");
  if (!next) {
    call.respond(InvalidPolicy(next.error()));
    return;
  }
  const auto current = state.service.policy();
  call.respond(JsonResponse(200, json{{"valid", true},
                                      {"version", (*next)->version()},
                                      {"rules", (*next)->rules().size()},
                                      {"changes", Changes(*current, **next)}}));
}

void Put(State& state, Call& call) {
  std::string comment;
  if (auto header = call.request.Header("x-signet-comment")) {
    comment = std::string(header->substr(0, 1024));
  }
  auto applied = Apply(state, call.request.body, "admin-api", call.who, comment,
                       ActionRecord(call, audit::RecordKind::kPolicy, "apply", ""));
  if (!applied) {
    const Error& e = applied.error();
    if (e.code() == ErrorCode::kInvalidArgument && e.message().starts_with("admin-api:")) {
      call.respond(InvalidPolicy(e));
    } else if (e.code() == ErrorCode::kUnavailable || e.code() == ErrorCode::kDeadlineExceeded) {
      call.respond(AuditUnavailable(e));
    } else {
      call.respond(ErrorResponse(e));
    }
    return;
  }
  call.recorded->store(!applied->unchanged);  // an unchanged text is recorded as a request
  json body = VersionJson(applied->version);
  body["valid"] = true;
  body["unchanged"] = applied->unchanged;
  body["changes"] = applied->changes;
  call.respond(JsonResponse(200, body));
}

void Versions(State& state, Call& call) {
  auto versions = state.store.PolicyVersions();
  if (!versions) {
    call.respond(ErrorResponse(versions.error()));
    return;
  }
  json list = json::array();
  for (const PolicyVersion& v : *versions) {
    list.push_back(VersionJson(v));
  }
  call.respond(JsonResponse(200, json{{"versions", std::move(list)}}));
}

void OneVersion(State& state, Call& call, std::string_view number_text) {
  std::uint64_t number = 0;
  const auto [end, ec] =
      std::from_chars(number_text.data(), number_text.data() + number_text.size(), number);
  if (ec != std::errc() || end != number_text.data() + number_text.size() || number == 0) {
    call.respond(net::JsonError(400, "malformed",
                                "\"" + std::string(number_text) + "\" is not a version number"));
    return;
  }
  auto version = state.store.Policy(number);
  if (!version) {
    call.respond(ErrorResponse(version.error()));
    return;
  }
  call.respond(JsonResponse(200, VersionJson(*version)));
}

// The principal an explain request names. Errors: kInvalidArgument, kNotFound (no such account).
Result<policy::Principal> ExplainPrincipal(const json& p) {
  if (p.is_string()) {
    const std::string text = p.get<std::string>();
    if (text.starts_with("user:")) {
      SIGNET_ASSIGN_OR_RETURN(const net::Peer peer, net::LocalPeer(text.substr(5)));
      return PrincipalOf(peer);
    }
    if (text.starts_with("uid:")) {
      std::uint32_t uid = 0;
      const std::string digits = text.substr(4);
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), uid);
      if (ec != std::errc() || end != digits.data() + digits.size()) {
        return MakeError(ErrorCode::kInvalidArgument, "\"" + text + "\" is not uid:NUMBER");
      }
      auto peer = net::LocalPeer(uid);
      if (!peer) {
        // A uid without an account is still a principal (as a peer it would be).
        policy::Principal only_uid;
        only_uid.uid = uid;
        return only_uid;
      }
      return PrincipalOf(*peer);
    }
    if (text.starts_with("cert-subject:")) {
      policy::Principal principal;
      principal.cert_subject = text.substr(13);
      return principal;
    }
    if (text.starts_with("cert-fingerprint:")) {
      policy::Principal principal;
      principal.cert_fingerprint = text.substr(17);
      return principal;
    }
    return MakeError(ErrorCode::kInvalidArgument,
                     "principal \"" + text +
                         "\": use user:NAME, uid:N, cert-subject:SUBJECT, "
                         "cert-fingerprint:HEX, or an object {uid, user, groups}");
  }
  if (!p.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"principal\" must be a string (user:NAME, uid:N, ...) or an object");
  }
  policy::Principal principal;
  try {
    if (p.contains("uid")) {
      principal.uid = p.at("uid").get<std::uint32_t>();
    }
    principal.user = p.value("user", "");
    if (p.contains("groups")) {
      principal.groups = p.at("groups").get<std::vector<std::string>>();
    }
    principal.cert_subject = p.value("cert_subject", "");
    principal.cert_fingerprint = p.value("cert_fingerprint", "");
  } catch (const json::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, std::string("\"principal\": ") + e.what());
  }
  return principal;
}

void Explain(State& state, Call& call) {
  const json body = json::parse(call.request.body, nullptr, false);
  if (!body.is_object()) {
    call.respond(net::JsonError(400, "malformed", "the body must be a JSON object"));
    return;
  }
  policy::SignRequest request;
  try {
    if (!body.contains("principal") || !body.contains("key")) {
      call.respond(net::JsonError(400, "malformed", "\"principal\" and \"key\" are required"));
      return;
    }
    auto principal = ExplainPrincipal(body.at("principal"));
    if (!principal) {
      call.respond(ErrorResponse(principal.error()));
      return;
    }
    request.principal = std::move(*principal);
    request.key = body.at("key").get<std::string>();
    request.tool = body.value("tool", "");
    if (body.contains("artifacts")) {
      request.artifact_names = body.at("artifacts").get<std::vector<std::string>>();
    }
    if (request.artifact_names.size() > kMaxExplainArtifacts) {
      call.respond(net::JsonError(
          413, "too_many_artifacts",
          "explain takes at most " + std::to_string(kMaxExplainArtifacts) + " artifact names"));
      return;
    }
    request.items = body.value("items", std::max<std::size_t>(1, request.artifact_names.size()));
  } catch (const json::exception& e) {
    call.respond(net::JsonError(400, "malformed", e.what()));
    return;
  }
  const auto policy = state.service.policy();
  const policy::Verdict verdict = policy->Evaluate(request);
  call.respond(
      JsonResponse(200, json{{"decision", std::string(policy::DecisionName(verdict.decision))},
                             {"rule", verdict.rule},
                             {"reason", verdict.reason},
                             {"approvals", verdict.approvals},
                             {"principal", policy::PrincipalName(request.principal)},
                             {"policy_version", policy->version()}}));
}

}  // namespace

void HandlePolicy(State& state, Call& call) {
  const std::string& path = call.path;
  const std::string& method = call.request.method;
  using policy::Role;
  auto need = [&](std::initializer_list<Role> any) {
    for (const Role role : any) {
      if (call.Has(role)) {
        return true;
      }
    }
    call.respond(RoleRequired(call, *any.begin()));
    return false;
  };
  auto only = [&](const char* wanted) {
    if (method == wanted) {
      return true;
    }
    call.respond(
        net::JsonError(405, "method_not_allowed", std::string("use ") + wanted + " " + path));
    return false;
  };
  constexpr std::string_view kVersions = "/v1/policy/versions/";
  if (path == "/v1/policy") {
    if (method == "GET") {
      if (need({Role::kAdmin, Role::kApprover, Role::kAuditor})) {
        Show(state, call);
      }
    } else if (method == "PUT") {
      if (need({Role::kAdmin})) {
        Put(state, call);
      }
    } else {
      call.respond(net::JsonError(405, "method_not_allowed", "use GET or PUT /v1/policy"));
    }
  } else if (path == "/v1/policy/validate") {
    if (only("POST") && need({Role::kAdmin})) {
      Validate(state, call);
    }
  } else if (path == "/v1/policy/versions") {
    if (only("GET") && need({Role::kAdmin, Role::kAuditor})) {
      Versions(state, call);
    }
  } else if (path.starts_with(kVersions)) {
    if (only("GET") && need({Role::kAdmin, Role::kAuditor})) {
      OneVersion(state, call, std::string_view(path).substr(kVersions.size()));
    }
  } else if (path == "/v1/policy/explain") {
    if (only("POST") && need({Role::kAdmin, Role::kApprover, Role::kAuditor})) {
      Explain(state, call);
    }
  } else {
    call.respond(net::JsonError(404, "not_found", "no such endpoint: " + path));
  }
}

}  // namespace internal

Result<PolicyVersion> AdminService::ApplyPolicy(std::string_view text, std::string source,
                                                std::string applied_by, std::string comment) {
  audit::Record record;
  record.requester.uid = ::getuid();
  SIGNET_ASSIGN_OR_RETURN(auto applied,
                          internal::Apply(*state_, text, std::move(source), std::move(applied_by),
                                          std::move(comment), std::move(record)));
  return std::move(applied.version);
}

}  // namespace signet::admin
