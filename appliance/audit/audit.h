// appliance/audit/audit.h: the tamper-evident audit log. Every decision the appliance makes is a
// record in an LMDB environment; the records are the leaves of an RFC 6962 Merkle tree whose
// checkpoints (C2SP tlog-checkpoint bodies in C2SP signed notes) are signed by an audit key.
//
// Caveats:
// - No record, no signature: Append/Submit report success only after the write transaction that
//   holds the records is committed and fsync'd. Callers release nothing before that.
// - Fail closed: after any failed commit (map full past its maximum, EIO, ENOSPC, ...) every
//   pending and later append fails with kUnavailable naming the first failure, until the log is
//   closed and opened again (which re-checks the stored tree against the signed checkpoints).
// - One Log per directory per process (an LMDB rule), and never fork() with a Log open. The LMDB
//   environment is opened with durable settings only (no NOSYNC, NOMETASYNC, MAPASYNC, WRITEMAP);
//   it must live on a local filesystem.
// - The checkpoint signer is called from the log's checkpoint thread; it must be thread-safe with
//   respect to the caller's own use of the same key. The log verifies every signature it gets
//   before storing it.
// - Records are serialized canonically (sorted keys, no spaces, UTF-8 JSON); the leaf hash is over
//   exactly those bytes. Every string in a Record must be valid UTF-8: Submit refuses others.
// - Log is thread-safe. Export runs in short read transactions and may run while appends go on.
// - The offline functions (notes, VerifyExport) need no LMDB and no daemon: they are what
//   `signet audit verify` runs.
#ifndef SIGNET_APPLIANCE_AUDIT_AUDIT_H_
#define SIGNET_APPLIANCE_AUDIT_AUDIT_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"
#include "pipeline/pipeline.h"

namespace signet::audit {

// ---- Records -----------------------------------------------------------------------------------

enum class RecordKind : std::uint8_t {
  kSign,      // one per artifact signed
  kDeny,      // a request refused (policy, limits, unknown key)
  kApproval,  // an approval given, refused or expired
  kPolicy,    // a policy applied or reloaded
  kKey,       // a key generated, bound, disabled or enabled
  kAdmin,     // any other administrative action (or a refused admin peer)
  kStartup,
  kShutdown,
  kBatch,  // one per Merkle batch whose root was signed (keys of format "batch")
};
// "sign", "deny", "approval", "policy", "key", "admin", "startup", "shutdown", "batch".
std::string_view RecordKindName(RecordKind kind);
[[nodiscard]] Result<RecordKind> ParseRecordKind(std::string_view name);

// Who asked: a Unix peer (uid, user, groups) or a TLS peer (certificate subject and fingerprint).
struct Identity {
  std::optional<std::uint32_t> uid;
  std::string user;
  std::vector<std::string> groups;
  std::string cert_subject;
  std::string cert_fingerprint;  // lower-case hex SHA-256 of the certificate
  friend bool operator==(const Identity&, const Identity&) = default;
};

struct Approver {
  std::string identity;      // as the policy names principals: "user:alice", "cert-subject:..."
  std::int64_t time_us = 0;  // when they approved (UTC, µs since the epoch)
  friend bool operator==(const Approver&, const Approver&) = default;
};

// Merkle batch signing (keys of format "batch"): the batch a `sign` record's artifact is a leaf
// of (id, leaf_index), or, in the `batch` record, the signed batch itself (id, tree_size, root,
// note).
struct BatchRef {
  std::string id;                           // 32 lower-case hex digits
  std::optional<std::uint64_t> leaf_index;  // sign records
  std::optional<std::uint64_t> tree_size;   // batch records
  std::string root;                         // batch records: base64 RFC 6962 root
  std::string note;                         // batch records: the C2SP signed note of the root
  friend bool operator==(const BatchRef&, const BatchRef&) = default;
};

// One decision. Empty strings, empty lists and unset optionals are left out of the serialized
// form. `seq`, `time_us` and `host_id` are set by the log when the record is committed.
struct Record {
  RecordKind kind = RecordKind::kSign;
  std::uint64_t seq = 0;
  std::int64_t time_us = 0;  // UTC, µs since the epoch; never decreases along the log
  std::string host_id;       // the appliance that wrote it

