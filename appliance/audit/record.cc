// appliance/audit/record.cc: canonical record bytes (hand-written, for the callers' hot paths) and
// their strict parser (nlohmann, for the offline and lookup paths).
//
// The serializer writes keys in byte order by construction and must agree byte for byte with
// nlohmann::json::dump(); tests/audit/record_test.cc checks that on random records. The parser
// accepts only bytes that serialize back to themselves, so every record has exactly one encoding
// and a leaf hash can be recomputed from a parsed record.
#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "appliance/audit/audit.h"
#include "appliance/audit/internal/record.h"
#include "appliance/audit/internal/utf8.h"
#include "appliance/base/base.h"

namespace signet::audit {
namespace {

// Indexed by RecordKind.
constexpr std::array<std::string_view, 9> kKindNames = {
    "sign", "deny", "approval", "policy", "key", "admin", "startup", "shutdown", "batch"};
static_assert(kKindNames.size() == static_cast<std::size_t>(RecordKind::kBatch) + 1,
              "a RecordKind without a name");

// Refusing large inputs before nlohmann sees them bounds the parser's memory; records are at most
// LogOptions::max_record_bytes (64 KiB by default).
constexpr std::size_t kMaxParseBytes = std::size_t{1} << 20;
// The deepest canonical record is {"request":{"tool":{...}}}; anything much deeper is not one.
constexpr int kMaxParseDepth = 8;

template <class Int>
void AppendInt(std::string& out, Int value) {
  std::array<char, 24> buf;
  const auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  out.append(buf.data(), end);
}

// Escapes `text` onto `out` as nlohmann::json::dump() does. Returns the offset of the first byte
// that is not valid UTF-8 (after which `out` holds a partial string), or nullopt.
std::optional<std::size_t> EscapeJson(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
  const std::size_t n = text.size();
  out.push_back('"');
  std::size_t i = 0;
  while (i < n) {
    // Copy the longest run that needs no escaping and no UTF-8 decoding in one append.
    std::size_t run = i;
    while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\') {
      ++run;
    }
    out.append(text.data() + i, run - i);
    i = run;
    if (i == n) {
      break;
    }
    const std::uint8_t c = p[i];
    if (c < 0x80) {
      // dump() writes the two-character escapes JSON has and \u00xx for the other controls.
      const char short_escape = c == '"' || c == '\\' ? static_cast<char>(c)
                                : c == '\b'           ? 'b'
                                : c == '\f'           ? 'f'
                                : c == '\n'           ? 'n'
                                : c == '\r'           ? 'r'
                                : c == '\t'           ? 't'
                                                      : '\0';
      out.push_back('\\');
      if (short_escape != '\0') {
        out.push_back(short_escape);
      } else {
        out.append("u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xf]);
      }
      ++i;
      continue;
    }
    // A multi-byte sequence, decoded strictly (no overlong forms, surrogates or code points above
    // U+10FFFF) and copied as it is.
    const internal::Rune rune = internal::DecodeRune(text, i);
    if (rune.length == 0) {
      return i;
    }
    out.append(text.data() + i, rune.length);
    i += rune.length;
  }
  out.push_back('"');
  return std::nullopt;
}

tl::unexpected<Error> NotUtf8(std::string_view field, std::size_t offset) {
  return MakeError(ErrorCode::kInvalidArgument,
                   std::string(field) + " is not valid UTF-8 at byte " + std::to_string(offset));
}

// The members of one JSON object being written: keeps the commas right and lets a nested object
// that ends up with no members vanish, key and all.
class ObjectWriter {
 public:
  // `any`: members were written before this writer's (a comma goes before its first).
  explicit ObjectWriter(std::string& out, bool any = false) : out_(out), any_(any) {}

  // Starts a member: the comma that separates it from the previous one, if any.
  void Next() {
    if (any_) {
      out_.push_back(',');
    }
    any_ = true;
  }
  // Starts a member whose key is a constant (ASCII, nothing to escape).
  void Key(std::string_view key) {
    Next();
    out_.push_back('"');
    out_.append(key);
    out_.append("\":");
  }
  // Writes `"key":"value"` unless `value` is empty.
  [[nodiscard]] Status String(std::string_view key, std::string_view value,
                              std::string_view field) {
    if (value.empty()) {
      return OkStatus();
    }
    Key(key);
    return internal::AppendJsonString(out_, value, field);
  }
  template <class Int>
  void Number(std::string_view key, Int value) {
    Key(key);
    AppendInt(out_, value);
  }
  // Opens `"key":{`; the returned writer's members go inside. Close it with EndObject.
  ObjectWriter BeginObject(std::string_view key) {
    ObjectWriter child(out_);
    child.rollback_ = out_.size();
    child.parent_any_ = any_;
    Key(key);
    out_.push_back('{');
    return child;
  }
  void EndObject(ObjectWriter& child) {
    if (child.any_) {
      out_.push_back('}');
    } else {
      out_.resize(child.rollback_);
      any_ = child.parent_any_;
    }
  }
  bool any() const { return any_; }
  std::string& out() { return out_; }

