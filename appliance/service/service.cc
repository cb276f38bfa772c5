#include "appliance/service/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <shared_mutex>
#include <utility>

#include "appliance/formats/formats.h"
#include "appliance/service/internal/call.h"
#include "appliance/service/internal/crypto.h"
#include "appliance/service/internal/request.h"

namespace signet::service {
namespace {

using internal::AuditUnavailable;
using internal::BaseRecord;
using internal::DenyAfterAudit;
using internal::Encode;
using internal::FailHsm;
using internal::JsonResponse;
using internal::KeyEntry;
using internal::SignCall;
using internal::State;
using nlohmann::json;

bool ValidKeyName(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
  });
}

bool SchemeFits(hsm::KeyType type, hsm::Scheme scheme) {
  switch (type) {
    case hsm::KeyType::kEcdsaP256:
    case hsm::KeyType::kEcdsaP384:
      return scheme == hsm::Scheme::kEcdsa;
    case hsm::KeyType::kRsa3072:
    case hsm::KeyType::kRsa4096:
      return scheme == hsm::Scheme::kRsaPkcs1 || scheme == hsm::Scheme::kRsaPss;
    case hsm::KeyType::kEd25519:
      return false;  // raw Ed25519 signs messages, not digests: not a raw-format key
  }
  return false;
}

}  // namespace

namespace internal {

net::Response JsonResponse(int status, const json& body) {
  net::Response response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

net::Response Encode(int status, const json& body, bool cbor) {
  if (!cbor) {
    return JsonResponse(status, body);
  }
  net::Response response;
  response.status = status;
  response.content_type = "application/cbor";
  const std::vector<std::uint8_t> bytes = json::to_cbor(body);
  response.body.assign(bytes.begin(), bytes.end());
  return response;
}

net::Response AuditUnavailable(const Error& error) {
  return net::JsonError(
      503, "audit_unavailable",
      "the audit log cannot record this request, so nothing was signed: " + error.message());
}

}  // namespace internal

namespace {

std::string MediaType(const net::Request& request) {
  const auto header = request.Header("content-type");
  if (!header) {
    return "";
  }
  std::string type(header->substr(0, header->find(';')));
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back())) != 0) {
    type.pop_back();
  }
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return type;
}

json KeyJson(const SignService::KeyState& k) {
  json out{{"name", k.name},
           {"algorithm", k.algorithm},
           {"scheme", k.scheme},
           {"hash", k.hash},
           {"format", k.format},
           {"fingerprint", k.fingerprint},
           {"public_key_pem", k.public_key_pem},
           {"enabled", k.enabled}};
  if (!k.enabled && !k.disabled_reason.empty()) {
    out["disabled_reason"] = k.disabled_reason;
  }
  return out;
}

}  // namespace

namespace internal {

void SetRequester(audit::Record& r, const net::Peer& peer) {
  if (peer.kind == net::Peer::Kind::kUnix) {
    r.requester.uid = peer.uid;
    r.requester.user = peer.user;
    r.requester.groups = peer.groups;
    r.peer_pid = peer.pid;
  } else {
    r.requester.cert_subject = peer.cert_subject;
    r.requester.cert_fingerprint = peer.cert_fingerprint;
    r.peer_address = peer.address;
  }
}

// The fields every record of `call` shares.
audit::Record BaseRecord(const SignCall& call, audit::RecordKind kind) {
  audit::Record r;
  r.kind = kind;
  r.request_id = call.request_id;
  r.ticket = call.envelope.ticket;
  r.client_host = call.envelope.client_host;
  r.tool_name = call.envelope.tool_name;
  r.tool_version = call.envelope.tool_version;
  SetRequester(r, call.peer);
  r.key_name = call.envelope.key;
  if (call.key != nullptr) {
    r.key_fingerprint = call.key->key.key.public_key.fingerprint;
    r.algorithm = std::string(hsm::KeyTypeName(call.key->key.key.type));
    r.format = call.key->key.format;
  }
  if (call.policy) {
    r.policy_version = call.policy->version();
  }
  r.approvers = call.approvers;
  return r;
}

}  // namespace internal

