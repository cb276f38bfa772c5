#include "appliance/service/internal/request.h"

#include <nlohmann/json.hpp>

#include <set>
#include <utility>

namespace signet::service::internal {
namespace {

using nlohmann::json;

Error Bad(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

// Checks that `value` is a string of at most `max` bytes of UTF-8; `what` names it in errors.
Result<std::string> GetString(const json& value, std::string_view what, std::size_t max,
                              bool allow_empty) {
  if (!value.is_string()) {
    return MakeError(Bad(std::string(what) + " must be a string"));
  }
  const auto& s = value.get_ref<const std::string&>();
  if (!allow_empty && s.empty()) {
    return MakeError(Bad(std::string(what) + " must not be empty"));
  }
  if (s.size() > max) {
    return MakeError(Bad(std::string(what) + " is longer than " + std::to_string(max) + " bytes"));
  }
  if (!IsUtf8(s)) {
    return MakeError(Bad(std::string(what) + " is not valid UTF-8"));
  }
  return s;
}

// Refuses fields of `object` not in `allowed`, naming them all.
Status OnlyFields(const json& object, std::string_view what,
                  std::initializer_list<std::string_view> allowed) {
  std::string unknown;
  for (const auto& [name, value] : object.items()) {
    bool known = false;
    for (std::string_view a : allowed) {
      known = known || name == a;
    }
    if (!known) {
      unknown += (unknown.empty() ? "" : ", ") +
                 json(name).dump(-1, ' ', true, json::error_handler_t::replace);
    }
  }
  if (!unknown.empty()) {
    return MakeError(Bad(std::string(what) + " has unknown field(s) " + unknown));
  }
  return OkStatus();
}

// Digest algorithms a request may carry, and their lengths in bytes.
std::optional<std::size_t> DigestLength(std::string_view name) {
  if (name == "sha256") {
    return 32;
  }
  if (name == "sha384") {
    return 48;
  }
  if (name == "sha512") {
    return 64;
  }
  if (name == "blake2b512") {
    return 64;
  }
  return std::nullopt;
}

}  // namespace

struct ParsedBody::Doc {
  json items;
};

ParsedBody::ParsedBody() = default;
ParsedBody::~ParsedBody() = default;
ParsedBody::ParsedBody(ParsedBody&&) noexcept = default;
ParsedBody& ParsedBody::operator=(ParsedBody&&) noexcept = default;

bool IsUtf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) {
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += len;
  }
  return true;
}

Result<ParsedBody> ParseSignBody(std::string_view body, bool cbor) {
  json doc;
  if (cbor) {
    doc = json::from_cbor(body.begin(), body.end(), /*strict=*/true, /*allow_exceptions=*/false);
  } else {
    doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  }
  if (doc.is_discarded()) {
    return MakeError(Bad(cbor ? "the body is not valid CBOR" : "the body is not valid JSON"));
  }
  if (!doc.is_object()) {
    return MakeError(Bad("the body must be an object"));
  }
  SIGNET_RETURN_IF_ERROR(
      OnlyFields(doc, "the request", {"key", "tool", "client_host", "ticket", "items"}));
  ParsedBody parsed;
  SignBody& env = parsed.envelope;
  if (!doc.contains("key")) {
    return MakeError(Bad("the request has no \"key\""));
  }
  SIGNET_ASSIGN_OR_RETURN(env.key, GetString(doc["key"], "key", kMaxFieldBytes, false));
  if (!doc.contains("tool") || !doc["tool"].is_object()) {
    return MakeError(Bad("the request needs \"tool\": {\"name\": ..., \"version\": ...}"));
  }
  const json& tool = doc["tool"];
  SIGNET_RETURN_IF_ERROR(OnlyFields(tool, "tool", {"name", "version"}));
  if (!tool.contains("name")) {
    return MakeError(Bad("tool has no \"name\""));
  }
  SIGNET_ASSIGN_OR_RETURN(env.tool_name,
                          GetString(tool["name"], "tool.name", kMaxFieldBytes, false));
  if (tool.contains("version")) {
    SIGNET_ASSIGN_OR_RETURN(env.tool_version,
                            GetString(tool["version"], "tool.version", kMaxFieldBytes, true));
  }
  if (doc.contains("client_host")) {
    SIGNET_ASSIGN_OR_RETURN(env.client_host,
                            GetString(doc["client_host"], "client_host", kMaxFieldBytes, true));
  }
  if (doc.contains("ticket")) {
    SIGNET_ASSIGN_OR_RETURN(env.ticket, GetString(doc["ticket"], "ticket", kMaxFieldBytes, true));
  }
  if (!doc.contains("items") || !doc["items"].is_array()) {
    return MakeError(Bad("the request needs \"items\": an array of {name, size, digests}"));
  }
  if (doc["items"].empty()) {
    return MakeError(Bad("\"items\" is empty: send at least one item"));
  }
  env.item_count = doc["items"].size();
  parsed.doc = std::make_unique<ParsedBody::Doc>();
  parsed.doc->items = std::move(doc["items"]);
  return parsed;
}

Result<std::vector<SignItem>> ParsedBody::CheckItems(hsm::Hash hash) const {
  const std::string wanted(hsm::HashName(hash));
  std::vector<SignItem> items;
  items.reserve(doc->items.size());
  std::size_t index = 0;
  for (const json& item : doc->items) {
    const std::string at = "items[" + std::to_string(index++) + "]";
    if (!item.is_object()) {
      return MakeError(Bad(at + " must be an object {name, size, digests}"));
    }
    SIGNET_RETURN_IF_ERROR(OnlyFields(item, at, {"name", "size", "digests"}));
    SignItem out;
    if (!item.contains("name")) {
      return MakeError(Bad(at + " has no \"name\""));
    }
    SIGNET_ASSIGN_OR_RETURN(out.name, GetString(item["name"], at + ".name", kMaxNameBytes, false));
    if (item.contains("size")) {
      if (!item["size"].is_number_unsigned()) {
        return MakeError(Bad(at + ".size must be a non-negative integer"));
      }
      out.size = item["size"].get<std::uint64_t>();
    }
    if (!item.contains("digests") || !item["digests"].is_object() || item["digests"].empty()) {
      return MakeError(Bad(at + " needs \"digests\": {\"" + wanted + "\": \"<hex>\"}"));
    }
    for (const auto& [algorithm, value] : item["digests"].items()) {
      const std::string where = at + ".digests." + algorithm;
      if (algorithm == "md5" || algorithm == "sha1") {
        return MakeError(Bad(where + ": " + algorithm + " is refused (broken); send " + wanted));
      }
      const auto length = DigestLength(algorithm);
      if (!length) {
        return MakeError(Bad(at + ".digests: unknown algorithm " +
                             json(algorithm).dump(-1, ' ', true, json::error_handler_t::replace) +
                             " (accepted: sha256, sha384, sha512, blake2b512)"));
      }
      SIGNET_ASSIGN_OR_RETURN(std::string hex, GetString(value, where, kMaxFieldBytes, false));
      if (hex.size() != 2 * *length) {
        return MakeError(Bad(where + " must be " + std::to_string(2 * *length) +
                             " hex digits, not " + std::to_string(hex.size())));
      }
      auto bytes = HexDecode(hex);
      if (!bytes) {
        return MakeError(Bad(where + ": " + bytes.error().message()));
      }
      out.digests[algorithm] = HexEncode(*bytes);
    }
    if (!out.digests.contains(wanted)) {
      return MakeError(Bad(at + " has no " + wanted + " digest, which this key signs"));
    }
    items.push_back(std::move(out));
  }
  return items;
}

}  // namespace signet::service::internal
