// Private to appliance/cli: what `signet sign` and `signet verify` need to assemble Merkle batch
// receipts from signetd's answer and check them (appliance/formats/BATCH.md) against a public key.
#ifndef SIGNET_APPLIANCE_CLI_INTERNAL_RECEIPT_H_
#define SIGNET_APPLIANCE_CLI_INTERNAL_RECEIPT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
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

// One file's line of a batch key's sign answer.
struct AnsweredLine {
  std::uint64_t batch = 0;  // index into the answer's batches
  std::uint64_t leaf_index = 0;
  std::uint64_t seq = 0;                    // its `sign` record in the audit log
  std::vector<pipeline::MerkleHash> proof;  // when its batch carries proofs
};

// A batch key's sign answer, read: its batches and one line per file sent.
struct ReadAnswer {
  std::string request_id;
  std::vector<Result<AnsweredBatch>> batches;
  std::vector<Result<AnsweredLine>> lines;  // lines[i] is for the file names[i]
};

// Reads `reply` (a 200 answer whose "items" has one entry per file sent) for the files `names`,
// in the order sent: every batch and line checked, naming what is missing or wrong.
ReadAnswer ReadBatchAnswer(const nlohmann::json& reply, const std::vector<std::string_view>& names);

// The same, from the answer's text, without building its DOM, for an answer of the usual shape
// (no proofs: every batch is made of the request's own leaves). nullopt for any other answer:
// parse it and use ReadBatchAnswer, which names what is wrong. Where both read an answer, they
// read the same values.
std::optional<ReadAnswer> ReadBatchAnswerFast(std::string_view body,
                                              const std::vector<std::string_view>& names);

// How WriteBatchReceipts writes receipts.
struct ReceiptOptions {
  formats::ReceiptLayout layout = formats::ReceiptLayout::kIndented;
  // Appended to "does not check out" (--collect: the file may have changed since it was sent).
  std::string changed_hint;
  // Up to this many threads assemble a large answer's receipts, each over a contiguous part of
  // it. Worth it when the sink is cheap (a bundle); one receipt file per artifact is bound by
  // creating files in one directory, which more threads only make contend.
  std::size_t threads = 1;
};

// Where WriteBatchReceipts puts file i's receipt: its text (valid until the call returns), or why
// there is none. `seq` is the file's `sign` record when the answer names it. Called once per
// file; with ReceiptOptions::threads above 1, from several threads at once (in file order within
// each thread's part).
using ReceiptSink = std::function<void(std::size_t i, std::optional<std::uint64_t> seq,
                                       const Result<std::string_view>& text)>;

// `signet sign` with a batch key: assembles the receipt of each of `files` (in the order sent)
// from the read answer and what this client hashed itself (the leaf), checks it as `signet verify`
// would (note signature, leaf, proof, file digest) and hands it to `sink`, serialized, or why not
// (the answer is malformed for the file; the receipt does not check out). A batch answered
// without proofs is rebuilt from this client's own leaves, each file's proof taken from that
// tree; when the batch's note signs that tree's root, batch id and size, its receipts hold
// by construction, and VerifyReceipt runs only on its first and last, as a check of this code
// (should either fail, on every receipt of the batch).
void WriteBatchReceipts(const std::vector<RequestedFile>& files, ReadAnswer answer,
                        const ReceiptKey& key, const ReceiptOptions& options,
                        const ReceiptSink& sink);

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