  std::string request_id;
  std::string ticket;       // client-declared change or ticket reference
  std::string client_host;  // client-declared
  std::string tool_name;    // client-declared
  std::string tool_version;
  Identity requester;
  std::optional<std::int64_t> peer_pid;  // Unix peers
  std::string peer_address;              // TCP peers

  std::string key_name;
  std::string key_fingerprint;  // lower-case hex SHA-256 of the key's SubjectPublicKeyInfo
  std::string algorithm;        // "ecdsa-p256", ...
  std::string format;           // "raw", "openpgp", ...

  std::string artifact_name;
  std::optional<std::uint64_t> artifact_size;
  std::map<std::string, std::string> digests;  // algorithm name → lower-case hex
  // Lower-case hex SHA-256 of the signature bytes released; for keys of format "batch", of the
  // signed note the receipts carry.
  std::string signature_sha256;
  std::optional<BatchRef> batch;  // Merkle batch signing; see BatchRef

  std::string decision;        // "allow", "deny", "hold", "approve", ...
  std::string policy_rule;     // the rule that decided
  std::string policy_version;  // hex hash of the policy text
  std::vector<Approver> approvers;
  std::string detail;  // free text: a denial's reason, what an admin action changed

  friend bool operator==(const Record&, const Record&) = default;
};

// The canonical bytes of `record` (what its leaf hash covers). Errors: kInvalidArgument (a string
// that is not valid UTF-8, naming the field; a `batch` with an empty id, naming "batch.id").
[[nodiscard]] Result<std::string> SerializeRecord(const Record& record);
// Parses canonical record bytes. Errors: kInvalidArgument (not JSON, a field of the wrong type, an
// unknown field or kind, or bytes that are not the canonical serialization of what they hold).
[[nodiscard]] Result<Record> ParseRecord(std::string_view bytes);

// ---- Signed notes and checkpoints (C2SP signed-note, tlog-checkpoint) --------------------------

// Signature types of C2SP signed notes that Signet makes and checks.
enum class NoteKeyType : std::uint8_t {
  kEd25519 = 0x01,  // RFC 8032 Ed25519 over the note text
  kEcdsa = 0x02,    // ECDSA over SHA-256(note text), ASN.1 DER (r, s), as transparency-dev/witness
};

// A public key that verifies notes under a key name. The key ID is the C2SP one:
// Ed25519: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte key)[:4]; ECDSA: SHA-256(DER SPKI)[:4].
struct NoteVerifier {
  std::string name;
  NoteKeyType type = NoteKeyType::kEcdsa;
  Bytes spki_der;  // DER SubjectPublicKeyInfo (Ed25519 or ECDSA P-256/P-384/P-521)
  std::uint32_t key_id = 0;
};

// Makes a verifier from a PEM or DER SubjectPublicKeyInfo and a key name. Errors: kInvalidArgument
// (not a public key; an unsupported key type or curve; a name that is empty or holds a space or
// '+').
[[nodiscard]] Result<NoteVerifier> MakeNoteVerifier(std::string_view name,
                                                    std::span<const std::uint8_t> public_key);

// Signs note text. Implementations: the service's, backed by a key in the HSM. Thread-safe.
class NoteSigner {
 public:
  virtual ~NoteSigner() = default;
  // The key name in signature lines and the key that verifies them.
  virtual const NoteVerifier& verifier() const = 0;
  // Ed25519: the signature over `text`; ECDSA: the DER signature over SHA-256(`text`).
  [[nodiscard]] virtual Result<Bytes> Sign(std::span<const std::uint8_t> text) = 0;
};

struct NoteSignature {
  std::string name;
  std::uint32_t key_id = 0;
  Bytes signature;
};
struct SignedNote {
  std::string text;  // ends with "\n"
  std::vector<NoteSignature> signatures;
};

inline constexpr std::size_t kMaxNoteBytes = 64 * 1024;
inline constexpr std::size_t kMaxNoteSignatures = 32;

// Signs `text` (which must end in "\n", be UTF-8 and hold no control character other than "\n")
// and returns the whole note. The signature is checked before it is returned. Errors:
// kInvalidArgument, those of the signer, kCrypto (a signature that does not verify).
[[nodiscard]] Result<std::string> SignNote(std::string_view text, NoteSigner& signer);
// Parses a signed note. Errors: kInvalidArgument (too large, malformed, no signature lines).
[[nodiscard]] Result<SignedNote> ParseNote(std::string_view note);
// Checks that `note` carries a valid signature by `key` (signatures by other keys are ignored).
// Errors: kNotFound (no signature by that key name and ID), kCrypto (it does not verify).
[[nodiscard]] Status VerifyNote(const SignedNote& note, const NoteVerifier& key);

// A C2SP tlog-checkpoint body: origin, tree size, root.
struct Checkpoint {
  std::string origin;
  std::uint64_t size = 0;
  pipeline::MerkleHash root{};
  friend bool operator==(const Checkpoint&, const Checkpoint&) = default;
};
// "origin\nsize\nbase64(root)\n".
std::string CheckpointText(const Checkpoint& checkpoint);
// Parses a checkpoint body (extension lines are refused). Errors: kInvalidArgument.
[[nodiscard]] Result<Checkpoint> ParseCheckpointText(std::string_view text);
// Parses a signed checkpoint and checks its signature by `key`. Errors: those of ParseNote,
// VerifyNote, ParseCheckpointText.
[[nodiscard]] Result<Checkpoint> OpenCheckpoint(std::string_view note, const NoteVerifier& key);

// ---- The log -----------------------------------------------------------------------------------

struct LogOptions {
  std::filesystem::path dir;  // the LMDB environment; created (mode 0700) when missing
  // The file outside `dir` to which every signed checkpoint is appended (fsync'd); an off-box copy
  // can be shipped from it. Required; must not be inside `dir`.
  std::filesystem::path checkpoint_file;
  std::string origin;  // the checkpoint origin line, e.g. "signet.example.com/audit"
  std::string host_id;
  // The LMDB map: it starts at map_size and grows by doubling before it is 80% used, up to
  // max_map_size; past that, appends fail naming the setting.
  std::size_t map_size = std::size_t{64} << 20;
  std::size_t max_map_size = std::size_t{16} << 30;
  // A checkpoint is signed when this many records were added since the last one, or this long
  // after a record arrived with none signed since, and when the log closes.
  std::uint64_t checkpoint_every = 10000;
  std::chrono::milliseconds checkpoint_interval{1000};
  std::size_t max_records_per_commit = 8192;
  std::size_t max_record_bytes = 64 * 1024;
  std::size_t queue_capacity = 1 << 16;  // records waiting for the writer; Submit fails past it
  std::chrono::milliseconds reader_check_interval{30000};
};

// A run of consecutive sequence numbers: [first, first + count).
struct SeqRange {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
};

struct LogStats {
  std::uint64_t tree_size = 0;
  std::uint64_t commits = 0;
  std::uint64_t records = 0;  // appended since open
  std::uint64_t checkpoint_size = 0;
  std::chrono::system_clock::time_point checkpoint_time{};
  std::chrono::microseconds last_commit_latency{0};
  std::size_t map_size = 0;
  std::size_t map_used = 0;
  bool failed = false;
  // A histogram as Prometheus exposes it: cumulative[i] counts the observations <= bounds[i],
  // count all of them (the +Inf bucket), sum their total.
  struct Histogram {
    std::vector<double> bounds;  // increasing
    std::vector<std::uint64_t> cumulative;
    std::uint64_t count = 0;
    double sum = 0;
  };
  // Over the commits that held records, since open (`commits` of them): seconds from the writer
  // taking the group to its records being durable, and records per commit (sum: `records`).
  Histogram commit_latency_seconds;
  Histogram records_per_commit;
};

// Which records an export holds. Sequence and time bounds are half-open: [from, to).
struct ExportOptions {
  std::uint64_t from_seq = 0;
  std::optional<std::uint64_t> to_seq;
  std::optional<std::int64_t> from_time_us;
  std::optional<std::int64_t> to_time_us;
  std::string key;       // key name or fingerprint
  std::string identity;  // user name, "uid:N", certificate subject or fingerprint
  std::string digest;    // hex digest of an artifact (any algorithm)
  // Sizes of earlier checkpoints to carry consistency proofs from (to check an older export
  // against this one).
  std::vector<std::uint64_t> consistency_from;
  // A full export carries each record's inclusion proof too, so that a verifier names the first
  // changed record instead of only finding the root wrong at the end. False leaves them out (an
  // export of about half the size). Filtered exports always carry them.
  bool full_proofs = true;
};

// The filters `options` sets, as compact JSON ({"from_seq":5,"key":"release"}): what an export's
// header carries, for messages and records about an export.
std::string FiltersText(const ExportOptions& options);

// The forms ParseTimeUs accepts, for messages.
inline constexpr std::string_view kTimeForms =
    "RFC 3339 in UTC or with an offset (2026-11-27T10:00:00Z, "
    "2026-11-27T10:00:00.123456+01:00) or @SECONDS (Unix time, e.g. @1795773600)";
// Parses a time for the export and record filters into µs since the epoch: RFC 3339 §5.6
// (YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), 'T' and 'Z' in either case) or @SECONDS. A
// bare number is refused: seconds and microseconds are too easily mistaken. Fractions finer than a
// µs round up: record times are whole µs, so `time >= from` and `time < to` stay exact. Errors:
// kInvalidArgument saying what is wrong ("has no time zone (add Z for UTC, ...)").
[[nodiscard]] Result<std::int64_t> ParseTimeUs(std::string_view text);

// One committed record: its sequence number and its canonical bytes (SerializeRecord's).
struct StoredRecord {
  std::uint64_t seq = 0;
  std::string bytes;
};

// A page of Log::Records.
struct RecordPage {
  std::vector<StoredRecord> records;  // ascending seq
  // Where the next page starts: ask again with from_seq = next_seq and the same filters. nullopt
  // when no record committed so far past this page can match (later records may still).
  std::optional<std::uint64_t> next_seq;
};

// The largest `limit` Log::Records takes.
inline constexpr std::size_t kMaxRecordsLimit = 10000;

class Log {
 public:
  // Opens (or creates) the log, runs mdb_reader_check, and checks the stored tree against the
  // latest signed checkpoint in LMDB and in the checkpoint file: a tree smaller than a signed
  // checkpoint is refused as a rollback, a root that differs as tampering. The check costs
  // O(log n) node reads plus the last few records, not a pass over the log. Errors:
  // kInvalidArgument (options), kPermissionDenied, kIo, kCrypto (a checkpoint whose signature
  // does not verify), kInternal ("rollback: ..." / "tampered: ..." with sizes and roots).
  [[nodiscard]] static Result<std::unique_ptr<Log>> Open(const LogOptions& options,
                                                         std::shared_ptr<NoteSigner> signer);
  // Close(), ignoring its error.
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  using Done = std::function<void(Result<SeqRange>)>;
  // Queues `records` to be committed together in one write transaction (possibly shared with
  // other callers' records). `done` is called once, from the writer thread, after the commit
  // (with the records' sequence numbers) or its failure; it must not block (the next commit waits
  // for it) and must not call back into the Log. Errors (then `done` is never called):
  // kInvalidArgument (no records, a record too large or not UTF-8), kUnavailable (the log has
  // failed or is closing, or the queue is full).
  [[nodiscard]] Status Submit(std::vector<Record> records, Done done);
  // Submit(records, done) for `count` records made one at a time: record(i), called for i = 0 to
  // count - 1 in order, returns the i-th. Its Record is read while the next is made: it must stay
  // alive and unchanged until record(i + 2) is called (the records of a request share most fields,
  // and two Records refilled in turn spare copying those into each). Errors: as Submit's.
  [[nodiscard]] Status Submit(std::size_t count, const std::function<Record&(std::size_t)>& record,
                              Done done);
  // Submits and waits. Errors: those of Submit and of the commit; kDeadlineExceeded when the
  // commit has not finished by `deadline` (the records may still be committed later).
  [[nodiscard]] Result<SeqRange> Append(std::vector<Record> records,
                                        Deadline deadline = Deadline::Never());