policy::Principal PrincipalOf(const net::Peer& peer) {
  policy::Principal p;
  if (peer.kind == net::Peer::Kind::kUnix) {
    p.uid = peer.uid;
    p.user = peer.user;
    p.groups = peer.groups;
  } else {
    p.cert_subject = peer.cert_subject;
    p.cert_fingerprint = peer.cert_fingerprint;
  }
  return p;
}

namespace internal {

void DenyAfterAudit(const std::shared_ptr<SignCall>& call, std::string decision, std::string rule,
                    std::string detail, net::Response answer) {
  audit::Record r = BaseRecord(*call, audit::RecordKind::kDeny);
  r.decision = std::move(decision);
  r.policy_rule = std::move(rule);
  r.detail = std::move(detail);
  if (!call->items.empty()) {
    const internal::SignItem& first = call->items.front();
    r.artifact_name = first.name;
    r.artifact_size = first.size;
    r.digests = first.digests;
  }
  std::vector<audit::Record> records;
  records.push_back(std::move(r));
  auto status = call->state->log.Submit(
      std::move(records), [call, answer = std::move(answer)](Result<audit::SeqRange> committed) {
        if (!committed) {
          spdlog::error("request {}: denial not recorded: {}", call->request_id,
                        committed.error().ToString());
          call->respond(AuditUnavailable(committed.error()));
          return;
        }
        call->respond(answer);
      });
  if (!status) {
    spdlog::error("request {}: denial not recorded: {}", call->request_id,
                  status.error().ToString());
    call->respond(AuditUnavailable(status.error()));
  }
}

void FailHsm(const std::shared_ptr<SignCall>& call, const Error& error) {
  spdlog::warn("request {}: HSM: {}", call->request_id, error.ToString());
  DenyAfterAudit(call, "deny", call->verdict.rule, "HSM: " + error.message(),
                 net::JsonError(503, "hsm_unavailable",
                                "the HSM could not sign this request: " + error.message()));
}

}  // namespace internal

