// appliance/formats/formats.h: the public interface of signet::formats, the signature envelopes
// the daemon builds (one key, one format) and the client checks.
//
// Today: Merkle batch receipts (format "batch"). One HSM signature covers a whole batch of
// artifacts: the daemon builds one RFC 6962 leaf per artifact (BatchLeaf), the tree over them, and
// signs a statement about the root (BatchStatement, a C2SP tlog-checkpoint body) as a C2SP signed
// note; each artifact gets a Receipt that proves, offline, that it is a leaf of the signed tree.
// The byte-exact formats are in appliance/formats/BATCH.md.
//
// Caveats:
// - Signing and checking the note is not done here: the caller signs the statement text with the
//   key (the service, through the HSM) and hands VerifyReceipt a NoteCheck that checks the note's
//   signature against the key it trusts (the client, with the public key file). This module only
//   builds and checks everything else.
// - A client never supplies a leaf hash or a root: the daemon builds every leaf from the request's
//   fields (BatchLeafBytes), so a signature can only cover artifacts that were asked for by name,
//   size and digest, and recorded.
// - Parsers have limits (kMaxReceiptBytes, kMaxProofLength, field sizes) and name what is wrong.
// It may use: base, pipeline. It names no C library type.
#ifndef SIGNET_APPLIANCE_FORMATS_FORMATS_H_
#define SIGNET_APPLIANCE_FORMATS_FORMATS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"
#include "pipeline/pipeline.h"

