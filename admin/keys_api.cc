// Keys: GET /v1/keys, POST /v1/keys (generate), POST /v1/keys/NAME/disable|enable; and restoring
// the stored key definitions when the admin service starts.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <utility>

#include "admin/internal/state.h"

namespace signet::admin {
namespace internal {
namespace {

using nlohmann::json;

constexpr std::string_view kAttributes =
    "private key sensitive, never extractable, sign only (checked by the hsm module when the key "
    "was loaded)";

std::int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool ValidName(std::string_view name) {
  return !name.empty() && name.size() <= 128 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
  });
}

// Signatures released per key ("signed" items), from the service's counters.
std::map<std::string, std::uint64_t> SignaturesByKey(const service::ServiceMetrics& metrics) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& outcome : metrics.outcomes) {
    if (outcome.result == "signed") {
      out[outcome.key] += outcome.items;
    }
  }
  return out;
}

json KeyJson(const service::SignService::KeyState& key, const KeyDefinition* definition,
             std::uint64_t signatures) {
  json out{{"name", key.name},
           {"algorithm", key.algorithm},
           {"scheme", key.scheme},
           {"hash", key.hash},
           {"format", key.format},
           {"fingerprint", key.fingerprint},
           {"enabled", key.enabled},
           {"attributes_ok", true},
           {"attributes", kAttributes},
           {"signatures", signatures},
           {"origin", definition != nullptr ? definition->origin : "config"},
           {"status", key.enabled ? "active" : "disabled"}};
  if (!key.enabled) {
    out["disabled_reason"] = key.disabled_reason;
  }
  if (definition != nullptr) {
    if (!definition->hsm.empty()) {
      out["hsm"] = definition->hsm;
    }
    out["changed_by"] = definition->changed_by;
    out["changed_time_us"] = definition->time_us;
  }
  return out;
}

const KeyDefinition* FindDefinition(const std::vector<KeyDefinition>& definitions,
                                    std::string_view name) {
  const auto it = std::find_if(definitions.begin(), definitions.end(),
                               [&](const KeyDefinition& d) { return d.name == name; });
  return it == definitions.end() ? nullptr : &*it;
}

// The key `name` as the list shows it, or nullopt when the service has no such key.
std::optional<json> OneKey(State& state, std::string_view name) {
  const auto definitions = state.store.Keys().value_or(std::vector<KeyDefinition>{});
  const auto signatures = SignaturesByKey(state.service.metrics());
  for (const auto& key : state.service.Keys()) {
    if (key.name == name) {
      const auto it = signatures.find(key.name);
      return KeyJson(key, FindDefinition(definitions, key.name),
                     it == signatures.end() ? 0 : it->second);
    }
  }
  return std::nullopt;
}

void List(State& state, Call& call) {
  auto definitions = state.store.Keys();
  if (!definitions) {
    call.respond(ErrorResponse(definitions.error()));
    return;
  }
  const auto signatures = SignaturesByKey(state.service.metrics());
  json keys = json::array();
  for (const auto& key : state.service.Keys()) {
    const auto it = signatures.find(key.name);
    keys.push_back(KeyJson(key, FindDefinition(*definitions, key.name),
                           it == signatures.end() ? 0 : it->second));
  }
  // Stored keys the HSM no longer has (or that could not be loaded): listed, never served.
  for (const auto& [name, error] : state.unloaded_keys) {
    const KeyDefinition* d = FindDefinition(*definitions, name);
    keys.push_back(json{{"name", name},
                        {"algorithm", d != nullptr ? d->algorithm : ""},
                        {"format", d != nullptr ? d->format : ""},
                        {"fingerprint", d != nullptr ? d->fingerprint : ""},
                        {"enabled", false},
                        {"attributes_ok", false},
                        {"origin", "admin-api"},
                        {"status", "unavailable"},
                        {"error", error}});
  }
  call.respond(JsonResponse(200, json{{"keys", std::move(keys)}}));
}