namespace {

// HSM worker thread: check the signatures, record them, answer after the commit.
void OnSigned(const std::shared_ptr<SignCall>& call, Result<hsm::Signatures> signed_result) {
  if (!signed_result) {
    FailHsm(call, signed_result.error());
    return;
  }
  auto signatures = std::make_shared<hsm::Signatures>(std::move(*signed_result));
  if (signatures->size() != call->items.size()) {
    FailHsm(call, Error(ErrorCode::kInternal,
                        "the HSM returned " + std::to_string(signatures->size()) +
                            " signatures for " + std::to_string(call->items.size()) + " items"));
    return;
  }
  call->key->counters->hsm_jobs.fetch_add(1, std::memory_order_relaxed);
  // The hsm module has checked the signatures before releasing them (for RSA always; for ECDSA
  // and Ed25519 unless verify_before_release is off): checking them again here would double the
  // CPU cost of every signature and add nothing.
  // One `sign` record per item, made one at a time in two Records refilled in turn (Log::Submit
  // reads each while the next is made): the fields they share are not copied into each. The
  // items' digests move into them: nothing reads them after.
  audit::Record slots[2];
  for (audit::Record& slot : slots) {
    slot = BaseRecord(*call, audit::RecordKind::kSign);
    slot.decision = "allow";
    slot.policy_rule = call->verdict.rule;
  }
  const auto record = [&](std::size_t i) -> audit::Record& {
    internal::SignItem& item = call->items[i];
    audit::Record& r = slots[i % 2];
    r.artifact_name = item.name;
    r.artifact_size = item.size;
    r.digests = std::move(item.digests);
    r.signature_sha256 = internal::Sha256Hex((*signatures)[i]);
    return r;
  };
  auto status = call->state->log.Submit(
      call->items.size(), record, [call, signatures](Result<audit::SeqRange> committed) {
        if (!committed) {
          spdlog::error("request {}: signatures not recorded, withheld: {}", call->request_id,
                        committed.error().ToString());
          call->respond(AuditUnavailable(committed.error()));
          return;
        }
        json items = json::array();
        for (std::size_t i = 0; i < call->items.size(); ++i) {
          items.push_back(json{{"name", call->items[i].name},
                               {"signature", Base64Encode((*signatures)[i])},
                               {"seq", committed->first + i}});
        }
        call->respond(Encode(200,
                             json{{"key", call->key->key.name},
                                  {"format", call->key->key.format},
                                  {"key_fingerprint", call->key->key.key.public_key.fingerprint},
                                  {"items", std::move(items)},
                                  {"request_id", call->request_id}},
                             call->cbor));
      });
  if (!status) {
    spdlog::error("request {}: signatures not recorded, withheld: {}", call->request_id,
                  status.error().ToString());
    call->respond(AuditUnavailable(status.error()));
  }
}

void HandleSign(const std::shared_ptr<State>& state, net::Request request, net::Responder respond) {
  auto call = std::make_shared<SignCall>();
  call->state = state;
  call->respond = internal::CountingResponder(call, std::move(respond));
  const std::string media = MediaType(request);
  if (!media.empty() && media != "application/json" && media != "application/cbor") {
    call->respond(net::JsonError(415, "unsupported_media_type",
                                 "send application/json or application/cbor, not " + media));
    return;
  }
  call->cbor = media == "application/cbor";
  call->peer = std::move(request.peer);
  call->request_id = request.request_id;

  auto parsed = internal::ParseSignBody(request.body, call->cbor);
  if (!parsed) {
    call->respond(net::JsonError(400, "malformed", parsed.error().message()));
    return;
  }
  call->envelope = parsed->envelope;
  call->envelope.client_builds_proofs =
      request.Header(formats::kBatchProofsHeader).value_or("") == formats::kClientBuildsProofs;
  call->policy = state->CurrentPolicy();
  // Fail closed before anything else: a log that has failed can record neither a denial nor a
  // signature.
  if (auto health = state->log.health(); !health) {
    call->respond(AuditUnavailable(health.error()));
    return;
  }
  call->key = state->FindKey(call->envelope.key);
  if (call->key == nullptr) {
    const std::string message =
        "no key named \"" + call->envelope.key + "\"; GET /v1/keys lists them";
    DenyAfterAudit(call, "deny", "", "unknown key", net::JsonError(404, "unknown_key", message));
    return;
  }
  const std::size_t max_items = state->options.max_items_per_request;
  if (call->envelope.item_count > max_items) {
    const std::string message = std::to_string(call->envelope.item_count) +
                                " items is more than max_items_per_request (" +
                                std::to_string(max_items) + "); split the request";
    DenyAfterAudit(call, "deny", "", message,
                   net::JsonError(413, "too_many_items", message, "max_items_per_request"));
    return;
  }
  auto items = parsed->CheckItems(call->key->key.spec.hash);
  if (!items) {
    call->respond(net::JsonError(400, "malformed", items.error().message()));
    return;
  }
  call->items = std::move(*items);
  if (call->key->key.format == "batch") {
    // The size is part of a batch leaf: a receipt binds it.
    for (std::size_t i = 0; i < call->items.size(); ++i) {
      if (!call->items[i].size) {
        call->respond(
            net::JsonError(400, "malformed",
                           "items[" + std::to_string(i) + "].size is required with a batch key"));
        return;
      }
    }
  }

  internal::DecideAndSign(call);
}

}  // namespace

