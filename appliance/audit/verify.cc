// Offline verification of exports (format in internal/export.h): no LMDB, no daemon, only the
// export and the audit key. The verifier trusts nothing in the export but the signed checkpoint:
// every record is tied to its root by an inclusion proof or, in a full export, by recomputing the
// root from all of them; the unsigned parts (filters, counts) are only checked for agreement with
// the records, so that removing records shows even where no proof can.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <istream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/audit/internal/export.h"
#include "pipeline/pipeline.h"

namespace signet::audit {
namespace {

using nlohmann::json;
using pipeline::MerkleHash;

std::string Str(std::uint64_t n) { return std::to_string(n); }

// "line 17" or "line 17 (seq 15)".
std::string Where(std::uint64_t line, std::optional<std::uint64_t> seq = std::nullopt) {
  std::string where = "line " + Str(line);
  if (seq) {
    where += " (seq " + Str(*seq) + ")";
  }
  return where;
}

enum class LineStatus { kLine, kEnd, kTooLong };

// Reads one line, without its "\n", of at most `max` bytes: a longer one is not read into memory.
LineStatus ReadLine(std::istream& in, std::size_t max, std::string& line) {
  line.clear();
  std::streambuf* buffer = in.rdbuf();
  if (buffer == nullptr) {
    return LineStatus::kEnd;
  }
  for (;;) {
    const int c = buffer->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      return line.empty() ? LineStatus::kEnd : LineStatus::kLine;
    }
    if (c == '\n') {
      return LineStatus::kLine;
    }
    if (line.size() == max) {
      return LineStatus::kTooLong;
    }
    line.push_back(static_cast<char>(c));
  }
}

// Field readers: the messages name the field, the caller puts the line in front.
Status CheckKeys(const json& object, std::initializer_list<std::string_view> allowed) {
  for (const auto& [name, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return MakeError(ErrorCode::kInvalidArgument, "unknown field \"" + name + "\"");
    }
  }
  return OkStatus();
}

Result<const json*> Field(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) {
    return MakeError(ErrorCode::kInvalidArgument, std::string("no \"") + name + "\" field");
  }
  return &*it;
}

Result<std::uint64_t> UintField(const json& object, const char* name) {
  SIGNET_ASSIGN_OR_RETURN(const json* value, Field(object, name));
  if (!value->is_number_unsigned()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("\"") + name + "\" is not a non-negative integer");
  }
  return value->get<std::uint64_t>();
}

Result<std::int64_t> IntField(const json& object, const char* name) {
  SIGNET_ASSIGN_OR_RETURN(const json* value, Field(object, name));
  if (!value->is_number_integer() ||
      (value->is_number_unsigned() &&
       value->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("\"") + name + "\" is not a 64-bit integer");
  }
  return value->get<std::int64_t>();
}

Result<std::string> StringField(const json& object, const char* name) {
  SIGNET_ASSIGN_OR_RETURN(const json* value, Field(object, name));
  if (!value->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument, std::string("\"") + name + "\" is not a string");
  }
  return value->get<std::string>();
}

Result<std::vector<MerkleHash>> HashesField(const json& object, const char* name) {
  SIGNET_ASSIGN_OR_RETURN(const json* value, Field(object, name));
  if (!value->is_array()) {
    return MakeError(ErrorCode::kInvalidArgument, std::string("\"") + name + "\" is not a list");
  }
  std::vector<MerkleHash> hashes;
  hashes.reserve(value->size());
  for (const json& item : *value) {
    Result<Bytes> bytes = item.is_string() ? Base64Decode(item.get_ref<const std::string&>())
                                           : MakeError(ErrorCode::kInvalidArgument, "not a string");
    if (!bytes || bytes->size() != MerkleHash{}.size()) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          std::string("\"") + name + "\" holds something other than base64 " + "32-byte hashes");
    }
    hashes.emplace_back();
    std::copy(bytes->begin(), bytes->end(), hashes.back().begin());
  }
  return hashes;
}

