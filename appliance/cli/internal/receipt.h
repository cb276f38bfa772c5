// Private to appliance/cli: what `signet sign` and `signet verify` need to assemble Merkle batch
// receipts from signetd's answer and check them (appliance/formats/BATCH.md) against a public key.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_RECEIPT_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_RECEIPT_H_

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "appliance/base/base.h"
#include "appliance/formats/formats.h"
#include "pipeline/pipeline.h"

namespace signet::cli {

// The trusted key of a receipt check: its fingerprint and a NoteCheck that accepts a note only
// when it carries a signature whose key ID is this key's and that signature verifies.
struct ReceiptKey {
  std::string fingerprint;  // lower-case hex SHA-256 of the DER SubjectPublicKeyInfo
  formats::NoteCheck check;
};

// From a PEM or DER public key (ECDSA P-256, as batch keys are). Errors: kInvalidArgument (not a
// public key the note code supports).
[[nodiscard]] Result<ReceiptKey> MakeReceiptKey(std::string_view public_key);

// `check`, with its answers remembered by note text: the receipts of one batch share their note,
// so checking a batch's receipts costs one signature verification, not one per file. Thread-safe.
formats::NoteCheck RememberingCheck(formats::NoteCheck check);

// One file of a sign request, as `signet sign` sent it.
struct RequestedFile {
  std::string_view name;
  std::uint64_t size = 0;
  std::string_view digest_hex;
  pipeline::DigestAlgorithm algorithm = pipeline::DigestAlgorithm::kSha256;
};

// One batch of a batch key's sign answer (BATCH.md, "The sign answer").
struct AnsweredBatch {
  std::string batch_id;
  std::uint64_t tree_size = 0;
  std::string note;
  bool proofs = true;  // its items carry their inclusion proofs (absent in older answers: true)
};

// The answer's `batches`, each read once for all its items: entry i is batch i, or why it cannot
// be used (kInvalidArgument: a field missing or mistyped). Empty when `batches` is not an array.
std::vector<Result<AnsweredBatch>> ReadAnsweredBatches(const nlohmann::json& batches);

// `file`'s receipt from its line `answered` of a batch key's sign answer and the answer's batches
// (ReadAnsweredBatches), for the key with `key_fingerprint`; the leaf is built from `file`, never
// from the answer. When its batch carries no proofs, the receipt's proof is left empty for
// DeriveProofs. Errors: kInvalidArgument naming what is missing or wrong.
[[nodiscard]] Result<formats::Receipt> AssembleReceipt(
    const RequestedFile& file, std::string_view key_fingerprint, const nlohmann::json& answered,
    const std::vector<Result<AnsweredBatch>>& batches, const std::string& request_id);

// For the receipts `members` of one batch answered without proofs (each assembled, with its leaf
// and leaf hash from this client's own hashing): checks that they are exactly the batch's leaves,
// builds the RFC 6962 tree over them, and, when its root is the one the batch's note signs (as
// `check` reads it), gives each receipt its proof from that tree. Returns true when that proves
// every member: the note checked out, its statement is about this batch id and tree size, and its
// root is the root of this client's own leaves (the proofs come from that tree); VerifyReceipt then
// has nothing left to find. Otherwise false: a receipt left without its proof fails VerifyReceipt
// as it should (a note that does not check out, or a wrong proof), and one whose batch is not
// complete in the answer is replaced by an error.
bool DeriveProofs(std::vector<Result<formats::Receipt>>& receipts,
                  const std::vector<std::size_t>& members, const formats::NoteCheck& check);

// A receipt bundle as `signet sign --bundle FILE` writes it: one receipt per line (BATCH.md,
// "Receipt bundles"), each parsed, in the bundle's order.
struct ReceiptBundle {
  std::vector<formats::Receipt> receipts;
  std::vector<std::uint64_t> lines;  // receipts[i] is on line lines[i] (empty lines are skipped)
  // BundleKey(a receipt's leaf name) -> its index in `receipts`.
  std::unordered_map<std::string, std::size_t> by_name;
};

// How a name is looked up in a bundle: lexically normal ("./a//b" and "a/b" are one name).
std::string BundleKey(std::string_view name);

// Reads the bundle at `path` (a regular file, or a FIFO or device read to its end). Errors:
// those of open and read, naming `path`; kInvalidArgument naming the line of a malformed receipt,
// of a line over formats::kMaxReceiptBytes, or of a second receipt for one name.
[[nodiscard]] Result<ReceiptBundle> ReadReceiptBundle(const std::string& path);

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_INTERNAL_RECEIPT_H_