 private:
  std::string& out_;
  bool any_ = false;
  std::size_t rollback_ = 0;
  bool parent_any_ = false;
};

// The top-level fields that sort before "seq" come in three parts: the front (algorithm,
// approvers), the item (artifact, batch), and the back (decision to requester). A request's
// records differ mostly in their item part; RecordPreparer reuses the others' bytes.

// Writes the front fields, in byte order.
Status WriteFront(const Record& r, ObjectWriter& top) {
  SIGNET_RETURN_IF_ERROR(top.String("algorithm", r.algorithm, "algorithm"));
  if (!r.approvers.empty()) {
    std::string& out = top.out();
    top.Key("approvers");
    out.push_back('[');
    for (std::size_t i = 0; i < r.approvers.size(); ++i) {
      out.append(i == 0 ? "{\"identity\":" : ",{\"identity\":");
      if (auto bad = EscapeJson(out, r.approvers[i].identity)) {
        return NotUtf8("approvers[" + std::to_string(i) + "].identity", *bad);
      }
      out.append(",\"time_us\":");
      AppendInt(out, r.approvers[i].time_us);
      out.push_back('}');
    }
    out.push_back(']');
  }
  return OkStatus();
}

// Writes the item fields, in byte order.
Status WriteItem(const Record& r, ObjectWriter& top) {
  {
    ObjectWriter artifact = top.BeginObject("artifact");
    if (!r.digests.empty()) {
      ObjectWriter digests = artifact.BeginObject("digests");
      for (const auto& [algorithm, hex] : r.digests) {
        digests.Next();
        if (auto bad = EscapeJson(top.out(), algorithm)) {
          return NotUtf8("artifact.digests key", *bad);
        }
        top.out().push_back(':');
        if (auto bad = EscapeJson(top.out(), hex)) {
          return NotUtf8("artifact.digests[" + algorithm + "]", *bad);
        }
      }
      artifact.EndObject(digests);
    }
    SIGNET_RETURN_IF_ERROR(artifact.String("name", r.artifact_name, "artifact.name"));
    if (r.artifact_size) {
      artifact.Number("size", *r.artifact_size);
    }
    top.EndObject(artifact);
  }
  if (r.batch) {
    const BatchRef& b = *r.batch;
    // An id-less reference would name no batch (and would vanish from the bytes if nothing else
    // were set), so it is refused rather than written.
    if (b.id.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "batch.id is empty: a batch reference must name its batch");
    }
    ObjectWriter batch = top.BeginObject("batch");
    SIGNET_RETURN_IF_ERROR(batch.String("id", b.id, "batch.id"));
    if (b.leaf_index) {
      batch.Number("leaf_index", *b.leaf_index);
    }
    SIGNET_RETURN_IF_ERROR(batch.String("note", b.note, "batch.note"));
    SIGNET_RETURN_IF_ERROR(batch.String("root", b.root, "batch.root"));
    if (b.tree_size) {
      batch.Number("tree_size", *b.tree_size);
    }
    top.EndObject(batch);
  }
  return OkStatus();
}

// Writes the back fields, in byte order. A field added here (or to WriteFront) must be compared
// in SameBack (SameFront) too, or RecordPreparer would reuse a previous record's bytes for it.
Status WriteBack(const Record& r, ObjectWriter& top) {
  SIGNET_RETURN_IF_ERROR(top.String("decision", r.decision, "decision"));
  SIGNET_RETURN_IF_ERROR(top.String("detail", r.detail, "detail"));
  SIGNET_RETURN_IF_ERROR(top.String("format", r.format, "format"));
  SIGNET_RETURN_IF_ERROR(top.String("host", r.host_id, "host"));
  {
    ObjectWriter key = top.BeginObject("key");
    SIGNET_RETURN_IF_ERROR(key.String("fingerprint", r.key_fingerprint, "key.fingerprint"));
    SIGNET_RETURN_IF_ERROR(key.String("name", r.key_name, "key.name"));
    top.EndObject(key);
  }
  top.Key("kind");
  top.out().push_back('"');
  top.out().append(RecordKindName(r.kind));
  top.out().push_back('"');
  {
    ObjectWriter peer = top.BeginObject("peer");
    SIGNET_RETURN_IF_ERROR(peer.String("address", r.peer_address, "peer.address"));
    if (r.peer_pid) {
      peer.Number("pid", *r.peer_pid);
    }
    top.EndObject(peer);
  }
  {
    ObjectWriter policy = top.BeginObject("policy");
    SIGNET_RETURN_IF_ERROR(policy.String("rule", r.policy_rule, "policy.rule"));
    SIGNET_RETURN_IF_ERROR(policy.String("version", r.policy_version, "policy.version"));
    top.EndObject(policy);
  }
  {
    ObjectWriter request = top.BeginObject("request");
    SIGNET_RETURN_IF_ERROR(request.String("client_host", r.client_host, "request.client_host"));
    SIGNET_RETURN_IF_ERROR(request.String("id", r.request_id, "request.id"));
    SIGNET_RETURN_IF_ERROR(request.String("ticket", r.ticket, "request.ticket"));
    ObjectWriter tool = request.BeginObject("tool");
    SIGNET_RETURN_IF_ERROR(tool.String("name", r.tool_name, "request.tool.name"));
    SIGNET_RETURN_IF_ERROR(tool.String("version", r.tool_version, "request.tool.version"));
    request.EndObject(tool);
    top.EndObject(request);
  }
  {
    const Identity& id = r.requester;
    ObjectWriter requester = top.BeginObject("requester");
    SIGNET_RETURN_IF_ERROR(
        requester.String("cert_fingerprint", id.cert_fingerprint, "requester.cert_fingerprint"));
    SIGNET_RETURN_IF_ERROR(
        requester.String("cert_subject", id.cert_subject, "requester.cert_subject"));
    if (!id.groups.empty()) {
      std::string& out = top.out();
      requester.Key("groups");
      out.push_back('[');
      for (std::size_t i = 0; i < id.groups.size(); ++i) {
        if (i != 0) {
          out.push_back(',');
        }
        if (auto bad = EscapeJson(out, id.groups[i])) {
          return NotUtf8("requester.groups[" + std::to_string(i) + "]", *bad);
        }
      }
      out.push_back(']');
    }
    if (id.uid) {
      requester.Number("uid", *id.uid);
    }
    SIGNET_RETURN_IF_ERROR(requester.String("user", id.user, "requester.user"));
    top.EndObject(requester);
  }
  return OkStatus();
}

bool SameFront(const Record& a, const Record& b) {
  return a.algorithm == b.algorithm && a.approvers == b.approvers;
}

bool SameBack(const Record& a, const Record& b) {
  return a.decision == b.decision && a.detail == b.detail && a.format == b.format &&
         a.host_id == b.host_id && a.key_fingerprint == b.key_fingerprint &&
         a.key_name == b.key_name && a.kind == b.kind && a.peer_address == b.peer_address &&
         a.peer_pid == b.peer_pid && a.policy_rule == b.policy_rule &&
         a.policy_version == b.policy_version && a.client_host == b.client_host &&
         a.request_id == b.request_id && a.ticket == b.ticket && a.tool_name == b.tool_name &&
         a.tool_version == b.tool_version && a.requester == b.requester;
}

// The fields of `r` that `write` writes, alone (no leading comma), into `out`.
Status WritePart(const Record& r, Status (*write)(const Record&, ObjectWriter&), std::string& out) {
  out.clear();
  ObjectWriter part(out);
  return write(r, part);
}

}  // namespace

