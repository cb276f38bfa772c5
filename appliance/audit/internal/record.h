// appliance/audit/internal/record.h: canonical record bytes, split so that callers' threads do the
// serializing and the writer only splices in the sequence number and time. Private.
//
// The canonical form is nlohmann::json's dump() of the record object (keys sorted by byte, no
// spaces, UTF-8 unescaped, control characters as \\u00xx). In sorted order every key the writer
// fills ("seq", "time_us", "v") comes after every caller key except "signature_sha256", so a record
// is: head ‖ "seq":N, ‖ middle ‖ "time_us":T,"v":1}.
#ifndef SIGNET_APPLIANCE_AUDIT_INTERNAL_RECORD_H_
#define SIGNET_APPLIANCE_AUDIT_INTERNAL_RECORD_H_

#include <cstdint>
#include <string>

#include "appliance/audit/audit.h"
#include "appliance/base/base.h"

namespace signet::audit::internal {

inline constexpr int kRecordVersion = 1;

struct PreparedRecord {
  std::string head;    // "{" and every field that sorts before "seq", each followed by ","
  std::string middle;  // "signature_sha256":"...", (or empty)
};

// Errors: kInvalidArgument (a string that is not valid UTF-8, naming the field).
[[nodiscard]] Result<PreparedRecord> PrepareRecord(const Record& record);
// The canonical bytes of the prepared record with this sequence number and time.
std::string FinishRecord(const PreparedRecord& prepared, std::uint64_t seq, std::int64_t time_us);
// Appends `text` to `out` as a JSON string exactly as nlohmann::json::dump() writes it. Errors:
// kInvalidArgument (not valid UTF-8; the message names `field` and the byte offset).
[[nodiscard]] Status AppendJsonString(std::string& out, std::string_view text,
                                      std::string_view field);

}  // namespace signet::audit::internal

#endif  // SIGNET_APPLIANCE_AUDIT_INTERNAL_RECORD_H_
