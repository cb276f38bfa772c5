// Exports of the audit log (format in internal/export.h): the records an ExportOptions selects,
// each with its inclusion proof in the latest signed checkpoint's tree (or, for a full export, all
// of them so that the verifier recomputes the root), read a page per read transaction.
#include "appliance/audit/internal/export.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "appliance/audit/internal/query.h"
#include "appliance/audit/internal/store.h"
#include "pipeline/pipeline.h"

namespace signet::audit::internal {
namespace {

using nlohmann::json;
using pipeline::MerkleHash;

constexpr std::array kDigestAlgorithms{
    pipeline::DigestAlgorithm::kSha256, pipeline::DigestAlgorithm::kSha384,
    pipeline::DigestAlgorithm::kSha512, pipeline::DigestAlgorithm::kBlake2b512};

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    return lower(x) == lower(y);
  });
}

// The text a record's bytes must hold to match a key or identity filter: the name, the user name
// after "user:", the number after "uid:", or the subject or fingerprint. Empty (no pre-check) when
// the filter is empty or holds characters that JSON escapes.
std::string_view Needle(std::string_view filter) {
  const bool escaped = std::ranges::any_of(
      filter, [](char c) { return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20; });
  return escaped ? std::string_view() : filter;
}
std::string_view KeyNeedle(std::string_view key) { return Needle(key); }
std::string_view IdentityNeedle(std::string_view identity) {
  for (std::string_view prefix : {std::string_view("user:"), std::string_view("uid:")}) {
    if (identity.starts_with(prefix)) {
      return Needle(identity.substr(prefix.size()));
    }
  }
  return Needle(identity);
}
// True when `needle` is empty or occurs in `bytes`, ASCII letters compared ignoring case.
bool MightHold(std::string_view bytes, std::string_view needle) {
  if (needle.empty()) {
    return true;
  }
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  // std::search, not std::ranges::search: clang with libstdc++ 12 cannot build the latter's
  // subrange (the fuzz build uses clang).
  return std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end(),
                     [&](char a, char b) { return lower(a) == lower(b); }) != bytes.end();
}

// Canonical: sorted keys (nlohmann's std::map), no spaces. Strings here come from the store and
// are valid UTF-8; `replace` only keeps dump() from throwing if one were not, and the verifier
// would then refuse the changed bytes.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json ProofJson(std::span<const MerkleHash> proof) {
  json out = json::array();
  for (const MerkleHash& hash : proof) {
    out.push_back(Base64Encode(hash));
  }
  return out;
}

// What the options resolve to against one checkpoint.
struct Plan {
  std::string note;
  Checkpoint checkpoint;
  bool full = false;
  Selection selection;  // within the checkpoint
  std::string header;   // the header line
};

json FiltersJson(const ExportOptions& options, std::string_view digest_hex) {
  json filters = json::object();
  if (options.from_seq != 0) {
    filters["from_seq"] = options.from_seq;
  }
  if (options.to_seq) {
    filters["to_seq"] = *options.to_seq;
  }
  if (options.from_time_us) {
    filters["from_time_us"] = *options.from_time_us;
  }
  if (options.to_time_us) {
    filters["to_time_us"] = *options.to_time_us;
  }
  if (!options.key.empty()) {
    filters["key"] = options.key;
  }
  if (!options.identity.empty()) {
    filters["identity"] = options.identity;
  }
  if (!digest_hex.empty()) {
    filters["digest"] = std::string(digest_hex);
  }
  return filters;
}

// Resolves the options in one read transaction: the checkpoint, the range, the consistency proofs.
Result<Plan> MakePlan(const Store& store, const ExportOptions& options) {
  Plan plan;
  plan.full = IsFullExport(options);

  SIGNET_ASSIGN_OR_RETURN(ReadView view, store.Read());
  SIGNET_ASSIGN_OR_RETURN(std::optional<std::string> note, view.LatestCheckpoint());
  if (!note) {
    return MakeError(ErrorCode::kUnavailable,
                     "the log has no signed checkpoint yet: nothing can be exported (a checkpoint "
                     "is signed soon after the first record)");
  }
  plan.note = std::move(*note);
  auto parsed = ParseNote(plan.note);
  if (!parsed) {
    return MakeError(ErrorCode::kInternal,
                     "the stored checkpoint is not a signed note: " + parsed.error().message());
  }
  auto checkpoint = ParseCheckpointText(parsed->text);
  if (!checkpoint) {
    return MakeError(ErrorCode::kInternal,
                     "the stored checkpoint is malformed: " + checkpoint.error().message());
  }
  plan.checkpoint = std::move(*checkpoint);
  const std::uint64_t size = plan.checkpoint.size;

  // Consistency proofs first: a bad size is an error whatever the records.
  std::vector<std::uint64_t> from_sizes = options.consistency_from;
  std::ranges::sort(from_sizes);
  from_sizes.erase(std::unique(from_sizes.begin(), from_sizes.end()), from_sizes.end());
  json consistency = json::array();
  for (std::uint64_t from : from_sizes) {
    if (from > size) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "consistency_from " + std::to_string(from) +
                           " is past the latest signed checkpoint (size " + std::to_string(size) +
                           "): a consistency proof goes from an older, smaller tree");
    }
    SIGNET_ASSIGN_OR_RETURN(auto proof, pipeline::ConsistencyProof(from, size, view.Nodes()));
    consistency.push_back(json{{"from", from}, {"proof", ProofJson(proof)}});
  }

  SIGNET_ASSIGN_OR_RETURN(plan.selection, Select(view, options, size));

  json header{{"checkpoint", plan.note},
              {"consistency", std::move(consistency)},
              {"filters", FiltersJson(options, plan.selection.digest_hex)},
              {"format", kExportFormat},
              {"full", plan.full},
              {"type", "header"}};
  plan.header = Dump(header) + "\n";
  return plan;
}