std::string_view RecordKindName(RecordKind kind) {
  const auto index = static_cast<std::size_t>(kind);
  return index < kKindNames.size() ? kKindNames[index] : "unknown";
}

Result<RecordKind> ParseRecordKind(std::string_view name) {
  for (std::size_t i = 0; i < kKindNames.size(); ++i) {
    if (kKindNames[i] == name) {
      return static_cast<RecordKind>(i);
    }
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown record kind \"" + std::string(name) +
                       "\" (sign, deny, approval, policy, key, admin, startup, shutdown, batch)");
}

namespace internal {

Status AppendJsonString(std::string& out, std::string_view text, std::string_view field) {
  const std::size_t size = out.size();
  if (auto bad = EscapeJson(out, text)) {
    out.resize(size);
    return NotUtf8(field, *bad);
  }
  return OkStatus();
}

Result<std::size_t> RecordPreparer::Append(const Record& record, std::string& out) {
  const Record* previous = std::exchange(previous_, nullptr);  // until this one is done
  const std::size_t start = out.size();
  // Written where it goes, then checked and written in order: an error names the first bad
  // field, as WriteFront, WriteItem, WriteBack in turn would.
  auto written = [&]() -> Status {
    if (previous == nullptr || !SameFront(*previous, record)) {
      SIGNET_RETURN_IF_ERROR(WritePart(record, WriteFront, front_));
    }
    out.push_back('{');
    out.append(front_);
    ObjectWriter top(out, !front_.empty());
    SIGNET_RETURN_IF_ERROR(WriteItem(record, top));
    if (previous == nullptr || !SameBack(*previous, record)) {
      SIGNET_RETURN_IF_ERROR(WritePart(record, WriteBack, back_));
    }
    if (!back_.empty()) {
      top.Next();
      out.append(back_);
    }
    if (top.any()) {
      out.push_back(',');
    }
    return OkStatus();
  }();
  if (!written) {
    out.resize(start);
    return MakeError(std::move(written).error());
  }
  const std::size_t head_size = out.size() - start;
  if (!record.signature_sha256.empty()) {
    if (previous == nullptr || previous->signature_sha256 != record.signature_sha256) {
      middle_ = "\"signature_sha256\":";
      if (auto bad = AppendJsonString(middle_, record.signature_sha256, "signature_sha256"); !bad) {
        out.resize(start);
        return MakeError(std::move(bad).error());
      }
      middle_.push_back(',');
    }
    out.append(middle_);
  }
  previous_ = &record;
  return head_size;
}

Result<PreparedRecord> RecordPreparer::Prepare(const Record& record) {
  PreparedRecord prepared;
  prepared.text.reserve(512 + record.artifact_name.size() + record.detail.size() +
                        (record.batch ? record.batch->note.size() : 0));
  SIGNET_ASSIGN_OR_RETURN(prepared.head_size, Append(record, prepared.text));
  return prepared;
}

Result<PreparedRecord> PrepareRecord(const Record& record) {
  return RecordPreparer().Prepare(record);
}

void FinishRecordInto(std::string& out, std::string_view head, std::string_view middle,
                      std::uint64_t seq, std::int64_t time_us) {
  out.clear();
  out.reserve(head.size() + middle.size() + 64);
  out.append(head);
  out.append("\"seq\":");
  AppendInt(out, seq);
  out.push_back(',');
  out.append(middle);
  out.append("\"time_us\":");
  AppendInt(out, time_us);
  out.append(",\"v\":");
  AppendInt(out, kRecordVersion);
  out.push_back('}');
}

std::string FinishRecord(const PreparedRecord& prepared, std::uint64_t seq, std::int64_t time_us) {
  std::string out;
  FinishRecordInto(out, prepared.head(), prepared.middle(), seq, time_us);
  return out;
}

}  // namespace internal