namespace internal {

void DecideAndSign(const std::shared_ptr<SignCall>& call) {
  const std::shared_ptr<State>& state = call->state;
  if (call->key->disabled.load(std::memory_order_acquire)) {
    std::string reason;
    {
      std::shared_lock lock(state->keys_mu);
      reason = call->key->disabled_reason;
    }
    const std::string& name = call->envelope.key;
    const std::string message = "key \"" + name + "\" is disabled" +
                                (reason.empty() ? "" : " (" + reason + ")") +
                                "; an admin can enable it again: signet admin keys enable " + name;
    DenyAfterAudit(call, "deny", "", "key disabled" + (reason.empty() ? "" : ": " + reason),
                   net::JsonError(403, "key_disabled", message));
    return;
  }
  policy::SignRequest sign_request{.principal = PrincipalOf(call->peer),
                                   .key = call->envelope.key,
                                   .tool = call->envelope.tool_name,
                                   .artifact_names = {},
                                   .items = call->items.size()};
  sign_request.artifact_names.reserve(call->items.size());
  for (const auto& item : call->items) {
    sign_request.artifact_names.push_back(item.name);
  }
  // policy::Authorize, unrolled so a rate-limit refusal is known for what it is (429).
  call->verdict = call->policy->Evaluate(sign_request);
  if (call->verdict.decision == policy::Decision::kNeedsApproval) {
    if (call->approvers.empty()) {
      Hold(call);
      return;
    }
    // Approved: the policy in force now decides again, and its rule may ask for more.
    const std::size_t given = call->approvers.size();
    if (call->verdict.approvals > given) {
      const std::string message = "the policy in force now requires " +
                                  std::to_string(call->verdict.approvals) + " approvals (rule " +
                                  call->verdict.rule + "); " + std::to_string(given) +
                                  " were given: send the request again";
      DenyAfterAudit(call, "deny", call->verdict.rule, message,
                     JsonResponse(403, json{{"code", "needs_more_approvals"},
                                            {"message", message},
                                            {"rule", call->verdict.rule}}));
      return;
    }
    call->verdict.decision = policy::Decision::kAllow;
    call->verdict.reason = "allowed by rule " + call->verdict.rule + " with " +
                           std::to_string(given) + " approval" + (given == 1 ? "" : "s");
  }
  bool rate_limited = false;
  if (call->verdict.allowed()) {
    const policy::Rule* rule = call->policy->FindRule(call->verdict.rule);
    if (rule != nullptr && rule->rate_per_hour.has_value()) {
      policy::Verdict charged =
          state->limiter.Charge(*rule, sign_request.principal, sign_request.items);
      if (!charged.allowed()) {
        call->verdict = std::move(charged);
        rate_limited = true;
      }
    }
  }
  if (!call->verdict.allowed()) {
    const policy::Verdict& v = call->verdict;
    net::Response answer =
        rate_limited
            ? JsonResponse(429,
                           json{{"code", "rate_limited"}, {"message", v.reason}, {"rule", v.rule}})
            : JsonResponse(403, json{{"code", "denied"}, {"message", v.reason}, {"rule", v.rule}});
    DenyAfterAudit(call, std::string(policy::DecisionName(v.decision)), v.rule, v.reason,
                   std::move(answer));
    return;
  }

  if (call->key->key.format == "batch") {
    internal::SignBatches(call);
    return;
  }
  const std::string hash_name(hsm::HashName(call->key->key.spec.hash));
  std::vector<Bytes> digests;
  digests.reserve(call->items.size());
  for (const auto& item : call->items) {
    digests.push_back(HexDecode(item.digests.at(hash_name)).value_or(Bytes{}));
  }
  const ServiceKey& key = call->key->key;
  auto submitted = key.token->Submit(
      key.key, key.spec, std::move(digests),
      [call](Result<hsm::Signatures> signatures) { OnSigned(call, std::move(signatures)); });
  if (!submitted) {
    FailHsm(call, submitted.error());
  }
}

}  // namespace internal

