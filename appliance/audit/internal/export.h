// appliance/audit/internal/export.h: writing exports from the store, and the rules the writer and
// the offline verifier (verify.cc) share. Private to signet::audit.
//
// An export is JSON Lines; every line is a canonical nlohmann dump (sorted keys, no spaces) and
// ends in "\n":
//   {"checkpoint":NOTE,"consistency":[{"from":M,"proof":[B64...]}...],"filters":{...},
//    "format":"signet-audit-export/1","full":BOOL,"type":"header"}
//   {"index":N,"proof":[B64...],"record":RECORD_BYTES,"type":"record"}   (one per record)
//   {"records":K,"type":"end"}
// NOTE is the whole signed checkpoint; records at or past its size are not exported (no signature
// covers them yet). "filters" echoes the options that were set; "proof" (the inclusion proof of
// leaf N in the checkpoint's tree) is left out of a full export, whose verifier recomputes the
// root instead. "consistency" holds one proof per ExportOptions::consistency_from size.
//
// Caveats:
// - ExportFrom reads in short read transactions (a page of records each) and calls the sink with
//   no transaction open, so a slow sink never pins the LMDB map.
// - The lines given to the sink include their "\n": a sink appends or writes them as they are.
#ifndef SIGNET_APPLIANCE_AUDIT_INTERNAL_EXPORT_H_
#define SIGNET_APPLIANCE_AUDIT_INTERNAL_EXPORT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/base/base.h"

namespace signet::audit::internal {

class Store;

inline constexpr std::string_view kExportFormat = "signet-audit-export/1";
// A page: what one read transaction covers (records looked at, and bytes of lines built).
inline constexpr std::size_t kExportPageRecords = 1024;
inline constexpr std::size_t kExportPageBytes = std::size_t{8} << 20;

// True when `options` select every record: from 0, no upper or time bound, no record filter.
bool IsFullExport(const ExportOptions& options);
// True when `options` select a run of consecutive records (no key, identity or digest filter).
bool IsContiguousExport(const ExportOptions& options);

// The record filters, applied by the writer and checked again by the verifier.
// `key` matches the record's key name or key fingerprint.
bool MatchesKey(const Record& record, std::string_view key);
// `identity` matches the requester's user name, "user:NAME", "uid:N", certificate subject or
// certificate fingerprint.
bool MatchesIdentity(const Record& record, std::string_view identity);
// `lower_hex` (a digest in lower-case hex) is one of the record's artifact digests.
bool MatchesDigest(const Record& record, std::string_view lower_hex);

class ReadView;
// The seqs of records with this raw digest under any algorithm of its length (SHA-256, SHA-384,
// SHA-512, BLAKE2b-512), ascending, unique. Errors: kInvalidArgument (a length no algorithm
// has), kIo.
[[nodiscard]] Result<std::vector<std::uint64_t>> DigestSeqs(const ReadView& view,
                                                            std::span<const std::uint8_t> digest);

// Writes the export of the records `options` selects, up to the store's latest signed checkpoint,
// to `sink` line by line. Errors: kInvalidArgument (options: from_seq > to_seq, from_time_us >
// to_time_us, a digest that is not hex or of no known length, a consistency_from size past the
// checkpoint), kUnavailable (no signed checkpoint yet), those of `sink` (which stop the export),
// kIo, kInternal (a store that contradicts itself).
[[nodiscard]] Status ExportFrom(const Store& store, const ExportOptions& options,
                                const std::function<Status(std::string_view)>& sink);

}  // namespace signet::audit::internal

#endif  // SIGNET_APPLIANCE_AUDIT_INTERNAL_EXPORT_H_