// POST /v1/keys.
void Generate(State& state, Call& call) {
  const json body = json::parse(call.request.body, nullptr, false);
  if (!body.is_object()) {
    call.respond(net::JsonError(400, "malformed",
                                "the body must be a JSON object: {\"name\", \"algorithm\", "
                                "\"format\", \"hsm\"}"));
    return;
  }
  KeyDefinition def;
  try {
    def.name = body.at("name").get<std::string>();
    def.algorithm = body.at("algorithm").get<std::string>();
    def.format = body.value("format", "raw");
    def.hsm = body.value("hsm", "");
    def.hash = body.value("hash", def.algorithm == "ecdsa-p384" ? "sha384" : "sha256");
    def.rsa_padding = body.value("rsa_padding", "pkcs1");
  } catch (const json::exception& e) {
    call.respond(net::JsonError(
        400, "malformed",
        std::string(e.what()) + " (\"name\" and \"algorithm\" are required strings)"));
    return;
  }
  if (!ValidName(def.name)) {
    call.respond(net::JsonError(
        400, "malformed", "a key name is 1 to 128 of [A-Za-z0-9._-], not \"" + def.name + "\""));
    return;
  }
  auto type = hsm::ParseKeyType(def.algorithm);
  if (!type) {
    call.respond(net::JsonError(400, "malformed", type.error().message()));
    return;
  }
  if (def.format == "batch" && *type != hsm::KeyType::kEcdsaP256) {
    call.respond(net::JsonError(400, "malformed", "a batch key must be ecdsa-p256"));
    return;
  }
  if (def.format == "raw" && *type == hsm::KeyType::kEd25519) {
    call.respond(net::JsonError(400, "malformed",
                                "an ed25519 key cannot sign raw digests; use ecdsa-p256, "
                                "ecdsa-p384, rsa-3072 or rsa-4096"));
    return;
  }
  if (def.format != "raw" && def.format != "batch") {
    call.respond(net::JsonError(400, "malformed",
                                "format \"" + def.format +
                                    "\": the API generates \"raw\" or "
                                    "\"batch\" keys"));
    return;
  }
  auto spec = service::MakeSignSpec(*type, def.hash, def.rsa_padding);
  if (!spec) {
    call.respond(net::JsonError(400, "malformed", spec.error().message()));
    return;
  }
  if (def.hsm.empty()) {
    if (state.tokens.size() != 1) {
      call.respond(net::JsonError(400, "malformed",
                                  "name the HSM: \"hsm\" is one of the configuration's [[hsm]] "
                                  "names"));
      return;
    }
    def.hsm = state.tokens.begin()->first;
  }
  const auto token_it = state.tokens.find(def.hsm);
  if (token_it == state.tokens.end()) {
    call.respond(net::JsonError(404, "unknown_hsm", "no [[hsm]] named \"" + def.hsm + "\""));
    return;
  }
  hsm::Token& token = *token_it->second;
  def.label = def.name;

  std::lock_guard lock(state.change_mu);
  const auto existing = state.service.Keys();
  if (std::any_of(existing.begin(), existing.end(),
                  [&](const auto& k) { return k.name == def.name; }) ||
      state.unloaded_keys.contains(def.name)) {
    call.respond(net::JsonError(409, "key_exists", "a key named \"" + def.name + "\" exists"));
    return;
  }
  if (token.FindKey(def.label).has_value()) {
    call.respond(net::JsonError(409, "key_exists",
                                "hsm " + def.hsm + " already holds a key labelled \"" + def.label +
                                    "\"; choose another name"));
    return;
  }
  auto generated = token.GenerateKey(def.label, *type);
  if (!generated) {
    call.respond(
        ErrorResponse(generated.error().WithContext("generate the key in hsm " + def.hsm)));
    return;
  }
  // Read back through FindKey, which checks the private key's attributes.
  auto key = token.FindKey(def.label);
  if (!key) {
    call.respond(
        ErrorResponse(key.error().WithContext("the generated key \"" + def.label +
                                              "\" did not pass the attribute check; it is not "
                                              "used")));
    return;
  }
  def.fingerprint = key->public_key.fingerprint;
  def.origin = "admin-api";
  def.changed_by = call.who;
  def.time_us = NowUs();
  audit::Record record = ActionRecord(
      call, audit::RecordKind::kKey, "generate",
      "key generated in hsm " + def.hsm + " (label \"" + def.label + "\") by " + call.who);
  record.key_name = def.name;
  record.key_fingerprint = def.fingerprint;
  record.algorithm = def.algorithm;
  record.format = def.format;
  if (auto recorded = Record(state, std::move(record)); !recorded) {
    call.respond(net::JsonError(
        503, "audit_unavailable",
        "the key was generated in hsm " + def.hsm + " (label \"" + def.label +
            "\") but could not be recorded, so it is not used: " + recorded.error().message()));
    return;
  }
  call.recorded->store(true);
  if (auto stored = state.store.PutKey(def); !stored) {
    call.respond(ErrorResponse(stored.error().WithContext("store the key definition")));
    return;
  }
  auto added = state.service.AddKey(service::ServiceKey{.name = def.name,
                                                        .token = &token,
                                                        .key = std::move(*key),
                                                        .spec = *spec,
                                                        .format = def.format});
  if (!added) {
    call.respond(ErrorResponse(added.error()));
    return;
  }
  spdlog::info("key {} ({}, format {}, fingerprint {}) generated in hsm {} by {}", def.name,
               def.algorithm, def.format, def.fingerprint, def.hsm, call.who);
  auto shown = OneKey(state, def.name);
  net::Response response = JsonResponse(201, shown ? *shown : json::object());
  call.respond(std::move(response));
}