Result<ExportOptions> ParseFilters(const json& filters) {
  if (!filters.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "\"filters\" is not an object");
  }
  SIGNET_RETURN_IF_ERROR(CheckKeys(
      filters, {"from_seq", "to_seq", "from_time_us", "to_time_us", "key", "identity", "digest"}));
  ExportOptions options;
  if (filters.contains("from_seq")) {
    SIGNET_ASSIGN_OR_RETURN(options.from_seq, UintField(filters, "from_seq"));
  }
  if (filters.contains("to_seq")) {
    SIGNET_ASSIGN_OR_RETURN(options.to_seq, UintField(filters, "to_seq"));
  }
  if (filters.contains("from_time_us")) {
    SIGNET_ASSIGN_OR_RETURN(options.from_time_us, IntField(filters, "from_time_us"));
  }
  if (filters.contains("to_time_us")) {
    SIGNET_ASSIGN_OR_RETURN(options.to_time_us, IntField(filters, "to_time_us"));
  }
  for (auto [name, target] :
       {std::pair{"key", &options.key}, std::pair{"identity", &options.identity},
        std::pair{"digest", &options.digest}}) {
    if (filters.contains(name)) {
      SIGNET_ASSIGN_OR_RETURN(*target, StringField(filters, name));
      if (target->empty()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         std::string("filter \"") + name + "\" is empty");
      }
    }
  }
  if (!options.digest.empty()) {
    // Compared with records' lower-case hex.
    SIGNET_ASSIGN_OR_RETURN(Bytes digest, HexDecode(options.digest));
    options.digest = HexEncode(digest);
  }
  return options;
}

// {"from":M,"proof":[...]}: a proof from size M (at most `size`) to the checkpoint.
Result<std::pair<std::uint64_t, std::vector<MerkleHash>>> ConsistencyEntry(const json& entry,
                                                                           std::uint64_t size) {
  if (!entry.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "an entry is not an object");
  }
  SIGNET_RETURN_IF_ERROR(CheckKeys(entry, {"from", "proof"}));
  SIGNET_ASSIGN_OR_RETURN(std::uint64_t from, UintField(entry, "from"));
  SIGNET_ASSIGN_OR_RETURN(auto proof, HashesField(entry, "proof"));
  if (from > size) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "a proof from size " + Str(from) + " is past the checkpoint's size " + Str(size));
  }
  return std::pair{from, std::move(proof)};
}

// The state of one pass over an export.
class Verifier {
 public:
  Verifier(const NoteVerifier& key, const VerifyOptions& options)
      : key_(key), roots_at_(options.roots_at.begin(), options.roots_at.end()) {}

  Status Line(std::uint64_t line_no, const std::string& text);
  Result<ExportSummary> Finish(std::uint64_t lines) &&;

 private:
  Status Header(std::uint64_t line_no, const json& line);
  Status RecordLine(std::uint64_t line_no, const json& line);
  Status End(std::uint64_t line_no, const json& line);
  Status CheckRecord(std::uint64_t line_no, std::uint64_t index, const std::string& bytes);
  // Whether the filters pin the exact seq range: then a record missing at either end shows.
  bool SeqRangeOnly() const {
    return internal::IsContiguousExport(filters_) && !filters_.from_time_us && !filters_.to_time_us;
  }

  const NoteVerifier& key_;
  std::set<std::uint64_t> roots_at_;
  bool header_seen_ = false;
  bool ended_ = false;
  ExportOptions filters_;
  pipeline::MerkleBuilder builder_;  // full exports
  std::optional<bool> full_proofs_;  // full exports: whether the record lines carry proofs
  std::int64_t last_time_us_ = INT64_MIN;
  ExportSummary summary_;
};

Status Verifier::Line(std::uint64_t line_no, const std::string& text) {
  if (ended_) {
    return MakeError(ErrorCode::kInvalidArgument,
                     Where(line_no) + ": a line after the end line: lines were added");
  }
  if (text.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, Where(line_no) + " is empty");
  }
  json line = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (line.is_discarded() || !line.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     Where(line_no) + " is not a JSON object: the export is damaged");
  }
  // One canonical form only, so that no two exports of the same records differ and duplicate
  // keys (read differently by different JSON parsers) cannot hide anything.
  if (line.dump(-1, ' ', false, json::error_handler_t::replace) != text) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        Where(line_no) + " is not in canonical form (sorted keys, no spaces): it was edited");
  }
  auto type = StringField(line, "type");
  if (!type) {
    return MakeError(std::move(type).error().WithContext(Where(line_no)));
  }
  if (!header_seen_) {
    if (*type != "header") {
      return MakeError(ErrorCode::kInvalidArgument,
                       Where(line_no) + ": expected the header line, found a \"" + *type +
                           "\" line: not an export, or its beginning is missing");
    }
    return Header(line_no, line);
  }
  if (*type == "record") {
    return RecordLine(line_no, line);
  }
  if (*type == "end") {
    return End(line_no, line);
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   Where(line_no) + ": unexpected \"" + *type + "\" line");
}