Result<std::string> SerializeRecord(const Record& record) {
  SIGNET_ASSIGN_OR_RETURN(auto prepared, internal::PrepareRecord(record));
  return internal::FinishRecord(prepared, record.seq, record.time_us);
}

// ---- Parsing -----------------------------------------------------------------------------------

namespace {

using Json = nlohmann::json;

enum class Type : std::uint8_t {
  kString,
  kUint64,
  kUint32,
  kInt64,
  kVersion,
  kKind,
  kObject,
  kArray,
  kMap,
};
using enum Type;
struct FieldSpec {
  std::string_view path;  // "[]" stands for any array index or map key
  Type type;
};
// Every field a record may hold. ParseRecord refuses any other.
// clang-format off
constexpr FieldSpec kSchema[] = {
    {"", kObject}, {"algorithm", kString}, {"approvers", kArray}, {"approvers[]", kObject},
    {"approvers[].identity", kString}, {"approvers[].time_us", kInt64}, {"artifact", kObject},
    {"artifact.digests", kMap}, {"artifact.digests[]", kString}, {"artifact.name", kString},
    {"artifact.size", kUint64}, {"batch", kObject}, {"batch.id", kString},
    {"batch.leaf_index", kUint64}, {"batch.note", kString}, {"batch.root", kString},
    {"batch.tree_size", kUint64}, {"decision", kString}, {"detail", kString}, {"format", kString},
    {"host", kString}, {"key", kObject}, {"key.fingerprint", kString}, {"key.name", kString},
    {"kind", kKind}, {"peer", kObject}, {"peer.address", kString}, {"peer.pid", kInt64},
    {"policy", kObject}, {"policy.rule", kString}, {"policy.version", kString},
    {"request", kObject}, {"request.client_host", kString}, {"request.id", kString},
    {"request.ticket", kString}, {"request.tool", kObject}, {"request.tool.name", kString},
    {"request.tool.version", kString}, {"requester", kObject},
    {"requester.cert_fingerprint", kString}, {"requester.cert_subject", kString},
    {"requester.groups", kArray}, {"requester.groups[]", kString}, {"requester.uid", kUint32},
    {"requester.user", kString}, {"seq", kUint64}, {"signature_sha256", kString},
    {"time_us", kInt64}, {"v", kVersion}
};
// clang-format on

tl::unexpected<Error> BadField(std::string_view path, std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument,
                   (path.empty() ? std::string("record") : "record field " + std::string(path)) +
                       ": " + std::string(what));
}