  // Signs a checkpoint of the current tree now (unless the latest one already covers it), stores
  // it durably and returns the signed note.
  [[nodiscard]] Result<std::string> CheckpointNow();
  // The latest durable signed checkpoint (empty for a log that never had a record).
  std::string LatestCheckpoint() const;

  // Streams an export (JSON Lines; see docs in export.cc and README) of the records `options`
  // selects, up to the latest signed checkpoint, to `sink` line by line. Errors: kInvalidArgument
  // (options), those of `sink` (which stop the export), kIo.
  [[nodiscard]] Status Export(const ExportOptions& options,
                              const std::function<Status(std::string_view line)>& sink) const;
  // A page of the committed records (also those no signed checkpoint covers yet) that `filter`
  // selects, with the Export filters' meaning (consistency_from must be empty), in seq order: at
  // most `limit` records and about 8 MiB of them, plus where the next page starts. Bounded work:
  // a digest filter reads only the digest index's candidates; otherwise records are read forward
  // from from_seq (or the first at from_time_us), at most 100,000 per call (then the page may be
  // short, even empty, with next_seq set: ask again). Runs in short read transactions. Errors:
  // kInvalidArgument (limit 0 or past kMaxRecordsLimit; the filters, naming the field), kIo.
  [[nodiscard]] Result<RecordPage> Records(const ExportOptions& filter, std::size_t limit) const;
  // The RFC 9162 §2.1.4 consistency proof from tree size `from` to tree size `to`, with
  // 0 < from <= to <= the latest signed checkpoint's size (empty when from == to). Errors:
  // kInvalidArgument (sizes out of that range, naming them and the checkpoint's size),
  // kUnavailable (no signed checkpoint yet), kIo.
  [[nodiscard]] Result<std::vector<pipeline::MerkleHash>> ConsistencyProof(std::uint64_t from,
                                                                           std::uint64_t to) const;
  // The records whose artifact digest is `hex_digest` (any algorithm), oldest first.
  [[nodiscard]] Result<std::vector<Record>> FindByDigest(std::string_view hex_digest) const;
  // The record with sequence number `seq`. Errors: kNotFound.
  [[nodiscard]] Result<Record> Get(std::uint64_t seq) const;