Status Verifier::Header(std::uint64_t line_no, const json& line) {
  auto fail = [&](Error error) { return MakeError(std::move(error).WithContext(Where(line_no))); };
  header_seen_ = true;
  if (auto keys =
          CheckKeys(line, {"checkpoint", "consistency", "filters", "format", "full", "type"});
      !keys) {
    return fail(keys.error());
  }
  auto format = StringField(line, "format");
  if (!format) {
    return fail(format.error());
  }
  if (*format != internal::kExportFormat) {
    return fail(Error(ErrorCode::kInvalidArgument, "format \"" + *format + "\" is not " +
                                                       std::string(internal::kExportFormat) +
                                                       ": made by another version of Signet?"));
  }
  auto note = StringField(line, "checkpoint");
  if (!note) {
    return fail(note.error());
  }
  auto checkpoint = OpenCheckpoint(*note, key_);
  if (!checkpoint) {
    return fail(std::move(checkpoint).error().WithContext("checkpoint"));
  }
  summary_.checkpoint = std::move(*checkpoint);
  summary_.checkpoint_note = std::move(*note);
  const std::uint64_t size = summary_.checkpoint.size;

  auto filters_field = Field(line, "filters");
  if (!filters_field) {
    return fail(filters_field.error());
  }
  auto filters = ParseFilters(**filters_field);
  if (!filters) {
    return fail(filters.error());
  }
  filters_ = std::move(*filters);
  auto full = Field(line, "full");
  if (!full || !(*full)->is_boolean()) {
    return fail(Error(ErrorCode::kInvalidArgument, "\"full\" is not true or false"));
  }
  summary_.full = (*full)->get<bool>();
  if (summary_.full != internal::IsFullExport(filters_)) {
    return fail(Error(ErrorCode::kInvalidArgument,
                      summary_.full ? "the header says full but lists filters"
                                    : "the header says not full but lists no filter"));
  }

  auto consistency = Field(line, "consistency");
  if (!consistency || !(*consistency)->is_array()) {
    return fail(Error(ErrorCode::kInvalidArgument, "\"consistency\" is not a list"));
  }
  for (const json& entry : **consistency) {
    auto parsed = ConsistencyEntry(entry, size);
    if (!parsed) {
      return fail(std::move(parsed).error().WithContext("consistency"));
    }
    const std::uint64_t from = parsed->first;
    if (!summary_.consistency.emplace(from, std::move(parsed->second)).second) {
      return fail(
          Error(ErrorCode::kInvalidArgument, "two consistency proofs from size " + Str(from)));
    }
  }
  if (summary_.full && roots_at_.contains(0)) {
    summary_.prefix_roots[0] = pipeline::EmptyTreeHash();
  }
  return OkStatus();
}