namespace {

void HandleKeys(const std::vector<SignService::KeyState>& keys, std::string_view name,
                net::Responder& respond) {
  if (name.empty()) {
    json list = json::array();
    for (const auto& key : keys) {
      list.push_back(KeyJson(key));
    }
    respond(JsonResponse(200, json{{"keys", std::move(list)}}));
    return;
  }
  const auto it = std::find_if(keys.begin(), keys.end(),
                               [&](const SignService::KeyState& k) { return k.name == name; });
  if (it == keys.end()) {
    respond(net::JsonError(404, "unknown_key", "no key named \"" + std::string(name) + "\""));
    return;
  }
  respond(JsonResponse(200, KeyJson(*it)));
}

constexpr auto kRecentFailure = std::chrono::minutes(1);

void HandleHealth(const State& state, net::Responder& respond) {
  const Status health = state.log.health();
  const audit::LogStats stats = state.log.stats();
  json audit_json{{"ok", health.has_value()},
                  {"tree_size", stats.tree_size},
                  {"commits", stats.commits},
                  {"checkpoint_size", stats.checkpoint_size},
                  {"last_commit_latency_us", stats.last_commit_latency.count()},
                  {"map_size", stats.map_size},
                  {"map_used", stats.map_used}};
  if (!health) {
    audit_json["error"] = health.error().message();
  }
  json tokens = json::array();
  bool hsm_ok = true;
  std::set<const hsm::Token*> seen;
  std::shared_lock keys_lock(state.keys_mu);
  for (const auto& [name, entry] : state.keys) {
    if (!seen.insert(entry->key.token).second) {
      continue;
    }
    const hsm::Token::Stats s = entry->key.token->stats();
    json names = json::array();
    for (const auto& [other, e] : state.keys) {
      if (e->key.token == entry->key.token) {
        names.push_back(other);
      }
    }
    // Healthy: logged in now (asked of the token), and no job failed in the last minute. A
    // token that failed once and then sat idle is healthy again once the minute passes, if it
    // still answers.
    const Status login = entry->key.token->CheckLogin();
    const bool recent_failure = s.consecutive_failures > 0 &&
                                std::chrono::system_clock::now() - s.last_failure < kRecentFailure;
    const bool ok = login.has_value() && !recent_failure;
    hsm_ok = hsm_ok && ok;
    json token{{"keys", std::move(names)},       {"ok", ok},
               {"logged_in", login.has_value()}, {"consecutive_failures", s.consecutive_failures},
               {"signatures", s.signatures},     {"jobs_failed", s.jobs_failed},
               {"retries", s.retries},           {"sessions_reopened", s.sessions_reopened},
               {"queue_depth", s.queue_depth}};
    if (!s.last_error.empty()) {
      token["last_error"] = s.last_error;
    }
    if (!login) {
      token["login_error"] = login.error().message();
    }
    tokens.push_back(std::move(token));
  }
  // "degraded": the log works but a token is not logged in, or its most recent job failed less
  // than a minute ago. Either way 503, so that a load balancer sends signers elsewhere.
  const std::string status = !health ? "unavailable" : hsm_ok ? "ok" : "degraded";
  respond(JsonResponse(status == "ok" ? 200 : 503, json{{"status", status},
                                                        {"host_id", state.options.host_id},
                                                        {"audit", std::move(audit_json)},
                                                        {"hsm", std::move(tokens)}}));
}

}  // namespace

namespace {

// A checked entry for `key`: a valid name, a token, a format the key type can serve.
Result<std::unique_ptr<KeyEntry>> MakeEntry(const State& state, ServiceKey key) {
  const std::string at = "key \"" + key.name + "\": ";
  if (!ValidKeyName(key.name)) {
    return MakeError(ErrorCode::kInvalidArgument, at + "a key name is 1 to 128 of [A-Za-z0-9._-]");
  }
  if (key.token == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument, at + "no token");
  }
  auto entry = std::make_unique<KeyEntry>();
  if (key.format == "batch") {
    // Batch statements are C2SP notes of type 0x02: ECDSA P-256 over SHA-256.
    if (key.key.type != hsm::KeyType::kEcdsaP256 || key.spec.scheme != hsm::Scheme::kEcdsa ||
        key.spec.hash != hsm::Hash::kSha256) {
      return MakeError(ErrorCode::kInvalidArgument,
                       at + "a batch key must be ecdsa-p256 (signing SHA-256), not " +
                           std::string(hsm::KeyTypeName(key.key.type)));
    }
    entry->origin = formats::BatchOrigin(
        state.options.host_id.empty() ? "signet" : state.options.host_id, key.name);
    auto verifier = audit::MakeNoteVerifier(entry->origin, key.key.public_key.spki_der);
    if (!verifier) {
      return MakeError(verifier.error().WithContext(at.substr(0, at.size() - 2)));
    }
    entry->note_verifier = std::move(*verifier);
    if (state.options.batch_window.count() > 0) {
      entry->gatherer = std::make_unique<internal::BatchGatherer>(state.options.batch_window,
                                                                  state.options.max_batch_leaves);
    }
  } else if (key.format != "raw") {
    return MakeError(ErrorCode::kInvalidArgument,
                     at + "format \"" + key.format + "\" is not supported (\"raw\" or \"batch\")");
  } else if (!SchemeFits(key.key.type, key.spec.scheme)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     at + "a " + std::string(hsm::KeyTypeName(key.key.type)) +
                         " key cannot sign raw digests with scheme " +
                         std::string(hsm::SchemeName(key.spec.scheme)));
  }
  entry->key = std::move(key);
  return entry;
}

}  // namespace

