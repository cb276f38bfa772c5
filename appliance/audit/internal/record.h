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
#include <string_view>

#include "appliance/audit/audit.h"
#include "appliance/base/base.h"

namespace signet::audit::internal {

inline constexpr int kRecordVersion = 1;

// head ‖ middle, in one buffer.
struct PreparedRecord {
  std::string text;
  std::size_t head_size = 0;

  // "{" and every field that sorts before "seq", each followed by ",".
  std::string_view head() const { return std::string_view(text).substr(0, head_size); }
  // "signature_sha256":"...", (or empty).
  std::string_view middle() const { return std::string_view(text).substr(head_size); }
};

// Prepares records one after another, each as PrepareRecord would. The records of one request
// share most fields (requester, key, policy, request, signature); the bytes of those are reused
// from the previous record when they are equal rather than escaped again. WARNING: the record
// given to Prepare is compared with the next one: it must stay alive and unchanged until then.
// Not thread-safe.
class RecordPreparer {
 public:
  // Errors: those of PrepareRecord.
  [[nodiscard]] Result<PreparedRecord> Prepare(const Record& record);
  // Appends the prepared bytes (head ‖ middle) to `out`, so that many records can share one
  // buffer, and returns the head's size. On an error `out` is as it was.
  [[nodiscard]] Result<std::size_t> Append(const Record& record, std::string& out);

 private:
  const Record* previous_ = nullptr;  // the last record prepared, whose parts are below
  std::string front_;                 // its algorithm and approvers
  std::string back_;                  // its decision ... requester
  std::string middle_;                // its "signature_sha256":"...",
};

// Errors: kInvalidArgument (a string that is not valid UTF-8, naming the field).
[[nodiscard]] Result<PreparedRecord> PrepareRecord(const Record& record);
// The canonical bytes of the prepared record with this sequence number and time.
std::string FinishRecord(const PreparedRecord& prepared, std::uint64_t seq, std::int64_t time_us);
// FinishRecord of a prepared head and middle into `out` (replacing what it held; its buffer is
// reused).
void FinishRecordInto(std::string& out, std::string_view head, std::string_view middle,
                      std::uint64_t seq, std::int64_t time_us);
// Appends `text` to `out` as a JSON string exactly as nlohmann::json::dump() writes it. Errors:
// kInvalidArgument (not valid UTF-8; the message names `field` and the byte offset).
[[nodiscard]] Status AppendJsonString(std::string& out, std::string_view text,
                                      std::string_view field);

}  // namespace signet::audit::internal

#endif  // SIGNET_APPLIANCE_AUDIT_INTERNAL_RECORD_H_
