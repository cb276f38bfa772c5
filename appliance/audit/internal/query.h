// appliance/audit/internal/query.h: which records an ExportOptions selects (shared by exports and
// record pages), record pages and consistency proofs read from the store. Private to
// signet::audit.
//
// Caveats:
// - A Selection is resolved against one tree size in one read view; records below that size never
//   change, so later views may read them.
// - Record pages cover every committed record (the store's tree size); exports stop at the latest
//   signed checkpoint.
#ifndef SIGNET_APPLIANCE_AUDIT_INTERNAL_QUERY_H_
#define SIGNET_APPLIANCE_AUDIT_INTERNAL_QUERY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/base/base.h"
#include "pipeline/pipeline.h"

namespace signet::audit::internal {

class ReadView;
class Store;

// At most this many records are looked at by one ReadRecords call (a selective key or identity
// filter over a long log answers a short page and a next_seq to continue from).
inline constexpr std::uint64_t kMaxRecordsScanned = 100000;
// A page holds at most this many bytes of records (always at least one record).
inline constexpr std::size_t kMaxRecordsPageBytes = std::size_t{8} << 20;

// Checks the filters that need no store: from_seq <= to_seq, from_time_us <= to_time_us, a digest
// in hex. Errors: kInvalidArgument naming the ExportOptions field.
[[nodiscard]] Status ValidateFilter(const ExportOptions& options);

// What the filters of `options` resolve to below tree size `size`.
struct Selection {
  std::uint64_t first = 0;  // the seq range [first, end)
  std::uint64_t end = 0;
  // With a digest filter: the candidates in [first, end) from the digests index, ascending.
  std::optional<std::vector<std::uint64_t>> seqs;
  std::string digest_hex;      // lower-case; empty: no digest filter
  bool parse_records = false;  // a key or identity filter: each record must be looked into
};

// Resolves `options` (already validated) in `view`: the seq bounds, the time bounds by binary
// search (times never decrease along the log), the digest candidates. Errors: kInvalidArgument (a
// digest of no known length), kIo, kInternal.
[[nodiscard]] Result<Selection> Select(const ReadView& view, const ExportOptions& options,
                                       std::uint64_t size);

// Whether record `seq`'s stored bytes pass the key and identity filters of `options` (parsed only
// when `selection.parse_records`). Errors: kInternal (bytes that are not a canonical record).
[[nodiscard]] Result<bool> Matches(const Selection& selection, const ExportOptions& options,
                                   std::uint64_t seq, std::string_view bytes);

// A page of committed records that `filter` selects (Log::Records). Errors: kInvalidArgument
// (limit 0 or past kMaxRecordsLimit, consistency_from set, the filters), kIo, kInternal.
[[nodiscard]] Result<RecordPage> ReadRecords(const Store& store, const ExportOptions& filter,
                                             std::size_t limit);

// The consistency proof from tree size `from` to `to` (Log::ConsistencyProof). Errors:
// kInvalidArgument (0 == from, from > to, to past the latest signed checkpoint), kUnavailable (no
// signed checkpoint yet), kIo, kInternal.
[[nodiscard]] Result<std::vector<pipeline::MerkleHash>> ReadConsistencyProof(const Store& store,
                                                                             std::uint64_t from,
                                                                             std::uint64_t to);

}  // namespace signet::audit::internal

#endif  // SIGNET_APPLIANCE_AUDIT_INTERNAL_QUERY_H_
