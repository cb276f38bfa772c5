#include "appliance/service/internal/request.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <utility>

#include "appliance/service/internal/json_scan.h"

namespace signet::service::internal {
namespace {

using nlohmann::json;

Error Bad(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

// True when GetString would take `s` (a string) as it is.
bool StringFits(std::string_view s, std::size_t max, bool allow_empty) {
  return (allow_empty || !s.empty()) && s.size() <= max && IsUtf8(s);
}

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

// ---- The fast path: a body of the usual shape, read by SAX -------------------------------------
//
// Building nlohmann's DOM for 10,000 items (a std::map per item and per digests object) and then
// walking it was most of signetd's CPU per item. FastBody takes SAX events straight into
// FastItems, from JsonSubsetScanner (json_scan.h: escape-free strings and unsigned numbers, which
// is what `signet sign` sends) or, for a body the scanner leaves alone, from nlohmann's own SAX
// parser (the DOM's lexer and parser, so the same JSON is accepted). It gives up (the parse stops)
// on anything of another shape: a field that is unknown, of another type or given twice, an item
// that is not an object, a number that is not unsigned. Such a body, and one whose envelope fails
// a check, is parsed again into the DOM by the reference path (ParseDom), which names the
// failure; an item that fails a check is handed to CheckItem as JSON. So every error is the
// reference path's.

// An item of the usual shape: each field at most once, of the type CheckItem wants.
struct FastItem {
  bool has_name = false;
  std::string name;
  std::optional<std::uint64_t> size;
  bool has_digests = false;
  std::vector<std::pair<std::string, std::string>> digests;  // in arrival order, distinct
};

// Digest fields per item that FastBody takes; more go to the reference path.
constexpr std::size_t kMaxFastDigests = 8;

class FastBody {
 public:
  struct Envelope {
    std::optional<std::string> key;
    bool has_tool = false;
    std::optional<std::string> tool_name;
    std::optional<std::string> tool_version;
    std::optional<std::string> client_host;
    std::optional<std::string> ticket;
    bool has_items = false;
  };

  explicit FastBody(std::size_t expected_items) {
    // A guess from the body's size, so that the vector rarely grows.
    items_.reserve(std::min<std::size_t>(expected_items, 1 << 20));
  }

  Envelope& envelope() { return envelope_; }
  std::vector<FastItem>& items() { return items_; }
  bool done() const { return state_ == State::kDone; }

  // nlohmann's SAX interface. Returning false stops the parse.
  bool null() { return false; }
  bool boolean(bool /*value*/) { return false; }
  bool number_integer(json::number_integer_t /*value*/) { return false; }
  bool number_float(json::number_float_t /*value*/, const std::string& /*text*/) { return false; }
  bool binary(json::binary_t& /*value*/) { return false; }
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                   const json::exception& /*error*/) {
    return false;
  }
  bool number_unsigned(json::number_unsigned_t value) {
    if (state_ != State::kItemValue || field_ != Field::kSize) {
      return false;
    }
    items_.back().size = value;
    state_ = State::kItem;
    return true;
  }
  bool string(std::string& value);
  bool key(std::string& name);
  bool start_object(std::size_t /*elements*/);
  bool end_object();
  bool start_array(std::size_t /*elements*/) {
    if (state_ != State::kTopValue || field_ != Field::kItems) {
      return false;
    }
    state_ = State::kItems;
    return true;
  }
  bool end_array() {
    if (state_ != State::kItems) {
      return false;
    }
    state_ = State::kTop;
    return true;
  }

 private:
  enum class State : std::uint8_t {
    kStart,
    kTop,
    kTopValue,
    kTool,
    kToolValue,
    kItems,
    kItem,
    kItemValue,
    kDigests,
    kDigestValue,
    kDone,
  };
  enum class Field : std::uint8_t {
    kKey,
    kTool,
    kClientHost,
    kTicket,
    kItems,
    kToolName,
    kToolVersion,
    kName,
    kSize,
    kDigests,
  };
  // Sets `field_` to `field` unless it was seen before (`*seen` holds one bit per Field).
  bool First(Field field, std::uint32_t& seen) {
    const std::uint32_t bit = 1u << static_cast<unsigned>(field);
    if ((seen & bit) != 0) {
      return false;
    }
    seen |= bit;
    field_ = field;
    return true;
  }

  State state_ = State::kStart;
  Field field_ = Field::kKey;
  std::uint32_t top_seen_ = 0;
  std::uint32_t tool_seen_ = 0;
  std::uint32_t item_seen_ = 0;
  Envelope envelope_;
  std::vector<FastItem> items_;
};

bool FastBody::key(std::string& name) {
  switch (state_) {
    case State::kTop:
      state_ = State::kTopValue;
      return (name == "key" && First(Field::kKey, top_seen_)) ||
             (name == "tool" && First(Field::kTool, top_seen_)) ||
             (name == "client_host" && First(Field::kClientHost, top_seen_)) ||
             (name == "ticket" && First(Field::kTicket, top_seen_)) ||
             (name == "items" && First(Field::kItems, top_seen_));
    case State::kTool:
      state_ = State::kToolValue;
      return (name == "name" && First(Field::kToolName, tool_seen_)) ||
             (name == "version" && First(Field::kToolVersion, tool_seen_));
    case State::kItem:
      state_ = State::kItemValue;
      return (name == "name" && First(Field::kName, item_seen_)) ||
             (name == "size" && First(Field::kSize, item_seen_)) ||
             (name == "digests" && First(Field::kDigests, item_seen_));
    case State::kDigests: {
      auto& digests = items_.back().digests;
      if (digests.size() == kMaxFastDigests ||
          std::any_of(digests.begin(), digests.end(),
                      [&](const auto& digest) { return digest.first == name; })) {
        return false;
      }
      digests.emplace_back(std::move(name), std::string());
      state_ = State::kDigestValue;
      return true;
    }
    default:
      return false;
  }
}

bool FastBody::string(std::string& value) {
  switch (state_) {
    case State::kTopValue: {
      std::optional<std::string>* slot = field_ == Field::kKey          ? &envelope_.key
                                         : field_ == Field::kClientHost ? &envelope_.client_host
                                         : field_ == Field::kTicket     ? &envelope_.ticket
                                                                        : nullptr;
      if (slot == nullptr) {
        return false;
      }
      *slot = std::move(value);
      state_ = State::kTop;
      return true;
    }
    case State::kToolValue:
      (field_ == Field::kToolName ? envelope_.tool_name : envelope_.tool_version) =
          std::move(value);
      state_ = State::kTool;
      return true;
    case State::kItemValue:
      if (field_ != Field::kName) {
        return false;
      }
      items_.back().has_name = true;
      items_.back().name = std::move(value);
      state_ = State::kItem;
      return true;
    case State::kDigestValue:
      items_.back().digests.back().second = std::move(value);
      state_ = State::kDigests;
      return true;
    default:
      return false;
  }
}

bool FastBody::start_object(std::size_t /*elements*/) {
  switch (state_) {
    case State::kStart:
      state_ = State::kTop;
      return true;
    case State::kTopValue:
      if (field_ != Field::kTool) {
        return false;
      }
      envelope_.has_tool = true;
      state_ = State::kTool;
      return true;
    case State::kItems:
      items_.emplace_back();
      item_seen_ = 0;
      state_ = State::kItem;
      return true;
    case State::kItemValue:
      if (field_ != Field::kDigests) {
        return false;
      }
      items_.back().has_digests = true;
      state_ = State::kDigests;
      return true;
    default:
      return false;
  }
}

bool FastBody::end_object() {
  switch (state_) {
    case State::kTop:
      envelope_.has_items = (top_seen_ & (1u << static_cast<unsigned>(Field::kItems))) != 0;
      state_ = State::kDone;
      return true;
    case State::kTool:
      state_ = State::kTop;
      return true;
    case State::kItem:
      state_ = State::kItems;
      return true;
    case State::kDigests:
      state_ = State::kItem;
      return true;
    default:
      return false;
  }
}

// True when the envelope passes every check ParseDom makes.
bool EnvelopeFits(const FastBody::Envelope& env, std::size_t items) {
  const auto fits = [](const std::optional<std::string>& s, bool allow_empty) {
    return !s || StringFits(*s, kMaxFieldBytes, allow_empty);
  };
  return env.key && fits(env.key, false) && env.has_tool && env.tool_name &&
         fits(env.tool_name, false) && fits(env.tool_version, true) &&
         fits(env.client_host, true) && fits(env.ticket, true) && env.has_items && items > 0;
}

// The item as the DOM holds it, for CheckItem to name what is wrong with it.
json ItemJson(const FastItem& item) {
  json out = json::object();
  if (item.has_name) {
    out["name"] = item.name;
  }
  if (item.size) {
    out["size"] = *item.size;
  }
  if (item.has_digests) {
    json digests = json::object();
    for (const auto& [algorithm, hex] : item.digests) {
      digests[algorithm] = hex;
    }
    out["digests"] = std::move(digests);
  }
  return out;
}

constexpr std::array<bool, 256> kHexDigits = [] {
  std::array<bool, 256> table{};
  for (const char c : std::string_view("0123456789abcdefABCDEF")) {
    table[static_cast<unsigned char>(c)] = true;
  }
  return table;
}();

bool IsHexDigit(char c) { return kHexDigits[static_cast<unsigned char>(c)]; }

// True when every digest of `item` is one CheckItem takes as it is, lower-cased, and `wanted` is
// among them; lower-cases them then (as HexEncode(HexDecode(hex)) would).
bool DigestsFit(FastItem& item, std::string_view wanted) {
  if (!item.has_digests || item.digests.empty()) {
    return false;
  }
  bool has_wanted = false;
  for (const auto& [algorithm, hex] : item.digests) {
    const auto length = DigestLength(algorithm);
    if (!length || hex.size() != 2 * *length) {
      return false;
    }
    if (!std::all_of(hex.begin(), hex.end(), IsHexDigit)) {
      return false;
    }
    has_wanted = has_wanted || algorithm == wanted;
  }
  if (!has_wanted) {
    return false;
  }
  for (auto& [algorithm, hex] : item.digests) {
    for (char& c : hex) {
      c = c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c;
    }
  }
  return true;
}

}  // namespace

struct ParsedBody::Doc {
  // The items: `fast` when FastBody read the body, else `items` (the DOM's array).
  bool is_fast = false;
  std::vector<FastItem> fast;
  json items;
};

ParsedBody::ParsedBody() = default;
ParsedBody::~ParsedBody() = default;
ParsedBody::ParsedBody(ParsedBody&&) noexcept = default;
ParsedBody& ParsedBody::operator=(ParsedBody&&) noexcept = default;

namespace {

// The reference path: the whole body into nlohmann's DOM, then each check in turn.
Result<ParsedBody> ParseDom(std::string_view body, bool cbor) {
  json doc;
  try {
    if (cbor) {
      doc = json::from_cbor(body.begin(), body.end(), /*strict=*/true, /*allow_exceptions=*/false);
    } else {
      doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    }
  } catch (const json::exception&) {
    // nlohmann throws some errors even when asked not to: a CBOR map or array that declares more
    // entries than a container can hold (out_of_range.408), found by tests/fuzz/request_fuzz.
    doc = json(json::value_t::discarded);
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

// The fast path; nullopt when the body is for the reference path.
std::optional<ParsedBody> ParseFast(std::string_view body) {
  // About 150 bytes per item of the usual shape (name, size, one SHA-256 digest).
  FastBody reader(body.size() / 128 + 1);
  if (!JsonSubsetScanner(body, reader).Scan() || !reader.done()) {
    // Escapes, or anything else the scanner leaves to nlohmann's parser (json_scan.h).
    reader = FastBody(body.size() / 128 + 1);
    if (!json::sax_parse(body.begin(), body.end(), &reader) || !reader.done()) {
      return std::nullopt;
    }
  }
  if (!EnvelopeFits(reader.envelope(), reader.items().size())) {
    return std::nullopt;
  }
  FastBody::Envelope& fast = reader.envelope();
  ParsedBody parsed;
  SignBody& env = parsed.envelope;
  env.key = std::move(*fast.key);
  env.tool_name = std::move(*fast.tool_name);
  env.tool_version = std::move(fast.tool_version).value_or("");
  env.client_host = std::move(fast.client_host).value_or("");
  env.ticket = std::move(fast.ticket).value_or("");
  env.item_count = reader.items().size();
  parsed.doc = std::make_unique<ParsedBody::Doc>();
  parsed.doc->is_fast = true;
  parsed.doc->fast = std::move(reader.items());
  return parsed;
}

// Checks one item of the DOM; `wanted` is the name of the key's hash.
Result<SignItem> CheckItem(const json& item, std::size_t index, const std::string& wanted) {
  const std::string at = "items[" + std::to_string(index) + "]";
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
      return MakeError(Bad(where + " must be " + std::to_string(2 * *length) + " hex digits, not " +
                           std::to_string(hex.size())));
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
  return out;
}

}  // namespace

Result<ParsedBody> ParseSignBody(std::string_view body, bool cbor, ParsePath path) {
  if (!cbor && path == ParsePath::kFast) {
    if (auto fast = ParseFast(body)) {
      return std::move(*fast);
    }
  }
  return ParseDom(body, cbor);
}

Result<std::vector<SignItem>> ParsedBody::CheckItems(hsm::Hash hash) {
  const std::string wanted(hsm::HashName(hash));
  std::vector<SignItem> items;
  if (!doc->is_fast) {
    items.reserve(doc->items.size());
    std::size_t index = 0;
    for (const json& item : doc->items) {
      SIGNET_ASSIGN_OR_RETURN(SignItem checked, CheckItem(item, index++, wanted));
      items.push_back(std::move(checked));
    }
    return items;
  }
  items.reserve(doc->fast.size());
  for (std::size_t index = 0; index < doc->fast.size(); ++index) {
    FastItem& item = doc->fast[index];
    if (!item.has_name || !StringFits(item.name, kMaxNameBytes, false) ||
        !DigestsFit(item, wanted)) {
      // CheckItem names what is wrong (or, should it take the item after all, returns it).
      SIGNET_ASSIGN_OR_RETURN(SignItem checked, CheckItem(ItemJson(item), index, wanted));
      items.push_back(std::move(checked));
      continue;
    }
    SignItem& out = items.emplace_back();
    out.name = std::move(item.name);
    out.size = item.size;
    for (auto& [algorithm, hex] : item.digests) {
      out.digests.emplace(std::move(algorithm), std::move(hex));
    }
  }
  doc->fast.clear();
  return items;
}

}  // namespace signet::service::internal