namespace signet::formats {

// ---- JSON text, byte for byte as nlohmann writes it -------------------------------------------

// True when `s` is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF): exactly
// what nlohmann::json::dump takes without an error handler.
bool IsUtf8(std::string_view s);
// Appends `text` as a JSON string, as nlohmann::json::dump(-1, ' ', false,
// error_handler_t::replace) writes it (bytes that are not UTF-8 become U+FFFD). For the JSON that
// signet and signetd write by hand on their hot paths (sign requests and answers, receipts).
void AppendJsonString(std::string& out, std::string_view text);
// Appends `text` as AppendJsonString does when it is valid UTF-8 and returns true; otherwise
// appends nothing and returns false (for a writer that refuses what is not UTF-8).
bool AppendJsonStringIfUtf8(std::string& out, std::string_view text);

// ---- Merkle batch receipts ---------------------------------------------------------------------

inline constexpr std::string_view kReceiptType = "signet-batch-receipt/v1";
inline constexpr std::size_t kMaxReceiptBytes = 64 * 1024;
inline constexpr std::size_t kMaxProofLength = 64;
// A sign request carrying this header (value kClientBuildsProofs) asks signetd to leave out the
// proofs of a batch made of the request's own leaves alone: the client rebuilds that tree itself
// (BATCH.md, "The sign answer"). Without it every batch in the answer carries its proofs.
inline constexpr std::string_view kBatchProofsHeader = "X-Signet-Batch-Proofs";
inline constexpr std::string_view kClientBuildsProofs = "client";
inline constexpr std::size_t kMaxLeafNameBytes = 4096;

// One artifact as the daemon saw it in a sign request.
struct BatchLeaf {
  std::string name;              // as the client named it: valid UTF-8, 1 to 4096 bytes
  std::uint64_t size = 0;        // bytes
  std::string digest_algorithm;  // "sha256", "sha384", "sha512" (1 to 32 bytes)
  Bytes digest;                  // 1 to 64 bytes
  std::string request_id;        // the sign request's id, also in every audit record it caused
  friend bool operator==(const BatchLeaf&, const BatchLeaf&) = default;
};

// The leaf's canonical bytes (BATCH.md, "Leaf"). Errors: kInvalidArgument (a field out of its
// limits, naming it).
[[nodiscard]] Result<Bytes> BatchLeafBytes(const BatchLeaf& leaf);
// pipeline::LeafHash of BatchLeafBytes.
[[nodiscard]] Result<pipeline::MerkleHash> BatchLeafHash(const BatchLeaf& leaf);

// What the key signs for one batch: a C2SP tlog-checkpoint body with one extension line,
//   <origin>\n<tree size>\n<base64 root>\nsignet-batch <batch id> <unix seconds>\n
struct BatchStatement {
  std::string origin;  // names the appliance and the key: "<host id>/signet-batch/<key name>"
  std::uint64_t tree_size = 0;  // at least 1
  pipeline::MerkleHash root{};
  std::string batch_id;   // 32 lower-case hex digits
  std::int64_t time = 0;  // when the batch was signed, seconds since the epoch (UTC)
  friend bool operator==(const BatchStatement&, const BatchStatement&) = default;
};

// "<host_id>/signet-batch/<key_name>".
std::string BatchOrigin(std::string_view host_id, std::string_view key_name);
// Errors: kInvalidArgument (an origin with a newline or empty, a size of 0, a bad batch id).
[[nodiscard]] Result<std::string> BatchStatementText(const BatchStatement& statement);
// Parses exactly what BatchStatementText writes. Errors: kInvalidArgument naming the line.
[[nodiscard]] Result<BatchStatement> ParseBatchStatement(std::string_view text);

// A fresh random batch id: 32 lower-case hex digits.
[[nodiscard]] Result<std::string> NewBatchId();

// What FILE.receipt holds (BATCH.md, "Receipt").
struct Receipt {
  BatchLeaf leaf;
  pipeline::MerkleHash leaf_hash{};  // BatchLeafHash(leaf), so an altered leaf is told apart
  std::uint64_t leaf_index = 0;
  std::uint64_t tree_size = 0;
  std::string batch_id;
  std::vector<pipeline::MerkleHash> inclusion_proof;
  std::string note;                  // the C2SP signed note of the BatchStatement
  std::string key_fingerprint;       // lower-case hex SHA-256 of the key's DER SubjectPublicKeyInfo
  std::optional<std::uint64_t> seq;  // the artifact's `sign` record in the audit log
  friend bool operator==(const Receipt&, const Receipt&) = default;
};

// How SerializeReceipt lays a receipt out: indented over several lines (a FILE.receipt), or on one
// line (a line of a receipt bundle, `signet sign --bundle`).
enum class ReceiptLayout : std::uint8_t { kIndented, kOneLine };

// JSON, one object, keys sorted, ending in a newline (the only one with kOneLine). Errors:
// kInvalidArgument (a name that is not valid UTF-8).
[[nodiscard]] Result<std::string> SerializeReceipt(const Receipt& receipt,
                                                   ReceiptLayout layout = ReceiptLayout::kIndented);
// The same bytes, appended to `out` (left as it was on error), for a writer that reuses one buffer.
[[nodiscard]] Status AppendReceipt(std::string& out, const Receipt& receipt,
                                   ReceiptLayout layout = ReceiptLayout::kIndented);
// Errors: kInvalidArgument (not a receipt of this version, a missing or mistyped field, a value
// out of its limits; the message names the field).
[[nodiscard]] Result<Receipt> ParseReceipt(std::string_view text);

// Builds the receipts of one batch: leaves (in order), the signed note over their tree, the key's
// fingerprint and each leaf's audit seq (or none). Errors: kInvalidArgument (no leaves, a leaf out
// of limits, seqs of the wrong count).
[[nodiscard]] Result<std::vector<Receipt>> MakeReceipts(const std::vector<BatchLeaf>& leaves,
                                                        const pipeline::MerkleTree& tree,
                                                        const std::string& batch_id,
                                                        const std::string& note,
                                                        const std::string& key_fingerprint,
                                                        const std::vector<std::uint64_t>& seqs);

// Checks a note's signature against the key the caller trusts and returns the note's signed text
// (the statement). Errors: kNotFound (no signature by that key: another key signed it),
// kCrypto (a signature by that key that does not verify), kInvalidArgument (not a signed note).
using NoteCheck = std::function<Result<std::string>(std::string_view note)>;

// Why a receipt does not hold, most basic first.
enum class ReceiptFailure : std::uint8_t {
  kNone,
  kKeyUnknown,      // signed by another key than the one given
  kSignatureWrong,  // the note's signature does not verify (the note was changed)
  kNoteMismatch,    // the signed statement is not about this receipt's batch or tree size
  kLeafAltered,     // the receipt's leaf fields do not hash to its leaf_hash
  kProofWrong,      // the leaf is not in the signed tree by this proof
  kFileChanged,     // the file's size or digest is not the leaf's
};
std::string_view ReceiptFailureName(ReceiptFailure failure);

struct ReceiptVerdict {
  ReceiptFailure failure = ReceiptFailure::kNone;
  std::string message;                      // what failed, for a person; empty when it holds
  std::optional<BatchStatement> statement;  // once the note checked out
  bool ok() const { return failure == ReceiptFailure::kNone; }
};

// Checks `receipt` for a file of `file_size` bytes whose digest with the leaf's algorithm is
// `file_digest`, signed by the key of `key_fingerprint` (checked by `check`).
ReceiptVerdict VerifyReceipt(const Receipt& receipt, std::uint64_t file_size,
                             std::span<const std::uint8_t> file_digest,
                             std::string_view key_fingerprint, const NoteCheck& check);

}  // namespace signet::formats

#endif  // SIGNET_APPLIANCE_FORMATS_FORMATS_H_
