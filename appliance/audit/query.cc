// Record pages and consistency proofs read from the store (internal/query.h): what the admin API's
// audit endpoints and `signet audit find` ask of the log. The filters are the export's (Select,
// Matches in export.cc).
#include "appliance/audit/internal/query.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "appliance/audit/internal/export.h"
#include "appliance/audit/internal/store.h"

namespace signet::audit::internal {

Result<RecordPage> ReadRecords(const Store& store, const ExportOptions& filter, std::size_t limit) {
  if (limit == 0 || limit > kMaxRecordsLimit) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "limit " + std::to_string(limit) + " is out of range: ask for 1 to " +
                         std::to_string(kMaxRecordsLimit) + " records per page");
  }
  if (!filter.consistency_from.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "consistency_from applies to exports, not to record pages: ask for a "
                     "consistency proof instead");
  }
  SIGNET_RETURN_IF_ERROR(ValidateFilter(filter));

  Selection selection;
  {
    SIGNET_ASSIGN_OR_RETURN(ReadView view, store.Read());
    SIGNET_ASSIGN_OR_RETURN(const TreeMeta tree, view.Tree());
    SIGNET_ASSIGN_OR_RETURN(selection, Select(view, filter, tree.size));
  }

  // Candidates are numbered [0, total): the digest index's seqs, or the seqs [first, end).
  const std::uint64_t total =
      selection.seqs ? selection.seqs->size() : selection.end - selection.first;
  auto seq_at = [&](std::uint64_t i) {
    return selection.seqs ? (*selection.seqs)[i] : selection.first + i;
  };
  RecordPage page;
  std::size_t bytes = 0;
  std::uint64_t next = 0;
  auto full = [&] {
    return page.records.size() >= limit || bytes >= kMaxRecordsPageBytes ||
           next >= kMaxRecordsScanned;
  };
  while (next < total && !full()) {
    // One short read transaction per export-sized page of candidates.
    SIGNET_ASSIGN_OR_RETURN(ReadView view, store.Read());
    for (std::size_t looked = 0; next < total && looked < kExportPageRecords && !full(); ++looked) {
      const std::uint64_t seq = seq_at(next);
      ++next;
      auto stored = view.Record(seq);
      if (!stored) {
        return MakeError(std::move(stored).error().WithContext(
            "record " + std::to_string(seq) + " (below the committed tree's size)"));
      }
      SIGNET_ASSIGN_OR_RETURN(const bool selected, Matches(selection, filter, seq, *stored));
      if (selected) {
        bytes += stored->size();
        page.records.push_back(StoredRecord{seq, std::move(*stored)});
      }
    }
  }
  if (next < total) {
    page.next_seq = seq_at(next);
  }
  return page;
}

Result<std::vector<pipeline::MerkleHash>> ReadConsistencyProof(const Store& store,
                                                               std::uint64_t from,
                                                               std::uint64_t to) {
  if (from == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "from must be at least 1: every tree is consistent with the empty one, "
                     "there is nothing to prove");
  }
  if (from > to) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "from " + std::to_string(from) + " is past to " + std::to_string(to) +
                         ": a consistency proof goes from an older, smaller tree to a newer one");
  }
  SIGNET_ASSIGN_OR_RETURN(ReadView view, store.Read());
  SIGNET_ASSIGN_OR_RETURN(std::optional<std::string> note, view.LatestCheckpoint());
  if (!note) {
    return MakeError(ErrorCode::kUnavailable,
                     "the log has no signed checkpoint yet: no tree size can be proven (a "
                     "checkpoint is signed soon after the first record)");
  }
  auto parsed = ParseNote(*note);
  if (!parsed) {
    return MakeError(ErrorCode::kInternal,
                     "the stored checkpoint is not a signed note: " + parsed.error().message());
  }
  auto checkpoint = ParseCheckpointText(parsed->text);
  if (!checkpoint) {
    return MakeError(ErrorCode::kInternal,
                     "the stored checkpoint is malformed: " + checkpoint.error().message());
  }
  if (to > checkpoint->size) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "to " + std::to_string(to) + " is past the latest signed checkpoint (size " +
                         std::to_string(checkpoint->size) +
                         "): only signed tree sizes can be proven; ask again with to at most " +
                         std::to_string(checkpoint->size));
  }
  return pipeline::ConsistencyProof(from, to, view.Nodes());
}

}  // namespace signet::audit::internal

namespace signet::audit {

Result<RecordPage> RecordsInDirectory(const std::filesystem::path& dir, const ExportOptions& filter,
                                      std::size_t limit) {
  SIGNET_ASSIGN_OR_RETURN(const auto store, internal::Store::OpenReadOnly(dir));
  return internal::ReadRecords(*store, filter, limit);
}

}  // namespace signet::audit