Status Verifier::RecordLine(std::uint64_t line_no, const json& line) {
  auto index = UintField(line, "index");
  if (!index) {
    return MakeError(std::move(index).error().WithContext(Where(line_no)));
  }
  const std::uint64_t seq = *index;
  auto fail = [&](ErrorCode code, std::string message) {
    return MakeError(code, Where(line_no, seq) + ": " + std::move(message));
  };
  const bool has_proof = line.contains("proof");
  if (auto keys = CheckKeys(line, {"index", "proof", "record", "type"}); !keys) {
    return fail(ErrorCode::kInvalidArgument, keys.error().message());
  }
  if (!has_proof && !summary_.full) {
    return fail(ErrorCode::kInvalidArgument, "no inclusion proof (\"proof\")");
  }
  // A full export carries a proof on every record line or on none.
  if (!full_proofs_) {
    full_proofs_ = has_proof;
  } else if (*full_proofs_ != has_proof) {
    return fail(ErrorCode::kInvalidArgument,
                has_proof ? "carries an inclusion proof, but the lines before it do not"
                          : "no inclusion proof (\"proof\"), but the lines before it carry one");
  }
  auto bytes = StringField(line, "record");
  if (!bytes) {
    return fail(ErrorCode::kInvalidArgument, bytes.error().message());
  }

  const std::uint64_t size = summary_.checkpoint.size;
  if (seq >= size) {
    return fail(ErrorCode::kInvalidArgument,
                "seq " + Str(seq) + " is not covered by the checkpoint (size " + Str(size) + ")");
  }
  const std::optional<std::uint64_t> last = summary_.last_seq;
  if (last && seq <= *last) {
    return fail(ErrorCode::kInvalidArgument,
                "comes after seq " + Str(*last) + ": record lines were reordered or repeated");
  }
  if (summary_.full && seq != summary_.records) {
    return fail(ErrorCode::kInvalidArgument,
                "expected seq " + Str(summary_.records) +
                    ": a full export holds every record from 0 in order; records were removed");
  }
  if (internal::IsContiguousExport(filters_)) {
    if (last && seq != *last + 1) {
      return fail(ErrorCode::kInvalidArgument,
                  "expected seq " + Str(*last + 1) + " next: records were removed");
    }
    if (!last && SeqRangeOnly() && seq != filters_.from_seq) {
      return fail(ErrorCode::kInvalidArgument,
                  "expected seq " + Str(filters_.from_seq) +
                      " first (the export starts at from_seq): records were removed");
    }
  }

  const MerkleHash leaf = pipeline::LeafHash(AsBytes(*bytes));
  if (summary_.full) {
    builder_.Append(leaf);
    if (roots_at_.contains(builder_.size())) {
      summary_.prefix_roots[builder_.size()] = builder_.Root();
    }
  }
  if (has_proof) {
    auto proof = HashesField(line, "proof");
    if (!proof) {
      return fail(ErrorCode::kInvalidArgument, proof.error().message());
    }
    auto included = pipeline::VerifyInclusion(leaf, seq, size, *proof, summary_.checkpoint.root);
    if (!included && included.error().code() == ErrorCode::kCrypto) {
      return fail(ErrorCode::kCrypto,
                  "inclusion proof does not lead to the checkpoint root: the record was changed, "
                  "or the proof");
    }
    if (!included) {
      return fail(ErrorCode::kInvalidArgument, "inclusion proof: " + included.error().message());
    }
  }
  SIGNET_RETURN_IF_ERROR(CheckRecord(line_no, seq, *bytes));

  ++summary_.records;
  if (!summary_.first_seq) {
    summary_.first_seq = seq;
  }
  summary_.last_seq = seq;
  return OkStatus();
}

// The record itself: canonical, numbered as its index, in time order, and one the filters select.
Status Verifier::CheckRecord(std::uint64_t line_no, std::uint64_t seq, const std::string& bytes) {
  auto fail = [&](std::string message) {
    return MakeError(ErrorCode::kInvalidArgument, Where(line_no, seq) + ": " + std::move(message));
  };
  auto record = ParseRecord(bytes);
  if (!record) {
    return fail("the record is not canonical: " + record.error().message());
  }
  if (record->seq != seq) {
    return fail("the record says it is seq " + Str(record->seq));
  }
  if (record->time_us < last_time_us_) {
    return fail("the record's time goes back before the previous record's");
  }
  last_time_us_ = record->time_us;
  if (seq < filters_.from_seq || (filters_.to_seq && seq >= *filters_.to_seq)) {
    return fail("outside the export's seq range");
  }
  if ((filters_.from_time_us && record->time_us < *filters_.from_time_us) ||
      (filters_.to_time_us && record->time_us >= *filters_.to_time_us)) {
    return fail("the record's time is outside the export's time range");
  }
  if (!filters_.key.empty() && !internal::MatchesKey(*record, filters_.key)) {
    return fail("the record does not match the export's key filter");
  }
  if (!filters_.identity.empty() && !internal::MatchesIdentity(*record, filters_.identity)) {
    return fail("the record does not match the export's identity filter");
  }
  if (!filters_.digest.empty() && !internal::MatchesDigest(*record, filters_.digest)) {
    return fail("the record does not match the export's digest filter");
  }
  return OkStatus();
}

Status Verifier::End(std::uint64_t line_no, const json& line) {
  auto fail = [&](ErrorCode code, std::string message) {
    return MakeError(code, Where(line_no) + ": " + std::move(message));
  };
  if (auto keys = CheckKeys(line, {"records", "type"}); !keys) {
    return fail(ErrorCode::kInvalidArgument, keys.error().message());
  }
  auto count = UintField(line, "records");
  if (!count) {
    return fail(ErrorCode::kInvalidArgument, count.error().message());
  }
  ended_ = true;
  const std::uint64_t records = summary_.records;
  if (*count != records) {
    return fail(ErrorCode::kInvalidArgument, "the end line counts " + Str(*count) +
                                                 " records but the export holds " + Str(records) +
                                                 ": records were removed or added");
  }
  const std::uint64_t size = summary_.checkpoint.size;
  if (summary_.full) {
    if (records != size) {
      return fail(ErrorCode::kInvalidArgument, "a full export of the checkpoint of size " +
                                                   Str(size) + " holds only " + Str(records) +
                                                   " records: records were removed at the end");
    }
    if (builder_.Root() != summary_.checkpoint.root) {
      return fail(ErrorCode::kCrypto,
                  "the root recomputed from " + Str(records) +
                      " records does not match the checkpoint root: a record was changed" +
                      (full_proofs_.value_or(false)
                           ? std::string()
                           : " (an export with inclusion proofs, the default, names it)"));
    }
  } else if (SeqRangeOnly()) {
    const std::uint64_t first = std::min(filters_.from_seq, size);
    const std::uint64_t end = std::max(first, std::min(filters_.to_seq.value_or(size), size));
    if (records != end - first) {
      return fail(ErrorCode::kInvalidArgument, "the export's filters select seqs [" + Str(first) +
                                                   ", " + Str(end) + ") but it holds " +
                                                   Str(records) +
                                                   " records: records were removed at the end");
    }
  }
  return OkStatus();
}