struct TooDeep {};

bool FitsInt64(const Json& v) {
  return v.is_number_integer() &&
         (!v.is_number_unsigned() ||
          v.get<std::uint64_t>() <=
              static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
}

// Checks `j` against the schema entry `spec_path` (and its members against theirs), so that the
// extraction below can call get<>() without a type ever being wrong. `path` names the field in
// messages ("approvers[2].identity").
Status CheckSchema(const Json& j, const std::string& spec_path, const std::string& path) {
  const FieldSpec* spec = nullptr;
  for (const FieldSpec& s : kSchema) {
    if (s.path == spec_path) {
      spec = &s;
    }
  }
  if (spec == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument, "unknown record field \"" + path + "\"");
  }
  switch (spec->type) {
    case kString:
      return j.is_string() ? OkStatus() : BadField(path, "expected a string");
    case kUint64:
      return j.is_number_unsigned() ? OkStatus() : BadField(path, "expected an unsigned integer");
    case kUint32:
      return j.is_number_unsigned() &&
                     j.get<std::uint64_t>() <= std::numeric_limits<std::uint32_t>::max()
                 ? OkStatus()
                 : BadField(path, "expected an unsigned 32-bit integer");
    case kInt64:
      return FitsInt64(j) ? OkStatus() : BadField(path, "expected a signed 64-bit integer");
    case kVersion:
      return j.is_number_unsigned() && j.get<std::uint64_t>() == internal::kRecordVersion
                 ? OkStatus()
                 : BadField(path, "unsupported record version " + j.dump() +
                                      " (this build reads version 1)");
    case kKind:
      if (!j.is_string()) {
        return BadField(path, "expected a string");
      }
      if (auto kind = ParseRecordKind(j.get_ref<const std::string&>()); !kind) {
        return MakeError(std::move(kind).error().WithContext("record field " + path));
      }
      return OkStatus();
    case kArray:
      if (!j.is_array()) {
        return BadField(path, "expected an array");
      }
      for (std::size_t i = 0; i < j.size(); ++i) {
        SIGNET_RETURN_IF_ERROR(
            CheckSchema(j[i], spec_path + "[]", path + "[" + std::to_string(i) + "]"));
      }
      return OkStatus();
    case kObject:
    case kMap:
      if (!j.is_object()) {
        return BadField(path, "expected an object");
      }
      for (const auto& [key, value] : j.items()) {
        const bool map = spec->type == kMap;
        const std::string child_spec = map                 ? spec_path + "[]"
                                       : spec_path.empty() ? key
                                                           : spec_path + "." + key;
        const std::string child = map            ? path + "[" + key + "]"
                                  : path.empty() ? key
                                                 : path + "." + key;
        SIGNET_RETURN_IF_ERROR(CheckSchema(value, child_spec, child));
      }
      return OkStatus();
  }
  return OkStatus();
}

template <class T>
std::optional<T> Find(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? std::nullopt : std::optional<T>(it->get<T>());
}
std::string Str(const Json& object, const char* key) {
  return Find<std::string>(object, key).value_or("");
}
const Json& Member(const Json& object, const char* key) {
  static const Json kEmpty = Json::object();
  const auto it = object.find(key);
  return it == object.end() ? kEmpty : *it;
}