// POST /v1/keys/NAME/disable or /enable.
void SetEnabled(State& state, Call& call, const std::string& name, bool enabled) {
  std::string reason;
  if (!call.request.body.empty()) {
    const json body = json::parse(call.request.body, nullptr, false);
    if (!body.is_object() || (body.contains("reason") && !body["reason"].is_string())) {
      call.respond(net::JsonError(400, "malformed", "the body is {\"reason\": \"...\"} or empty"));
      return;
    }
    reason = body.value("reason", "");
    if (reason.size() > 1024) {
      call.respond(net::JsonError(400, "malformed", "the reason is at most 1024 bytes"));
      return;
    }
  }
  std::lock_guard lock(state.change_mu);
  const auto keys = state.service.Keys();
  const auto it =
      std::find_if(keys.begin(), keys.end(), [&](const auto& k) { return k.name == name; });
  if (it == keys.end()) {
    call.respond(net::JsonError(404, "unknown_key",
                                "no key named \"" + name + "\"; GET /v1/keys lists them"));
    return;
  }
  auto definitions = state.store.Keys();
  if (!definitions) {
    call.respond(ErrorResponse(definitions.error()));
    return;
  }
  KeyDefinition def;
  if (const KeyDefinition* found = FindDefinition(*definitions, name)) {
    def = *found;
  } else {
    def.name = name;
    def.origin = "config";
    def.algorithm = it->algorithm;
    def.format = it->format;
    def.fingerprint = it->fingerprint;
  }
  if (it->enabled == enabled) {
    call.respond(JsonResponse(200, OneKey(state, name).value_or(json::object())));
    return;
  }
  def.enabled = enabled;
  def.disabled_reason = enabled ? "" : reason;
  def.changed_by = call.who;
  def.time_us = NowUs();
  audit::Record record =
      ActionRecord(call, audit::RecordKind::kKey, enabled ? "enable" : "disable",
                   std::string(enabled ? "key enabled" : "key disabled") + " by " + call.who +
                       (reason.empty() ? "" : ": " + reason));
  record.key_name = name;
  record.key_fingerprint = it->fingerprint;
  record.algorithm = it->algorithm;
  record.format = it->format;
  if (auto recorded = Record(state, std::move(record)); !recorded) {
    call.respond(AuditUnavailable(recorded.error()));
    return;
  }
  call.recorded->store(true);
  if (auto stored = state.store.PutKey(def); !stored) {
    call.respond(ErrorResponse(stored.error().WithContext("store the key's state")));
    return;
  }
  if (auto set = state.service.SetKeyEnabled(
          name, enabled, reason.empty() ? "disabled by " + call.who : reason + ", " + call.who);
      !set) {
    call.respond(ErrorResponse(set.error()));
    return;
  }
  spdlog::info("key {} {} by {}{}", name, enabled ? "enabled" : "disabled", call.who,
               reason.empty() ? "" : ": " + reason);
  call.respond(JsonResponse(200, OneKey(state, name).value_or(json::object())));
}

}  // namespace