Result<hsm::SignSpec> MakeSignSpec(hsm::KeyType type, std::string_view hash,
                                   std::string_view rsa_padding) {
  hsm::SignSpec spec;
  if (hash == "sha256") {
    spec.hash = hsm::Hash::kSha256;
  } else if (hash == "sha384") {
    spec.hash = hsm::Hash::kSha384;
  } else if (hash == "sha512") {
    spec.hash = hsm::Hash::kSha512;
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unknown hash \"" + std::string(hash) + "\" (sha256, sha384 or sha512)");
  }
  switch (type) {
    case hsm::KeyType::kEcdsaP256:
    case hsm::KeyType::kEcdsaP384:
      spec.scheme = hsm::Scheme::kEcdsa;
      break;
    case hsm::KeyType::kRsa3072:
    case hsm::KeyType::kRsa4096:
      if (rsa_padding != "pkcs1" && rsa_padding != "pss") {
        return MakeError(ErrorCode::kInvalidArgument,
                         "unknown rsa_padding \"" + std::string(rsa_padding) + "\" (pkcs1 or pss)");
      }
      spec.scheme = rsa_padding == "pss" ? hsm::Scheme::kRsaPss : hsm::Scheme::kRsaPkcs1;
      break;
    case hsm::KeyType::kEd25519:
      spec.scheme = hsm::Scheme::kEd25519;
      break;
  }
  return spec;
}

SignService::SignService(std::shared_ptr<State> state) : state_(std::move(state)) {}
SignService::~SignService() {
  internal::StopSweeper(*state_);
  // The gatherers' threads sign what waits and hold calls that hold the state: stop them while
  // the state is certainly alive.
  std::shared_lock lock(state_->keys_mu);
  for (auto& [name, entry] : state_->keys) {
    if (entry->gatherer) {
      entry->gatherer->Stop();
    }
  }
}

Result<std::unique_ptr<SignService>> SignService::Create(
    ServiceOptions options, std::vector<ServiceKey> keys,
    std::shared_ptr<const policy::Policy> policy, audit::Log& log, ApprovalStore* approvals) {
  if (!policy) {
    return MakeError(ErrorCode::kInvalidArgument, "no policy");
  }
  if (options.max_items_per_request == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "max_items_per_request must be at least 1");
  }
  if (options.max_batch_leaves == 0 || options.max_batch_leaves > (1u << 24)) {
    return MakeError(ErrorCode::kInvalidArgument, "max_batch_leaves must be 1 to 16777216");
  }
  if (options.batch_window.count() < 0 || options.batch_window > std::chrono::seconds(10)) {
    return MakeError(ErrorCode::kInvalidArgument, "batch_window must be 0 to 10 s");
  }
  if (options.approval_ttl < std::chrono::seconds(1) ||
      options.approval_ttl > std::chrono::days(30)) {
    return MakeError(ErrorCode::kInvalidArgument, "approval_ttl must be 1 s to 30 days");
  }
  auto state = std::make_shared<State>(std::move(options), log);
  state->policy = std::move(policy);
  for (ServiceKey& key : keys) {
    const std::string name = key.name;
    SIGNET_ASSIGN_OR_RETURN(auto entry, MakeEntry(*state, std::move(key)));
    if (!state->keys.emplace(name, std::move(entry)).second) {
      return MakeError(ErrorCode::kInvalidArgument, "key \"" + name + "\": named twice");
    }
  }
  state->approvals = approvals;
  if (approvals != nullptr) {
    internal::StartSweeper(state);
  }
  return std::unique_ptr<SignService>(new SignService(std::move(state)));
}