  // OK, or why the log takes no records: the failure that stopped it, or kUnavailable once Close
  // has begun. Callers check it before asking an HSM to sign.
  Status health() const;
  LogStats stats() const;

  // Stops accepting records, commits what is queued, signs a final checkpoint and closes. Errors:
  // the failure that stopped the log, if any, or that of the final checkpoint.
  [[nodiscard]] Status Close();

  struct State;

 private:
  explicit Log(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Exports from the log in `dir` without opening it for writing: signetd may have it open. Reads
// committed records only, against the latest checkpoint stored in the log; it does not run
// Log::Open's start-up checks (the export is verified by whoever reads it). Errors: kNotFound (not
// an audit log), those of Log::Export.
[[nodiscard]] Status ExportDirectory(const std::filesystem::path& dir, const ExportOptions& options,
                                     const std::function<Status(std::string_view line)>& sink);

// Log::Records on the log in `dir`, opened read-only as ExportDirectory opens it (signetd may have
// it open). Errors: kNotFound (not an audit log), those of Log::Records.
[[nodiscard]] Result<RecordPage> RecordsInDirectory(const std::filesystem::path& dir,
                                                    const ExportOptions& filter, std::size_t limit);

// ---- Offline verification ----------------------------------------------------------------------

struct ExportSummary {
  Checkpoint checkpoint;
  std::string checkpoint_note;
  bool full = false;  // every record from 0 to the checkpoint's size, root recomputed
  std::uint64_t records = 0;
  std::optional<std::uint64_t> first_seq;
  std::optional<std::uint64_t> last_seq;
  // Consistency proofs the export carries: from size → proof to this checkpoint.
  std::map<std::uint64_t, std::vector<pipeline::MerkleHash>> consistency;
  // For full exports: the root of every prefix listed in VerifyOptions::roots_at.
  std::map<std::uint64_t, pipeline::MerkleHash> prefix_roots;
};

struct VerifyOptions {
  std::size_t max_line_bytes = 1 << 20;
  std::vector<std::uint64_t> roots_at;  // prefix sizes whose roots a full export should report
};

// Verifies an export read from `in` against the audit key: the checkpoint's signature, then each
// record's bytes (canonical, sequence number matching its index, indexes increasing) and its
// inclusion proof, or for a full export the recomputed root, and that the export is complete (its
// trailer). Errors: kInvalidArgument or kCrypto naming the line and the first bad record.
[[nodiscard]] Result<ExportSummary> VerifyExport(std::istream& in, const NoteVerifier& key,
                                                 const VerifyOptions& options = {});
// Checks that the older export's checkpoint is a prefix of the newer one's: through a consistency
// proof the newer export carries, or the prefix root a full newer export computed. Errors:
// kInvalidArgument (sizes out of order, no proof available: says how to export one), kCrypto.
[[nodiscard]] Status VerifyConsistent(const ExportSummary& older, const ExportSummary& newer);

}  // namespace signet::audit

#endif  // SIGNET_APPLIANCE_AUDIT_AUDIT_H_