void HandleKeys(State& state, Call& call) {
  const std::string& path = call.path;
  const std::string& method = call.request.method;
  if (path == "/v1/keys") {
    if (method == "GET") {
      if (!call.Has(policy::Role::kAdmin) && !call.Has(policy::Role::kAuditor)) {
        call.respond(RoleRequired(call, policy::Role::kAdmin));
        return;
      }
      List(state, call);
    } else if (method == "POST") {
      if (!call.Has(policy::Role::kAdmin)) {
        call.respond(RoleRequired(call, policy::Role::kAdmin));
        return;
      }
      Generate(state, call);
    } else {
      call.respond(net::JsonError(405, "method_not_allowed", "use GET or POST /v1/keys"));
    }
    return;
  }
  // /v1/keys/NAME/disable, /v1/keys/NAME/enable
  const std::string rest = path.substr(std::string_view("/v1/keys/").size());
  const std::size_t slash = rest.find('/');
  const std::string name = rest.substr(0, slash);
  const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (action != "disable" && action != "enable") {
    call.respond(net::JsonError(
        404, "not_found",
        "no such endpoint: " + path + "; POST /v1/keys/NAME/disable or /v1/keys/NAME/enable"));
    return;
  }
  if (method != "POST") {
    call.respond(net::JsonError(405, "method_not_allowed", "use POST " + path));
    return;
  }
  if (!call.Has(policy::Role::kAdmin)) {
    call.respond(RoleRequired(call, policy::Role::kAdmin));
    return;
  }
  SetEnabled(state, call, name, action == "enable");
}

Status RestoreKeys(State& state) {
  SIGNET_ASSIGN_OR_RETURN(const std::vector<KeyDefinition> definitions, state.store.Keys());
  const auto served = state.service.Keys();
  auto is_served = [&](const std::string& name) {
    return std::any_of(served.begin(), served.end(), [&](const auto& k) { return k.name == name; });
  };
  for (const KeyDefinition& def : definitions) {
    if (def.origin == "admin-api" && !is_served(def.name)) {
      auto loaded = [&]() -> Status {
        const auto token = state.tokens.find(def.hsm);
        if (token == state.tokens.end()) {
          return MakeError(ErrorCode::kNotFound,
                           "no [[hsm]] named \"" + def.hsm + "\" in the configuration any more");
        }
        SIGNET_ASSIGN_OR_RETURN(hsm::KeyHandle key, token->second->FindKey(def.label));
        if (key.public_key.fingerprint != def.fingerprint) {
          return MakeError(ErrorCode::kInvalidArgument,
                           "the key labelled \"" + def.label + "\" in hsm " + def.hsm +
                               " has fingerprint " + key.public_key.fingerprint +
                               ", not the generated key's " + def.fingerprint);
        }
        SIGNET_ASSIGN_OR_RETURN(const hsm::KeyType type, hsm::ParseKeyType(def.algorithm));
        SIGNET_ASSIGN_OR_RETURN(const hsm::SignSpec spec,
                                service::MakeSignSpec(type, def.hash, def.rsa_padding));
        return state.service.AddKey(service::ServiceKey{.name = def.name,
                                                        .token = token->second,
                                                        .key = std::move(key),
                                                        .spec = spec,
                                                        .format = def.format});
      }();
      if (!loaded) {
        spdlog::error("key {} (generated through the admin API) is not served: {}", def.name,
                      loaded.error().ToString());
        state.unloaded_keys.emplace(def.name, loaded.error().message());
        continue;
      }
    } else if (!is_served(def.name)) {
      // A [[key]] removed from the configuration: nothing to serve, nothing to restore.
      continue;
    }
    if (!def.enabled) {
      SIGNET_RETURN_IF_ERROR(state.service.SetKeyEnabled(
          def.name, false,
          def.disabled_reason.empty() ? "disabled by " + def.changed_by
                                      : def.disabled_reason + ", " + def.changed_by));
    }
  }
  return OkStatus();
}

}  // namespace internal
}  // namespace signet::admin