Result<ExportSummary> Verifier::Finish(std::uint64_t lines) && {
  if (!header_seen_) {
    return MakeError(ErrorCode::kInvalidArgument, "the export is empty: no header line");
  }
  if (!ended_) {
    return MakeError(ErrorCode::kInvalidArgument, "export is truncated: no end line (after line " +
                                                      Str(lines) + ", " + Str(summary_.records) +
                                                      " records)");
  }
  return std::move(summary_);
}

}  // namespace

Result<ExportSummary> VerifyExport(std::istream& in, const NoteVerifier& key,
                                   const VerifyOptions& options) {
  Verifier verifier(key, options);
  std::string line;
  std::uint64_t line_no = 0;
  for (;;) {
    const LineStatus status = ReadLine(in, options.max_line_bytes, line);
    if (status == LineStatus::kEnd) {
      break;
    }
    ++line_no;
    if (status == LineStatus::kTooLong) {
      return MakeError(ErrorCode::kInvalidArgument,
                       Where(line_no) + " is longer than " + Str(options.max_line_bytes) +
                           " bytes (VerifyOptions::max_line_bytes): not an export, or a record "
                           "larger than the limit");
    }
    SIGNET_RETURN_IF_ERROR(verifier.Line(line_no, line));
  }
  return std::move(verifier).Finish(line_no);
}

Status VerifyConsistent(const ExportSummary& older, const ExportSummary& newer) {
  const Checkpoint& a = older.checkpoint;
  const Checkpoint& b = newer.checkpoint;
  if (a.origin != b.origin) {
    return MakeError(ErrorCode::kInvalidArgument, "the exports are of different logs (origins \"" +
                                                      a.origin + "\" and \"" + b.origin + "\")");
  }
  if (a.size > b.size) {
    return MakeError(ErrorCode::kInvalidArgument, "the older export's checkpoint (size " +
                                                      Str(a.size) +
                                                      ") is larger than the newer one's (size " +
                                                      Str(b.size) + "): pass them smaller first");
  }
  if (a.size == b.size || a.size == 0) {
    // No proof needed: equal trees have equal roots, and every tree extends the empty one.
    return pipeline::VerifyConsistency(a.size, b.size, a.root, b.root, {});
  }
  const std::string not_prefix = "the checkpoint of size " + Str(a.size) +
                                 " is not a prefix of the one of size " + Str(b.size) + ": ";
  if (auto proof = newer.consistency.find(a.size); proof != newer.consistency.end()) {
    auto consistent = pipeline::VerifyConsistency(a.size, b.size, a.root, b.root, proof->second);
    if (!consistent && consistent.error().code() == ErrorCode::kCrypto) {
      return MakeError(ErrorCode::kCrypto, not_prefix +
                                               "the log was rewritten, or the proof changed (" +
                                               consistent.error().message() + ")");
    }
    return consistent;
  }
  if (auto root = newer.prefix_roots.find(a.size); root != newer.prefix_roots.end()) {
    if (root->second != a.root) {
      return MakeError(ErrorCode::kCrypto,
                       not_prefix + "the first " + Str(a.size) +
                           " records of the full newer export hash to another root: the log was "
                           "rewritten");
    }
    return OkStatus();
  }
  return MakeError(
      ErrorCode::kInvalidArgument,
      "the newer export (size " + Str(b.size) + ") carries no consistency proof from size " +
          Str(a.size) +
          (newer.full ? " and its prefix root at that size was not computed (VerifyOptions::"
                        "roots_at)"
                      : "") +
          ": export it again with consistency_from " + Str(a.size) +
          " (signet audit export --consistency-from " + Str(a.size) + ")");
}

}  // namespace signet::audit