Status SignService::AddKey(ServiceKey key) {
  const std::string name = key.name;
  SIGNET_ASSIGN_OR_RETURN(auto entry, MakeEntry(*state_, std::move(key)));
  std::unique_lock lock(state_->keys_mu);
  if (!state_->keys.emplace(name, std::move(entry)).second) {
    return MakeError(ErrorCode::kInvalidArgument, "a key named \"" + name + "\" exists");
  }
  return OkStatus();
}

Status SignService::SetKeyEnabled(std::string_view name, bool enabled, std::string reason) {
  std::unique_lock lock(state_->keys_mu);
  const auto it = state_->keys.find(name);
  if (it == state_->keys.end()) {
    return MakeError(ErrorCode::kNotFound, "no key named \"" + std::string(name) + "\"");
  }
  it->second->disabled_reason = enabled ? std::string() : std::move(reason);
  it->second->disabled.store(!enabled, std::memory_order_release);
  return OkStatus();
}

std::vector<SignService::KeyState> SignService::Keys() const {
  std::vector<KeyState> out;
  std::shared_lock lock(state_->keys_mu);
  for (const auto& [name, entry] : state_->keys) {
    const ServiceKey& k = entry->key;
    out.push_back(KeyState{.name = name,
                           .algorithm = std::string(hsm::KeyTypeName(k.key.type)),
                           .scheme = std::string(hsm::SchemeName(k.spec.scheme)),
                           .hash = std::string(hsm::HashName(k.spec.hash)),
                           .format = k.format,
                           .fingerprint = k.key.public_key.fingerprint,
                           .public_key_pem = k.key.public_key.pem,
                           .enabled = !entry->disabled.load(std::memory_order_acquire),
                           .disabled_reason = entry->disabled_reason,
                           .token = k.token});
  }
  return out;
}

void SignService::Handle(net::Request request, net::Responder respond) {
  const std::string target = request.target.substr(0, request.target.find('?'));
  constexpr std::string_view kKeysPrefix = "/v1/keys/";
  const bool get = request.method == "GET";
  if (target == "/v1/sign") {
    if (request.method != "POST") {
      respond(net::JsonError(405, "method_not_allowed", "use POST /v1/sign"));
      return;
    }
    HandleSign(state_, std::move(request), std::move(respond));
    return;
  }
  constexpr std::string_view kRequestsPrefix = "/v1/requests/";
  if (target.starts_with(kRequestsPrefix)) {
    if (!get) {
      respond(net::JsonError(405, "method_not_allowed", "use GET " + target));
      return;
    }
    internal::HandleRequestStatus(*state_, request,
                                  std::string_view(target).substr(kRequestsPrefix.size()), respond);
    return;
  }
  if (target == "/v1/keys" || target.starts_with(kKeysPrefix) || target == "/v1/health") {
    if (!get) {
      respond(net::JsonError(405, "method_not_allowed", "use GET " + target));
      return;
    }
    if (target == "/v1/health") {
      HandleHealth(*state_, respond);
    } else {
      HandleKeys(Keys(),
                 target == "/v1/keys" ? std::string_view()
                                      : std::string_view(target).substr(kKeysPrefix.size()),
                 respond);
    }
    return;
  }
  respond(net::JsonError(404, "not_found",
                         "no such endpoint; the API is POST /v1/sign, GET /v1/requests/ID, "
                         "GET /v1/keys[/NAME], GET /v1/health"));
}

net::Handler SignService::handler() {
  return [this](net::Request request, net::Responder respond) {
    Handle(std::move(request), std::move(respond));
  };
}

void SignService::SetPolicy(std::shared_ptr<const policy::Policy> policy) {
  if (!policy) {
    return;
  }
  state_->limiter.Retain(*policy);
  std::lock_guard lock(state_->policy_mu);
  state_->policy = std::move(policy);
}

std::shared_ptr<const policy::Policy> SignService::policy() const {
  return state_->CurrentPolicy();
}

}  // namespace signet::service