// Builds the record from JSON that passed CheckSchema (so no get<>() can throw).
Record FromJson(const Json& j) {
  Record r;
  r.kind = *ParseRecordKind(j.at("kind").get_ref<const std::string&>());
  r.seq = j.at("seq").get<std::uint64_t>();
  r.time_us = j.at("time_us").get<std::int64_t>();
  r.host_id = Str(j, "host");
  const Json& request = Member(j, "request");
  r.request_id = Str(request, "id");
  r.ticket = Str(request, "ticket");
  r.client_host = Str(request, "client_host");
  r.tool_name = Str(Member(request, "tool"), "name");
  r.tool_version = Str(Member(request, "tool"), "version");
  const Json& requester = Member(j, "requester");
  r.requester.uid = Find<std::uint32_t>(requester, "uid");
  r.requester.user = Str(requester, "user");
  r.requester.groups =
      Find<std::vector<std::string>>(requester, "groups").value_or(std::vector<std::string>{});
  r.requester.cert_subject = Str(requester, "cert_subject");
  r.requester.cert_fingerprint = Str(requester, "cert_fingerprint");
  r.peer_pid = Find<std::int64_t>(Member(j, "peer"), "pid");
  r.peer_address = Str(Member(j, "peer"), "address");
  r.key_name = Str(Member(j, "key"), "name");
  r.key_fingerprint = Str(Member(j, "key"), "fingerprint");
  r.algorithm = Str(j, "algorithm");
  r.format = Str(j, "format");
  const Json& artifact = Member(j, "artifact");
  r.artifact_name = Str(artifact, "name");
  r.artifact_size = Find<std::uint64_t>(artifact, "size");
  r.digests = Member(artifact, "digests").get<std::map<std::string, std::string>>();
  r.signature_sha256 = Str(j, "signature_sha256");
  if (const auto it = j.find("batch"); it != j.end()) {
    // An empty or id-less object parses here and is then refused by the canonical check (the
    // serializer names "batch.id").
    r.batch = BatchRef{Str(*it, "id"), Find<std::uint64_t>(*it, "leaf_index"),
                       Find<std::uint64_t>(*it, "tree_size"), Str(*it, "root"), Str(*it, "note")};
  }
  r.decision = Str(j, "decision");
  r.policy_rule = Str(Member(j, "policy"), "rule");
  r.policy_version = Str(Member(j, "policy"), "version");
  if (const auto it = j.find("approvers"); it != j.end()) {
    for (const Json& a : *it) {
      r.approvers.push_back({Str(a, "identity"), Find<std::int64_t>(a, "time_us").value_or(0)});
    }
  }
  r.detail = Str(j, "detail");
  return r;
}

}  // namespace

Result<Record> ParseRecord(std::string_view bytes) {
  if (bytes.size() > kMaxParseBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "record is " + std::to_string(bytes.size()) +
                                                      " bytes; records are at most 1 MiB");
  }
  Record record;
  try {
    // A record nests three levels deep; refusing deeper input bounds the parser's work.
    const Json j =
        Json::parse(bytes.begin(), bytes.end(), [](int depth, Json::parse_event_t, Json&) {
          if (depth > kMaxParseDepth) {
            throw TooDeep();
          }
          return true;
        });
    SIGNET_RETURN_IF_ERROR(CheckSchema(j, "", ""));
    for (const char* required : {"kind", "seq", "time_us", "v"}) {
      if (!j.contains(required)) {
        return BadField(required, "missing");
      }
    }
    record = FromJson(j);
  } catch (const TooDeep&) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "record nests deeper than " + std::to_string(kMaxParseDepth) + " levels");
  } catch (const Json::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, std::string("record is not JSON: ") + e.what());
  }
  // Byte equality with the re-serialization is what makes the encoding unique: it refuses
  // whitespace, key order, duplicate keys, escapes and number spellings that dump() would not
  // write, and empty values that the serializer leaves out.
  SIGNET_ASSIGN_OR_RETURN(const std::string canonical, SerializeRecord(record));
  if (canonical != bytes) {
    std::size_t at = 0;
    while (at < canonical.size() && at < bytes.size() && canonical[at] == bytes[at]) {
      ++at;
    }
    return MakeError(
        ErrorCode::kInvalidArgument,
        "record is not in canonical form (first difference at byte " + std::to_string(at) + ")");
  }
  return record;
}

}  // namespace signet::audit