// Builds the lines of the next page (from candidate `*next` on), advancing `*next`.
Result<std::vector<std::string>> ReadPage(const Store& store, const Plan& plan,
                                          const ExportOptions& options, std::uint64_t* next) {
  const Selection& selection = plan.selection;
  const std::uint64_t total =
      selection.seqs ? selection.seqs->size() : selection.end - selection.first;
  std::vector<std::string> lines;
  std::size_t bytes = 0;
  SIGNET_ASSIGN_OR_RETURN(ReadView view, store.Read());
  const pipeline::NodeSource nodes = view.Nodes();
  for (std::size_t looked = 0;
       *next < total && looked < kExportPageRecords && bytes < kExportPageBytes; ++looked) {
    const std::uint64_t seq = selection.seqs ? (*selection.seqs)[*next] : selection.first + *next;
    ++*next;
    auto stored = view.Record(seq);
    if (!stored) {
      return MakeError(std::move(stored).error().WithContext(
          "record " + std::to_string(seq) + " (below the signed checkpoint's size " +
          std::to_string(plan.checkpoint.size) + ")"));
    }
    SIGNET_ASSIGN_OR_RETURN(const bool selected, Matches(selection, options, seq, *stored));
    if (!selected) {
      continue;
    }
    // Built by hand in canonical key order (index < proof < record < type) to spare a json
    // object per record; the verifier re-dumps each line and would catch a difference.
    std::string line = "{\"index\":" + std::to_string(seq);
    if (!plan.full || options.full_proofs) {
      SIGNET_ASSIGN_OR_RETURN(auto proof,
                              pipeline::InclusionProof(seq, plan.checkpoint.size, nodes));
      line += ",\"proof\":" + Dump(ProofJson(proof));
    }
    line += ",\"record\":" + Dump(json(std::move(*stored)));
    line += ",\"type\":\"record\"}\n";
    bytes += line.size();
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace

Status ValidateFilter(const ExportOptions& options) {
  if (options.to_seq && options.from_seq > *options.to_seq) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "from_seq " + std::to_string(options.from_seq) + " is past to_seq " +
                         std::to_string(*options.to_seq) + " (the range is [from, to))");
  }
  if (options.from_time_us && options.to_time_us && *options.from_time_us > *options.to_time_us) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "from_time_us " + std::to_string(*options.from_time_us) +
                         " is after to_time_us " + std::to_string(*options.to_time_us) +
                         " (the range is [from, to))");
  }
  if (!options.digest.empty()) {
    if (auto decoded = HexDecode(options.digest); !decoded) {
      return MakeError(std::move(decoded).error().WithContext("digest"));
    }
  }
  return OkStatus();
}

Result<Selection> Select(const ReadView& view, const ExportOptions& options, std::uint64_t size) {
  Selection selection;
  selection.parse_records = !options.key.empty() || !options.identity.empty();
  selection.first = std::min(options.from_seq, size);
  selection.end = options.to_seq ? std::min(*options.to_seq, size) : size;
  // Times never decrease along the log, so a time bound is a seq bound.
  if (options.from_time_us) {
    SIGNET_ASSIGN_OR_RETURN(std::uint64_t at, view.FirstSeqAtOrAfter(*options.from_time_us, size));
    selection.first = std::max(selection.first, at);
  }
  if (options.to_time_us) {
    SIGNET_ASSIGN_OR_RETURN(std::uint64_t at, view.FirstSeqAtOrAfter(*options.to_time_us, size));
    selection.end = std::min(selection.end, at);
  }
  selection.end = std::max(selection.end, selection.first);
  if (!options.digest.empty()) {
    auto digest = HexDecode(options.digest);
    if (!digest) {
      return MakeError(std::move(digest).error().WithContext("digest"));
    }
    selection.digest_hex = HexEncode(*digest);
    SIGNET_ASSIGN_OR_RETURN(auto seqs, DigestSeqs(view, *digest));
    std::erase_if(seqs,
                  [&](std::uint64_t seq) { return seq < selection.first || seq >= selection.end; });
    selection.seqs = std::move(seqs);
  }
  return selection;
}

Result<bool> Matches(const Selection& selection, const ExportOptions& options, std::uint64_t seq,
                     std::string_view bytes) {
  if (!selection.parse_records) {
    return true;
  }
  // Parsing a record costs far more than a search of its bytes: a record whose bytes do not hold
  // the filter's text (ignoring case) cannot match it.
  if (!MightHold(bytes, KeyNeedle(options.key)) ||
      !MightHold(bytes, IdentityNeedle(options.identity))) {
    return false;
  }
  auto record = ParseRecord(bytes);
  if (!record) {
    return MakeError(ErrorCode::kInternal,
                     "record " + std::to_string(seq) +
                         " in the store is not canonical: " + record.error().message());
  }
  return (options.key.empty() || MatchesKey(*record, options.key)) &&
         (options.identity.empty() || MatchesIdentity(*record, options.identity));
}

Result<std::vector<std::uint64_t>> DigestSeqs(const ReadView& view,
                                              std::span<const std::uint8_t> digest) {
  std::vector<std::uint64_t> seqs;
  bool known_length = false;
  for (pipeline::DigestAlgorithm algorithm : kDigestAlgorithms) {
    if (pipeline::DigestLength(algorithm) != digest.size()) {
      continue;
    }
    known_length = true;
    SIGNET_ASSIGN_OR_RETURN(auto found,
                            view.SeqsForDigest(pipeline::DigestAlgorithmName(algorithm), digest));
    seqs.insert(seqs.end(), found.begin(), found.end());
  }
  if (!known_length) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "digest: " + std::to_string(digest.size() * 2) +
                         " hex digits fit no digest algorithm (64: sha256, 96: sha384, 128: "
                         "sha512 or blake2b512)");
  }
  std::ranges::sort(seqs);
  seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
  return seqs;
}

bool IsFullExport(const ExportOptions& options) {
  return options.from_seq == 0 && !options.to_seq && !options.from_time_us && !options.to_time_us &&
         IsContiguousExport(options);
}

bool IsContiguousExport(const ExportOptions& options) {
  return options.key.empty() && options.identity.empty() && options.digest.empty();
}

bool MatchesKey(const Record& record, std::string_view key) {
  return (!record.key_name.empty() && record.key_name == key) ||
         (!record.key_fingerprint.empty() && EqualsIgnoringCase(record.key_fingerprint, key));
}

bool MatchesIdentity(const Record& record, std::string_view identity) {
  const Identity& who = record.requester;
  if (!who.user.empty() && (identity == who.user || identity == "user:" + who.user)) {
    return true;
  }
  if (who.uid && identity == "uid:" + std::to_string(*who.uid)) {
    return true;
  }
  return (!who.cert_subject.empty() && identity == who.cert_subject) ||
         (!who.cert_fingerprint.empty() && EqualsIgnoringCase(who.cert_fingerprint, identity));
}

bool MatchesDigest(const Record& record, std::string_view lower_hex) {
  return std::ranges::any_of(record.digests,
                             [&](const auto& entry) { return entry.second == lower_hex; });
}

Status ExportFrom(const Store& store, const ExportOptions& options,
                  const std::function<Status(std::string_view)>& sink) {
  SIGNET_RETURN_IF_ERROR(ValidateFilter(options));
  SIGNET_ASSIGN_OR_RETURN(Plan plan, MakePlan(store, options));
  SIGNET_RETURN_IF_ERROR(sink(plan.header));

  std::uint64_t records = 0;
  const Selection& selection = plan.selection;
  const std::uint64_t total =
      selection.seqs ? selection.seqs->size() : selection.end - selection.first;
  for (std::uint64_t next = 0; next < total;) {
    // The page's read transaction ends inside ReadPage: the sink never runs with one open.
    SIGNET_ASSIGN_OR_RETURN(auto lines, ReadPage(store, plan, options, &next));
    for (const std::string& line : lines) {
      SIGNET_RETURN_IF_ERROR(sink(line));
    }
    records += lines.size();
  }
  return sink(Dump(json{{"records", records}, {"type", "end"}}) + "\n");
}

}  // namespace signet::audit::internal

namespace signet::audit {

std::string FiltersText(const ExportOptions& options) {
  nlohmann::json filters = internal::FiltersJson(options, options.digest);
  if (!options.consistency_from.empty()) {
    filters["consistency_from"] = options.consistency_from;
  }
  return filters.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace signet::audit
